//go:build integration

package tests

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// replOffset is the primary's replication offset: it moves with anything propagated.
func replOffset(t *testing.T, s *harness.Server) string {
	t.Helper()
	return s.Info(t, "replication")["master_repl_offset"]
}

// ONCE on RESERVE and TRANSFER: a retry with the same token returns the original reply
// unchanged (same hold, fence, deadline), counts nothing and writes nothing (no
// propagation, no signal: another client's WATCH survives), until t0 + 10000 ms
// inclusive; a rejection, a DRYRUN and an error remember nothing.
func TestHoldOnce(t *testing.T) {
	t.Parallel()
	p, r := harness.StartPrimaryReplica(t, harness.Options{})
	c := p.Client(t, harness.Protocol(2))
	ctx := context.Background()
	const t0 = hdT0
	reserve := func(at int64, tok string, extra ...any) []any {
		return append([]any{"CHARON.RESERVE", "hd:{o}:a", "MAX", 2, "LIMIT", 3, "GLOBAL", "hd:{o}", 5, "LEASE", 60_000,
			"ONCE", tok, "AT", at}, extra...)
	}
	first := hdMust(t, c, reserve(t0, "job-1")...)
	require.Equal(t, int64(2), first.int(t, "granted"))
	harness.WaitReplicaSync(t, p, r)

	// Replays: another client WATCHes the keys; nothing is propagated or signalled.
	w := p.Client(t, harness.Protocol(2))
	digest, off := rtDigest(t, c), replOffset(t, p)
	err := w.Watch(ctx, func(tx *redis.Tx) error {
		for _, at := range []int64{t0, t0 + 1, t0 + 9_999, t0 + 10_000} {
			got := hdMust(t, c, reserve(at, "job-1")...)
			require.Equal(t, first, got, "replay at t0+%d", at-t0)
		}
		// Other arguments, even DRYRUN: the token decides.
		require.Equal(t, first, hdMust(t, c, "CHARON.RESERVE", "hd:{o}:a", "LIMIT", 1, "ONCE", "job-1", "DRYRUN", "AT", t0+5))
		require.Equal(t, digest, rtDigest(t, c))
		// Nothing propagated: the offset moves at most by a PING the primary may send
		// its replica meanwhile (14 bytes; a propagated RESERVE is over 100).
		require.Less(t, rtNum(t, replOffset(t, p))-rtNum(t, off), int64(50), "replays propagate nothing")
		_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, "hd:{o}:marker", "1", 0)
			return nil
		})
		return err
	}, "hd:{o}:a", "hd:{o}")
	require.NoError(t, err, "a replay must not abort a WATCH")
	require.NoError(t, c.Del(ctx, "hd:{o}:marker").Err())

	// RESP3 replays the same map.
	c3 := p.Client(t, harness.Protocol(3))
	m, err := c3.Do(ctx, reserve(t0+10, "job-1")...).Result()
	require.NoError(t, err)
	mm := m.(map[any]any)
	for _, n := range hdReserveFields {
		require.Equal(t, first[n], mm[n], n)
	}

	// INSPECT lists the remembered token (by its hash) and when it is forgotten.
	info := rtInspect(t, c, "hd:{o}:a", t0+100)
	once, ok := info["once"].([]any)
	require.True(t, ok, "%#v", info["once"])
	require.Len(t, once, 1)
	tok, err := harness.ReplyMap(once[0])
	require.NoError(t, err)
	require.Equal(t, "CHARON.RESERVE", tok["command"])
	require.Equal(t, first.str("hold"), tok["hold"])
	require.Equal(t, t0, tok["at"])
	require.Equal(t, int64(10_000+1-100), tok["forgotten_in"])

	// A rejection remembers nothing: the same token later grants.
	rej := hdMust(t, c, "CHARON.RESERVE", "hd:{o}:b", "LIMIT", 0, "ONCE", "job-2", "AT", t0)
	require.Equal(t, int64(0), rej.int(t, "granted"))
	g := hdMust(t, c, "CHARON.RESERVE", "hd:{o}:b", "LIMIT", 1, "ONCE", "job-2", "AT", t0)
	require.Equal(t, int64(1), g.int(t, "granted"))
	// The token is the key's: another key grants anew.
	o := hdMust(t, c, "CHARON.RESERVE", "hd:{o}:c", "LIMIT", 1, "ONCE", "job-2", "AT", t0)
	require.NotEqual(t, g.str("hold"), o.str("hold"))

	// One millisecond after the window the token is forgotten: a new grant.
	later := hdMust(t, c, reserve(t0+10_001, "job-1", "MIN", 1)...)
	require.Equal(t, int64(1), later.int(t, "granted"))
	require.NotEqual(t, first.str("hold"), later.str("hold"))
	require.Greater(t, later.int(t, "fence"), first.int(t, "fence"))

	// The key lives as long as a token may be replayed, even with no hold left.
	k := hdMust(t, c, "CHARON.RESERVE", "hd:{o}:short", "LIMIT", 1, "LEASE", 5, "ONCE", "x", "AT", t0)
	hdMust(t, c, "CHARON.RELEASE", "hd:{o}:short", k.str("hold"), "AT", t0+1)
	require.Equal(t, t0+10_001, rtPExpireTime(t, c, "hd:{o}:short"))
	require.Equal(t, k, hdMust(t, c, "CHARON.RESERVE", "hd:{o}:short", "LIMIT", 1, "ONCE", "x", "AT", t0+2))

	// TRANSFER: its own reply; a RESERVE's token cannot answer a TRANSFER.
	x := hdMust(t, c, "CHARON.TRANSFER", "hd:{o}:a", later.str("hold"), "COPIES", 1, "TTL", 500, "GLOBAL", "hd:{o}", "ONCE", "hand-1", "AT", t0+10_002)
	require.Equal(t, x, hdMust(t, c, "CHARON.TRANSFER", "hd:{o}:a", later.str("hold"), "COPIES", 1, "TTL", 500, "GLOBAL", "hd:{o}", "ONCE", "hand-1", "AT", t0+10_003))
	require.Contains(t, rtErr(t, c, "CHARON.TRANSFER", "hd:{o}:a", later.str("hold"), "TTL", 5, "ONCE", "job-1", "AT", t0+10_003),
		"ERR ONCE: this token already answered a CHARON.RESERVE on this key")

	// Tokens: 1..64 bytes; not on RELEASE, RENEW, SEIZE.
	for _, args := range [][]any{
		{"CHARON.RESERVE", "hd:{o}:e", "LIMIT", 1, "ONCE", ""},
		{"CHARON.RESERVE", "hd:{o}:e", "LIMIT", 1, "ONCE", string(make([]byte, 65))},
		{"CHARON.RESERVE", "hd:{o}:e", "LIMIT", 1, "ONCE"},
	} {
		require.Contains(t, rtErr(t, c, args...), "ERR ONCE:")
	}
	require.Contains(t, rtErr(t, c, "CHARON.RELEASE", "hd:{o}:a", later.str("hold"), "ONCE", "z"), "ERR syntax:")

	// The replica remembers what the primary remembers.
	harness.WaitReplicaSync(t, p, r)
	require.Equal(t, rtDigest(t, c), rtDigest(t, r.Client(t, harness.Protocol(2))))
}

func rtNum(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err)
	return n
}

// A remembered token survives DEBUG RELOAD, an AOF rewrite + restart, and a failover
// (the replica remembers it); the replay there returns the original reply.
func TestHoldOnceSurvives(t *testing.T) {
	t.Parallel()
	p, r := harness.StartPrimaryReplica(t, harness.Options{AppendOnly: true})
	c := p.Client(t, harness.Protocol(2))
	ctx := context.Background()
	at := rtNow() // the real clock: the window is real time
	args := func(tok string) []any {
		return []any{"CHARON.RESERVE", "hd:{os}:a", "LIMIT", 10, "GLOBAL", "hd:{os}", 10, "ONCE", tok, "AT", at}
	}
	a := hdMust(t, c, args("reload")...)
	require.NoError(t, c.Do(ctx, "DEBUG", "RELOAD").Err())
	require.Equal(t, a, hdMust(t, c, args("reload")...), "after DEBUG RELOAD")

	b := hdMust(t, c, args("aof")...)
	require.NoError(t, c.BgRewriteAOF(ctx).Err())
	harness.Eventually(t, time.Minute, func() (bool, string) {
		m := p.Info(t, "persistence")
		return m["aof_rewrite_in_progress"] == "0" && m["aof_rewrite_scheduled"] == "0", "rewrite running"
	})
	p.Restart(t, harness.NoSave)
	require.Equal(t, b, hdMust(t, c, args("aof")...), "after BGREWRITEAOF + restart")
	require.Equal(t, a, hdMust(t, c, args("reload")...), "after BGREWRITEAOF + restart")

	f := hdMust(t, c, args("failover")...)
	harness.WaitReplicaSync(t, p, r)
	p.Kill(t)
	rc := r.Client(t, harness.Protocol(2))
	require.NoError(t, rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err())
	require.Equal(t, f, hdMust(t, rc, args("failover")...), "on the promoted replica")
	require.Equal(t, b, hdMust(t, rc, args("aof")...), "on the promoted replica")
	info := rtInspect(t, rc, "hd:{os}:a", at+1)
	require.Len(t, info["once"], 3)
}
