package ratelimit

import (
	"errors"
	"math/rand/v2"
	"slices"
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

func TestResourceValidateCaps(t *testing.T) {
	ok := []Tier{{Limit: 5, Window: time.Second, Active: time.Second}}
	hour, day := Cap{Limit: 1000, Per: time.Hour}, Cap{Limit: 10000, Per: 24 * time.Hour}
	eight := make([]Cap, MaxCaps)
	for i := range eight {
		eight[i] = Cap{Limit: int64(i), Per: time.Duration(i+2) * time.Second}
	}
	cases := []struct {
		name string
		res  Resource
		want string // substring of the error; "" means valid
	}{
		{"caps", Resource{Tiers: ok, Caps: []Cap{hour, day}, GlobalCaps: []Cap{day}}, ""},
		{"bounds", Resource{Tiers: ok, Caps: []Cap{{0, time.Millisecond}, {MaxCount, MaxDuration}}}, ""},
		{"per-second cap instead of Hard", Resource{Tiers: ok, Caps: []Cap{{3, time.Second}}, GlobalCaps: []Cap{{9, time.Second}}}, ""},
		{"eight caps", Resource{Tiers: ok, Caps: eight, GlobalCaps: eight}, ""},
		{"seven caps and Hard", Resource{Tiers: ok, Caps: eight[:7], Hard: 5, GlobalCaps: eight[:7], Global: 50}, ""},
		{"closed with caps", Resource{Closed: true, Caps: []Cap{hour}, GlobalCaps: []Cap{day}}, ""},
		{"negative limit", Resource{Tiers: ok, Caps: []Cap{hour, {-1, time.Minute}}}, "cap 2 limit -1 is outside [0, 1000000000000]"},
		{"limit too big", Resource{Tiers: ok, GlobalCaps: []Cap{{MaxCount + 1, time.Minute}}}, "global cap 1 limit 1000000000001 is outside"},
		{"zero window", Resource{Tiers: ok, Caps: []Cap{{Limit: 5}}}, "cap 1 per 0s is outside [1ms, 87600h0m0s]"},
		{"sub-ms window", Resource{Tiers: ok, Caps: []Cap{{5, 1500 * time.Microsecond}}}, "cap 1 per 1.5ms is not a whole number of milliseconds"},
		{"window too long", Resource{Tiers: ok, GlobalCaps: []Cap{{5, MaxDuration + time.Millisecond}}}, "global cap 1 per"},
		{"same window twice", Resource{Tiers: ok, Caps: []Cap{hour, day, {5, time.Hour}}}, "cap 3 per 1h0m0s: cap 1 has the same window"},
		{"a second for Hard twice", Resource{Tiers: ok, Hard: 10, Caps: []Cap{hour, {5, time.Second}}}, "cap 2 per 1s is hard's window: set hard or this cap"},
		{"a second for Global twice", Resource{Tiers: ok, Global: 10, GlobalCaps: []Cap{{5, time.Second}}}, "global cap 1 per 1s is global's window"},
		{"nine caps", Resource{Tiers: ok, Caps: append(slices.Clone(eight), Cap{1, time.Hour})}, "9 caps, at most 8"},
		{"eight caps and Hard", Resource{Tiers: ok, Caps: eight, Hard: 1}, "9 caps (hard counts as one), at most 8"},
		{"eight global caps and Global", Resource{Tiers: ok, GlobalCaps: eight, Global: 1}, "9 global caps (global counts as one), at most 8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := c.res
			res.Name = "api"
			err := res.Validate()
			if c.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalid)
			require.ErrorContains(t, err, `resource "api": `+c.want)
		})
	}
}

func TestEncodeCaps(t *testing.T) {
	require.Equal(t, "", EncodeCaps(nil))
	require.Equal(t, "1000/1h, 10000/1d", EncodeCaps([]Cap{{1000, time.Hour}, {10000, 24 * time.Hour}}))
	require.Equal(t, "0/1ms, 3/1500ms, 7/90s, 1000000000000/3650d", EncodeCaps([]Cap{{0, time.Millisecond}, {3, 1500 * time.Millisecond}, {7, 90 * time.Second}, {MaxCount, MaxDuration}}))

	res := Resource{Name: "api", Tiers: []Tier{
		{Limit: 10, Window: time.Second, Active: time.Second},
		{Limit: 50, Window: 5 * time.Second, Active: 5 * time.Second, Cooldown: 15 * time.Second},
	}, Caps: []Cap{{1000, time.Hour}, {10000, 24 * time.Hour}}, GlobalCaps: []Cap{{2000000, 24 * time.Hour}}, Global: 5000}
	// The spec's example, word for word.
	require.Equal(t, "10/1s, 50/5s/5s/15s; 1000/1h, 10000/1d", res.compactLimits())
	require.Equal(t, "5000/1s, 2000000/1d", res.globalArg())
	require.Equal(t, "api: LIMITS 10/1s, 50/5s/5s/15s; 1000/1h, 10000/1d GLOBAL 5000/1s, 2000000/1d", res.String())
	res.Global, res.Hard = 0, 7
	require.Equal(t, "2000000/1d", res.globalArg())
	require.Equal(t, "api: LIMITS 10/1s, 50/5s/5s/15s; 1000/1h, 10000/1d HARD 7 GLOBAL 2000000/1d", res.String())
	// Without global caps GLOBAL is the number it always was.
	res.GlobalCaps, res.Global = nil, 5000
	require.Equal(t, int64(5000), res.globalArg())
	closed := Resource{Name: "x", Closed: true, Caps: []Cap{{5, time.Hour}}}
	require.Equal(t, "x: CLOSED CAPS 5/1h", closed.String())
}

// argBytes turns a command's arguments, as the client builds them, into what the server
// receives.
func argBytes(t *testing.T, args []any) [][]byte {
	t.Helper()
	out := make([][]byte, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = []byte(v)
		case int64:
			out[i] = []byte(strconv.FormatInt(v, 10))
		default:
			t.Fatalf("arg %#v is %T", a, a)
		}
	}
	return out
}

// The caps a Resource sends are the caps the server's own parser reads, for random
// resources: tiers, Caps (a per-second one standing for Hard, or Hard), GlobalCaps
// (with or without Global), and closed resources with caps.
func TestCapsArgsParseOnServer(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	dur := func() time.Duration {
		units := []time.Duration{time.Millisecond, time.Second, time.Minute, time.Hour, 24 * time.Hour}
		if r.IntN(3) == 0 {
			return time.Duration(1+r.Int64N(int64(MaxDuration/time.Millisecond))) * time.Millisecond
		}
		u := units[r.IntN(len(units))]
		return time.Duration(1+r.Int64N(int64(MaxDuration/u))) * u
	}
	caps := func(second *int64) []Cap {
		n := r.IntN(MaxCaps + 1) // the per-second one included
		seen := map[time.Duration]bool{}
		if n > 0 && r.IntN(2) == 0 {
			*second = r.Int64N(MaxCount) + 1
			seen[time.Second] = true
			n--
		}
		var out []Cap
		for len(out) < n {
			c := Cap{Limit: r.Int64N(MaxCount + 1), Per: dur()}
			if r.IntN(8) == 0 {
				c.Per = time.Second
			}
			if seen[c.Per] {
				continue
			}
			seen[c.Per] = true
			out = append(out, c)
		}
		return out
	}
	for i := 0; i < 1000; i++ {
		res := Resource{Name: "x"}
		res.Caps = caps(&res.Hard)
		res.GlobalCaps = caps(&res.Global)
		if r.IntN(10) == 0 {
			res.Closed = true
		} else {
			for range 1 + r.IntN(MaxTiers) {
				w := dur()
				res.Tiers = append(res.Tiers, Tier{Limit: r.Int64N(MaxCount + 1), Window: w, Active: w})
			}
		}
		require.NoError(t, res.Validate(), "%s", &res)
		// What requestWith sends after the key.
		args := []any{}
		if res.Hard > 0 {
			args = append(args, "HARD", res.Hard)
		}
		if res.hasGlobal() {
			args = append(args, "GLOBAL", "gkey", res.globalArg())
		}
		args = res.appendLimitArgs(args)
		var req rate.Request
		require.NoError(t, rate.ParseRequest(argBytes(t, args), &req), "%s: %q", &res, args)

		// The server's view: the per-second caps apart, the others in order.
		wantHard, wantHasHard := perSecond(res.Hard, res.Caps)
		require.Equal(t, wantHasHard, req.HasHard, "%s", &res)
		if wantHasHard {
			require.Equal(t, wantHard, req.Hard, "%s", &res)
		}
		wantGlobal, wantHasGlobal := perSecond(res.Global, res.GlobalCaps)
		require.Equal(t, res.hasGlobal(), req.HasGlobal, "%s", &res)
		require.Equal(t, wantHasGlobal, req.HasGlobalLimit, "%s", &res)
		if wantHasGlobal {
			require.Equal(t, wantGlobal, req.GlobalLimit, "%s", &res)
		}
		long := func(caps []Cap) []rate.Cap {
			out := []rate.Cap{}
			for _, c := range caps {
				if c.Per != time.Second {
					out = append(out, rate.Cap{Limit: c.Limit, Window: c.Per.Milliseconds()})
				}
			}
			return out
		}
		require.Equal(t, long(res.Caps), append([]rate.Cap{}, req.Caps[:req.NCaps]...), "%s", &res)
		require.Equal(t, long(res.GlobalCaps), append([]rate.Cap{}, req.GlobalCaps[:req.NGlobalCaps]...), "%s", &res)
		require.Equal(t, len(res.Tiers), req.NTiers)
		require.Equal(t, res.Closed, req.Closed)
	}
}

func TestCompactCacheWithCaps(t *testing.T) {
	res := PerSecond("api", 10)
	res.Caps = []Cap{{100, time.Hour}}
	res.GlobalCaps = []Cap{{1000, 24 * time.Hour}}
	require.Equal(t, "10/1s; 100/1h", res.compactLimits())
	require.Equal(t, "1000/1d", res.globalArg())
	require.Zero(t, testing.AllocsPerRun(100, func() {
		_ = res.compact()
		_ = res.globalArg()
		_ = res.appendLimitArgs(make([]any, 0, 4)[:0])
	}), "a cached resource allocates nothing but its args slice")
	// Changes are noticed: caps in place, new global caps, Global, Hard (not cached:
	// it is sent as a number), tiers.
	res.Caps[0].Limit = 200
	require.Equal(t, "10/1s; 200/1h", res.compactLimits())
	res.GlobalCaps = append(res.GlobalCaps, Cap{50, time.Minute})
	require.Equal(t, "1000/1d, 50/1m", res.globalArg())
	res.Global = 7
	require.Equal(t, "7/1s, 1000/1d, 50/1m", res.globalArg())
	res.GlobalCaps = nil
	require.Equal(t, int64(7), res.globalArg())
	res.Caps = nil
	require.Equal(t, "10/1s", res.compactLimits())
}
