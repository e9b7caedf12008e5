package ratelimit

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charon-redis/charon/module/rate"
	"github.com/stretchr/testify/require"
)

func TestResourceValidate(t *testing.T) {
	ok := Tier{Limit: 5, Window: time.Second, Active: time.Second}
	many := make([]Tier, MaxTiers+1)
	for i := range many {
		many[i] = ok
	}
	cases := []struct {
		name string
		res  *Resource
		want string // substring of the error; "" means valid
	}{
		{"simple", &Resource{Name: "api", Tiers: []Tier{ok}}, ""},
		{"closed", &Resource{Name: "api", Closed: true, Hard: 3}, ""},
		{"no tiers, not closed", &Resource{Name: "api"}, "no tiers (set Closed"},
		{"closed with tiers", &Resource{Name: "api", Closed: true, Tiers: []Tier{ok}}, "closed, but has 1 tiers"},
		{"bounds", &Resource{Name: "api", Tiers: []Tier{{Limit: MaxCount, Window: MaxDuration, Active: MaxDuration, Cooldown: MaxDuration, Skippable: true}}, Hard: MaxCount, Global: MaxCount}, ""},
		{"zero limit", &Resource{Name: "api", Tiers: []Tier{{Limit: 0, Window: time.Millisecond, Active: time.Millisecond}}}, ""},
		{"max tiers", &Resource{Name: "api", Tiers: many[:MaxTiers]}, ""},
		{"nil", nil, "nil resource"},
		{"empty name", &Resource{Tiers: []Tier{ok}}, "name is empty"},
		{"too many tiers", &Resource{Name: "api", Tiers: many}, "17 tiers"},
		{"negative limit", &Resource{Name: "api", Tiers: []Tier{{Limit: -1, Window: time.Second, Active: time.Second}}}, "tier 1 limit -1"},
		{"limit too big", &Resource{Name: "api", Tiers: []Tier{ok, {Limit: MaxCount + 1, Window: time.Second, Active: time.Second}}}, "tier 2 limit"},
		{"zero window", &Resource{Name: "api", Tiers: []Tier{{Limit: 1, Active: time.Second}}}, "tier 1 window 0s is outside"},
		{"sub-ms window", &Resource{Name: "api", Tiers: []Tier{{Limit: 1, Window: 1500 * time.Microsecond, Active: time.Second}}}, "window 1.5ms is not a whole number of milliseconds"},
		{"sub-ms active", &Resource{Name: "api", Tiers: []Tier{{Limit: 1, Window: time.Second, Active: time.Second + 1}}}, "active 1.000000001s is not a whole"},
		{"sub-ms cooldown", &Resource{Name: "api", Tiers: []Tier{{Limit: 1, Window: time.Second, Active: time.Second, Cooldown: time.Microsecond}}}, "cooldown 1µs is not a whole"},
		{"zero active", &Resource{Name: "api", Tiers: []Tier{{Limit: 1, Window: time.Second}}}, "tier 1 active 0s is outside"},
		{"negative cooldown", &Resource{Name: "api", Tiers: []Tier{{Limit: 1, Window: time.Second, Active: time.Second, Cooldown: -time.Millisecond}}}, "cooldown -1ms is outside"},
		{"window too long", &Resource{Name: "api", Tiers: []Tier{{Limit: 1, Window: MaxDuration + time.Millisecond, Active: time.Second}}}, "window"},
		{"negative hard", &Resource{Name: "api", Tiers: []Tier{ok}, Hard: -1}, "hard -1"},
		{"global too big", &Resource{Name: "api", Tiers: []Tier{ok}, Global: MaxCount + 1}, "global"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.res.Validate()
			if c.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalid), "%v does not wrap ErrInvalid", err)
			require.Contains(t, err.Error(), c.want)
		})
	}
}

func TestResourceConstructorsAndString(t *testing.T) {
	r := PerSecond("api", 5)
	require.NoError(t, r.Validate())
	require.Equal(t, []Tier{{Limit: 5, Window: time.Second, Active: time.Second}}, r.Tiers)
	require.Equal(t, time.Minute, PerMinute("a", 1).Tiers[0].Window)
	require.Equal(t, time.Hour, PerHour("a", 1).Tiers[0].Active)

	penalty := Resource{Name: "db", Tiers: []Tier{
		{Limit: 5, Window: time.Second, Active: time.Second},
		{Limit: 50, Window: 5 * time.Second, Active: 5 * time.Second, Cooldown: 15 * time.Second, Skippable: true},
	}, Hard: 10, Global: 1000}
	require.Equal(t, "db: LIMITS 5/1s, 50/5s/5s/15s? HARD 10 GLOBAL 1000", penalty.String())
	closed := Resource{Name: "x", Closed: true}
	require.Equal(t, "x: CLOSED", closed.String())

	// The wire form: TIER clauses or the compact form, and CLOSED.
	words := func(args []any) string {
		var w []string
		for _, a := range args {
			switch v := a.(type) {
			case string:
				w = append(w, v)
			case int64:
				w = append(w, strconv.FormatInt(v, 10))
			default:
				t.Fatalf("arg %#v is %T", a, a)
			}
		}
		return strings.Join(w, " ")
	}
	if sendCompact {
		require.Equal(t, "LIMITS 5/1s, 50/5s/5s/15s?", words(penalty.appendLimitArgs(nil)))
	} else {
		require.Equal(t, "TIER 5 1000 1000 0 TIER 50 5000 5000 15000 SKIPPABLE", words(penalty.appendLimitArgs(nil)))
	}
	require.Equal(t, "CLOSED", words(closed.appendLimitArgs(nil)))
}

func TestEncodeLimits(t *testing.T) {
	tier := func(l int64, w, a, c time.Duration, skip bool) Tier {
		return Tier{Limit: l, Window: w, Active: a, Cooldown: c, Skippable: skip}
	}
	cases := []struct {
		tiers []Tier
		want  string
	}{
		{nil, ""},
		{[]Tier{tier(10, time.Second, time.Second, 0, false)}, "10/1s"},
		// The spec's example, word for word.
		{[]Tier{
			tier(10, time.Second, time.Second, 0, false),
			tier(50, 5*time.Second, 5*time.Second, 15*time.Second, false),
			tier(1000, time.Minute, time.Minute, 10*time.Minute, false),
		}, "10/1s, 50/5s/5s/15s, 1000/1m/1m/10m"},
		{[]Tier{tier(0, time.Millisecond, time.Millisecond, 0, false)}, "0/1ms"},
		{[]Tier{tier(3, 1500*time.Millisecond, 1500*time.Millisecond, 0, true)}, "3/1500ms?"},
		{[]Tier{tier(3, time.Second, 2*time.Second, 0, false)}, "3/1s/2s"},
		{[]Tier{tier(3, 90*time.Second, 90*time.Second, 0, false)}, "3/90s"},
		{[]Tier{tier(1, 24*time.Hour, 48*time.Hour, 3*time.Hour, true)}, "1/1d/2d/3h?"},
		{[]Tier{tier(MaxCount, MaxDuration, MaxDuration, MaxDuration, false)}, "1000000000000/3650d/3650d/3650d"},
		{[]Tier{tier(7, 61001*time.Millisecond, time.Hour+time.Millisecond, 60*time.Minute, false)}, "7/61001ms/3600001ms/1h"},
	}
	for _, c := range cases {
		require.Equal(t, c.want, EncodeLimits(c.tiers), "%+v", c.tiers)
	}
}

// decodeCompact is an independent reader of the spec's grammar, for a round trip.
func decodeCompact(t *testing.T, s string) []Tier {
	t.Helper()
	unit := map[string]time.Duration{"": time.Millisecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	dur := func(f string) time.Duration {
		i := strings.IndexFunc(f, func(r rune) bool { return r < '0' || r > '9' })
		if i < 0 {
			i = len(f)
		}
		n, err := strconv.ParseInt(f[:i], 10, 64)
		require.NoError(t, err, f)
		u, ok := unit[f[i:]]
		require.True(t, ok, "unit of %q", f)
		return time.Duration(n) * u
	}
	var out []Tier
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		var tr Tier
		if strings.HasSuffix(part, "?") {
			tr.Skippable, part = true, strings.TrimSuffix(part, "?")
		}
		f := strings.Split(part, "/")
		require.True(t, len(f) >= 2 && len(f) <= 4, part)
		n, err := strconv.ParseInt(f[0], 10, 64)
		require.NoError(t, err)
		tr.Limit, tr.Window = n, dur(f[1])
		tr.Active = tr.Window
		if len(f) > 2 {
			tr.Active = dur(f[2])
		}
		if len(f) > 3 {
			tr.Cooldown = dur(f[3])
		}
		out = append(out, tr)
	}
	return out
}

func TestEncodeLimitsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ms := func() time.Duration {
		// Mostly round values (so every unit shows up), sometimes any millisecond.
		units := []time.Duration{time.Millisecond, time.Second, time.Minute, time.Hour, 24 * time.Hour}
		if r.IntN(3) == 0 {
			return time.Duration(1+r.Int64N(int64(MaxDuration/time.Millisecond))) * time.Millisecond
		}
		u := units[r.IntN(len(units))]
		return time.Duration(1+r.Int64N(int64(MaxDuration/u))) * u
	}
	for i := 0; i < 2000; i++ {
		tiers := make([]Tier, 1+r.IntN(MaxTiers))
		for j := range tiers {
			tiers[j] = Tier{Limit: r.Int64N(MaxCount + 1), Window: ms(), Active: ms(), Skippable: r.IntN(2) == 0}
			if r.IntN(2) == 0 {
				tiers[j].Active = tiers[j].Window
			}
			if r.IntN(2) == 0 {
				tiers[j].Cooldown = ms()
			}
		}
		res := Resource{Name: "x", Tiers: tiers}
		require.NoError(t, res.Validate())
		s := EncodeLimits(tiers)
		require.Equal(t, tiers, decodeCompact(t, s), s)
		// The server's own parser reads the same tiers.
		var parsed [rate.MaxTiers]rate.Tier
		n, err := rate.ParseLimits([]byte(s), &parsed)
		require.NoError(t, err, s)
		require.Equal(t, len(tiers), n, s)
		for j, tr := range tiers {
			require.Equal(t, rate.Tier{Limit: tr.Limit, Window: tr.Window.Milliseconds(), Active: tr.Active.Milliseconds(),
				Cooldown: tr.Cooldown.Milliseconds(), Skippable: tr.Skippable}, parsed[j], "%s tier %d", s, j+1)
		}
	}
}

func TestCompactLimitsCache(t *testing.T) {
	res := PerSecond("api", 10)
	s1 := res.compactLimits()
	require.Equal(t, "10/1s", s1)
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = res.compactLimits() }), "a cached resource allocates nothing")
	// A change of the tiers is noticed, in place or by a new slice.
	res.Tiers[0].Limit = 20
	require.Equal(t, "20/1s", res.compactLimits())
	res.Tiers = append(res.Tiers, Tier{Limit: 100, Window: time.Minute, Active: time.Minute})
	require.Equal(t, "20/1s, 100/1m", res.compactLimits())
	// A copy starts with the original's cache and still notices its own changes.
	cp := *res
	cp.Tiers = []Tier{{Limit: 1, Window: time.Hour, Active: time.Hour}}
	require.Equal(t, "1/1h", cp.compactLimits())
	require.Equal(t, "20/1s, 100/1m", res.compactLimits())

	// Many requests share one Resource: the first uses fill the cache concurrently.
	shared := PerMinute("shared", 7)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if got := shared.compactLimits(); got != "7/1m" {
					t.Errorf("got %q", got)
					return
				}
			}
		}()
	}
	wg.Wait()
}
