package rate

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestParseLimitsSpecExample(t *testing.T) {
	var lim, tier Request
	if err := ParseRequest([][]byte{[]byte("LIMITS"), []byte("10/1s, 50/5s/5s/15s, 1000/1m/1m/10m")}, &lim); err != nil {
		t.Fatal(err)
	}
	if err := ParseRequest(words("TIER 10 1000 1000 0 TIER 50 5000 5000 15000 TIER 1000 60000 60000 600000"), &tier); err != nil {
		t.Fatal(err)
	}
	if !lim.HasLimits || lim.NTiers != 3 || lim.Tiers != tier.Tiers {
		t.Fatalf("LIMITS %+v\nTIER   %+v", lim, tier)
	}
}

func TestParseLimits(t *testing.T) {
	for _, c := range []struct {
		s    string
		want []Tier
	}{
		{"10/1s", []Tier{{10, 1000, 1000, 0, false}}},
		{"0/1", []Tier{{0, 1, 1, 0, false}}},
		{"5/250ms/2h/1d?", []Tier{{5, 250, 7_200_000, 86_400_000, true}}},
		{" \t5 / 2m / 3s / 0 ? , 7/9ms?\t", []Tier{{5, 120_000, 3000, 0, true}, {7, 9, 9, 0, true}}},
		{"007/0010s", []Tier{{7, 10_000, 10_000, 0, false}}},
		{"1000000000000/3650d/315360000000ms/5256000m", []Tier{{MaxCount, MaxDuration, MaxDuration, MaxDuration, false}}},
		{"1/87600h/1ms/0ms", []Tier{{1, MaxDuration, 1, 0, false}}},
		{strings.Repeat("1/1,", 15) + "1/1", func() []Tier {
			var ts []Tier
			for range 16 {
				ts = append(ts, Tier{1, 1, 1, 0, false})
			}
			return ts
		}()},
	} {
		var tiers [MaxTiers]Tier
		n, err := ParseLimits([]byte(c.s), &tiers)
		if err != nil || n != len(c.want) || fmt.Sprint(tiers[:n]) != fmt.Sprint(c.want) {
			t.Errorf("%q: %v %v, want %v", c.s, tiers[:n], err, c.want)
		}
	}
}

func TestParseLimitsErrors(t *testing.T) {
	dur := func(tier int, f string, lo int64) string {
		return "LIMITS tier " + strconv.Itoa(tier) + " " + f + ": must be a duration between " + strconv.FormatInt(lo, 10) +
			" and 315360000000 ms (digits, then ms, s, m, h, d or nothing for ms)"
	}
	for _, c := range []struct{ s, want string }{
		{"", "LIMITS tier 1 limit: expected digits, found the end"},
		{"  ", "LIMITS tier 1 limit: expected digits, found the end"},
		{"10", "LIMITS tier 1 window: expected '/' and a window after the limit, found the end"},
		{"10/", "LIMITS tier 1 window: expected digits, found the end"},
		{"10/s", "LIMITS tier 1 window: expected digits, found 's'"},
		{"-1/1s", "LIMITS tier 1 limit: expected digits, found '-1/1s'"},
		{"10s/1s", "LIMITS tier 1 window: expected '/' and a window after the limit, found 's/1s'"},
		{"1000000000001/1s", "LIMITS tier 1 limit: must be an integer between 0 and 1000000000000"},
		{"99999999999999999999999/1s", "LIMITS tier 1 limit: must be an integer between 0 and 1000000000000"},
		{"10/0", dur(1, "window", 1)},
		{"10/0s", dur(1, "window", 1)},
		{"10/3651d", dur(1, "window", 1)},
		{"10/1s/0ms", dur(1, "active", 1)},
		{"10/1s/1s/5256001m", dur(1, "cooldown", 0)},
		{"10/1s/1s/1s/1s", "LIMITS tier 1: at most limit/window/active/cooldown, found '/1s'"},
		{"10/1s, 5/2x", "LIMITS tier 2: expected ',', ';' or the end, found 'x'"},
		{"10/1S", "LIMITS tier 1: expected ',', ';' or the end, found 'S'"},
		{"10/1 s", "LIMITS tier 1: expected ',', ';' or the end, found 's'"},
		{"10/1s,", "LIMITS tier 2 limit: expected digits, found the end"},
		{"10/1s,,5/1s", "LIMITS tier 2 limit: expected digits, found ',5/1s'"},
		{"10/1s??", "LIMITS tier 1: expected ',', ';' or the end, found '?'"},
		{"10/1s;", "LIMITS cap 1 limit: expected digits, found the end"},
		{"10/1s; 5", "LIMITS cap 1 window: expected '/' and a window after the limit, found the end"},
		{"10/1s; 5/1h/1h", "LIMITS cap 1: expected ',' or the end, found '/1h'"},
		{"10/1s; 5/1h, 6/60m", "LIMITS cap 2: a second cap over 3600000 ms; give each window once (HARD n is the cap n per 1000 ms, GLOBAL gkey n the global one)"},
		{"10/1s; 5/1h, 6/1s, 7/2s, 8/3s, 9/4s, 10/5s, 11/6s, 12/7s, 13/8s", "LIMITS cap 9: at most 8 caps per key (HARD, or GLOBAL's per-second limit, counts as one)"},
		{"10/1s; 5/1h, 6/7200000", "LIMITS cap 2 window: 7200000 has no unit while other durations have one: write 7200000s or 7200000ms (a bare number means ms only when no duration has a unit)"},
		{"10/1s; 1000000000001/1h", "LIMITS cap 1 limit: must be an integer between 0 and 1000000000000"},
		{"10/1s; 1/0s", "LIMITS cap 1 window: must be a duration between 1 and 315360000000 ms (digits, then ms, s, m, h, d or nothing for ms)"},
		{"10/1s\r\n", "LIMITS tier 1: expected ',', ';' or the end, found '??'"},
		{strings.Repeat("1/1,", 16) + "1/1", "LIMITS tier 17: at most 16 tiers are allowed"},
		{strings.Repeat(" ", 5000), "LIMITS: longer than 4096 bytes"},
	} {
		var tiers [MaxTiers]Tier
		var caps capList
		_, err := ParseCompact([]byte(c.s), &tiers, &caps)
		var ae *ArgError
		if !errors.As(err, &ae) || err.Error() != c.want {
			t.Errorf("%q: got %v, want %q", c.s, err, c.want)
		}
		// Through the request parser and its cache: the same error, nothing cached.
		var p Parser
		var req Request
		for range 2 {
			if err2 := p.Parse([][]byte{[]byte("LIMITS"), []byte(c.s)}, &req); err2 == nil || err2.Error() != c.want {
				t.Errorf("%q via Parser: %v", c.s, err2)
			}
		}
	}
}

// The cache answers exactly what a fresh parse does, for more strings than it holds.
func TestLimitsCache(t *testing.T) {
	var p Parser
	rng := rand.New(rand.NewPCG(7, 7))
	strs := make([]string, 3*limitsCacheEntries)
	for i := range strs {
		strs[i] = renderLimits(rng, simConfig(rng, 100_000, true))
	}
	strs = append(strs, "1/1"+strings.Repeat(" ", limitsCacheKey)) // too long to cache
	for i := 0; i < 2000; i++ {
		s := strs[rng.IntN(len(strs))]
		if rng.IntN(2) == 0 {
			s = strs[i%(limitsCacheEntries/2)] // a hot set that stays cached
		}
		args := [][]byte{[]byte("LIMITS"), []byte(s), []byte("MAX"), []byte("2")}
		var a, b Request
		if err := p.Parse(args, &a); err != nil {
			t.Fatal(err)
		}
		if err := ParseRequest(args, &b); err != nil || a != b {
			t.Fatalf("%q: cached %+v, fresh %+v (%v)", s, a, b, err)
		}
		// The cache kept a copy: changing the caller's bytes does not change it.
		args[1][0] ^= 0xff
	}
}

// Zero allocations on a cache hit and on a miss (a string seen for the first time).
func TestLimitsAllocs(t *testing.T) {
	var p Parser
	var req Request
	hit := [][]byte{[]byte("MAX"), []byte("2"), []byte("LIMITS"), []byte("10/1s, 50/5s/5s/15s, 1000/1m/1m/10m")}
	if a := testing.AllocsPerRun(1000, func() {
		if err := p.Parse(hit, &req); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("cache hit: %v allocs", a)
	}
	// More distinct strings than entries, cycled: every call is a miss.
	var miss [][][]byte
	for i := range 2 * limitsCacheEntries {
		miss = append(miss, [][]byte{[]byte("LIMITS"), []byte(strconv.Itoa(i+1) + "/1s, 50/5s/5s/15s?")})
	}
	i := 0
	if a := testing.AllocsPerRun(1000, func() {
		if err := p.Parse(miss[i%len(miss)], &req); err != nil {
			t.Fatal(err)
		}
		i++
	}); a != 0 {
		t.Fatalf("cache miss: %v allocs", a)
	}
	if a := testing.AllocsPerRun(1000, func() {
		if _, err := ParseLimits(hit[3], &req.Tiers); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("ParseLimits: %v allocs", a)
	}
}

// renderLimits writes tiers as a LIMITS string, choosing units, optional fields and
// whitespace at random (every choice denotes the same tiers).
func renderLimits(rng *rand.Rand, tiers []Tier) string {
	// Durations all carry a unit, or none does (a string that mixes them is refused).
	return renderTiers(rng, tiers, rng.IntN(3) == 0)
}

// renderLimitsUnits is renderLimits with a unit on every duration.
func renderLimitsUnits(rng *rand.Rand, tiers []Tier) string { return renderTiers(rng, tiers, false) }

func renderTiers(rng *rand.Rand, tiers []Tier, bare bool) string {
	var b strings.Builder
	sp := func() {
		for rng.IntN(4) == 0 {
			b.WriteByte(" \t"[rng.IntN(2)])
		}
	}
	dur := func(ms int64) {
		type unit struct {
			name string
			ms   int64
		}
		var fits []unit
		for _, u := range []unit{{"d", 86_400_000}, {"h", 3_600_000}, {"m", 60_000}, {"s", 1000}, {"ms", 1}, {"", 1}} {
			if (u.name == "") == bare && ms%u.ms == 0 {
				fits = append(fits, u)
			}
		}
		u := fits[rng.IntN(len(fits))]
		b.WriteString(strconv.FormatInt(ms/u.ms, 10) + u.name)
	}
	for i, t := range tiers {
		if i > 0 {
			sp()
			b.WriteByte(',')
		}
		sp()
		b.WriteString(strconv.FormatInt(t.Limit, 10))
		sp()
		b.WriteByte('/')
		sp()
		dur(t.Window)
		n := 2
		switch {
		case t.Cooldown != 0 || rng.IntN(3) == 0:
			n = 4
		case t.Active != t.Window || rng.IntN(2) == 0:
			n = 3
		}
		if n >= 3 {
			sp()
			b.WriteByte('/')
			sp()
			dur(t.Active)
		}
		if n == 4 {
			sp()
			b.WriteByte('/')
			sp()
			dur(t.Cooldown)
		}
		if t.Skippable {
			sp()
			b.WriteByte('?')
		}
		sp()
	}
	return b.String()
}

// limitsArgs turns a TIER-form argument list into the same request in the compact
// form: the TIER clauses become one LIMITS argument where the first TIER clause was.
func limitsArgs(rng *rand.Rand, args [][]byte, tiers []Tier) [][]byte {
	var out [][]byte
	placed := false
	for i := 0; i < len(args); i++ {
		if eqFold(args[i], "TIER") {
			i += 4
			if i+1 < len(args) && eqFold(args[i+1], "SKIPPABLE") {
				i++
			}
			if !placed {
				out = append(out, []byte("limits"), []byte(renderLimits(rng, tiers)))
				placed = true
			}
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// TestReferenceLimitsForm runs the same random request sequences as the reference
// comparison through the TIER form and the LIMITS form side by side (each on its own
// store, the LIMITS side through a caching Parser) and requires identical results,
// identical stored bytes, and agreement with the reference model.
func TestReferenceLimitsForm(t *testing.T) {
	seeds := 150
	if testing.Short() {
		seeds = 20
	}
	var p Parser
	var reqs int
	for seed := uint64(9000); seed < 9000+uint64(seeds); seed++ {
		rng := rand.New(rand.NewPCG(seed, 0x11))
		maxDur := []int64{400, 5000, 3_600_000}[seed%3]
		tiers := simConfig(rng, maxDur, seed%2 == 0)
		if seed%5 == 0 {
			// Round durations, so units other than ms come up.
			for i := range tiers {
				tiers[i].Window = (tiers[i].Window/1000 + 1) * 1000
				tiers[i].Active = (tiers[i].Active/60_000 + 1) * 60_000
				tiers[i].Cooldown = tiers[i].Cooldown / 1000 * 1000
			}
		}
		var sumL int64
		for _, tc := range tiers {
			sumL += tc.Limit
		}
		ref := map[string]*refKey{"a": newRefKey(len(tiers)), "b": newRefKey(len(tiers))}
		g := &refGlobal{}
		tierSt := &simStore{vals: map[string][]byte{}}
		limSt := &simStore{vals: map[string][]byte{}}
		now := int64(1_000_000)
		var treq, lreq Request
		for step := 0; step < 200; step++ {
			now += rng.Int64N(maxDur/2 + 1)
			if rng.IntN(10) == 0 {
				now -= rng.Int64N(300)
			}
			mx := 1 + rng.Int64N(max(sumL, 1)+2)
			h, gl := int64(-1), int64(-1)
			if rng.IntN(3) == 0 {
				h = rng.Int64N(sumL + 3)
			}
			if rng.IntN(3) == 0 {
				gl = rng.Int64N(2*sumL + 3)
			}
			targs := reqArgs(rng, tiers, mx, rng.Int64N(mx+1), rng.IntN(2) == 0, h, gl, max(now, 0), rng.IntN(10) == 0)
			largs := limitsArgs(rng, targs, tiers)
			if err := ParseRequest(targs, &treq); err != nil {
				t.Fatalf("seed %d: %q: %v", seed, targs, err)
			}
			if err := p.Parse(largs, &lreq); err != nil {
				t.Fatalf("seed %d: %q: %v", seed, largs, err)
			}
			if !lreq.HasLimits || lreq.NTiers != treq.NTiers || lreq.Tiers != treq.Tiers {
				t.Fatalf("seed %d: %q parsed to %+v, TIER form %+v", seed, largs, lreq.Tiers[:lreq.NTiers], treq.Tiers[:treq.NTiers])
			}
			key := []string{"a", "b"}[rng.IntN(2)]
			want := refRequest(ref[key], g, &treq, treq.At, false)
			tr := tierSt.apply(t, key, &treq, treq.At)
			lr := limSt.apply(t, key, &lreq, lreq.At)
			ctx := fmt.Sprintf("seed %d step %d %q", seed, step, largs)
			if tr != lr {
				t.Fatalf("%s: TIER %+v\nLIMITS %+v", ctx, tr, lr)
			}
			if !bytes.Equal(tierSt.vals[key], limSt.vals[key]) || !bytes.Equal(tierSt.vals["g"], limSt.vals["g"]) {
				t.Fatalf("%s: stored values differ", ctx)
			}
			if !want.granted {
				want.fields[FieldRetryAfter] = lr.Fields[FieldRetryAfter]
			}
			if lr.Fields != want.fields || lr.T != want.t {
				t.Fatalf("%s: LIMITS %v, model %v", ctx, lr.Fields, want.fields)
			}
			reqs++
		}
	}
	t.Logf("%d requests, TIER and LIMITS forms identical and equal to the model", reqs)
}

// FuzzLimits: ParseLimits never panics; errors are one-line *ArgError naming LIMITS;
// accepted tiers respect the bounds and re-render to a string that parses the same;
// the caching Parser agrees with a fresh parse.
func FuzzLimits(f *testing.F) {
	for _, s := range []string{
		"10/1s, 50/5s/5s/15s, 1000/1m/1m/10m", "5/250ms/2h/1d?", " 7 / 9 ? ", "10/", "10/1s,", "1/0", "",
		"1000000000000/3650d", "99999999999999999999/1", "1/1s\x00", strings.Repeat("1/1,", 17),
	} {
		f.Add([]byte(s))
	}
	var p Parser
	f.Fuzz(func(t *testing.T, s []byte) {
		var tiers [MaxTiers]Tier
		var caps capList
		n, err := ParseCompact(s, &tiers, &caps)
		var req Request
		perr := p.Parse([][]byte{[]byte("LIMITS"), s}, &req)
		if (err == nil) != (perr == nil) || err != nil && err.Error() != perr.Error() {
			t.Fatalf("Parser %v, ParseLimits %v", perr, err)
		}
		if err != nil {
			var ae *ArgError
			msg := err.Error()
			if !errors.As(err, &ae) || !strings.HasPrefix(ae.Arg, "LIMITS") || strings.ContainsAny(msg, "\r\n\x00") || len(msg) > 200 {
				t.Fatalf("bad error %q", msg)
			}
			return
		}
		if n < 1 || n > MaxTiers || req.NTiers != n || req.Tiers != tiers {
			t.Fatalf("n=%d %+v %+v", n, tiers, req)
		}
		req.HasLimits = false
		if !req.valid() {
			t.Fatalf("out of bounds %+v", tiers[:n])
		}
		var split [MaxCaps]Cap
		nc, hasHard, hard := caps.split(&split)
		if req.NCaps != nc || req.Caps != split || req.HasHard != hasHard || req.Hard != hard {
			t.Fatalf("caps %+v, Parser %+v", caps, req)
		}
		rng := rand.New(rand.NewPCG(uint64(len(s)), 1))
		re := renderLimits(rng, tiers[:n])
		if caps.n > 0 {
			// The caps with every window in ms: units everywhere, as the tiers have
			// them or not.
			var cs []string
			for _, c := range caps.c[:caps.n] {
				cs = append(cs, strconv.FormatInt(c.Limit, 10)+"/"+strconv.FormatInt(c.Window, 10)+"ms")
			}
			re = renderLimitsUnits(rng, tiers[:n]) + ";" + strings.Join(cs, ",")
		}
		var again [MaxTiers]Tier
		var capsAgain capList
		if m, err := ParseCompact([]byte(re), &again, &capsAgain); err != nil || m != n || again != tiers || capsAgain != caps {
			t.Fatalf("%q re-rendered as %q: %v %+v", s, re, err, again[:m])
		}
	})
}

// BenchmarkParseForms: the request parse of the TIER form, the LIMITS form through
// the cache (a hit) and the LIMITS form parsed every time (ParseRequest, no cache).
func BenchmarkParseForms(b *testing.B) {
	tier := words("MAX 2 TIER 10 1000 1000 0 TIER 50 5000 5000 15000 TIER 1000 60000 60000 600000")
	limits := [][]byte{[]byte("MAX"), []byte("2"), []byte("LIMITS"), []byte("10/1s, 50/5s/5s/15s, 1000/1m/1m/10m")}
	var req Request
	var p Parser
	for _, c := range []struct {
		name  string
		parse func() error
	}{
		{"tier", func() error { return ParseRequest(tier, &req) }},
		{"limits-cached", func() error { return p.Parse(limits, &req) }},
		{"limits-uncached", func() error { return ParseRequest(limits, &req) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.parse(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
