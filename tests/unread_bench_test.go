//go:build integration

package tests

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/charon-redis/charon/module/unread"
	"github.com/charon-redis/charon/tests/harness"
)

// Benchmarks print numbers and assert nothing about time. Run with
//
//	go test -tags integration -run '^$' -bench Unread -benchtime 3s ./tests/
//
// keys/s counts keys answered per second by one client connection; server-us/call
// is the server's own time per command (INFO commandstats), without the network.

const benchKeysPerCall = 100

// BenchmarkUnreadCount100 compares three ways of reading 100 users on one node.
func BenchmarkUnreadCount100(b *testing.B) {
	srv := harness.Start(b, harness.Options{})
	rdb := srv.Client(b)
	ctx := context.Background()
	f := seedUnread(b, rdb, "u", 10000, 6, 21)
	batches := make([][]string, len(f.ids)/benchKeysPerCall)
	for i := range batches {
		for _, id := range f.ids[i*benchKeysPerCall : (i+1)*benchKeysPerCall] {
			batches[i] = append(batches[i], unread.Key(id))
		}
	}
	sha, err := rdb.ScriptLoad(ctx, seedLua).Result()
	if err != nil {
		b.Fatal(err)
	}

	run := func(b *testing.B, stat string, call func(keys []string) error) {
		if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := call(batches[i%len(batches)]); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N*benchKeysPerCall)/b.Elapsed().Seconds(), "keys/s")
		b.ReportMetric(serverUsecPerCall(b, srv, stat), "server-us/call")
	}

	b.Run("UNREAD.COUNT", func(b *testing.B) {
		run(b, "unread.count", func(keys []string) error {
			args := make([]any, 0, len(keys)+1)
			args = append(args, "UNREAD.COUNT")
			for _, k := range keys {
				args = append(args, k)
			}
			v, err := rdb.Do(ctx, args...).Int64Slice()
			if err == nil && len(v) != len(keys) {
				b.Fatalf("%d counts for %d keys", len(v), len(keys))
			}
			return err
		})
	})
	b.Run("pipeline-ZCARD", func(b *testing.B) {
		run(b, "zcard", func(keys []string) error {
			pipe := rdb.Pipeline()
			for _, k := range keys {
				pipe.ZCard(ctx, k)
			}
			_, err := pipe.Exec(ctx)
			return err
		})
	})
	b.Run("seed-Lua", func(b *testing.B) {
		run(b, "evalsha", func(keys []string) error {
			return rdb.EvalSha(ctx, sha, keys).Err()
		})
	})
}

// serverUsecPerCall reads usec_per_call of a command from INFO commandstats.
func serverUsecPerCall(b *testing.B, srv *harness.Server, cmd string) float64 {
	b.Helper()
	line := srv.Info(b, "commandstats")["cmdstat_"+cmd]
	for _, field := range strings.Split(line, ",") {
		if v, ok := strings.CutPrefix(field, "usec_per_call="); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("commandstats %s: %v", cmd, err)
			}
			return f
		}
	}
	b.Fatalf("commandstats has no usec_per_call for %s: %q", cmd, line)
	return 0
}

// BenchmarkUnreadCounts10k measures Counts for 10,000 distinct users on the
// 3-primary cluster and on one node, with the module and without it (ZCARD).
// rtt/node is round trips (pipelines) per contacted node per call; cmds/call is
// the number of commands one call sends.
func BenchmarkUnreadCounts10k(b *testing.B) {
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = "u" + strconv.Itoa(i)
	}
	measure := func(b *testing.B, c *unread.Client, stats *wireStats) {
		ctx := context.Background()
		if _, err := c.Counts(ctx, ids); err != nil { // warm: state, connections, backend
			b.Fatal(err)
		}
		stats.reset()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			got, err := c.Counts(ctx, ids)
			if err != nil {
				b.Fatal(err)
			}
			if len(got) != len(ids) {
				b.Fatalf("%d counts for %d users", len(got), len(ids))
			}
		}
		b.StopTimer()
		pipes, cmds, _ := stats.snapshot()
		totalPipes, totalCmds := 0, 0
		for addr := range pipes {
			totalPipes += pipes[addr]
			totalCmds += cmds[addr]
		}
		b.ReportMetric(float64(len(pipes)), "nodes")
		b.ReportMetric(float64(totalPipes)/float64(b.N*max(len(pipes), 1)), "rtt/node")
		b.ReportMetric(float64(totalCmds)/float64(b.N), "cmds/call")
	}

	b.Run("cluster", func(b *testing.B) {
		cl := harness.StartCluster(b, harness.Options{})
		cc := cl.ClusterClient(b)
		stats := watchCluster(cc)
		seedUnread(b, cc, "u", len(ids), 6, 22)
		b.Run("module", func(b *testing.B) { measure(b, unread.New(cc, nil), stats) })
		b.Run("plain", func(b *testing.B) {
			measure(b, unread.New(cc, &unread.Options{Backend: unread.BackendPlain}), stats)
		})
	})
	b.Run("single", func(b *testing.B) {
		srv := harness.Start(b, harness.Options{})
		rdb := srv.Client(b)
		stats := newWireStats()
		rdb.AddHook(wireHook{addr: srv.Addr(), stats: stats})
		seedUnread(b, rdb, "u", len(ids), 6, 22)
		b.Run("module", func(b *testing.B) { measure(b, unread.New(rdb, nil), stats) })
		b.Run("plain", func(b *testing.B) {
			measure(b, unread.New(rdb, &unread.Options{Backend: unread.BackendPlain}), stats)
		})
	})
}
