package rate

import (
	"errors"
	"fmt"
)

// EncVer is the encoding version this package writes (FORMAT.md). The C side registers
// the data type with the same number.
const EncVer = 1

// Kind tells what a value holds.
type Kind uint8

const (
	// KindDomain is a (resource, domain) key: tier configuration, tier state, hit log.
	KindDomain Kind = 1
	// KindGlobal is a resource-wide key: only the second log of all its domains.
	KindGlobal Kind = 2
)

// String returns "domain" or "global".
func (k Kind) String() string {
	switch k {
	case KindDomain:
		return "domain"
	case KindGlobal:
		return "global"
	}
	return "unknown"
}

const (
	// Slots is the number of count slots per event: one per tier plus Detached.
	Slots = MaxTiers + 1
	// Detached is the slot of hits that count only in the second log: hits of tiers
	// that were dropped or re-entered, and every hit of a global key.
	Detached = MaxTiers
	// MaxStoredCount bounds one stored count; merging saturates there. It is far above
	// any limit, so a saturated count still blocks exactly as the true count would.
	MaxStoredCount = 1 << 46

	headerLen  = 2
	flagSkip   = 1
	flagEnter  = 2
	maxVarint  = 9 // values < 2^63
	hitSumCap  = 1 << 62
	multiKBits = 6
)

// ErrCorrupt is returned (wrapped) when a stored value does not decode.
var ErrCorrupt = errors.New("rate: corrupt value")

// ErrWrongKind is returned (wrapped) when a valid value of the other kind is used: a
// global key passed as the limited key, or a domain key passed as GLOBAL.
var ErrWrongKind = errors.New("rate: value is of the wrong kind")

func corrupt(off int, what string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrCorrupt, what, off)
}

// fault is what readEvent found wrong; the error value is built by the caller so that
// no error ever aliases a view (escape analysis would move the caller's state to the
// heap).
type fault uint8

const (
	faultNone fault = iota
	faultTime
	faultBeforeZero
	faultNotIncreasing
	faultHeader
	faultSingle
	faultMulti
	faultCount
	faultMissingTier
	faultUntrimmed
	faultNewest
	faultTrailing
)

func (f fault) String() string {
	switch f {
	case faultTime:
		return "bad event time"
	case faultBeforeZero:
		return "event before time zero"
	case faultNotIncreasing:
		return "event time not increasing"
	case faultHeader:
		return "bad event header"
	case faultSingle:
		return "bad single-slot event"
	case faultMulti:
		return "bad multi-slot event"
	case faultCount:
		return "bad event count"
	case faultMissingTier:
		return "hits in a missing tier"
	case faultUntrimmed:
		return "multi-slot event not trimmed"
	case faultNewest:
		return "newest event is not the newest time"
	case faultTrailing:
		return "trailing bytes"
	}
	return "no fault"
}

// uvarint reads a minimal LEB128 varint of at most 9 bytes at b[off:].
// It returns n == 0 on any error.
func uvarint(b []byte, off int) (v uint64, n int) {
	var shift uint
	for i := 0; i < maxVarint; i++ {
		if off+i >= len(b) {
			return 0, 0
		}
		c := b[off+i]
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, 0 // overlong
			}
			return v, i + 1
		}
		shift += 7
	}
	return 0, 0
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// storedTier is a tier's configuration and state as held in a value.
type storedTier struct {
	cfg     Tier
	entered bool
	entry   int64
}

// view is a validated value's header; events are read in place by evIter.
type view struct {
	b       []byte
	kind    Kind
	last    int64
	n       int
	tiers   [MaxTiers]storedTier
	nev     int
	evOff   int
	lastPay int // payload offset of the newest event, set by a full walk
}

// event is one decoded log entry: counts for slots lo..lo+k-1 at ts.
type event struct {
	ts    int64
	lo, k int
	pay   int // offset of the event's payload (after its time)
	c     [Slots]int64
	total int64
}

func (e *event) count(j int) int64 {
	if j >= e.lo && j < e.lo+e.k {
		return e.c[j-e.lo]
	}
	return 0
}

// readEvent decodes and checks the event at b[off:]. prev is the previous event's time
// (ignored when first), ntiers the number of tier slots that may hold hits.
func readEvent(b []byte, off int, first bool, prev, last int64, ntiers int, e *event) (int, fault) {
	var d uint64
	if off < len(b) && b[off] < 0x80 {
		d = uint64(b[off])
		off++
	} else {
		var n int
		if d, n = uvarint(b, off); n == 0 {
			return off, faultTime
		}
		off += n
	}
	if first {
		if d > uint64(last) {
			return off, faultBeforeZero
		}
		e.ts = last - int64(d)
	} else {
		if d == 0 || d > uint64(last-prev) {
			return off, faultNotIncreasing
		}
		e.ts = prev + int64(d)
	}
	e.pay = off
	return readPayload(b, off, ntiers, e)
}

// readPayload decodes and checks an event's slot header and counts at b[off:].
func readPayload(b []byte, off int, ntiers int, e *event) (int, fault) {
	var h uint64
	if off < len(b) && b[off] < 0x80 {
		h = uint64(b[off])
		off++
	} else {
		var n int
		if h, n = uvarint(b, off); n == 0 {
			return off, faultHeader
		}
		off += n
	}
	lo := int(h>>1) & 31
	e.lo = lo
	if h&1 == 0 {
		cnt := h>>multiKBits + 1
		if (lo != Detached && lo >= ntiers) || cnt > MaxStoredCount {
			return off, faultSingle
		}
		e.k = 1
		e.c[0] = int64(cnt)
		e.total = int64(cnt)
		return off, faultNone
	}
	kk := h >> multiKBits
	if kk > Slots-2 || lo+int(kk)+2 > Slots {
		return off, faultMulti
	}
	k := int(kk) + 2
	e.k = k
	e.total = 0
	for i := 0; i < k; i++ {
		c, n := uvarint(b, off)
		if n == 0 || c > MaxStoredCount {
			return off, faultCount
		}
		off += n
		if c != 0 && lo+i != Detached && lo+i >= ntiers {
			return off, faultMissingTier
		}
		if c == 0 && (i == 0 || i == k-1) {
			return off, faultUntrimmed
		}
		e.c[i] = int64(c)
		e.total += int64(c)
	}
	return off, faultNone
}

// parseView checks the whole value b and fills v. Every error wraps ErrCorrupt.
func parseView(b []byte, v *view) error {
	if err := parseHeader(b, v); err != nil {
		return err
	}
	it := v.iter()
	var e event
	for it.next(&e) {
	}
	return it.error()
}

// parseHeader checks and reads everything before the events; the events are checked
// by the first full walk of an evIter (it.err).
func parseHeader(b []byte, v *view) error {
	v.b = b
	if len(b) < headerLen {
		return corrupt(0, "short value")
	}
	if b[0] != EncVer {
		return fmt.Errorf("%w: unknown encoding version %d", ErrCorrupt, int(b[0]))
	}
	v.kind = Kind(b[1])
	if v.kind != KindDomain && v.kind != KindGlobal {
		return corrupt(1, "unknown kind")
	}
	off := headerLen
	last, n := uvarint(b, off)
	if n == 0 || last > MaxAt {
		return corrupt(off, "bad newest time")
	}
	v.last = int64(last)
	off += n
	v.n = 0
	if v.kind == KindDomain {
		if off >= len(b) || b[off] == 0 || b[off] > MaxTiers {
			return corrupt(off, "bad tier count")
		}
		v.n = int(b[off])
		off++
		for i := 0; i < v.n; i++ {
			st := &v.tiers[i]
			var f [4]uint64
			for j := range f {
				x, n := uvarint(b, off)
				if n == 0 {
					return corrupt(off, "bad tier field")
				}
				f[j] = x
				off += n
			}
			if f[0] > MaxCount || f[1] < 1 || f[1] > MaxDuration || f[2] < 1 || f[2] > MaxDuration || f[3] > MaxDuration {
				return corrupt(off, "tier field out of range")
			}
			if off >= len(b) || b[off] > flagSkip|flagEnter {
				return corrupt(off, "bad tier flags")
			}
			flags := b[off]
			off++
			st.cfg = Tier{Limit: int64(f[0]), Window: int64(f[1]), Active: int64(f[2]), Cooldown: int64(f[3]), Skippable: flags&flagSkip != 0}
			st.entered = flags&flagEnter != 0
			st.entry = 0
			if st.entered {
				back, n := uvarint(b, off)
				if n == 0 || back > last {
					return corrupt(off, "bad tier entry time")
				}
				st.entry = v.last - int64(back)
				off += n
			}
		}
	}
	nev, n := uvarint(b, off)
	if n == 0 || nev == 0 || nev > uint64(len(b)) {
		return corrupt(off, "bad event count")
	}
	off += n
	v.nev = int(nev)
	v.evOff = off
	return nil
}

// evIter walks the events of a view in time order. A walk that reaches the end checks
// the value's tail (newest time, no trailing bytes); any damage stops the walk and is
// left in err.
type evIter struct {
	v     *view
	off   int
	i     int
	prev  int64
	fault fault
	at    int
}

func (v *view) iter() evIter { return evIter{v: v, off: v.evOff} }

// next decodes the next event into e; false at the end or on damage. The common
// event (neither first nor last, a one-byte step, one slot with one or two hits) is
// decoded inline; anything else goes through nextSlow.
func (it *evIter) next(e *event) bool {
	v := it.v
	off := it.off
	if it.i > 0 && it.i < v.nev-1 && off+1 < len(v.b) {
		d, h := v.b[off], v.b[off+1]
		lo := int(h>>1) & 31
		if d|h < 0x80 && h&1 == 0 && d != 0 && int64(d) <= v.last-it.prev && (lo == Detached || lo < v.n) {
			it.prev += int64(d)
			e.pay, e.ts = off+1, it.prev
			e.lo, e.k = lo, 1
			e.c[0] = int64(h>>multiKBits) + 1
			e.total = e.c[0]
			it.off += 2
			it.i++
			return true
		}
	}
	return it.nextSlow(e)
}

func (it *evIter) nextSlow(e *event) bool {
	v := it.v
	if v == nil || it.i >= v.nev || it.fault != faultNone {
		return false
	}
	off, f := readEvent(v.b, it.off, it.i == 0, it.prev, v.last, v.n, e)
	if f != faultNone {
		it.fault, it.at = f, off
		return false
	}
	it.off = off
	it.i++
	it.prev = e.ts
	if it.i == v.nev {
		if e.ts != v.last {
			it.fault, it.at = faultNewest, off
			return false
		}
		if off != len(v.b) {
			it.fault, it.at = faultTrailing, off
			return false
		}
		v.lastPay = e.pay
	}
	return true
}

// error reports the damage the walk found, if any.
func (it *evIter) error() error {
	if it.fault == faultNone {
		return nil
	}
	return corrupt(it.at, it.fault.String())
}

// appendEventPayload appends the canonical header and counts of one event: the single
// form when one slot is non-zero, otherwise the trimmed multi form. c must have at
// least one non-zero slot.
func appendEventPayload(b []byte, c *[Slots]int64) []byte {
	lo, hi := -1, -1
	for j := 0; j < Slots; j++ {
		if c[j] != 0 {
			if lo < 0 {
				lo = j
			}
			hi = j
		}
	}
	if lo < 0 {
		// Unreachable from Apply (granted > 0); an invalid event makes Encode fail.
		return append(b, 0xff)
	}
	if lo == hi {
		return appendUvarint(b, uint64(c[lo]-1)<<multiKBits|uint64(lo)<<1)
	}
	k := hi - lo + 1
	b = appendUvarint(b, uint64(k-2)<<multiKBits|uint64(lo)<<1|1)
	for j := lo; j <= hi; j++ {
		b = appendUvarint(b, uint64(c[j]))
	}
	return b
}

func appendTier(b []byte, cfg *Tier, entered bool, entry, last int64) []byte {
	b = appendUvarint(b, uint64(cfg.Limit))
	b = appendUvarint(b, uint64(cfg.Window))
	b = appendUvarint(b, uint64(cfg.Active))
	b = appendUvarint(b, uint64(cfg.Cooldown))
	var flags byte
	if cfg.Skippable {
		flags |= flagSkip
	}
	if entered {
		flags |= flagEnter
	}
	b = append(b, flags)
	if entered {
		b = appendUvarint(b, uint64(last-entry))
	}
	return b
}

// StoredTier is a tier as held in a value: the last configuration seen and its entry.
type StoredTier struct {
	Tier
	// Entered reports whether the tier was ever entered; EnteredAt is its latest entry.
	Entered   bool
	EnteredAt int64
}

// Event is one millisecond of the hit log. Counts[j] are hits recorded in tier j+1;
// Counts[Detached] are hits that only count in the second log. Their sum is the second
// log's count at At.
type Event struct {
	At     int64
	Counts [Slots]int64
}

// Total is the event's second-log count.
func (e *Event) Total() int64 {
	var s int64
	for _, c := range e.Counts {
		s += c
	}
	return s
}

// Value is a decoded value, for tests, debugging and tools (not the hot path).
type Value struct {
	Kind Kind
	// Last is the newest timestamp in the value (the time of the newest event).
	Last   int64
	Tiers  []StoredTier
	Events []Event
}

// Validate checks b completely: version, kind, every length, count, varint and bound,
// strictly increasing times, canonical form and no trailing bytes. Errors wrap
// ErrCorrupt.
func Validate(b []byte) error {
	var v view
	return parseView(b, &v)
}

// Decode validates b and returns its content.
func Decode(b []byte) (*Value, error) {
	var v view
	if err := parseView(b, &v); err != nil {
		return nil, err
	}
	out := &Value{Kind: v.kind, Last: v.last, Events: make([]Event, 0, v.nev)}
	for i := 0; i < v.n; i++ {
		st := &v.tiers[i]
		out.Tiers = append(out.Tiers, StoredTier{Tier: st.cfg, Entered: st.entered, EnteredAt: st.entry})
	}
	it := v.iter()
	var e event
	for it.next(&e) {
		ev := Event{At: e.ts}
		copy(ev.Counts[e.lo:e.lo+e.k], e.c[:e.k])
		out.Events = append(out.Events, ev)
	}
	return out, nil
}

// Encode appends the encoding of v to dst. It fails (wrapping ErrCorrupt) when v breaks
// an invariant of the format, such as unordered events or hits in a missing tier.
func Encode(dst []byte, v *Value) ([]byte, error) {
	start := len(dst)
	b := append(dst, EncVer, byte(v.Kind))
	b = appendUvarint(b, uint64(v.Last))
	if v.Kind == KindDomain {
		b = append(b, byte(len(v.Tiers)))
		for i := range v.Tiers {
			st := &v.Tiers[i]
			b = appendTier(b, &st.Tier, st.Entered, st.EnteredAt, v.Last)
		}
	}
	b = appendUvarint(b, uint64(len(v.Events)))
	prev := int64(-1)
	for i := range v.Events {
		ev := &v.Events[i]
		b = appendTime(b, prev, ev.At, v.Last)
		prev = ev.At
		b = appendEventPayload(b, &ev.Counts)
	}
	// Whatever v holds, the bytes must be valid and mean exactly v.
	back, err := Decode(b[start:])
	if err != nil {
		return dst, fmt.Errorf("rate: encode: %w", err)
	}
	if !back.equal(v) {
		return dst, fmt.Errorf("%w: rate: encode: value breaks an invariant of the format", ErrCorrupt)
	}
	return b, nil
}

func (v *Value) equal(w *Value) bool {
	if v.Kind != w.Kind || v.Last != w.Last || len(v.Tiers) != len(w.Tiers) || len(v.Events) != len(w.Events) {
		return false
	}
	for i := range v.Tiers {
		a, b := v.Tiers[i], w.Tiers[i]
		if a.Tier != b.Tier || a.Entered != b.Entered || a.Entered && a.EnteredAt != b.EnteredAt || !a.Entered && b.EnteredAt != 0 {
			return false
		}
	}
	for i := range v.Events {
		if v.Events[i] != w.Events[i] {
			return false
		}
	}
	return true
}
