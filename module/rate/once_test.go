package rate

import (
	"bytes"
	"errors"
	"strconv"
	"testing"
)

// store keeps one key's value (and a global key's) between requests, checking every
// value written loads (checkWritten).
type store struct {
	t         *testing.T
	val, gval []byte
	p         Parser
	every     int // check every n-th written value only (0: all)
	writes    int
}

func (s *store) do(now int64, args string) Result {
	s.t.Helper()
	var req Request
	if err := s.p.Parse(words(args), &req); err != nil {
		s.t.Fatalf("%s: %v", args, err)
	}
	var g []byte
	if req.HasGlobal {
		g = s.gval
	}
	res, nv, ngv, err := Apply(s.val, g, &req, now, nil, nil)
	if err != nil {
		s.t.Fatalf("%s: %v", args, err)
	}
	if res.Write != (nv != nil) || res.Replay && res.Write {
		s.t.Fatalf("%s: write %v, value %v, replay %v", args, res.Write, nv != nil, res.Replay)
	}
	if res.Write {
		s.writes++
		if s.every == 0 || s.writes%s.every == 0 {
			checkWritten(s.t, args, nv)
		}
		s.val = bytes.Clone(nv)
		if ngv != nil && (s.every == 0 || s.writes%s.every == 0) {
			checkWritten(s.t, args+" (global)", ngv)
			s.gval = bytes.Clone(ngv)
		}
	}
	return res
}

// TestOnceReplay: rule 11. A granted request with a token is remembered with its whole
// reply; a replay within 10,000 ms (inclusive) returns it and writes nothing, one at
// t0+10,001 is a new request; rejections and DRYRUN remember nothing.
func TestOnceReplay(t *testing.T) {
	s := &store{t: t}
	const t0 = 1_000_000
	first := s.do(t0, "MAX 3 MIN 1 ONCE a LIMITS 5/1s")
	if first.Fields[FieldGranted] != 3 || first.Replay {
		t.Fatalf("first: %v", first.Fields)
	}
	before := bytes.Clone(s.val)
	// The same token later, with other arguments: the remembered reply, nothing written.
	for _, at := range []int64{t0, t0 + 1, t0 + 5000, t0 + onceLife} {
		r := s.do(at, "MAX 1 ONCE a LIMITS 100/1s")
		if !r.Replay || r.Fields != first.Fields || r.Write {
			t.Fatalf("replay at +%d: %+v, want the first reply %v", at-t0, r, first.Fields)
		}
	}
	if !bytes.Equal(s.val, before) {
		t.Fatal("a replay changed the value")
	}
	// Another token counts: 2 left in the window.
	if r := s.do(t0+10, "MAX 5 MIN 1 ONCE b LIMITS 5/1s"); r.Fields[FieldGranted] != 2 || r.Replay {
		t.Fatalf("b: %v", r.Fields)
	}
	// Rejected and DRYRUN requests remember nothing: the same tokens grant later.
	if r := s.do(t0+20, "ONCE c LIMITS 5/1s"); r.Granted {
		t.Fatalf("c should be rejected: %v", r.Fields)
	}
	if r := s.do(t0+20, "ONCE d DRYRUN LIMITS 50/1s"); !r.Granted || r.Write {
		t.Fatalf("d dry run: %+v", r)
	}
	if r := s.do(t0+2000, "ONCE c LIMITS 5/1s"); !r.Granted || r.Replay {
		t.Fatalf("c after the window: %+v", r)
	}
	if r := s.do(t0+2001, "ONCE d LIMITS 5/1s"); !r.Granted || r.Replay {
		t.Fatalf("d after its dry run: %+v", r)
	}
	// a is forgotten at t0 + 10,001: it counts again.
	r := s.do(t0+onceLife+1, "MAX 3 MIN 1 ONCE a LIMITS 5/1s")
	if r.Replay || r.Fields[FieldGranted] != 3 {
		t.Fatalf("a after 10,001 ms: %+v", r)
	}
	// The key lives at least 10 s after its last remembered grant.
	if r.ExpireAt < t0+onceLife+1+onceLife+1 {
		t.Fatalf("expiry %d does not cover the token", r.ExpireAt)
	}
	// A grant without ONCE once every token expired drops the table.
	s.do(t0+3*onceLife, "LIMITS 5/1s")
	if v, _ := Decode(s.val); len(v.Tokens) != 0 || s.val[0] != encV2 {
		t.Fatalf("tokens %d, version %d after they expired", len(v.Tokens), s.val[0])
	}
}

// TestOnceTableGrowth: thousands of tokens in 10 s on one key all replay; the table
// grows, and shrinks again as they expire.
func TestOnceTableGrowth(t *testing.T) {
	s := &store{t: t, every: 97}
	const t0 = 5_000_000
	replies := map[string][NumFields]int64{}
	for i := range 3000 {
		tok := "tok-" + strconv.Itoa(i)
		r := s.do(t0+int64(i), "MAX 2 MIN 1 ONCE "+tok+" LIMITS 1000000/1h")
		replies[tok] = r.Fields
		if i%7 == 0 {
			// Replays of an earlier token in between.
			old := "tok-" + strconv.Itoa(i/2)
			if rr := s.do(t0+int64(i), "ONCE "+old+" LIMITS 1000000/1h"); !rr.Replay || rr.Fields != replies[old] {
				t.Fatalf("replay of %s at %d: %+v", old, i, rr)
			}
		}
	}
	v, _ := Decode(s.val)
	if len(v.Tokens) != 3000 {
		t.Fatalf("%d tokens remembered, want 3000", len(v.Tokens))
	}
	n := (len(s.val) - 1) / tokSlot
	if n > 8192 {
		t.Fatalf("table of about %d slots for 3000 tokens", n)
	}
	// 20 s later, a new token: the table holds one.
	s.do(t0+3000+2*onceLife, "ONCE late LIMITS 1000000/1h")
	if v, _ := Decode(s.val); len(v.Tokens) != 1 {
		t.Fatalf("%d tokens after the others expired", len(v.Tokens))
	}
}

// TestAllocsCapsOnce: the hot path with caps (exact and bucketed, per-domain and
// global) and a fresh ONCE token on every request, grants and rejections, allocates
// nothing once the buffers are large enough, table rebuilds and new buckets included.
func TestAllocsCapsOnce(t *testing.T) {
	args := words("MAX 3 MIN 1 ONCE x CAP 100000 60000 CAP 50 500 GLOBAL g 1000/1s,5000000/1h LIMITS 5/1s,50/5s/5s/15s")
	toks := make([][]byte, 4096)
	for i := range toks {
		toks[i] = []byte("token-" + strconv.Itoa(i))
	}
	var req Request
	var p Parser
	val := make([]byte, 0, 1<<20)
	gval := make([]byte, 0, 1<<16)
	out := make([]byte, 0, 1<<20)
	gout := make([]byte, 0, 1<<16)
	now := int64(1_000_000)
	var grants, rejects, i int
	step := func() {
		now += 7
		i++
		args[5] = toks[i%len(toks)]
		if err := p.Parse(args, &req); err != nil {
			t.Fatal(err)
		}
		res, nv, ngv, err := ApplyInPlace(val, gval, &req, now, out, gout)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Write {
			rejects++
			return
		}
		grants++
		val = append(val[:0], nv...)
		gval = append(gval[:0], ngv...)
	}
	for range 3000 {
		step()
	}
	grants, rejects = 0, 0
	if a := testing.AllocsPerRun(3000, step); a != 0 {
		t.Fatalf("Apply with caps and ONCE: %v allocs", a)
	}
	if grants == 0 || rejects == 0 {
		t.Fatalf("the run must mix grants (%d) and rejections (%d)", grants, rejects)
	}
	checkWritten(t, "after the run", val)
}

// TestOnceCrowdedTokens: tokens chosen so that their hashes agree in the low 19 bits
// (the table's largest mask) all land on one chain at every table size. A key takes
// 65 of them (the last 64 slots past the home slot); the 66th is refused with
// ErrTooManyTokens rather than making every lookup on the key walk a long chain.
func TestOnceCrowdedTokens(t *testing.T) {
	var toks []string
	for i := 0; len(toks) < maxProbe+2; i++ {
		tok := "crowd-" + strconv.Itoa(i)
		if OnceHash([]byte(tok))&(maxTok-1) == 0 {
			toks = append(toks, tok)
		}
	}
	s := &store{t: t}
	for i, tok := range toks[:maxProbe+1] {
		if r := s.do(int64(1_000_000+i), "ONCE "+tok+" LIMITS 1000/1s"); !r.Granted || r.Replay {
			t.Fatalf("token %d: %+v", i, r)
		}
	}
	for i, tok := range toks[:maxProbe+1] {
		if r := s.do(int64(1_000_100), "ONCE "+tok+" LIMITS 1000/1s"); !r.Replay {
			t.Fatalf("token %d is not remembered", i)
		}
	}
	var req Request
	if err := ParseRequest(words("ONCE "+toks[maxProbe+1]+" LIMITS 1000/1s"), &req); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Apply(s.val, nil, &req, 1_000_200, nil, nil); !errors.Is(err, ErrTooManyTokens) {
		t.Fatalf("the 66th crowded token: %v, want ErrTooManyTokens", err)
	}
}
