//go:build integration

package script_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/charon-redis/charon/module/internal/script"
	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func rateCall(t *testing.T, key string, at int64, args ...string) *script.Call {
	t.Helper()
	r, err := script.ParseRate(key, append(args, "AT", strconv.FormatInt(at, 10)), 0)
	require.NoError(t, err)
	return r.Call()
}

// A key written by one engine is refused by the other with an error naming the
// engine; the scripts refuse a foreign hash and a key of the other kind; nothing is
// written on a refusal.
func TestScriptWrongEngine(t *testing.T) {
	srv := harness.Start(t, harness.Options{}) // the module is loaded: its keys exist here
	rdb := srv.Client(t, harness.Protocol(2))
	ctx := context.Background()
	at := strconv.FormatInt(T0, 10)
	require.NoError(t, rdb.Do(ctx, "CHARON.RATE", "rl:mod", "AT", at, "TIER", "5", "1000", "1000", "0").Err())
	require.NoError(t, rdb.Do(ctx, "CHARON.RESERVE", "hd:mod", "LIMIT", "2", "AT", at).Err())
	digest := func(k string) string { return rdb.Do(ctx, "DEBUG", "DIGEST-VALUE", k).String() }
	before := digest("rl:mod")

	err := rateCall(t, "rl:mod", T0, "TIER", "5", "1000", "1000", "0").Run(ctx, rdb).Err()
	require.ErrorContains(t, err, "WRONGTYPE rl:mod was written by the Charon module engine (type charon-rl)")
	require.Equal(t, before, digest("rl:mod"))
	h := script.Hold{Op: script.Reserve, Key: "hd:mod", Max: 1, Min: 1, HasLimit: true, Limit: 2, Lease: 1000, At: T0}
	require.ErrorContains(t, h.Call().Run(ctx, rdb).Err(), "WRONGTYPE hd:mod was written by the Charon module engine (type charon-hd)")
	// The module's key as GLOBAL of a script request: refused too, and the domain
	// key is not created.
	err = rateCall(t, "rl:new", T0, "GLOBAL", "rl:mod", "10", "TIER", "5", "1000", "1000", "0").Run(ctx, rdb).Err()
	require.ErrorContains(t, err, "charon-rl")
	require.Zero(t, rdb.Exists(ctx, "rl:new").Val())

	// Script keys: a rate log is not holds, a domain log is not a global one.
	require.NoError(t, rateCall(t, "rl:s", T0, "GLOBAL", "rl:g", "10", "TIER", "5", "1000", "1000", "0").Run(ctx, rdb).Err())
	h.Key = "rl:s"
	require.ErrorContains(t, h.Call().Run(ctx, rdb).Err(), "WRONGTYPE rl:s holds a rate log (CHARON.RATE), not holds")
	require.ErrorContains(t, rateCall(t, "rl:g", T0, "TIER", "5", "1000", "1000", "0").Run(ctx, rdb).Err(), "WRONGTYPE rl:g holds a global rate log")
	require.ErrorContains(t, rateCall(t, "rl:x", T0, "GLOBAL", "rl:s", "3", "TIER", "5", "1000", "1000", "0").Run(ctx, rdb).Err(), "WRONGTYPE rl:s holds a domain rate log")
	// Someone else's hash, and another type.
	require.NoError(t, rdb.HSet(ctx, "plain", "f", "v").Err())
	require.NoError(t, rdb.Set(ctx, "str", "v", 0).Err())
	for _, k := range []string{"plain", "str"} {
		require.ErrorContains(t, rateCall(t, k, T0, "TIER", "5", "1000", "1000", "0").Run(ctx, rdb).Err(), "WRONGTYPE Operation against a key holding the wrong kind of value")
	}
	require.Equal(t, map[string]string{"f": "v"}, rdb.HGetAll(ctx, "plain").Val())

	// The module refuses the scripts' keys naming the engine that wrote them, as the
	// key and as GLOBAL; another hash gets the plain WRONGTYPE.
	const scriptKey = "was written by Charon's script engine (the Go client's engine for Redis without the module): the module does not read it"
	err = rdb.Do(ctx, "CHARON.RATE", "rl:s", "AT", at, "TIER", "5", "1000", "1000", "0").Err()
	require.ErrorContains(t, err, "WRONGTYPE 'rl:s' "+scriptKey)
	err = rdb.Do(ctx, "CHARON.RATE", "rl:new", "GLOBAL", "rl:g", "10", "AT", at, "TIER", "5", "1000", "1000", "0").Err()
	require.ErrorContains(t, err, "WRONGTYPE 'rl:g' "+scriptKey)
	require.Zero(t, rdb.Exists(ctx, "rl:new").Val())
	err = rdb.Do(ctx, "CHARON.RATE", "plain", "AT", at, "TIER", "5", "1000", "1000", "0").Err()
	require.EqualError(t, err, "WRONGTYPE Operation against a key holding the wrong kind of value")
	// And the hold commands: a hold key of the scripts.
	h.Key = "hd:s"
	require.NoError(t, h.Call().Run(ctx, rdb).Err())
	err = rdb.Do(ctx, "CHARON.RESERVE", "hd:s", "LIMIT", "5", "AT", at).Err()
	require.ErrorContains(t, err, "WRONGTYPE 'hd:s' "+scriptKey)
}

// The runner reads the module's argument lists with the module's parsers: the same
// errors, word for word.
func TestScriptRunnerErrors(t *testing.T) {
	srv := harness.Start(t, harness.Options{})
	rdb := srv.Client(t)
	ctx := context.Background()
	for _, args := range [][]string{
		{"MAX", "0", "TIER", "1", "1000", "1000", "0"},
		{"TIER", "1", "1000"},
		{"MAX", "2"},
		{"GLOBAL", "k", "1", "TIER", "1", "1000", "1000", "0"},
		{"LIMITS", "10/1s, x"},
	} {
		_, perr := script.ParseRate("k", args, T0)
		merr := rdb.Do(ctx, append([]any{"CHARON.RATE", "k"}, toAny(args)...)...).Err()
		require.Error(t, perr, "%q", args)
		require.Error(t, merr, "%q", args)
		require.Equal(t, merr.Error(), "ERR "+perr.Error(), "%q", args)
	}
	for _, c := range []struct {
		op   script.Op
		args []string
	}{
		{script.Reserve, []string{"MAX", "2"}},
		{script.Reserve, []string{"MAX", "2", "MIN", "3", "LIMIT", "5"}},
		{script.Release, []string{"zz"}},
		{script.Transfer, []string{"00000000000000ff"}},
		{script.Reserve, []string{"LIMIT", "1", "GROUP", "k", "1"}},
	} {
		_, perr := script.ParseHold(c.op, "k", c.args, T0)
		merr := rdb.Do(ctx, append([]any{c.op.Command(), "k"}, toAny(c.args)...)...).Err()
		require.Error(t, perr, "%q", c.args)
		require.Error(t, merr, "%q", c.args)
		require.Equal(t, merr.Error(), "ERR "+perr.Error(), "%q", c.args)
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// EVALSHA falls back to EVAL when the server lost its script cache; a rejection writes
// nothing (no replication: the replica's offset does not move, WATCH stays intact);
// a grant reaches the replica with the same value and the same absolute expiry.
func TestScriptReplicationAndCache(t *testing.T) {
	primary, replica := harness.StartPrimaryReplica(t, harness.Options{NoModule: true, Config: []string{noTime}})
	rdb := primary.Client(t)
	rep := replica.Client(t)
	ctx := context.Background()
	grant := rateCall(t, "rl:{x}:a", T0, "MAX", "2", "GLOBAL", "rl:{x}", "3", "TIER", "2", "60000", "60000", "0")
	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	v, err := grant.Run(ctx, rdb).Result()
	require.NoError(t, err, "EVALSHA, then EVAL on NOSCRIPT")
	f, err := script.DecodeRate(v)
	require.NoError(t, err)
	require.Equal(t, int64(2), f[0])

	harness.WaitReplicaSync(t, primary, replica)
	off := primary.Info(t, "replication")["master_repl_offset"]
	// A rejection: full tier. WATCH on the key must survive it.
	reject := rateCall(t, "rl:{x}:a", T0+10, "GLOBAL", "rl:{x}", "3", "TIER", "2", "60000", "60000", "0")
	err = rdb.Watch(ctx, func(tx *redis.Tx) error {
		r, err := script.DecodeRate(reject.Run(ctx, rdb).Val())
		require.NoError(t, err)
		require.Equal(t, int64(0), r[0])
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Ping(ctx); return nil })
		return err
	}, "rl:{x}:a")
	require.NoError(t, err, "a rejected request aborted a WATCH")
	require.Equal(t, off, primary.Info(t, "replication")["master_repl_offset"], "a rejection was replicated")

	// Grants replicate as their effects, expiry as an absolute time.
	for i := int64(0); i < 20; i++ {
		require.NoError(t, rateCall(t, "rl:{x}:b", T0+2000+i*300, "MIN", "0", "MAX", "2", "GLOBAL", "rl:{x}", "3", "HARD", "3", "LIMITS", "2/1s, 3/10s/10s/30s").Run(ctx, rdb).Err())
		h := script.Hold{Op: script.Reserve, Key: "hd:{x}", Max: 1, Min: 0, HasLimit: true, Limit: 3, Lease: 5000, At: T0 + 2000 + i*300}
		require.NoError(t, h.Call().Run(ctx, rdb).Err())
	}
	harness.WaitReplicaSync(t, primary, replica)
	for _, k := range []string{"rl:{x}:a", "rl:{x}:b", "rl:{x}", "hd:{x}"} {
		d1, err := rdb.Do(ctx, "DEBUG", "DIGEST-VALUE", k).Slice()
		require.NoError(t, err)
		d2, err := rep.Do(ctx, "DEBUG", "DIGEST-VALUE", k).Slice()
		require.NoError(t, err)
		require.Equal(t, d1, d2, k)
		require.NotEqual(t, strings.Repeat("0", 40), d1[0], k)
		pe := rdb.Do(ctx, "PEXPIRETIME", k).Val()
		require.Equal(t, pe, rep.Do(ctx, "PEXPIRETIME", k).Val(), k)
		require.Positive(t, pe.(int64), k)
	}
	require.True(t, strings.HasPrefix(rdb.HGet(ctx, "rl:{x}:b", "@").Val(), "CRd1"))
}

// Detect tells the module from its absence (COMMAND INFO), and DoRate gives the same
// fields from either engine for the same command line.
func TestScriptDetectAndDoRate(t *testing.T) {
	ctx := context.Background()
	mod := harness.Start(t, harness.Options{}).Client(t)
	bare := harness.Start(t, harness.Options{NoModule: true, Config: []string{noTime}}).Client(t)
	e, err := script.Detect(ctx, mod)
	require.NoError(t, err)
	require.Equal(t, script.EngineModule, e)
	e, err = script.Detect(ctx, bare)
	require.NoError(t, err)
	require.Equal(t, script.EngineScript, e)
	for i := int64(0); i < 30; i++ {
		args := []any{"CHARON.RATE", "rl:{d}:a", "MAX", 3, "MIN", 1, "AT", T0 + i*97, "GLOBAL", "rl:{d}", "20/1s, 50/10s",
			"LIMITS", "4/1s, 6/5s/5s/15s; 30/1m", "ONCE", "t" + strconv.FormatInt(i%7, 10)}
		fm, err := script.DoRate(ctx, mod, script.EngineModule, args, 0)
		require.NoError(t, err)
		fs, err := script.DoRate(ctx, bare, script.EngineScript, args, 0)
		require.NoError(t, err)
		require.Equal(t, fm, fs, "request %d", i)
	}
	_, err = script.DoRate(ctx, bare, script.EngineScript, []any{"CHARON.RATE", "k", "MAX", 0, "TIER", 1, 1000, 1000, 0}, 0)
	require.EqualError(t, err, "MAX: must be an integer between 1 and 1000000000000")
}
