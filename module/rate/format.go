package rate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// EncVer is the newest encoding version this package writes (FORMAT.md): version 3
// when a value holds a token table or caps, else version 2, byte for byte. The C side
// registers the data type with the same number.
const EncVer = 3

// encV2 is version 2: version 3 without its regions and header extension.
const encV2 = 2

// encV1 is the first encoding version, still read (format_v1.go).
const encV1 = 1

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

	headerLen  = 2 // version 1's fixed prefix
	trailerLen = 3 // version 2: the header's length ends the value (at most 3 bytes)
	slotBits   = 5
	maxHeader  = 1 << 16
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
	faultCursor
	faultSum
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
	case faultCursor:
		return "bad cursor"
	case faultSum:
		return "cursor sum does not match"
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

// varint8 decodes a varint of 2 to 8 bytes held in the low bytes of x (little
// endian), as uvarint would; n == 0 when it is longer or overlong.
func varint8(x uint64) (v uint64, n int) {
	// The high bit of the bytes that end a varint; none: n == 9.
	n = bits.TrailingZeros64(^x&0x8080808080808080)>>3 + 1
	if n > 8 || x>>(8*(n-1))&0xff == 0 {
		return 0, 0 // longer, or overlong (a last byte of 0 after others)
	}
	x &= (1<<(8*n) - 1) & 0x7f7f7f7f7f7f7f7f // its bytes, without their high bits
	// Gather the 7-bit groups: pairs, then quads, then the two halves.
	x = x&0x007f007f007f007f | x&0x7f007f007f007f00>>1
	x = x&0x00003fff00003fff | x&0x3fff00003fff0000>>2
	x = x&0x000000000fffffff | x&0x0fffffff00000000>>4
	return x, n
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// cursor marks the oldest event that still counts in a window (tier j: the first event
// at or after the window's lower bound holding hits in slot j; second log: the first
// event at or after t-1000) and the sum of the counts from there to the newest event.
// Cursors only move forward. off == view.end means past the newest event (sum 0).
type cursor struct {
	off int
	ts  int64
	sum int64
}

// storedTier is a tier's configuration and state as held in a value.
type storedTier struct {
	cfg     Tier
	entered bool
	entry   int64
	cu      cursor
}

// view is a value's header, read in O(T) from the end of the value; events are read
// in place from the cursors.
type view struct {
	b      []byte
	kind   Kind
	last   int64
	start  int   // offset of the first live event (bytes [1, start) are dead)
	first  int64 // its time
	newest int   // offset of the newest event
	end    int   // end of the log, start of the header
	n      int
	tiers  [MaxTiers]storedTier
	sec    cursor
	has1   bool // t1 holds the newest tier-1 hit's time
	t1     int64

	// Version 3 (format_v3.go): the token table at [1, tokEnd), the caps' bucket
	// logs after it, the log from logBase.
	logBase int
	tok     tokTable
	nc      int
	caps    [MaxCaps]capState
}

// event is one decoded log entry's counts, for slots lo..lo+k-1 (its time is kept by
// the walker that read it).
type event struct {
	lo, k int
	c     [Slots]int64
	total int64
}

func (e *event) count(j int) int64 {
	if j >= e.lo && j < e.lo+e.k {
		return e.c[j-e.lo]
	}
	return 0
}

// slotCount is e's count in slot j, or its second-log total for j < 0.
func (e *event) slotCount(j int) int64 {
	if j < 0 {
		return e.total
	}
	return e.count(j)
}

// Event forms (FORMAT.md). The first byte b of an event picks its form:
//   - b < 0x40: one hit in slot 0, step b;
//   - b >= 0x80: one hit in slot 0, step (b&0x7f)<<8 | next byte;
//   - otherwise b = 0x40 | form<<4 | s, step s when s < 15, else 15 + a varint that
//     follows; then the form's payload: none (formOne), a slot-and-count varint
//     (formSingle) or a slot-range varint and the counts (formMulti).
const (
	formOne    = 0 // one hit in slot 0
	formSingle = 1 // one slot, count in the next varint
	formMulti  = 2 // consecutive slots, trimmed
)

// readEvent decodes the event at b[off:end]: its stored step d (ts - previous ts) and
// its counts. It checks the form, the slots and the counts, not the time.
func readEvent(b []byte, off, end int, e *event) (next int, d uint64, f fault) {
	if off >= end {
		return off, 0, faultTime
	}
	c0 := b[off]
	off++
	if c0 < 0x40 {
		e.lo, e.k, e.c[0], e.total = 0, 1, 1, 1
		return off, uint64(c0), faultNone
	}
	if c0 >= 0x80 {
		if off >= end {
			return off, 0, faultTime
		}
		e.lo, e.k, e.c[0], e.total = 0, 1, 1, 1
		return off + 1, uint64(c0&0x7f)<<8 | uint64(b[off]), faultNone
	}
	d = uint64(c0 & 15)
	if d == 15 {
		x, n := uvarint(b[:end], off)
		if n == 0 {
			return off, 0, faultTime
		}
		off += n
		d += x
	}
	switch (c0 >> 4) & 3 {
	case formOne:
		e.lo, e.k, e.c[0], e.total = 0, 1, 1, 1
		return off, d, faultNone
	case formSingle:
		h, n := uvarint(b[:end], off)
		if n == 0 {
			return off, d, faultHeader
		}
		off += n
		slot, cnt := h&(1<<slotBits-1), h>>slotBits+1
		if slot > Detached || cnt > MaxStoredCount {
			return off, d, faultSingle
		}
		e.lo, e.k, e.c[0], e.total = int(slot), 1, int64(cnt), int64(cnt)
		return off, d, faultNone
	case formMulti:
		h, n := uvarint(b[:end], off)
		if n == 0 {
			return off, d, faultHeader
		}
		off += n
		lo, kk := h&(1<<slotBits-1), h>>slotBits
		if kk > Slots-2 || lo+kk+2 > Slots {
			return off, d, faultMulti
		}
		k := int(kk) + 2
		e.lo, e.k, e.total = int(lo), k, 0
		for i := 0; i < k; i++ {
			c, n := uvarint(b[:end], off)
			if n == 0 || c > MaxStoredCount {
				return off, d, faultCount
			}
			off += n
			if c == 0 && (i == 0 || i == k-1) {
				return off, d, faultUntrimmed
			}
			e.c[i] = int64(c)
			e.total += int64(c)
		}
		return off, d, faultNone
	}
	return off, d, faultHeader
}

// appendStep appends the first byte (and step varint) of an event of the given form.
func appendStep(b []byte, d int64, form byte) []byte {
	if d < 15 {
		return append(b, 0x40|form<<4|byte(d))
	}
	return appendUvarint(append(b, 0x40|form<<4|15), uint64(d-15))
}

// appendEvent appends the encoding of one event: step d, then the counts c (at least
// one non-zero), in the shortest form.
func appendEvent(b []byte, d int64, c *[Slots]int64) []byte {
	lo, hi := -1, -1
	for j := 0; j < Slots; j++ {
		if c[j] != 0 {
			if lo < 0 {
				lo = j
			}
			hi = j
		}
	}
	switch {
	case lo < 0:
		// Unreachable from Apply (granted > 0); an invalid event makes Encode fail.
		return append(b, 0x70)
	case lo == hi:
		return appendSingle(b, d, lo, c[lo])
	}
	b = appendStep(b, d, formMulti)
	b = appendUvarint(b, uint64(hi-lo-1)<<slotBits|uint64(lo))
	for j := lo; j <= hi; j++ {
		b = appendUvarint(b, uint64(c[j]))
	}
	return b
}

// appendSingle appends an event whose only hits are cnt (>= 1) in slot j.
func appendSingle(b []byte, d int64, j int, cnt int64) []byte {
	if j == 0 && cnt == 1 {
		switch {
		case d < 0x40:
			return append(b, byte(d))
		case d < 0x8000:
			return append(b, 0x80|byte(d>>8), byte(d))
		}
		return appendStep(b, d, formOne)
	}
	b = appendStep(b, d, formSingle)
	return appendUvarint(b, uint64(cnt-1)<<slotBits|uint64(j))
}

// hreader reads the header's varints; any failure sets bad.
type hreader struct {
	b   []byte
	off int
	bad bool
}

func (r *hreader) u() uint64 {
	// A request reads some 35 header varints: with 8 bytes at hand, decode without
	// the byte loop (a 9-byte varint, or fewer than 8 bytes left, takes the loop).
	if off := r.off; len(r.b)-off >= 8 {
		x := binary.LittleEndian.Uint64(r.b[off:])
		if x&0x80 == 0 {
			r.off = off + 1
			return x & 0x7f
		}
		if v, n := varint8(x); n > 0 {
			r.off = off + n
			return v
		}
	}
	x, n := uvarint(r.b, r.off)
	if n == 0 {
		r.bad = true
		return 0
	}
	r.off += n
	return x
}

func (r *hreader) byte() byte {
	if r.off >= len(r.b) {
		r.bad = true
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// errV1 reports a version-1 value to callers that convert it.
var errV1 = errors.New("rate: version 1 value")

// parseHeader checks and reads everything but the events, in O(T). Events are checked
// by checkEvents (Validate) and, on the hot path, by the cursor walks.
func parseHeader(b []byte, v *view) error {
	if parseHeaderFast(b, v) {
		return nil
	}
	return parseHeaderSlow(b, v)
}

// fastHeaderVals bounds the varints parseHeaderFast decodes: a domain header of
// smallTiers tiers and a version 3 extension with every cap (more take
// parseHeaderSlow).
const fastHeaderVals = 10 + smallTiers*9 + 4 + MaxCaps*7

// parseHeaderFast reads a valid header of up to smallTiers tiers as parseHeaderSlow
// does: one tight loop decodes every varint of the header (kind, tier count and flags
// are single bytes < 0x80: read as varints, they are the same), then straight-line
// code checks and stores them. It returns false on any
// doubt (damage, a 9-byte varint, more tiers, a short value), and parseHeaderSlow
// then reads the header again and reports the error. It accepts only what
// parseHeaderSlow accepts and fills v the same way.
func parseHeaderFast(b []byte, v *view) bool {
	if len(b) < 8 || b[0] != EncVer && b[0] != encV2 {
		return false
	}
	lim, hl := trailer(b)
	end := lim - hl
	if hl < 1 || end < 2 {
		return false
	}
	var all [fastHeaderVals]uint64
	n := 0
	hb := b[:lim]
	for off := end; off < len(hb); {
		if n == len(all) {
			return false
		}
		c := hb[off]
		off++
		x := uint64(c & 0x7f)
		// The loop of uvarint: at most 9 bytes, a last byte of 0 only alone.
		for shift := 7; c >= 0x80; shift += 7 {
			if off >= len(hb) || shift > 56 {
				return false
			}
			c = hb[off]
			off++
			if c == 0 {
				return false
			}
			x |= uint64(c&0x7f) << shift
		}
		all[n] = x
		n++
	}
	// Version 3's extension comes first; version 2's fields follow.
	h := all[:n]
	var raw [MaxCaps]rawCursor
	if b[0] == EncVer {
		k, ok := extVals(v, h, &raw, end)
		if !ok {
			return false
		}
		h = h[k:]
	} else {
		v.logBase, v.tok, v.nc = 1, tokTable{}, 0
	}
	n = len(h)
	if n < 8 {
		return false
	}
	kind, last, start, back, nl := h[0], h[1], h[2], h[3], h[4]
	if kind != uint64(KindDomain) && kind != uint64(KindGlobal) || last > MaxAt ||
		start < uint64(v.logBase) || start >= uint64(end) || back > last || nl < 1 || nl > uint64(end)-start {
		return false
	}
	v.b, v.end, v.kind, v.last, v.start = b, end, Kind(kind), int64(last), int(start)
	v.first, v.newest = int64(last-back), end-int(nl)
	if !hcursor(v, &v.sec, h[5], h[6], h[7], false) {
		return false
	}
	v.n, v.has1 = 0, false
	if kind == uint64(KindGlobal) {
		return n == 8 && extFinish(v, &raw)
	}
	if n < 10 {
		return false
	}
	t1, nt := h[8], h[9]
	if t1 > last+1 || nt == 0 || nt > smallTiers {
		return false
	}
	v.has1, v.t1 = t1 > 0, int64(last-t1+1)
	v.n = int(nt)
	i := 10
	for t := range v.tiers[:nt] {
		if i+8 > n {
			return false
		}
		lm, wi, ac, co, flags := h[i], h[i+1], h[i+2], h[i+3], h[i+4]
		if lm > MaxCount || wi < 1 || wi > MaxDuration || ac < 1 || ac > MaxDuration || co > MaxDuration || flags > flagSkip|flagEnter {
			return false
		}
		st := &v.tiers[t]
		st.cfg = Tier{Limit: int64(lm), Window: int64(wi), Active: int64(ac), Cooldown: int64(co), Skippable: flags&flagSkip != 0}
		st.entered = flags&flagEnter != 0
		st.entry = 0
		i += 5
		if st.entered {
			if h[i] > last || i+4 > n {
				return false
			}
			st.entry = int64(last - h[i])
			i++
		}
		if !hcursor(v, &st.cu, h[i], h[i+1], h[i+2], true) {
			return false
		}
		i += 3
	}
	return i == n && extFinish(v, &raw)
}

// hcursor checks and sets a cursor from its decoded fields (hreader.cursor, and
// parseHeaderFast, which decodes the varints first).
func hcursor(v *view, cu *cursor, rel, x, sum uint64, fromFirst bool) bool {
	if rel > uint64(v.end-v.start) || x > uint64(v.last-v.first) || sum > hitSumCap {
		return false
	}
	cu.off, cu.ts, cu.sum = v.start+int(rel), v.last-int64(x), int64(sum)
	if fromFirst {
		cu.ts = v.first + int64(x)
	}
	if cu.off == v.end {
		cu.ts = 0
		return x == 0 && sum == 0
	}
	return true
}

// parseHeaderSlow is parseHeader's reader of record: any header, with the error of the
// first thing wrong.
func parseHeaderSlow(b []byte, v *view) error {
	v.b = b
	if len(b) < 1+trailerLen {
		return corrupt(0, "short value")
	}
	if b[0] != EncVer && b[0] != encV2 {
		if b[0] == encV1 {
			return errV1
		}
		return fmt.Errorf("%w: unknown encoding version %d", ErrCorrupt, int(b[0]))
	}
	lim, hl := trailer(b)
	end := lim - hl
	if hl < 1 || end < 2 {
		return corrupt(lim, "bad header length")
	}
	v.end = end
	r := hreader{b: b[:lim], off: end}
	var raw [MaxCaps]rawCursor
	v.logBase, v.tok, v.nc = 1, tokTable{}, 0
	if b[0] == EncVer {
		if err := r.ext(v, &raw, end); err != nil {
			return err
		}
	}
	v.kind = Kind(r.byte())
	if v.kind != KindDomain && v.kind != KindGlobal {
		return corrupt(end, "unknown kind")
	}
	last := r.u()
	if r.bad || last > MaxAt {
		return corrupt(r.off, "bad newest time")
	}
	v.last = int64(last)
	start := r.u()
	if r.bad || start < uint64(v.logBase) || start >= uint64(end) {
		return corrupt(r.off, "bad log start")
	}
	v.start = int(start)
	back := r.u()
	if r.bad || back > last {
		return corrupt(r.off, "bad first event time")
	}
	v.first = v.last - int64(back)
	nl := r.u()
	if r.bad || nl < 1 || nl > uint64(end-v.start) {
		return corrupt(r.off, "bad newest event")
	}
	v.newest = end - int(nl)
	if !r.cursor(v, &v.sec, false) {
		return corrupt(r.off, "bad second-log cursor")
	}
	v.n = 0
	v.has1 = false
	if v.kind == KindDomain {
		t1 := r.u()
		if r.bad || t1 > last+1 {
			return corrupt(r.off, "bad tier-1 hit time")
		}
		v.has1, v.t1 = t1 > 0, v.last-int64(t1)+1
		nt := r.byte()
		if r.bad || nt == 0 || nt > MaxTiers {
			return corrupt(r.off, "bad tier count")
		}
		v.n = int(nt)
		for i := 0; i < v.n; i++ {
			st := &v.tiers[i]
			var f [4]uint64
			for j := range f {
				f[j] = r.u()
			}
			if r.bad {
				return corrupt(r.off, "bad tier field")
			}
			if f[0] > MaxCount || f[1] < 1 || f[1] > MaxDuration || f[2] < 1 || f[2] > MaxDuration || f[3] > MaxDuration {
				return corrupt(r.off, "tier field out of range")
			}
			flags := r.byte()
			if r.bad || flags > flagSkip|flagEnter {
				return corrupt(r.off, "bad tier flags")
			}
			st.cfg = Tier{Limit: int64(f[0]), Window: int64(f[1]), Active: int64(f[2]), Cooldown: int64(f[3]), Skippable: flags&flagSkip != 0}
			st.entered = flags&flagEnter != 0
			st.entry = 0
			if st.entered {
				back := r.u()
				if r.bad || back > last {
					return corrupt(r.off, "bad tier entry time")
				}
				st.entry = v.last - int64(back)
			}
			if !r.cursor(v, &st.cu, true) {
				return corrupt(r.off, "bad tier cursor")
			}
		}
	}
	if r.off != lim {
		return corrupt(r.off, "trailing header bytes")
	}
	if !extFinish(v, &raw) {
		return corrupt(end, "bad header extension")
	}
	return nil
}

// trailer reads the header length at the end of b: one byte below 0xff, or 0xff
// preceded by a u16 little-endian of at least 0xff. lim is where the trailer starts.
func trailer(b []byte) (lim, hl int) {
	n := len(b)
	if b[n-1] != 0xff {
		return n - 1, int(b[n-1])
	}
	if n < 4 {
		return 0, 0
	}
	hl = int(b[n-3]) | int(b[n-2])<<8
	if hl < 0xff {
		return 0, 0
	}
	return n - 3, hl
}

func appendTrailer(b []byte, hl int) []byte {
	if hl < 0xff {
		return append(b, byte(hl))
	}
	return append(b, byte(hl), byte(hl>>8), 0xff)
}

// cursor reads one cursor: offset from the log start, time (from the first event's
// for tier cursors, back from the newest for the second log's), sum. A cursor past
// the newest event has time and sum 0.
func (r *hreader) cursor(v *view, cu *cursor, fromFirst bool) bool {
	rel, x, sum := r.u(), r.u(), r.u()
	return !r.bad && hcursor(v, cu, rel, x, sum, fromFirst)
}

// uvarintLen is the length of v's varint (1 + (bits-1)/7, at least 1).
func uvarintLen(v uint64) int {
	return (bits.Len64(v|1)*9 + 64) / 64
}

// putUvarint writes v's varint at b[i:] and returns where it ends, or len(b)+1 when
// it does not fit (and for any i > len(b), so that a header's writes can be chained
// and checked once at the end). Most header fields take one byte: that case is
// inlined.
func putUvarint(b []byte, i int, v uint64) int {
	if v < 0x80 && i < len(b) {
		b[i] = byte(v)
		return i + 1
	}
	return putUvarintLong(b, i, v)
}

func putUvarintLong(b []byte, i int, v uint64) int {
	for v >= 0x80 {
		if i >= len(b) {
			return len(b) + 1
		}
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	return putByte(b, i, byte(v))
}

// putByte writes x at b[i] as putUvarint does.
func putByte(b []byte, i int, x byte) int {
	if i >= len(b) {
		return len(b) + 1
	}
	b[i] = x
	return i + 1
}

// cursorFields are the three varints of a cursor: offset from the log start, time
// (from the first event's for tier cursors, back from the newest for the second
// log's), sum; a cursor past the newest event has time and sum 0.
func cursorFields(cu *cursor, v *view, fromFirst bool) (rel, x, sum uint64) {
	if cu.off >= v.end {
		return uint64(v.end - v.start), 0, 0
	}
	if fromFirst {
		return uint64(cu.off - v.start), uint64(cu.ts - v.first), uint64(cu.sum)
	}
	return uint64(cu.off - v.start), uint64(v.last - cu.ts), uint64(cu.sum)
}

func cursorLen(cu *cursor, v *view, fromFirst bool) int {
	rel, x, sum := cursorFields(cu, v, fromFirst)
	return uvarintLen(rel) + uvarintLen(x) + uvarintLen(sum)
}

func putCursor(b []byte, i int, cu *cursor, v *view, fromFirst bool) int {
	rel, x, sum := cursorFields(cu, v, fromFirst)
	i = putUvarint(b, i, rel)
	i = putUvarint(b, i, x)
	return putUvarint(b, i, sum)
}

// t1Field is the header's newest-tier-1-hit field: 0 for none, else 1 + its age.
func (v *view) t1Field() uint64 {
	if v.has1 {
		return uint64(v.last-v.t1) + 1
	}
	return 0
}

// headerSize is the length of v's header (kind .. tiers), trailerSize that of the
// trailer after it: emit sizes the new value exactly, then writes the header in place.
func headerSize(v *view) int {
	n := 0
	if v.hasExt() {
		n = extSize(v)
	}
	n += 1 + uvarintLen(uint64(v.last)) + uvarintLen(uint64(v.start)) +
		uvarintLen(uint64(v.last-v.first)) + uvarintLen(uint64(v.end-v.newest)) +
		cursorLen(&v.sec, v, false)
	if v.kind == KindDomain {
		n += uvarintLen(v.t1Field()) + 1
		for i := 0; i < v.n; i++ {
			st := &v.tiers[i]
			cfg := &st.cfg
			n += uvarintLen(uint64(cfg.Limit)) + uvarintLen(uint64(cfg.Window)) +
				uvarintLen(uint64(cfg.Active)) + uvarintLen(uint64(cfg.Cooldown)) + 1
			if st.entered {
				n += uvarintLen(uint64(v.last - st.entry))
			}
			n += cursorLen(&st.cu, v, true)
		}
	}
	return n
}

func trailerSize(hl int) int {
	if hl < 0xff {
		return 1
	}
	return 3
}

// putHeader writes v's header and trailer at b[off:] and returns where they end, or
// ok == false when they do not fit in b (whose bytes from off are then garbage);
// v.b is not used.
func putHeader(b []byte, off int, v *view) (end int, ok bool) {
	i := off
	if v.hasExt() {
		i = putExt(b, i, v)
	}
	i = putByte(b, i, byte(v.kind))
	i = putUvarint(b, i, uint64(v.last))
	i = putUvarint(b, i, uint64(v.start))
	i = putUvarint(b, i, uint64(v.last-v.first))
	i = putUvarint(b, i, uint64(v.end-v.newest))
	i = putCursor(b, i, &v.sec, v, false)
	if v.kind == KindDomain {
		i = putUvarint(b, i, v.t1Field())
		i = putByte(b, i, byte(v.n))
		for j := 0; j < v.n; j++ {
			st := &v.tiers[j]
			cfg := &st.cfg
			i = putUvarint(b, i, uint64(cfg.Limit))
			i = putUvarint(b, i, uint64(cfg.Window))
			i = putUvarint(b, i, uint64(cfg.Active))
			i = putUvarint(b, i, uint64(cfg.Cooldown))
			var flags byte
			if cfg.Skippable {
				flags |= flagSkip
			}
			if st.entered {
				flags |= flagEnter
			}
			i = putByte(b, i, flags)
			if st.entered {
				i = putUvarint(b, i, uint64(v.last-st.entry))
			}
			i = putCursor(b, i, &st.cu, v, true)
		}
	}
	hl := i - off
	if hl < 0xff {
		i = putByte(b, i, byte(hl))
	} else if i+3 <= len(b) {
		b[i], b[i+1], b[i+2] = byte(hl), byte(hl>>8), 0xff
		i += 3
	} else {
		i = len(b) + 1
	}
	return i, i <= len(b)
}

// appendHeader appends v's header (kind .. tiers) and the trailer; v.b is not used.
// It writes them into b's spare capacity when they fit, else grows b to their size.
func appendHeader(b []byte, v *view) []byte {
	h0 := len(b)
	if end, ok := putHeader(b[:cap(b)], h0, v); ok {
		return b[:end]
	}
	hl := headerSize(v)
	b = append(b, make([]byte, hl+trailerSize(hl))...)
	putHeader(b, h0, v)
	return b
}

// evWalk walks events forward from a known event (offset and time).
type evWalk struct {
	b    []byte
	end  int
	off  int // current event
	ts   int64
	next int // the event after it, once read
	e    event
}

// at reads the event at off, whose time is known to be ts.
func (w *evWalk) at(v *view, off int, ts int64) fault {
	w.b, w.end, w.off, w.ts = v.b, v.end, off, ts
	if off >= v.end {
		return faultNone
	}
	next, _, f := readEvent(v.b, off, v.end, &w.e)
	w.next = next
	return f
}

// step moves to the following event; false at the end (off == end) or on damage.
func (w *evWalk) step(f *fault) bool {
	if w.next >= w.end {
		w.off = w.end
		return false
	}
	next, d, ff := readEvent(w.b, w.next, w.end, &w.e)
	if ff != faultNone || d == 0 || d > uint64(MaxAt) {
		if ff == faultNone {
			ff = faultNotIncreasing
		}
		*f = ff
		return false
	}
	w.off, w.ts, w.next = w.next, w.ts+int64(d), next
	return true
}

// evCount reads the event at b[off:end] as readEvent does (same next, step and fault
// on any bytes) but keeps only its count in slot j, or its second-log total for j < 0:
// the cursor walks need nothing else, and an event struct is 170 bytes to fill.
func evCount(b []byte, off, end, j int) (next int, d uint64, cnt int64, f fault) {
	if off >= end {
		return off, 0, 0, faultTime
	}
	c0 := b[off]
	off++
	if c0 < 0x40 {
		if j <= 0 {
			cnt = 1
		}
		return off, uint64(c0), cnt, faultNone
	}
	if c0 >= 0x80 {
		if off >= end {
			return off, 0, 0, faultTime
		}
		if j <= 0 {
			cnt = 1
		}
		return off + 1, uint64(c0&0x7f)<<8 | uint64(b[off]), cnt, faultNone
	}
	d = uint64(c0 & 15)
	if d == 15 {
		x, n := uvarint(b[:end], off)
		if n == 0 {
			return off, 0, 0, faultTime
		}
		off += n
		d += x
	}
	switch (c0 >> 4) & 3 {
	case formOne:
		if j <= 0 {
			cnt = 1
		}
		return off, d, cnt, faultNone
	case formSingle:
		var h uint64
		if off < end && b[off] < 0x80 {
			h = uint64(b[off])
			off++
		} else {
			x, n := uvarint(b[:end], off)
			if n == 0 {
				return off, d, 0, faultHeader
			}
			h = x
			off += n
		}
		slot, c := h&(1<<slotBits-1), h>>slotBits+1
		if slot > Detached || c > MaxStoredCount {
			return off, d, 0, faultSingle
		}
		if j < 0 || uint64(j) == slot {
			cnt = int64(c)
		}
		return off, d, cnt, faultNone
	case formMulti:
		h, n := uvarint(b[:end], off)
		if n == 0 {
			return off, d, 0, faultHeader
		}
		off += n
		lo, kk := h&(1<<slotBits-1), h>>slotBits
		if kk > Slots-2 || lo+kk+2 > Slots {
			return off, d, 0, faultMulti
		}
		k := int(kk) + 2
		i := j - int(lo) // the count wanted (j >= 0); all of them for j < 0
		for x := 0; x < k; x++ {
			c, n := uvarint(b[:end], off)
			if n == 0 || c > MaxStoredCount {
				return off, d, 0, faultCount
			}
			off += n
			if c == 0 && (x == 0 || x == k-1) {
				return off, d, 0, faultUntrimmed
			}
			if j < 0 || x == i {
				cnt += int64(c)
			}
		}
		return off, d, cnt, faultNone
	}
	return off, d, 0, faultHeader
}

// advance moves cu forward to the first event at or after lower holding counts in
// slot j (j < 0: any event), subtracting what it passes from cu.sum. On damage it
// returns the fault with cu.off and cu.ts unchanged (cu.sum less what it passed).
func (v *view) advance(cu *cursor, j int, lower int64) fault {
	if cu.off >= v.end || (cu.ts >= lower && j < 0) {
		return faultNone
	}
	b := v.b[:v.end]
	end := len(b)
	off, ts, sum := cu.off, cu.ts, cu.sum
	next, _, c, f := evCount(b, off, end, j)
	if f != faultNone {
		return f
	}
	var one int64 // a slot-0 hit's count in slot j
	if j <= 0 {
		one = 1
	}
	for ts < lower || c == 0 {
		sum -= c
		if next >= end {
			off = end
			break
		}
		// The common forms inline, each with a step >= 1: one slot-0 hit (1 or 2
		// bytes), one slot's count with a short step and a 1-byte varint; evCount
		// reads the rest (and every damaged event).
		var d uint64
		var nn int
		c0 := b[next]
		if c0-1 < 0x3f {
			nn, d, c = next+1, uint64(c0), one
		} else if next+1 < end && (c0 >= 0x80 && c0|b[next+1] != 0x80 ||
			c0-0x51 < 14 && b[next+1] < 0x80 && b[next+1]&(1<<slotBits-1) <= Detached) {
			h := b[next+1]
			if c0 >= 0x80 {
				nn, d, c = next+2, uint64(c0&0x7f)<<8|uint64(h), one
			} else {
				nn, d, c = next+2, uint64(c0&15), 0
				if j < 0 || j == int(h&(1<<slotBits-1)) {
					c = int64(h>>slotBits) + 1
				}
			}
		} else {
			nn, d, c, f = evCount(b, next, end, j)
			if f != faultNone || d == 0 || d > uint64(MaxAt) {
				if f == faultNone {
					f = faultNotIncreasing
				}
				cu.sum = sum
				return f
			}
		}
		off, ts, next = next, ts+int64(d), nn
	}
	cu.sum = sum
	if sum < 0 || ts > v.last {
		return faultSum
	}
	cu.off, cu.ts = off, ts
	if off >= end {
		cu.off, cu.ts = end, 0
		if sum != 0 {
			return faultSum
		}
	}
	return faultNone
}

// checkEvents walks every live event of a parsed header and checks times, slots, the
// newest event and every cursor and sum (Validate; not the hot path).
func checkEvents(v *view) error {
	var w evWalk
	if f := w.at(v, v.start, v.first); f != faultNone {
		return corrupt(v.start, f.String())
	}
	var total [Slots + 1]int64 // per slot, then the second log
	// Cursors: the tiers', the second log's, the exact caps' (slot -1 like the
	// second log's).
	var pre [MaxTiers + 1 + MaxCaps]int64
	var seen [MaxTiers + 1 + MaxCaps]bool
	ncur := v.n + 1 + v.nc
	cur := func(i int) *cursor {
		switch {
		case i < v.n:
			return &v.tiers[i].cu
		case i == v.n:
			return &v.sec
		}
		return &v.caps[i-v.n-1].cu
	}
	isTier := func(i int) bool { return i < v.n }
	var f fault
	for {
		e := &w.e
		if w.ts > v.last || w.ts < 0 {
			return corrupt(w.off, faultNotIncreasing.String())
		}
		for i := 0; i < e.k; i++ {
			j := e.lo + i
			if e.c[i] != 0 && v.kind == KindGlobal && j != Detached {
				return corrupt(w.off, faultMissingTier.String())
			}
		}
		for i := 0; i < ncur; i++ {
			if cu := cur(i); cu.off == w.off {
				if cu.ts != w.ts {
					return corrupt(w.off, faultCursor.String())
				}
				seen[i] = true
				if isTier(i) {
					pre[i] = total[i]
				} else {
					pre[i] = total[Slots]
				}
			}
		}
		for i := 0; i < e.k; i++ {
			total[e.lo+i] = satAdd(total[e.lo+i], e.c[i], hitSumCap)
		}
		total[Slots] = satAdd(total[Slots], e.total, hitSumCap)
		if w.next >= v.end {
			if w.next != v.end || w.off != v.newest || w.ts != v.last {
				return corrupt(w.off, faultNewest.String())
			}
			for j := v.n; j < Detached; j++ {
				if e.count(j) != 0 {
					return corrupt(w.off, faultMissingTier.String())
				}
			}
			break
		}
		if !w.step(&f) {
			return corrupt(w.next, f.String())
		}
	}
	for i := 0; i < ncur; i++ {
		cu := cur(i)
		if i > v.n && !v.caps[i-v.n-1].exact() {
			continue
		}
		if cu.off == v.end {
			continue
		}
		t := total[Slots]
		if isTier(i) {
			t = total[i]
		}
		if !seen[i] || t >= hitSumCap || cu.sum != t-pre[i] {
			return corrupt(cu.off, faultSum.String())
		}
	}
	return checkRegions(v)
}

// checkRegions checks version 3's regions (Validate): every token slot and the
// table's rules, every bucket log.
func checkRegions(v *view) error {
	tt := &v.tok
	if tt.n > 0 {
		occ, newest := 0, int64(-1)
		mask := tt.n - 1
		var r tokReply
		for i := 0; i < tt.n; i++ {
			if !getTok(v.b, i, &r) {
				return corrupt(1+tokSlot*i, "bad token slot")
			}
			if r.h == 0 {
				continue
			}
			occ++
			if r.t0 > v.last {
				return corrupt(1+tokSlot*i, "token after the newest time")
			}
			newest = max(newest, r.t0)
			// At most maxProbe past its home, reachable from it with no empty slot
			// between, and no other slot of its chain holds the same hash.
			if (i-int(r.h))&mask > maxProbe {
				return corrupt(1+tokSlot*i, "token slot too far from its home")
			}
			for k := int(r.h) & mask; k != i; k = (k + 1) & mask {
				h, _ := tokHash(v.b, k)
				if h == 0 || h == r.h {
					return corrupt(1+tokSlot*i, "token slot off its probe chain")
				}
			}
		}
		if occ != tt.occ || newest != tt.tnew {
			return corrupt(1, "token table counts do not match")
		}
	}
	for i := 0; i < v.nc; i++ {
		if cs := &v.caps[i]; !cs.exact() && !checkBuckets(v.b, cs, v.last) {
			return corrupt(cs.off, "bad bucket log")
		}
	}
	return nil
}

// parseView checks the whole value b (current version) and fills v.
func parseView(b []byte, v *view) error {
	if err := parseHeader(b, v); err != nil {
		return err
	}
	return checkEvents(v)
}

// valueWriter builds a value from scratch (Encode, conversion from version 1): every
// event live, every cursor on the first event.
type valueWriter struct {
	b       []byte
	base    int
	v       view
	prev    int64
	nev     int
	sums    [Slots]int64
	total   int64
	bad     bool
	badTier bool
}

func (w *valueWriter) begin(out []byte, kind Kind, last int64) {
	w.b = out
	w.base = len(out)
	w.b = append(w.b, encV2)
	w.v = view{kind: kind, last: last, start: 1, logBase: 1}
}

func (w *valueWriter) event(ts int64, c *[Slots]int64) {
	off := len(w.b) - w.base
	if w.nev == 0 {
		w.v.first = ts
		w.b = appendEvent(w.b, 0, c)
	} else {
		if ts <= w.prev {
			w.bad = true
		}
		w.b = appendEvent(w.b, ts-w.prev, c)
	}
	w.v.newest = off
	w.prev = ts
	w.nev++
	for j := 0; j < Slots; j++ {
		w.sums[j] = satAdd(w.sums[j], c[j], hitSumCap)
		w.total = satAdd(w.total, c[j], hitSumCap)
		if c[j] < 0 {
			w.bad = true
		}
		if c[j] > 0 {
			if j == 0 {
				w.v.has1, w.v.t1 = true, ts
			}
		}
	}
}

func (w *valueWriter) tier(cfg Tier, entered bool, entry int64) {
	if w.v.n >= MaxTiers {
		w.badTier = true
		return
	}
	w.v.tiers[w.v.n] = storedTier{cfg: cfg, entered: entered, entry: entry}
	w.v.n++
}

func (w *valueWriter) finish() []byte {
	v := &w.v
	v.end = len(w.b) - w.base
	if w.nev == 0 || w.bad || w.badTier {
		return append(w.b, 0xff) // invalid on purpose: no events, or broken input
	}
	lb := v.logBase
	v.start = lb
	v.sec = cursor{off: lb, ts: v.first, sum: w.total}
	for i := 0; i < v.n; i++ {
		v.tiers[i].cu = cursor{off: lb, ts: v.first, sum: w.sums[i]}
	}
	for i := 0; i < v.nc; i++ {
		if cs := &v.caps[i]; cs.exact() {
			cs.cu = cursor{off: lb, ts: v.first, sum: w.total}
		}
	}
	w.b[w.base] = encV2
	if v.hasExt() {
		w.b[w.base] = EncVer
	}
	return appendHeader(w.b, v)
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
	// Caps are the stored caps (rule 10) in order; Tokens the remembered ONCE
	// grants (rule 11), expired ones included, by hash.
	Caps   []StoredCap
	Tokens []Token
}

// StoredCap is a cap as held in a value: its configuration and, for a window above
// 1000 ms, its live buckets (oldest first).
type StoredCap struct {
	Cap
	Buckets []Bucket
}

// Bucket is one bucket of a cap: the hits granted in [Index*g, Index*g + g).
type Bucket struct {
	Index, Count int64
}

// Token is a remembered ONCE grant: the token's hash, the grant's time and reply.
type Token struct {
	Hash   uint64
	At     int64
	Fields [NumFields]int64
}

// Validate checks b completely: version, kind, every length, count, varint and bound,
// strictly increasing times, every cursor and running sum, no trailing bytes. Values of
// version 1 are checked by version 1's rules (they still load). Errors wrap ErrCorrupt.
func Validate(b []byte) error {
	if len(b) > 0 && b[0] == encV1 {
		var v v1view
		return v1parseView(b, &v)
	}
	var v view
	return parseView(b, &v)
}

// Decode validates b and returns its content: the live events, oldest first, with
// hits that no longer count in their tier (before the tier's cursor, or of a tier that
// no longer exists) shown in the Detached slot. A version 1 value is converted first.
func Decode(b []byte) (*Value, error) {
	if len(b) > 0 && b[0] == encV1 {
		conv, err := convertV1(b, nil)
		if err != nil {
			return nil, err
		}
		b = conv
	}
	var v view
	if err := parseView(b, &v); err != nil {
		return nil, err
	}
	out := &Value{Kind: v.kind, Last: v.last}
	for i := 0; i < v.n; i++ {
		st := &v.tiers[i]
		out.Tiers = append(out.Tiers, StoredTier{Tier: st.cfg, Entered: st.entered, EnteredAt: st.entry})
	}
	decodeRegions(&v, out)
	var w evWalk
	w.at(&v, v.start, v.first)
	var f fault
	for {
		ev := Event{At: w.ts}
		copy(ev.Counts[w.e.lo:w.e.lo+w.e.k], w.e.c[:w.e.k])
		for j := 1; j < Detached; j++ {
			if ev.Counts[j] != 0 && (j >= v.n || w.off < v.tiers[j].cu.off) {
				ev.Counts[Detached] += ev.Counts[j]
				ev.Counts[j] = 0
			}
		}
		out.Events = append(out.Events, ev)
		if !w.step(&f) {
			break
		}
	}
	return out, nil
}

// liveEvents counts the events from the log start (parsed view).
func liveEvents(v *view) int {
	var w evWalk
	if w.at(v, v.start, v.first) != faultNone {
		return 0
	}
	n := 1
	var f fault
	for w.step(&f) {
		n++
	}
	return n
}

// Encode appends an encoding of v to dst: every event live, every cursor on the first
// event. It fails (wrapping ErrCorrupt) when v breaks an invariant of the format, such
// as unordered events or hits in a missing tier.
func Encode(dst []byte, v *Value) ([]byte, error) {
	start := len(dst)
	var w valueWriter
	w.begin(dst, v.Kind, v.Last)
	w.regions(v)
	for i := range v.Events {
		w.event(v.Events[i].At, &v.Events[i].Counts)
	}
	if v.Kind == KindDomain {
		for i := range v.Tiers {
			st := &v.Tiers[i]
			w.tier(st.Tier, st.Entered, st.EnteredAt)
		}
	} else if len(v.Tiers) > 0 {
		w.badTier = true
	}
	if v.Kind == KindDomain && len(v.Tiers) == 0 {
		w.badTier = true
	}
	b := w.finish()
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
	if len(v.Caps) != len(w.Caps) || len(v.Tokens) != len(w.Tokens) {
		return false
	}
	for i := range v.Caps {
		a, b := v.Caps[i], w.Caps[i]
		if a.Cap != b.Cap || len(a.Buckets) != len(b.Buckets) {
			return false
		}
		for k := range a.Buckets {
			if a.Buckets[k] != b.Buckets[k] {
				return false
			}
		}
	}
	for i := range v.Tokens {
		if v.Tokens[i] != w.Tokens[i] {
			return false
		}
	}
	return true
}
