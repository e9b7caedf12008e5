//go:build integration

package tests

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// On the 3-primary cluster: every key is declared (COMMAND GETKEYS, CROSSSLOT),
// concurrent reservers through the cluster client never exceed a limit, and a slot
// migration moves hold keys with equal digests and expiries.
func TestHoldCluster(t *testing.T) {
	t.Parallel()
	cl := harness.StartCluster(t, harness.Options{})
	ctx := context.Background()
	node := cl.Nodes()[0].Client(t, harness.Protocol(2))

	getkeys := func(args ...any) []string {
		t.Helper()
		v, err := node.Do(ctx, append([]any{"COMMAND", "GETKEYS"}, args...)...).StringSlice()
		require.NoError(t, err, "%v", args)
		return v
	}
	require.Equal(t, []string{"hd:{x}:a", "hd:{x}", "hd:{x}:g1", "hd:{x}:g2"},
		getkeys("CHARON.RESERVE", "hd:{x}:a", "LIMIT", 1, "GLOBAL", "hd:{x}", 5, "AT", 7, "GROUP", "hd:{x}:g1", 2, "hd:{x}:g2", 3))
	require.Equal(t, []string{"hd:{x}:a", "hd:{x}:g1", "hd:{x}:g2"},
		getkeys("CHARON.RELEASE", "hd:{x}:a", "00000000000000ff", "GROUP", "hd:{x}:g1", "hd:{x}:g2"))
	require.Equal(t, []string{"hd:{x}:a", "hd:{x}"},
		getkeys("CHARON.TRANSFER", "hd:{x}:a", "00000000000000ff", "TTL", 5, "GLOBAL", "hd:{x}"))

	cc := cl.ClusterClient(t, func(o *redis.ClusterOptions) { o.Protocol = 2; o.PoolSize = 16 })
	// CROSSSLOT for a group key in another slot, through the cluster client.
	err := cc.Do(ctx, "CHARON.RESERVE", "hd:{x}:a", "LIMIT", 1, "GROUP", "hd:{elsewhere}:g", 1).Err()
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "CROSSSLOT"), "%v", err)

	n := hdLoad(t, cc, 2*time.Second, 16, "hd:cl:")
	t.Logf("%d grants through the cluster client", n)
	require.Positive(t, n)

	// Slot migration: build holds far ahead of the clock, move the slot, compare.
	keys := []string{"hd:{mig}:a", "hd:{mig}:b", "hd:{mig}", "hd:{mig}:pool"}
	for i := range 40 {
		hdMust(t, cc, "CHARON.RESERVE", keys[i%2], "MAX", 2, "MIN", 1, "LIMIT", 100, "GLOBAL", keys[2], 200,
			"LEASE", 5000+i, "AT", hdT0+int64(i), "GROUP", keys[3], 150)
	}
	slot := int(cc.ClusterKeySlot(ctx, keys[0]).Val())
	from := cl.NodeForSlot(t, slot)
	fc := from.Client(t, harness.Protocol(2))
	digests, expires := map[string]string{}, map[string]int64{}
	for _, k := range keys {
		digests[k], expires[k] = rtDigestValue(t, fc, k), rtPExpireTime(t, fc, k)
	}
	to := cl.OtherPrimary(t, from)
	cl.MigrateSlot(t, slot, from, to)
	tc := to.Client(t, harness.Protocol(2))
	for _, k := range keys {
		require.Equal(t, digests[k], rtDigestValue(t, tc, k), "%s after migration", k)
		// MIGRATE carries a relative TTL, so the target's absolute expiry may be a few ms
		// later than the source's; never earlier.
		got := rtPExpireTime(t, tc, k)
		require.GreaterOrEqual(t, got, expires[k], "%s expiry after migration", k)
		require.Less(t, got, expires[k]+60_000, "%s expiry after migration", k)
	}
	// The moved holds still count.
	r := hdMust(t, cc, "CHARON.RESERVE", keys[0], "MAX", 200, "MIN", 0, "LIMIT", 1000, "GLOBAL", keys[2], 200, "AT", hdT0+100)
	require.Equal(t, "global", r.str("limited_by"))
	require.Equal(t, int64(200), r.int(t, "global_held"))
}

// A slot that moves away ends the wait with an error that says so: while the slot
// migrates and the keys are gone, the waiter's next wake-up (here its lease timer)
// answers TRYAGAIN; once the slot is served elsewhere, Redis answers MOVED. Nothing is
// granted on the source after its keys left.
func TestHoldBlockSlotMoves(t *testing.T) {
	t.Parallel()
	cl := harness.StartCluster(t, harness.Options{})
	ctx := context.Background()
	cc := cl.ClusterClient(t, func(o *redis.ClusterOptions) { o.Protocol = 2 })

	// Migrating: the holder's lease ends in 1.5 s; by then the key has moved.
	const k1 = "hd:{mv1}:k"
	hdMust(t, cc, "CHARON.RESERVE", k1, "LIMIT", 1, "LEASE", 1500)
	slot := int(cc.ClusterKeySlot(ctx, k1).Val())
	from := cl.NodeForSlot(t, slot)
	to := cl.OtherPrimary(t, from)
	w1 := hdNewConn(t, from)
	ch1 := hdAsync(t, w1, "CHARON.RESERVE", k1, "LIMIT", 1, "BLOCK", 20_000)
	hdWaitFor(t, from, 1)
	m := cl.BeginSlotMigration(t, slot, from, to)
	movedAt := time.Now()
	m.MoveKeys(t, k1)
	r1 := hdRecv(t, ch1)
	t.Logf("answered %v after the move: %v", r1.at.Sub(movedAt), r1.err)
	require.Error(t, r1.err)
	require.True(t, strings.HasPrefix(r1.err.Error(), "TRYAGAIN the slot of this request's keys is moving"), "%v", r1.err)
	require.Equal(t, int64(0), from.Client(t, harness.Protocol(2)).Exists(ctx, k1).Val(), "nothing granted on the source")
	m.Finish(t)

	// Moved: a waiter on another slot (a lease of an hour: no wake-up of its own).
	const k2 = "hd:{mv2}:k"
	hdMust(t, cc, "CHARON.RESERVE", k2, "LIMIT", 1, "LEASE", 3_600_000)
	slot2 := int(cc.ClusterKeySlot(ctx, k2).Val())
	from2 := cl.NodeForSlot(t, slot2)
	w2 := hdNewConn(t, from2)
	ch2 := hdAsync(t, w2, "CHARON.RESERVE", k2, "LIMIT", 1, "BLOCK", 0)
	hdWaitFor(t, from2, 1)
	cl.MigrateSlot(t, slot2, from2, cl.OtherPrimary(t, from2))
	r2 := hdRecv(t, ch2)
	require.Error(t, r2.err)
	require.True(t, strings.HasPrefix(r2.err.Error(), "MOVED "), "%v", r2.err)
	hdWaitFor(t, from2, 0)
}
