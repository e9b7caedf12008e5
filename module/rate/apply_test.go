package rate

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
)

const base = int64(1_700_000_000_000)

// lim drives one key (and optionally its global key) through Apply like the glue does.
type lim struct {
	t    *testing.T
	cfg  string
	val  map[string][]byte
	last Result
}

func newLim(t *testing.T, cfg string) *lim {
	return &lim{t: t, cfg: cfg, val: map[string][]byte{}}
}

func words(s string) [][]byte {
	var out [][]byte
	for _, w := range strings.Fields(s) {
		out = append(out, []byte(w))
	}
	return out
}

// parse builds the request and returns the global key's name ("" without GLOBAL).
func (l *lim) parse(at int64, args string) (*Request, string) {
	l.t.Helper()
	var req Request
	full := words(args + " AT " + strconv.FormatInt(base+at, 10) + " " + l.cfg)
	if err := ParseRequest(full, &req); err != nil {
		l.t.Fatalf("parse %q: %v", full, err)
	}
	if req.HasGlobal {
		return &req, string(full[req.GlobalKeyIdx])
	}
	return &req, ""
}

// run applies args (plus AT and the tier configuration) to key at base+at and stores
// the new values.
func (l *lim) run(key string, at int64, args string) Result {
	l.t.Helper()
	req, gkey := l.parse(at, args)
	before, gbefore := bytes.Clone(l.val[key]), bytes.Clone(l.val[gkey])
	res, nv, ngv, err := Apply(l.val[key], l.val[gkey], req, base+at, nil, nil)
	if err != nil {
		l.t.Fatalf("at %d %q: %v", at, args, err)
	}
	if !res.Write {
		if nv != nil || ngv != nil {
			l.t.Fatalf("at %d: values without Write", at)
		}
		if !bytes.Equal(before, l.val[key]) || !bytes.Equal(gbefore, l.val[gkey]) {
			l.t.Fatalf("at %d: state changed", at)
		}
	} else {
		if err := Validate(nv); err != nil {
			l.t.Fatalf("at %d: %v", at, err)
		}
		l.val[key] = bytes.Clone(nv)
		if req.HasGlobal {
			l.val[gkey] = bytes.Clone(ngv)
		}
	}
	if res.Granted && res.Fields[FieldRetryAfter] != 0 {
		l.t.Fatalf("at %d: granted with retry_after %d", at, res.Fields[FieldRetryAfter])
	}
	if !res.Granted && res.Fields[FieldRetryAfter] > 0 {
		l.checkRetry(key, at, args, res)
	}
	l.last = res
	return res
}

// checkRetry proves retry_after: the same request is granted at t+retry_after and,
// when retry_after > 1, still rejected one millisecond earlier.
func (l *lim) checkRetry(key string, at int64, args string, res Result) {
	l.t.Helper()
	ra := res.Fields[FieldRetryAfter]
	tAt := res.T - base
	probe := func(d int64) bool {
		req, gkey := l.parse(tAt+d, args+" DRYRUN")
		r, nv, _, err := Apply(l.val[key], l.val[gkey], req, req.At, nil, nil)
		if err != nil || nv != nil {
			l.t.Fatalf("probe: %v", err)
		}
		return r.Granted
	}
	if !probe(ra) {
		l.t.Fatalf("at %d %q: retry_after %d but not granted then", at, args, ra)
	}
	if ra > 1 && probe(ra-1) {
		l.t.Fatalf("at %d %q: retry_after %d but granted 1 ms earlier", at, args, ra)
	}
}

// expect checks "name=value" pairs of the last reply.
func (l *lim) expect(at int64, args, want string) {
	l.t.Helper()
	res := l.run("k", at, args)
	checkFields(l.t, "at "+strconv.FormatInt(at, 10)+" "+args, res, want)
}

func checkFields(t *testing.T, ctx string, res Result, want string) {
	t.Helper()
	for _, kv := range strings.Fields(want) {
		name, val, _ := strings.Cut(kv, "=")
		v, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			t.Fatalf("bad expectation %q", kv)
		}
		i := fieldIndex(name)
		if i < 0 {
			t.Fatalf("unknown field %q", name)
		}
		if res.Fields[i] != v {
			t.Fatalf("%s: %s = %d, want %d (reply %v)", ctx, name, res.Fields[i], v, res.Fields)
		}
	}
}

func fieldIndex(name string) int {
	for i, n := range FieldNames {
		if n == name {
			return i
		}
	}
	return -1
}

type row struct {
	at   int64
	args string
	want string
}

func runRows(t *testing.T, cfg string, rows []row) *lim {
	t.Helper()
	l := newLim(t, cfg)
	for _, r := range rows {
		l.expect(r.at, r.args, r.want)
	}
	return l
}

func TestPatternSimple(t *testing.T) {
	runRows(t, "TIER 5 1000 1000 0", []row{
		{0, "MAX 5", "granted=5 tier=1 tier_limit=5 tier_hits=5 domain_hits=5 global_hits=-1 burst=0 retry_after=0 reset_after=1001"},
		{10, "MAX 1", "granted=0 tier=1 tier_hits=5 retry_after=991 reset_after=991"},
		{500, "MAX 3 MIN 0", "granted=0 retry_after=501"},
		{1000, "", "granted=0 tier=1 retry_after=1"},
		{1001, "MAX 7 MIN 1", "granted=5 tier=1 tier_hits=5 domain_hits=5 reset_after=1001"},
		{1500, "MAX 1", "granted=0 retry_after=502"},
		{2002, "MAX 2", "granted=2 tier=1 tier_hits=2"},
		{2003, "MAX 2", "granted=2 tier_hits=4 domain_hits=4"},
		{2004, "MAX 2", "granted=0 tier_hits=4 retry_after=999"},
		{2004, "MAX 2 MIN 1", "granted=1 tier_hits=5"},
	})
}

func TestPatternPenalty(t *testing.T) {
	runRows(t, "TIER 5 1000 1000 0 TIER 50 5000 5000 15000", []row{
		{0, "MAX 5", "granted=5 tier=1 tier_hits=5 burst=0"},
		{100, "MAX 1", "granted=1 tier=2 tier_limit=50 tier_hits=1 burst=1 reset_after=20001"},
		{200, "MAX 49", "granted=49 tier=2 tier_hits=50 burst=0"},
		// Tier 1 has room again but tier 2 is the current tier (rule 3).
		{1500, "MAX 1", "granted=0 tier=2 tier_hits=50 retry_after=3601"},
		{5101, "MAX 5", "granted=5 tier=1 tier_limit=5 tier_hits=5"},
		// Tier 2 in cooldown stops the climb.
		{5200, "MAX 1", "granted=0 tier=1 retry_after=902"},
		{6102, "MAX 10 MIN 1", "granted=5 tier=1"},
		{20050, "MAX 6", "granted=0 retry_after=51"},
		{20101, "MAX 6", "granted=6 tier=2 tier_hits=1 burst=1"},
	})
}

func TestPatternPunishment(t *testing.T) {
	runRows(t, "TIER 5 1000 1000 0 TIER 1 15000 15000 0", []row{
		{0, "MAX 5", "granted=5 tier=1"},
		{10, "MAX 1", "granted=1 tier=2 tier_limit=1 tier_hits=1 burst=1 reset_after=15001"},
		{20, "MAX 1", "granted=0 tier=2 retry_after=14991"},
		{1500, "MAX 1", "granted=0 tier=2 retry_after=13511"},
		{15010, "MAX 1", "granted=0 tier=2 retry_after=1"},
		{15011, "MAX 1", "granted=1 tier=1 tier_hits=1 burst=0"},
	})
}

func TestPatternBatch(t *testing.T) {
	runRows(t, "TIER 50 60000 60000 3540000", []row{
		{0, "MAX 10", "granted=10 tier=1 tier_limit=50 tier_hits=10 reset_after=3600001"},
		{1000, "MAX 40", "granted=40 tier_hits=50 reset_after=3599001"},
		{2000, "MAX 1", "granted=0 tier=1 retry_after=3598001"},
		{60000, "MAX 1", "granted=0 tier=1 tier_hits=50 retry_after=3540001"},
		// In cooldown: nothing is ACTIVE (tier 0) and tier 1 blocks the climb.
		{60001, "MAX 1", "granted=0 tier=0 tier_limit=50 tier_hits=40 retry_after=3540000"},
		{3600000, "MAX 1", "granted=0 tier=0 tier_hits=0 retry_after=1 reset_after=1"},
		{3600001, "MAX 50", "granted=50 tier=1 tier_hits=50"},
	})
}

// Rule 1: ACTIVE while e <= t <= e+A, COOLDOWN while e+A < t <= e+A+C.
func TestRule1States(t *testing.T) {
	l := newLim(t, "TIER 1 100 100 0 TIER 100 10 50 30")
	l.expect(0, "", "granted=1 tier=1")
	l.expect(0, "", "granted=1 tier=2 burst=1")
	for _, c := range []struct {
		at    int64
		state [2]TierState
		tier  int
	}{
		{0, [2]TierState{Active, Active}, 2},
		{50, [2]TierState{Active, Active}, 2},
		{51, [2]TierState{Active, Cooldown}, 1},
		{80, [2]TierState{Active, Cooldown}, 1},
		{81, [2]TierState{Active, Inactive}, 1},
		{100, [2]TierState{Active, Inactive}, 1},
		{101, [2]TierState{Inactive, Inactive}, 0},
	} {
		info, err := Inspect(l.val["k"], base+c.at)
		if err != nil {
			t.Fatal(err)
		}
		if info.Tiers[0].State != c.state[0] || info.Tiers[1].State != c.state[1] || info.CurrentTier != c.tier {
			t.Fatalf("at %d: states %v %v current %d, want %v current %d", c.at, info.Tiers[0].State, info.Tiers[1].State, info.CurrentTier, c.state, c.tier)
		}
	}
	// The reply's tier follows the same states.
	l.expect(51, "MAX 1", "granted=0 tier=1")
	l.expect(101, "MAX 1 DRYRUN", "granted=1 tier=1")
}

// Rule 2: tier 1 keeps its hits across its own state changes; an INACTIVE higher tier
// forgets its hits.
func TestRule2Windows(t *testing.T) {
	// Tier 1 active only 100 ms, but its 10 s window still counts.
	l := newLim(t, "TIER 2 10000 100 0")
	l.expect(0, "MAX 2", "granted=2")
	l.expect(200, "MAX 1", "granted=0 tier=0 tier_hits=2 retry_after=9801")
	l.expect(10001, "MAX 2", "granted=2")

	// Tier 2 is full at t=2, becomes INACTIVE at 1002; its window (100 s) would still
	// hold both hits, but they are forgotten.
	l = newLim(t, "TIER 1 10000 10000 0 TIER 2 100000 1000 0")
	l.expect(0, "", "granted=1 tier=1")
	l.expect(1, "", "granted=1 tier=2 burst=1")
	l.expect(2, "", "granted=1 tier=2 tier_hits=2")
	l.expect(3, "", "granted=0 tier=2 retry_after=999")
	l.expect(1001, "", "granted=0 tier=2")
	l.expect(1002, "", "granted=1 tier=2 tier_hits=1 burst=1")
	// A hit exactly W old still counts (ts >= t-W); one more ms and it leaves.
	l = newLim(t, "TIER 1 500 100000 0")
	l.expect(0, "", "granted=1")
	l.expect(500, "", "granted=0 retry_after=1")
	l.expect(501, "", "granted=1")
}

// Rule 3: the current tier is the highest ACTIVE one, even when a lower one has room.
func TestRule3CurrentTier(t *testing.T) {
	l := newLim(t, "TIER 1 100 10000 0 TIER 1 10000 10000 0 TIER 5 10000 10000 0")
	l.expect(0, "", "granted=1 tier=1")
	l.expect(1, "MAX 2", "granted=2 tier=3 burst=1")
	// Tier 1's window is empty again at 101 but the climb starts at tier 3.
	l.expect(200, "MAX 1", "granted=1 tier=3 tier_hits=2 burst=0")
	info, err := Inspect(l.val["k"], base+200)
	if err != nil {
		t.Fatal(err)
	}
	if info.Tiers[0].Hits != 0 || info.Tiers[1].Hits != 1 || info.Tiers[2].Hits != 2 {
		t.Fatalf("hits %d %d %d", info.Tiers[0].Hits, info.Tiers[1].Hits, info.Tiers[2].Hits)
	}
}

// Rule 4: HARD and GLOBAL lower MAX.
func TestRule4Caps(t *testing.T) {
	l := newLim(t, "TIER 100 1000 1000 0")
	l.expect(0, "MAX 5 MIN 1 HARD 3", "granted=3 hard_limited=1 domain_hits=3")
	l.expect(1, "MAX 5 MIN 1 HARD 3", "granted=0 hard_limited=1 domain_hits=3 retry_after=1000")
	l.expect(1, "MAX 5 MIN 1 HARD 30", "granted=5 hard_limited=0 domain_hits=8")
	l.expect(2, "MAX 5 HARD 10", "granted=0 hard_limited=1 retry_after=999")
	l.expect(3, "MAX 5 HARD 1", "granted=0 hard_limited=1 retry_after=-1")
	l.expect(4, "MAX 1 HARD 0", "granted=0 hard_limited=1 retry_after=-1")

	// GLOBAL: two domains share one resource-wide log.
	g := newLim(t, "TIER 100 1000 1000 0")
	r := g.run("a", 0, "GLOBAL gk 5 MAX 3")
	checkFields(t, "a@0", r, "granted=3 global_hits=3 global_limited=0")
	if r.GlobalExpireAt != base+1001 {
		t.Fatalf("GlobalExpireAt %d", r.GlobalExpireAt)
	}
	r = g.run("b", 10, "GLOBAL gk 5 MAX 3 MIN 1")
	checkFields(t, "b@10", r, "granted=2 global_hits=5 global_limited=1 domain_hits=2")
	r = g.run("b", 20, "GLOBAL gk 5 MAX 3 MIN 1")
	checkFields(t, "b@20", r, "granted=0 global_hits=5 global_limited=1 retry_after=981")
	r = g.run("a", 1001, "GLOBAL gk 5 MAX 3 MIN 1")
	checkFields(t, "a@1001", r, "granted=3 global_hits=5 global_limited=0")
	r = g.run("a", 1002, "MAX 3")
	checkFields(t, "a@1002 without GLOBAL", r, "granted=3 global_hits=-1 global_limited=0")
	r = g.run("b", 1003, "GLOBAL gk 2 MAX 3")
	checkFields(t, "b@1003", r, "granted=0 retry_after=-1 global_limited=1")
	// The global key's newest time moves a domain's effective time forward (rule 8).
	r = g.run("c", 500, "GLOBAL gk 100 MAX 1")
	if r.T != base+1001 {
		t.Fatalf("T = %d", r.T-base)
	}
}

// Rule 5: the climb takes from each tier in turn; COOLDOWN stops it unless skippable.
func TestRule5Climb(t *testing.T) {
	l := newLim(t, "TIER 2 10000 10000 0 TIER 3 10000 10000 0 TIER 3 10000 10000 0")
	l.expect(0, "MAX 7", "granted=7 tier=3 tier_hits=2 burst=1")
	l.expect(1, "MAX 5 MIN 0", "granted=1 tier=3 tier_hits=3")

	// Tier 2 in cooldown, not skippable: the climb stops at it.
	cfg := "TIER 1 10000 10000 0 TIER 1 10000 100 100000 TIER 5 10000 10000 0"
	l = newLim(t, cfg)
	l.expect(0, "MAX 2", "granted=2 tier=2 burst=1")
	l.expect(200, "MAX 1", "granted=0 tier=1 retry_after=9801")

	// The same tier skippable: passed over, not entered, gives nothing.
	l = newLim(t, "TIER 1 10000 10000 0 TIER 1 10000 100 100000 SKIPPABLE TIER 5 10000 10000 0")
	l.expect(0, "MAX 2", "granted=2 tier=2 burst=1")
	l.expect(200, "MAX 3", "granted=3 tier=3 tier_hits=3 burst=1")
	info, _ := Inspect(l.val["k"], base+200)
	if info.Tiers[1].State != Cooldown || info.Tiers[1].EnteredAt != base || info.Tiers[2].EnteredAt != base+200 {
		t.Fatalf("tiers %+v", info.Tiers)
	}
}

// Rule 6: below MIN, or nothing, is a rejection that changes nothing.
func TestRule6Decision(t *testing.T) {
	l := newLim(t, "TIER 3 1000 1000 0")
	l.expect(0, "MAX 2", "granted=2")
	before := bytes.Clone(l.val["k"])
	l.expect(1, "MAX 2", "granted=0 tier_hits=2 retry_after=1000")
	l.expect(1, "MAX 5 MIN 2", "granted=0")
	l.expect(1, "MAX 5 MIN 0", "granted=1")
	after := bytes.Clone(l.val["k"])
	if bytes.Equal(before, after) {
		t.Fatal("grant did not change the value")
	}
	l.expect(2, "MAX 5 MIN 0", "granted=0 retry_after=999")
	if !bytes.Equal(after, l.val["k"]) {
		t.Fatal("rejection changed the value")
	}
}

// Rule 7: a tier the climb takes part in is entered even when it gives nothing.
func TestRule7Recording(t *testing.T) {
	l := newLim(t, "TIER 1 10000 10000 0 TIER 0 10000 5000 0 TIER 5 10000 10000 0")
	l.expect(0, "MAX 3", "granted=3 tier=3 burst=1")
	info, _ := Inspect(l.val["k"], base)
	for i, ti := range info.Tiers {
		if !ti.Entered || ti.EnteredAt != base {
			t.Fatalf("tier %d not entered at t: %+v", i+1, ti)
		}
	}
	if info.Tiers[0].Hits != 1 || info.Tiers[1].Hits != 0 || info.Tiers[2].Hits != 2 {
		t.Fatalf("hits %+v", info.Tiers)
	}
	if len(info.SecondLog) != 1 || info.SecondLog[0] != (LogEntry{base, 3}) {
		t.Fatalf("second log %+v", info.SecondLog)
	}
}

// Rule 8: the effective time never goes back.
func TestRule8MonotonicTime(t *testing.T) {
	l := newLim(t, "TIER 1 1000 1000 0")
	r := l.run("k", 5000, "")
	if r.T != base+5000 {
		t.Fatal(r.T)
	}
	r = l.run("k", 4000, "")
	checkFields(t, "back", r, "granted=0 retry_after=1001")
	if r.T != base+5000 {
		t.Fatalf("T went back to %d", r.T-base)
	}
	r = l.run("k", 6001, "")
	checkFields(t, "later", r, "granted=1")
}

// Rule 9: CLOSED (no tiers) closes the resource.
func TestRule9ZeroTiers(t *testing.T) {
	l := newLim(t, "CLOSED")
	l.expect(0, "MAX 1", "granted=0 tier=0 tier_limit=0 tier_hits=0 retry_after=-1 reset_after=0")
	// A key with state and zero tiers: still closed, state untouched.
	l.cfg = "TIER 5 1000 1000 0"
	l.expect(10, "MAX 2", "granted=2")
	l.cfg = "CLOSED"
	l.expect(20, "MAX 1", "granted=0 domain_hits=2 retry_after=-1 reset_after=991")
}

func TestRetryNever(t *testing.T) {
	l := newLim(t, "TIER 5 1000 1000 0 TIER 0 1000 1000 0")
	l.expect(0, "MAX 6", "granted=0 retry_after=-1")
	l.expect(0, "MAX 6 MIN 5", "granted=5")
	l.expect(1, "MAX 6 MIN 5", "granted=0 retry_after=1000")
	l = newLim(t, "TIER 0 1000 1000 0")
	l.expect(0, "MAX 1 MIN 0", "granted=0 retry_after=-1")
}

func TestDryRun(t *testing.T) {
	l := newLim(t, "TIER 2 1000 1000 0 TIER 10 1000 1000 0")
	l.expect(0, "MAX 2", "granted=2")
	before := bytes.Clone(l.val["k"])
	l.expect(1, "MAX 3 DRYRUN", "granted=3 tier=2 tier_hits=3 burst=1 domain_hits=5 retry_after=0")
	if !bytes.Equal(before, l.val["k"]) {
		t.Fatal("DRYRUN changed the value")
	}
	l.expect(1, "MAX 3", "granted=3 tier=2 tier_hits=3 burst=1 domain_hits=5")
}

// The stored configuration follows the request; extra tiers are dropped and new ones
// start empty.
func TestConfigChange(t *testing.T) {
	l := newLim(t, "TIER 1 10000 10000 0 TIER 1 10000 10000 0 TIER 5 10000 10000 0")
	l.expect(0, "MAX 3", "granted=3 tier=3 tier_hits=1")
	l.cfg = "TIER 1 10000 10000 0"
	l.expect(1, "MAX 1", "granted=0 tier=1 domain_hits=3")
	l.expect(2, "MAX 1 HARD 1000", "granted=0 domain_hits=3")
	l.cfg = "TIER 2 10000 10000 0"
	l.expect(3, "MAX 1", "granted=1 tier=1 tier_hits=2 domain_hits=4")
	v, err := Decode(l.val["k"])
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Tiers) != 1 || v.Tiers[0].Limit != 2 {
		t.Fatalf("tiers %+v", v.Tiers)
	}
	if v.Events[0].Counts[0] != 1 || v.Events[0].Counts[Detached] != 2 {
		t.Fatalf("dropped tiers' hits must stay in the second log only: %+v", v.Events[0])
	}
	// Tiers come back empty, but the second log still holds everything.
	l.cfg = "TIER 2 10000 10000 0 TIER 1 10000 10000 0 TIER 5 10000 10000 0"
	l.expect(4, "MAX 3", "granted=3 tier=3 tier_hits=2 domain_hits=7")
}

func TestResetAfterAndExpiry(t *testing.T) {
	l := newLim(t, "TIER 5 60000 1000 0 TIER 5 500 2000 3000")
	r := l.run("k", 0, "MAX 7")
	// X = max(tier-1 hit 0+60000+1, tier 1 0+1000+0+1, tier 2 0+2000+3000+1, 0+1001).
	checkFields(t, "grant", r, "granted=7 reset_after=60001")
	if r.ExpireAt != base+60001 || r.GlobalExpireAt != 0 {
		t.Fatalf("ExpireAt %d GlobalExpireAt %d", r.ExpireAt-base, r.GlobalExpireAt)
	}
	l = newLim(t, "TIER 5 100 100 0 TIER 5 500 2000 3000")
	r = l.run("k", 0, "MAX 7")
	checkFields(t, "grant", r, "reset_after=5001")
	r = l.run("k", 10, "MAX 1 HARD 0")
	checkFields(t, "reject", r, "granted=0 reset_after=4991")
	info, _ := Inspect(l.val["k"], base+10)
	if info.ExpireAt != base+5001 || info.ResetAfter != 4991 {
		t.Fatalf("inspect expiry %d reset %d", info.ExpireAt-base, info.ResetAfter)
	}
}

// Hits at the same millisecond merge; memory follows distinct times, not hits.
func TestMergeSameMillisecond(t *testing.T) {
	l := newLim(t, "TIER 1000000 60000 60000 0")
	for i := 0; i < 50; i++ {
		l.run("k", 7, "MAX 1000")
	}
	v, err := Decode(l.val["k"])
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Events) != 1 || v.Events[0].Counts[0] != 50000 {
		t.Fatalf("events %+v", v.Events)
	}
}

// Old events are pruned once no rule needs them.
func TestPruning(t *testing.T) {
	l := newLim(t, "TIER 1000 2000 100000 0")
	for i := int64(0); i < 100; i++ {
		l.run("k", i*100, "")
	}
	v, _ := Decode(l.val["k"])
	// Window 2000 ms at t=9900: events at 7900..9900 stay.
	if len(v.Events) != 21 || v.Events[0].At != base+7900 {
		t.Fatalf("%d events, first at %d", len(v.Events), v.Events[0].At-base)
	}
	// A short window still keeps the second log (1000 ms) for HARD.
	l = newLim(t, "TIER 1000 10 100000 0")
	for i := int64(0); i < 100; i++ {
		l.run("k", i*100, "")
	}
	v, _ = Decode(l.val["k"])
	if len(v.Events) != 11 {
		t.Fatalf("%d events", len(v.Events))
	}
}

func TestErrors(t *testing.T) {
	var req Request
	if err := ParseRequest(words("TIER 1 1000 1000 0"), &req); err != nil {
		t.Fatal(err)
	}
	good, _, _, _ := Apply(nil, nil, &req, base, nil, nil)
	if !good.Granted {
		t.Fatal("not granted")
	}
	_, val, _, _ := Apply(nil, nil, &req, base, nil, nil)
	for _, bad := range [][]byte{{1}, {2, 1, 0}, append(bytes.Clone(val), 0)} {
		_, nv, _, err := Apply(bad, nil, &req, base, nil, nil)
		if !errors.Is(err, ErrCorrupt) || nv != nil {
			t.Fatalf("%x: err %v", bad, err)
		}
	}
	// A domain value as GLOBAL, and a global value as the key.
	if err := ParseRequest(words("GLOBAL g 10 TIER 1 1000 1000 0"), &req); err != nil {
		t.Fatal(err)
	}
	_, _, gval, err := Apply(nil, nil, &req, base, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Apply(nil, val, &req, base, nil, nil); !errors.Is(err, ErrWrongKind) {
		t.Fatalf("domain as global: %v", err)
	}
	if _, _, _, err := Apply(gval, nil, &req, base, nil, nil); !errors.Is(err, ErrWrongKind) {
		t.Fatalf("global as key: %v", err)
	}
	bad := req
	bad.NTiers = 17
	if _, _, _, err := Apply(nil, nil, &bad, base, nil, nil); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad request: %v", err)
	}
}

func TestInspectGlobal(t *testing.T) {
	g := newLim(t, "TIER 100 1000 1000 0")
	g.run("a", 0, "GLOBAL gk 50 MAX 3")
	g.run("b", 400, "GLOBAL gk 50 MAX 4")
	info, err := Inspect(g.val["gk"], base+1200)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindGlobal || len(info.Tiers) != 0 || info.WindowHits != 4 || len(info.SecondLog) != 1 ||
		info.Events != 2 || info.ExpireAt != base+1401 || info.ResetAfter != 201 {
		t.Fatalf("%+v", info)
	}
}

func TestInspectNextChange(t *testing.T) {
	l := newLim(t, "TIER 1 10000 100 0 TIER 9 10000 50 30")
	l.expect(0, "MAX 2", "granted=2")
	info, _ := Inspect(l.val["k"], base+10)
	t1, t2 := info.Tiers[0], info.Tiers[1]
	if t1.NextChange != base+101 || t1.NextState != Inactive || t2.NextChange != base+51 || t2.NextState != Cooldown ||
		t2.ActiveUntil != base+50 || t2.CooldownUntil != base+80 {
		t.Fatalf("%+v %+v", t1, t2)
	}
	info, _ = Inspect(l.val["k"], base+60)
	if t2 := info.Tiers[1]; t2.State != Cooldown || t2.NextChange != base+81 || t2.NextState != Inactive {
		t.Fatalf("%+v", t2)
	}
	info, _ = Inspect(l.val["k"], base+500)
	if t2 := info.Tiers[1]; t2.State != Inactive || t2.NextChange != -1 || t2.Hits != 0 {
		t.Fatalf("%+v", t2)
	}
	if info.Tiers[0].Hits != 1 || info.CurrentTier != 0 {
		t.Fatalf("%+v", info)
	}
	// An inspection time before the newest entry is moved forward (rule 8).
	info, _ = Inspect(l.val["k"], 0)
	if info.T != base {
		t.Fatalf("T %d", info.T)
	}
}
