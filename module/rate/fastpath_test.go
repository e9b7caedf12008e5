package rate

import (
	"math/rand/v2"
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
