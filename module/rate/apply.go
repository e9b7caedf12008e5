package rate

import (
	"errors"
	"fmt"
	"math"
)

// Reply field indexes, in the order of the CHARON.RATE reply.
const (
	FieldGranted = iota
	FieldTier
	FieldTierLimit
	FieldTierHits
	FieldDomainHits
	FieldGlobalHits
	FieldBurst
	FieldHardLimited
	FieldGlobalLimited
	FieldRetryAfter
	FieldResetAfter
	// NumFields is the length of the reply.
	NumFields
)

// FieldNames are the reply's field names (RESP3 map keys) in reply order. Read only.
var FieldNames = [NumFields]string{
	"granted", "tier", "tier_limit", "tier_hits", "domain_hits", "global_hits",
	"burst", "hard_limited", "global_limited", "retry_after", "reset_after",
}

// TierState is a tier's state at a time (rule 1).
type TierState uint8

const (
	// Inactive: never entered, or past its active and cooldown periods.
	Inactive TierState = iota
	// Active: entered at e and e <= t <= e+A.
	Active
	// Cooldown: e+A < t <= e+A+C.
	Cooldown
)

// String returns "ACTIVE", "COOLDOWN" or "INACTIVE".
func (s TierState) String() string {
	switch s {
	case Active:
		return "ACTIVE"
	case Cooldown:
		return "COOLDOWN"
	}
	return "INACTIVE"
}

func stateAt(entered bool, e int64, cfg *Tier, t int64) TierState {
	switch {
	case !entered || t < e:
		return Inactive
	case t <= e+cfg.Active:
		return Active
	case t <= e+cfg.Active+cfg.Cooldown:
		return Cooldown
	}
	return Inactive
}

// Result is the outcome of Apply.
type Result struct {
	// Fields is the reply, indexed by the Field* constants (names in FieldNames).
	Fields [NumFields]int64
	// Granted reports a granted request (also under DRYRUN).
	Granted bool
	// Write reports that Apply returned new values to store (granted, not DRYRUN).
	Write bool
	// T is the effective time of the request (rule 8); the glue replicates it as AT.
	T int64
	// ExpireAt is the key's absolute expiry in ms (X of the spec) after the request;
	// 0 when the key holds nothing.
	ExpireAt int64
	// GlobalExpireAt is the global key's absolute expiry (newest entry + 1001 ms, or
	// later while a global cap counts); 0 without GLOBAL or when the global key holds
	// nothing.
	GlobalExpireAt int64
	// Replay reports a request whose ONCE token the key remembers: Fields is the
	// remembered reply and nothing is written (rule 11).
	Replay bool
}

// ErrBadRequest is returned by Apply for a Request outside the bounds ParseRequest
// guarantees (only possible for a Request built by hand).
var ErrBadRequest = errors.New("rate: invalid request")

// calc holds one request's working state; it lives on the caller's stack.
type calc struct {
	req        *Request
	v          view
	hasV       bool // the key holds a value
	hasGV      bool // the global key holds a value
	hasG       bool
	t          int64
	n          int
	entered    [MaxTiers]bool
	entry      [MaxTiers]int64
	state      [MaxTiers]TierState
	hits       [MaxTiers]int64
	sec, gsec  cursor // second-log cursors moved to t-1000
	domainHits int64
	globalHits int64
	x1         int64  // latest tier-1 hit ts + W1 + 1
	dcaps      capSet // the request's per-domain caps at t (rule 10)
	gcaps      capSet // its global caps
	tokSlot    int    // ONCE: the slot an insert takes (tokLookup)
	last0      int64  // the key's newest time as read (c.v is rewritten in place)
	glast0     int64  // the global key's
}

// oldLast is the newest time of the key of kind as read, before the grant.
func (c *calc) oldLast(k Kind) int64 {
	if k == KindGlobal {
		return c.glast0
	}
	return c.last0
}

func satAdd(a, b, lim int64) int64 {
	if a > lim-b {
		return lim
	}
	return a + b
}

// Apply runs one CHARON.RATE request at nowMs (rules 1-9) against the key's current
// value cur (nil when absent) and, with GLOBAL, the global key's value gcur (nil when
// absent). It is pure: when the request is granted and not a DRYRUN it encodes the new
// values into out and gout (reused from index 0; they grow only when too small) and
// returns them; otherwise newVal and newGVal are nil and nothing must be written.
// It allocates nothing unless out or gout is too small. Stored values that do not
// decode give an error wrapping ErrCorrupt; a value of the wrong kind wraps
// ErrWrongKind. Values of encoding version 1 are read and written back in the current
// version.
//
// A request costs O(T) amortized whatever the number of hits in a window: each tier
// and each second log keeps a cursor and a running sum in the value that only move
// forward, the newest event is merged or a new one appended at the end, and the dead
// front of the log is dropped in batches.
func Apply(cur, gcur []byte, req *Request, nowMs int64, out, gout []byte) (res Result, newVal, newGVal []byte, err error) {
	return apply(cur, gcur, req, nowMs, out, gout, false)
}

// ApplyInPlace is Apply for values the caller owns and will replace: when the new
// value fits in cap(cur) (cap(gcur)) it is written over cur (gcur) in place and newVal
// (newGVal) shares its backing array, so that a grant copies no stored bytes. The
// bytes of cur beyond len(cur) up to cap(cur) must be writable.
func ApplyInPlace(cur, gcur []byte, req *Request, nowMs int64, out, gout []byte) (res Result, newVal, newGVal []byte, err error) {
	return apply(cur, gcur, req, nowMs, out, gout, true)
}

func apply(cur, gcur []byte, req *Request, nowMs int64, out, gout []byte, inPlace bool) (res Result, newVal, newGVal []byte, err error) {
	if !req.valid() {
		return res, nil, nil, ErrBadRequest
	}
	var c calc
	c.req = req
	c.n = req.NTiers
	c.v.start, c.v.end, c.v.logBase = 1, 1, 1 // no value: the first event goes at offset 1
	c.v.sec.off = 1
	curIn, gcurIn := inPlace, inPlace
	if len(cur) > 0 {
		if cur[0] == encV1 {
			if cur, err = convertV1(cur, out[:0]); err != nil {
				return res, nil, nil, fmt.Errorf("key: %w", err)
			}
			curIn = true // the converted copy is ours
		}
		if err := parseHeader(cur, &c.v); err != nil {
			return res, nil, nil, fmt.Errorf("key: %w", err)
		}
		if c.v.kind != KindDomain {
			return res, nil, nil, fmt.Errorf("key holds a %v log: %w", c.v.kind, ErrWrongKind)
		}
		c.hasV = true
	}
	// The global key's header, only with GLOBAL: a view is 1.4 KB to zero. It is
	// not a field of c: escape analysis follows c as a whole, and c.v's bytes leak
	// to the event walker, which would move it to the heap.
	var gv *view
	c.hasG = req.HasGlobal
	if c.hasG {
		var g view
		g.start, g.end, g.logBase = 1, 1, 1
		g.sec.off = 1
		gv = &g
	}
	if c.hasG && len(gcur) > 0 {
		if gcur[0] == encV1 {
			if gcur, err = convertV1(gcur, gout[:0]); err != nil {
				return res, nil, nil, fmt.Errorf("global key: %w", err)
			}
			gcurIn = true
		}
		if err := parseHeader(gcur, gv); err != nil {
			return res, nil, nil, fmt.Errorf("global key: %w", err)
		}
		if gv.kind != KindGlobal {
			return res, nil, nil, fmt.Errorf("global key holds a %v log: %w", gv.kind, ErrWrongKind)
		}
		c.hasGV = true
	}

	// Rule 8: time never goes back.
	t := min(max(nowMs, 0), MaxAt)
	if c.hasV {
		t = max(t, c.v.last)
	}
	if c.hasGV {
		t = max(t, gv.last)
	}
	c.t = t
	res.T = t

	// Rule 11: a remembered token answers with the remembered reply, and nothing else.
	if req.HasOnce && c.hasV {
		slot, found := tokLookup(cur, &c.v.tok, req.Once, t)
		if found {
			var r tokReply
			getTok(cur, slot, &r)
			res.Fields, res.Granted, res.Replay = r.fields, true, true
			return res, nil, nil, nil
		}
		c.tokSlot = slot
	}

	// Stored tier state under the request's configuration (extra tiers dropped, new
	// tiers empty).
	cur1 := -1 // highest ACTIVE tier index
	// The tier cursors are moved in c.v (tiers the value lacks start past its end):
	// the stored ones are not needed afterwards.
	for j := 0; j < c.n; j++ {
		if j < c.v.n {
			st := &c.v.tiers[j]
			c.entered[j], c.entry[j] = st.entered, st.entry
		} else {
			c.v.tiers[j].cu = cursor{off: c.v.end}
		}
		c.state[j] = stateAt(c.entered[j], c.entry[j], &req.Tiers[j], t)
		if c.state[j] == Active {
			cur1 = j
		}
	}
	// Rule 2: each counted tier's cursor moves to its window's lower bound.
	for j := 0; j < c.n && j < c.v.n; j++ {
		if j > 0 && c.state[j] == Inactive {
			continue
		}
		cu := &c.v.tiers[j].cu
		if f := c.v.advance(cu, j, c.lower(j, t)); f != faultNone {
			return res, nil, nil, fmt.Errorf("key: %w", corrupt(cu.off, f.String()))
		}
		c.hits[j] = cu.sum
	}
	if c.n > 0 && c.v.has1 {
		c.x1 = c.v.t1 + req.Tiers[0].Window + 1
	}
	c.sec = c.v.sec
	if f := c.v.advance(&c.sec, -1, t-1000); f != faultNone {
		return res, nil, nil, fmt.Errorf("key: %w", corrupt(c.sec.off, f.String()))
	}
	c.domainHits = c.sec.sum
	if c.hasG {
		c.gsec = gv.sec
	}
	if c.hasGV {
		if f := gv.advance(&c.gsec, -1, t-1000); f != faultNone {
			return res, nil, nil, fmt.Errorf("global key: %w", corrupt(c.gsec.off, f.String()))
		}
		c.globalHits = c.gsec.sum
	}

	// Rules 4 and 10: caps.
	capped := req.Max
	hardRoom, globalRoom := int64(math.MaxInt64), int64(math.MaxInt64)
	if req.HasHard {
		hardRoom = max(req.Hard-c.domainHits, 0)
		capped = min(capped, hardRoom)
	}
	if req.HasGlobalLimit {
		globalRoom = max(req.GlobalLimit-c.globalHits, 0)
		capped = min(capped, globalRoom)
	}
	var hardCapped, globalCapped bool
	if req.NCaps > 0 {
		if f := evalCaps(&c.v, req.Caps[:req.NCaps], c.sec, c.domainHits, t, &c.dcaps); f != faultNone {
			return res, nil, nil, fmt.Errorf("key: %w", corrupt(c.v.end, f.String()))
		}
		capped, hardCapped = c.dcaps.room(capped, req.Max)
	}
	if req.NGlobalCaps > 0 {
		if f := evalCaps(gv, req.GlobalCaps[:req.NGlobalCaps], c.gsec, c.globalHits, t, &c.gcaps); f != faultNone {
			return res, nil, nil, fmt.Errorf("global key: %w", corrupt(gv.end, f.String()))
		}
		capped, globalCapped = c.gcaps.room(capped, req.Max)
	}

	// Rule 5: climb from the current tier.
	start := max(cur1, 0)
	var take [MaxTiers]int64
	var part [MaxTiers]bool
	rem := capped
	for j := start; j < c.n && rem > 0; j++ {
		tc := &req.Tiers[j]
		if c.state[j] == Cooldown {
			if tc.Skippable {
				continue
			}
			break
		}
		part[j] = true
		room := max(tc.Limit-c.hits[j], 0)
		tk := min(rem, room)
		take[j] = tk
		rem -= tk
	}
	granted := capped - rem
	need := max(req.Min, 1)

	f := &res.Fields
	if req.HasHard && hardRoom < req.Max || hardCapped {
		f[FieldHardLimited] = 1
	}
	f[FieldGlobalHits] = -1
	if c.hasG {
		if globalRoom < req.Max || globalCapped {
			f[FieldGlobalLimited] = 1
		}
		f[FieldGlobalHits] = c.globalHits
	}
	if c.hasGV {
		res.GlobalExpireAt = max(gv.last+1001, c.gcaps.expiry(gv.last, true, false))
	}

	// Rule 6: decision.
	if c.n == 0 || granted < need {
		f[FieldTier], f[FieldTierLimit], f[FieldTierHits] = c.currentTier(&c.state, &c.hits)
		f[FieldDomainHits] = c.domainHits
		x := c.expiry(&c.entered, &c.entry)
		if c.hasV {
			x = max(x, c.dcaps.expiry(c.v.last, true, false))
		}
		res.ExpireAt = c.keyExpiry(x)
		f[FieldResetAfter] = max(x-t, 0)
		f[FieldRetryAfter] = c.retryAfter(need, gv)
		return res, nil, nil, nil
	}

	// Rule 7: the state after recording, as if written. The stored state is not
	// needed any more (retry_after is for rejections): c's arrays become the new
	// state in place rather than copies.
	res.Granted = true
	f[FieldGranted] = granted
	var enteredNow [MaxTiers]bool
	for j := 0; j < c.n; j++ {
		if part[j] && c.state[j] == Inactive {
			enteredNow[j] = true
			c.entered[j], c.entry[j], c.state[j] = true, t, Active
			if j > start {
				f[FieldBurst] = 1
			}
		}
		c.hits[j] = satAdd(c.hits[j], take[j], hitSumCap)
	}
	f[FieldTier], f[FieldTierLimit], f[FieldTierHits] = c.currentTier(&c.state, &c.hits)
	f[FieldDomainHits] = c.domainHits + granted
	if c.hasG {
		f[FieldGlobalHits] = c.globalHits + granted
		res.GlobalExpireAt = max(t+1001, c.gcaps.expiry(t, false, true))
	}
	if take[0] > 0 {
		c.x1 = max(c.x1, t+req.Tiers[0].Window+1)
	}
	x := max(c.expiry(&c.entered, &c.entry), t+1001, c.dcaps.expiry(t, false, true))
	f[FieldResetAfter] = x - t
	if req.DryRun {
		res.ExpireAt = c.keyExpiry(x)
		return res, nil, nil, nil
	}
	res.Write = true
	var p prefixPlan
	if c.hasV || req.HasOnce {
		planTokens(cur, &c.v, req, t, c.tokSlot, &p)
	}
	if p.once {
		p.reply = tokReply{h: req.Once, t0: t, fields: *f}
		res.ExpireAt = max(x, t+onceLife+1)
	} else if p.tok == tokKeep && c.v.tok.n > 0 {
		res.ExpireAt = max(x, c.v.tok.tnew+onceLife+1)
	} else {
		res.ExpireAt = x
	}
	if newVal, err = c.encodeDomain(cur, curIn, out, &take, granted, &enteredNow, &p); err != nil {
		return res, nil, nil, fmt.Errorf("key: %w", err)
	}
	if c.hasG {
		if newGVal, err = c.encodeGlobal(gv, gcur, gcurIn, gout, granted); err != nil {
			return res, nil, nil, fmt.Errorf("global key: %w", err)
		}
	}
	return res, newVal, newGVal, nil
}

// keyExpiry is the key's expiry for a request that writes nothing: X, or later while
// the key remembers a ONCE token (a replay must find the key).
func (c *calc) keyExpiry(x int64) int64 {
	if c.hasV && c.v.tok.n > 0 {
		return max(x, c.v.tok.tnew+onceLife+1)
	}
	return x
}

// lower is the oldest hit time that counts in tier j's window at s (rule 2).
func (c *calc) lower(j int, s int64) int64 {
	l := s - c.req.Tiers[j].Window
	if j > 0 && c.entry[j] > l {
		l = c.entry[j]
	}
	return l
}

// currentTier returns the reply's tier, tier_limit and tier_hits for given states.
func (c *calc) currentTier(st *[MaxTiers]TierState, hits *[MaxTiers]int64) (tier, limit, h int64) {
	if c.n == 0 {
		return 0, 0, 0
	}
	j := -1
	for i := 0; i < c.n; i++ {
		if st[i] == Active {
			j = i
		}
	}
	if j < 0 {
		return 0, c.req.Tiers[0].Limit, hits[0]
	}
	return int64(j + 1), c.req.Tiers[j].Limit, hits[j]
}

// expiry is X of the spec for the given entries (c.x1 holds the tier-1 hit term).
func (c *calc) expiry(entered *[MaxTiers]bool, entry *[MaxTiers]int64) int64 {
	x := c.x1
	if c.hasV {
		x = max(x, c.v.last+1001)
	}
	for j := 0; j < c.n; j++ {
		if entered[j] {
			tc := &c.req.Tiers[j]
			x = max(x, entry[j]+tc.Active+tc.Cooldown+1)
		}
	}
	return x
}

// maxEventLen bounds one encoded event: its step, a header and 17 counts;
// maxSingleLen one of a single slot: its first byte, step and count varints.
const (
	maxEventLen  = 2*maxVarint + Slots*maxVarint
	maxSingleLen = 1 + 2*maxVarint
)

// smallTiers is the most tiers parseHeaderFast reads.
const smallTiers = 4

// newest reads the newest event of v (the one a grant at v.last merges into).
func (v *view) newestEvent(s *[Slots]int64) (int64, error) {
	var e event
	_, d, f := readEvent(v.b, v.newest, v.end, &e)
	if f != faultNone {
		return 0, corrupt(v.newest, f.String())
	}
	copy(s[e.lo:e.lo+e.k], e.c[:e.k])
	return int64(d), nil
}

// place moves a cursor of the old value to the new one, given the event at t (at
// evOff, holding cnt in the cursor's slot, of which gain more than the old newest
// event held there when it is merged): a cursor past the old newest event lands on
// the event at t, or past it when the event at t is the merged old newest one and
// holds nothing for it.
//
// gain is what the stored count really changed by, not what the request asked for:
// counts saturate at MaxStoredCount (and hits moved to the detached slot can be cut
// there), so a sum that added the request's hits would drift from the counts it sums.
func place(cu cursor, oldEnd, evOff, newEnd int, merge bool, t, cnt, gain int64) cursor {
	if cu.off >= oldEnd {
		if merge && cnt == 0 {
			return cursor{off: newEnd}
		}
		return cursor{off: evOff, ts: t, sum: cnt}
	}
	cu.sum = satAdd(cu.sum, gain, hitSumCap)
	return cu
}

// encodeDomain writes the key's new value: the request's configuration and entries,
// the cursors moved on, this request's hits merged into the newest event (when it is
// at t) or appended, the dead front dropped when it outweighs the live log.
// c.entered, c.entry and c.state are the state after the request.
func (c *calc) encodeDomain(cur []byte, inPlace bool, out []byte, take *[MaxTiers]int64, granted int64, enteredNow *[MaxTiers]bool, p *prefixPlan) ([]byte, error) {
	t := c.t
	merge := c.hasV && c.v.last == t
	planCaps(cur, &c.v, &c.dcaps, t, granted, p)
	oldTok := c.v.tok
	c.last0 = c.v.last
	var s [Slots]int64
	var d int64
	keepEnd := 1
	if c.hasV {
		keepEnd, d = c.v.end, t-c.v.last
	}
	// gain[j] is what slot j of the event at t gains, secGain what its total gains:
	// the request's hits as stored (a merged count saturates at MaxStoredCount), less
	// what the detached slot could not take of the hits moved into it. The cursors'
	// sums move by exactly these, so they always equal the sums of the stored counts.
	var gain [MaxTiers]int64
	var total, secGain int64
	if merge {
		var err error
		if d, err = c.v.newestEvent(&s); err != nil {
			return nil, err
		}
		keepEnd = c.v.newest
		for j := 0; j < Slots; j++ {
			secGain -= s[j]
		}
		for j := 1; j < Detached; j++ {
			if s[j] != 0 && (j >= c.n || enteredNow[j] || c.state[j] == Inactive) {
				s[Detached] = min(s[Detached]+s[j], MaxStoredCount)
				s[j] = 0
			}
		}
	}
	var ev []byte
	if !merge && take[0] == granted {
		// The common request: every hit in tier 1 at a new ms. s holds them alone
		// (take[0] <= MaxMax < MaxStoredCount), no need to scan the 17 slots; its
		// event is short (a buffer is zeroed where it is declared).
		s[0], total, gain[0] = take[0], take[0], take[0]
		var evb [maxSingleLen]byte
		ev = appendSingle(evb[:0], d, 0, take[0])
	} else {
		var evb [maxEventLen]byte
		for j := 0; j < Slots; j++ {
			if j < c.n {
				was := s[j]
				s[j] = min(s[j]+take[j], MaxStoredCount)
				gain[j] = s[j] - was
			}
			total += s[j]
		}
		ev = appendEvent(evb[:0], d, &s)
	}
	secGain += total
	evOff, newEnd := keepEnd, keepEnd+len(ev)

	// The old header is read: c.v becomes the new one (its bytes, c.v.b, stay the
	// old value's), which spares zeroing and filling a second 1.4 KB view.
	nv := &c.v
	oldEnd := nv.end
	nv.kind, nv.last, nv.n, nv.newest, nv.end = KindDomain, t, c.n, evOff, newEnd
	nv.sec = place(c.sec, oldEnd, evOff, newEnd, merge, t, total, secGain)
	for j := 0; j < c.n; j++ {
		st := &nv.tiers[j]
		st.cfg, st.entered, st.entry = c.req.Tiers[j], c.entered[j], c.entry[j]
		switch {
		case j > 0 && c.state[j] == Inactive:
			st.cu = cursor{off: newEnd}
		case j > 0 && enteredNow[j]:
			st.cu = cursor{off: evOff, ts: t, sum: s[j]}
		default:
			st.cu = place(st.cu, oldEnd, evOff, newEnd, merge, t, s[j], gain[j])
		}
	}
	if take[0] > 0 {
		nv.has1, nv.t1 = true, t
	}
	nv.nc = c.dcaps.len()
	for i := 0; i < nv.nc; i++ {
		cs := &c.dcaps.cs[i]
		if cs.exact() {
			cs.cu = place(cs.cu, oldEnd, evOff, newEnd, merge, t, total, secGain)
		}
		nv.caps[i] = *cs
	}
	if p.tok == tokPut {
		if h, _ := tokHash(cur, p.slot); h == 0 {
			nv.tok.occ++
		}
		nv.tok.tnew = t
	}
	return c.emit(nv.b, nv, cur, inPlace, out, keepEnd, ev, p, &oldTok, &c.dcaps, oldEnd)
}

// encodeGlobal writes the global key's new value: its second log with granted hits at
// t, the cursor moved on, the dead front dropped in batches.
func (c *calc) encodeGlobal(gv *view, gcur []byte, inPlace bool, gout []byte, granted int64) ([]byte, error) {
	t := c.t
	merge := c.hasGV && gv.last == t
	var s [Slots]int64
	var d int64
	keepEnd := 1
	if c.hasGV {
		keepEnd, d = gv.end, t-gv.last
	}
	if merge {
		var err error
		if d, err = gv.newestEvent(&s); err != nil {
			return nil, err
		}
		keepEnd = gv.newest
	}
	was := s[Detached]
	s[Detached] = min(s[Detached]+granted, MaxStoredCount) // saturates as in encodeDomain
	var evb [maxEventLen]byte
	ev := appendEvent(evb[:0], d, &s)
	evOff, newEnd := keepEnd, keepEnd+len(ev)
	nv := gv // as in encodeDomain: the old header becomes the new one
	oldEnd := nv.end
	var p prefixPlan
	planCaps(gcur, gv, &c.gcaps, t, granted, &p)
	c.glast0 = gv.last
	nv.kind, nv.last, nv.n, nv.newest, nv.end = KindGlobal, t, 0, evOff, newEnd
	nv.sec = place(c.gsec, oldEnd, evOff, newEnd, merge, t, s[Detached], s[Detached]-was)
	nv.nc = c.gcaps.len()
	for i := 0; i < nv.nc; i++ {
		cs := &c.gcaps.cs[i]
		if cs.exact() {
			cs.cu = place(cs.cu, oldEnd, evOff, newEnd, merge, t, s[Detached], s[Detached]-was)
		}
		nv.caps[i] = *cs
	}
	oldTok := gv.tok
	return c.emit(nv.b, nv, gcur, inPlace, gout, keepEnd, ev, &p, &oldTok, &c.gcaps, oldEnd)
}

// compactMin is the smallest dead front worth moving the log for.
const compactMin = 16

// emit lays out a new value: the regions before the log (version 3), the old log's
// bytes [logBase, keepEnd) (or, when the dead front [logBase, start) outweighs half
// the live log, only [start, keepEnd), moved to the front), the event at t, and nv's
// header. nv's offsets are given as if nothing moved. When p says the regions change
// size, the value is rewritten into out with the new regions (rebuild).
func (c *calc) emit(old []byte, nv *view, cur []byte, inPlace bool, out []byte, keepEnd int, ev []byte,
	p *prefixPlan, oldTok *tokTable, set *capSet, oldEnd int) ([]byte, error) {
	start, first := nv.sec.off, nv.sec.ts
	for j := 0; j < nv.n; j++ {
		if cu := &nv.tiers[j].cu; cu.off < start {
			start, first = cu.off, cu.ts
		}
	}
	for j := 0; j < nv.nc; j++ {
		if cs := &nv.caps[j]; cs.exact() && cs.cu.off < start {
			start, first = cs.cu.off, cs.cu.ts
		}
	}
	if start == nv.end { // unreachable: the second-log cursor is on the event at t
		start, first = nv.newest, nv.last
	}
	if p.rebuild {
		return c.rebuild(old, nv, cur, out, keepEnd, ev, p, oldTok, set, oldEnd, start, first)
	}
	for i := 0; i < nv.nc; i++ {
		// In place: a bucket log's new bytes come out of its spare room.
		nv.caps[i].len += set.grow[i]
		nv.caps[i].spare -= set.grow[i]
	}
	base := nv.logBase
	shift := 0
	if dead := start - base; dead >= compactMin && 2*dead >= nv.end-start {
		shift = dead
	}
	nv.start, nv.first = start-shift, first
	nv.moveLog(-shift)
	ver := byte(encV2)
	if nv.hasExt() {
		ver = EncVer
	}
	// The header is written straight into the new value: in place into cur's
	// capacity when it fits, else into out, grown as appending it would.
	if inPlace && cap(cur) > nv.end {
		dst := cur[:cap(cur)]
		dst[0] = ver
		if shift > 0 {
			copy(dst[base:], cur[start:keepEnd])
		}
		copy(dst[keepEnd-shift:], ev)
		if end, ok := putHeader(dst, nv.end, nv); ok {
			return patchPrefix(dst[:end], nv, p, set), nil
		}
		// The log (moved) and the event at t are in dst[1:nv.end]: appended from there
		// as below, so that out grows by the same steps.
		ev = dst[keepEnd-shift : nv.end]
		old, keepEnd, shift = dst, keepEnd-shift, 0
	}
	dst := append(out[:0], ver)
	if base > 1 {
		dst = append(dst, old[1:base]...)
	}
	if keepEnd > base {
		dst = append(dst, old[base+shift:keepEnd]...)
	}
	return patchPrefix(appendHeader(append(dst, ev...), nv), nv, p, set), nil
}

// moveLog moves every offset of the log (cursors, newest, end) by d bytes.
func (v *view) moveLog(d int) {
	v.newest += d
	v.end += d
	v.sec.off += d
	for j := 0; j < v.n; j++ {
		v.tiers[j].cu.off += d
	}
	for j := 0; j < v.nc; j++ {
		if cs := &v.caps[j]; cs.exact() {
			cs.cu.off += d
		}
	}
}

// patchPrefix applies a grant to the regions of a value whose regions kept their
// size: the remembered reply into its token slot, each bucketed cap's newest count.
func patchPrefix(b []byte, nv *view, p *prefixPlan, set *capSet) []byte {
	if p.tok == tokPut {
		putTok(b, 1+tokSlot*p.slot, &p.reply)
	}
	for i := 0; i < nv.nc; i++ {
		if nv.caps[i].exact() {
			continue
		}
		at := set.at[i]
		if set.step[i] > 0 {
			at = putUvarint(b, at, uint64(set.step[i]))
		}
		putUvarint(b, at, uint64(set.cnt[i]))
	}
	return b
}

// rebuild writes the value anew into out: the token table and the caps' bucket logs
// (their new sizes), the live log [start, keepEnd), the event at t, the header.
func (c *calc) rebuild(old []byte, nv *view, cur []byte, out []byte, keepEnd int, ev []byte,
	p *prefixPlan, oldTok *tokTable, set *capSet, oldEnd int, start int, first int64) ([]byte, error) {
	dst := append(out[:0], 0)
	var err error
	if dst, nv.tok, err = appendTokens(dst, cur, oldTok, c.t, p); err != nil {
		return nil, err
	}
	ov := view{b: old, end: oldEnd}
	sec := c.sec
	if nv.kind == KindGlobal {
		sec = c.gsec
	}
	dst = appendCapRegions(dst, 0, old, &ov, c.oldLast(nv.kind), sec, set, c.t)
	for i := 0; i < set.len(); i++ {
		nv.caps[i] = set.cs[i]
	}
	base := len(dst)
	d := base - start
	nv.logBase, nv.start, nv.first = base, base, first
	nv.moveLog(d)
	if keepEnd > start {
		dst = append(dst, old[start:keepEnd]...)
	}
	dst = append(dst, ev...)
	dst[0] = encV2
	if nv.hasExt() {
		dst[0] = EncVer
	}
	return appendHeader(dst, nv), nil
}
