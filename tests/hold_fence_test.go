//go:build integration

package tests

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// Fencing tokens: the last field of every reply that grants (RESERVE) or seizes
// (SEIZE), in CHARON.INSPECT, growing per key and per resource.
func TestHoldFenceReplies(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	const t0 = hdT0
	a := hdMust(t, c, "CHARON.RESERVE", "hd:{f}:a", "MAX", 2, "LIMIT", 4, "GLOBAL", "hd:{f}", 6, "AT", t0)
	require.Equal(t, t0<<20, a.int(t, "fence"), "t << 20")
	b := hdMust(t, c, "CHARON.RESERVE", "hd:{f}:b", "LIMIT", 4, "GLOBAL", "hd:{f}", 6, "AT", t0)
	require.Equal(t, t0<<20+1, b.int(t, "fence"), "the same millisecond: one more than the resource's last")
	// A rejection and a DRYRUN: 0.
	require.Equal(t, int64(0), hdMust(t, c, "CHARON.RESERVE", "hd:{f}:a", "MAX", 9, "LIMIT", 4, "AT", t0).int(t, "fence"))
	require.Equal(t, int64(0), hdMust(t, c, "CHARON.RESERVE", "hd:{f}:a", "LIMIT", 4, "DRYRUN", "AT", t0).int(t, "fence"))
	// SEIZE fences; TRANSFER, RENEW and RELEASE do not (their replies have no fence).
	x := hdMust(t, c, "CHARON.TRANSFER", "hd:{f}:a", a.str("hold"), "COPIES", 1, "TTL", 100, "GLOBAL", "hd:{f}", "AT", t0+1)
	sz := hdMust(t, c, "CHARON.SEIZE", "hd:{f}:a", x.str("hold"), "GLOBAL", "hd:{f}", "AT", t0+2)
	require.Equal(t, (t0+2)<<20, sz.int(t, "fence"))
	sz2 := hdMust(t, c, "CHARON.SEIZE", "hd:{f}:a", x.str("hold"), "GLOBAL", "hd:{f}", "AT", t0+2)
	require.Equal(t, (t0+2)<<20+1, sz2.int(t, "fence"), "a seize is a new holder: a new fence")
	// INSPECT shows the key's fence.
	require.Equal(t, (t0+2)<<20+1, rtInspect(t, c, "hd:{f}:a", t0+3)["fence"])
	require.Equal(t, (t0+2)<<20+1, rtInspect(t, c, "hd:{f}", t0+3)["fence"])
	require.Equal(t, t0<<20+1, rtInspect(t, c, "hd:{f}:b", t0+3)["fence"])

	// RESP3: a map, fence included.
	c3 := s.Client(t, harness.Protocol(3))
	m, err := c3.Do(ctx, "CHARON.RESERVE", "hd:{f}:c", "LIMIT", 1, "GLOBAL", "hd:{f}", 6, "AT", t0+3).Result()
	require.NoError(t, err)
	mm := m.(map[any]any)
	require.Len(t, mm, len(hdReserveFields))
	require.Equal(t, (t0+3)<<20, mm["fence"])
	m, err = c3.Do(ctx, "CHARON.SEIZE", "hd:{f}:a", x.str("hold"), "AT", t0+3).Result()
	require.NoError(t, err)
	require.Equal(t, (t0+3)<<20, m.(map[any]any)["fence"], "only hd:{f}:a is named: its fence is behind t << 20")

	// A lock released in the millisecond of its grant keeps its key one more
	// millisecond, so the next grant in that millisecond gets a larger fence.
	l := hdMust(t, c, "CHARON.RESERVE", "hd:{l}", "LIMIT", 1, "AT", t0)
	hdMust(t, c, "CHARON.RELEASE", "hd:{l}", l.str("hold"), "AT", t0)
	require.Equal(t, t0+1, rtPExpireTime(t, c, "hd:{l}"))
	l2 := hdMust(t, c, "CHARON.RESERVE", "hd:{l}", "LIMIT", 1, "AT", t0)
	require.Equal(t, l.int(t, "fence")+1, l2.int(t, "fence"))
}

// holdFences grants n single copies on the resource with the server's clock
// (pipelined) and returns their fences in order.
func holdFences(t *testing.T, c *redis.Client, n int) []int64 {
	t.Helper()
	ctx := context.Background()
	out := make([]int64, 0, n)
	for done := 0; done < n; done += 1000 {
		pipe := c.Pipeline()
		cmds := make([]*redis.Cmd, 0, 1000)
		for i := done; i < min(done+1000, n); i++ {
			cmds = append(cmds, pipe.Do(ctx, "CHARON.RESERVE", "hd:{fx}:d"+string(rune('a'+i%4)), "LIMIT", 1_000_000_000,
				"GLOBAL", "hd:{fx}", 1_000_000_000, "LEASE", 3_600_000))
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
		for _, cmd := range cmds {
			v, err := cmd.Slice()
			require.NoError(t, err)
			require.Len(t, v, len(hdReserveFields))
			f, ok := v[8].(int64)
			require.True(t, ok && f > 0, "fence %#v", v[8])
			out = append(out, f)
		}
	}
	for i := 1; i < len(out); i++ {
		require.Greater(t, out[i], out[i-1], "fences of one resource grow")
	}
	return out
}

// Fences keep growing across DEBUG RELOAD, an AOF rewrite + restart, and a failover
// that lost the primary's last grants (the replica was stopped before them): 100,000
// grants, every fence after each event above every fence before it, lost ones
// included. Real clock, no AT.
func TestHoldFenceAcrossRestarts(t *testing.T) {
	t.Parallel()
	p, r := harness.StartPrimaryReplica(t, harness.Options{AppendOnly: true})
	pc := p.Client(t, harness.Protocol(2))
	ctx := context.Background()
	var last int64
	phase := func(name string, c *redis.Client, n int) {
		f := holdFences(t, c, n)
		require.Greater(t, f[0], last, "%s: the first fence is above every fence before", name)
		t.Logf("%-40s %6d grants, fences %d .. %d (first - previous last = %d)", name, n, f[0], f[len(f)-1], f[0]-last)
		last = f[len(f)-1]
	}
	phase("start", pc, 25_000)
	require.NoError(t, pc.Do(ctx, "DEBUG", "RELOAD").Err())
	phase("after DEBUG RELOAD", pc, 25_000)
	require.NoError(t, pc.BgRewriteAOF(ctx).Err())
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		m := p.Info(t, "persistence")
		return m["aof_rewrite_in_progress"] == "0" && m["aof_rewrite_scheduled"] == "0", "rewrite running"
	})
	p.Restart(t, harness.NoSave)
	phase("after BGREWRITEAOF + restart", pc, 25_000)
	harness.WaitReplicaSync(t, p, r)

	// The replica stops; the primary grants 5,000 more, then dies: they are lost.
	require.NoError(t, syscall.Kill(r.PID(), syscall.SIGSTOP))
	phase("on the primary, never replicated", pc, 5_000)
	p.Kill(t)
	require.NoError(t, syscall.Kill(r.PID(), syscall.SIGCONT))
	rc := r.Client(t, harness.Protocol(2))
	require.NoError(t, rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err())
	phase("after the failover", rc, 20_000)
}
