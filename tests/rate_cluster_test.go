//go:build integration

package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/tests/harness"
)

// Replication and Redis Cluster for CHARON.RATE.

// TestRateReplicaDigest: 10,000 random requests (200 keys, random MIN/MAX, AT near the
// real clock with steps back, some GLOBAL, some DRYRUN, some without AT) leave the
// replica byte-identical to the primary; only granted non-DRYRUN requests reach it.
func TestRateReplicaDigest(t *testing.T) {
	t.Parallel()
	primary, replica := harness.StartPrimaryReplica(t, harness.Options{})
	p, r := primary.Client(t), replica.Client(t)
	ctx := context.Background()
	// Keys expire on the real clock during the run. Active expiry on the primary would
	// delete keys (and propagate DELs) between the final sync check and DEBUG DIGEST;
	// lazy expiry still runs, in command order, and is propagated like any write.
	require.NoError(t, p.Do(ctx, "DEBUG", "SET-ACTIVE-EXPIRE", "0").Err())

	seed := uint64(rtNow())
	t.Logf("seed %d", seed)
	g := &rtGen{r: rand.New(rand.NewPCG(seed, 5)), noAt: 3, real: true}
	for i := range 200 {
		g.keys = append(g.keys, fmt.Sprintf("rl:{r%d}:%d", i%23, i))
	}
	for i := range 10 {
		g.gkeys = append(g.gkeys, fmt.Sprintf("rl:{r%d}:global", i))
	}

	const total, batch = 10_000, 500
	var granted, rejected, dry, dryGranted, global int
	for done := 0; done < total; done += batch {
		proto := 3 - (done/batch)%2
		c := p
		if proto == 2 {
			c = primary.Client(t, harness.Protocol(2))
		}
		pipe := c.Pipeline()
		var qs []rtGenReq
		var cmds []*redis.Cmd
		for range batch {
			q := g.next()
			qs = append(qs, q)
			cmds = append(cmds, pipe.Do(ctx, q.args...))
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
		for i, q := range qs {
			f := rtFields(t, cmds[i].Val(), proto)
			switch {
			case q.dry:
				dry++
				if f[rate.FieldGranted] > 0 {
					dryGranted++
				}
			case f[rate.FieldGranted] > 0:
				granted++
				if q.gkey != "" {
					global++
				}
			default:
				rejected++
			}
		}
	}
	t.Logf("%d requests: %d granted (%d with GLOBAL), %d rejected, %d DRYRUN (%d would be granted); %d keys, %d lazily expired",
		total, granted, global, rejected, dry, dryGranted, rtDBSize(t, p), rtInfoInt(t, primary, "stats", "expired_keys"))
	require.Positive(t, granted)
	require.Positive(t, rejected)
	require.Positive(t, global)
	require.Positive(t, dryGranted)

	// Inside MULTI/EXEC and scripts the same rule holds: only grants propagate, with
	// an explicit AT (the script's calls use the server clock).
	txBase := rtNow() + 600_000
	tx := p.TxPipeline()
	tx1 := tx.Do(ctx, rtCmd("rl:{tx}:a", txBase, rtCat([]string{"MAX", "5"}, rtSimple)...)...)
	tx2 := tx.Do(ctx, rtCmd("rl:{tx}:a", txBase+1, rtSimple...)...)
	tx3 := tx.Do(ctx, rtCmd("rl:{tx}:b", txBase+1, rtCat([]string{"DRYRUN"}, rtSimple)...)...)
	_, err := tx.Exec(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(5), rtFields(t, tx1.Val(), 3)[rate.FieldGranted])
	require.Equal(t, int64(0), rtFields(t, tx2.Val(), 3)[rate.FieldGranted])
	require.Equal(t, int64(1), rtFields(t, tx3.Val(), 3)[rate.FieldGranted])
	script := `local tiers = {'TIER', '5', '1000', '1000', '0'}
local a = redis.call('CHARON.RATE', KEYS[1], 'MAX', '2', unpack(tiers))
local b = redis.call('CHARON.RATE', KEYS[1], 'MAX', '5', unpack(tiers))
return {a[1], b[1]}`
	ev, err := p.Eval(ctx, script, []string{"rl:{tx}:c"}).Int64Slice()
	require.NoError(t, err)
	require.Equal(t, []int64{2, 0}, ev, "the script's second call finds 3 left of 5")
	granted += 2

	require.NoError(t, p.Set(ctx, "fence", "1", 0).Err())
	harness.WaitReplicaSync(t, primary, replica)
	require.Equal(t, rtDigest(t, p), rtDigest(t, r), "DEBUG DIGEST of primary and replica")
	stats := replica.Info(t, "commandstats")
	require.Contains(t, stats["cmdstat_charon.rate"], fmt.Sprintf("calls=%d,", granted),
		"the replica runs exactly the granted non-DRYRUN requests")
	require.Equal(t, "1", r.Get(ctx, "fence").Val())
	var keys []string

	// Expiries and INSPECT agree for keys that outlive the check by far.
	keys, err = r.Keys(ctx, "rl:*").Result()
	require.NoError(t, err)
	at := rtNow()
	checked := 0
	for _, k := range keys {
		exp := rtPExpireTime(t, r, k)
		if exp < rtNow()+5_000 {
			continue
		}
		require.Equal(t, exp, rtPExpireTime(t, p, k), "%s: PEXPIRETIME", k)
		require.Equal(t, rtInspect(t, p, k, at), rtInspect(t, r, k, at), "%s: INSPECT on primary and replica", k)
		checked++
	}
	t.Logf("compared expiry and INSPECT of %d long-lived keys", checked)
	require.Positive(t, checked)
	harness.WaitReplicaSync(t, primary, replica)
	require.Equal(t, rtDigest(t, p), rtDigest(t, r), "DEBUG DIGEST after the reads")
}

// rtInfoInt reads an integer INFO field.
func rtInfoInt(t testing.TB, s *harness.Server, section, field string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(s.Info(t, section)[field], 10, 64)
	require.NoError(t, err, "INFO %s %s", section, field)
	return v
}

// rtReplicaOf returns the cluster replica that follows primary.
func rtReplicaOf(t testing.TB, cl *harness.Cluster, primary *harness.Server) *harness.Server {
	t.Helper()
	for _, s := range cl.Replicas(t) {
		if s.Info(t, "replication")["master_port"] == strconv.Itoa(primary.Port()) {
			return s
		}
	}
	t.Fatalf("no replica follows %s", primary.Addr())
	return nil
}

// TestRateCluster: in a 3-primary cluster the two keys must share a slot (CROSSSLOT
// otherwise, through the cluster client and on the owning node), COMMAND GETKEYS and
// key specs name both, replies keep their shapes under RESP2 and RESP3, and INSPECT
// works on a replica with READONLY.
func TestRateCluster(t *testing.T) {
	t.Parallel()
	cl := harness.StartCluster(t, harness.Options{})
	ctx := context.Background()
	node := cl.Nodes()[0].Client(t, harness.Protocol(2))
	at := rtNow()

	// Key metadata, from any node.
	getkeys := func(args ...any) []string {
		t.Helper()
		v, err := node.Do(ctx, append([]any{"COMMAND", "GETKEYS"}, args...)...).StringSlice()
		require.NoError(t, err, "%v", args)
		return v
	}
	require.Equal(t, []string{"rl:{api}:alice", "rl:{api}"},
		getkeys(rtCmd("rl:{api}:alice", at, rtCat([]string{"MAX", "3", "GLOBAL", "rl:{api}", "100"}, rtSimple)...)...))
	require.Equal(t, []string{"rl:{api}:alice", "rl:{api}"},
		getkeys(rtCmd("rl:{api}:alice", at, rtCat(rtPenalty, []string{"global", "rl:{api}", "100", "DRYRUN"})...)...))
	require.Equal(t, []string{"rl:{api}:alice"}, getkeys(rtCmd("rl:{api}:alice", at, rtSimple...)...))
	require.Equal(t, []string{"rl:{api}:alice"}, getkeys("CHARON.INSPECT", "rl:{api}:alice", "AT", "5"))
	require.Equal(t, []string{"rl:{api}:alice"}, getkeys("CHARON.LOADVALUE", "rl:{api}:alice", "x"))

	raw, err := node.Do(ctx, "COMMAND", "INFO", "charon.rate").Slice()
	require.NoError(t, err)
	require.Len(t, raw, 1)
	entry, ok := raw[0].([]any)
	require.True(t, ok && len(entry) >= 9, "COMMAND INFO entry %#v", raw[0])
	require.Equal(t, "charon.rate", entry[0])
	require.Equal(t, int64(-2), entry[1])
	require.Contains(t, entry[2], "write")
	require.Contains(t, entry[2], "denyoom")
	require.Contains(t, entry[2], "movablekeys")
	require.Equal(t, []any{int64(1), int64(1), int64(1)}, entry[3:6], "first, last, step")
	specs, ok := entry[8].([]any)
	require.True(t, ok, "key specs %#v", entry[8])
	require.Len(t, specs, 2, "the key and the GLOBAL key")
	for i, want := range []struct {
		bsType string
		bsKey  string
		bsVal  any
	}{{"index", "index", int64(1)}, {"keyword", "keyword", "GLOBAL"}} {
		spec, err := harness.ReplyMap(specs[i])
		require.NoError(t, err)
		require.ElementsMatch(t, []any{"RW", "access", "update"}, spec["flags"], "spec %d", i)
		bs, err := harness.ReplyMap(spec["begin_search"])
		require.NoError(t, err)
		require.Equal(t, want.bsType, bs["type"], "spec %d", i)
		bspec, err := harness.ReplyMap(bs["spec"])
		require.NoError(t, err)
		require.Equal(t, want.bsVal, bspec[want.bsKey], "spec %d", i)
		if want.bsType == "keyword" {
			require.Equal(t, int64(2), bspec["startfrom"], "the keyword search starts after the key")
		}
		fk, err := harness.ReplyMap(spec["find_keys"])
		require.NoError(t, err)
		require.Equal(t, "range", fk["type"], "spec %d", i)
		fspec, err := harness.ReplyMap(fk["spec"])
		require.NoError(t, err)
		require.Equal(t, int64(0), fspec["lastkey"], "spec %d: one key", i)
	}

	// Through the cluster client under both protocols.
	for _, proto := range []int{3, 2} {
		cc := cl.ClusterClient(t, func(o *redis.ClusterOptions) { o.Protocol = proto })
		alice, bob, g := fmt.Sprintf("rl:{api%d}:alice", proto), fmt.Sprintf("rl:{api%d}:bob", proto), fmt.Sprintf("rl:{api%d}", proto)
		// Ahead of the real clock: the keys must outlive the waits below.
		base := rtNow() + 600_000
		do := func(key string, dt int64, opts ...string) (any, error) {
			return cc.Do(ctx, rtCmd(key, base+dt, rtCat(opts, rtSimple)...)...).Result()
		}

		t.Run(fmt.Sprintf("CROSSSLOT/RESP%d", proto), func(t *testing.T) {
			alice, other := fmt.Sprintf("rl:{xs%d}:alice", proto), fmt.Sprintf("rl:{other%d}", proto)
			slot := int(cc.ClusterKeySlot(ctx, alice).Val())
			gslot := int(cc.ClusterKeySlot(ctx, other).Val())
			require.NotEqual(t, slot, gslot)
			owner := cl.NodeForSlot(t, slot)
			oc := owner.Client(t, harness.Protocol(proto))
			// The node that owns the key must neither run the command nor store the
			// global key in a slot it does not own.
			defer func() {
				n, err := oc.ClusterCountKeysInSlot(ctx, gslot).Result()
				require.NoError(t, err)
				if cl.NodeForSlot(t, gslot) != owner {
					require.Zero(t, n, "%s stored %s in slot %d, which it does not own", owner.Addr(), other, gslot)
				}
			}()
			_, err := do(alice, 0, "GLOBAL", other, "10")
			require.Error(t, err, "cluster client: key and GLOBAL key in different slots")
			require.True(t, strings.HasPrefix(err.Error(), "CROSSSLOT"), "RESP%d: %v", proto, err)
			msg := rtErr(t, oc, rtCmd(alice, base, rtCat([]string{"GLOBAL", other, "10"}, rtSimple)...)...)
			require.True(t, strings.HasPrefix(msg, "CROSSSLOT"), "RESP%d owner: %s", proto, msg)
		})

		t.Run(fmt.Sprintf("HashTag/RESP%d", proto), func(t *testing.T) {
			require.Equal(t, int64(0), cc.Exists(ctx, alice).Val())
			v, err := do(alice, 0, "MAX", "3", "GLOBAL", g, "4")
			require.NoError(t, err)
			require.Equal(t, rtF{3, 1, 5, 3, 3, 3, 0, 0, 0, 0, 1001}, rtFields(t, v, proto), "RESP%d alice", proto)
			v, err = do(bob, 1, "MAX", "3", "MIN", "1", "GLOBAL", g, "4")
			require.NoError(t, err)
			require.Equal(t, rtF{1, 1, 5, 1, 1, 4, 0, 0, 1, 0, 1001}, rtFields(t, v, proto), "RESP%d bob", proto)
			require.Equal(t, base+1+1001, rtPExpireTime(t, cc, g))

			iv, err := cc.Do(ctx, "CHARON.INSPECT", alice, "AT", base+1).Result()
			require.NoError(t, err)
			var ok bool
			if proto == 3 {
				_, ok = iv.(map[any]any)
			} else {
				_, ok = iv.([]any)
			}
			require.True(t, ok, "RESP%d INSPECT is %T", proto, iv)
			info, err := harness.ReplyMap(iv)
			require.NoError(t, err)
			require.Equal(t, int64(3), rtInt(t, info, "domain_hits"))
			require.ErrorIs(t, cc.Do(ctx, "CHARON.INSPECT", fmt.Sprintf("rl:{api%d}:nobody", proto)).Err(), redis.Nil)

			// INSPECT on the replica of the slot, after READONLY, tells the same.
			cl.WaitHealthy(t)
			owner := cl.NodeForSlot(t, int(cc.ClusterKeySlot(ctx, alice).Val()))
			rep := rtReplicaOf(t, cl, owner).Client(t, harness.Protocol(proto), func(o *redis.Options) {
				o.OnConnect = func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() }
			})
			require.Equal(t, info, rtInspect(t, rep, alice, base+1), "RESP%d INSPECT on the replica", proto)
			// A write on the replica is redirected to the primary, never run there.
			err = rep.Do(ctx, rtCmd(alice, base+2, rtSimple...)...).Err()
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "MOVED"), "RESP%d replica write: %v", proto, err)
		})
	}
}

// TestRateHello: HELLO 2 and HELLO 3 on one connection switch the reply between an
// array and a map with the same values.
func TestRateHello(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	conn := s.Client(t, harness.Protocol(2)).Conn()
	t.Cleanup(func() { _ = conn.Close() })
	base := rtNow() + 60_000
	var got []rtF
	for i, proto := range []int{2, 3, 2, 3} {
		require.NoError(t, conn.Do(ctx, "HELLO", proto).Err())
		// DRYRUN on a fresh key: the same answer every time.
		v, err := conn.Do(ctx, rtCmd("rl:{hello}:a", base, rtCat([]string{"DRYRUN", "MAX", "2"}, rtPenalty)...)...).Result()
		require.NoError(t, err)
		got = append(got, rtFields(t, v, proto))
		require.Equal(t, got[0], got[i], "HELLO %d", proto)
	}
	require.Equal(t, rtF{2, 1, 5, 2, 2, -1, 0, 0, 0, 0, 1001}, got[0])
}
