package rate

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The header reader decodes varints 8 bytes at a time (varint8); it must agree with
// the byte loop (uvarint) on every input: each length, overlong forms, 9-byte and
// unterminated varints, and every position near the end of the buffer.
func TestHeaderVarintFastPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var b []byte
	check := func() {
		for off := 0; off <= len(b); off++ {
			r := hreader{b: b, off: off}
			got := r.u()
			want, n := uvarint(b, off)
			if r.bad != (n == 0) || got != want || !r.bad && r.off != off+n || r.bad && r.off != off {
				t.Fatalf("% x at %d: u() = %d (off %d, bad %v), uvarint = %d, %d", b, off, got, r.off, r.bad, want, n)
			}
		}
	}
	for i := 0; i < 200000; i++ {
		b = b[:0]
		switch rng.IntN(3) {
		case 0: // encoded values of every size, back to back
			for k := rng.IntN(4); k >= 0; k-- {
				b = appendUvarint(b, rng.Uint64()>>rng.IntN(64))
			}
		case 1: // random bytes, mostly with the continuation bit
			for k := rng.IntN(20); k >= 0; k-- {
				c := byte(rng.IntN(256))
				if rng.IntN(4) > 0 {
					c |= 0x80
				}
				b = append(b, c)
			}
		default: // overlong forms: a 0 last byte after others
			for k := rng.IntN(10); k > 0; k-- {
				b = append(b, 0x80|byte(rng.IntN(128)))
			}
			b = append(b, 0, byte(rng.IntN(256)), byte(rng.IntN(256)))
		}
		check()
	}
}

// encodeDomain writes a new event of tier-1 hits with appendSingle, without the
// 17-slot scan of appendEvent: the bytes must be appendEvent's.
func TestSingleEventFastPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 100000; i++ {
		d := rng.Int64N(1 << uint(rng.IntN(54)))
		cnt := int64(1)
		if rng.IntN(2) == 0 {
			cnt = 1 + rng.Int64N(1<<uint(rng.IntN(47)))
			cnt = min(cnt, MaxStoredCount)
		}
		j := 0
		if rng.IntN(4) == 0 {
			j = rng.IntN(Slots)
		}
		var s [Slots]int64
		s[j] = cnt
		want := appendEvent(nil, d, &s)
		if got := appendSingle(nil, d, j, cnt); string(got) != string(want) {
			t.Fatalf("d=%d slot %d count %d: % x, appendEvent % x", d, j, cnt, got, want)
		}
	}
}

// The cursor walks read events with evCount, which keeps one count: on any bytes it
// must return readEvent's next offset, step and fault, and the count slotCount gives.
func TestEventCountReader(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var b []byte
	for i := 0; i < 300000; i++ {
		b = b[:0]
		switch rng.IntN(3) {
		case 0: // valid events of every form
			for k := rng.IntN(3); k >= 0; k-- {
				var s [Slots]int64
				for n := 1 + rng.IntN(3); n > 0; n-- {
					s[rng.IntN(Slots)] = 1 + rng.Int64N(1<<uint(rng.IntN(47)))
				}
				b = appendEvent(b, rng.Int64N(1<<uint(rng.IntN(54))), &s)
			}
		default: // random bytes of each form
			for k := 1 + rng.IntN(12); k > 0; k-- {
				b = append(b, byte(rng.IntN(256)))
			}
			b[0] = 0x40 | byte(rng.IntN(64))
			if rng.IntN(4) == 0 {
				b[0] = byte(rng.IntN(256))
			}
		}
		end := len(b)
		if rng.IntN(4) == 0 {
			end = rng.IntN(len(b) + 1)
		}
		for off := 0; off <= end; off++ {
			var e event
			wn, wd, wf := readEvent(b, off, end, &e)
			for j := -1; j < Slots; j++ {
				n, d, c, f := evCount(b, off, end, j)
				want := int64(0)
				if wf == faultNone {
					want = e.slotCount(j)
				}
				if n != wn || d != wd || f != wf || c != want {
					t.Fatalf("% x [%d:%d] slot %d: evCount = %d, %d, %d, %v; readEvent %d, %d, %d, %v", b, off, end, j, n, d, c, f, wn, wd, want, wf)
				}
			}
		}
	}
}

// advanceRef is the cursor walk as it was written with the event walker (evWalk and
// readEvent), the reference for advance's inline fast paths.
func (v *view) advanceRef(cu *cursor, j int, lower int64) fault {
	if cu.off >= v.end || (cu.ts >= lower && j < 0) {
		return faultNone
	}
	var w evWalk
	if f := w.at(v, cu.off, cu.ts); f != faultNone {
		return f
	}
	var f fault
	for {
		c := w.e.slotCount(j)
		if w.ts >= lower && c != 0 {
			break
		}
		cu.sum -= c
		if !w.step(&f) {
			if f != faultNone {
				return f
			}
			break
		}
	}
	if cu.sum < 0 || w.ts > v.last {
		return faultSum
	}
	cu.off, cu.ts = w.off, w.ts
	if cu.off >= v.end {
		cu.off, cu.ts = v.end, 0
		if cu.sum != 0 {
			return faultSum
		}
	}
	return faultNone
}

// advance must move a cursor exactly as advanceRef does, and fail the same way, on
// valid logs of every event form and on logs with damaged bytes.
func TestAdvanceFastPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 20000; i++ {
		v := &Value{Kind: KindDomain}
		nt := 1 + rng.IntN(4)
		for j := 0; j < nt; j++ {
			v.Tiers = append(v.Tiers, StoredTier{Tier: Tier{Limit: 10, Window: 1000, Active: 1000}})
		}
		ts := int64(rng.IntN(1000))
		for k := 1 + rng.IntN(30); k > 0; k-- {
			var e Event
			switch rng.IntN(4) {
			case 0:
				ts += 1 + rng.Int64N(63)
			case 1:
				ts += 1 + rng.Int64N(40000)
			default:
				ts += 1 + rng.Int64N(1<<uint(rng.IntN(30)))
			}
			e.At = ts
			for n := 1 + rng.IntN(2); n > 0; n-- {
				s := rng.IntN(nt + 1)
				if s == nt {
					s = Detached
				}
				e.Counts[s] = 1 + rng.Int64N(1<<uint(rng.IntN(8)))
			}
			if rng.IntN(3) == 0 {
				e.Counts = [Slots]int64{1}
			}
			v.Events = append(v.Events, e)
		}
		v.Last = ts
		b, err := Encode(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		var pv view
		if err := parseView(b, &pv); err != nil {
			t.Fatal(err)
		}
		// Damage a few log bytes: advance must still agree with the reference.
		if rng.IntN(2) == 0 {
			for k := 1 + rng.IntN(3); k > 0; k-- {
				o := 1 + rng.IntN(pv.end-1)
				pv.b[o] = byte(rng.IntN(256))
				if rng.IntN(2) == 0 { // a step of 0 in each form
					pv.b[o] = []byte{0x00, 0x80, 0x40, 0x50, 0x60}[rng.IntN(5)]
					if o+1 < pv.end {
						pv.b[o+1] = []byte{0x00, 0x80, 0x02}[rng.IntN(3)]
					}
				}
			}
		}
		for k := 0; k < 8; k++ {
			j := rng.IntN(nt+1) - 1
			cu := pv.sec
			if j >= 0 {
				cu = pv.tiers[j].cu
			}
			lower := v.Events[0].At + rng.Int64N(ts-v.Events[0].At+2)
			got, want := cu, cu
			gf, wf := pv.advance(&got, j, lower), pv.advanceRef(&want, j, lower)
			if got != want || gf != wf {
				t.Fatalf("% x slot %d lower %d from %+v: %+v %v, reference %+v %v", b, j, lower, cu, got, gf, want, wf)
			}
		}
	}
}

// parseHeaderFast must accept only headers parseHeaderSlow accepts, and read them the
// same way: on values Apply wrote (1-5 tiers, domain and global keys), and on the same
// values with damaged or resized header bytes.
func TestHeaderFastPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var vals [][]byte
	for _, spec := range []string{
		"MAX 1 TIER 10 1000 1000 0",
		"MAX 3 MIN 1 HARD 100 GLOBAL g 1000 TIER 5 1000 1000 0 TIER 50 5000 5000 15000 SKIPPABLE TIER 1 15000 15000 0",
		"MAX 2 TIER 10 1000 1000 0 TIER 50 5000 5000 15000 TIER 1000 60000 60000 600000 TIER 1 1 1 1",
		"MAX 1 TIER 1 100 100 0 TIER 1 200 200 0 TIER 1 300 300 0 TIER 1 400 400 0 TIER 1000000000000 315360000000 315360000000 315360000000",
		// Version 3: caps (exact and bucketed, per domain and global), ONCE tokens.
		"MAX 1 LIMITS 10/1s;5/500ms,100/1m,1000/1h",
		"MAX 2 GLOBAL g 1000/1s,50/10s,5000/1d LIMITS 10/1s,50/5s/5s/15s",
		"MAX 1 ONCE %d LIMITS 1000/1s;5000/200ms,100000/1m",
		"MAX 1 ONCE %d CAP 10 300 CAP 20 400 CAP 30 500 CAP 40 600 CAP 50 700 CAP 60 2000 CAP 70 3000 CAP 80 4000 TIER 1000 1000 1000 0",
	} {
		var req Request
		if err := ParseRequest(words(strings.ReplaceAll(spec, "%d", "0")), &req); err != nil {
			t.Fatal(err)
		}
		var val, gval []byte
		now := int64(1_700_000_000_000)
		for i := 0; i < 300; i++ {
			if strings.Contains(spec, "%d") {
				if err := ParseRequest(words(strings.ReplaceAll(spec, "%d", strconv.Itoa(i))), &req); err != nil {
					t.Fatal(err)
				}
			}
			now += rng.Int64N(700)
			_, nv, ngv, err := Apply(val, gval, &req, now, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if nv != nil {
				val = append([]byte(nil), nv...)
				vals = append(vals, val)
			}
			if ngv != nil {
				gval = append([]byte(nil), ngv...)
				vals = append(vals, gval)
			}
		}
	}
	check := func(b []byte) {
		var fast, slow view
		ok := parseHeaderFast(b, &fast)
		err := parseHeaderSlow(b, &slow)
		same := len(fast.b) == len(slow.b) && (len(b) == 0 || &fast.b[0] == &slow.b[0])
		fast.b, slow.b = nil, nil
		if ok && (err != nil || !same || !reflect.DeepEqual(fast, slow)) {
			t.Fatalf("% x: fast accepts, slow %v\nfast %+v\nslow %+v", b, err, fast, slow)
		}
	}
	for _, v := range vals {
		var fast, slow view
		if err := parseHeaderSlow(v, &slow); err != nil {
			t.Fatal(err)
		}
		if !parseHeaderFast(v, &fast) && slow.n <= smallTiers {
			t.Fatalf("% x: parseHeaderFast refuses a valid header of %d tiers", v, slow.n)
		}
		checkPutHeader(t, v, &slow)
		check(v)
		for k := 0; k < 20; k++ {
			b := append([]byte(nil), v...)
			lim, hl := trailer(b)
			end := lim - hl
			switch rng.IntN(4) {
			case 0: // one header byte
				b[end+rng.IntN(hl)] = byte(rng.IntN(256))
			case 1: // one header byte, a small value
				b[end+rng.IntN(hl)] = byte(rng.IntN(4))
			case 2: // a byte in or out of the header, with the trailer adjusted
				o := end + rng.IntN(hl+1)
				if rng.IntN(2) == 0 && o < lim {
					b = append(b[:o], b[o+1:]...)
					hl--
				} else {
					b = append(b[:o], append([]byte{byte(rng.IntN(256))}, b[o:]...)...)
					hl++
				}
				b = appendTrailer(b[:end+hl], hl)
			default: // the trailer
				b[len(b)-1] = byte(rng.IntN(256))
			}
			check(b)
		}
	}
}

// The same on headers built field by field from values at and around every bound
// (and varints of 9 and 10 bytes), where random damage rarely lands.
func TestHeaderFastPathBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	accepted := 0
	for i := 0; i < 300000; i++ {
		end := 2 + rng.IntN(40)
		last := uint64(rng.Int64N(1 << 41))
		if rng.IntN(8) == 0 {
			last = MaxAt - 1 + uint64(rng.IntN(3))
		}
		upto := func(x uint64) uint64 { return rng.Uint64N(min(x, 1<<62) + 1) }
		pick := func(vals ...uint64) uint64 {
			if rng.IntN(12) == 0 {
				return []uint64{1<<63 - 1, 1 << 63, 1<<56 - 1, 1 << 56, MaxAt + 1}[rng.IntN(5)]
			}
			x := vals[rng.IntN(len(vals))]
			if rng.IntN(6) == 0 {
				x += uint64(rng.IntN(3)) - 1
			}
			return x
		}
		start := pick(1, uint64(end-1), uint64(1+rng.IntN(end-1)))
		live := uint64(end) - min(start, uint64(end))
		back := pick(0, last, upto(last))
		f := []uint64{pick(1, 2, 3), last, start, back, pick(1, live, 1+uint64(rng.IntN(int(live)+1)))}
		cur := func() {
			rel := pick(0, live, uint64(rng.IntN(int(live)+1)))
			if rel == live && rng.IntN(2) == 0 {
				f = append(f, rel, 0, 0)
				return
			}
			f = append(f, rel, pick(0, back, upto(back)), pick(0, hitSumCap, uint64(rng.IntN(100))))
		}
		cur()
		if f[0] != uint64(KindGlobal) {
			nt := pick(1, smallTiers, uint64(1+rng.IntN(smallTiers)), MaxTiers)
			f = append(f, pick(0, last+1, uint64(rng.Int64N(int64(last)+2))), nt)
			for j := 0; j < int(min(nt, MaxTiers+1)); j++ {
				flags := pick(0, 1, 2, 3)
				f = append(f, pick(0, MaxCount), pick(1, MaxDuration), pick(1, MaxDuration), pick(0, MaxDuration), flags)
				if flags&flagEnter != 0 {
					f = append(f, pick(0, last))
				}
				cur()
			}
		}
		b := make([]byte, end)
		b[0] = encV2
		for _, x := range f {
			if x >= 1<<63 { // a 10-byte varint
				b = append(b, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01)
				continue
			}
			b = appendUvarint(b, x)
		}
		if rng.IntN(20) == 0 {
			b = append(b, byte(rng.IntN(256)))
		}
		b = appendTrailer(b, len(b)-end)
		var fast, slow view
		ok := parseHeaderFast(b, &fast)
		err := parseHeaderSlow(b, &slow)
		fast.b, slow.b = nil, nil
		if ok && (err != nil || !reflect.DeepEqual(fast, slow)) {
			t.Fatalf("% x: fast accepts, slow %v\nfast %+v\nslow %+v", b, err, fast, slow)
		}
		if err == nil && slow.n <= smallTiers && !ok {
			t.Fatalf("% x: parseHeaderFast refuses a valid header", b)
		}
		if err == nil {
			checkPutHeader(t, b, &slow)
		}
		if ok {
			accepted++
		}
	}
	if accepted < 1000 {
		t.Fatalf("only %d valid headers generated", accepted)
	}
}

// checkPutHeader writes v, read from the valid value b, back with putHeader into
// buffers too short, exact and longer, and with appendHeader: the header and trailer
// are b's, written only where they fit.
func checkPutHeader(t *testing.T, b []byte, v *view) {
	t.Helper()
	lim, hl := trailer(b)
	want := b[lim-hl:]
	if n := headerSize(v); n != hl || n+trailerSize(n) != len(want) {
		t.Fatalf("% x: headerSize %d, want %d", b, n, hl)
	}
	if got := appendHeader([]byte{1, 2}, v); !bytes.Equal(got[2:], want) || got[0] != 1 || got[1] != 2 {
		t.Fatalf("% x: appendHeader gives % x", b, got)
	}
	const off = 3
	for extra := -4; extra <= 9; extra++ {
		if len(want)+extra < 0 {
			continue
		}
		buf := bytes.Repeat([]byte{0xa5}, off+len(want)+extra)
		end, ok := putHeader(buf, off, v)
		if ok != (extra >= 0) {
			t.Fatalf("% x: putHeader into %d bytes: ok %v", b, len(want)+extra, ok)
		}
		if !bytes.Equal(buf[:off], []byte{0xa5, 0xa5, 0xa5}) {
			t.Fatalf("% x: putHeader wrote before its offset", b)
		}
		if ok && (end != off+len(want) || !bytes.Equal(buf[off:end], want)) {
			t.Fatalf("% x: putHeader gives % x (end %d)", b, buf[off:], end)
		}
	}
}
