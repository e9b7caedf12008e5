//go:build integration

package tests

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
)

// holdPipelined sends n commands built by mk in pipelines of 1000 and returns the
// replies.
func holdPipelined(b *testing.B, rdb *redis.Client, n int, mk func(i int) []any) []*redis.Cmd {
	b.Helper()
	ctx := context.Background()
	out := make([]*redis.Cmd, 0, n)
	for done := 0; done < n; done += 1000 {
		p := rdb.Pipeline()
		for i := done; i < min(done+1000, n); i++ {
			out = append(out, p.Do(ctx, mk(i)...))
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatalf("pipeline: %v", err)
		}
	}
	return out
}

// holdPairsCPU runs n RESERVE + RELEASE pairs on key (which already stores `live`
// holds with earlier deadlines) and returns the server CPU microseconds per pair.
func holdPairsCPU(b *testing.B, rdb *redis.Client, key string, n int) float64 {
	b.Helper()
	before := serverCPU(b, rdb)
	res := holdPipelined(b, rdb, n, func(int) []any {
		return []any{"CHARON.RESERVE", key, "LIMIT", 1_000_000_000, "LEASE", 7_200_000}
	})
	ids := make([]string, len(res))
	for i, r := range res {
		v, err := r.Slice()
		if err != nil || v[1] == nil {
			b.Fatalf("reserve %d: %v %v", i, v, err)
		}
		ids[i] = v[1].(string)
	}
	holdPipelined(b, rdb, n, func(i int) []any { return []any{"CHARON.RELEASE", key, ids[i]} })
	return (serverCPU(b, rdb) - before) / float64(n)
}

// BenchmarkHoldServerCPU compares the server CPU of a CHARON.RESERVE + CHARON.RELEASE
// pair with INCR (the same pipelined Go client, and redis-benchmark for INCR), and the
// cost of a pair on a key that stores 10 vs 10,000 live holds (the contract: <= 1.2x).
// Run with -benchtime 1x (make bench).
func BenchmarkHoldServerCPU(b *testing.B) {
	const pairs = 200_000
	s := harness.Start(b, harness.Options{})
	rdb := s.Client(b, harness.Protocol(2))
	for i := 0; i < b.N; i++ {
		before := serverCPU(b, rdb)
		holdPipelined(b, rdb, pairs, func(i int) []any { return []any{"INCR", "k:" + strconv.Itoa(i%100_000)} })
		incr := (serverCPU(b, rdb) - before) / pairs
		incrRB := runRedisBenchmark(b, s, rdb, 1_000_000, "INCR", "k:__rand_int__")

		// Interleaved rounds on the two keys; the minimum of each is reported (the
		// machine is shared and noisy), with every round logged.
		perPair := map[int]float64{10: 1e9, 10_000: 1e9}
		for _, live := range []int{10, 10_000} {
			key := fmt.Sprintf("hd:{bench%d}", live)
			holdPipelined(b, rdb, live, func(int) []any {
				return []any{"CHARON.RESERVE", key, "LIMIT", 1_000_000_000, "LEASE", 3_600_000}
			})
		}
		for round := 0; round < 3; round++ {
			for _, live := range []int{10, 10_000} {
				us := holdPairsCPU(b, rdb, fmt.Sprintf("hd:{bench%d}", live), pairs/2)
				b.Logf("round %d: %d live holds: %.3f us per pair", round, live, us)
				perPair[live] = min(perPair[live], us)
			}
		}
		b.ReportMetric(incr, "incr-server-us/req")
		b.ReportMetric(perPair[10], "pair10-server-us")
		b.ReportMetric(perPair[10_000], "pair10k-server-us")
		b.ReportMetric(perPair[10_000]/perPair[10], "10k/10")
		fmt.Printf("server CPU: INCR %.3f us/req (pipelined Go client; redis-benchmark -P 16: %.3f us); RESERVE+RELEASE pair %.3f us with 10 live holds (%.2fx INCR, %.2f us per command), %.3f us with 10,000 live holds (%.2fx the 10-hold cost)\n",
			incr, incrRB, perPair[10], perPair[10]/incr, perPair[10]/2, perPair[10_000], perPair[10_000]/perPair[10])
	}
}
