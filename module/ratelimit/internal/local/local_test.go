package local

import (
	"math"
	"testing"

	"github.com/charon-redis/charon/module/rate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// base is a Unix time in ms; every test time is base + an offset.
const base = int64(1_700_000_000_000)

func TestRingLast(t *testing.T) {
	var g ring
	g.add(base+1000, 3) // bucket [1000, 1050)
	g.add(base+1975, 2) // bucket [1950, 2000)
	// [now-1000, now]: the bucket holding now-1000 counts for the part inside.
	assert.Equal(t, 5.0, g.last(base+2000)) // [1000, 2000]: all of [1000, 1050)
	assert.Equal(t, 3.5, g.last(base+2025)) // [1025, 2025]: half of it
	assert.Equal(t, 2.0, g.last(base+2050)) // [1050, 2050]: none of it
	assert.Equal(t, 0.0, g.last(base+3000))

	// A newer bucket a second later clears the old ones it reuses.
	g.add(base+3000, 1)
	assert.Equal(t, 1.0, g.last(base+3000))
	// A time a second behind the newest is dropped; one within it is kept.
	g.add(base+1999, 7)
	g.add(base+2500, 4)
	assert.Equal(t, 5.0, g.last(base+3000))

	var got [][2]int64
	g.each(base+2500, base+3000, func(at, n int64) { got = append(got, [2]int64{at - base, n}) })
	// The bucket of 2500 ends at 2549 (after since), the one of 3000 at now.
	assert.Equal(t, [][2]int64{{2549, 4}, {3000, 1}}, got)
}

func TestRatio(t *testing.T) {
	var r ratio
	assert.Equal(t, 0.5, r.share(0.5)) // no evidence: the prior
	r.add(2, 8, base, 5000)
	// (2 + 4*0.5) / (8 + 4)
	assert.InDelta(t, 1.0/3, r.share(0.5), 1e-12)
	// One half-life later the old sums weigh half: num 1+3, den 4+4.
	r.add(3, 4, base+5000, 5000)
	assert.InDelta(t, 0.5, r.share(0.5), 1e-12) // (4 + 2) / (8 + 4)
	// Strong evidence outweighs the prior.
	for i := int64(1); i <= 100; i++ {
		r.add(25, 100, base+5000+i, 5000)
	}
	assert.InDelta(t, 0.25, r.share(1), 0.01)
}

func TestScale(t *testing.T) {
	for _, c := range []struct {
		n, w   int64
		s      float64
		wn, w2 int64
	}{
		{10, 1000, 1, 10, 1000},     // all of it
		{100, 1000, 0.25, 25, 1000}, // a whole number: the window stays
		{10, 1000, 0.25, 3, 1200},   // 2.5/s: 3 per 1.2 s
		{10, 1000, 0.05, 1, 2000},   // 0.5/s: 1 per 2 s
		{7, 1000, 0.3, 3, 1429},     // 2.1/s: 3 per ceil(1428.57) ms
		{0, 1000, 0.3, 0, 1000},     // a wall stays a wall
		{1000, 3600_000, 0.001, 1, 3600_000},
		{1, rate.MaxDuration, 0.5, 1, rate.MaxDuration}, // never longer than the bound
	} {
		n, w := scale(c.n, c.w, c.s)
		assert.Equal(t, [2]int64{c.wn, c.w2}, [2]int64{n, w}, "%d/%d at %v", c.n, c.w, c.s)
		if c.n > 0 && c.s < 1 && w < rate.MaxDuration {
			// The rate never exceeds the share, and a window of the original length
			// never holds more than one hit over it.
			assert.LessOrEqual(t, float64(n)/float64(w), float64(c.n)*c.s/float64(c.w)+1e-12)
			assert.LessOrEqual(t, float64(n), float64(c.n)*c.s+1)
		}
	}
}

func TestBuild(t *testing.T) {
	lim := &Limits{
		Tiers:      []rate.Tier{{Limit: 10, Window: 1000, Active: 1000}, {Limit: 50, Window: 5000, Active: 5000, Cooldown: 15000, Skippable: true}},
		Caps:       []rate.Cap{{Limit: 8, Window: 1000}, {Limit: 1000, Window: 3600_000}},
		GlobalCaps: []rate.Cap{{Limit: 100, Window: 1000}, {Limit: 10, Window: 1250}},
	}
	var q rate.Request
	build(&q, lim, partDomain|partGlobal, 0.25, 0.1, 1, 2, false)
	assert.Equal(t, 2, q.NTiers)
	assert.Equal(t, rate.Tier{Limit: 3, Window: 1200, Active: 1000}, q.Tiers[0])
	// Active and cooldown are not scaled: a tier is usable as long as on the server.
	assert.Equal(t, rate.Tier{Limit: 13, Window: 5200, Active: 5000, Cooldown: 15000, Skippable: true}, q.Tiers[1])
	// HARD 8 at 1/4 is 2 per second, the one-hour cap 250 per hour.
	assert.True(t, q.HasHard)
	assert.Equal(t, int64(2), q.Hard)
	assert.Equal(t, 1, q.NCaps)
	assert.Equal(t, rate.Cap{Limit: 250, Window: 3600_000}, q.Caps[0])
	// GLOBAL 100 at 1/10 is 10 per second; 10 per 1250 ms is 1 per 1250 ms, a
	// window of its own.
	assert.True(t, q.HasGlobal)
	assert.True(t, q.HasGlobalLimit)
	assert.Equal(t, int64(10), q.GlobalLimit)
	assert.Equal(t, 1, q.NGlobalCaps)
	assert.Equal(t, rate.Cap{Limit: 1, Window: 1250}, q.GlobalCaps[0])

	// A stretched HARD that is no longer a second is a cap, and two caps stretched
	// to one window are kept apart.
	lim = &Limits{Tiers: lim.Tiers[:1], Caps: []rate.Cap{{Limit: 5, Window: 1000}, {Limit: 3, Window: 1500}}}
	build(&q, lim, partDomain|partGlobal, 0.5, 1, 1, 1, false)
	assert.False(t, q.HasHard)
	assert.False(t, q.HasGlobal)
	assert.Equal(t, 2, q.NCaps)
	assert.Equal(t, rate.Cap{Limit: 3, Window: 1200}, q.Caps[0])
	assert.Equal(t, rate.Cap{Limit: 2, Window: 2000}, q.Caps[1])

	// Only the global half: a tier that never fills.
	build(&q, &Limits{Tiers: lim.Tiers, GlobalCaps: []rate.Cap{{Limit: 100, Window: 1000}}}, partGlobal, 0.5, 0.5, 1, 7, false)
	assert.Equal(t, 1, q.NTiers)
	assert.Equal(t, wall, q.Tiers[0])
	assert.Equal(t, int64(50), q.GlobalLimit)
}

// perSecond is the acceptance's resource: 10 per second per domain, 100 per second
// for the whole resource.
func perSecond() *Limits {
	return &Limits{
		Tiers:      []rate.Tier{{Limit: 10, Window: 1000, Active: 1000}},
		GlobalCaps: []rate.Cap{{Limit: 100, Window: 1000}},
	}
}

// learned returns a Table that saw, at base+1000, its own grant of 4 hits to
// "alice" (the only hits in every window), then a rejection of alice's when the
// fleet had been granted 16 hits in the second (its 4 among them): a share of 4/16
// for alice and for the resource, which with the prior of 1/4 makes exactly 1/4.
func learned(t *testing.T) *Table {
	tb := New(Config{Prior: 0.25})
	tb.Observe("api", "alice", Reply{Granted: 4, DomainHits: 4, GlobalHits: 4}, base+1000)
	tb.Observe("api", "alice", Reply{Granted: 0, DomainHits: 16, GlobalHits: 16}, base+1000)
	sd, sr, ok := tb.Shares("api", "alice")
	require.True(t, ok)
	require.InDelta(t, 0.25, sd, 1e-12) // (4 + 4*0.25) / (16 + 4)
	require.InDelta(t, 0.25, sr, 1e-12) // (4 + 4*0.25) / (16 + 4)
	return tb
}

func TestDecide(t *testing.T) {
	tb := learned(t)
	lim := perSecond()
	tb.Enter()

	// alice's local value starts from the instance's own 4 hits at 1000: its share
	// of the tier is 3 per 1.2 s, full. They leave the window at 1000 + 1200 + 1.
	d, err := tb.Decide("api", "alice", lim, 1, 1, false, base+1000)
	require.NoError(t, err)
	assert.Equal(t, int64(0), d.Granted)
	assert.Equal(t, int64(1201), d.Fields[rate.FieldRetryAfter])
	assert.Equal(t, int64(3), d.Fields[rate.FieldTierLimit])
	assert.Equal(t, int64(3), d.Fields[rate.FieldTierHits])
	assert.Equal(t, int64(4), d.Fields[rate.FieldGlobalHits]) // the resource's seed: all 4
	assert.InDelta(t, 0.25, d.DomainShare, 1e-12)

	// bob was never seen: the resource's share, 3 per 1.2 s.
	sd, _, ok := tb.Shares("api", "bob")
	assert.False(t, ok)
	assert.InDelta(t, 0.25, sd, 1e-12)
	granted := func(domain string, at int64, n int) int64 {
		var sum int64
		for range n {
			d, err := tb.Decide("api", domain, lim, 1, 1, false, base+at)
			require.NoError(t, err)
			sum += d.Granted
		}
		return sum
	}
	assert.Equal(t, int64(3), granted("bob", 1000, 5))
	// GLOBAL's share is 25 per second; 4 + 3 are used, so six more domains get 3
	// each, and the next one nothing.
	for i := range 6 {
		assert.Equal(t, int64(3), granted(string(rune('c'+i)), 1000, 4))
	}
	d, err = tb.Decide("api", "zed", lim, 1, 1, false, base+1000)
	require.NoError(t, err)
	assert.Equal(t, int64(0), d.Granted)
	assert.Equal(t, int64(25), d.Fields[rate.FieldGlobalHits])
	assert.Equal(t, int64(1), d.Fields[rate.FieldGlobalLimited])
	assert.Equal(t, int64(1001), d.Fields[rate.FieldRetryAfter]) // GLOBAL's second

	// A second later GLOBAL has room again, but alice's tier holds its hits 1200 ms.
	assert.Equal(t, int64(0), granted("alice", 2200, 1))
	assert.Equal(t, int64(3), granted("alice", 2201, 5))

	// A dry run answers and records nothing.
	d, err = tb.Decide("api", "zed", lim, 1, 2, true, base+2201)
	require.NoError(t, err)
	assert.Equal(t, int64(2), d.Granted)
	assert.Equal(t, int64(3), granted("zed", 2201, 4))

	// A closed resource refuses, for ever.
	d, err = tb.Decide("api", "alice", &Limits{Closed: true}, 1, 1, false, base+2201)
	require.NoError(t, err)
	assert.Equal(t, int64(0), d.Granted)
	assert.Equal(t, int64(-1), d.Fields[rate.FieldRetryAfter])

	_, err = tb.Decide("api", "alice", &Limits{}, 1, 1, false, base+2201)
	assert.ErrorIs(t, err, ErrLimits)
	_, err = tb.Decide("api", "alice", lim, 2, 1, false, base+2201)
	assert.ErrorIs(t, err, ErrLimits)
}

func TestDecideHardAndCaps(t *testing.T) {
	tb := New(Config{Prior: 0.5})
	lim := &Limits{
		Tiers: []rate.Tier{{Limit: 100, Window: 1000, Active: 1000}},
		Caps:  []rate.Cap{{Limit: 6, Window: 1000}, {Limit: 10, Window: 60_000}},
	}
	tb.Enter()
	// No evidence: the prior 1/2. HARD 6 is 3 per second, the minute's cap 5.
	var got []int64
	for s := range int64(3) {
		var n int64
		for range 10 {
			d, err := tb.Decide("api", "alice", lim, 1, 1, false, base+s*1001)
			require.NoError(t, err)
			n += d.Granted
		}
		got = append(got, n)
	}
	assert.Equal(t, []int64{3, 2, 0}, got) // 3 + 2 = the minute's 5
	d, err := tb.Decide("api", "alice", lim, 1, 1, false, base+3000)
	require.NoError(t, err)
	assert.Equal(t, int64(1), d.Fields[rate.FieldHardLimited])
	assert.Positive(t, d.Fields[rate.FieldRetryAfter])
}

func TestTiersClimbLocally(t *testing.T) {
	// 2 per second, then a burst tier of 10 per 5 s, active 5 s, cooldown 10 s; at a
	// share of 1/2: 1 per second, then 5 per 5 s.
	tb := New(Config{Prior: 0.5})
	lim := &Limits{Tiers: []rate.Tier{
		{Limit: 2, Window: 1000, Active: 1000},
		{Limit: 10, Window: 5000, Active: 5000, Cooldown: 10_000},
	}}
	tb.Enter()
	var n int64
	for range 10 {
		d, err := tb.Decide("api", "alice", lim, 1, 1, false, base)
		require.NoError(t, err)
		n += d.Granted
	}
	assert.Equal(t, int64(6), n) // 1 + 5
	d, err := tb.Decide("api", "alice", lim, 1, 1, false, base+5001)
	require.NoError(t, err)
	// Tier 2 cools down from 5001 to 15000 and stops the climb; tier 1 has room.
	assert.Equal(t, int64(1), d.Granted)
	d, err = tb.Decide("api", "alice", lim, 1, 1, false, base+5002)
	require.NoError(t, err)
	assert.Equal(t, int64(0), d.Granted)
}

func TestFloorsAndLeaning(t *testing.T) {
	tb := New(Config{})
	// The fleet is granted 100 hits a second of alice's and none is ours.
	for i := int64(0); i < 100; i++ {
		tb.Observe("api", "alice", Reply{Granted: 0, DomainHits: 100, GlobalHits: -1}, base+i*10)
	}
	sd, sr, _ := tb.Shares("api", "alice")
	// The resource's share comes from the same replies (no GLOBAL): about 0, held
	// at MinShare; alice's 0 is within chance of that, so it is the resource's.
	assert.Equal(t, MinShare, sr)
	assert.Equal(t, MinShare, sd)

	// A resource share of 1/4 (from global_hits), and a domain of which the
	// instance saw 100 hits a second for a second, none its own: far from 1/4
	// (z = 0.25 / sqrt(0.25 * 0.75 / 100) = 5.8), so its own share, floored.
	tb = learned(t)
	for i := int64(0); i < 100; i++ {
		tb.Observe("api", "carol", Reply{Granted: 0, DomainHits: 100, GlobalHits: -1}, base+1000+i*10)
	}
	sd, sr, _ = tb.Shares("api", "carol")
	assert.InDelta(t, 0.25, sr, 1e-12)
	assert.InDelta(t, 0.25*DomainFloor, sd, 1e-12)
	// The same with a tenth of the evidence is within chance: the resource's share.
	for i := int64(0); i < 10; i++ {
		tb.Observe("api", "dan", Reply{Granted: 0, DomainHits: 1, GlobalHits: -1}, base+1000+i*100)
	}
	sd, _, _ = tb.Shares("api", "dan")
	assert.InDelta(t, 0.25, sd, 1e-12)

	// A busy domain of ours that the fleet shares with nobody: all of it.
	for i := int64(0); i < 100; i++ {
		tb.Observe("api", "bob", Reply{Granted: 1, DomainHits: 1 + min(i, 10), GlobalHits: -1}, base+1000+i*100)
	}
	sd, _, _ = tb.Shares("api", "bob")
	assert.InDelta(t, 1, sd, 0.02)
}

func TestObserveIgnoresNonsense(t *testing.T) {
	tb := New(Config{Prior: 0.5})
	tb.Observe("api", "alice", Reply{Granted: 3, DomainHits: 1, GlobalHits: -1}, base)
	sd, sr, _ := tb.Shares("api", "alice")
	assert.Equal(t, 0.5, sd)
	assert.Equal(t, 0.5, sr)
}

func TestHandover(t *testing.T) {
	tb := learned(t)
	lim := perSecond()
	tb.Enter()
	// Nothing happened locally yet and Redis was never left: no handover.
	_, active, err := tb.Admit("api", "bob", lim, 1, 1, false, base+1000)
	require.NoError(t, err)
	assert.False(t, active)

	// During the outage bob gets his 3 (of 3 per 1.2 s) at 1500.
	for range 3 {
		d, err := tb.Decide("api", "bob", lim, 1, 1, false, base+1500)
		require.NoError(t, err)
		require.Equal(t, int64(1), d.Granted)
	}
	// Redis is back at 1600. Every pair's requests are bounded by the local shares
	// for the longest stretched window after that: the tier's 1200 ms (3 per 1.2 s at
	// 1/4), GLOBAL's 1000 ms (25 per second).
	tb.Leave(base + 1600)
	d, active, err := tb.Admit("api", "bob", lim, 1, 5, false, base+1600)
	require.NoError(t, err)
	assert.True(t, active)
	assert.Equal(t, int64(0), d.Granted) // bob's share is used up
	// carol was not seen in the outage: her share of the tier (a dry run takes
	// nothing, a request takes the hits before it goes to Redis).
	d, active, err = tb.Admit("api", "carol", lim, 1, 30, true, base+1600)
	require.NoError(t, err)
	assert.True(t, active)
	assert.Equal(t, int64(3), d.Granted)
	// GLOBAL's share: 25 - (4 seeded + 3 of bob's) = 18, six domains' 3 each.
	for i := range 6 {
		d, active, err = tb.Admit("api", string(rune('c'+i)), lim, 1, 30, false, base+1600)
		require.NoError(t, err)
		require.True(t, active)
		require.Equal(t, int64(3), d.Granted, i)
	}
	d, active, err = tb.Admit("api", "zed", lim, 1, 30, false, base+1600)
	require.NoError(t, err)
	assert.True(t, active)
	assert.Equal(t, int64(0), d.Granted)
	assert.Equal(t, int64(1), d.Fields[rate.FieldGlobalLimited])
	// Redis's replies teach as before (the fleet had 16 others in the second, of
	// which this instance's 4: the share stays 1/4) and record nothing more.
	tb.Observe("api", "c", Reply{Granted: 3, DomainHits: 3, GlobalHits: 19}, base+1600)
	_, sr, _ := tb.Shares("api", "c")
	require.InDelta(t, 0.25, sr, 1e-12)

	// From 2600 GLOBAL's handover is over, the tiers' lasts until 2800.
	d, active, err = tb.Admit("api", "zed", lim, 1, 30, false, base+2600)
	require.NoError(t, err)
	assert.True(t, active)
	assert.Equal(t, int64(3), d.Granted)
	assert.Equal(t, int64(-1), d.Fields[rate.FieldGlobalHits], "no GLOBAL in it")
	_, active, err = tb.Admit("api", "yan", lim, 1, 1, false, base+2800)
	require.NoError(t, err)
	assert.False(t, active)
	// The fast path (no lock) agrees.
	tb.mu.Lock()
	assert.Equal(t, int64(1200), tb.span.Load())
	assert.Equal(t, base+2701, tb.until.Load()) // bob's own: 1500 + 1200 + 1
	tb.mu.Unlock()

	// Margin lengthens the handover: the others may decide locally that much longer.
	tb = New(Config{Prior: 0.25, Margin: 500})
	tb.Enter()
	_, err = tb.Decide("api", "bob", lim, 1, 1, false, base+1500)
	require.NoError(t, err)
	tb.Leave(base + 1600)
	_, active, err = tb.Admit("api", "carol", lim, 1, 1, false, base+3299)
	require.NoError(t, err)
	assert.True(t, active)
	_, active, err = tb.Admit("api", "carol", lim, 1, 1, false, base+3300)
	require.NoError(t, err)
	assert.False(t, active)
}

func TestBounds(t *testing.T) {
	tb := New(Config{MaxDomains: 3})
	for i := range 5 {
		tb.Observe("api", string(rune('a'+i)), Reply{Granted: 1, DomainHits: 1, GlobalHits: -1}, base)
	}
	n, _ := tb.Size()
	assert.Equal(t, 3, n)
	_, _, ok := tb.Shares("api", "a")
	assert.False(t, ok, "the least recently used is forgotten")
	_, _, ok = tb.Shares("api", "e")
	assert.True(t, ok)

	// Bytes: local values count, and the bound holds while deciding.
	tb = New(Config{MaxBytes: 64 << 10, Prior: 1})
	lim := &Limits{Tiers: []rate.Tier{{Limit: 1000, Window: 60_000, Active: 60_000}}, GlobalCaps: []rate.Cap{{Limit: 1 << 30, Window: 1000}}}
	tb.Enter()
	for i := range 2000 {
		for k := range int64(5) {
			_, err := tb.Decide("api", string(rune(0x100+i)), lim, 1, 1, false, base+int64(i)*10+k)
			require.NoError(t, err)
		}
	}
	n, b := tb.Size()
	assert.LessOrEqual(t, b, 64<<10)
	assert.Less(t, n, 2000)
	assert.Positive(t, n)

	// Forgetting the last domain of a resource forgets the resource.
	tb = New(Config{MaxDomains: 1})
	tb.Observe("a", "x", Reply{Granted: 1, DomainHits: 1, GlobalHits: 1}, base)
	tb.Observe("b", "x", Reply{Granted: 1, DomainHits: 1, GlobalHits: 1}, base)
	tb.mu.Lock()
	assert.Len(t, tb.res, 1)
	tb.mu.Unlock()
}

func TestSeedOncePerOutage(t *testing.T) {
	tb := learned(t)
	lim := perSecond()
	// A second outage long after the first: the old local values are dropped and
	// the recent grants seed them again.
	tb.Enter()
	d, err := tb.Decide("api", "alice", lim, 1, 1, false, base+1000)
	require.NoError(t, err)
	assert.Equal(t, int64(0), d.Granted)
	tb.Observe("api", "alice", Reply{Granted: 2, DomainHits: 2, GlobalHits: 2}, base+60_000)
	tb.Enter()
	d, err = tb.Decide("api", "alice", lim, 1, 2, false, base+60_000)
	require.NoError(t, err)
	// The share moved a little towards the new evidence; the seed holds 2 hits of
	// the tier's 3 per 1.2 s (or 4 per 1.6 s).
	assert.Equal(t, int64(1), d.Granted)
	assert.False(t, math.IsNaN(d.DomainShare))
}
