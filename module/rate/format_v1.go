package rate

// Version 1 of the encoding (FORMAT.md, "Version 1"): read only, so that values saved
// by an older module still load; Apply converts them to the current version on their
// first write (convertV1).

import "fmt"

// v1view is a validated value's header; events are read in place by v1iter.
type v1view struct {
	b       []byte
	kind    Kind
	last    int64
	n       int
	tiers   [MaxTiers]storedTier
	nev     int
	evOff   int
	lastPay int // payload offset of the newest v1event, set by a full walk
}

// v1event is one decoded log entry: counts for slots lo..lo+k-1 at ts.
type v1event struct {
	ts    int64
	lo, k int
	pay   int // offset of the v1event's payload (after its time)
	c     [Slots]int64
	total int64
}

// v1readEvent decodes and checks the v1event at b[off:]. prev is the previous v1event's time
// (ignored when first), ntiers the number of tier slots that may hold hits.
func v1readEvent(b []byte, off int, first bool, prev, last int64, ntiers int, e *v1event) (int, fault) {
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
	return v1readPayload(b, off, ntiers, e)
}

// v1readPayload decodes and checks an v1event's slot header and counts at b[off:].
func v1readPayload(b []byte, off int, ntiers int, e *v1event) (int, fault) {
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

// v1parseHeader checks and reads everything before the events; the events are checked
// by the first full walk of an v1iter (it.err).
func v1parseHeader(b []byte, v *v1view) error {
	v.b = b
	if len(b) < headerLen {
		return corrupt(0, "short value")
	}
	if b[0] != encV1 {
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
		return corrupt(off, "bad v1event count")
	}
	off += n
	v.nev = int(nev)
	v.evOff = off
	return nil
}

// v1iter walks the events of a v1view in time order. A walk that reaches the end checks
// the value's tail (newest time, no trailing bytes); any damage stops the walk and is
// left in err.
type v1iter struct {
	v     *v1view
	off   int
	i     int
	prev  int64
	fault fault
	at    int
}

func (v *v1view) iter() v1iter { return v1iter{v: v, off: v.evOff} }

// next decodes the next v1event into e; false at the end or on damage. The common
// v1event (neither first nor last, a one-byte step, one slot with one or two hits) is
// decoded inline; anything else goes through nextSlow.
func (it *v1iter) next(e *v1event) bool {
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

func (it *v1iter) nextSlow(e *v1event) bool {
	v := it.v
	if v == nil || it.i >= v.nev || it.fault != faultNone {
		return false
	}
	off, f := v1readEvent(v.b, it.off, it.i == 0, it.prev, v.last, v.n, e)
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
func (it *v1iter) error() error {
	if it.fault == faultNone {
		return nil
	}
	return corrupt(it.at, it.fault.String())
}

// v1parseView checks a whole version-1 value.
func v1parseView(b []byte, v *v1view) error {
	if err := v1parseHeader(b, v); err != nil {
		return err
	}
	it := v.iter()
	var e v1event
	for it.next(&e) {
	}
	return it.error()
}

// convertV1 checks the version-1 value b and appends its current-version encoding to
// out: the same tiers, entries and events, every cursor on the first event (the first
// write moves them on). It allocates only when out is too small.
func convertV1(b, out []byte) ([]byte, error) {
	var v v1view
	if err := v1parseView(b, &v); err != nil {
		return out, err
	}
	var w valueWriter
	w.begin(out, v.kind, v.last)
	it := v.iter()
	var e v1event
	for it.next(&e) {
		var s [Slots]int64
		copy(s[e.lo:e.lo+e.k], e.c[:e.k])
		w.event(e.ts, &s)
	}
	for i := 0; i < v.n; i++ {
		st := &v.tiers[i]
		w.tier(st.cfg, st.entered, st.entry)
	}
	return w.finish(), nil
}
