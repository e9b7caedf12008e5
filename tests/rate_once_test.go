//go:build integration

package tests

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/tests/harness"
)

// ONCE (rule 11) and windowed caps (rule 10) on real servers: a replay writes nothing
// and signals nothing; remembered tokens and caps replicate with the grant, survive
// DEBUG RELOAD, an AOF restart and a failover, and a replay on the new primary answers
// as the old one did.

func TestRateOnceReplayWritesNothing(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	p := nwStartProbe(t, s)
	base := rtNow() + 60_000
	const k, g = "rl:{o}:k", "rl:{o}"
	req := func(at int64, tok string) []any {
		return rtCmd(k, at, "MAX", "2", "ONCE", tok, "GLOBAL", g, "100/1s,1000/1h", "LIMITS", "10/1s;50/1m")
	}
	keys := []string{k, g}
	p.check(t, "grant with ONCE", keys, nwGranted(t, 2, req(base, "t1")...),
		"invalidate "+k, "charon.rate "+k, "invalidate "+g, "charon.rate "+g)
	p.check(t, "replay", keys, nwGranted(t, 2, req(base+5, "t1")...))
	p.check(t, "replay at +10000", keys, nwGranted(t, 2, req(base+10_000, "t1")...))
	require.Equal(t, "2", s.Info(t, "charon_rate")["charon_rate_replays"])
	// The replays counted nothing: 2 hits in the window, not 6.
	f := rtRate(t, p.ctl, 3, req(base+10, "t2")...)
	require.Equal(t, int64(4), f[rate.FieldTierHits], "a new token counts")
}

func TestRateOnceAndCapsSurvive(t *testing.T) {
	t.Parallel()
	opts := harness.Options{AppendOnly: true, Config: []string{"aof-use-rdb-preamble no"}}
	primary, replica := harness.StartPrimaryReplica(t, opts)
	pc, rc := primary.Client(t), replica.Client(t)
	ctx := context.Background()
	base := rtNow() + 120_000
	type grant struct {
		key, tok string
		at       int64
		reply    rtF
	}
	var grants []grant
	for i := range 60 {
		key := fmt.Sprintf("rl:{s}:%d", i%6)
		tok := "tok-" + strconv.Itoa(i)
		at := base + int64(i*37)
		f := rtRate(t, pc, 3, rtCmd(key, at, "MAX", "3", "MIN", "1", "ONCE", tok, "CAP", "40", "500", "CAP", "25", "3600000",
			"GLOBAL", "rl:{s}", "1000/1s,100/1d", "LIMITS", "100/1s")...)
		if f[rate.FieldGranted] > 0 {
			grants = append(grants, grant{key, tok, at, f})
		}
	}
	require.NotEmpty(t, grants)
	harness.WaitReplicaSync(t, primary, replica)
	want := rtSnap(t, pc)
	rtSameSnap(t, want, rtSnap(t, rc), false, "replica")

	replays := func(what string, c rtConn) {
		t.Helper()
		for _, g := range grants {
			got := rtFields(t, c.Do(ctx, rtCmd(g.key, g.at+9_000, "MAX", "3", "MIN", "1", "ONCE", g.tok, "CAP", "40", "500",
				"CAP", "25", "3600000", "GLOBAL", "rl:{s}", "1000/1s,100/1d", "LIMITS", "100/1s")...).Val(), 3)
			require.Equal(t, g.reply, got, "%s: replay of %s on %s", what, g.tok, g.key)
		}
	}
	require.NoError(t, pc.Do(ctx, "DEBUG", "RELOAD").Err())
	rtSameSnap(t, want, rtSnap(t, pc), true, "DEBUG RELOAD")
	replays("DEBUG RELOAD", pc)
	rtSameSnap(t, want, rtSnap(t, pc), true, "replays write nothing")

	primary.Restart(t, harness.NoSave) // from the AOF: the grants replayed with their tokens
	rtSameSnap(t, want, rtSnap(t, pc), true, "AOF restart")
	replays("AOF restart", pc)

	// Failover: the replica answers the replays as the primary did.
	require.NoError(t, rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err())
	replays("failover", rc)
	rtSameSnap(t, want, rtSnap(t, rc), false, "replays on the new primary write nothing")
}
