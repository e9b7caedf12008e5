//go:build integration

package tests

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/tests/harness"
)

// TestRateMemoryGrowth: a key's MEMORY USAGE follows distinct hit times, at a few
// bytes each: at most 400 B for 100 distinct-ms hits spread over a 50-minute window,
// at most 4 B for each further distinct hit, and nothing for more hits at a time
// already stored.
func TestRateMemoryGrowth(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t)
	ctx := context.Background()
	tier := []string{"TIER", "1000000", "3600000", "3600000", "0"}
	fill := func(key string, n int, step int64, max string) int64 {
		t.Helper()
		base := rtNow()
		pipe := c.Pipeline()
		for i := range n {
			pipe.Do(ctx, append(rtCmd(key, base+int64(i)*step, tier...), "MAX", max)...)
		}
		cmds, err := pipe.Exec(ctx)
		require.NoError(t, err)
		for i, cmd := range cmds {
			require.Positive(t, rtFields(t, cmd.(*redis.Cmd).Val(), 3)[0], "hit %d", i)
		}
		info := rtInspect(t, c, key, base+int64(n-1)*step)
		require.Equal(t, int64(n), rtInt(t, info, "events"), "one event per distinct millisecond")
		mem, err := c.MemoryUsage(ctx, key).Result()
		require.NoError(t, err)
		t.Logf("%s: %d distinct ms %d ms apart, MAX %s: %d bytes encoded, MEMORY USAGE %d", key, n, step, max, rtInt(t, info, "bytes"), mem)
		return mem
	}
	// 100 distinct ms over 50 minutes.
	m100 := fill("rl:{g}:100", 100, 30_000, "1")
	require.LessOrEqual(t, m100, int64(400))
	// 1,000 distinct ms over the same 50 minutes: at most 4 B per further hit time.
	m1000 := fill("rl:{g}:1000", 1000, 3_000, "1")
	require.LessOrEqual(t, m1000-m100, int64(4*900), "%d B for 900 more distinct ms", m1000-m100)
	// 450 times more hits at the same distinct ms cost at most 2 bytes of count each.
	mTwo := fill("rl:{g}:two", 100, 30_000, "2")
	mMany := fill("rl:{g}:many", 100, 30_000, "900")
	require.LessOrEqual(t, mMany-mTwo, int64(2*100+64))
}
