package rate

import (
	"errors"
	"strconv"
)

// Rules 10 and 11 in Apply: the request's caps counted at t, ONCE's table, and the
// version 3 regions written with the grant (FORMAT.md, "Version 3").

// ErrTooManyTokens is returned when a key would have to remember more ONCE tokens than
// a value holds (all of them granted within the last 10 s), or tokens whose hashes
// crowd one place of the table (not random tokens: made to collide).
var ErrTooManyTokens = errors.New("ONCE: this key cannot remember another token: it holds " + strconv.Itoa(maxTok*3/4) +
	" from the last 10 s, or tokens made to collide; send random tokens, fewer per key, or none")

// capSet is a request's caps on one key (per-domain or global), moved to t, in the
// request's order.
type capSet struct {
	n     int
	cs    [MaxCaps]capState
	src   [MaxCaps]int8  // the stored cap each continues, -1 for a cap new to the key
	count [MaxCaps]int64 // hits each counts at t
	add   [MaxCaps]int64 // hits a grant adds to each (planCaps; saturated below 2^62)
	same  bool           // the key stores exactly these windows, in this order
	// For a bucket log updated in place (planCaps): where to write, the new entry's
	// step (0: the newest count is rewritten), the count, and how many bytes of its
	// spare room the log uses up.
	at, grow  [MaxCaps]int
	step, cnt [MaxCaps]int64
}

// len is the number of caps.
func (set *capSet) len() int { return set.n }

// evalCaps counts the request's caps on v at t: a stored cap (same window) moves on,
// a new one counts the key's second log (sec, moved to t-1000; secHits its sum).
func evalCaps(v *view, caps []Cap, sec cursor, secHits, t int64, set *capSet) fault {
	set.n = len(caps)
	set.same = v.nc == len(caps)
	for i := range caps {
		c := caps[i]
		k := -1
		for j := 0; j < v.nc; j++ {
			if v.caps[j].cfg.Window == c.Window {
				k = j
				break
			}
		}
		if k != i {
			set.same = false
		}
		set.src[i] = int8(k)
		cs := &set.cs[i]
		g := bucketMs(c.Window)
		switch {
		case k >= 0:
			*cs = v.caps[k]
		case g == 1:
			*cs = capState{g: 1, cu: sec}
		default:
			*cs = capState{g: g, first: floorDiv(t, g), sum: secHits}
		}
		cs.cfg = c
		if g == 1 {
			if f := v.advance(&cs.cu, -1, t-c.Window); f != faultNone {
				return f
			}
			set.count[i] = cs.cu.sum
			continue
		}
		if k >= 0 && !capAdvance(v.b, cs, floorDiv(t-c.Window, g)) {
			return faultCursor
		}
		set.count[i] = cs.sum
	}
	return faultNone
}

// room lowers capped to every cap's room; limited reports a cap below max.
func (set *capSet) room(capped, max int64) (int64, bool) {
	limited := false
	for i := 0; i < set.len(); i++ {
		r := set.cs[i].cfg.Limit - set.count[i]
		if r < 0 {
			r = 0
		}
		if r < max {
			limited = true
		}
		capped = min(capped, r)
	}
	return capped, limited
}

// expiry is the latest time a cap of set still counts the hits it holds (rule 10's
// reset term): for each bucketed cap, its newest bucket's end + window + 1. newest is
// the newest bucket's time (the grant's t, or the value's last), has whether the caps
// hold anything then (a new cap: the second log's hits).
func (set *capSet) expiry(newest int64, stored, fresh bool) int64 {
	var x int64
	for i := 0; i < set.len(); i++ {
		cs := &set.cs[i]
		if cs.exact() || !(fresh || set.src[i] >= 0 && stored || set.src[i] < 0 && cs.sum > 0) {
			continue
		}
		x = max(x, (floorDiv(newest, cs.g)+1)*cs.g+cs.cfg.Window)
	}
	return x
}

// clear is the first time >= s0 at which every cap of set leaves room for need
// (retry_after); v is the key, sec its second-log cursor. ok false: never (a cap's n
// below need).
func (set *capSet) clear(v *view, sec cursor, s0, need int64) (int64, bool) {
	at := s0
	for i := 0; i < set.len(); i++ {
		cs := &set.cs[i]
		bound := cs.cfg.Limit - need
		if bound < 0 {
			return 0, false
		}
		if set.count[i] <= bound {
			continue
		}
		switch {
		case cs.exact():
			at = max(at, logClearW(v, cs.cu, s0, bound, cs.cfg.Window))
		case set.src[i] < 0:
			// A cap the key does not hold counts the second log's hits (FORMAT.md),
			// as long as no grant stores it: each leaves it with the second log.
			at = max(at, logClear(v, sec, s0, bound))
		default:
			at = max(at, bucketClear(v.b, cs, bound))
		}
	}
	return at, true
}

// logClearW is the first time >= s0 at which the log's hits of the last w ms (from
// cursor cu, at or before s0-w) are at most bound. It walks only the entries that must
// leave.
func logClearW(v *view, cu cursor, s0, bound, w int64) int64 {
	if v.advance(&cu, -1, s0-w) != faultNone || cu.sum <= bound || cu.off >= v.end {
		return s0
	}
	b, end := v.b[:v.end], v.end
	next, _, c, f := evCount(b, cu.off, end, -1)
	if f != faultNone {
		return s0
	}
	sum, ts := cu.sum, cu.ts
	for {
		sum -= c
		if sum <= bound {
			return ts + w + 1
		}
		if next >= end {
			return s0
		}
		var d uint64
		if next, d, c, f = evCount(b, next, end, -1); f != faultNone || d == 0 || d > uint64(MaxAt) {
			return s0
		}
		ts += int64(d)
	}
}

// bucketClear: the time a stored bucketed cap's count falls to bound.
func bucketClear(b []byte, cs *capState, bound int64) int64 {
	end := cs.off + cs.len
	off := cs.off + cs.dead
	bk, sum := cs.first, cs.sum
	for first := true; off < end; first = false {
		st, c, next, ok := readEntry(b, off, end)
		if !ok {
			break
		}
		if !first {
			bk += int64(st)
		}
		sum -= int64(c)
		if sum <= bound {
			return (bk+1)*cs.g + cs.cfg.Window
		}
		off = next
	}
	return 0
}

// tokPlan is what a grant does with the token table.
type tokPlan uint8

const (
	tokKeep    tokPlan = iota // leave the table as it is
	tokPut                    // store the reply in slot (in place)
	tokRebuild                // rebuild with the live tokens (and the reply, with ONCE)
	tokDrop                   // drop the table: its newest token expired
)

// prefixPlan is what the grant does with a value's version 3 regions.
type prefixPlan struct {
	tok     tokPlan
	slot    int
	reply   tokReply
	once    bool // the reply is remembered
	rebuild bool // the regions change size: the value is rewritten
}

// planCaps decides how the grant of granted hits at t goes into set (moved to t; old
// is the value the caps were read from) and updates set's states as they will be
// written: sums, and for caps updated in place the count's place and value.
func planCaps(old []byte, v *view, set *capSet, t, granted int64, p *prefixPlan) {
	if set.n == 0 {
		if v.nc > 0 {
			p.rebuild = true // the key's caps are dropped
		}
		return
	}
	if !set.same {
		p.rebuild = true
	}
	for i := 0; i < set.n; i++ {
		cs := &set.cs[i]
		if cs.exact() {
			continue
		}
		bt := floorDiv(t, cs.g)
		add := min(granted, hitSumCap-1-cs.sum)
		set.add[i] = add
		cs.sum += add
		if set.src[i] < 0 || cs.dead >= cs.len {
			// A new cap, or every stored bucket left: the log is written anew.
			p.rebuild = true
			cs.first = bt
			continue
		}
		if cs.dead >= capCompactMin && 2*cs.dead >= cs.len {
			p.rebuild = true // the dead front is dropped
			continue
		}
		// In place: the newest count grows, or a new entry goes into the spare room.
		var at, grow int
		if newest := floorDiv(v.last, cs.g); bt == newest {
			c0, a := capLast(old, cs)
			at, grow = a, uvarintLen(uint64(c0+add))-uvarintLen(uint64(c0))
			set.step[i], set.cnt[i] = 0, c0+add
		} else {
			at, grow = cs.off+cs.len, uvarintLen(uint64(bt-newest))+uvarintLen(uint64(add))
			set.step[i], set.cnt[i] = bt-newest, add
		}
		if grow > cs.spare {
			p.rebuild = true
			continue
		}
		set.at[i], set.grow[i] = at, grow
	}
}

// planTokens decides what the grant does with v's token table (cur holds it).
func planTokens(cur []byte, v *view, req *Request, t int64, slot int, p *prefixPlan) {
	tt := &v.tok
	switch {
	case req.HasOnce && tt.n == 0:
		p.tok, p.rebuild = tokRebuild, true
	case req.HasOnce && tokNeedsRebuild(cur, tt, slot, t):
		p.tok, p.rebuild = tokRebuild, true
	case req.HasOnce:
		p.tok, p.slot = tokPut, slot
	case tt.n > 0 && t-tt.tnew > onceLife:
		p.tok, p.rebuild = tokDrop, true
	default:
		p.tok = tokKeep
	}
	p.once = req.HasOnce
}

// liveTokens counts the tokens of v's table live at t.
func liveTokens(cur []byte, tt *tokTable, t int64) int {
	n := 0
	for i := 0; i < tt.n; i++ {
		if h, t0 := tokHash(cur, i); h != 0 && t-t0 <= onceLife {
			n++
		}
	}
	return n
}

// appendTokens appends the new token table to dst (plan tokRebuild or tokKeep for a
// rewritten value) and returns it with the table's description.
func appendTokens(dst []byte, cur []byte, old *tokTable, t int64, p *prefixPlan) ([]byte, tokTable, error) {
	switch p.tok {
	case tokDrop:
		return dst, tokTable{}, nil
	case tokKeep, tokPut:
		// The table as it is (the reply, if any, goes into its slot).
		if old.n == 0 {
			return dst, tokTable{}, nil
		}
		base := len(dst)
		dst = append(dst, cur[1:old.end()]...)
		tt := *old
		if p.tok == tokPut {
			if h, _ := tokHash(cur, p.slot); h == 0 {
				tt.occ++
			}
			putTok(dst[base-1:], 1+tokSlot*p.slot, &p.reply)
			tt.tnew = t
		}
		return dst, tt, nil
	}
	live := liveTokens(cur, old, t)
	if p.once {
		live++
	}
	if live == 0 {
		return dst, tokTable{}, nil
	}
	if p.once && 4*live > 3*maxTok {
		return dst, tokTable{}, ErrTooManyTokens
	}
	// Rebuild at the planned size; double it (twice at most: hashes that crowd at
	// every size were made to) while some token would lie more than maxProbe past
	// its home. Random tokens almost never need it.
	base := len(dst) - 1 // slot i at base + 1 + 64i, as in a value
	for n := tokSize(live); n <= min(maxTok, 4*tokSize(live)); n *= 2 {
		dst = dst[:base+1]
		for range n * tokSlot {
			dst = append(dst, 0)
		}
		if tt, ok := fillTokens(dst[base:], n, cur, old, t, p); ok {
			return dst, tt, nil
		}
	}
	return dst[:base+1], tokTable{}, ErrTooManyTokens
}

// fillTokens puts the live tokens of old (in cur) and the reply (with ONCE) into the
// empty table of n slots in v (a value's first bytes); ok false when one would lie
// more than maxProbe past its home.
func fillTokens(v []byte, n int, cur []byte, old *tokTable, t int64, p *prefixPlan) (tokTable, bool) {
	tt := tokTable{n: n, built: t}
	mask := n - 1
	place := func(h uint64) int {
		for k, i := 0, int(h)&mask; k < n && k <= maxProbe; k, i = k+1, (i+1)&mask {
			if sh, _ := tokHash(v, i); sh == 0 {
				return i
			}
		}
		return -1
	}
	for i := 0; i < old.n; i++ {
		h, t0 := tokHash(cur, i)
		if h == 0 || t-t0 > onceLife || p.once && h == p.reply.h {
			continue
		}
		k := place(h)
		if k < 0 {
			return tt, false
		}
		copy(v[1+tokSlot*k:1+tokSlot*(k+1)], cur[1+tokSlot*i:1+tokSlot*(i+1)])
		tt.occ++
		tt.tnew = max(tt.tnew, t0)
	}
	if p.once {
		k := place(p.reply.h)
		if k < 0 {
			return tt, false
		}
		putTok(v, 1+tokSlot*k, &p.reply)
		tt.occ++
		tt.tnew = t
	}
	return tt, true
}

// appendCapRegions appends the bucket logs of set (in order) to dst after a grant at t
// (planCaps planned it: set's sums and adds are the new ones); v is the value read
// (cur its bytes, last its newest time) and sec its second-log cursor moved to
// t-1000, from which a new cap starts. A stored cap's live entries are copied as they
// are (its dead front dropped), then its newest count is rewritten or an entry
// appended. States in set get their new offsets (relative to the value starting at
// base).
func appendCapRegions(dst []byte, base int, cur []byte, v *view, last int64, sec cursor, set *capSet, t int64) []byte {
	for i := 0; i < set.len(); i++ {
		cs := &set.cs[i]
		if cs.exact() {
			continue
		}
		start := len(dst)
		bt := floorDiv(t, cs.g)
		add := set.add[i]
		switch {
		case set.src[i] >= 0 && cs.dead < cs.len:
			newest := floorDiv(last, cs.g)
			if bt == newest {
				c0, at := capLast(cur, cs)
				dst = append(dst, cur[cs.off+cs.dead:at]...)
				dst = appendUvarint(dst, uint64(c0+add))
			} else {
				dst = append(dst, cur[cs.off+cs.dead:cs.off+cs.len]...)
				dst = appendUvarint(appendUvarint(dst, uint64(bt-newest)), uint64(add))
			}
		case set.src[i] >= 0:
			// Every stored bucket left the window: the grant's alone.
			dst = appendUvarint(appendUvarint(dst, 1), uint64(add))
			cs.first = bt
		default:
			// A cap new to the key starts from the second log (FORMAT.md).
			dst = appendFromSecondLog(dst, v, sec, cs.g, bt, add)
			cs.first = bt - spanOf(dst[start:])
		}
		cs.off, cs.len, cs.dead = start-base, len(dst)-start, 0
		cs.spare = capSpare(cs.len)
		for range cs.spare {
			dst = append(dst, 0)
		}
	}
	return dst
}

// appendFromSecondLog writes a new cap's bucket log: the second log's hits (from sec)
// by bucket of g ms, then add hits in bucket bt.
func appendFromSecondLog(dst []byte, v *view, sec cursor, g, bt, add int64) []byte {
	var prev, pend int64
	have := false
	put := func(bk, cnt int64) {
		if have && bk == prev {
			pend += cnt
			return
		}
		step := uint64(1)
		if have {
			dst = appendUvarint(dst, uint64(pend))
			step = uint64(bk - prev)
		}
		dst = appendUvarint(dst, step)
		prev, pend, have = bk, cnt, true
	}
	if sec.off < v.end {
		var w evWalk
		w.at(v, sec.off, sec.ts)
		var f fault
		for {
			if w.e.total > 0 {
				put(floorDiv(w.ts, g), w.e.total)
			}
			if !w.step(&f) {
				break
			}
		}
	}
	put(bt, add)
	return appendUvarint(dst, uint64(pend))
}

// spanOf is the newest bucket minus the first of a bucket log written from its start
// (every step but the first's).
func spanOf(r []byte) int64 {
	var span int64
	for off, first := 0, true; off < len(r); first = false {
		st, _, next, ok := readEntry(r, off, len(r))
		if !ok {
			break
		}
		if !first {
			span += int64(st)
		}
		off = next
	}
	return span
}
