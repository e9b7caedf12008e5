//go:build integration

package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/tests/harness"
)

// acceptedTarballs reads the accepted SHA-256 sums of the pinned Redis source tarball
// from the Makefile's pins (REDIS_SHA256, REDIS_SHA256_DEBIAN), the one place an
// upgrade changes them.
func acceptedTarballs(t *testing.T, root string) map[string]string {
	t.Helper()
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	require.NoError(t, err, "the Makefile holds the pinned checksums")
	out := map[string]string{}
	for _, line := range strings.Split(string(mk), "\n") {
		name, val, ok := strings.Cut(line, "?=")
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		if ok && (name == "REDIS_SHA256" || name == "REDIS_SHA256_DEBIAN") && len(val) == 64 {
			out[val] = name
		}
	}
	require.NotEmpty(t, out, "Makefile pins REDIS_SHA256 (and REDIS_SHA256_DEBIAN)")
	return out
}

// runtimeInfo runs CHARON.DEBUG RUNTIME and returns its fields, whatever the protocol.
func runtimeInfo(t *testing.T, c *redis.Client) map[string]any {
	t.Helper()
	v, err := c.Do(context.Background(), "CHARON.DEBUG", "RUNTIME").Result()
	require.NoError(t, err, "CHARON.DEBUG RUNTIME")
	m, err := harness.ReplyMap(v)
	require.NoError(t, err, "CHARON.DEBUG RUNTIME reply shape")
	return m
}

func TestModuleLoads(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	mods := s.Modules(t)
	ver, ok := mods["charon"]
	require.True(t, ok, "MODULE LIST lacks charon: %v", mods)
	require.GreaterOrEqual(t, ver, int64(1), "charon module version")

	// The same entry under both protocols: a RESP3 map and a RESP2 flat array.
	for _, proto := range []int{2, 3} {
		v, err := s.Client(t, harness.Protocol(proto)).Do(context.Background(), "MODULE", "LIST").Slice()
		require.NoError(t, err)
		// Servers may list built-in modules too (Redis 8's vectorset): one entry is charon's.
		var found []map[string]any
		for _, e := range v {
			m, err := harness.ReplyMap(e)
			require.NoError(t, err, "RESP%d", proto)
			if m["name"] == "charon" {
				found = append(found, m)
			}
		}
		require.Len(t, found, 1, "RESP%d MODULE LIST: %v", proto, v)
		require.Equal(t, ver, found[0]["ver"], "RESP%d", proto)
	}
}

func TestModuleUnloadRefused(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	c := s.Client(t)
	ctx := context.Background()

	err := c.Do(ctx, "MODULE", "UNLOAD", "charon").Err()
	require.Error(t, err, "MODULE UNLOAD charon must be refused: the Go runtime cannot be unloaded")
	var rerr redis.Error
	require.True(t, errors.As(err, &rerr), "want an error reply, got %v", err)

	require.NoError(t, c.Ping(ctx).Err(), "server must still answer after the refused unload")
	require.Contains(t, s.Modules(t), "charon", "module must still be listed")
	m := runtimeInfo(t, c)
	require.Contains(t, m, "gomaxprocs", "CHARON.* must still work after the refused unload")
}

func TestDebugPanicRecovered(t *testing.T) {
	s := harness.Start(t, harness.Options{ModuleArgs: []string{"debug", "yes"}})
	c := s.Client(t)
	ctx := context.Background()
	require.False(t, s.LogContains("goroutine "), "log has a Go stack before any panic")

	for i := 1; i <= 2; i++ {
		err := c.Do(ctx, "CHARON.DEBUG", "PANIC").Err()
		require.Error(t, err, "attempt %d", i)
		require.True(t, strings.HasPrefix(err.Error(), "ERR internal error"), "attempt %d: got %q", i, err)
		require.NoError(t, c.Ping(ctx).Err(), "attempt %d: server must survive the panic", i)
		require.GreaterOrEqual(t, strings.Count(s.Log(t), "goroutine "), i, "attempt %d: want a logged Go stack per panic", i)
	}
	require.True(t, s.LogContains("panic"), "log must name the panic")
	require.Contains(t, runtimeInfo(t, c), "gomaxprocs", "CHARON.* must still work after panics")
}

func TestDebugPanicDisabledByDefault(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	c := s.Client(t)
	ctx := context.Background()

	err := c.Do(ctx, "CHARON.DEBUG", "PANIC").Err()
	require.Error(t, err, "CHARON.DEBUG PANIC without debug yes")
	require.True(t, strings.HasPrefix(err.Error(), "ERR "), "error reply starts with a code: %q", err)
	require.False(t, strings.HasPrefix(err.Error(), "ERR internal error"), "must be refused, not panic: %q", err)
	require.NoError(t, c.Ping(ctx).Err())
	require.False(t, s.LogContains("panic"), "nothing may panic without debug yes:\n%s", s.LogTail(20))
}

// The pinned header is the release's own, byte for byte (design.md constraint 1).
func TestHeaderMatchesPinnedRelease(t *testing.T) {
	if os.Getenv("CHARON_SKIP_HEADER_TEST") == "1" {
		t.Skip("CHARON_SKIP_HEADER_TEST=1: header check against the source tarball skipped on request")
	}
	root := harness.RepoRoot(t)
	tarball := os.Getenv("CHARON_REDIS_TARBALL")
	if tarball == "" {
		tarball = filepath.Join(root, "build", "redis-verified.tar.gz")
	}
	if _, err := os.Stat(tarball); err != nil {
		t.Fatalf("pinned Redis source tarball: %v; run `make redis`, set CHARON_REDIS_TARBALL=path, "+
			"or set CHARON_SKIP_HEADER_TEST=1 to skip this check explicitly", err)
	}

	data, err := os.ReadFile(tarball)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	which, ok := acceptedTarballs(t, root)[hex.EncodeToString(sum[:])]
	require.True(t, ok, "%s has sha256 %x, not an accepted pinned Redis tarball", tarball, sum)
	t.Logf("tarball %s matches %s", tarball, which)

	want, err := tarMember(data, "src/redismodule.h")
	require.NoError(t, err, tarball)
	got, err := os.ReadFile(filepath.Join(root, "cshim", "redismodule.h"))
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256(want), sha256.Sum256(got),
		"cshim/redismodule.h differs from src/redismodule.h of the pinned release")
}

// tarMember returns the contents of <top>/<name> in a gzipped tarball whose
// members sit under one top-level directory (redis-7.0.15/).
func tarMember(tgz []byte, name string) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("no member */%s", name)
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		_, rest, ok := strings.Cut(strings.TrimPrefix(h.Name, "./"), "/")
		if ok && rest == name && h.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

func TestModuleRuntimeArgs(t *testing.T) {
	s := harness.Start(t, harness.Options{ModuleArgs: []string{"gomaxprocs", "1", "gcpercent", "50", "memlimit", "268435456"}})
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			m := runtimeInfo(t, s.Client(t, harness.Protocol(proto)))
			require.Equal(t, int64(1), m["gomaxprocs"], "%v", m)
			require.Equal(t, int64(50), m["gcpercent"], "%v", m)
			require.Equal(t, int64(268435456), m["memlimit"], "%v", m)
		})
	}
}

func TestModuleBadArgument(t *testing.T) {
	t.Run("MODULE LOAD", func(t *testing.T) {
		s := harness.Start(t, harness.Options{NoModule: true})
		c := s.Client(t)
		ctx := context.Background()
		err := c.Do(ctx, "MODULE", "LOAD", harness.ModulePath(t), "gomaxprocs", "zero").Err()
		require.Error(t, err, "MODULE LOAD with gomaxprocs zero must fail")
		require.NoError(t, c.Ping(ctx).Err(), "server must survive the failed load")
		require.NotContains(t, s.Modules(t), "charon")
		require.True(t, s.LogContains("gomaxprocs"), "log must name the bad argument:\n%s", s.LogTail(20))

		// The Go runtime stays mapped after the failed load; loading again with
		// good arguments must still work (the natural fix for a typo).
		require.NoError(t, c.Do(ctx, "MODULE", "LOAD", harness.ModulePath(t), "gomaxprocs", "1").Err())
		require.Contains(t, s.Modules(t), "charon")
		require.Equal(t, int64(1), runtimeInfo(t, c)["gomaxprocs"])
	})
	t.Run("startup", func(t *testing.T) {
		log := harness.StartFailure(t, harness.Options{ModuleArgs: []string{"gomaxprocs", "zero"}})
		require.Contains(t, log, "gomaxprocs", "log must name the bad argument")
	})
}

func TestPrimaryReplicaSmoke(t *testing.T) {
	primary, replica := harness.StartPrimaryReplica(t, harness.Options{})
	for _, s := range []*harness.Server{primary, replica} {
		require.Contains(t, s.Modules(t), "charon", s.Addr())
	}
	require.Equal(t, "slave", replica.Info(t, "replication")["role"])

	// A write reaches the replica, and survives a restart of the primary from its
	// RDB (SHUTDOWN SAVE) after which the replica resyncs.
	ctx := context.Background()
	require.NoError(t, primary.Client(t).Set(ctx, "smoke", "1", 0).Err())
	harness.WaitReplicaSync(t, primary, replica)
	require.Equal(t, "1", replica.Client(t).Get(ctx, "smoke").Val())
	primary.Restart(t, harness.Save)
	require.Equal(t, "1", primary.Client(t).Get(ctx, "smoke").Val(), "key lost across SHUTDOWN SAVE + restart")
	harness.WaitReplicaSync(t, primary, replica)
}

func TestClusterSmoke(t *testing.T) {
	c := harness.StartCluster(t, harness.Options{})
	ctx := context.Background()
	for _, s := range c.Nodes() {
		require.Contains(t, s.Modules(t), "charon", s.Addr())
		require.Equal(t, "1", s.Info(t, "cluster")["cluster_enabled"], s.Addr())
		ci, err := s.Client(t).ClusterInfo(ctx).Result()
		require.NoError(t, err)
		require.Contains(t, ci, "cluster_state:ok", s.Addr())
	}
	primaries := c.Primaries(t)
	require.Len(t, primaries, harness.ClusterPrimaries)
	require.Len(t, c.Replicas(t), len(c.Nodes())-harness.ClusterPrimaries)

	cc := c.ClusterClient(t)
	keys := []string{"{a}1", "{a}2", "{b}1", "{c}1"}
	for _, k := range keys {
		require.NoError(t, cc.Set(ctx, k, k, 0).Err())
	}

	// Hold slot of {a} half-migrated: one key moved, one not. The source answers ASK
	// for the moved key, and the cluster client follows it for both.
	slot := int(cc.ClusterKeySlot(ctx, "{a}1").Val())
	from := c.NodeForSlot(t, slot)
	to := primaries[0]
	if to == from {
		to = primaries[1]
	}
	m := c.BeginSlotMigration(t, slot, from, to)
	m.MoveKeys(t, "{a}1")
	err := from.Client(t).Get(ctx, "{a}1").Err()
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "ASK "), "want ASK from the migrating source, got %v", err)
	for _, k := range []string{"{a}1", "{a}2"} {
		require.Equal(t, k, cc.Get(ctx, k).Val(), "read %s mid-migration", k)
	}
	m.Finish(t)
	require.Same(t, to, c.NodeForSlot(t, slot), "slot %d must belong to the target", slot)

	// redis-cli resharding moves slots and keys, and the cluster converges again.
	bslot := int(cc.ClusterKeySlot(ctx, "{b}1").Val())
	owner := c.NodeForSlot(t, bslot)
	var dest *harness.Server
	for _, p := range primaries {
		if p != owner {
			dest = p
			break
		}
	}
	before := countSlots(t, dest)
	c.StartReshard(t, owner, dest, 100).Wait(t)
	require.Equal(t, before+100, countSlots(t, dest), "slots owned by the reshard target")
	for _, k := range keys {
		require.Equal(t, k, cc.Get(ctx, k).Val(), "read %s after resharding", k)
	}
}

// countSlots counts the slots s owns according to CLUSTER SLOTS.
func countSlots(t *testing.T, s *harness.Server) int {
	t.Helper()
	n := 0
	slots, err := s.Client(t).ClusterSlots(context.Background()).Result()
	require.NoError(t, err)
	for _, r := range slots {
		if len(r.Nodes) > 0 && r.Nodes[0].Addr == s.Addr() {
			n += r.End - r.Start + 1
		}
	}
	return n
}
