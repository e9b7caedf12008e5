package rate

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
)

// simConfig draws a random tier configuration. Durations stay small so that the
// brute-force retry_after of the model stays cheap.
func simConfig(rng *rand.Rand, maxDur int64, tier1Cooldown bool) []Tier {
	n := 1 + rng.IntN(4)
	tiers := make([]Tier, n)
	for i := range tiers {
		tiers[i] = Tier{
			Limit:     rng.Int64N(9),
			Window:    1 + rng.Int64N(maxDur),
			Active:    1 + rng.Int64N(maxDur),
			Cooldown:  rng.Int64N(maxDur),
			Skippable: rng.IntN(3) == 0,
		}
		if rng.IntN(4) == 0 {
			tiers[i].Cooldown = 0
		}
	}
	if !tier1Cooldown {
		tiers[0].Cooldown = 0
	}
	return tiers
}

// reqArgs renders a request as CHARON.RATE arguments in a shuffled clause order.
func reqArgs(rng *rand.Rand, tiers []Tier, max, min int64, hasMin bool, hard, glimit int64, at int64, dry bool) [][]byte {
	var clauses [][]string
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	clauses = append(clauses, []string{"MAX", i64(max)})
	if hasMin {
		clauses = append(clauses, []string{"min", i64(min)})
	}
	if hard >= 0 {
		clauses = append(clauses, []string{"Hard", i64(hard)})
	}
	if glimit >= 0 {
		clauses = append(clauses, []string{"GLOBAL", "g", i64(glimit)})
	}
	clauses = append(clauses, []string{"AT", i64(at)})
	if dry {
		clauses = append(clauses, []string{"dryrun"})
	}
	rng.Shuffle(len(clauses), func(a, b int) { clauses[a], clauses[b] = clauses[b], clauses[a] })
	// Tier clauses keep their relative order but may be interleaved with options.
	var out [][]byte
	ti := 0
	for _, c := range clauses {
		for ti < len(tiers) && rng.IntN(2) == 0 {
			out = appendTierArgs(out, tiers[ti])
			ti++
		}
		for _, s := range c {
			out = append(out, []byte(s))
		}
	}
	for ; ti < len(tiers); ti++ {
		out = appendTierArgs(out, tiers[ti])
	}
	return out
}

func appendTierArgs(out [][]byte, t Tier) [][]byte {
	i64 := func(v int64) []byte { return []byte(strconv.FormatInt(v, 10)) }
	out = append(out, []byte("TIER"), i64(t.Limit), i64(t.Window), i64(t.Active), i64(t.Cooldown))
	if t.Skippable {
		out = append(out, []byte("skippable"))
	}
	return out
}

// simStore is the implementation side of a simulation: encoded values by key.
type simStore struct {
	vals        map[string][]byte
	out, gout   []byte
	requests    int
	grants      int
	maxValSize  int
	retryChecks int
}

func (s *simStore) apply(t *testing.T, key string, req *Request, now int64) Result {
	t.Helper()
	cur := s.vals[key]
	var gcur []byte
	if req.HasGlobal {
		gcur = s.vals["g"]
	}
	curCopy := append([]byte(nil), cur...)
	gcurCopy := append([]byte(nil), gcur...)
	res, nv, ngv, err := Apply(cur, gcur, req, now, s.out, s.gout)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// Writing in place, into spare capacity as the glue's blobs have, gives the same
	// bytes.
	ic := append(make([]byte, 0, len(cur)+64), cur...)
	var gc []byte
	if gcur != nil {
		gc = append(make([]byte, 0, len(gcur)+64), gcur...)
	}
	sres, snv, sngv, err := ApplyInPlace(ic, gc, req, now, nil, nil)
	if err != nil || sres != res || !bytes.Equal(snv, nv) || !bytes.Equal(sngv, ngv) {
		t.Fatalf("in-place encoder differs: %v\n%x\n%x", err, nv, snv)
	}
	s.requests++
	if !bytes.Equal(cur, curCopy) || !bytes.Equal(gcur, gcurCopy) {
		t.Fatalf("Apply modified its input")
	}
	if !res.Write {
		if nv != nil || ngv != nil {
			t.Fatalf("values returned without Write")
		}
		return res
	}
	s.grants++
	if err := Validate(nv); err != nil {
		t.Fatalf("new value invalid: %v", err)
	}
	if (ngv != nil) != req.HasGlobal {
		t.Fatalf("global value presence %v, HasGlobal %v", ngv != nil, req.HasGlobal)
	}
	s.vals[key] = append([]byte(nil), nv...)
	s.maxValSize = max(s.maxValSize, len(nv))
	if ngv != nil {
		if err := Validate(ngv); err != nil {
			t.Fatalf("new global value invalid: %v", err)
		}
		s.vals["g"] = append([]byte(nil), ngv...)
	}
	s.out, s.gout = nv, ngv // reuse the grown buffers, as the glue does
	return res
}

type simOpts struct {
	steps         int
	maxDur        int64
	tier1Cooldown bool
	bruteRetry    bool
}

// runSim drives the model and Apply with the same random requests on two domain keys
// sharing one global key and compares every reply field.
func runSim(t *testing.T, seed uint64, o simOpts) (requests, grants, retryChecks int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	tiers := simConfig(rng, o.maxDur, o.tier1Cooldown)
	var sumL int64
	for _, tc := range tiers {
		sumL += tc.Limit
	}
	keys := []string{"a", "b"}
	ref := map[string]*refKey{"a": newRefKey(len(tiers)), "b": newRefKey(len(tiers))}
	g := &refGlobal{}
	st := &simStore{vals: map[string][]byte{}}
	hard := int64(-1)
	if rng.IntN(3) == 0 {
		hard = rng.Int64N(sumL + 3)
	}
	glimit := int64(-1)
	if rng.IntN(3) == 0 {
		glimit = rng.Int64N(2*sumL + 3)
	}
	now := int64(1_000_000 + rng.Int64N(1000))
	var req Request
	for step := 0; step < o.steps; step++ {
		switch r := rng.IntN(20); {
		case r < 8:
			now += rng.Int64N(40)
		case r < 17:
			now += rng.Int64N(o.maxDur / 2)
		case r < 19:
			now -= rng.Int64N(500) // a clock that steps back (rule 8)
		default:
			now += rng.Int64N(4 * o.maxDur)
		}
		mx := 1 + rng.Int64N(max(sumL, 1)+2)
		mn := rng.Int64N(mx + 1)
		hasMin := rng.IntN(3) > 0
		h, gl := int64(-1), int64(-1)
		if hard >= 0 && rng.IntN(4) > 0 {
			h = hard
		}
		if glimit >= 0 && rng.IntN(4) > 0 {
			gl = glimit
		}
		dry := rng.IntN(10) == 0
		args := reqArgs(rng, tiers, mx, mn, hasMin, h, gl, max(now, 0), dry)
		if err := ParseRequest(args, &req); err != nil {
			t.Fatalf("seed %d step %d: parse %q: %v", seed, step, args, err)
		}
		key := keys[rng.IntN(2)]
		want := refRequest(ref[key], g, &req, req.At, o.bruteRetry)
		got := st.apply(t, key, &req, req.At)
		ctx := fmt.Sprintf("seed %d step %d key %s t=%d tiers=%+v req(max=%d min=%d hard=%v/%d global=%v/%d dry=%v)",
			seed, step, key, want.t, tiers, req.Max, req.Min, req.HasHard, req.Hard, req.HasGlobal, req.GlobalLimit, req.DryRun)
		if got.T != want.t {
			t.Fatalf("%s: T %d, model %d", ctx, got.T, want.t)
		}
		gf := got.Fields
		if !o.bruteRetry && !want.granted {
			want.fields[FieldRetryAfter] = gf[FieldRetryAfter]
		}
		if gf != want.fields || got.Granted != want.granted {
			t.Fatalf("%s:\n got   %v granted=%v\n model %v granted=%v", ctx, gf, got.Granted, want.fields, want.granted)
		}
		if got.Write != (want.granted && !req.DryRun) {
			t.Fatalf("%s: Write=%v", ctx, got.Write)
		}
		if got.ExpireAt != want.expireAt {
			t.Fatalf("%s: ExpireAt %d, model %d", ctx, got.ExpireAt, want.expireAt)
		}
		if ra := gf[FieldRetryAfter]; !got.Granted && ra > 0 {
			// The same request is granted retry_after later, and not 1 ms before.
			probe := req
			probe.DryRun = true
			for _, d := range []int64{ra, ra - 1} {
				if d == 0 {
					continue
				}
				var g []byte
				if req.HasGlobal {
					g = st.vals["g"]
				}
				r, _, _, err := Apply(st.vals[key], g, &probe, got.T+d, nil, nil)
				if err != nil || r.Granted != (d == ra) {
					t.Fatalf("%s: retry_after %d, granted at +%d: %v (%v)", ctx, ra, d, r.Granted, err)
				}
			}
			st.retryChecks++
		}
	}
	return st.requests, st.grants, st.retryChecks
}

func TestReferenceRandom(t *testing.T) {
	seeds := 400
	if testing.Short() {
		seeds = 50
	}
	var reqs, grants, retries int
	for seed := uint64(0); seed < uint64(seeds); seed++ {
		r, g, rc := runSim(t, seed, simOpts{steps: 400, maxDur: 5000})
		reqs += r
		grants += g
		retries += rc
	}
	t.Logf("%d requests, %d granted, %d retry_after values proved", reqs, grants, retries)
}

// The spec's claim of agreement with Charon's 2017 simulator is for tier-1 cooldown
// 0; the rules themselves hold for any cooldown, so check those too.
func TestReferenceRandomTier1Cooldown(t *testing.T) {
	for seed := uint64(1000); seed < 1150; seed++ {
		runSim(t, seed, simOpts{steps: 300, maxDur: 5000, tier1Cooldown: true})
	}
}

// retry_after against the model's brute force (every later millisecond).
func TestReferenceRetryAfterBruteForce(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 30
	}
	var reqs, grants, retries int
	for seed := uint64(5000); seed < 5000+uint64(seeds); seed++ {
		r, g, rc := runSim(t, seed, simOpts{steps: 150, maxDur: 400, tier1Cooldown: seed%2 == 0, bruteRetry: true})
		reqs += r
		grants += g
		retries += rc
	}
	t.Logf("%d requests, %d granted, %d rejections with a positive retry_after (all matched the brute force)", reqs, grants, retries)
}
