//go:build integration

package tests

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/tests/harness"
)

// opsT0 is 2100-01-01T00:00:00Z in ms: explicit AT times keep the outcomes fixed.
const opsT0 = 4102444800000

// charonInfo returns INFO charon's fields without their "charon_" prefix.
func charonInfo(t *testing.T, s *harness.Server) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range s.Info(t, "charon") {
		if name, ok := strings.CutPrefix(k, "charon_"); ok {
			out[name] = v
		}
	}
	return out
}

// requireCounters checks the named INFO charon fields against want.
func requireCounters(t *testing.T, s *harness.Server, want map[string]int64) {
	t.Helper()
	got := charonInfo(t, s)
	for name, w := range want {
		v, ok := got[name]
		require.True(t, ok, "INFO charon lacks %s: %v", name, got)
		require.Equal(t, strconv.FormatInt(w, 10), v, "INFO charon %s", name)
	}
}

func do(t *testing.T, c *redis.Client, args ...any) (any, error) {
	t.Helper()
	return c.Do(context.Background(), args...).Result()
}

func mustDo(t *testing.T, c *redis.Client, args ...any) any {
	t.Helper()
	v, err := do(t, c, args...)
	require.NoError(t, err, "%v", args)
	return v
}

func TestInfoCharonCounters(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))

	zero := map[string]int64{}
	for _, n := range []string{"rate_requests", "rate_granted", "rate_rejected", "rate_rejected_tier",
		"rate_rejected_hard", "rate_rejected_global", "rate_rejected_closed", "rate_hits_granted",
		"rate_dryruns", "rate_replays", "rate_errors", "unread_count_calls", "unread_count_keys", "unread_mark_calls",
		"unread_read_calls", "unread_errors", "defrag_moves"} {
		zero[n] = 0
	}
	requireCounters(t, s, zero)

	granted := func(args ...any) int64 {
		t.Helper()
		v := mustDo(t, c, append([]any{"CHARON.RATE"}, args...)...).([]any)
		return v[0].(int64)
	}
	tier := []any{"TIER", 5, 1000, 1000, 0}
	require.EqualValues(t, 3, granted(append([]any{"rl:{a}:x", "MAX", 3, "AT", opsT0}, tier...)...), "grant of 3")
	require.EqualValues(t, 0, granted(append([]any{"rl:{a}:x", "MAX", 3, "AT", opsT0 + 1}, tier...)...), "tier full")
	require.EqualValues(t, 0, granted("rl:{a}:x", "HARD", 3, "AT", opsT0+2, "TIER", 100, 1000, 1000, 0), "HARD")
	require.EqualValues(t, 0, granted(append([]any{"rl:{a}:y", "MAX", 2, "GLOBAL", "rl:{a}", 1, "AT", opsT0}, tier...)...), "GLOBAL")
	require.EqualValues(t, 1, granted(append([]any{"rl:{a}:z", "DRYRUN", "AT", opsT0}, tier...)...), "DRYRUN")
	_, err := do(t, c, append([]any{"CHARON.RATE", "rl:{a}:x", "FOO"}, tier...)...)
	require.ErrorContains(t, err, "ERR syntax")
	mustDo(t, c, "SET", "plain", "v")
	_, err = do(t, c, append([]any{"CHARON.RATE", "plain"}, tier...)...)
	require.ErrorContains(t, err, "WRONGTYPE")
	want := map[string]int64{
		"rate_requests": 7, "rate_granted": 2, "rate_rejected": 3, "rate_rejected_tier": 1,
		"rate_rejected_hard": 1, "rate_rejected_global": 1, "rate_rejected_closed": 0,
		"rate_hits_granted": 3, "rate_dryruns": 1, "rate_errors": 2,
	}
	requireCounters(t, s, want)

	// CLOSED (spec rule 9) is its own reason.
	v := mustDo(t, c, "CHARON.RATE", "rl:{a}:w", "AT", opsT0, "CLOSED").([]any)
	require.EqualValues(t, 0, v[0], "CLOSED rejects")
	want["rate_requests"], want["rate_rejected"], want["rate_rejected_closed"] = 8, 4, 1
	requireCounters(t, s, want)

	mustDo(t, c, "UNREAD.MARK", "u:{1}", "c1")
	mustDo(t, c, "UNREAD.MARK", "u:{1}", "c2", 5)
	mustDo(t, c, "UNREAD.COUNT", "u:{1}", "v:{1}", "w:{1}")
	mustDo(t, c, "UNREAD.READ", "u:{1}", "c1")
	_, err = do(t, c, "UNREAD.MARK", "u:{1}", "c1", "x")
	require.Error(t, err)
	_, err = do(t, c, "UNREAD.COUNT", "plain")
	require.ErrorContains(t, err, "WRONGTYPE")
	requireCounters(t, s, map[string]int64{
		"unread_count_calls": 2, "unread_count_keys": 4, "unread_mark_calls": 3,
		"unread_read_calls": 1, "unread_errors": 2,
	})

	mustDo(t, c, "CHARON.RESERVE", "hd:{db}:d:alice", "MAX", 1, "LIMIT", 4, "AT", opsT0)
	_, err = do(t, c, "CHARON.RESERVE", "plain", "MAX", 1, "LIMIT", 4, "AT", opsT0)
	require.ErrorContains(t, err, "WRONGTYPE")
	_, err = do(t, c, "CHARON.RELEASE", "hd:{db}:d:alice", "nosuchhold", "AT", opsT0)
	require.ErrorContains(t, err, "hold", "a malformed hold id is an error")
	wantHold := map[string]int64{"reserve_calls": 2, "release_calls": 1, "renew_calls": 0,
		"transfer_calls": 0, "seize_calls": 0, "reserve_errors": 2}
	requireCounters(t, s, wantHold)

	// The module section and the Go runtime section.
	info := charonInfo(t, s)
	ver := s.Modules(t)["charon"]
	require.Equal(t, strconv.FormatInt(ver, 10), info["ver"], "INFO charon_ver is MODULE LIST's ver")
	require.Equal(t, fmt.Sprintf("%d.%d.%d", ver/10000, ver/100%100, ver%100), info["version"])
	require.NotEmpty(t, info["server_version"])
	require.Contains(t, []string{"7.0", "7.2", "7.4"}, info["api_level"])
	require.True(t, strings.HasPrefix(info["go_version"], "go"), "go_version %q", info["go_version"])
	for _, n := range []string{"gomaxprocs", "gcpercent", "memlimit", "heap_inuse", "heap_objects",
		"heap_allocs", "gc_cycles", "gc_last_pause_ns", "gc_pause_total_ns", "goroutines"} {
		_, err := strconv.ParseInt(info[n], 10, 64)
		require.NoError(t, err, "INFO charon %s=%q", n, info[n])
	}
	// INFO charon_rate is one section; INFO everything has all of them.
	rateOnly := s.Info(t, "charon_rate")
	require.Contains(t, rateOnly, "charon_rate_requests")
	require.NotContains(t, rateOnly, "charon_go_version")
	require.Contains(t, s.Info(t, "everything"), "charon_go_version")
}

func TestConfigRuntimeSettings(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	get := func(name string) string {
		t.Helper()
		m, err := c.ConfigGet(ctx, name).Result()
		require.NoError(t, err)
		return m[name]
	}
	require.Equal(t, "100", get("charon.gcpercent"), "Go's default GC percent")
	require.Equal(t, "0", get("charon.memlimit"), "no memory limit by default")
	require.Equal(t, fmt.Sprint(runtimeInfo(t, c)["gomaxprocs"]), get("charon.gomaxprocs"))

	require.NoError(t, c.ConfigSet(ctx, "charon.gcpercent", "50").Err())
	require.NoError(t, c.ConfigSet(ctx, "charon.memlimit", "1gb").Err())
	require.NoError(t, c.ConfigSet(ctx, "charon.gomaxprocs", "1").Err())
	require.Equal(t, "50", get("charon.gcpercent"))
	require.Equal(t, "1073741824", get("charon.memlimit"))
	require.Equal(t, "1", get("charon.gomaxprocs"))
	rt := runtimeInfo(t, s.Client(t))
	require.EqualValues(t, 50, rt["gcpercent"], "the Go runtime follows CONFIG SET")
	require.EqualValues(t, 1073741824, rt["memlimit"])
	require.EqualValues(t, 1, rt["gomaxprocs"])
	info := charonInfo(t, s)
	require.Equal(t, "50", info["gcpercent"])
	require.Equal(t, "1073741824", info["memlimit"])

	for _, bad := range []struct{ name, value, msg string }{
		{"charon.gcpercent", "-2", "between -1 and 100000"},
		{"charon.gcpercent", "100001", "between -1 and 100000"},
		{"charon.gomaxprocs", "0", "between 1 and 1024"},
		{"charon.gomaxprocs", "abc", "charon.gomaxprocs"},
		{"charon.memlimit", "-1", "charon.memlimit"},
	} {
		err := c.ConfigSet(ctx, bad.name, bad.value).Err()
		require.ErrorContains(t, err, bad.msg, "CONFIG SET %s %s", bad.name, bad.value)
	}
	require.Equal(t, "50", get("charon.gcpercent"), "a refused value changes nothing")
	require.Equal(t, "1", get("charon.gomaxprocs"))

	require.NoError(t, c.ConfigSet(ctx, "charon.memlimit", "0").Err())
	require.EqualValues(t, int64(1<<63-1), runtimeInfo(t, s.Client(t))["memlimit"], "0 lifts the limit")
}

func TestConfigFromConfFileArgsAndLoadex(t *testing.T) {
	ctx := context.Background()

	// redis.conf lines.
	s := harness.Start(t, harness.Options{Config: []string{"charon.gcpercent 70", "charon.memlimit 64mb"}})
	c := s.Client(t)
	require.EqualValues(t, 70, runtimeInfo(t, c)["gcpercent"])
	require.EqualValues(t, 64<<20, runtimeInfo(t, c)["memlimit"])
	require.False(t, s.LogContains("old way"), "no old-way notice without old arguments")

	// Old load arguments still work, become the configs' values, and say they are old.
	s2 := harness.Start(t, harness.Options{ModuleArgs: []string{"gcpercent", "30", "gomaxprocs", "1"}})
	c2 := s2.Client(t, harness.Protocol(2))
	m, err := c2.ConfigGet(ctx, "charon.*").Result()
	require.NoError(t, err)
	require.Equal(t, "30", m["charon.gcpercent"])
	require.Equal(t, "1", m["charon.gomaxprocs"])
	require.EqualValues(t, 30, runtimeInfo(t, c2)["gcpercent"])
	require.True(t, s2.LogContains("module argument gcpercent is the old way"), "log:\n%s", s2.LogTail(20))
	require.True(t, s2.LogContains("module argument gomaxprocs is the old way"))

	// MODULE LOADEX ... CONFIG.
	s3 := harness.Start(t, harness.Options{NoModule: true})
	c3 := s3.Client(t, harness.Protocol(2))
	require.NoError(t, c3.Do(ctx, "MODULE", "LOADEX", harness.ModulePath(t), "CONFIG", "charon.gcpercent", "40").Err())
	require.Equal(t, "40", mustCfg(t, c3, "charon.gcpercent"))
	require.EqualValues(t, 40, runtimeInfo(t, c3)["gcpercent"])

	// A bad value in redis.conf refuses the start, naming the range.
	log := harness.StartFailure(t, harness.Options{Config: []string{"charon.gcpercent 100001"}})
	require.Contains(t, log, "between -1 and 100000")
}

func mustCfg(t *testing.T, c *redis.Client, name string) string {
	t.Helper()
	m, err := c.ConfigGet(context.Background(), name).Result()
	require.NoError(t, err)
	return m[name]
}

// serverAPI says which ACL APIs the running server should offer: Redis 7.2 added
// RedisModule_SetCommandACLCategories and 7.4 RedisModule_AddACLCategory; Valkey
// (forked from 7.2.4, reports redis_version 7.2.4) has both since 8.0.
func serverAPI(t *testing.T, s *harness.Server) (setCategories, addCategory bool, name string) {
	t.Helper()
	info := s.Info(t, "server")
	if v, ok := info["valkey_version"]; ok {
		major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
		return true, major >= 8, "valkey " + v
	}
	v := info["redis_version"]
	parts := strings.SplitN(v, ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor, _ := strconv.Atoi(parts[1])
	ver := major*100 + minor
	return ver >= 702, ver >= 704, "redis " + v
}

func TestACLCategories(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	setCats, addCat, server := serverAPI(t, s)
	t.Logf("%s: SetCommandACLCategories %v, AddACLCategory %v", server, setCats, addCat)

	info := charonInfo(t, s)
	require.Equal(t, map[bool]string{true: "1", false: "0"}[setCats], info["acl_categories"], "module's own detection")
	require.Equal(t, map[bool]string{true: "1", false: "0"}[addCat], info["acl_category_charon"])

	cat := func(name string) ([]string, error) { return c.Do(ctx, "ACL", "CAT", name).StringSlice() }
	all, err := c.Do(ctx, "COMMAND", "LIST", "FILTERBY", "MODULE", "charon").StringSlice()
	require.NoError(t, err)
	require.Subset(t, all, []string{"charon.rate", "charon.inspect", "charon.loadvalue", "charon.debug",
		"unread.count", "unread.mark", "unread.read"})

	write, err := cat("write")
	require.NoError(t, err)
	read, err := cat("read")
	require.NoError(t, err)
	fast, err := cat("fast")
	require.NoError(t, err)
	if setCats {
		require.Subset(t, write, []string{"charon.rate", "charon.loadvalue", "unread.mark", "unread.read"})
		require.Subset(t, read, []string{"charon.inspect", "unread.count"})
		require.Subset(t, fast, []string{"unread.count", "unread.mark", "unread.read"})
		require.NotContains(t, fast, "charon.rate")
	} else {
		// Redis 7.0: module commands are in no category; the module works without.
		require.NotContains(t, write, "charon.rate")
		require.NotContains(t, read, "unread.count")
	}

	as := func(user string) *redis.Client {
		return s.Client(t, harness.Protocol(2), func(o *redis.Options) { o.Username, o.Password = user, "pw" })
	}
	rateArgs := []any{"CHARON.RATE", "rl:acl", "AT", opsT0, "TIER", 5, 1000, 1000, 0}
	if addCat {
		members, err := cat("charon")
		require.NoError(t, err)
		require.ElementsMatch(t, all, members, "ACL CAT charon")
		mustDo(t, c, "ACL", "SETUSER", "only", "on", ">pw", "~*", "+@charon")
		mustDo(t, c, "ACL", "SETUSER", "without", "on", ">pw", "~*", "+@all", "-@charon")

		only := as("only")
		require.NoError(t, only.Do(ctx, rateArgs...).Err(), "+@charon may run CHARON.RATE")
		require.NoError(t, only.Do(ctx, "UNREAD.COUNT", "u").Err())
		require.ErrorContains(t, only.Do(ctx, "GET", "k").Err(), "NOPERM")

		without := as("without")
		require.ErrorContains(t, without.Do(ctx, rateArgs...).Err(), "NOPERM")
		require.ErrorContains(t, without.Do(ctx, "UNREAD.MARK", "u", "c").Err(), "NOPERM")
		require.ErrorIs(t, without.Do(ctx, "GET", "k").Err(), redis.Nil, "-@charon keeps the rest")
	} else {
		_, err := cat("charon")
		require.ErrorContains(t, err, "charon", "no charon category before AddACLCategory")
		_, err = do(t, c, "ACL", "SETUSER", "only", "on", ">pw", "~*", "+@charon")
		require.ErrorContains(t, err, "+@charon", "no charon category to grant")
	}
	// Whatever the server, the default user runs every command.
	require.NoError(t, c.Do(ctx, rateArgs...).Err())
	require.NoError(t, c.Do(ctx, "CHARON.INSPECT", "rl:acl", "AT", opsT0).Err())
}

func TestActiveDefragKeepsValues(t *testing.T) {
	s := harness.Start(t, harness.Options{Config: []string{"hz 100"}})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	if alloc := s.Info(t, "memory")["mem_allocator"]; !strings.HasPrefix(alloc, "jemalloc") {
		require.Error(t, c.ConfigSet(ctx, "activedefrag", "yes").Err(), "activedefrag without jemalloc (%s)", alloc)
		return
	}

	// Fill the allocator's bins with charon-rl values, then delete every other one:
	// the survivors sit in half-empty runs, which is what active defrag moves.
	const n = 40000
	pipe := c.Pipeline()
	flush := func() {
		if pipe.Len() >= 1000 {
			_, err := pipe.Exec(ctx)
			require.NoError(t, err)
		}
	}
	// One key in eight is a charon-hd value (CHARON.RESERVE): both types defragment.
	key := func(i int) string {
		if i%8 == 3 {
			return fmt.Sprintf("hd:%d", i)
		}
		return fmt.Sprintf("rl:%d", i)
	}
	for i := 0; i < n; i++ {
		if i%8 == 3 {
			pipe.Do(ctx, "CHARON.RESERVE", key(i), "MAX", 1+i%4, "LIMIT", 10, "LEASE", 3600000, "AT", opsT0+int64(i%997))
		} else {
			pipe.Do(ctx, "CHARON.RATE", key(i), "MAX", 1+i%4, "AT", opsT0+int64(i%997),
				"TIER", 10, 1000, 1000, 0, "TIER", 100, 60000, 60000, 0)
		}
		flush()
	}
	for i := 0; i < n; i += 2 {
		pipe.Del(ctx, key(i))
		flush()
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)
	digest := mustDo(t, c, "DEBUG", "DIGEST")
	var sample []any
	for i := 1; i < n; i += 4000 {
		sample = append(sample, mustDo(t, c, "DEBUG", "DIGEST-VALUE", key(i), key(i+2)))
	}
	hitsBefore, _ := strconv.ParseInt(s.Info(t, "stats")["active_defrag_hits"], 10, 64)

	for _, kv := range [][2]string{
		{"active-defrag-ignore-bytes", "1"}, {"active-defrag-threshold-lower", "0"},
		{"active-defrag-cycle-min", "50"}, {"active-defrag-cycle-max", "99"}, {"activedefrag", "yes"},
	} {
		require.NoError(t, c.ConfigSet(ctx, kv[0], kv[1]).Err(), "CONFIG SET %s", kv[0])
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		m := charonInfo(t, s)
		return m["defrag_moves"] != "0", "charon_defrag_moves still 0; defrag running " + s.Info(t, "memory")["active_defrag_running"]
	})
	require.NoError(t, c.ConfigSet(ctx, "activedefrag", "no").Err())
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		r := s.Info(t, "memory")["active_defrag_running"]
		return r == "0", "active_defrag_running " + r
	})

	moves, _ := strconv.ParseInt(charonInfo(t, s)["defrag_moves"], 10, 64)
	hitsAfter, _ := strconv.ParseInt(s.Info(t, "stats")["active_defrag_hits"], 10, 64)
	t.Logf("charon_defrag_moves %d, active_defrag_hits %d -> %d", moves, hitsBefore, hitsAfter)
	require.Greater(t, hitsAfter, hitsBefore, "INFO stats active_defrag_hits moved")
	require.Equal(t, digest, mustDo(t, c, "DEBUG", "DIGEST"), "dataset digest kept across defrag")
	j := 0
	for i := 1; i < n; i += 4000 {
		require.Equal(t, sample[j], mustDo(t, c, "DEBUG", "DIGEST-VALUE", key(i), key(i+2)), "%s %s", key(i), key(i+2))
		j++
	}
	require.EqualValues(t, n/2, mustDo(t, c, "DBSIZE"))
	// The moved values still work: a request on one of them sees its history.
	v := mustDo(t, c, "CHARON.INSPECT", "rl:1", "AT", opsT0+1).([]any)
	require.NotEmpty(t, v)
}

// A crash report prints every module's INFO from a signal handler: the counters are
// there (read from C memory) and the Go runtime section is not (no Go in a signal
// handler), and writing it does not hang the dying server.
func TestInfoInCrashReport(t *testing.T) {
	s := harness.Start(t, harness.Options{Config: []string{"crash-memcheck-enabled no"}})
	c := s.Client(t, harness.Protocol(2))
	mustDo(t, c, "UNREAD.COUNT", "a", "b")
	mustDo(t, c, "CHARON.RATE", "rl:crash", "AT", opsT0, "TIER", 5, 1000, 1000, 0)
	_, err := do(t, c, "DEBUG", "SEGFAULT")
	require.Error(t, err, "DEBUG SEGFAULT kills the server")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		return s.LogContains("CONFIG DEBUG OUTPUT"), "crash report not written past the modules' INFO yet"
	})
	log := s.Log(t)
	i := strings.Index(log, "MODULES INFO OUTPUT")
	require.GreaterOrEqual(t, i, 0, "crash report has the modules' INFO")
	report := log[i:]
	for _, want := range []string{"# charon_module", "charon_ver:", "charon_rate_requests:1", "charon_rate_granted:1",
		"charon_unread_count_calls:1", "charon_unread_count_keys:2"} {
		require.Contains(t, report, want)
	}
	require.NotContains(t, report, "charon_go_version", "no Go runtime section in a crash report")
}
