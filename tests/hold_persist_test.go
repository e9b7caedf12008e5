//go:build integration

package tests

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/charon-redis/charon/module/hold"
	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// hdPopulate sends n random hold requests (reserve with random limits, leases, GLOBAL
// and GROUP keys; releases, renewals, transfers and seizes of earlier holds) at times
// around hdT0, so nothing expires on the real clock during the test.
func hdPopulate(t testing.TB, c *redis.Client, seed uint64, nKeys, n int) {
	t.Helper()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 17))
	type live struct{ key, id string }
	var holds []live
	at := hdT0
	var granted int
	for i := 0; i < n; i++ {
		at += int64(r.IntN(50))
		p := r.IntN(4)
		dom := fmt.Sprintf("hd:{p%d}:d%d", p, r.IntN(nKeys))
		common := []any{"GLOBAL", fmt.Sprintf("hd:{p%d}", p)}
		if len(holds) > 0 && r.IntN(3) == 0 {
			h := holds[r.IntN(len(holds))]
			var args []any
			switch r.IntN(4) {
			case 0:
				args = []any{"CHARON.RELEASE", h.key, h.id, "COPIES", 1 + r.IntN(2)}
			case 1:
				args = []any{"CHARON.RENEW", h.key, h.id, "LEASE", 1000 + r.IntN(100_000)}
			case 2:
				args = []any{"CHARON.TRANSFER", h.key, h.id, "TTL", 1 + r.IntN(5000), "COPIES", 1}
			default:
				args = []any{"CHARON.SEIZE", h.key, h.id}
			}
			args = append(args, "AT", at)
			args = append(args, common[0], h.key[:strings.LastIndex(h.key, ":")])
			v, err := c.Do(ctx, args...).Slice()
			if err == nil && args[0] == "CHARON.TRANSFER" {
				holds = append(holds, live{h.key, v[1].(string)})
			}
			continue
		}
		args := []any{"CHARON.RESERVE", dom, "MAX", 1 + r.IntN(4), "MIN", r.IntN(2), "LIMIT", 2 + r.IntN(10),
			common[0], common[1], 200, "LEASE", 1000 + r.IntN(600_000), "AT", at}
		if r.IntN(3) == 0 {
			args = append(args, "GROUP", fmt.Sprintf("hd:{p%d}:grp%d", p, r.IntN(3)), 5+r.IntN(20))
		}
		v, err := c.Do(ctx, args...).Slice()
		require.NoError(t, err, "%v", args)
		if id, ok := v[1].(string); ok {
			granted++
			holds = append(holds, live{dom, id})
		}
	}
	require.Positive(t, granted)
}

func TestHoldPersistence(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	hdPopulate(t, c, uint64(rtNow()), 20, 3000)
	want := rtSnap(t, c)

	require.NoError(t, c.Do(ctx, "DEBUG", "RELOAD").Err())
	rtSameSnap(t, want, rtSnap(t, c), false, "DEBUG RELOAD")

	require.Equal(t, "Background saving started", c.BgSave(ctx).Val())
	rtWaitBgsave(t, s)
	s.Restart(t, harness.NoSave)
	rtSameSnap(t, want, rtSnap(t, c), false, "BGSAVE + restart")

	// COPY: the copy is equal and independent.
	src := "hd:{p0}"
	require.Equal(t, int64(1), c.Copy(ctx, src, src+":copy", 0, false).Val())
	before := rtDigestValue(t, c, src)
	require.Equal(t, before, rtDigestValue(t, c, src+":copy"))
	hdMust(t, c, "CHARON.RESERVE", src+":copy", "LIMIT", 1000, "AT", hdT0+10_000_000)
	require.NotEqual(t, before, rtDigestValue(t, c, src+":copy"))
	require.Equal(t, before, rtDigestValue(t, c, src))
}

// The AOF replays the requests with their explicit AT and ids; a rewritten AOF
// (CHARON.LOADHOLD + PEXPIREAT) restores the same dataset and expiries.
func TestHoldAOF(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{AppendOnly: true, Config: []string{"aof-use-rdb-preamble no"}})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	hdPopulate(t, c, uint64(rtNow()), 15, 2000)
	want := rtSnap(t, c)

	s.Restart(t, harness.NoSave)
	rtSameSnap(t, want, rtSnap(t, c), false, "AOF replay")

	require.NoError(t, c.BgRewriteAOF(ctx).Err())
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		m := s.Info(t, "persistence")
		return m["aof_rewrite_in_progress"] == "0" && m["aof_rewrite_scheduled"] == "0", "rewrite running"
	})
	require.Equal(t, "ok", s.Info(t, "persistence")["aof_last_bgrewrite_status"])
	bases, err := filepath.Glob(filepath.Join(s.Dir(), "appendonlydir", "*.base.aof"))
	require.NoError(t, err)
	require.Len(t, bases, 1)
	text, err := os.ReadFile(bases[0])
	require.NoError(t, err)
	require.Contains(t, string(text), "CHARON.LOADHOLD")
	require.NotContains(t, string(text), "CHARON.RESERVE")

	s.Restart(t, harness.NoSave)
	rtSameSnap(t, want, rtSnap(t, c), false, "rewritten AOF")
}

// hdValid reports whether a persisted form is accepted by the Go twin of rdb_load.
func hdValid(p []byte) bool {
	shape, err := hold.Inspect(p)
	if err != nil {
		return false
	}
	_, err = hold.Build(p, make([]byte, shape.Size()))
	return err == nil
}

// RESTORE of mutated DUMP payloads (CRC recomputed) is refused cleanly, or accepted
// only when module/hold accepts the value too; the server never goes down.
func TestHoldCorruptRestore(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{Config: []string{"rdbcompression no"}})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	for i := range 4 {
		hdMust(t, c, "CHARON.RESERVE", "hd:{c}:a", "MAX", 1+i, "LIMIT", 100, "GLOBAL", "hd:{c}", 100, "LEASE", 1000+i, "AT", hdT0+int64(i))
	}
	const tmp = "hd:{c}:tmp"
	restore := func(p []byte) error {
		require.NoError(t, c.Del(ctx, tmp).Err())
		return c.Restore(ctx, tmp, 0, string(p)).Err()
	}
	var accepted, refused int
	for _, key := range []string{"hd:{c}:a", "hd:{c}"} {
		payload, d := rtDumpOf(t, c, key)
		require.Equal(t, uint64(hold.EncVer), d.id&1023)
		require.True(t, hdValid(d.val))
		require.NoError(t, restore(payload))
		require.NoError(t, c.PExpireAt(ctx, tmp, time.UnixMilli(rtPExpireTime(t, c, key))).Err())
		require.Equal(t, rtDigestValue(t, c, key), rtDigestValue(t, c, tmp))
		muts := rtMutations(d.val)
		// Duplicate ids: the second hold takes the first one's id.
		dup := bytes.Clone(d.val)
		copy(dup[48+24:], dup[48:56])
		muts = append(muts, dup)
		for i, m := range muts {
			err := restore(rtBuildDump(d.id, m, d.ver))
			what := fmt.Sprintf("%s mutation %d", key, i)
			if !hdValid(m) {
				require.Error(t, err, "%s: invalid but accepted", what)
				require.True(t, strings.HasPrefix(err.Error(), "ERR Bad data format"), "%s: %v", what, err)
				refused++
				continue
			}
			require.NoError(t, err, "%s: valid but refused", what)
			require.NoError(t, c.Do(ctx, "CHARON.INSPECT", tmp).Err(), what)
			require.NoError(t, c.Do(ctx, "CHARON.RESERVE", tmp, "LIMIT", 5, "DRYRUN").Err(), what)
			accepted++
		}
		// Random framing damage: refused, or a valid value.
		body := rtBody(d.id, d.val)
		r := rand.New(rand.NewPCG(uint64(len(body)), 9))
		for range 300 {
			m := bytes.Clone(body)
			for range 1 + r.IntN(3) {
				m[r.IntN(len(m))] ^= byte(1 + r.IntN(255))
			}
			if restore(rtFrame(m, d.ver)) == nil && c.Type(ctx, tmp).Val() == "charon-hd" {
				_, got := rtDumpOf(t, c, tmp)
				require.True(t, hdValid(got.val), "accepted an invalid value % x", got.val)
			}
		}
		// Encoding versions other than 1 and 2 are refused with a log line, and so is a
		// form whose own version word is not the type's encoding version.
		for _, enc := range []uint64{3, 0, 1} {
			require.Error(t, restore(rtBuildDump(d.id&^1023|enc, d.val, d.ver)), "encver %d", enc)
		}
		// A value written before fences and tokens (encoding version 1) still loads:
		// fence 0, no tokens, the same holds.
		v1 := append(binary.LittleEndian.AppendUint64(nil, hold.EncVer1), d.val[8:32]...)
		v1 = append(v1, d.val[48:]...)
		require.NoError(t, restore(rtBuildDump(d.id&^1023|1, v1, d.ver)), "a version 1 value")
		_, got := rtDumpOf(t, c, tmp)
		require.Equal(t, append(append(bytes.Clone(d.val[:32]), make([]byte, 16)...), d.val[48:]...), got.val,
			"rewritten as version 2 with fence 0")
		// An AOF written before (CHARON.LOADHOLD with a version 1 payload) loads too.
		require.NoError(t, c.Do(ctx, "CHARON.LOADHOLD", tmp, v1).Err())
		_, got = rtDumpOf(t, c, tmp)
		require.Equal(t, append(append(bytes.Clone(d.val[:32]), make([]byte, 16)...), d.val[48:]...), got.val)
	}
	t.Logf("%d refused, %d accepted", refused, accepted)
	require.Positive(t, refused)
	require.NoError(t, c.Ping(ctx).Err())
	require.True(t, s.LogContains("corrupt charon-hd value"))
	require.True(t, s.LogContains("charon-hd value has encoding version 3"))

	// CHARON.LOADHOLD refuses garbage and writes nothing.
	digest := rtDigest(t, c)
	for _, g := range []string{"", "hello", strings.Repeat("\xff", 56)} {
		err := c.Do(ctx, "CHARON.LOADHOLD", "hd:{c}:x", g).Err()
		require.ErrorContains(t, err, "ERR payload:")
	}
	require.Equal(t, digest, rtDigest(t, c))
}

// What the module writes, it loads: values driven to the bounds (counts near 10^12,
// leases of 10 years, AT near 10^13, the largest a client may send, thousands of holds
// in one key), and values laid out by the pure package at the persisted format's own
// bounds (times near 2^53, loaded with CHARON.LOADHOLD as an AOF would), all survive
// DUMP/RESTORE (RESTORE runs the C validator) and DEBUG RELOAD with equal digests.
func TestHoldBoundsReload(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	r := rand.New(rand.NewPCG(uint64(rtNow()), 3))

	counts := []int64{1, 2, hold.MaxCount / 2, hold.MaxCount - 1, hold.MaxCount}
	leases := []int64{1, 60_000, hold.MaxDuration - 1, hold.MaxDuration}
	count := func() int64 { return counts[r.IntN(len(counts))] }
	at := int64(1_000_000_000_000)
	var ids []string
	for i := 0; i < 3000; i++ {
		if r.IntN(10) == 0 {
			at = min(at+leases[r.IntN(len(leases))], 10_000_000_000_000-1)
		}
		dom := fmt.Sprintf("hd:{b}:d%d", r.IntN(4))
		keys := []any{"GLOBAL", "hd:{b}"}
		var args []any
		if len(ids) == 0 || r.IntN(3) > 0 {
			mx := count()
			args = []any{"CHARON.RESERVE", dom, "MAX", mx, "MIN", min(mx, count()), "LIMIT", count(),
				"LEASE", leases[r.IntN(len(leases))], "AT", at, "GLOBAL", "hd:{b}", count(), "GROUP", "hd:{b}:p", count()}
		} else {
			id := ids[r.IntN(len(ids))]
			switch r.IntN(4) {
			case 0:
				args = []any{"CHARON.RELEASE", dom, id, "COPIES", count()}
			case 1:
				args = []any{"CHARON.RENEW", dom, id, "LEASE", leases[r.IntN(len(leases))]}
			case 2:
				args = []any{"CHARON.TRANSFER", dom, id, "TTL", leases[r.IntN(len(leases))], "COPIES", count()}
			default:
				args = []any{"CHARON.SEIZE", dom, id, "LEASE", leases[r.IntN(len(leases))]}
			}
			args = append(append(args, "AT", at), keys...)
			args = append(args, "GROUP", "hd:{b}:p")
		}
		v, err := c.Do(ctx, args...).Slice()
		if err != nil {
			require.True(t, strings.HasPrefix(err.Error(), "LOST") || strings.HasPrefix(err.Error(), "ERR COPIES"), "%v: %v", args, err)
			continue
		}
		if id, ok := v[1].(string); ok && len(id) == 16 {
			ids = append(ids, id)
		}
	}
	// Many holds in one key, at the largest counts and leases.
	pipe := c.Pipeline()
	for i := 0; i < 20_000; i++ {
		pipe.Do(ctx, "CHARON.RESERVE", "hd:{b}:many", "MAX", hold.MaxCount, "MIN", 1, "LIMIT", hold.MaxCount,
			"LEASE", hold.MaxDuration-int64(i%1000), "AT", at)
		if i%2 == 0 {
			pipe.Do(ctx, "CHARON.RESERVE", "hd:{b}:many2", "LIMIT", hold.MaxCount, "LEASE", leases[i%len(leases)], "AT", at)
		}
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)

	// Values at the persisted format's own bounds, laid out by the pure package.
	for k := 0; k < 3; k++ {
		n := []int{0, 1, 5000}[k]
		v := hold.Init(make([]byte, hold.SizeFor(hold.CapFor(max(n, 1)))), hold.CapFor(max(n, 1)))
		v.Touch(hold.MaxAt, hold.MaxCount)
		for i := 0; i < n; i++ {
			v.Insert(uint64(i+1)*0x9e3779b97f4a7c15|1, hold.MaxCount-int64(i%2), hold.MaxAt+hold.MaxDuration-int64(n-i))
		}
		p := v.Serialize(nil)
		require.True(t, hdValid(p))
		require.NoError(t, c.Do(ctx, "CHARON.LOADHOLD", fmt.Sprintf("hd:{b}:edge%d", k), p).Err())
	}

	keys, err := c.Keys(ctx, "hd:{b}*").Result()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(keys), 8)
	for _, k := range keys {
		dump, err := c.Dump(ctx, k).Result()
		require.NoError(t, err, k)
		exp := rtPExpireTime(t, c, k) // DIGEST-VALUE covers the expiry: restore it too
		require.NoError(t, c.Do(ctx, "RESTORE", k+":restored", max(exp, 0), dump, "ABSTTL").Err(), "RESTORE of %s", k)
		require.Equal(t, rtDigestValue(t, c, k), rtDigestValue(t, c, k+":restored"), k)
	}
	want := rtDigest(t, c)
	require.NoError(t, c.Do(ctx, "DEBUG", "RELOAD").Err())
	require.Equal(t, want, rtDigest(t, c), "DEBUG RELOAD")
	n, err := c.Do(ctx, "CHARON.INSPECT", "hd:{b}:many", "AT", at).Slice()
	require.NoError(t, err)
	require.NotEmpty(t, n)
}
