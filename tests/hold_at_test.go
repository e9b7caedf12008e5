//go:build integration

package tests

import (
	"context"
	"strconv"
	"testing"

	"github.com/charon-redis/charon/tests/harness"
	"github.com/stretchr/testify/require"
)

// AT is Unix time in milliseconds on every command that takes it. Each row of the
// table of wrong units (and the bound ahead of the server clock) is an error naming
// AT and the unit or the config, and writes nothing; requests replayed from a primary
// or the AOF are never refused.

// atCommands are one request of each command that takes AT, for a key and an AT.
func atCommands(at int64) [][]any {
	a := strconv.FormatInt(at, 10)
	hold := "00000000000000ff"
	return [][]any{
		{"CHARON.RATE", "rl:{u}:a", "GLOBAL", "rl:{u}", 10, "AT", a, "LIMITS", "5/1s"},
		{"CHARON.RATE", "rl:{u}:a", "AT", a, "TIER", 5, 1000, 1000, 0},
		{"CHARON.RESERVE", "hd:{u}:a", "LIMIT", 5, "GLOBAL", "hd:{u}", 10, "AT", a},
		{"CHARON.RESERVE", "hd:{u}:a", "LIMIT", 5, "AT", a, "GROUP", "hd:{u}:g", 3},
		{"CHARON.RELEASE", "hd:{u}:a", hold, "AT", a},
		{"CHARON.RENEW", "hd:{u}:a", hold, "AT", a},
		{"CHARON.TRANSFER", "hd:{u}:a", hold, "TTL", 100, "AT", a},
		{"CHARON.SEIZE", "hd:{u}:a", hold, "AT", a},
	}
}

func TestAtUnits(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{DefaultAtAhead: true})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()

	cfg, err := c.ConfigGet(ctx, "charon.max-at-ahead").Result()
	require.NoError(t, err)
	require.Equal(t, "3600000", cfg["charon.max-at-ahead"], "the default bound is 1 hour")

	now := rtNow()
	for _, row := range []struct {
		name string
		at   int64
		want string
	}{
		{"microseconds", now * 1000, "is 10^13 or more (after the year 2286), so microseconds or nanoseconds: divide it by 1000 or 1000000"},
		{"nanoseconds", now * 1_000_000, "is 10^13 or more (after the year 2286), so microseconds or nanoseconds: divide it by 1000 or 1000000"},
		{"seconds", now / 1000, "lies in 1970 as milliseconds and within 10 years of the server clock as seconds: multiply it by 1000"},
		{"two hours ahead", now + 2*3600*1000, "lies more than charon.max-at-ahead (3600000 ms) ahead of the server clock: it would hold the keys' clock there (CONFIG SET charon.max-at-ahead 0 lifts the bound)"},
		{"the year 2100", hdT0, "4102444800000 lies more than charon.max-at-ahead (3600000 ms) ahead"},
	} {
		for _, args := range atCommands(row.at) {
			d := rtDigest(t, c)
			msg := rtErr(t, c, args...)
			require.Contains(t, msg, "ERR AT: ", "%s: %v", row.name, args)
			require.Contains(t, msg, row.want, "%s: %v", row.name, args)
			require.Equal(t, d, rtDigest(t, c), "%s: %v wrote something", row.name, args)
		}
	}
	require.Equal(t, int64(0), rtDBSize(t, c))

	// CHARON.INSPECT applies the unit rules (it writes nothing, so the bound ahead
	// does not apply to it).
	hdMust(t, c, "CHARON.RESERVE", "hd:{u}:i", "LIMIT", 5, "AT", now)
	require.Contains(t, rtErr(t, c, "CHARON.INSPECT", "hd:{u}:i", "AT", now*1000), "microseconds")
	require.Contains(t, rtErr(t, c, "CHARON.INSPECT", "hd:{u}:i", "AT", now/1000), "multiply it by 1000")
	require.Contains(t, rtErr(t, c, "CHARON.INSPECT", "rl:{u}:missing", "AT", now/1000), "multiply it by 1000")
	require.NoError(t, c.Do(ctx, "CHARON.INSPECT", "hd:{u}:i", "AT", hdT0).Err())

	// Within the bound, and small simulation times, are fine.
	for _, at := range []int64{now + 3_500_000, now - 86_400_000, 5} {
		for _, args := range atCommands(at)[:4] {
			require.NoError(t, c.Do(ctx, args...).Err(), "%v", args)
		}
		require.NoError(t, c.FlushAll(ctx).Err())
	}

	// The config moves the bound at once; 0 lifts it.
	require.NoError(t, c.ConfigSet(ctx, "charon.max-at-ahead", "0").Err())
	for _, args := range atCommands(hdT0)[:4] {
		require.NoError(t, c.Do(ctx, args...).Err(), "%v", args)
	}
	require.NoError(t, c.ConfigSet(ctx, "charon.max-at-ahead", "1000").Err())
	require.Contains(t, rtErr(t, c, "CHARON.RESERVE", "hd:{u}:b", "LIMIT", 5, "AT", rtNow()+60_000), "lies more than charon.max-at-ahead (1000 ms) ahead")
	require.Contains(t, rtErr(t, c, "CONFIG", "SET", "charon.max-at-ahead", "-1"), "argument must be between 0 and")
	// The units stay refused without a bound.
	require.NoError(t, c.ConfigSet(ctx, "charon.max-at-ahead", "0").Err())
	require.Contains(t, rtErr(t, c, "CHARON.RESERVE", "hd:{u}:b", "LIMIT", 5, "AT", now*1000), "microseconds")
	require.Contains(t, rtErr(t, c, "CHARON.RATE", "rl:{u}:b", "AT", now/1000, "LIMITS", "5/1s"), "multiply it by 1000")
}

// A replica and the AOF apply what the primary granted, whatever their own bound: a
// primary without a bound grants at AT 2100; the replica (default bound) follows and
// the AOF replays after a restart with the default bound.
func TestAtReplayedNeverRefused(t *testing.T) {
	t.Parallel()
	p, r := harness.StartPrimaryReplica(t, harness.Options{DefaultAtAhead: true, AppendOnly: true})
	pc, rc := p.Client(t, harness.Protocol(2)), r.Client(t, harness.Protocol(2))
	ctx := context.Background()
	require.NoError(t, pc.ConfigSet(ctx, "charon.max-at-ahead", "0").Err())
	for _, args := range atCommands(hdT0)[:4] {
		require.NoError(t, pc.Do(ctx, args...).Err(), "%v", args)
	}
	harness.WaitReplicaSync(t, p, r)
	require.Equal(t, rtDigest(t, pc), rtDigest(t, rc))
	require.Equal(t, int64(5), rtDBSize(t, rc))
	cfg, err := rc.ConfigGet(ctx, "charon.max-at-ahead").Result()
	require.NoError(t, err)
	require.Equal(t, "3600000", cfg["charon.max-at-ahead"])

	d := rtDigest(t, pc)
	p.Restart(t, harness.NoSave) // the config goes back to its default; the AOF replays
	pc = p.Client(t, harness.Protocol(2))
	cfg, err = pc.ConfigGet(ctx, "charon.max-at-ahead").Result()
	require.NoError(t, err)
	require.Equal(t, "3600000", cfg["charon.max-at-ahead"])
	require.Equal(t, d, rtDigest(t, pc), "the AOF replayed every request at AT 2100")
}
