//go:build integration

package tests

import (
	"context"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/tests/harness"
)

// TestRateNoGoAllocations: inside the server, CHARON.RATE allocates nothing in Go on
// any answered path (grant, DRYRUN, rejection, CLOSED, GLOBAL, both forms, RESP2 and
// RESP3, a value outgrowing its block), so the Go GC has nothing to do while Redis
// serves requests. The unit tests count the engine's allocations; this counts the
// whole command, the cgo crossing and the frame included, with the Go runtime's own
// counter (INFO charon_heap_allocs, runtime.MemStats.Mallocs).
func TestRateNoGoAllocations(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	resp2 := s.Client(t, func(o *redis.Options) { o.Protocol = 2 })
	resp3 := s.Client(t, func(o *redis.Options) { o.Protocol = 3 })
	limits := "10/1s, 50/5s/5s/15s, 1000/1m/1m/10m"
	tiers := []any{"TIER", "10", "1000", "1000", "0", "TIER", "50", "5000", "5000", "15000"}
	base := rtNow()
	shapes := []func(i int) []any{
		func(i int) []any { // grants on new and existing keys
			return []any{"CHARON.RATE", "na:{a}:" + strconv.Itoa(i%300), "LIMITS", limits}
		},
		func(i int) []any {
			return append([]any{"CHARON.RATE", "na:{b}:" + strconv.Itoa(i%300), "MAX", 2}, tiers...)
		},
		func(i int) []any { // one key that keeps growing: distinct ms, a 10-year window
			return []any{"CHARON.RATE", "na:{c}:grow", "AT", base + int64(i), "LIMITS", "1000000000/3650d"}
		},
		func(i int) []any {
			return []any{"CHARON.RATE", "na:{d}:" + strconv.Itoa(i%50), "GLOBAL", "na:{d}:global", 1000000, "LIMITS", limits}
		},
		func(i int) []any {
			return []any{"CHARON.RATE", "na:{a}:" + strconv.Itoa(i%300), "DRYRUN", "LIMITS", limits}
		},
		func(i int) []any { // rejected after the first hit
			return []any{"CHARON.RATE", "na:{e}:reject", "LIMITS", "1/1h"}
		},
		func(i int) []any { return []any{"CHARON.RATE", "na:{f}:closed", "CLOSED"} },
	}
	run := func(n int) {
		for _, c := range []*redis.Client{resp2, resp3} {
			for _, shape := range shapes {
				pipe := c.Pipeline()
				for i := 0; i < n; i++ {
					pipe.Do(ctx, shape(i)...)
				}
				cmds, err := pipe.Exec(ctx)
				require.NoError(t, err)
				require.Len(t, cmds, n)
			}
		}
	}
	allocs := func() int64 {
		v, err := strconv.ParseInt(charonInfo(t, s)["heap_allocs"], 10, 64)
		require.NoError(t, err)
		return v
	}
	run(400) // scratch buffers, the parse cache and the argument views reach their size
	before := allocs()
	run(2000)
	after := allocs()
	requests := int64(2 * len(shapes) * 2000)
	// A few objects of slack for the runtime's own bookkeeping; one allocation per
	// request would be 28,000.
	require.LessOrEqual(t, after-before, int64(16), "%d Go allocations in %d requests", after-before, requests)
	t.Logf("%d Go heap allocations in %d requests", after-before, requests)
}
