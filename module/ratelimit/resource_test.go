package ratelimit

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

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
		{"closed (no tiers)", &Resource{Name: "api"}, ""},
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
	require.Equal(t, "db: TIER 5 1000 1000 0 TIER 50 5000 5000 15000 SKIPPABLE HARD 10 GLOBAL 1000", penalty.String())
	closed := Resource{Name: "x"}
	require.Equal(t, "x: closed", closed.String())

	// The wire form of the tiers is the same words.
	args := penalty.appendTierArgs(nil)
	var words []string
	for _, a := range args {
		switch v := a.(type) {
		case string:
			words = append(words, v)
		case int64:
			words = append(words, strconv.FormatInt(v, 10))
		default:
			t.Fatalf("arg %#v is %T", a, a)
		}
	}
	require.Equal(t, "TIER 5 1000 1000 0 TIER 50 5000 5000 15000 SKIPPABLE", strings.Join(words, " "))
}
