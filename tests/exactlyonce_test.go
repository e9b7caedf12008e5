//go:build integration

package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/ratelimit"
	"github.com/charon-redis/charon/tests/harness"
)

// Exactly once under faults: the Limiter behind a proxy that loses 5% of the server's
// writes (each the replies to one round trip) and resets connections (1% of the
// writes either way). 100,000 decisions (Min = Max = 1, 50 goroutines) on 1,000 keys
// limited to 80 an hour, so most keys see grants and rejections. Afterwards the
// server's count of each key must equal the grants the callers saw: nothing counted
// twice (a lost answer is asked again with the same ONCE token, and the server
// answers the replay without counting it), nothing lost. A request whose every
// attempt lost its answer is ErrOutcomeUnknown (counted at most once, maybe not at
// all): those must stay under 0.1%. CHARON_FAULT_ROUNDS repeats the run (default 1);
// CHARON_FAULT_DECISIONS sizes it.
func TestExactlyOnceUnderFaults(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	rounds := envInt("CHARON_FAULT_ROUNDS", 1)
	decisions := envInt("CHARON_FAULT_DECISIONS", 100000)
	const keys, limit, goroutines = 1000, 80, 50
	direct := s.Client(t)
	var unknownRates []float64
	for round := range rounds {
		proxy := startFaultProxy(t, s.Addr(), 0.05, 0.01, uint64(round)+1)
		// The go-redis options docs/go-client.md recommends for a limiter's client.
		rdb := redis.NewClient(&redis.Options{
			Addr:                     proxy.Addr(),
			DialerRetries:            1,
			DialerRetryTimeout:       time.Millisecond,
			MaxRetries:               -1,
			ContextTimeoutEnabled:    true,
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
		l := ratelimit.NewLimiter(rdb, nil)
		res := ratelimit.PerHour(fmt.Sprintf("faults%d", round), limit)

		type tally struct{ granted, rejected, unknown int }
		perKey := make([]tally, keys)
		var mu sync.Mutex
		var others []error
		began := time.Now()
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rnd := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for range decisions / goroutines {
					k := rnd.IntN(keys)
					r, err := l.Allow(context.Background(), res, strconv.Itoa(k))
					mu.Lock()
					switch {
					case err == nil && r.Override == ratelimit.OverrideNone && r.Granted == 1:
						perKey[k].granted++
					case err == nil && r.Override == ratelimit.OverrideNone && r.Granted == 0:
						perKey[k].rejected++
					case errors.Is(err, ratelimit.ErrOutcomeUnknown):
						perKey[k].unknown++
					default:
						others = append(others, fmt.Errorf("%+v: %w", r, err))
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(began)
		_ = rdb.Close()

		var granted, rejected, unknown, recorded, twice, lost int
		now := time.Now().UnixMilli()
		for k := range keys {
			key, _ := l.Keys(res, strconv.Itoa(k))
			used := int(rlcUsed(t, direct, key, res, limit, now))
			recorded += used
			tk := perKey[k]
			granted += tk.granted
			rejected += tk.rejected
			unknown += tk.unknown
			if used > tk.granted+tk.unknown {
				twice += used - tk.granted - tk.unknown
			}
			if used < tk.granted {
				lost += tk.granted - used
			}
		}
		writes, drops, resets := proxy.stats()
		unknownRates = append(unknownRates, float64(unknown)/float64(decisions))
		t.Logf("round %d: %d decisions in %v: %d granted, %d rejected, %d outcome unknown (%.4f%%), %d other errors; "+
			"Redis recorded %d hits: %d counted twice, %d lost; proxy: %d server writes, %d lost, %d resets",
			round+1, decisions, elapsed.Round(time.Millisecond), granted, rejected, unknown, 100*unknownRates[round], len(others),
			recorded, twice, lost, writes, drops, resets)
		for i, e := range others {
			if i == 5 {
				break
			}
			t.Logf("other error: %v", e)
		}
		require.Zero(t, twice, "hits counted twice")
		require.Zero(t, lost, "grants the server did not record")
		require.LessOrEqual(t, recorded, granted+unknown)
		require.GreaterOrEqual(t, recorded, granted)
		require.LessOrEqual(t, unknown*1000, decisions, "ErrOutcomeUnknown <= 0.1%%")
		require.Zero(t, len(others), "every decision is an answer or ErrOutcomeUnknown")
		require.Positive(t, rejected, "the limits were reached")
		require.Greater(t, drops, int64(decisions/1000), "the proxy lost answers")
		require.Positive(t, resets, "the proxy reset connections")
	}
	if rounds > 1 {
		slices.Sort(unknownRates)
		t.Logf("ErrOutcomeUnknown over %d rounds: min %.4f%%, median %.4f%%, max %.4f%%", rounds,
			100*unknownRates[0], 100*unknownRates[rounds/2], 100*unknownRates[rounds-1])
	}
}
