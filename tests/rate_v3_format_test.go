//go:build integration

package tests

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/tests/harness"
)

// Version 3 of the rate value (module/rate/FORMAT.md, "Version 3"), built byte by
// byte from the format's description: the C check that CHARON.LOADVALUE, RESTORE and
// rdb_load run accepts the valid values and refuses each broken variant, as Go's
// rate.Validate does.

// v3Tok is a token slot: 8 little-endian u64 words.
type v3Tok [8]uint64

// v3Token is a non-empty slot holding hash h, granted at t0 (tier 1, 5 granted).
func v3Token(h, t0 uint64) v3Tok {
	return v3Tok{h, t0 | 1<<53, 5, 100, 5, 5, 0, 60_000}
}

// v3Cap is a stored cap: exact (window < 1000: a cursor) or bucketed (a region).
type v3Cap struct {
	limit, window   uint64
	cursor          [3]uint64 // exact: off - start, last - time, sum
	region          []byte    // bucketed: the dead front, then the live entries
	spare           []byte    // bucketed: the spare room after them (zeros when valid)
	dead, span, sum uint64
	lenAdd          uint64 // added to the region's length in the header
}

// v3Val is a value laid out as FORMAT.md says; bytes() writes it.
type v3Val struct {
	ver    byte
	noExt  bool // write no header extension (version 2's header)
	kind   byte
	last   uint64
	log    []byte // the whole log: deadLog dead bytes, then the live events
	dead   int
	first  uint64 // last - the first live event's time
	newest uint64 // the newest event's length
	sec    [3]uint64
	domain []uint64 // domain keys: t1, ntiers, then each tier's fields (all varints)

	ntok, occ, tnew uint64
	tbuilt          uint64  // last - when the table was rebuilt
	table           []v3Tok // ntok slots
	ncaps           int     // -1: len(caps)
	caps            []v3Cap
}

func (v *v3Val) clone() *v3Val {
	w := *v
	w.log = bytes.Clone(v.log)
	w.domain = append([]uint64(nil), v.domain...)
	w.table = append([]v3Tok(nil), v.table...)
	w.caps = append([]v3Cap(nil), v.caps...)
	for i := range w.caps {
		w.caps[i].region = bytes.Clone(v.caps[i].region)
		w.caps[i].spare = bytes.Clone(v.caps[i].spare)
	}
	return &w
}

func (v *v3Val) bytes() []byte {
	b := []byte{v.ver}
	for _, s := range v.table {
		for _, w := range s {
			b = binary.LittleEndian.AppendUint64(b, w)
		}
	}
	for _, c := range v.caps {
		if c.window > 1000 {
			b = append(append(b, c.region...), c.spare...)
		}
	}
	start := len(b) + v.dead
	b = append(b, v.log...)
	end := len(b)
	u := binary.AppendUvarint
	if !v.noExt {
		b = u(b, v.ntok)
		if v.ntok > 0 {
			b = u(u(u(b, v.occ), v.tnew), v.tbuilt)
		}
		n := v.ncaps
		if n < 0 {
			n = len(v.caps)
		}
		b = append(b, byte(n))
		for _, c := range v.caps {
			b = u(u(b, c.limit), c.window)
			if c.window < 1000 {
				b = u(u(u(b, c.cursor[0]), c.cursor[1]), c.cursor[2])
				continue
			}
			b = u(u(u(u(u(b, uint64(len(c.region))+c.lenAdd), uint64(len(c.spare))), c.dead), c.span), c.sum)
		}
	}
	b = append(b, v.kind)
	b = u(u(u(u(b, v.last), uint64(start)), v.first), v.newest)
	b = u(u(u(b, v.sec[0]), v.sec[1]), v.sec[2])
	for _, x := range v.domain {
		b = u(b, x)
	}
	if hl := len(b) - end; hl < 0xff {
		b = append(b, byte(hl))
	} else {
		b = append(b, byte(hl), byte(hl>>8), 0xff)
	}
	return b
}

// v3Buckets lays out a bucket log for hits at times ts (counts cnt, ts ascending) for
// a cap with bucket length g: (step, count) entries, the first one's step firstStep
// (not read). It returns the entries and the span (newest - first bucket).
func v3Buckets(ts, cnt []uint64, g, firstStep uint64) (entries []byte, span, sum uint64) {
	var bk, c []uint64
	for i, t := range ts {
		b := t / g
		if len(bk) > 0 && bk[len(bk)-1] == b {
			c[len(c)-1] += cnt[i]
		} else {
			bk, c = append(bk, b), append(c, cnt[i])
		}
		sum += cnt[i]
	}
	for i := range bk {
		step := firstStep
		if i > 0 {
			step = bk[i] - bk[i-1]
		}
		entries = binary.AppendUvarint(binary.AppendUvarint(entries, step), c[i])
	}
	return entries, bk[len(bk)-1] - bk[0], sum
}

// v3Last: the newest time of the sample values, a multiple of 60,000 ms.
const v3Last = 1_700_000_040_000

// v3Domain is a domain key with one tier (L=10, W=A=60000), events at last-900 (1
// hit), last-500 (1) and last (3) after a 3-byte dead front; two exact caps (600 ms
// and 100 ms), two bucketed caps (1 min, g=60; 1 h, g=3600) and a 4-slot token table
// holding two tokens whose home is slot 1.
func v3Domain() *v3Val {
	last := uint64(v3Last)
	ts, cnt := []uint64{last - 900, last - 500, last}, []uint64{1, 1, 3}
	v := &v3Val{
		ver: 3, kind: 1, last: last, ncaps: -1,
		// dead front; one hit (first, step not read); one hit 400 ms later (2-byte
		// form); 3 hits in slot 0 500 ms later (single-slot form, step 15 + 485).
		log:    []byte{5, 5, 5, 0x00, 0x81, 0x90, 0x5f, 0xe5, 0x03, 0x40},
		dead:   3,
		first:  900,
		newest: 4,
		sec:    [3]uint64{0, 900, 5},
		// t1 = last - newest tier-1 hit + 1; one tier: limit, window, active,
		// cooldown, flags, cursor (off, time - first, sum of slot 0).
		domain: []uint64{1, 1, 10, 60_000, 60_000, 0, 0, 0, 0, 5},
		ntok:   4, occ: 2, tnew: 0, tbuilt: 900,
		table: []v3Tok{{}, v3Token(0x1001, last-500), v3Token(0x2001, last), {}},
	}
	minute, mspan, msum := v3Buckets(ts, cnt, 60, 7)
	hour, hspan, hsum := v3Buckets(ts, cnt, 3600, 1)
	v.caps = []v3Cap{
		{limit: 50, window: 600, cursor: [3]uint64{1, 500, 4}},
		{limit: 100, window: 60_000, region: append([]byte{1, 1}, minute...), dead: 2, span: mspan, sum: msum},
		{limit: 3, window: 100, cursor: [3]uint64{3, 0, 3}},
		{limit: 1000, window: 3_600_000, region: hour, span: hspan, sum: hsum},
	}
	return v
}

// v3Global is a global key (2 hits at last in the detached slot) with an exact cap,
// a bucketed cap and no token table.
func v3Global() *v3Val {
	last := uint64(v3Last)
	day, span, sum := v3Buckets([]uint64{last}, []uint64{2}, 86_400, 1)
	return &v3Val{
		ver: 3, kind: 2, last: last, ncaps: -1,
		log: []byte{0x50, 0x30}, first: 0, newest: 2, sec: [3]uint64{0, 0, 2},
		caps: []v3Cap{
			{limit: 7, window: 500, cursor: [3]uint64{0, 0, 2}},
			{limit: 1_000_000, window: 86_400_000, region: day, span: span, sum: sum},
		},
	}
}

// v3TokensOnly is a domain key (one hit at last) with a full 1-slot token table and
// no caps.
func v3TokensOnly() *v3Val {
	last := uint64(v3Last)
	return &v3Val{
		ver: 3, kind: 1, last: last, ncaps: -1,
		log: []byte{0x00}, newest: 1, sec: [3]uint64{0, 0, 1},
		domain: []uint64{1, 1, 10, 60_000, 60_000, 0, 0, 0, 0, 1},
		ntok:   1, occ: 1, tnew: 7, tbuilt: 7,
		table: []v3Tok{v3Token(0xdeadbeef, last-7)},
	}
}

// v3Table replaces v's token table with ntok slots holding the given (slot, h) pairs.
func v3Table(v *v3Val, ntok uint64, slots map[int]uint64) {
	v.ntok, v.occ, v.tnew, v.tbuilt = ntok, uint64(len(slots)), 0, 0
	v.table = make([]v3Tok, ntok)
	for i, h := range slots {
		v.table[i] = v3Token(h, v.last)
	}
}

func TestRateV3FormatCheck(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{Config: []string{"rdbcompression no"}})
	c := s.Client(t)
	ctx := context.Background()
	// A real key gives the module type id (with the registered encver) for RESTORE.
	rtRate(t, c, 3, rtCmd("rl:{v3}:real", rtNow()+3_600_000, "MAX", "1", "TIER", "5", "1000", "1000", "0")...)
	_, real := rtDumpOf(t, c, "rl:{v3}:real")
	require.Equal(t, uint64(3), real.id&1023, "the type registers encoding version 3")

	load := func(val []byte) error {
		return c.Do(ctx, "CHARON.LOADVALUE", "rl:{v3}:t", string(val)).Err()
	}
	restore := func(val []byte) error {
		if err := c.Del(ctx, "rl:{v3}:r").Err(); err != nil {
			return err
		}
		return c.Restore(ctx, "rl:{v3}:r", 0, string(rtBuildDump(real.id, val, real.ver))).Err()
	}
	accepts := func(what string, v *v3Val) {
		t.Helper()
		b := v.bytes()
		require.NoError(t, rate.Validate(b), "%s: Go's Validate", what)
		require.NoError(t, load(b), "%s: LOADVALUE % x", what, b)
		require.NoError(t, restore(b), "%s: RESTORE % x", what, b)
		require.Equal(t, b, rtValueOf(t, c, "rl:{v3}:r"), what)
	}
	refuses := func(what string, v *v3Val) {
		t.Helper()
		b := v.bytes()
		require.Error(t, rate.Validate(b), "%s: Go's Validate accepts % x", what, b)
		err := load(b)
		require.Error(t, err, "%s: LOADVALUE accepted % x", what, b)
		require.True(t, strings.HasPrefix(err.Error(), "ERR payload:"), "%s: %v", what, err)
		err = restore(b)
		require.Error(t, err, "%s: RESTORE accepted % x", what, b)
		require.True(t, strings.HasPrefix(err.Error(), "ERR Bad data format"), "%s: %v", what, err)
	}

	bases := map[string]func() *v3Val{"domain": v3Domain, "global": v3Global, "tokens only": v3TokensOnly}
	for name, mk := range bases {
		accepts(name, mk())
		// Every cut of a valid value is refused.
		b := mk().bytes()
		for n := 0; n < len(b); n++ {
			require.Error(t, load(b[:n]), "%s cut at %d", name, n)
		}
	}

	// Valid shapes beyond the samples.
	ok := map[string]func(v *v3Val){
		"caps only, no table":       func(v *v3Val) { v.ntok, v.occ, v.tnew, v.table = 0, 0, 0, nil },
		"table only, no caps":       func(v *v3Val) { v.caps = nil },
		"first step any value":      func(v *v3Val) { v.caps[3].region[0] = 0x7f },
		"a 300-byte dead log front": func(v *v3Val) { v.dead, v.log = 300, append(bytes.Repeat([]byte{9}, 297), v.log...) },
		"16 tiers: a u16 trailer": func(v *v3Val) {
			// Tiers 2..16 inactive: cursors past the newest event (7 bytes of live log).
			v.domain[1] = 16
			for range 15 {
				v.domain = append(v.domain, 1e12, 60_000, 60_000, 0, 0, 7, 0, 0)
			}
			require.Equal(t, byte(0xff), v.bytes()[len(v.bytes())-1])
		},
		"full table of 4, wraps": func(v *v3Val) { v3Table(v, 4, map[int]uint64{3: 0x13, 0: 0x23, 1: 0x33, 2: 0x42}) },
		"chain wraps past the end": func(v *v3Val) {
			v3Table(v, 8, map[int]uint64{6: 0x16, 7: 0x26, 0: 0x37, 1: 0x40, 3: 0x43})
		},
		"expired tokens count in occ": func(v *v3Val) {
			v.table[1][1] = (v.last - 50_000) | 1<<53
		},
		"every token field at its bound": func(v *v3Val) {
			v.table[1] = v3Tok{^uint64(0) - 2, v.last | 16<<53 | 7<<58, 1e12, 1e12, 1<<62 - 1, 1<<62 - 1, 1<<62 - 1, 1 << 53}
		},
		"first live bucket at the window's bound": func(v *v3Val) {
			// 1-min cap: buckets last/60 - 1000 .. last/60.
			e := binary.AppendUvarint(binary.AppendUvarint(nil, 1), 1)
			e = binary.AppendUvarint(binary.AppendUvarint(e, 1000), 4)
			v.caps[1].region, v.caps[1].dead, v.caps[1].span, v.caps[1].sum = e, 0, 1000, 5
		},
		"window 1001 (g = 2)": func(v *v3Val) { v3Rebucket(v, 3, 1001) },
		"window 999 (exact)":  func(v *v3Val) { v.caps[2].window = 999 },
		"window 10 years":     func(v *v3Val) { v3Rebucket(v, 3, 315_360_000_000) },
		"eight caps": func(v *v3Val) {
			for w := uint64(1); len(v.caps) < 8; w++ {
				v.caps = append(v.caps, v3Cap{limit: w, window: 900 + w, cursor: [3]uint64{0, 900, 5}})
			}
		},
	}
	for name, f := range ok {
		v := v3Domain()
		f(v)
		accepts(name, v)
	}

	// Broken variants of the domain sample, each refused.
	bad := map[string]func(v *v3Val){
		"version 3 without an extension":    func(v *v3Val) { v.noExt = true },
		"version 2 with an extension":       func(v *v3Val) { v.ver = 2 },
		"version 4":                         func(v *v3Val) { v.ver = 4 },
		"ntok not a power of two":           func(v *v3Val) { v.ntok, v.table = 3, v.table[:3] },
		"ntok above 2^19":                   func(v *v3Val) { v.ntok = 1 << 20 },
		"ntok past the value":               func(v *v3Val) { v.ntok = 1 << 19 },
		"ntok 8, table of 4 (log inside)":   func(v *v3Val) { v.ntok = 8 },
		"occ 0":                             func(v *v3Val) { v.occ = 0 },
		"occ above ntok":                    func(v *v3Val) { v.occ = 5 },
		"occ one short":                     func(v *v3Val) { v.occ = 1 },
		"occ one over":                      func(v *v3Val) { v.occ = 3 },
		"tnew off by one":                   func(v *v3Val) { v.tnew = 1 },
		"tnew past last":                    func(v *v3Val) { v.tnew = v.last + 1 },
		"tbuilt past last":                  func(v *v3Val) { v.tbuilt = v.last + 1 },
		"no tbuilt":                         func(v *v3Val) { v.tbuilt = 1 << 60 },
		"empty slot with a byte":            func(v *v3Val) { v.table[0][7] = 1 },
		"empty slot with a t0":              func(v *v3Val) { v.table[3][1] = 5 },
		"h 0 in a used slot":                func(v *v3Val) { v.table[1][0] = 0 },
		"t0 after last":                     func(v *v3Val) { v.table[1][1] = (v.last + 1) | 1<<53 },
		"tier 17":                           func(v *v3Val) { v.table[1][1] = (v.last - 500) | 17<<53 },
		"word 1 bit 61":                     func(v *v3Val) { v.table[1][1] |= 1 << 61 },
		"word 1 bit 63":                     func(v *v3Val) { v.table[1][1] |= 1 << 63 },
		"granted 0":                         func(v *v3Val) { v.table[1][2] = 0 },
		"granted above 10^12":               func(v *v3Val) { v.table[1][2] = 1e12 + 1 },
		"tier_limit above 10^12":            func(v *v3Val) { v.table[2][3] = 1e12 + 1 },
		"tier_hits 2^62":                    func(v *v3Val) { v.table[2][4] = 1 << 62 },
		"domain_hits 2^62":                  func(v *v3Val) { v.table[2][5] = 1 << 62 },
		"global_hits + 1 = 2^62":            func(v *v3Val) { v.table[2][6] = 1 << 62 },
		"reset_after above 2^53":            func(v *v3Val) { v.table[2][7] = 1<<53 + 1 },
		"slot unreachable from home":        func(v *v3Val) { v.table[2], v.table[3] = v3Tok{}, v.table[2] },
		"slot before its home":              func(v *v3Val) { v.table[1][0] = 0x1002 },
		"duplicate h on the chain":          func(v *v3Val) { v.table[2][0] = v.table[1][0] },
		"wrapped slot unreachable":          func(v *v3Val) { v3Table(v, 8, map[int]uint64{0: 0x16, 6: 0x26}) },
		"wrapped duplicate":                 func(v *v3Val) { v3Table(v, 8, map[int]uint64{6: 0x16, 7: 0x26, 0: 0x16}) },
		"ncaps 9":                           func(v *v3Val) { v.ncaps = 9 },
		"ncaps says 3 of 4":                 func(v *v3Val) { v.ncaps = 3 },
		"nine caps":                         func(v *v3Val) { v.caps = append(v.caps, v3Nine(v)...) },
		"a window twice":                    func(v *v3Val) { v.caps[2].window = 600; v.caps[2].cursor = v.caps[0].cursor },
		"window 1000, exact":                func(v *v3Val) { v.caps[2].window = 1000 },
		"window 1000, bucketed":             func(v *v3Val) { v3Rebucket(v, 3, 1000) },
		"window 0":                          func(v *v3Val) { v.caps[2].window = 0 },
		"window above 10 years":             func(v *v3Val) { v3Rebucket(v, 3, 315_360_000_001) },
		"cap limit above 10^12":             func(v *v3Val) { v.caps[0].limit = 1e12 + 1 },
		"exact cursor time wrong":           func(v *v3Val) { v.caps[0].cursor[1] = 499 },
		"exact cursor sum wrong":            func(v *v3Val) { v.caps[0].cursor[2] = 5 },
		"exact cursor inside an event":      func(v *v3Val) { v.caps[0].cursor = [3]uint64{2, 500, 4} },
		"exact cursor past with a sum":      func(v *v3Val) { v.caps[2].cursor = [3]uint64{7, 0, 3} },
		"exact cursor past the log":         func(v *v3Val) { v.caps[2].cursor = [3]uint64{8, 0, 0} },
		"exact cursor before first":         func(v *v3Val) { v.caps[0].cursor[1] = 901 },
		"exact cursor sum 2^62":             func(v *v3Val) { v.caps[0].cursor[2] = 1 << 62 },
		"bucket region len 1":               func(v *v3Val) { v3Region(v, 1, []byte{1}, 0) },
		"bucket dead = len":                 func(v *v3Val) { v.caps[1].dead = uint64(len(v.caps[1].region)) },
		"bucket dead into an entry":         func(v *v3Val) { v.caps[1].dead = 3 },
		"bucket dead short of an entry":     func(v *v3Val) { v.caps[1].dead = 1 },
		"bucket span above window/g + 1":    func(v *v3Val) { v.caps[1].span = 1002 },
		"bucket sum 2^62":                   func(v *v3Val) { v.caps[1].sum = 1 << 62 },
		"bucket sum off by one":             func(v *v3Val) { v.caps[1].sum++ },
		"bucket span off by one":            func(v *v3Val) { v.caps[1].span++ },
		"bucket span one short":             func(v *v3Val) { v.caps[1].span-- },
		"bucket count 0":                    func(v *v3Val) { v3Entries(v, 1, [][2]uint64{{1, 5}, {15, 0}}) },
		"bucket count 2^62":                 func(v *v3Val) { v3Entries(v, 1, [][2]uint64{{1, 1 << 62}}) },
		"bucket step 0 after the first":     func(v *v3Val) { v3Entries(v, 1, [][2]uint64{{1, 2}, {0, 3}}) },
		"bucket first live step 0":          func(v *v3Val) { v.caps[1].region[2] = 0 },
		"bucket dead entry step 0":          func(v *v3Val) { v.caps[1].region[0] = 0 },
		"bucket dead entry count 0":         func(v *v3Val) { v.caps[1].region[1] = 0 },
		"bucket dead front not whole":       func(v *v3Val) { v.caps[1].region = append([]byte{1}, v.caps[1].region...); v.caps[1].dead = 3 },
		"bucket first live left the window": func(v *v3Val) { v3Entries(v, 1, [][2]uint64{{1, 2}, {1001, 3}}) },
		"bucket entry runs past its region": func(v *v3Val) { v3Region(v, 1, append(bytes.Clone(v.caps[1].region), 0x80), 2) },
		"bucket half an entry at the end":   func(v *v3Val) { v3Region(v, 1, append(bytes.Clone(v.caps[1].region), 1), 2) },
		"bucket overlong varint":            func(v *v3Val) { v3Region(v, 1, append(bytes.Clone(v.caps[1].region), 0x81, 0x00, 1), 2) },
		"bucket region len past the start":  func(v *v3Val) { v.caps[3].lenAdd = 4 },
		"bucket region len 2^40":            func(v *v3Val) { v.caps[1].lenAdd = 1 << 40 },
		"bucket region eats the dead front": func(v *v3Val) { v.caps[3].lenAdd = 3 },
		"bucket spare room not zero":        func(v *v3Val) { v.caps[1].spare = []byte{0, 0, 7, 0} },
		"bucket spare room above 64 + len": func(v *v3Val) {
			v.caps[1].spare = make([]byte, 65+len(v.caps[1].region))
		},
	}
	for name, f := range bad {
		v := v3Domain()
		f(v)
		refuses(name, v)
	}
	// The global sample: no tiers' hits, caps only.
	for name, f := range map[string]func(v *v3Val){
		"global hits in slot 0": func(v *v3Val) { v.log = []byte{0x00}; v.newest = 1; v.sec[2] = 1 },
		"global cap sum":        func(v *v3Val) { v.caps[0].cursor[2] = 1 },
	} {
		v := v3Global()
		f(v)
		refuses(name, v)
	}
	require.NoError(t, c.Ping(ctx).Err())
}

// TestRateV3CrowdedTable: no token lies more than 64 slots past its home slot, so a
// lookup reads at most 65 slots however a client chooses its tokens. A table of 4096
// slots whose 65 tokens all have home slot 0 (the last one 64 slots away) is accepted,
// a duplicate hash on that chain is found, and a 66th token on it is refused, as is
// an empty slot inside the chain.
func TestRateV3CrowdedTable(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t)
	ctx := context.Background()
	const ntok, n = 4096, 65
	slots := map[int]uint64{}
	for i := range n {
		slots[i] = uint64(i+1) << 12
	}
	v := v3TokensOnly()
	v3Table(v, ntok, slots)
	require.NoError(t, rate.Validate(v.bytes()))
	require.NoError(t, c.Do(ctx, "CHARON.LOADVALUE", "rl:{v3}:crowd", string(v.bytes())).Err())
	for _, at := range []int{1, n / 2, n - 1} {
		w := v.clone()
		w.table[at][0] = w.table[0][0]
		require.Error(t, rate.Validate(w.bytes()), "Go: duplicate of slot 0 at slot %d", at)
		err := c.Do(ctx, "CHARON.LOADVALUE", "rl:{v3}:crowd", string(w.bytes())).Err()
		require.Error(t, err, "duplicate of slot 0 at slot %d", at)
	}
	// One more token on the chain: 65 slots past its home.
	slots[n] = uint64(n+1) << 12
	far := v3TokensOnly()
	v3Table(far, ntok, slots)
	require.Error(t, rate.Validate(far.bytes()))
	require.Error(t, c.Do(ctx, "CHARON.LOADVALUE", "rl:{v3}:crowd", string(far.bytes())).Err())
	// An empty slot inside the chain: the tokens after it are unreachable.
	w := v.clone()
	w.table[n/2] = v3Tok{}
	w.occ--
	require.Error(t, rate.Validate(w.bytes()))
	require.Error(t, c.Do(ctx, "CHARON.LOADVALUE", "rl:{v3}:crowd", string(w.bytes())).Err())
	require.NoError(t, c.Ping(ctx).Err())
}

// v3Nine adds exact caps until v holds nine.
func v3Nine(v *v3Val) []v3Cap {
	var out []v3Cap
	for w := uint64(1); len(v.caps)+len(out) < 9; w++ {
		out = append(out, v3Cap{limit: w, window: 900 + w, cursor: [3]uint64{0, 900, 5}})
	}
	return out
}

// v3Region replaces cap i's region (dead front dead), keeping its header fields.
func v3Region(v *v3Val, i int, region []byte, dead uint64) {
	v.caps[i].region, v.caps[i].dead = region, dead
}

// v3Entries replaces cap i's bucket log by the given (step, count) entries, ending
// with span the sum of the steps after the first and sum the counts' sum.
func v3Entries(v *v3Val, i int, entries [][2]uint64) {
	var b []byte
	var span, sum uint64
	for k, e := range entries {
		b = binary.AppendUvarint(binary.AppendUvarint(b, e[0]), e[1])
		if k > 0 {
			span += e[0]
		}
		sum += e[1]
	}
	v.caps[i].region, v.caps[i].dead, v.caps[i].span, v.caps[i].sum = b, 0, span, sum
}

// v3Rebucket makes cap i a bucketed cap over window w (one entry: every hit at last).
func v3Rebucket(v *v3Val, i int, w uint64) {
	g := (w + 999) / 1000
	e, span, sum := v3Buckets([]uint64{v.last}, []uint64{5}, g, 1)
	v.caps[i] = v3Cap{limit: 1, window: w, region: e, span: span, sum: sum}
}
