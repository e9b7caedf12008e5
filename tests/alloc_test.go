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

// TestNoGoAllocations: inside the server, the commands allocate nothing in Go on any
// answered path, so the Go GC has nothing to do while Redis serves requests:
// CHARON.RATE (grant, DRYRUN, rejection, CLOSED, GLOBAL, both forms, a value
// outgrowing its block, caps, ONCE grants and replays), CHARON.RESERVE/RENEW/RELEASE (ONCE grants and replays
// included) and UNREAD.*, over RESP2 and
// RESP3. The unit tests count the engines' allocations; this counts whole commands,
// the cgo crossing included, with the Go runtime's own counter (INFO
// charon_heap_allocs, runtime.MemStats.Mallocs). It found a hold id that escaped to
// the heap on every CHARON.RESERVE grant.
func TestNoGoAllocations(t *testing.T) {
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
		func(i int) []any { // caps, exact and bucketed, per domain and global; a fresh ONCE token
			return []any{"CHARON.RATE", "na:{k}:" + strconv.Itoa(i%40), "ONCE", "r" + strconv.Itoa(i), "GLOBAL", "na:{k}:global",
				"1000000/1s, 100000000/1h", "LIMITS", "1000/1s; 500/200ms, 10000/1m, 100000/1d"}
		},
		func(i int) []any { // a ONCE replay
			return []any{"CHARON.RATE", "na:{k}:replay", "ONCE", "same", "LIMITS", "1000/1s; 10000/1m"}
		},
		func(i int) []any {
			return []any{"CHARON.RESERVE", "nh:{g}:" + strconv.Itoa(i%300), "MAX", 1, "LIMIT", 1000000, "GLOBAL", "nh:{g}", 100000000, "LEASE", 600000}
		},
		func(i int) []any {
			return []any{"CHARON.RESERVE", "nh:{f}:full", "MAX", 1, "LIMIT", 1, "LEASE", 600000}
		},
		func(i int) []any { // ONCE: a grant that remembers its token (the ring grows), and replays
			return []any{"CHARON.RESERVE", "nh:{o}:" + strconv.Itoa(i%20), "LIMIT", 1000000, "LEASE", 600000, "ONCE", "t" + strconv.Itoa(i)}
		},
		func(i int) []any {
			return []any{"CHARON.RESERVE", "nh:{o}:replay", "LIMIT", 1000000, "LEASE", 600000, "ONCE", "same"}
		},
		func(i int) []any {
			return []any{"UNREAD.MARK", "nu:{u}:" + strconv.Itoa(i%300), "c" + strconv.Itoa(i%7), 1}
		},
		func(i int) []any {
			return []any{"UNREAD.READ", "nu:{u}:" + strconv.Itoa(i%300), "c" + strconv.Itoa(i%5)}
		},
		func(i int) []any { return []any{"UNREAD.COUNT", "nu:{u}:1", "nu:{u}:2", "nu:{u}:3", "nu:{u}:missing"} },
	}
	// Holds to renew and release inside the measured window, taken before it.
	reserve := func(c *redis.Client, n int) []string {
		pipe := c.Pipeline()
		for i := 0; i < n; i++ {
			pipe.Do(ctx, "CHARON.RESERVE", "nh:{r}:"+strconv.Itoa(i%100), "MAX", 1, "LIMIT", 1000000, "LEASE", 600000)
		}
		cmds, err := pipe.Exec(ctx)
		require.NoError(t, err)
		ids := make([]string, n)
		for i, cmd := range cmds {
			switch v := cmd.(*redis.Cmd).Val().(type) {
			case []any:
				ids[i] = v[1].(string)
			case map[any]any:
				ids[i] = v["hold"].(string)
			}
			require.NotEmpty(t, ids[i], "RESERVE reply %v", cmd)
		}
		return ids
	}
	renewRelease := func(c *redis.Client, ids []string) {
		pipe := c.Pipeline()
		for i, id := range ids {
			key := "nh:{r}:" + strconv.Itoa(i%100)
			pipe.Do(ctx, "CHARON.RENEW", key, id, "LEASE", 600000)
			pipe.Do(ctx, "CHARON.RELEASE", key, id)
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
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
	renewRelease(resp2, reserve(resp2, 400))
	renewRelease(resp3, reserve(resp3, 400))
	held2, held3 := reserve(resp2, 2000), reserve(resp3, 2000)
	before := allocs()
	run(2000)
	renewRelease(resp2, held2)
	renewRelease(resp3, held3)
	after := allocs()
	requests := int64(2*len(shapes)*2000 + 2*2*2000)
	// A few objects of slack for the runtime's own bookkeeping; one allocation per
	// request would be tens of thousands.
	require.LessOrEqual(t, after-before, int64(16), "%d Go allocations in %d requests", after-before, requests)
	t.Logf("%d Go heap allocations in %d requests", after-before, requests)
}
