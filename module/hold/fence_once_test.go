package hold

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/charon-redis/charon/cshim/holdcheck"
)

// Rule 10: fence = max(1 + the largest fence stored in any key of the request,
// t << 20), recorded in every key; a seize gets one too.
func TestFence(t *testing.T) {
	st := newStore()
	r, _ := st.do(t, "RESERVE d:a LIMIT 5 GLOBAL g 10", 1000)
	if r.Fence != 1000<<FenceShift {
		t.Fatalf("first fence %d, want %d", r.Fence, 1000<<FenceShift)
	}
	// Same millisecond, another domain under the same global key: one more.
	r2, _ := st.do(t, "RESERVE d:b LIMIT 5 GLOBAL g 10", 1000)
	if r2.Fence != r.Fence+1 {
		t.Fatalf("second fence %d, want %d", r2.Fence, r.Fence+1)
	}
	for _, k := range []string{"d:b", "g"} {
		if st.keys[k].Fence() != r2.Fence {
			t.Fatalf("key %s records %d", k, st.keys[k].Fence())
		}
	}
	if st.keys["d:a"].Fence() != r.Fence {
		t.Fatalf("d:a records %d", st.keys["d:a"].Fence())
	}
	// A rejection and a DRYRUN issue none and record none.
	r3, _ := st.do(t, "RESERVE d:a MAX 9 LIMIT 5", 1001)
	d3, _ := st.do(t, "RESERVE d:a LIMIT 5 DRYRUN", 1001)
	if r3.Fence != 0 || d3.Fence != 0 || st.keys["d:a"].Fence() != r.Fence {
		t.Fatalf("rejection %d, dryrun %d, stored %d", r3.Fence, d3.Fence, st.keys["d:a"].Fence())
	}
	// Later times dominate: t << 20.
	r4, _ := st.do(t, "RESERVE d:a LIMIT 5", 5000)
	if r4.Fence != 5000<<FenceShift {
		t.Fatalf("later fence %d", r4.Fence)
	}
	// Release, renew and transfer issue none; seize does.
	rel, _ := st.do(t, "RELEASE d:a "+hex(r4.ID)+" COPIES 0", 5001)
	_ = rel
	x, _ := st.do(t, "TRANSFER d:b "+hex(r2.ID)+" TTL 100 GLOBAL g", 5002)
	if x.Fence != 0 {
		t.Fatalf("transfer fence %d", x.Fence)
	}
	s, err := st.do(t, "SEIZE d:b "+hex(x.ID)+" GLOBAL g", 5003)
	if err != nil || s.Fence != 5003<<FenceShift {
		t.Fatalf("seize: %+v %v", s, err)
	}
	// A key that lost its last writes (a failover) but whose clock moved on still
	// issues a larger fence; a key whose stored fence is ahead of t << 20 (more than
	// 2^20 grants in a millisecond) counts up from it.
	st.keys["g"].SetFence(6000<<FenceShift + 5)
	r5, _ := st.do(t, "RESERVE d:c LIMIT 5 GLOBAL g 10", 6000)
	if r5.Fence != 6000<<FenceShift+6 {
		t.Fatalf("fence after a busy millisecond %d", r5.Fence)
	}
	// Saturation.
	if f := NextFence(nil, MaxAt); f != MaxFenceTime<<FenceShift {
		t.Fatalf("fence at MaxAt %d", f)
	}
	v := Init(make([]byte, SizeFor(MinCap)), MinCap)
	v.SetFence(MaxFence)
	if f := NextFence(Keys{v}, 1); f != MaxFence {
		t.Fatalf("saturated fence %d", f)
	}
}

// A key released in the millisecond of its last grant lives one more millisecond, so
// that a grant in that millisecond still sees its fence: fences never repeat.
func TestFenceNeverRepeats(t *testing.T) {
	st := newStore()
	r, _ := st.do(t, "RESERVE lock LIMIT 1", 7000)
	st.do(t, "RELEASE lock "+hex(r.ID), 7000)
	if v := st.keys["lock"]; v == nil || v.Len() != 0 || ExpireAt(v, 7000, 0) != 7001 {
		t.Fatal("the released key must live until 7001")
	}
	r2, _ := st.do(t, "RESERVE lock LIMIT 1", 7000)
	if r2.Fence != r.Fence+1 {
		t.Fatalf("fence %d after %d", r2.Fence, r.Fence)
	}
	st.do(t, "RELEASE lock "+hex(r2.ID), 7002)
	if _, ok := st.keys["lock"]; ok {
		t.Fatal("a key whose fence is older than t holds nothing that matters")
	}
}

// Rule 12: a replay returns the remembered reply and changes nothing, until
// t0 + OnceWindow inclusive.
func TestOnce(t *testing.T) {
	st := newStore()
	r, _ := st.do(t, "RESERVE d MAX 2 LIMIT 3 GLOBAL g 5 ONCE tok-1", 1000)
	if r.Granted != 2 || r.Replay {
		t.Fatalf("first: %+v", r)
	}
	before := string(st.keys["d"].Serialize(nil)) + string(st.keys["g"].Serialize(nil))
	for _, at := range []int64{1000, 1001, 5000, 1000 + OnceWindow} {
		p, err := st.do(t, "RESERVE d MAX 2 LIMIT 3 GLOBAL g 5 ONCE tok-1", at)
		if err != nil || !p.Replay || p.Write || p.ID != r.ID || p.Fence != r.Fence || p.Deadline != r.Deadline ||
			p.Granted != 2 || p.Held != r.Held || p.GlobalHeld != r.GlobalHeld || p.Limit != 3 {
			t.Fatalf("replay at %d: %+v %v", at, p, err)
		}
	}
	if after := string(st.keys["d"].Serialize(nil)) + string(st.keys["g"].Serialize(nil)); after != before {
		t.Fatal("a replay changed a key")
	}
	// Even with other arguments: the token decides.
	p, _ := st.do(t, "RESERVE d MAX 1 LIMIT 3 ONCE tok-1", 2000)
	if !p.Replay || p.Granted != 2 {
		t.Fatalf("replay with other arguments: %+v", p)
	}
	// Another token is a new request (1 copy fits under 3).
	q, _ := st.do(t, "RESERVE d MAX 1 LIMIT 3 GLOBAL g 5 ONCE tok-2", 2000)
	if q.Replay || q.Granted != 1 || q.ID == r.ID {
		t.Fatalf("another token: %+v", q)
	}
	// A TRANSFER cannot reuse a RESERVE's token.
	if _, err := st.do(t, "TRANSFER d "+hex(r.ID)+" TTL 5 ONCE tok-1", 2001); err == nil {
		t.Fatal("a token of a RESERVE answered a TRANSFER")
	} else if ae := (*ArgError)(nil); !errors.As(err, &ae) || ae.Arg != "ONCE" {
		t.Fatalf("error %v", err)
	}
	// One millisecond after the window, the token is forgotten: a new grant (the
	// first hold's lease still counts: 2 + 1 held, limit 3, so MIN 0 gets nothing,
	// a rejection, which remembers nothing).
	n, _ := st.do(t, "RESERVE d MAX 1 MIN 0 LIMIT 3 ONCE tok-1", 1000+OnceWindow+1)
	if n.Replay || n.Granted != 0 {
		t.Fatalf("after the window: %+v", n)
	}
	st.do(t, "RELEASE d "+hex(q.ID), 1000+OnceWindow+1)
	n, _ = st.do(t, "RESERVE d MAX 1 LIMIT 3 ONCE tok-1", 1000+OnceWindow+1)
	if n.Replay || n.Granted != 1 || n.ID == r.ID {
		t.Fatalf("after the window: %+v", n)
	}
	// The write forgot the old tok-1 (1000 < 11001 - 10000) and kept tok-2 (2000).
	if d := st.keys["d"]; d.TokLen() != 2 {
		t.Fatalf("%d tokens remembered", d.TokLen())
	}
}

// A TRANSFER with ONCE replays its own reply; RELEASE, RENEW and SEIZE take no ONCE.
func TestOnceTransfer(t *testing.T) {
	st := newStore()
	r, _ := st.do(t, "RESERVE d MAX 3 LIMIT 3", 100)
	x, err := st.do(t, "TRANSFER d "+hex(r.ID)+" COPIES 1 TTL 50 ONCE x", 110)
	if err != nil || x.Replay {
		t.Fatal(err)
	}
	y, err := st.do(t, "TRANSFER d "+hex(r.ID)+" COPIES 1 TTL 50 ONCE x", 120)
	if err != nil || !y.Replay || y.ID != x.ID || y.Copies != 1 || y.Deadline != 160 || y.Remaining != 2 || y.Held != x.Held {
		t.Fatalf("replay %+v %v", y, err)
	}
	for _, line := range []string{"RELEASE d " + hex(r.ID) + " ONCE x", "RENEW d " + hex(r.ID) + " ONCE x", "SEIZE d " + hex(x.ID) + " ONCE x"} {
		if _, err := st.do(t, line, 130); err == nil {
			t.Fatalf("%s accepted", line)
		}
	}
}

// Tokens: 1..64 bytes, given once.
func TestOnceParse(t *testing.T) {
	var req Request
	long := make([]byte, 65)
	for i := range long {
		long[i] = 'a'
	}
	for _, args := range [][][]byte{
		{[]byte("LIMIT"), []byte("1"), []byte("ONCE"), []byte("")},
		{[]byte("LIMIT"), []byte("1"), []byte("ONCE"), long},
		{[]byte("LIMIT"), []byte("1"), []byte("ONCE")},
		{[]byte("LIMIT"), []byte("1"), []byte("ONCE"), []byte("a"), []byte("ONCE"), []byte("a")},
	} {
		err := Parse(Reserve, args, &req)
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Arg != "ONCE" {
			t.Fatalf("%q: %v", args, err)
		}
	}
	if err := Parse(Reserve, [][]byte{[]byte("LIMIT"), []byte("1"), []byte("ONCE"), long[:64]}, &req); err != nil || !req.Once {
		t.Fatal(err)
	}
	if TokenHash([]byte("a")) == TokenHash([]byte("b")) || TokenHash(nil) != TokenHash([]byte{}) {
		t.Fatal("TokenHash")
	}
	// The hash is part of the persisted format.
	if h := TokenHash([]byte("tok-1")); h != 0xa698150f03b8491f {
		t.Fatalf("TokenHash(tok-1) = %#x", h)
	}
}

// MaxTokens grants with ONCE in the window: the next one is refused (nothing written)
// until the oldest leaves the window.
func TestOnceBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("65,536 grants")
	}
	st := newStore()
	buf := []byte("RESERVE d LIMIT 1000000000 LEASE 100000 ONCE t")
	for i := 0; i < MaxTokens; i++ {
		line := string(buf) + itoa(int64(i))
		if _, err := st.do(t, line, 1000+int64(i/10)); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
	if _, err := st.do(t, string(buf)+"x", 1000+MaxTokens/10); !errors.Is(err, errTooManyTokens) {
		t.Fatalf("the 65537th token: %v", err)
	}
	if _, err := st.do(t, string(buf)+"x", 1000+OnceWindow+1); err != nil {
		t.Fatalf("after the oldest left the window: %v", err)
	}
	d := st.keys["d"]
	if d.TokLen() > MaxTokens || d.TokCap() != MaxTokens {
		t.Fatalf("%d tokens in a ring of %d", d.TokLen(), d.TokCap())
	}
	checkWritten(t, "full token ring", d)
}

// A value written before fences and tokens (persisted version 1) still loads, in Go
// and in C, with fence 0 and no tokens, and is written back as version 2.
func TestLoadVersion1(t *testing.T) {
	le := binary.LittleEndian
	var p []byte
	for _, w := range []uint64{EncVer1, 4102444800000, 6, 2, 7, 3, 4102444860000, 9, 1, 4102444870000} {
		p = le.AppendUint64(p, w)
	}
	s, err := Inspect(p)
	if err != nil || s.Ver != EncVer1 || s.Holds != 2 || s.Tokens != 0 || holdcheck.Check(p) != 2 {
		t.Fatalf("%+v %v, C %d", s, err, holdcheck.Check(p))
	}
	v, err := Build(p, make([]byte, s.Size()))
	if err != nil || v.Fence() != 0 || v.TokLen() != 0 || v.Held() != 4 || v.Limit() != 5 {
		t.Fatalf("%v", err)
	}
	q := v.Serialize(nil)
	if le.Uint64(q) != EncVer || len(q) != 48+2*24 {
		t.Fatalf("rewritten as %d, %d bytes", le.Uint64(q), len(q))
	}
	mem, ok := holdcheck.MemLayout(p)
	if !ok || string(mem) != string(v) {
		t.Fatal("C's layout of a version 1 form differs from Go's")
	}
	if rt, ok := holdcheck.RoundTrip(p); !ok || string(rt) != string(q) {
		t.Fatal("C writes a version 1 form back differently")
	}
	// Version 1 has no room for a fence or tokens: a v1 header with v2's length fails.
	bad := append(le.AppendUint64(nil, EncVer1), q[8:]...)
	if _, err := Inspect(bad); err == nil || holdcheck.Check(bad) >= 0 {
		t.Fatal("a version 1 form with a version 2 body loads")
	}
}
