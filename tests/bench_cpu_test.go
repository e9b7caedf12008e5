//go:build integration

package tests

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
)

// runRedisBenchmark runs redis-benchmark with 50 clients, pipeline 16, over 100k
// random keys, and returns the server CPU microseconds per request it cost.
func runRedisBenchmark(b *testing.B, s *harness.Server, rdb *redis.Client, requests int, cmd ...string) float64 {
	b.Helper()
	bin := filepath.Join(filepath.Dir(harness.RedisCLIPath(b)), "redis-benchmark")
	before := serverCPU(b, rdb)
	args := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port()), "-c", "50", "-P", "16",
		"-r", "100000", "-n", strconv.Itoa(requests), "-q"}, cmd...)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("redis-benchmark %v: %v\n%s", cmd, err, out)
	}
	after := serverCPU(b, rdb)
	b.Logf("redis-benchmark %s: %s", cmd[0], strings.TrimSpace(lastLine(string(out))))
	return (after - before) / float64(requests)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexAny(s, "\r\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

func debugRuntimeInt(b *testing.B, rdb *redis.Client, field string) int64 {
	b.Helper()
	v, err := rdb.Do(context.Background(), "CHARON.DEBUG", "RUNTIME").Result()
	if err != nil {
		b.Fatalf("CHARON.DEBUG RUNTIME: %v", err)
	}
	m, err := harness.ReplyMap(v)
	if err != nil {
		b.Fatalf("CHARON.DEBUG RUNTIME: %v", err)
	}
	n, ok := m[field].(int64)
	if !ok {
		b.Fatalf("CHARON.DEBUG RUNTIME: no integer %s in %v", field, m)
	}
	return n
}

// BenchmarkServerCPU compares the server CPU per request of CHARON.RATE (3 tiers,
// 100k random keys, 50 clients, pipeline 16) with INCR in the same run, and checks
// how many Go GC cycles ran meanwhile. Run it with -benchtime 1x (make bench): each
// iteration is a whole redis-benchmark run of 1M requests per command.
func BenchmarkServerCPU(b *testing.B) {
	const requests = 1_000_000
	s := harness.Start(b, harness.Options{})
	rdb := s.Client(b)
	rate := []string{"CHARON.RATE", "rl:__rand_int__", "MAX", "1",
		"TIER", "5", "1000", "60000", "0",
		"TIER", "50", "5000", "60000", "15000",
		"TIER", "1", "15000", "15000", "0"}
	for i := 0; i < b.N; i++ {
		incr := runRedisBenchmark(b, s, rdb, requests, "INCR", "k:__rand_int__")
		gcBefore := debugRuntimeInt(b, rdb, "numgc")
		rl := runRedisBenchmark(b, s, rdb, requests, rate...)
		gcAfter := debugRuntimeInt(b, rdb, "numgc")
		b.ReportMetric(incr, "incr-server-us/req")
		b.ReportMetric(rl, "rate-server-us/req")
		b.ReportMetric(rl/incr, "rate/incr")
		b.ReportMetric(float64(gcAfter-gcBefore), "go-gc-cycles/1M-rate")
		fmt.Printf("server CPU per request: INCR %.3f us, CHARON.RATE (3 tiers) %.3f us (%.2fx); Go GC cycles during 1M CHARON.RATE: %d\n",
			incr, rl, rl/incr, gcAfter-gcBefore)
	}
}
