//go:build integration

package tests

import (
	"context"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/tests/harness"
)

// TestRateCapsMemory: a key with caps 1000/1h and 10000/1d, hit for 24 hours (AT
// driven), stays within a few KB: a cap holds at most about 1,000 buckets whatever the
// traffic. Once per second with one hit, and once per second with 100 hits.
func TestRateCapsMemory(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t)
	ctx := context.Background()
	for _, tc := range []struct {
		key, max, limits string
		wantMin          int64
	}{
		{"rl:{mem}:one", "1", "1000000/1s; 1000/1h, 10000/1d", 10_000},
		{"rl:{mem}:hundred", "100", "1000000/1s; 1000/1h, 10000/1d", 10_000},
		// Caps that never bind: every bucket of both caps holds hits (the worst case).
		{"rl:{mem}:full", "100", "1000000/1s; 1000000/1h, 100000000/1d", 8_640_000},
	} {
		base := rtNow() - 86_400_000 // a day ago, so that the key lives on after the test
		var granted int64
		var peak int64
		const day = 86_400
		for done := 0; done < day; {
			pipe := c.Pipeline()
			var cmds []*redis.Cmd
			for i := 0; i < 2000 && done < day; i, done = i+1, done+1 {
				cmds = append(cmds, pipe.Do(ctx, "CHARON.RATE", tc.key, "MAX", tc.max, "MIN", "1",
					"AT", strconv.FormatInt(base+int64(done)*1000, 10), "LIMITS", tc.limits))
			}
			_, err := pipe.Exec(ctx)
			require.NoError(t, err)
			for _, cmd := range cmds {
				granted += rtFields(t, cmd.Val(), 3)[rate.FieldGranted]
			}
			mem, err := c.MemoryUsage(ctx, tc.key).Result()
			require.NoError(t, err)
			peak = max(peak, mem)
		}
		info := rtInspect(t, c, tc.key, base+day*1000)
		t.Logf("%s: %d hits granted in 24 h, MEMORY USAGE peak %d B, %d B at the end (%d value bytes)",
			tc.key, granted, peak, c.MemoryUsage(ctx, tc.key).Val(), rtInt(t, info, "bytes"))
		require.LessOrEqual(t, peak, int64(8192), "%s: MEMORY USAGE", tc.key)
		// The caps held: 10,000 in the day (1,000 an hour for ten hours).
		require.Equal(t, tc.wantMin, granted, "%s: granted", tc.key)
	}
}
