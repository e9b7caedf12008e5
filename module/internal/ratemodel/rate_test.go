package ratemodel

import (
	"math/rand/v2"
	"testing"
)

// f builds an expected reply: granted, tier, tier_limit, tier_hits, domain_hits,
// global_hits, burst, hard_limited, global_limited, retry_after, reset_after.
func f(v ...int64) [NumFields]int64 {
	var r [NumFields]int64
	copy(r[:], v)
	return r
}

type step struct {
	name   string
	key    string
	req    Request
	at     int64
	want   [NumFields]int64
	replay bool
}

func run(t *testing.T, steps []step) {
	t.Helper()
	keys := map[string]*Key{}
	g := NewGlobal()
	for _, s := range steps {
		k := keys[s.key]
		if k == nil {
			k = NewKey()
			keys[s.key] = k
		}
		// Min 0 stands for the default (MIN = MAX), -1 for an explicit MIN 0.
		req := s.req
		if req.Min < 0 {
			req.Min = 0
		} else if req.Min == 0 {
			req.Min = req.Max
		}
		got := Rate(k, g, &req, s.at, true)
		if got.Fields != s.want || got.Replay != s.replay {
			t.Fatalf("%s: got %v replay=%v, want %v replay=%v", s.name, got.Fields, got.Replay, s.want, s.replay)
		}
		if got.Granted && got.Fields[FieldRetryAfter] != 0 {
			t.Fatalf("%s: granted with retry_after", s.name)
		}
	}
}

func tiers(t ...Tier) []Tier { return t }

// Rules 1-7 on the contract's own example shapes.
func TestRateTiers(t *testing.T) {
	two := tiers(Tier{Limit: 2, Window: 1000, Active: 1000}, Tier{Limit: 3, Window: 5000, Active: 5000, Cooldown: 15000})
	run(t, []step{
		// One hit on a fresh key: tier 1 entered at 1000, ACTIVE until 2000.
		// X = max(1000+1000+1, 1000+1000+0+1, 1000+1001) = 2001.
		{"first", "a", Request{Max: 1, Tiers: two[:1]}, 1000, f(1, 1, 2, 1, 1, -1, 0, 0, 0, 0, 1001), false},
	})
	run(t, []step{
		// MAX 4 at 0: 2 from tier 1, then burst: 2 from tier 2 (entered at 0).
		// X = tier 2's entry + A + C + 1 = 20001.
		{"burst", "a", Request{Max: 4, Tiers: two}, 0, f(4, 2, 3, 2, 4, -1, 1, 0, 0, 0, 20001), false},
		// At 6000 tier 1 is empty again (hits at 0 left at 1001) but tier 2 is in
		// COOLDOWN (5000 < t <= 20000) and stops the climb: 2 < MIN 3. Tier 2 is
		// INACTIVE from 20001, when 2 + 3 fit: retry_after 14001. No tier is ACTIVE:
		// tier 0, tier 1's limit and hits.
		{"cooldown", "a", Request{Max: 3, Tiers: two}, 6000, f(0, 0, 2, 0, 0, -1, 0, 0, 0, 14001, 14001), false},
		// MIN 1 takes what tier 1 gives; tier 1 is entered again at 6000.
		{"partial", "a", Request{Max: 3, Min: 1, Tiers: two}, 6000, f(2, 1, 2, 2, 2, -1, 0, 0, 0, 0, 14001), false},
		// Rule 8: a request from the past runs at 6000; tier 1 is full, tier 2 cools.
		{"past", "a", Request{Max: 1, Tiers: two}, 10, f(0, 1, 2, 2, 2, -1, 0, 0, 0, 1001, 14001), false},
	})
	// A skippable tier in COOLDOWN is passed over: tier 3 gives.
	three := tiers(Tier{Limit: 1, Window: 1000, Active: 1000}, Tier{Limit: 1, Window: 1000, Active: 1000, Cooldown: 5000, Skippable: true},
		Tier{Limit: 10, Window: 60000, Active: 60000})
	run(t, []step{
		{"climb", "a", Request{Max: 2, Tiers: three}, 0, f(2, 2, 1, 1, 2, -1, 1, 0, 0, 0, 6001), false},
		// At 1500: tier 1 INACTIVE (0 + 1000 < 1500, no cooldown), its hit at 0 out of
		// the window; tier 2 in COOLDOWN, skipped; tier 3 entered (burst).
		{"skip", "a", Request{Max: 3, Tiers: three}, 1500, f(3, 3, 10, 2, 3, -1, 1, 0, 0, 0, 60001), false},
	})
}

// Rule 9.
func TestRateClosed(t *testing.T) {
	run(t, []step{
		{"closed", "a", Request{Max: 1, Closed: true}, 5, f(0, 0, 0, 0, 0, -1, 0, 0, 0, -1, 0), false},
	})
}

// Rules 4 and 10: HARD, CAP and GLOBAL caps.
func TestRateCaps(t *testing.T) {
	wide := tiers(Tier{Limit: 100, Window: 1000, Active: 1000})
	run(t, []step{
		// HARD 3 = 3/1000 cuts MAX 5.
		{"hard", "a", Request{Max: 5, Min: 1, Tiers: wide, Caps: []Cap{{3, 1000}}}, 0, f(3, 1, 100, 3, 3, -1, 0, 1, 0, 0, 1001), false},
		// The 3 hits count while ts >= t - 1000: room again at 1001.
		{"hard full", "a", Request{Max: 1, Tiers: wide, Caps: []Cap{{3, 1000}}}, 1000, f(0, 1, 100, 3, 3, -1, 0, 1, 0, 1, 1), false},
		{"hard again", "a", Request{Max: 1, Tiers: wide, Caps: []Cap{{3, 1000}}}, 1001, f(1, 1, 100, 1, 1, -1, 0, 0, 0, 0, 1001), false},
	})
	run(t, []step{
		// CAP 2/3000: buckets of g = 3 ms. A grant at 1000 lies in bucket 333,
		// [999, 1001]; it counts while 1001 >= t - 3000, that is up to 4001 (1 ms
		// longer than exactly). X = max(2001, 2001, 2001, 1001 + 3000 + 1) = 4002.
		{"cap", "a", Request{Max: 2, Tiers: wide, Caps: []Cap{{2, 3000}}}, 1000, f(2, 1, 100, 2, 2, -1, 0, 0, 0, 0, 3002), false},
		{"cap full", "a", Request{Max: 1, Tiers: wide, Caps: []Cap{{2, 3000}}}, 4001, f(0, 0, 100, 0, 0, -1, 0, 1, 0, 1, 1), false},
		// Its bucket is [4002, 4004]: X = 4004 + 3000 + 1.
		{"cap free", "a", Request{Max: 1, Tiers: wide, Caps: []Cap{{2, 3000}}}, 4002, f(1, 1, 100, 1, 1, -1, 0, 0, 0, 0, 3003), false},
		// MIN above a cap's n can never be granted.
		{"cap never", "a", Request{Max: 3, Tiers: wide, Caps: []Cap{{2, 3000}}}, 4002, f(0, 1, 100, 1, 1, -1, 0, 1, 0, -1, 3003), false},
	})
	run(t, []step{
		// GLOBAL 3 (3/1000) shared by two keys.
		{"a", "a", Request{Max: 2, Tiers: wide, Global: true, GlobalCaps: []Cap{{3, 1000}}}, 0, f(2, 1, 100, 2, 2, 2, 0, 0, 0, 0, 1001), false},
		{"b cut", "b", Request{Max: 2, Min: 1, Tiers: wide, Global: true, GlobalCaps: []Cap{{3, 1000}}}, 10, f(1, 1, 100, 1, 1, 3, 0, 0, 1, 0, 1001), false},
		// b's key is at 10 and the global key too: a at 5 runs at 10 (rule 8).
		{"a full", "a", Request{Max: 1, Tiers: wide, Global: true, GlobalCaps: []Cap{{3, 1000}}}, 5, f(0, 1, 100, 2, 2, 3, 0, 0, 1, 991, 991), false},
		// Without GLOBAL the global key is not consulted (nor its time).
		{"a alone", "a", Request{Max: 1, Tiers: wide}, 5, f(1, 1, 100, 3, 3, -1, 0, 0, 0, 0, 1001), false},
	})
	run(t, []step{
		// A global caps string: 5/1s and 6/1d (g = 86400 ms, aligned on the epoch).
		// A grant at 86400000 + 5 lies in bucket [86400000, 86486399]: it counts for
		// the day cap until 86486399 + 86400000.
		{"day", "a", Request{Max: 5, Tiers: wide, Global: true, GlobalCaps: []Cap{{5, 1000}, {6, 86_400_000}}}, 86_400_005, f(5, 1, 100, 5, 5, 5, 0, 0, 0, 0, 1001), false},
		// 1001 ms later the 1 s cap is free again, the day cap has room for 1.
		{"day cut", "b", Request{Max: 5, Min: 1, Tiers: wide, Global: true, GlobalCaps: []Cap{{5, 1000}, {6, 86_400_000}}}, 86_401_006, f(1, 1, 100, 1, 1, 1, 0, 0, 1, 0, 1001), false},
		// Full for the day: both grants lie in the same bucket, free after its end + W.
		{"day full", "b", Request{Max: 1, Tiers: wide, Global: true, GlobalCaps: []Cap{{5, 1000}, {6, 86_400_000}}}, 86_402_006,
			f(0, 1, 100, 1, 1, 1, 0, 0, 1, 86_486_399+86_400_000+1-86_402_006, 1), false},
	})
}

// Rule 10's last sentence: a cap added later counts only the hits the key holds (its
// second log); a grant that does not name a cap drops it.
func TestRateCapAddedLater(t *testing.T) {
	wide := tiers(Tier{Limit: 100, Window: 1000, Active: 1000})
	long := []Cap{{4, 10000}}
	run(t, []step{
		{"no cap", "a", Request{Max: 3, Tiers: wide}, 0, f(3, 1, 100, 3, 3, -1, 0, 0, 0, 0, 1001), false},
		// Added at 500: it counts the grants of [-500, 500], all 3; the grant at 500
		// lies in bucket [500, 509]: X = 509 + 10000 + 1.
		{"added", "a", Request{Max: 2, Min: 1, Tiers: wide, Caps: long}, 500, f(1, 1, 100, 4, 4, -1, 0, 1, 0, 0, 10010), false},
		// Held now: 4 counted until bucket [0, 9] leaves at 10010.
		{"held", "a", Request{Max: 1, Tiers: wide, Caps: long}, 1200, f(0, 0, 100, 1, 1, -1, 0, 1, 0, 8810, 9310), false},
		// A grant without it drops it.
		{"dropped", "a", Request{Max: 1, Tiers: wide}, 1300, f(1, 1, 100, 2, 2, -1, 0, 0, 0, 0, 1001), false},
		// Added again at 1400: only the grants of [400, 1400] count (2).
		{"again", "a", Request{Max: 3, Min: 1, Tiers: wide, Caps: long}, 1400, f(2, 1, 100, 4, 4, -1, 0, 1, 0, 0, 10010), false},
	})
}

// Rule 11.
func TestRateOnce(t *testing.T) {
	wide := tiers(Tier{Limit: 3, Window: 1000, Active: 1000})
	grant := f(2, 1, 3, 2, 2, -1, 0, 0, 0, 0, 1001)
	run(t, []step{
		{"grant", "a", Request{Max: 2, Tiers: wide, Once: "tok"}, 1000, grant, false},
		// A replay returns the remembered reply and counts nothing: 1 more still fits.
		{"replay", "a", Request{Max: 2, Tiers: wide, Once: "tok"}, 1500, grant, true},
		{"other", "a", Request{Max: 1, Tiers: wide}, 1500, f(1, 1, 3, 3, 3, -1, 0, 0, 0, 0, 1001), false},
		// Another key does not know the token.
		{"other key", "b", Request{Max: 2, Tiers: wide, Once: "tok"}, 1500, grant, false},
		// Still recognised at t0 + 10000, not at t0 + 10001.
		{"replay late", "a", Request{Max: 2, Tiers: wide, Once: "tok"}, 11000, grant, true},
		{"too late", "a", Request{Max: 2, Tiers: wide, Once: "tok"}, 11001, f(2, 1, 3, 2, 2, -1, 0, 0, 0, 0, 1001), false},
	})
	run(t, []step{
		// A rejected and a DRYRUN request remember nothing.
		{"full", "a", Request{Max: 4, Tiers: wide, Once: "x"}, 0, f(0, 0, 3, 0, 0, -1, 0, 0, 0, -1, 0), false},
		{"dry", "a", Request{Max: 1, Tiers: wide, Once: "x", DryRun: true}, 0, f(1, 1, 3, 1, 1, -1, 0, 0, 0, 0, 1001), false},
		{"real", "a", Request{Max: 1, Tiers: wide, Once: "x"}, 0, f(1, 1, 3, 1, 1, -1, 0, 0, 0, 0, 1001), false},
		{"replay", "a", Request{Max: 1, Tiers: wide, Once: "x"}, 1, f(1, 1, 3, 1, 1, -1, 0, 0, 0, 0, 1001), true},
	})
}

// RetryAfter (change points) equals the millisecond-by-millisecond search on random
// small keys with tiers and caps.
func TestRetryAfterBrute(t *testing.T) {
	var checked int
	for seed := uint64(0); seed < 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		req := Request{Max: 1 + rng.Int64N(6), Global: rng.IntN(2) == 0}
		for i := 0; i < 1+rng.IntN(3); i++ {
			req.Tiers = append(req.Tiers, Tier{Limit: rng.Int64N(5), Window: 1 + rng.Int64N(300), Active: 1 + rng.Int64N(300), Cooldown: rng.Int64N(300), Skippable: rng.IntN(3) == 0})
		}
		for i := 0; i < rng.IntN(3); i++ {
			req.Caps = append(req.Caps, Cap{N: rng.Int64N(8), Window: 1 + rng.Int64N(4000)})
		}
		if req.Global {
			for i := 0; i < 1+rng.IntN(2); i++ {
				req.GlobalCaps = append(req.GlobalCaps, Cap{N: rng.Int64N(10), Window: 1 + rng.Int64N(4000)})
			}
		}
		k, g := NewKey(), NewGlobal()
		now := int64(10_000)
		for s := 0; s < 60; s++ {
			now += rng.Int64N(200)
			r := req
			r.Min = rng.Int64N(r.Max + 1)
			if rng.IntN(4) == 0 {
				r.Caps = nil // dropped by a grant, added again later
			}
			if rng.IntN(5) == 0 {
				// A grant on the global key from another domain.
				Rate(NewKey(), g, &r, now, false)
			}
			res := Rate(k, g, &r, now, true)
			if res.Granted {
				continue
			}
			if b := BruteRetryAfter(k, g, &r, res.T); b != res.Fields[FieldRetryAfter] {
				t.Fatalf("seed %d step %d: retry_after %d, brute force %d (%+v)", seed, s, res.Fields[FieldRetryAfter], b, r)
			}
			checked++
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d rejections checked", checked)
	}
}

// retry_after is exact: the request is granted then and not 1 ms before.
func TestRetryAfterGrants(t *testing.T) {
	wide := tiers(Tier{Limit: 2, Window: 500, Active: 500})
	req := Request{Max: 2, Min: 2, Tiers: wide, Caps: []Cap{{3, 2500}}}
	k := NewKey()
	var rejections int
	for now := int64(0); now < 20_000; now += 97 {
		r := Rate(k, nil, &req, now, true)
		if r.Granted {
			continue
		}
		rejections++
		ra := r.Fields[FieldRetryAfter]
		if ra <= 0 {
			t.Fatalf("at %d: retry_after %d", now, ra)
		}
		for _, d := range []int64{ra - 1, ra} {
			probe := req
			probe.DryRun = true
			c := k.Clone()
			if got := Rate(c, nil, &probe, r.T+d, false).Granted; got != (d == ra) {
				t.Fatalf("at %d: retry_after %d, granted at +%d: %v", now, ra, d, got)
			}
		}
	}
	if rejections == 0 {
		t.Fatal("no rejection")
	}
}
