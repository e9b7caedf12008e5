package hold

import (
	"errors"
	"strings"
	"testing"
)

// store runs requests the way the glue does, over in-memory keys.
type store struct {
	keys map[string]View
	req  Request
	res  Result
	next uint64
	last []string // the keys the last request named
}

func newStore() *store { return &store{keys: map[string]View{}, next: 0x1000} }

func (st *store) names(req *Request, key []byte, rest [][]byte) []string {
	n := []string{string(key)}
	if req.HasGlobal {
		n = append(n, string(rest[req.GlobalIdx]))
	}
	for g := 0; g < req.NGroups; g++ {
		n = append(n, string(rest[req.GroupIdx[g]]))
	}
	return n
}

// do runs "CMD key args..." at time now.
func (st *store) do(t *testing.T, line string, now int64) (*Result, error) {
	t.Helper()
	f := strings.Fields(line)
	var cmd Cmd
	switch strings.ToUpper(f[0]) {
	case "RESERVE":
		cmd = Reserve
	case "RELEASE":
		cmd = Release
	case "RENEW":
		cmd = Renew
	case "TRANSFER":
		cmd = Transfer
	case "SEIZE":
		cmd = Seize
	}
	args := make([][]byte, len(f))
	for i := range f {
		args[i] = []byte(f[i])
	}
	rest := args[2:]
	if err := Parse(cmd, rest, &st.req); err != nil {
		return nil, err
	}
	if err := st.req.CheckKeys(args[1], rest); err != nil {
		return nil, err
	}
	names := st.names(&st.req, args[1], rest)
	st.last = names
	keys := make(Keys, len(names))
	for i, n := range names {
		keys[i] = st.keys[n]
	}
	st.next++
	if err := Plan(&st.req, keys, now, st.next, &st.res); err != nil {
		return nil, err
	}
	if st.res.Write {
		if st.req.Once && !TokenRoomAfterPrune(keys[0], st.res.T) {
			return nil, errTooManyTokens
		}
		for i := range keys {
			if keys[i] == nil || NeedsRoom(&st.req, &st.res, keys[i]) {
				keys[i] = grow(keys[i])
			}
		}
		if NeedsTokenRoom(&st.req, &st.res, keys[0]) {
			keys[0] = growTokens(keys[0])
		}
		Commit(&st.req, keys, &st.res)
		for i, n := range names {
			if ExpireAt(keys[i], st.res.T, 0) == 0 {
				delete(st.keys, n)
			} else {
				st.keys[n] = keys[i]
			}
		}
	}
	res := st.res
	return &res, nil
}

var errTooManyTokens = errors.New("too many tokens")

// growTokens mimics the glue: the token ring doubles (up to MaxTokens).
func growTokens(v View) View {
	tc := min(max(MinTokCap, 2*v.TokCap()), MaxTokens)
	return v.RebuildWith(make([]byte, SizeWith(v.Cap(), tc)), v.Cap(), tc)
}

func hex(id uint64) string {
	var b [16]byte
	FormatID(&b, id)
	return string(b[:])
}

func TestReserveLimits(t *testing.T) {
	st := newStore()
	r, err := st.do(t, "RESERVE d:a MAX 3 LIMIT 5 GLOBAL g 6", 1000)
	if err != nil || r.Granted != 3 || r.Held != 3 || r.GlobalHeld != 3 || r.Deadline != 61000 || r.LimitedBy != LimitedNone {
		t.Fatalf("first: %+v %v", r, err)
	}
	// Another domain under the same global key: only 3 left globally.
	r, _ = st.do(t, "RESERVE d:b MAX 5 MIN 1 LIMIT 5 GLOBAL g 6", 1001)
	if r.Granted != 3 || r.LimitedBy != LimitedGlobal || r.GlobalHeld != 6 {
		t.Fatalf("second: %+v", r)
	}
	// Rejected: nothing fits; the global key frees its first 3 copies at 61000.
	r, _ = st.do(t, "RESERVE d:a MAX 2 LIMIT 5 GLOBAL g 6 LEASE 10", 1002)
	if r.Granted != 0 || r.Write || r.ID != 0 || r.RetryAfter != 61000-1002 || r.LimitedBy != LimitedGlobal {
		t.Fatalf("rejected: %+v", r)
	}
	// MIN above a limit can never fit.
	r, _ = st.do(t, "RESERVE d:a MAX 9 LIMIT 5", 1003)
	if r.Granted != 0 || r.RetryAfter != -1 {
		t.Fatalf("never: %+v", r)
	}
	// At the deadline the copies count nowhere (t < deadline rule).
	r, _ = st.do(t, "RESERVE d:a MAX 5 MIN 1 LIMIT 5 GLOBAL g 6", 61000)
	if r.Granted != 3 || r.Held != 3 || r.GlobalHeld != 6 {
		t.Fatalf("after the deadline: %+v", r)
	}
	if v := st.keys["d:a"]; v.Len() != 1 {
		t.Fatalf("expired hold not pruned on the write: %d holds", v.Len())
	}
}

func TestGroupsAndBlockList(t *testing.T) {
	st := newStore()
	r, _ := st.do(t, "RESERVE d:a MAX 2 LIMIT 10 GROUP pool 3 other 10", 0)
	if r.Granted != 2 {
		t.Fatalf("%+v", r)
	}
	r, _ = st.do(t, "RESERVE d:b MAX 2 MIN 1 LIMIT 10 GROUP pool 3", 1)
	if r.Granted != 1 || r.LimitedBy != LimitedGroup {
		t.Fatalf("pool: %+v", r)
	}
	r, _ = st.do(t, "RESERVE d:c LIMIT 10 GROUP other 10 blocked 0", 2)
	if r.Granted != 0 || r.LimitedBy != LimitedGroup+1 || r.RetryAfter != -1 {
		t.Fatalf("block list: %+v", r)
	}
}

func TestReleaseRenewTransferSeize(t *testing.T) {
	st := newStore()
	r, _ := st.do(t, "RESERVE d MAX 4 LIMIT 4 GLOBAL g 10", 100)
	id := hex(r.ID)
	// Releasing an unknown hold is not an error and writes nothing.
	r2, err := st.do(t, "RELEASE d 00000000000000ff GLOBAL g", 101)
	if err != nil || r2.Copies != 0 || r2.Write || r2.Held != 4 {
		t.Fatalf("unknown release: %+v %v", r2, err)
	}
	r2, _ = st.do(t, "RELEASE d "+id+" COPIES 1 GLOBAL g", 102)
	if r2.Copies != 1 || r2.Remaining != 3 || r2.Held != 3 || r2.Deadline != 60100 {
		t.Fatalf("partial release: %+v", r2)
	}
	r2, _ = st.do(t, "RENEW d "+id+" LEASE 1000 GLOBAL g", 200)
	if r2.Copies != 3 || r2.Deadline != 1200 {
		t.Fatalf("renew: %+v", r2)
	}
	x, err := st.do(t, "TRANSFER d "+id+" COPIES 2 TTL 50 GLOBAL g", 300)
	if err != nil || x.Copies != 2 || x.Remaining != 1 || x.Deadline != 350 || x.ID == 0 || x.Held != 3 {
		t.Fatalf("transfer: %+v %v", x, err)
	}
	if g := st.keys["g"]; g.Live(300) != 3 || g.Len() != 2 {
		t.Fatalf("global after transfer: %d live in %d holds", g.Live(300), g.Len())
	}
	s, err := st.do(t, "SEIZE d "+hex(x.ID)+" LEASE 5000 GLOBAL g", 340)
	if err != nil || s.Copies != 2 || s.Deadline != 5340 {
		t.Fatalf("seize: %+v %v", s, err)
	}
	// The original hold ends at 1200: renewing it later says the client lost it.
	if _, err := st.do(t, "RENEW d "+id+" GLOBAL g", 1200); !errors.Is(err, ErrLost) {
		t.Fatalf("renew after deadline: %v", err)
	}
	if _, err := st.do(t, "TRANSFER d "+hex(x.ID)+" COPIES 3 TTL 5", 400); err == nil {
		t.Fatal("transfer of more copies than held accepted")
	}
	r2, _ = st.do(t, "RELEASE d "+hex(x.ID)+" GLOBAL g", 1300)
	if r2.Copies != 2 || r2.Held != 0 {
		t.Fatalf("final release: %+v", r2)
	}
	if len(st.keys) != 0 {
		t.Fatalf("empty keys not deleted: %v", len(st.keys))
	}
}

// A clock that steps back (failover to a replica behind) never frees a hold early.
func TestClockStepsBack(t *testing.T) {
	st := newStore()
	st.do(t, "RESERVE d MAX 2 LIMIT 2 LEASE 100", 10_000)
	r, _ := st.do(t, "RESERVE d LIMIT 2", 5_000) // the clock is 5 s behind
	if r.Granted != 0 || r.RetryAfter != 100 {
		t.Fatalf("step back: %+v", r)
	}
	r, _ = st.do(t, "RESERVE d LIMIT 2", 10_100)
	if r.Granted != 1 {
		t.Fatalf("at the deadline: %+v", r)
	}
}

func TestDryRun(t *testing.T) {
	st := newStore()
	r, _ := st.do(t, "RESERVE d MAX 2 LIMIT 2 DRYRUN", 0)
	if r.Granted != 2 || r.Write || r.ID != 0 || len(st.keys) != 0 {
		t.Fatalf("dryrun: %+v", r)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		cmd       Cmd
		line, arg string
	}{
		{Reserve, "MAX 0 LIMIT 1", "MAX"},
		{Reserve, "MAX 2 MIN 3 LIMIT 5", "MIN"},
		{Reserve, "MAX 2", "LIMIT"},
		{Reserve, "LIMIT -1", "LIMIT"},
		{Reserve, "LIMIT 1 LEASE 0", "LEASE"},
		{Reserve, "LIMIT 1 AT x", "AT"},
		{Reserve, "LIMIT 1 GLOBAL g", "GLOBAL"},
		{Reserve, "LIMIT 1 GROUP a", "GROUP"},
		{Reserve, "LIMIT 1 GROUP a 1 b", "GROUP"},
		{Reserve, "LIMIT 1 BOGUS", "syntax"},
		{Reserve, "LIMIT 1 LIMIT 2", "LIMIT"},
		{Reserve, "LIMIT 1 ID 0000000000000000", "ID"},
		{Release, "xyz", "hold"},
		{Release, "", "hold"},
		{Release, "00000000000000ff COPIES 0", "COPIES"},
		{Release, "00000000000000ff LEASE 5", "syntax"},
		{Transfer, "00000000000000ff", "TTL"},
		{Renew, "00000000000000ff LEASE 315360000001", "LEASE"},
	}
	var req Request
	for _, c := range cases {
		var args [][]byte
		for _, f := range strings.Fields(c.line) {
			args = append(args, []byte(f))
		}
		err := Parse(c.cmd, args, &req)
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Arg != c.arg {
			t.Errorf("%v %q: got %v, want an error naming %s", c.cmd, c.line, err, c.arg)
		}
	}
}

func TestKeysNamedTwice(t *testing.T) {
	st := newStore()
	for _, line := range []string{"RESERVE d LIMIT 1 GLOBAL d 1", "RESERVE d LIMIT 1 GROUP a 1 a 2", "RESERVE d LIMIT 1 GLOBAL g 1 GROUP g 1"} {
		if _, err := st.do(t, line, 0); err == nil {
			t.Errorf("%q accepted", line)
		}
	}
}

// The hot path (plan + commit of a RESERVE and its RELEASE) allocates nothing.
func TestHotPathAllocs(t *testing.T) {
	v := fill(10_000)
	var req, rel Request
	reserveArgs := [][]byte{[]byte("LIMIT"), []byte("100000"), []byte("LEASE"), []byte("1000000000")}
	var res Result
	keys := Keys{v}
	now := int64(1_000_000)
	id := uint64(1 << 40)
	allocs := testing.AllocsPerRun(200, func() {
		if err := Parse(Reserve, reserveArgs, &req); err != nil {
			t.Fatal(err)
		}
		now++
		id++
		if err := Plan(&req, keys, now, id, &res); err != nil || !res.Write {
			t.Fatal("not granted")
		}
		Commit(&req, keys, &res)
		var hexid [16]byte
		FormatID(&hexid, id)
		if err := Parse(Release, [][]byte{hexid[:]}, &rel); err != nil {
			t.Fatal(err)
		}
		if err := Plan(&rel, keys, now, 0, &res); err != nil || res.Copies != 1 {
			t.Fatal("not released")
		}
		Commit(&rel, keys, &res)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per reserve+release", allocs)
	}
}

// fill returns a value holding n live holds (deadlines far ahead) with room for more.
func fill(n int) View {
	c := CapFor(n + 1)
	if c == n {
		c *= 2
	}
	v := Init(make([]byte, SizeFor(c)), c)
	v.Touch(1_000_000, 100_000)
	for i := 0; i < n; i++ {
		v.Insert(uint64(i+1)*0x9e3779b97f4a7c15|1, 1, 500_000_000+int64(i))
	}
	return v
}

func benchPair(b *testing.B, n int) {
	v := fill(n)
	var req, rel Request
	reserveArgs := [][]byte{[]byte("LIMIT"), []byte("100000"), []byte("LEASE"), []byte("1000000000")}
	var res Result
	keys := Keys{v}
	now := int64(1_000_000)
	id := uint64(1 << 40)
	var hexid [16]byte
	b.ReportAllocs()
	for b.Loop() {
		Parse(Reserve, reserveArgs, &req)
		now++
		id++
		Plan(&req, keys, now, id, &res)
		Commit(&req, keys, &res)
		FormatID(&hexid, id)
		Parse(Release, [][]byte{hexid[:]}, &rel)
		Plan(&rel, keys, now, 0, &res)
		Commit(&rel, keys, &res)
	}
}

func BenchmarkReserveRelease10(b *testing.B)    { benchPair(b, 10) }
func BenchmarkReserveRelease10000(b *testing.B) { benchPair(b, 10_000) }

// A group key spelled like an option is an option given after GROUP: refused with
// "GROUP comes last", whatever its case and position.
func TestGroupComesLast(t *testing.T) {
	var req Request
	for _, c := range []struct {
		cmd  Cmd
		line string
	}{
		{Reserve, "LIMIT 5 GROUP g 3 LIMIT 2"},
		{Reserve, "MAX 2 GROUP g 3 limit 2"},
		{Reserve, "LIMIT 5 GROUP g 3 LEASE 100"},
		{Reserve, "LIMIT 5 GROUP g 3 AT 4102444800000"},
		{Reserve, "LIMIT 5 GROUP g 3 DRYRUN"},
		{Reserve, "LIMIT 5 GROUP g 3 BLOCK 100"},
		{Reserve, "LIMIT 5 GROUP g 3 ONCE tok"},
		{Reserve, "LIMIT 5 GROUP g 3 GLOBAL gk 10"},
		{Reserve, "GROUP Max 3"},
		{Reserve, "GROUP min 3"},
		{Release, "00000000000000ff GROUP g AT 5"},
		{Renew, "00000000000000ff GROUP g LEASE 5"},
		{Transfer, "00000000000000ff TTL 5 GROUP g COPIES 1"},
		{Seize, "00000000000000ff GROUP g GLOBAL x"},
	} {
		var args [][]byte
		for _, f := range strings.Fields(c.line) {
			args = append(args, []byte(f))
		}
		err := Parse(c.cmd, args, &req)
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Arg != "GROUP" || !strings.Contains(ae.Reason, "GROUP comes last") {
			t.Errorf("%v %q: got %v, want GROUP comes last", c.cmd, c.line, err)
		}
	}
	// Keys that merely contain a keyword are keys.
	args := [][]byte{[]byte("LIMIT"), []byte("5"), []byte("GROUP"), []byte("limits"), []byte("3"), []byte("g:LIMIT"), []byte("2")}
	if err := Parse(Reserve, args, &req); err != nil || req.NGroups != 2 {
		t.Fatalf("got %v (%d groups)", err, req.NGroups)
	}
}
