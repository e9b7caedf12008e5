package local

import (
	"math"

	"github.com/charon-redis/charon/module/rate"
)

// A share of a limit. The local engine is module/rate itself (the same rules 1-10 the
// server applies, on values kept in this process), run with every limit scaled to the
// instance's share. A share s of "n hits per W" is n·s hits per W, rarely a whole
// number: 10 per second at a share of 1/4 is 2.5 per second. Rounding down would give
// 2 (the fleet gets 8 of 10), rounding up 3 (12 of 10), and with more instances it
// gets worse: at 1/20 a domain would get 0 or 20 per second across the fleet. So the
// count is rounded up and the window stretched to keep the rate: k = ceil(n·s) hits
// per W·k/(n·s), i.e. 3 per 1.2 s, or 1 per 2 s at 1/20. Over time an instance grants
// exactly its share of the rate; within one window of W it may grant at most one hit
// more than n·s (k <= n·s + 1).

// scale returns the limit and window of a share s of n hits per w ms.
func scale(n, w int64, s float64) (int64, int64) {
	if n <= 0 || s >= 1 {
		return n, w
	}
	x := float64(n) * s
	// The epsilon keeps a share computed as 0.25000000000000006 of 100 at 25.
	k := math.Ceil(x - 1e-9)
	if k < 1 {
		k = 1
	}
	ww := math.Ceil(float64(w)*k/x - 1e-9)
	if ww > rate.MaxDuration || math.IsInf(ww, 0) || math.IsNaN(ww) {
		ww = rate.MaxDuration
	}
	return int64(k), max(int64(ww), w)
}

// part says which halves of a request the engine gets.
type part uint8

const (
	partDomain part = 1 << iota // the tiers, HARD and the per-domain caps
	partGlobal                  // GLOBAL and the global caps
)

// wall is the tier of a request that only counts global hits (seeding or recording
// the global value without a domain): it never binds.
var wall = rate.Tier{Limit: rate.MaxCount, Window: 1, Active: 1}

// build fills q for a local request: lim's limits scaled by sd (the domain's) and sg
// (the resource's), the halves in p. A half left out of p does not bind (the domain
// half is replaced by a tier that never fills; the global half is dropped).
func build(q *rate.Request, lim *Limits, p part, sd, sg float64, minHits, maxHits int64, dry bool) {
	*q = rate.Request{Max: maxHits, Min: minHits, DryRun: dry, GlobalKeyIdx: -1, AtIdx: -1, ClockIdx: -1}
	if p&partDomain == 0 {
		q.Tiers[0], q.NTiers = wall, 1
	} else {
		for i, t := range lim.Tiers {
			q.Tiers[i] = t
			q.Tiers[i].Limit, q.Tiers[i].Window = scale(t.Limit, t.Window, sd)
		}
		q.NTiers = len(lim.Tiers)
		q.Closed = lim.Closed
		q.NCaps, q.Hard, q.HasHard = scaleCaps(lim.Caps, sd, &q.Caps)
	}
	if p&partGlobal != 0 && len(lim.GlobalCaps) > 0 {
		q.HasGlobal = true
		q.NGlobalCaps, q.GlobalLimit, q.HasGlobalLimit = scaleCaps(lim.GlobalCaps, sg, &q.GlobalCaps)
	}
}

// scaleCaps writes caps scaled by s into out, each at a window of its own (distinct):
// the one that lands on 1000 ms is returned as (second, true) instead, the HARD or
// GLOBAL limit the engine keeps apart; n is how many went into out.
func scaleCaps(caps []rate.Cap, s float64, out *[rate.MaxCaps]rate.Cap) (n int, second int64, hasSecond bool) {
	var windows [rate.MaxCaps]int64
	for i, c := range caps {
		limit, w := scale(c.Limit, c.Window, s)
		w = distinct(windows[:i], w)
		windows[i] = w
		if w == 1000 {
			second, hasSecond = limit, true
			continue
		}
		out[n] = rate.Cap{Limit: limit, Window: w}
		n++
	}
	return n, second, hasSecond
}

// distinct returns w, or the next window length not in used: two caps stretched to
// the same window would be one cap to the engine (a key holds one cap per window). A
// millisecond longer is a slightly stricter cap.
func distinct(used []int64, w int64) int64 {
	for again := true; again; {
		again = false
		for _, u := range used {
			if u == w {
				w++
				again = true
			}
		}
	}
	return w
}
