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
