package rate

import "math"

// retry_after: the first time t' > t at which the same request would be granted if
// nothing else happened. Without traffic only three things change, each at a known
// time: a hit leaves a tier window (ts+W+1), a second-log entry leaves the HARD or
// GLOBAL window (ts+1001), and a tier changes state (e+A+1, e+A+C+1). Between two
// state changes the climb's path is fixed and every room only grows, and the caps
// only grow for ever, so the answer is found segment by segment by walking leave
// times in order instead of trying every millisecond.

// retryAfter returns the retry_after field for a rejected request at c.t, or -1 when
// no amount of waiting helps (rule 9, or MIN above what the tiers, HARD or GLOBAL can
// ever give). gv is the global key's header (with GLOBAL).
func (c *calc) retryAfter(need int64, gv *view) int64 {
	req := c.req
	var sumL int64
	for j := 0; j < c.n; j++ {
		sumL = satAdd(sumL, req.Tiers[j].Limit, hitSumCap)
	}
	fresh := min(req.Max, sumL)
	if req.HasHard {
		fresh = min(fresh, req.Hard)
	}
	if req.HasGlobalLimit {
		fresh = min(fresh, req.GlobalLimit)
	}
	if fresh < need {
		return -1
	}
	s0 := c.t + 1
	tCap := s0
	// The second logs and the caps only shrink, so a cap with room now needs no walk.
	if req.HasHard && c.domainHits > req.Hard-need {
		tCap = max(tCap, logClear(&c.v, c.sec, s0, req.Hard-need))
	}
	if req.HasGlobalLimit && c.globalHits > req.GlobalLimit-need {
		tCap = max(tCap, logClear(gv, c.gsec, s0, req.GlobalLimit-need))
	}
	at, ok := c.dcaps.clear(&c.v, c.sec, s0, need)
	if !ok {
		return -1
	}
	tCap = max(tCap, at)
	if c.hasG {
		at, ok := c.gcaps.clear(gv, c.gsec, s0, need)
		if !ok {
			return -1
		}
		tCap = max(tCap, at)
	}
	// The tier cursors (c.v's, moved to their windows at t; retryAfter is their
	// last use) only move forward, segment after segment, over the hits that leave
	// a window.

	var pts [2 * MaxTiers]int64
	np := 0
	for j := 0; j < c.n; j++ {
		if !c.entered[j] {
			continue
		}
		tc := &req.Tiers[j]
		p1 := c.entry[j] + tc.Active + 1
		p2 := p1 + tc.Cooldown
		if p1 > s0 {
			pts[np] = p1
			np++
		}
		if p2 > s0 && p2 != p1 {
			pts[np] = p2
			np++
		}
	}
	for i := 1; i < np; i++ { // insertion sort, at most 32 points
		for k := i; k > 0 && pts[k] < pts[k-1]; k-- {
			pts[k], pts[k-1] = pts[k-1], pts[k]
		}
	}
	s := s0
	for k := 0; k <= np; k++ {
		next := int64(math.MaxInt64)
		if k < np {
			next = pts[k]
		}
		if next <= s {
			continue
		}
		if tCap < next {
			if at, ok := c.segment(s, next, need, tCap); ok {
				return at - c.t
			}
		}
		s = next
	}
	return -1
}

// logClear is the first time >= s0 at which v's second log holds at most bound hits;
// cu is its cursor at or before s0-1000.
func logClear(v *view, cu cursor, s0, bound int64) int64 {
	return logClearW(v, cu, s0, bound, secondWindow)
}

// segment finds the first time in [s, next), not before tCap, at which the climb
// gathers need hits; tier states are constant on the segment. The tier cursors of
// c.v (wc) are moved on to s here.
func (c *calc) segment(s, next, need, tCap int64) (int64, bool) {
	req := c.req
	wc := &c.v.tiers
	var st [MaxTiers]TierState
	cur := 0
	for j := 0; j < c.n; j++ {
		st[j] = stateAt(c.entered[j], c.entry[j], &req.Tiers[j], s)
		if st[j] == Active {
			cur = j
		}
	}
	var in [MaxTiers]bool
	var sumL int64
	for j := cur; j < c.n; j++ {
		if st[j] == Cooldown {
			if req.Tiers[j].Skippable {
				continue
			}
			break
		}
		in[j] = true
		sumL = satAdd(sumL, req.Tiers[j].Limit, hitSumCap)
	}
	if sumL < need {
		return 0, false
	}
	if !in[0] {
		// Only higher tiers: the INACTIVE ones are empty and fresh.
		fresh := true
		for j := cur; j < c.n; j++ {
			fresh = fresh && (!in[j] || st[j] == Inactive)
		}
		if fresh {
			return max(s, tCap), true
		}
	}
	// Each counted tier's cursor moves to its window at s.
	var hits [MaxTiers]int64
	var counted [MaxTiers]bool
	for j := 0; j < c.n && j < c.v.n; j++ {
		if !in[j] || (j > 0 && st[j] == Inactive) {
			continue
		}
		if c.v.advance(&wc[j].cu, j, c.lower(j, s)) != faultNone {
			return 0, false // unreachable: Apply walked the same events
		}
		hits[j], counted[j] = wc[j].cu.sum, true
	}
	room := func(j int) int64 { return max(req.Tiers[j].Limit-hits[j], 0) }
	var sum int64
	for j := 0; j < c.n; j++ {
		if in[j] {
			sum = satAdd(sum, room(j), hitSumCap)
		}
	}
	if sum >= need {
		return max(s, tCap), true
	}
	// Walk the hits that leave the windows, earliest first.
	for {
		best := -1
		var leave int64
		for j := 0; j < c.n; j++ {
			if counted[j] && wc[j].cu.off < c.v.end {
				lt := wc[j].cu.ts + req.Tiers[j].Window + 1
				if best < 0 || lt < leave {
					best, leave = j, lt
				}
			}
		}
		if best < 0 || leave >= next {
			return 0, false
		}
		before := room(best)
		if c.v.advance(&wc[best].cu, best, wc[best].cu.ts+1) != faultNone {
			return 0, false
		}
		hits[best] = wc[best].cu.sum
		sum += room(best) - before
		if sum >= need {
			at := max(leave, tCap)
			return at, at < next
		}
	}
}
