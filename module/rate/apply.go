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
	// GlobalExpireAt is the global key's absolute expiry (newest entry + 1001 ms);
	// 0 without GLOBAL or when the global key holds nothing.
	GlobalExpireAt int64
}

// ErrBadRequest is returned by Apply for a Request outside the bounds ParseRequest
// guarantees (only possible for a Request built by hand).
var ErrBadRequest = errors.New("rate: invalid request")

// calc holds one request's working state; it lives on the caller's stack.
type calc struct {
	req        *Request
	v, gv      view
	hasG       bool
	t          int64
	n          int
	entered    [MaxTiers]bool
	entry      [MaxTiers]int64
	state      [MaxTiers]TierState
	hits       [MaxTiers]int64
	domainHits int64
	globalHits int64
	x1         int64  // latest tier-1 hit ts + W1 + 1
	slots      uint32 // bit j: some event holds hits in slot j
	stale      bool   // some higher-tier hit predates its tier's entry
}

func satAdd(a, b, lim int64) int64 {
	if a > lim-b {
		return lim
	}
	return a + b
}

// windowHits fills hits with each tier's window count at time s given the tiers'
// states at s (rule 2). With all set (the first walk, at s = t) it also collects the
// second log, x1 and what the encoder needs to know, and reports damage.
func (c *calc) windowHits(s int64, st *[MaxTiers]TierState, hits *[MaxTiers]int64, all bool) error {
	var lower, acc [MaxTiers]int64
	var count [Slots]bool // slot j counts in its window (given its lower bound)
	for j := 0; j < c.n; j++ {
		lower[j] = s - c.req.Tiers[j].Window
		if j > 0 {
			lower[j] = max(lower[j], c.entry[j])
			count[j] = st[j] != Inactive
		} else {
			count[j] = true
		}
	}
	var w0 int64
	if c.n > 0 {
		w0 = c.req.Tiers[0].Window
	}
	var domain, x1 int64
	var slots uint32
	stale := false
	it := c.v.iter()
	b, nev, last, vn := c.v.b, c.v.nev, c.v.last, c.v.n
	var e event
	for {
		// evIter.next's common case, inlined by hand with the cursor in registers:
		// this walk runs on every request.
		off, prev, i := it.off, it.prev, it.i
		for i > 0 && i < nev-1 && off+1 < len(b) {
			d, h := b[off], b[off+1]
			j := int(h>>1) & 31
			if d|h >= 0x80 || h&1 != 0 || d == 0 || int64(d) > last-prev || (j != Detached && j >= vn) {
				break
			}
			ts := prev + int64(d)
			cnt := int64(h>>multiKBits) + 1
			prev, off, i = ts, off+2, i+1
			if ts >= s-1000 {
				domain += cnt
			}
			slots |= 1 << j
			if j >= c.n {
				continue
			}
			if j == 0 {
				x1 = max(x1, ts+w0+1)
			} else if ts < c.entry[j] {
				stale = true
				continue
			}
			if count[j] && ts >= lower[j] {
				acc[j] = satAdd(acc[j], cnt, hitSumCap)
			}
		}
		it.off, it.prev, it.i = off, prev, i
		if !it.next(&e) {
			break
		}
		if e.ts >= s-1000 {
			domain += e.total
		}
		for i := 0; i < e.k; i++ {
			cnt := e.c[i]
			j := e.lo + i
			if cnt == 0 {
				continue
			}
			slots |= 1 << j
			if j >= c.n {
				continue
			}
			if j == 0 {
				x1 = max(x1, e.ts+w0+1)
			} else if e.ts < c.entry[j] {
				stale = true
				continue
			}
			if count[j] && e.ts >= lower[j] {
				acc[j] = satAdd(acc[j], cnt, hitSumCap)
			}
		}
	}
	*hits = acc
	if all {
		c.domainHits, c.x1, c.slots, c.stale = domain, x1, slots, stale
	}
	return it.error()
}

// logHits is the second-log count of v at time s (hits at ts >= s-1000).
func logHits(v *view, s int64) (int64, error) {
	var sum int64
	it := v.iter()
	var e event
	for it.next(&e) {
		if e.ts >= s-1000 {
			sum += e.total
		}
	}
	return sum, it.error()
}

// Apply runs one CHARON.RATE request at nowMs (rules 1-9) against the key's current
// value cur (nil when absent) and, with GLOBAL, the global key's value gcur (nil when
// absent). It is pure: when the request is granted and not a DRYRUN it encodes the new
// values into out and gout (reused from index 0; they grow only when too small) and
// returns them; otherwise newVal and newGVal are nil and nothing must be written.
// It allocates nothing unless out or gout is too small. Stored values that do not
// decode give an error wrapping ErrCorrupt; a value of the wrong kind wraps
// ErrWrongKind.
func Apply(cur, gcur []byte, req *Request, nowMs int64, out, gout []byte) (res Result, newVal, newGVal []byte, err error) {
	return apply(cur, gcur, req, nowMs, out, gout, false)
}

// apply is Apply; slowEncode (tests only) disables the byte-copy encoder so that both
// encoders can be compared.
func apply(cur, gcur []byte, req *Request, nowMs int64, out, gout []byte, slowEncode bool) (res Result, newVal, newGVal []byte, err error) {
	if !req.valid() {
		return res, nil, nil, ErrBadRequest
	}
	var c calc
	c.req = req
	c.n = req.NTiers
	if len(cur) > 0 {
		if err := parseHeader(cur, &c.v); err != nil {
			return res, nil, nil, fmt.Errorf("key: %w", err)
		}
		if c.v.kind != KindDomain {
			return res, nil, nil, fmt.Errorf("key holds a %v log: %w", c.v.kind, ErrWrongKind)
		}
	}
	c.hasG = req.HasGlobal
	if c.hasG && len(gcur) > 0 {
		if err := parseHeader(gcur, &c.gv); err != nil {
			return res, nil, nil, fmt.Errorf("global key: %w", err)
		}
		if c.gv.kind != KindGlobal {
			return res, nil, nil, fmt.Errorf("global key holds a %v log: %w", c.gv.kind, ErrWrongKind)
		}
	}

	// Rule 8: time never goes back.
	t := min(max(nowMs, 0), MaxAt)
	t = max(t, c.v.last, c.gv.last)
	c.t = t
	res.T = t

	// Stored tier state under the request's configuration (extra tiers dropped, new
	// tiers empty).
	for j := 0; j < c.n && j < c.v.n; j++ {
		c.entered[j] = c.v.tiers[j].entered
		c.entry[j] = c.v.tiers[j].entry
	}
	cur1 := -1 // highest ACTIVE tier index
	for j := 0; j < c.n; j++ {
		c.state[j] = stateAt(c.entered[j], c.entry[j], &req.Tiers[j], t)
		if c.state[j] == Active {
			cur1 = j
		}
	}
	// The first walk of each value also checks its events.
	if err := c.windowHits(t, &c.state, &c.hits, true); err != nil {
		return res, nil, nil, fmt.Errorf("key: %w", err)
	}
	if c.hasG {
		var err error
		if c.globalHits, err = logHits(&c.gv, t); err != nil {
			return res, nil, nil, fmt.Errorf("global key: %w", err)
		}
	}

	// Rule 4: caps.
	capped := req.Max
	hardRoom, globalRoom := int64(math.MaxInt64), int64(math.MaxInt64)
	if req.HasHard {
		hardRoom = max(req.Hard-c.domainHits, 0)
		capped = min(capped, hardRoom)
	}
	if c.hasG {
		globalRoom = max(req.GlobalLimit-c.globalHits, 0)
		capped = min(capped, globalRoom)
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
	if req.HasHard && hardRoom < req.Max {
		f[FieldHardLimited] = 1
	}
	f[FieldGlobalHits] = -1
	if c.hasG {
		if globalRoom < req.Max {
			f[FieldGlobalLimited] = 1
		}
		f[FieldGlobalHits] = c.globalHits
	}
	if c.gv.nev > 0 {
		res.GlobalExpireAt = c.gv.last + 1001
	}

	// Rule 6: decision.
	if c.n == 0 || granted < need {
		f[FieldTier], f[FieldTierLimit], f[FieldTierHits] = c.currentTier(&c.state, &c.hits)
		f[FieldDomainHits] = c.domainHits
		x := c.expiry(&c.entered, &c.entry)
		res.ExpireAt = x
		f[FieldResetAfter] = max(x-t, 0)
		f[FieldRetryAfter] = c.retryAfter(need)
		return res, nil, nil, nil
	}

	// Rule 7: the state after recording, as if written.
	res.Granted = true
	f[FieldGranted] = granted
	var enteredNow [MaxTiers]bool
	entered2, entry2, state2, hits2 := c.entered, c.entry, c.state, c.hits
	for j := 0; j < c.n; j++ {
		if part[j] && c.state[j] == Inactive {
			enteredNow[j] = true
			entered2[j], entry2[j], state2[j] = true, t, Active
			if j > start {
				f[FieldBurst] = 1
			}
		}
		hits2[j] = satAdd(hits2[j], take[j], hitSumCap)
	}
	f[FieldTier], f[FieldTierLimit], f[FieldTierHits] = c.currentTier(&state2, &hits2)
	f[FieldDomainHits] = c.domainHits + granted
	if c.hasG {
		f[FieldGlobalHits] = c.globalHits + granted
		res.GlobalExpireAt = t + 1001
	}
	if take[0] > 0 {
		c.x1 = max(c.x1, t+req.Tiers[0].Window+1)
	}
	x := max(c.expiry(&entered2, &entry2), t+1001)
	res.ExpireAt = x
	f[FieldResetAfter] = x - t
	if req.DryRun {
		return res, nil, nil, nil
	}
	res.Write = true
	newVal = c.encodeDomain(out[:0], &take, &enteredNow, &entered2, &entry2, &state2, slowEncode)
	if c.hasG {
		newGVal = c.encodeGlobal(gout[:0], granted)
	}
	return res, newVal, newGVal, nil
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
	if c.v.nev > 0 {
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

// keepSlot maps a stored count's slot to the slot it keeps in the new value: hits of
// dropped tiers, of higher tiers that are INACTIVE after the request, re-entered now,
// or older than their tier's entry no longer count in a window (rule 2) and only stay
// in the second log.
func (c *calc) keepSlot(j int, ts int64, enteredNow *[MaxTiers]bool, entry2 *[MaxTiers]int64, state2 *[MaxTiers]TierState) int {
	switch {
	case j >= c.n:
		return Detached
	case j == 0:
		return 0
	case enteredNow[j] || state2[j] == Inactive || ts < entry2[j]:
		return Detached
	}
	return j
}

// transform fills s with event e's counts in the new value's slots and reports
// whether any of them still matters at t (window, second log).
func (c *calc) transform(e *event, s *[Slots]int64, enteredNow *[MaxTiers]bool, entry2 *[MaxTiers]int64, state2 *[MaxTiers]TierState) (live bool) {
	*s = [Slots]int64{}
	live = e.ts >= c.t-1000
	for i := 0; i < e.k; i++ {
		cnt := e.c[i]
		if cnt == 0 {
			continue
		}
		j := c.keepSlot(e.lo+i, e.ts, enteredNow, entry2, state2)
		s[j] = min(s[j]+cnt, MaxStoredCount)
		if j != Detached && e.ts >= c.t-c.req.Tiers[j].Window {
			live = true
		}
	}
	return live
}

// encodeDomain writes the key's new value: the request's configuration, the new
// entries, and the log with dead events pruned from the front and this request's
// hits merged at t. When no stored hit changes slot (the common case) the surviving
// events are copied byte for byte: steps between events do not depend on anything
// else, only the first event's distance from the newest time is rewritten.
func (c *calc) encodeDomain(b []byte, take *[MaxTiers]int64, enteredNow *[MaxTiers]bool, entered2 *[MaxTiers]bool, entry2 *[MaxTiers]int64, state2 *[MaxTiers]TierState, slow bool) []byte {
	var detach uint32
	for j := 1; j < Detached; j++ {
		if j >= c.n || enteredNow[j] || state2[j] == Inactive {
			detach |= 1 << j
		}
	}
	fast := !slow && !c.stale && c.slots&detach == 0

	var s [Slots]int64
	var e event
	// Events before the first live one are dropped.
	skip := 0
	it := c.v.iter()
	for it.next(&e) {
		if c.transform(&e, &s, enteredNow, entry2, state2) {
			break
		}
		skip++
	}
	kept := c.v.nev - skip
	merge, nev := newEventCount(kept, c.v.last, c.t)

	b = append(b, EncVer, byte(KindDomain))
	b = appendUvarint(b, uint64(c.t))
	b = append(b, byte(c.n))
	for j := 0; j < c.n; j++ {
		b = appendTier(b, &c.req.Tiers[j], entered2[j], entry2[j], c.t)
	}
	b = appendUvarint(b, uint64(nev))

	prev := int64(-1)
	switch {
	case kept == 0:
	case fast:
		src := c.v.b
		b = appendUvarint(b, uint64(c.t-e.ts))
		if merge && kept == 1 {
			b = appendMerged(b, &e, take, c.n)
		} else if merge {
			b = append(b, src[e.pay:c.v.lastPay]...)
			if _, f := readPayload(src, c.v.lastPay, c.v.n, &e); f != faultNone {
				return b // unreachable: the first walk checked every event
			}
			b = appendMerged(b, &e, take, c.n)
		} else {
			b = append(b, src[e.pay:]...)
		}
		prev = c.v.last
	default:
		it = c.v.iter()
		for i := 0; it.next(&e); i++ {
			if i < skip {
				continue
			}
			c.transform(&e, &s, enteredNow, entry2, state2)
			if e.ts == c.t {
				for j := 0; j < c.n; j++ {
					s[j] = min(s[j]+take[j], MaxStoredCount)
				}
			}
			b = appendTime(b, prev, e.ts, c.t)
			prev = e.ts
			b = appendEventPayload(b, &s)
		}
	}
	if !merge {
		s = [Slots]int64{}
		copy(s[:c.n], take[:c.n])
		b = appendTime(b, prev, c.t, c.t)
		b = appendEventPayload(b, &s)
	}
	return b
}

// appendMerged appends event e's payload with this request's hits added.
func appendMerged(b []byte, e *event, take *[MaxTiers]int64, n int) []byte {
	var s [Slots]int64
	copy(s[e.lo:e.lo+e.k], e.c[:e.k])
	for j := 0; j < n; j++ {
		s[j] = min(s[j]+take[j], MaxStoredCount)
	}
	return appendEventPayload(b, &s)
}

// encodeGlobal writes the global key's new value: its second log without entries
// older than 1000 ms, plus granted hits at t, copying surviving events as they are.
func (c *calc) encodeGlobal(b []byte, granted int64) []byte {
	var e event
	skip := 0
	it := c.gv.iter()
	for it.next(&e) && e.ts < c.t-1000 {
		skip++
	}
	kept := c.gv.nev - skip
	merge, nev := newEventCount(kept, c.gv.last, c.t)
	b = append(b, EncVer, byte(KindGlobal))
	b = appendUvarint(b, uint64(c.t))
	b = appendUvarint(b, uint64(nev))
	var s [Slots]int64
	prev := int64(-1)
	if kept > 0 {
		src := c.gv.b
		b = appendUvarint(b, uint64(c.t-e.ts))
		if merge {
			if kept > 1 {
				b = append(b, src[e.pay:c.gv.lastPay]...)
				if _, f := readPayload(src, c.gv.lastPay, 0, &e); f != faultNone {
					return b // unreachable: the first walk checked every event
				}
			}
			s[Detached] = min(e.total+granted, MaxStoredCount)
			b = appendEventPayload(b, &s)
		} else {
			b = append(b, src[e.pay:]...)
		}
		prev = c.gv.last
	}
	if !merge {
		s[Detached] = min(granted, MaxStoredCount)
		b = appendTime(b, prev, c.t, c.t)
		b = appendEventPayload(b, &s)
	}
	return b
}

// appendTime writes an event's time: the first (prev < 0) as its distance back from
// last, the others as the step from the previous event.
func appendTime(b []byte, prev, ts, last int64) []byte {
	if prev < 0 {
		return appendUvarint(b, uint64(last-ts))
	}
	return appendUvarint(b, uint64(ts-prev))
}

// newEventCount says whether the hits granted at t merge into the newest of the kept
// events (it is at t too) and how many events the new value holds.
func newEventCount(kept int, last, t int64) (merge bool, nev int) {
	merge = kept > 0 && last == t
	nev = kept
	if !merge {
		nev++
	}
	return merge, nev
}
