//go:build integration

package tests

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/tests/harness"
)

// TestRateSaturatedCountsLoad replays the fuzzers' reproduction: hits merged at one
// millisecond saturate a stored count at 2^46. Before the fix the running sums kept
// the uncapped total: after round 71 the key answered "corrupt value", DEBUG RELOAD
// dropped it and a server that saved it refused to start. Now every grant is
// answered, and the key survives DEBUG RELOAD, DUMP/RESTORE and SAVE + restart with
// the same digest.
func TestRateSaturatedCountsLoad(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t)
	ctx := context.Background()
	at := rtNow() + 1_800_000 // one millisecond for every round, half an hour ahead
	const key, gkey = "rl:{sat}:a", "rl:{sat}:g"
	for r := 1; r <= 100; r++ {
		f := rtRate(t, c, 3, rtCmd(key, at, "MAX", "1000000000000", "MIN", "1",
			"TIER", strconv.Itoa(r-1), "1000", "1000", "0", "TIER", "1000000000000", "1000", "1000", "0")...)
		require.Positive(t, f[rate.FieldGranted], "round %d: pump", r)
		f = rtRate(t, c, 3, rtCmd(key, at, "MAX", "1", "GLOBAL", gkey, "1000000000000",
			"TIER", strconv.Itoa(r), "1000", "1000", "0")...)
		require.Equal(t, int64(1), f[rate.FieldGranted], "round %d: the key keeps answering", r)
	}
	// The detached slot is saturated: the second log holds far more than 2^46 hits.
	hits := rtInt(t, rtInspect(t, c, key, at), "domain_hits")
	require.GreaterOrEqual(t, hits, int64(rate.MaxStoredCount), "second log hits")

	digest := rtDigestValue(t, c, key)
	require.NoError(t, c.Do(ctx, "DEBUG", "RELOAD").Err())
	require.Equal(t, digest, rtDigestValue(t, c, key), "DEBUG RELOAD")

	dump, err := c.Dump(ctx, key).Result()
	require.NoError(t, err)
	require.NoError(t, c.Restore(ctx, key+":restored", 0, dump).Err(), "RESTORE of a saturated value")
	require.Equal(t, rtValueOf(t, c, key), rtValueOf(t, c, key+":restored"), "RESTORE")

	s.Restart(t, harness.Save)
	require.Equal(t, digest, rtDigestValue(t, c, key), "SAVE + restart")
	f := rtRate(t, c, 3, rtCmd(key, at, "MAX", "1", "TIER", "1000000000000", "1000", "1000", "0")...)
	require.Equal(t, int64(1), f[rate.FieldGranted], "after the restart")
}
