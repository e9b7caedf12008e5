package rate

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
)

// Version 3 of the value (FORMAT.md, "Version 3"): the token table of ONCE (rule 11)
// and the bucket logs of the windowed caps (rule 10) sit between the version byte and
// the log; a header extension, first in the header, describes them.

const (
	tokSlot  = 64      // bytes per token slot: 8 little-endian words
	maxProbe = 64      // a token lies at most this many slots past its home
	maxTok   = 1 << 19 // token slots at most
	onceLife = 10_000  // a token is remembered while t - t0 <= onceLife
	t0Bits   = 53
	t0Mask   = 1<<t0Bits - 1
	// Bits of a token's word 1 above t0: the tier (5 bits) and three flags.
	tokTierShift   = 53
	tokBurst       = 1 << 58
	tokHardLimited = 1 << 59
	tokGlobLimited = 1 << 60
	// bucketSpanMax: a bucketed cap's live buckets span at most window/g + 1.
	capCompactMin = 16 // the smallest dead front of a bucket log worth dropping
)

// tokTable describes a value's token table at [1, 1 + tokSlot*n).
type tokTable struct {
	n    int   // slots: 0 or a power of two
	occ  int   // non-empty slots
	tnew int64 // the newest t0 (n > 0)
	// built is when the table was last rebuilt (n > 0): an insert more than 10 s
	// later rebuilds it, so that expired tokens are pruned as the key is written.
	built int64
}

func (t *tokTable) end() int { return 1 + tokSlot*t.n }

// capState is a stored cap (exact: a cursor on the log; bucketed: its bucket log at
// [off, off+len) of the value, live from off+dead).
type capState struct {
	cfg            Cap
	g              int64
	cu             cursor // exact caps
	off, len, dead int    // bucketed caps: region, used bytes, dead front
	spare          int    // zero bytes after the used ones, room for new entries
	first          int64  // the first live bucket
	sum            int64  // the live buckets' counts
}

// capSpare is the room a rewritten bucket log gets for new entries: an eighth of it
// and 8 bytes, so that adding buckets rewrites the value once in many.
func capSpare(used int) int { return 8 + used/8 }

// maxSpare bounds the spare room of a bucket log of used bytes (Validate).
func maxSpare(used int) int { return 64 + used }

func (cs *capState) exact() bool { return cs.g == 1 }

// rawCursor holds an exact cap's cursor fields until the header's version 2 fields
// are known (the extension comes first).
type rawCursor struct{ rel, x, sum uint64 }

// ext reads the header extension into v (offsets relative to the value; exact caps'
// cursors and the token table's time into raw, checked by extFinish). span of
// bucketed caps goes to cs.first until last is known.
func (r *hreader) ext(v *view, raw *[MaxCaps]rawCursor, size int) error {
	v.tok = tokTable{}
	n := r.u()
	if r.bad || n > maxTok || n&(n-1) != 0 {
		return corrupt(r.off, "bad token table size")
	}
	v.tok.n = int(n)
	off := 1 + tokSlot*int(n)
	if off > size {
		return corrupt(r.off, "token table past the value")
	}
	if n > 0 {
		occ, back, bback := r.u(), r.u(), r.u()
		if r.bad || occ < 1 || occ > n || back > MaxAt || bback > MaxAt {
			return corrupt(r.off, "bad token table fields")
		}
		// Back from last until extFinish.
		v.tok.occ, v.tok.tnew, v.tok.built = int(occ), int64(back), int64(bback)
	}
	nc := r.byte()
	if r.bad || nc > MaxCaps {
		return corrupt(r.off, "bad cap count")
	}
	v.nc = int(nc)
	for i := 0; i < v.nc; i++ {
		cs := &v.caps[i]
		lim, w := r.u(), r.u()
		if r.bad || lim > MaxCount || w < 1 || w > MaxDuration || w == secondWindow {
			return corrupt(r.off, "bad cap")
		}
		for k := 0; k < i; k++ {
			if v.caps[k].cfg.Window == int64(w) {
				return corrupt(r.off, "cap window given twice")
			}
		}
		cs.cfg = Cap{Limit: int64(lim), Window: int64(w)}
		cs.g = bucketMs(int64(w))
		if cs.exact() {
			raw[i] = rawCursor{r.u(), r.u(), r.u()}
			if r.bad {
				return corrupt(r.off, "bad cap cursor")
			}
			continue
		}
		ln, spare, dead, span, sum := r.u(), r.u(), r.u(), r.u(), r.u()
		if r.bad || ln < 2 || ln > uint64(size-off) || spare > uint64(maxSpare(int(ln))) || spare > uint64(size-off)-ln ||
			dead >= ln || sum >= hitSumCap || span > uint64(cs.cfg.Window/cs.g+1) {
			return corrupt(r.off, "bad bucket log fields")
		}
		cs.off, cs.len, cs.spare, cs.dead, cs.first, cs.sum = off, int(ln), int(spare), int(dead), int64(span), int64(sum)
		off += int(ln) + int(spare)
	}
	v.logBase = off
	return nil
}

// extVals is ext for parseHeaderFast, which decodes every varint of the header
// first: it reads the extension from vals and returns how many it used; ok false on
// anything ext would refuse (parseHeaderSlow then reports it).
func extVals(v *view, vals []uint64, raw *[MaxCaps]rawCursor, size int) (k int, ok bool) {
	if len(vals) < 2 {
		return 0, false
	}
	n := vals[0]
	if n > maxTok || n&(n-1) != 0 {
		return 0, false
	}
	v.tok = tokTable{n: int(n)}
	off := 1 + tokSlot*int(n)
	if off > size {
		return 0, false
	}
	k = 1
	if n > 0 {
		if len(vals) < 5 {
			return 0, false
		}
		occ, back, bback := vals[1], vals[2], vals[3]
		if occ < 1 || occ > n || back > MaxAt || bback > MaxAt {
			return 0, false
		}
		v.tok.occ, v.tok.tnew, v.tok.built = int(occ), int64(back), int64(bback)
		k = 4
	}
	nc := vals[k]
	k++
	if nc > MaxCaps {
		return 0, false
	}
	v.nc = int(nc)
	for i := 0; i < v.nc; i++ {
		if k+2 > len(vals) {
			return 0, false
		}
		cs := &v.caps[i]
		lim, w := vals[k], vals[k+1]
		k += 2
		if lim > MaxCount || w < 1 || w > MaxDuration || w == secondWindow {
			return 0, false
		}
		for j := 0; j < i; j++ {
			if v.caps[j].cfg.Window == int64(w) {
				return 0, false
			}
		}
		cs.cfg = Cap{Limit: int64(lim), Window: int64(w)}
		cs.g = bucketMs(int64(w))
		if cs.exact() {
			if k+3 > len(vals) {
				return 0, false
			}
			raw[i] = rawCursor{vals[k], vals[k+1], vals[k+2]}
			k += 3
			continue
		}
		if k+5 > len(vals) {
			return 0, false
		}
		ln, spare, dead, span, sum := vals[k], vals[k+1], vals[k+2], vals[k+3], vals[k+4]
		k += 5
		if ln < 2 || ln > uint64(size-off) || spare > uint64(maxSpare(int(ln))) || spare > uint64(size-off)-ln ||
			dead >= ln || sum >= hitSumCap || span > uint64(cs.cfg.Window/cs.g+1) {
			return 0, false
		}
		cs.off, cs.len, cs.spare, cs.dead, cs.first, cs.sum = off, int(ln), int(spare), int(dead), int64(span), int64(sum)
		off += int(ln) + int(spare)
	}
	v.logBase = off
	return k, true
}

// extFinish checks and completes what ext read, once v's version 2 fields are read.
func extFinish(v *view, raw *[MaxCaps]rawCursor) bool {
	if v.logBase > v.start {
		return false
	}
	if v.tok.n > 0 {
		if v.tok.tnew > v.last || v.tok.built > v.last {
			return false
		}
		v.tok.tnew, v.tok.built = v.last-v.tok.tnew, v.last-v.tok.built
	}
	for i := 0; i < v.nc; i++ {
		cs := &v.caps[i]
		if cs.exact() {
			if !hcursor(v, &cs.cu, raw[i].rel, raw[i].x, raw[i].sum, false) {
				return false
			}
			continue
		}
		newest := floorDiv(v.last, cs.g)
		cs.first = newest - cs.first
		if cs.first < floorDiv(v.last-cs.cfg.Window, cs.g) {
			return false
		}
	}
	return true
}

// extSize is the length of v's header extension (version 3).
func extSize(v *view) int {
	n := uvarintLen(uint64(v.tok.n)) + 1
	if v.tok.n > 0 {
		n += uvarintLen(uint64(v.tok.occ)) + uvarintLen(uint64(v.last-v.tok.tnew)) + uvarintLen(uint64(v.last-v.tok.built))
	}
	for i := 0; i < v.nc; i++ {
		cs := &v.caps[i]
		n += uvarintLen(uint64(cs.cfg.Limit)) + uvarintLen(uint64(cs.cfg.Window))
		if cs.exact() {
			n += cursorLen(&cs.cu, v, false)
			continue
		}
		n += uvarintLen(uint64(cs.len)) + uvarintLen(uint64(cs.spare)) + uvarintLen(uint64(cs.dead)) +
			uvarintLen(uint64(floorDiv(v.last, cs.g)-cs.first)) + uvarintLen(uint64(cs.sum))
	}
	return n
}

// putExt writes v's header extension at b[i:] (as putUvarint chains).
func putExt(b []byte, i int, v *view) int {
	i = putUvarint(b, i, uint64(v.tok.n))
	if v.tok.n > 0 {
		i = putUvarint(b, i, uint64(v.tok.occ))
		i = putUvarint(b, i, uint64(v.last-v.tok.tnew))
		i = putUvarint(b, i, uint64(v.last-v.tok.built))
	}
	i = putByte(b, i, byte(v.nc))
	for j := 0; j < v.nc; j++ {
		cs := &v.caps[j]
		i = putUvarint(b, i, uint64(cs.cfg.Limit))
		i = putUvarint(b, i, uint64(cs.cfg.Window))
		if cs.exact() {
			i = putCursor(b, i, &cs.cu, v, false)
			continue
		}
		i = putUvarint(b, i, uint64(cs.len))
		i = putUvarint(b, i, uint64(cs.spare))
		i = putUvarint(b, i, uint64(cs.dead))
		i = putUvarint(b, i, uint64(floorDiv(v.last, cs.g)-cs.first))
		i = putUvarint(b, i, uint64(cs.sum))
	}
	return i
}

// hasExt reports whether v is written as version 3.
func (v *view) hasExt() bool { return v.tok.n > 0 || v.nc > 0 }

// ---------------------------------------------------------------------------
// Tokens.

// tokReply is a remembered grant: t0 and the reply's fields.
type tokReply struct {
	h      uint64
	t0     int64
	fields [NumFields]int64
}

func putTok(b []byte, off int, r *tokReply) {
	f := &r.fields
	w1 := uint64(r.t0) | uint64(f[FieldTier])<<tokTierShift
	if f[FieldBurst] != 0 {
		w1 |= tokBurst
	}
	if f[FieldHardLimited] != 0 {
		w1 |= tokHardLimited
	}
	if f[FieldGlobalLimited] != 0 {
		w1 |= tokGlobLimited
	}
	s := b[off : off+tokSlot]
	binary.LittleEndian.PutUint64(s[0:], r.h)
	binary.LittleEndian.PutUint64(s[8:], w1)
	binary.LittleEndian.PutUint64(s[16:], uint64(f[FieldGranted]))
	binary.LittleEndian.PutUint64(s[24:], uint64(f[FieldTierLimit]))
	binary.LittleEndian.PutUint64(s[32:], uint64(f[FieldTierHits]))
	binary.LittleEndian.PutUint64(s[40:], uint64(f[FieldDomainHits]))
	binary.LittleEndian.PutUint64(s[48:], uint64(f[FieldGlobalHits]+1))
	binary.LittleEndian.PutUint64(s[56:], uint64(f[FieldResetAfter]))
}

// getTok reads slot i of the table in b; ok false for a slot outside the bounds of
// FORMAT.md (an empty slot reads as h == 0).
func getTok(b []byte, i int, r *tokReply) (ok bool) {
	s := b[1+tokSlot*i : 1+tokSlot*(i+1)]
	r.h = binary.LittleEndian.Uint64(s[0:])
	w1 := binary.LittleEndian.Uint64(s[8:])
	r.t0 = int64(w1 & t0Mask)
	f := &r.fields
	f[FieldTier] = int64(w1 >> tokTierShift & 31)
	f[FieldBurst] = int64(w1 >> 58 & 1)
	f[FieldHardLimited] = int64(w1 >> 59 & 1)
	f[FieldGlobalLimited] = int64(w1 >> 60 & 1)
	f[FieldGranted] = int64(binary.LittleEndian.Uint64(s[16:]))
	f[FieldTierLimit] = int64(binary.LittleEndian.Uint64(s[24:]))
	f[FieldTierHits] = int64(binary.LittleEndian.Uint64(s[32:]))
	f[FieldDomainHits] = int64(binary.LittleEndian.Uint64(s[40:]))
	gh := binary.LittleEndian.Uint64(s[48:])
	f[FieldGlobalHits] = int64(gh) - 1
	f[FieldRetryAfter] = 0
	f[FieldResetAfter] = int64(binary.LittleEndian.Uint64(s[56:]))
	if r.h == 0 {
		for _, c := range s {
			if c != 0 {
				return false
			}
		}
		return true
	}
	return w1>>61 == 0 && f[FieldTier] <= MaxTiers && f[FieldGranted] >= 1 && f[FieldGranted] <= MaxCount &&
		uint64(f[FieldTierLimit]) <= MaxCount && uint64(f[FieldTierHits]) < hitSumCap &&
		uint64(f[FieldDomainHits]) < hitSumCap && gh < hitSumCap && uint64(f[FieldResetAfter]) <= MaxAt
}

// tokHash reads slot i's hash (0: empty) and t0.
func tokHash(b []byte, i int) (h uint64, t0 int64) {
	o := 1 + tokSlot*i
	return binary.LittleEndian.Uint64(b[o:]), int64(binary.LittleEndian.Uint64(b[o+8:]) & t0Mask)
}

// tokLookup probes v's table (in b) for h at t: the slot of a live token with h
// (found), else the slot an insert takes (the expired one holding h, or the first
// free or expired slot within maxProbe of h's home; -1 when none). A token lies at
// most maxProbe slots past its home, so a lookup reads at most maxProbe+1 slots,
// however the tokens' hashes crowd.
func tokLookup(b []byte, tt *tokTable, h uint64, t int64) (slot int, found bool) {
	if tt.n == 0 {
		return -1, false
	}
	mask := tt.n - 1
	free := -1
	for k, i := 0, int(h)&mask; k < tt.n && k <= maxProbe; k, i = k+1, (i+1)&mask {
		sh, t0 := tokHash(b, i)
		if sh == 0 {
			if free < 0 {
				free = i
			}
			return free, false
		}
		expired := t-t0 > onceLife
		if sh == h {
			if !expired {
				return i, true
			}
			return i, false // the same token, expired: the insert takes its slot
		}
		if expired && free < 0 {
			free = i
		}
	}
	return free, false
}

// tokNeedsRebuild reports whether inserting into slot (from tokLookup) at t would
// break the table's rules (FORMAT.md): no slot, occupancy past 3/4 of 4+ slots, or a
// table built more than 10 s ago (its expired tokens are due to be pruned).
func tokNeedsRebuild(b []byte, tt *tokTable, slot int, t int64) bool {
	if slot < 0 || t-tt.built > onceLife {
		return true
	}
	if h, _ := tokHash(b, slot); h != 0 {
		return false // reuses an expired slot: occupancy unchanged
	}
	return tt.n >= 4 && 4*(tt.occ+1) > 3*tt.n
}

// tokSize is the table size a rebuild with live tokens gives (FORMAT.md).
func tokSize(live int) int {
	if live <= 1 {
		return live
	}
	return 1 << bits.Len(uint(2*live-1))
}

// ---------------------------------------------------------------------------
// Bucket logs.

// readEntry reads a bucket log entry at b[off:end]: step, count, next offset.
func readEntry(b []byte, off, end int) (step, cnt uint64, next int, ok bool) {
	s, n := uvarint(b[:end], off)
	if n == 0 {
		return 0, 0, off, false
	}
	c, m := uvarint(b[:end], off+n)
	if m == 0 || s == 0 || c == 0 || c >= hitSumCap {
		return 0, 0, off, false
	}
	return s, c, off + n + m, true
}

// capAdvance moves a bucketed cap's front to the first bucket >= lowB, subtracting
// what it passes; false on damage. When every bucket left, the live log is empty
// (dead == len; only the request's own grant can then make it live again).
func capAdvance(b []byte, cs *capState, lowB int64) bool {
	if cs.first >= lowB || cs.dead >= cs.len {
		return true
	}
	end := cs.off + cs.len
	off := cs.off + cs.dead
	bk := cs.first
	for first := true; off < end; first = false {
		st, c, next, ok := readEntry(b, off, end)
		if !ok {
			return false
		}
		if !first {
			bk += int64(st)
		}
		if bk >= lowB {
			cs.dead, cs.first = off-cs.off, bk
			return cs.sum > 0
		}
		cs.sum -= int64(c)
		off = next
	}
	cs.dead, cs.first = cs.len, lowB
	return cs.sum == 0
}

// capLast reads the newest entry of a bucketed cap's log: its count and where its
// count varint starts (for an update in place).
func capLast(b []byte, cs *capState) (cnt int64, at int) {
	end := cs.off + cs.len
	// The count is the last varint: its bytes but the last have the high bit set, and
	// the step before it ends with a byte below 0x80.
	at = end - 1
	for at > cs.off && b[at-1] >= 0x80 {
		at--
	}
	c, _ := uvarint(b[:end], at)
	return int64(c), at
}

// checkBuckets walks a bucketed cap's live entries (Validate).
func checkBuckets(b []byte, cs *capState, last int64) bool {
	end := cs.off + cs.len
	off := cs.off + cs.dead
	// The dead front must hold whole entries too.
	for o := cs.off; o < off; {
		_, _, next, ok := readEntry(b, o, end)
		if !ok || next > off {
			return false
		}
		o = next
	}
	bk, sum := cs.first, int64(0)
	for k := 0; off < end; k++ {
		st, c, next, ok := readEntry(b, off, end)
		if !ok {
			return false
		}
		if k > 0 {
			bk += int64(st)
		}
		sum += int64(c)
		if sum >= hitSumCap {
			return false
		}
		off = next
	}
	for _, c := range b[end : end+cs.spare] {
		if c != 0 {
			return false
		}
	}
	return off == end && bk == floorDiv(last, cs.g) && sum == cs.sum
}

// ---------------------------------------------------------------------------
// Decode and Encode (tests and tools).

// decodeRegions copies a parsed value's caps and tokens into out.
func decodeRegions(v *view, out *Value) {
	for i := 0; i < v.nc; i++ {
		cs := &v.caps[i]
		sc := StoredCap{Cap: cs.cfg}
		if !cs.exact() {
			end := cs.off + cs.len
			bk := cs.first
			for off, first := cs.off+cs.dead, true; off < end; first = false {
				st, c, next, ok := readEntry(v.b, off, end)
				if !ok {
					break
				}
				if !first {
					bk += int64(st)
				}
				sc.Buckets = append(sc.Buckets, Bucket{Index: bk, Count: int64(c)})
				off = next
			}
		}
		out.Caps = append(out.Caps, sc)
	}
	var r tokReply
	for i := 0; i < v.tok.n; i++ {
		if getTok(v.b, i, &r); r.h != 0 {
			out.Tokens = append(out.Tokens, Token{Hash: r.h, At: r.t0, Fields: r.fields})
		}
	}
	slices.SortFunc(out.Tokens, func(a, b Token) int { return cmp.Compare(a.Hash, b.Hash) })
}

// regions writes v's token table and bucket logs after the version byte (Encode);
// anything that breaks the format is caught by Encode's decode of the result.
func (w *valueWriter) regions(val *Value) {
	v := &w.v
	if len(val.Tokens) > 0 {
		// The smallest table from tokSize up where every token lies within maxProbe
		// of its home.
		var tab []byte
		for n := max(tokSize(len(val.Tokens)), 1); ; n *= 2 {
			if n < len(val.Tokens) {
				continue
			}
			tab = make([]byte, 1+tokSlot*n)
			v.tok = tokTable{n: n}
			placed := true
			for i := range val.Tokens {
				tk := &val.Tokens[i]
				r := tokReply{h: tk.Hash, t0: tk.At, fields: tk.Fields}
				k, mask := -1, n-1
				for d, j := 0, int(r.h)&mask; d < n && d <= maxProbe; d, j = d+1, (j+1)&mask {
					if h, _ := tokHash(tab, j); h == 0 {
						k = j
						break
					}
				}
				if k < 0 {
					placed = false
					break
				}
				putTok(tab, 1+tokSlot*k, &r)
				v.tok.occ++
				v.tok.tnew = max(v.tok.tnew, tk.At)
			}
			if placed || n >= maxTok {
				break
			}
		}
		v.tok.built = v.tok.tnew
		w.b = append(w.b, tab[1:]...)
	}
	if len(val.Caps) > MaxCaps {
		w.bad = true
		return
	}
	v.nc = len(val.Caps)
	for i := range val.Caps {
		sc := &val.Caps[i]
		cs := &v.caps[i]
		*cs = capState{cfg: sc.Cap, g: bucketMs(sc.Window)}
		if cs.exact() {
			continue
		}
		start := len(w.b) - w.base
		for k, b := range sc.Buckets {
			step := int64(1)
			if k > 0 {
				step = b.Index - sc.Buckets[k-1].Index
			}
			w.b = appendUvarint(appendUvarint(w.b, uint64(step)), uint64(b.Count))
			cs.sum += b.Count
		}
		if len(sc.Buckets) > 0 {
			cs.first = sc.Buckets[0].Index
		}
		cs.off, cs.len = start, len(w.b)-w.base-start
	}
	v.logBase = len(w.b) - w.base
	v.start = v.logBase
}
