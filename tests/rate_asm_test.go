//go:build integration

package tests

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/tests/harness"
)

// moduleOptions returns the options= field of charon's line in INFO modules, e.g.
// "[handle-io-errors]".
func moduleOptions(t *testing.T, s *harness.Server) string {
	t.Helper()
	txt, err := s.Client(t, harness.Protocol(2)).Info(context.Background(), "modules").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(txt, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "module:name=charon,")
		if !ok {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			if o, ok := strings.CutPrefix(f, "options="); ok {
				return o
			}
		}
		t.Fatalf("INFO modules: no options= in %q", line)
	}
	t.Fatalf("INFO modules has no charon line:\n%s", txt)
	return ""
}

// TestRateAtomicSlotMigration: on a server with atomic slot migration (Valkey 9's
// CLUSTER MIGRATESLOTS, which runs only when every module declares it handles it),
// charon declares it and a slot holding a charon-rl key and a sorted set moves with
// both values' digests, expiries and the slot's key count kept; the moved rate key
// then goes on counting on the target. On every other server the module declares
// only what it declared before (the Valkey bit means nothing there).
func TestRateAtomicSlotMigration(t *testing.T) {
	t.Parallel()
	cl := harness.StartCluster(t, harness.Options{})
	ctx := context.Background()
	nodes := cl.Nodes()

	if !cl.HasAtomicSlotMigration(t) {
		for _, s := range nodes {
			require.NotContains(t, moduleOptions(t, s), "atomic-slot-migration", "%s", s.Addr())
		}
		return
	}
	for _, s := range nodes {
		require.Contains(t, moduleOptions(t, s), "|handle-atomic-slot-migration]", "%s", s.Addr())
	}

	rl, zs := "rl:{asm}:alice", "unread:{asm}"
	cc := cl.ClusterClient(t)
	slot := int(cc.ClusterKeySlot(ctx, rl).Val())
	require.Equal(t, int64(slot), cc.ClusterKeySlot(ctx, zs).Val())
	from := cl.NodeForSlot(t, slot)
	to := cl.OtherPrimary(t, from)

	// Ahead of the real clock so nothing expires while the slot moves.
	base := rtNow() + 600_000
	v, err := cc.Do(ctx, rtCmd(rl, base, rtSimple...)...).Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), rtFields(t, v, 3)[0], "granted")
	require.NoError(t, cc.Do(ctx, rtCmd(rl, base+1, rtSimple...)...).Err())
	require.NoError(t, cc.ZAdd(ctx, zs, redis.Z{Score: 1, Member: "a"}, redis.Z{Score: 2.5, Member: "b"}, redis.Z{Score: -3, Member: "c"}).Err())

	src := from.Client(t, harness.Protocol(2))
	wantRL, wantZS := rtDigestValue(t, src, rl), rtDigestValue(t, src, zs)
	wantExp := rtPExpireTime(t, src, rl)
	require.Greater(t, wantExp, int64(0))
	require.Equal(t, int64(2), src.ClusterCountKeysInSlot(ctx, slot).Val())

	require.NoError(t, cl.MigrateSlotAtomic(t, slot, from, to))

	dst := to.Client(t, harness.Protocol(2))
	require.Equal(t, int64(2), dst.ClusterCountKeysInSlot(ctx, slot).Val(), "keys in slot %d on the target", slot)
	require.Equal(t, int64(0), src.ClusterCountKeysInSlot(ctx, slot).Val(), "keys left on the source")
	require.Equal(t, wantRL, rtDigestValue(t, dst, rl), "%s DIGEST-VALUE after the move", rl)
	require.Equal(t, wantZS, rtDigestValue(t, dst, zs), "%s DIGEST-VALUE after the move", zs)
	require.Equal(t, wantExp, rtPExpireTime(t, dst, rl), "%s PEXPIRETIME after the move", rl)

	// The moved value is live: the third hit is counted on the target.
	v, err = cc.Do(ctx, rtCmd(rl, base+2, rtSimple...)...).Result()
	require.NoError(t, err)
	f := rtFields(t, v, 3)
	require.Equal(t, int64(1), f[0], "granted after the move")
	info := rtInspect(t, dst, rl, base+2)
	require.Equal(t, int64(3), rtInt(t, info, "domain_hits"), "hits counted before and after the move")
}
