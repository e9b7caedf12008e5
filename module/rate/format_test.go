package rate

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// grow runs requests at the given offsets and returns the key's final value.
func grow(t testing.TB, cfg string, offsets []int64, args string) []byte {
	var req Request
	var val []byte
	for _, off := range offsets {
		if err := ParseRequest(words(args+" "+cfg+" AT "+strconv.FormatInt(base+off, 10)), &req); err != nil {
			t.Fatal(err)
		}
		res, nv, _, err := Apply(val, nil, &req, req.At, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Write {
			t.Fatalf("rejected at %d: %v", off, res.Fields)
		}
		val = nv
	}
	return val
}

func TestValueSize(t *testing.T) {
	// 100 hits at 100 distinct ms inside one 60 s window.
	offs := make([]int64, 100)
	for i := range offs {
		offs[i] = int64(i) * 590
	}
	v := grow(t, "TIER 100 60000 60000 0", offs, "")
	t.Logf("1 tier, 100 hits at 100 distinct ms (590 ms apart): %d bytes", len(v))
	if len(v) > 400 {
		t.Fatalf("100-hit value is %d bytes, budget 400", len(v))
	}
	// 1000 hits at 1000 distinct, nearly consecutive ms.
	offs = make([]int64, 1000)
	for i := 1; i < len(offs); i++ {
		offs[i] = offs[i-1] + 1 + int64(i%3)
	}
	v = grow(t, "TIER 1000 60000 60000 0", offs, "")
	t.Logf("1 tier, 1000 hits at 1000 distinct ms (1-3 ms apart): %d bytes", len(v))
	if len(v) > 2900 {
		t.Fatalf("1000-hit value is %d bytes, budget 2900", len(v))
	}
	// 1000 hits spread over 59.9 s: every step still fits one byte.
	for i := range offs {
		offs[i] = int64(i) * 59
	}
	v = grow(t, "TIER 1000 60000 60000 0", offs, "")
	t.Logf("1 tier, 1000 hits 59 ms apart: %d bytes", len(v))
	if len(v) > 2900 {
		t.Fatalf("spread 1000-hit value is %d bytes", len(v))
	}
	// Hits do not cost memory, distinct times do.
	v1 := grow(t, "TIER 1000000 60000 60000 0", []int64{0, 1, 2}, "MAX 2")
	v2 := grow(t, "TIER 1000000 60000 60000 0", []int64{0, 1, 2}, "MAX 3")
	if len(v2) != len(v1) {
		t.Fatalf("sizes %d %d", len(v1), len(v2))
	}
}

func TestRoundTrip(t *testing.T) {
	v := grow(t, "TIER 1 1000 1000 0 TIER 0 1000 1000 0 TIER 30 5000 5000 100 SKIPPABLE", []int64{0, 0, 5, 7, 7, 900}, "MAX 2 MIN 1 GLOBAL g 100")
	d, err := Decode(v)
	if err != nil {
		t.Fatal(err)
	}
	if d.Kind != KindDomain || len(d.Tiers) != 3 || !d.Tiers[2].Skippable || d.Last != base+900 {
		t.Fatalf("%+v", d)
	}
	var total int64
	for i := range d.Events {
		total += d.Events[i].Total()
	}
	if total != 12 {
		t.Fatalf("total %d", total)
	}
	enc, err := Encode(nil, d)
	if err != nil {
		t.Fatal(err)
	}
	if d2, err := Decode(enc); err != nil || !d2.equal(d) {
		t.Fatalf("re-encode differs: %v\n%x\n%x", err, enc, v)
	}
	// Encode refuses what the format cannot hold.
	for name, breakIt := range map[string]func(v *Value){
		"hits in a missing tier": func(v *Value) { v.Events[0].Counts[5] = 1 },
		"negative time":          func(v *Value) { v.Events[0].At = -1 },
		"unordered events":       func(v *Value) { v.Events[0].At, v.Events[1].At = v.Events[1].At, v.Events[0].At },
		"event after last":       func(v *Value) { v.Last-- },
		"empty event":            func(v *Value) { v.Events[1].Counts = [Slots]int64{} },
		"negative count":         func(v *Value) { v.Events[0].Counts[0] = -3 },
		"entry after last":       func(v *Value) { v.Tiers[0].EnteredAt = v.Last + 1 },
		"17 tiers":               func(v *Value) { v.Tiers = make([]StoredTier, 17) },
		"window 0":               func(v *Value) { v.Tiers[1].Window = 0 },
		"global with tiers":      func(v *Value) { v.Kind = KindGlobal },
	} {
		c, _ := Decode(v)
		breakIt(c)
		if b, err := Encode([]byte("keep"), c); !errors.Is(err, ErrCorrupt) || string(b) != "keep" {
			t.Errorf("%s: Encode gave %v", name, err)
		}
	}
}

// hand-built values, each breaking one rule of FORMAT.md.
func TestValidateRejects(t *testing.T) {
	// A valid value: version 1, domain, last=1000, 1 tier (L=5 W=100 A=100 C=0, entered
	// at 1000), one event at 1000 with 1 hit in tier 1.
	good := []byte{1, 1, 0xe8, 0x07, 1, 5, 100, 100, 0, 2, 0, 1, 0, 0}
	if err := Validate(good); err != nil {
		t.Fatalf("good: %v", err)
	}
	gglobal := []byte{1, 2, 0xe8, 0x07, 1, 0, 16 << 1}
	if err := Validate(gglobal); err != nil {
		t.Fatalf("global: %v", err)
	}
	set := func(b []byte, i int, v byte) []byte { c := bytes.Clone(b); c[i] = v; return c }
	for name, b := range map[string][]byte{
		"empty":             {},
		"version 2":         set(good, 0, 2),
		"version 0":         set(good, 0, 0),
		"kind 3":            set(good, 1, 3),
		"zero tiers":        set(good, 4, 0),
		"17 tiers":          set(good, 4, 17),
		"limit too big":     {1, 1, 0xe8, 0x07, 1, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 100, 100, 0, 2, 0, 1, 0, 0},
		"window 0":          set(good, 6, 0),
		"active 0":          set(good, 7, 0),
		"flags 4":           set(good, 9, 4),
		"entry before zero": {1, 1, 0xe8, 0x07, 1, 5, 100, 100, 0, 2, 0xe9, 0x07, 1, 0, 0},
		"no events":         set(good, 11, 0),
		"too many events":   set(good, 11, 2),
		"event before zero": {1, 1, 0xe8, 0x07, 1, 5, 100, 100, 0, 2, 0, 1, 0xe9, 0x07, 0},
		"newest mismatch":   set(good, 12, 1),
		"missing tier":      set(good, 13, 2<<1),
		"slot 17":           set(good, 13, 17<<1),
		"trailing":          append(bytes.Clone(good), 0),
		"truncated":         good[:len(good)-1],
		"overlong varint":   {1, 1, 0xe8, 0x87, 0x00, 1, 5, 100, 100, 0, 2, 0, 1, 0, 0},
		"last above 2^53":   {1, 1, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 5, 100, 100, 0, 0, 1, 0, 0},
		"global with tier":  set(gglobal, 6, 0),
		"untrimmed multi":   {1, 2, 0xe8, 0x07, 1, 0, 15<<1 | 1, 0, 1},
		"multi past slot":   {1, 1, 0xe8, 0x07, 1, 5, 100, 100, 0, 2, 0, 1, 0, 15<<1 | 1 | 1<<6, 1, 0, 1},
		"ten-byte varint":   {1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
	} {
		if err := Validate(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Validate(%x) = %v", name, b, err)
		}
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: Decode accepted", name)
		}
	}
	if err := Validate(set(good, 0, 9)); err == nil || !strings.Contains(err.Error(), "unknown encoding version 9") {
		t.Fatalf("version error text: %v", err)
	}
}

// Every truncation of a valid value is invalid; every byte flip is either invalid or
// still canonical.
func TestValidateMutations(t *testing.T) {
	v := grow(t, "TIER 3 1000 1000 0 TIER 5 1000 1000 10 TIER 50 5000 5000 100", []int64{0, 3, 3, 300, 301, 700, 701}, "MAX 2")
	for n := 0; n < len(v); n++ {
		if Validate(v[:n]) == nil {
			t.Fatalf("prefix of %d bytes accepted", n)
		}
	}
	for i := range v {
		for bit := 0; bit < 8; bit++ {
			m := bytes.Clone(v)
			m[i] ^= 1 << bit
			d, err := Decode(m)
			if err != nil {
				continue
			}
			enc, err := Encode(nil, d)
			if err != nil {
				t.Fatalf("flip %d.%d: accepted but does not re-encode: %v", i, bit, err)
			}
			if d2, err := Decode(enc); err != nil || !d2.equal(d) {
				t.Fatalf("flip %d.%d: re-encoding differs", i, bit)
			}
		}
	}
}

func TestUvarint(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 300, 1 << 35, MaxAt, 1<<63 - 1} {
		b := appendUvarint(nil, v)
		got, n := uvarint(b, 0)
		if got != v || n != len(b) {
			t.Errorf("%d: %d %d", v, got, n)
		}
	}
	if _, n := uvarint(appendUvarint(nil, 1<<63), 0); n != 0 {
		t.Error("64-bit varint accepted")
	}
}

func TestAllocs(t *testing.T) {
	args := words("MAX 3 MIN 1 HARD 100 GLOBAL {api} 1000 AT 1234 TIER 5 1000 1000 0 TIER 50 5000 5000 15000 SKIPPABLE TIER 1 15000 15000 0")
	var req Request
	if a := testing.AllocsPerRun(200, func() {
		if err := ParseRequest(args, &req); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("ParseRequest: %v allocs", a)
	}
	if err := ParseRequest(args, &req); err != nil {
		t.Fatal(err)
	}
	// Steady state: values stored in fixed buffers, time moving on, a mix of grants,
	// rejections (retry_after) and bursts.
	val := make([]byte, 0, 1<<14)
	gval := make([]byte, 0, 1<<12)
	out := make([]byte, 0, 1<<14)
	gout := make([]byte, 0, 1<<12)
	now := base
	var grants, retries, nevers int
	step := func() {
		now += 37
		res, nv, ngv, err := Apply(val, gval, &req, now, out, gout)
		if err != nil {
			t.Fatal(err)
		}
		switch ra := res.Fields[FieldRetryAfter]; {
		case res.Write:
			grants++
			val = append(val[:0], nv...)
			gval = append(gval[:0], ngv...)
		case ra > 0:
			retries++
		case ra < 0:
			nevers++
		}
	}
	for i := 0; i < 500; i++ {
		step()
	}
	grants, retries = 0, 0
	if a := testing.AllocsPerRun(2000, step); a != 0 {
		t.Fatalf("Apply: %v allocs", a)
	}
	if grants == 0 || retries == 0 {
		t.Fatalf("the run must mix grants (%d) and rejections with a retry_after (%d)", grants, retries)
	}
	// MIN above what the tiers can ever give: retry_after -1.
	req.Max, req.Min = 1000, 1000
	if a := testing.AllocsPerRun(200, step); a != 0 || nevers == 0 {
		t.Fatalf("Apply rejected for ever: %v allocs, %d rejections", a, nevers)
	}
}

func benchApply(b *testing.B, args string, gap int64) {
	var req Request
	if err := ParseRequest(words(args), &req); err != nil {
		b.Fatal(err)
	}
	val := make([]byte, 0, 1<<14)
	gval := make([]byte, 0, 1<<12)
	out := make([]byte, 0, 1<<14)
	gout := make([]byte, 0, 1<<12)
	now := base
	grants := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now += gap
		res, nv, ngv, err := Apply(val, gval, &req, now, out, gout)
		if err != nil {
			b.Fatal(err)
		}
		if res.Write {
			grants++
			val = append(val[:0], nv...)
			gval = append(gval[:0], ngv...)
		}
	}
	b.ReportMetric(float64(grants)/float64(b.N), "granted/op")
	b.ReportMetric(float64(len(val)), "value-bytes")
}

// Three tiers (simple, penalty, prison), HARD and GLOBAL; a request every 20 ms, so
// the key bursts, gets rejected and recovers over and over.
func BenchmarkApply3Tiers(b *testing.B) {
	benchApply(b, "MAX 1 HARD 100 GLOBAL g 1000 TIER 5 1000 1000 0 TIER 50 5000 5000 15000 TIER 1 15000 15000 0", 20)
}

// One tier with 1000 distinct ms in its window (the large-value case).
func BenchmarkApply1Tier1000Events(b *testing.B) {
	benchApply(b, "MAX 1 TIER 1000000 60000 60000 0", 60)
}

func BenchmarkParseRequest(b *testing.B) {
	args := words("MAX 3 MIN 1 HARD 100 GLOBAL {api} 1000 AT 1234 TIER 5 1000 1000 0 TIER 50 5000 5000 15000 SKIPPABLE TIER 1 15000 15000 0")
	var req Request
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := ParseRequest(args, &req); err != nil {
			b.Fatal(err)
		}
	}
}

// benchGrowth: a key holding n distinct-ms hits in its (10-year) window, one request
// per ms after them, written in place as the glue does: the cost must not depend on n.
func benchGrowth(b *testing.B, n int) {
	v := &Value{Kind: KindDomain, Last: base + int64(n) - 1}
	v.Tiers = []StoredTier{{Tier: Tier{Limit: MaxCount, Window: MaxDuration, Active: MaxDuration}, Entered: true, EnteredAt: base}}
	v.Events = make([]Event, n)
	for i := range v.Events {
		v.Events[i].At = base + int64(i)
		v.Events[i].Counts[0] = 1
	}
	enc, err := Encode(nil, v)
	if err != nil {
		b.Fatal(err)
	}
	var req Request
	if err := ParseRequest(words("MAX 1 TIER 1000000000000 315360000000 315360000000 0"), &req); err != nil {
		b.Fatal(err)
	}
	// The same capacity for any b.N up to 16k, so that runs of different lengths
	// allocate the same (BenchmarkRateInstructions subtracts two runs).
	val := append(make([]byte, 0, len(enc)+max(4*b.N, 1<<16)), enc...)
	now := v.Last
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now++
		res, nv, _, err := ApplyInPlace(val, nil, &req, now, nil, nil)
		if err != nil || !res.Write {
			b.Fatal(err)
		}
		val = nv
	}
}

func BenchmarkApplyGrowth10(b *testing.B)     { benchGrowth(b, 10) }
func BenchmarkApplyGrowth1000(b *testing.B)   { benchGrowth(b, 1000) }
func BenchmarkApplyGrowth100000(b *testing.B) { benchGrowth(b, 100000) }

// growthCaps are the 8 caps of the caps growth case: one exact, seven in buckets, none
// ever binding.
const growthCaps = "1000000000/500ms,1000000000/2s,1000000000/10s,1000000000/1m,1000000000/10m,1000000000/1h,1000000000/6h,1000000000/1d"

// benchGrowthCaps: a key with 8 caps holding n hits spread over the longest cap's
// window (a day), one request per ms after them: the cost must not depend on n.
func benchGrowthCaps(b *testing.B, n int) {
	var req Request
	if err := ParseRequest(words("MAX 1 LIMITS 1000000000000/1s;"+growthCaps), &req); err != nil {
		b.Fatal(err)
	}
	last := base + 86_400_000
	v := &Value{Kind: KindDomain, Last: last}
	v.Tiers = []StoredTier{{Tier: req.Tiers[0], Entered: true, EnteredAt: last}}
	step := int64(86_400_000 / n)
	var times []int64
	for i := n - 1; i >= 0; i-- {
		times = append(times, last-int64(i)*step)
	}
	for _, ts := range times {
		if ts >= last-1000 {
			ev := Event{At: ts}
			ev.Counts[0] = 1
			if ts != last {
				ev.Counts[0], ev.Counts[Detached] = 0, 1 // before the tier's entry
			}
			v.Events = append(v.Events, ev)
		}
	}
	for _, c := range req.Caps[:req.NCaps] {
		sc := StoredCap{Cap: c}
		if g := bucketMs(c.Window); g > 1 {
			for _, ts := range times {
				if floorDiv(ts, g) < floorDiv(last-c.Window, g) {
					continue
				}
				if k := len(sc.Buckets); k > 0 && sc.Buckets[k-1].Index == floorDiv(ts, g) {
					sc.Buckets[k-1].Count++
				} else {
					sc.Buckets = append(sc.Buckets, Bucket{Index: floorDiv(ts, g), Count: 1})
				}
			}
		}
		v.Caps = append(v.Caps, sc)
	}
	enc, err := Encode(nil, v)
	if err != nil {
		b.Fatal(err)
	}
	val := append(make([]byte, 0, 4*len(enc)+(1<<16)), enc...)
	out := make([]byte, 0, cap(val))
	now := last
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now++
		res, nv, _, err := ApplyInPlace(val, nil, &req, now, out, nil)
		if err != nil || !res.Write {
			b.Fatal(err)
		}
		if &nv[0] != &val[0] {
			// Rewritten into out: swap the buffers, as the glue's scratch and block.
			val, out = nv, val[:0]
		} else {
			val = nv
		}
	}
}

func BenchmarkApplyGrowthCaps10(b *testing.B)     { benchGrowthCaps(b, 10) }
func BenchmarkApplyGrowthCaps100000(b *testing.B) { benchGrowthCaps(b, 100000) }
