//go:build integration

package tests

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

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

// envBaseModule names a charon.so to compare with (a build of an earlier commit);
// BenchmarkHoldBeforeAfter skips the comparison without it.
const envBaseModule = "CHARON_BASE_MODULE"

// holdKeyBytes is MEMORY USAGE of key (the whole value, SAMPLES 0).
func holdKeyBytes(b *testing.B, rdb *redis.Client, key string) int64 {
	b.Helper()
	n, err := rdb.MemoryUsage(context.Background(), key, 0).Result()
	if err != nil {
		b.Fatalf("MEMORY USAGE %s: %v", key, err)
	}
	return n
}

// BenchmarkHoldBeforeAfter compares, side by side on one machine, a build of an
// earlier commit (CHARON_BASE_MODULE) with this one: the server CPU of a RESERVE +
// RELEASE pair (and, for this build, with ONCE), in interleaved rounds (the minimum of
// each is reported), and the memory of a key per hold and per remembered token.
func BenchmarkHoldBeforeAfter(b *testing.B) {
	base := os.Getenv(envBaseModule)
	if base == "" {
		b.Skipf("set %s to a charon.so built from an earlier commit", envBaseModule)
	}
	const pairs = 100_000
	cur := harness.Start(b, harness.Options{})
	old := harness.Start(b, harness.Options{NoModule: true, Config: []string{"loadmodule " + base}})
	rc, ro := cur.Client(b, harness.Protocol(2)), old.Client(b, harness.Protocol(2))
	for i := 0; i < b.N; i++ {
		best := map[string]float64{"before": 1e9, "after": 1e9, "after ONCE": 1e9}
		for round := 0; round < 3; round++ {
			best["before"] = min(best["before"], holdPairsCPU(b, ro, "hd:{ba}:k", pairs))
			best["after"] = min(best["after"], holdPairsCPU(b, rc, "hd:{ba}:k", pairs))
			// ONCE: a key remembers at most 65,536 tokens of 10 s, so 50,000 per key.
			const oncePairs = 50_000
			okey := "hd:{ba}:once" + strconv.Itoa(round)
			before := serverCPU(b, rc)
			res := holdPipelined(b, rc, oncePairs, func(j int) []any {
				return []any{"CHARON.RESERVE", okey, "LIMIT", 1_000_000_000, "LEASE", 7_200_000, "ONCE", "t" + strconv.Itoa(j)}
			})
			holdPipelined(b, rc, oncePairs, func(j int) []any {
				v, _ := res[j].Slice()
				return []any{"CHARON.RELEASE", okey, v[1]}
			})
			best["after ONCE"] = min(best["after ONCE"], (serverCPU(b, rc)-before)/oncePairs)
		}
		// Memory: 10 holds and 10,010 holds in a key; then 10,000 remembered tokens.
		perHold := map[string]float64{}
		for name, c := range map[string]*redis.Client{"before": ro, "after": rc} {
			key := "hd:{mem}:" + name
			holdPipelined(b, c, 10, func(int) []any { return []any{"CHARON.RESERVE", key, "LIMIT", 1_000_000_000, "LEASE", 3_600_000} })
			small := holdKeyBytes(b, c, key)
			holdPipelined(b, c, 10_000, func(int) []any { return []any{"CHARON.RESERVE", key, "LIMIT", 1_000_000_000, "LEASE", 3_600_000} })
			perHold[name] = float64(holdKeyBytes(b, c, key)-small) / 10_000
			b.Logf("%s: a key with 10 holds takes %d bytes", name, small)
		}
		tk := "hd:{mem}:tokens"
		holdPipelined(b, rc, 10, func(j int) []any { return []any{"CHARON.RESERVE", tk, "LIMIT", 1_000_000_000, "LEASE", 3_600_000} })
		small := holdKeyBytes(b, rc, tk)
		holdPipelined(b, rc, 10_000, func(j int) []any {
			return []any{"CHARON.RESERVE", tk, "LIMIT", 1_000_000_000, "LEASE", 3_600_000, "ONCE", "m" + strconv.Itoa(j)}
		})
		perToken := float64(holdKeyBytes(b, rc, tk)-small)/10_000 - perHold["after"]
		b.ReportMetric(best["before"], "before-us/pair")
		b.ReportMetric(best["after"], "after-us/pair")
		b.ReportMetric(best["after ONCE"], "after-once-us/pair")
		fmt.Printf("server CPU per RESERVE+RELEASE pair: before %.3f us, after %.3f us (%.2fx), after with ONCE %.3f us; "+
			"memory per hold: before %.1f B, after %.1f B; per remembered ONCE token %.1f B more\n",
			best["before"], best["after"], best["after"]/best["before"], best["after ONCE"], perHold["before"], perHold["after"], perToken)
	}
}

// BenchmarkHoldWaitLatency measures (never asserts) how long after a lease's deadline
// the first waiter is granted, on the real clock: a holder takes the only copy with
// a 200 ms lease, a waiter blocks, and the delay from the deadline to the waiter's
// grant is taken on the server (the grant's effective time, deadline - LEASE) and on
// the client (when the reply arrives).
func BenchmarkHoldWaitLatency(b *testing.B) {
	s := harness.Start(b, harness.Options{})
	rdb := s.Client(b, harness.Protocol(2))
	wc := s.Client(b, harness.Protocol(2), func(o *redis.Options) { o.PoolSize = 1; o.ReadTimeout = 10 * time.Second })
	ctx := context.Background()
	const rounds = 50
	for i := 0; i < b.N; i++ {
		var server, client []float64
		for r := 0; r < rounds; r++ {
			key := "hd:{lat}:" + strconv.Itoa(r)
			h, err := rdb.Do(ctx, "CHARON.RESERVE", key, "LIMIT", 1, "LEASE", 200).Slice()
			if err != nil {
				b.Fatal(err)
			}
			deadline := h[6].(int64)
			v, err := wc.Do(ctx, "CHARON.RESERVE", key, "LIMIT", 1, "LEASE", 1000, "BLOCK", 5000).Slice()
			got := time.Now()
			if err != nil || v[1] == nil {
				b.Fatalf("waiter: %v %v", v, err)
			}
			server = append(server, float64(v[6].(int64)-1000-deadline))
			client = append(client, float64(got.UnixMicro())/1000-float64(deadline))
		}
		slices.Sort(server)
		slices.Sort(client)
		pct := func(xs []float64, p float64) float64 { return xs[min(len(xs)-1, int(p*float64(len(xs))))] }
		b.ReportMetric(pct(client, 0.5), "p50-ms")
		b.ReportMetric(pct(client, 0.99), "p99-ms")
		fmt.Printf("lease deadline -> first waiter's grant (%d rounds): on the server (grant time - deadline, whole ms) p50 %.0f, max %.0f ms; "+
			"at the client (reply received - deadline) p50 %.2f, p90 %.2f, max %.2f ms\n",
			rounds, pct(server, 0.5), server[len(server)-1], pct(client, 0.5), pct(client, 0.9), client[len(client)-1])
	}
}

// BenchmarkHoldWaiterIdleCPU measures the server CPU of 200 clients waiting in
// CHARON.RESERVE ... BLOCK with nothing happening (leases of an hour), against 200
// idle connections in their place, over 3-second windows (200 other idle connections
// in both): the waiters cost nothing between events (no polling).
func BenchmarkHoldWaiterIdleCPU(b *testing.B) {
	const n = 200
	s := harness.Start(b, harness.Options{})
	rdb := s.Client(b, harness.Protocol(2))
	ctx := context.Background()
	if err := rdb.Do(ctx, "CHARON.RESERVE", "hd:{idle}:k", "LIMIT", 1, "LEASE", 3_600_000).Err(); err != nil {
		b.Fatal(err)
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		return c
	}
	idle := make([]net.Conn, n)
	for i := range idle {
		idle[i] = dial()
		if _, err := idle[i].Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
			b.Fatal(err)
		}
	}
	window := func() float64 {
		before := serverCPU(b, rdb)
		time.Sleep(3 * time.Second)
		return (serverCPU(b, rdb) - before) / 3 // us of CPU per second
	}
	req := "*8\r\n$14\r\nCHARON.RESERVE\r\n$11\r\nhd:{idle}:k\r\n$5\r\nLIMIT\r\n$1\r\n1\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n$5\r\nLEASE\r\n$4\r\n1000\r\n"
	open := func(cmd string) []net.Conn {
		cs := make([]net.Conn, n)
		for j := range cs {
			cs[j] = dial()
			if _, err := cs[j].Write([]byte(cmd)); err != nil {
				b.Fatal(err)
			}
		}
		return cs
	}
	closeAll := func(cs []net.Conn) {
		for _, c := range cs {
			_ = c.Close()
		}
	}
	for i := 0; i < b.N; i++ {
		// The same number of connections in both windows: n more idle ones, or n
		// waiters instead; three rounds each, alternating, the least of each reported
		// (the machine is shared).
		idleCPU, waitCPU := 1e12, 1e12
		for round := 0; round < 3; round++ {
			extra := open("*1\r\n$4\r\nPING\r\n")
			for _, c := range extra { // each PING answered: the server is done with them
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					b.Fatal(err)
				}
			}
			idleCPU = min(idleCPU, window())
			closeAll(extra)
			waiters := open(req)
			harness.Eventually(b, 20*time.Second, func() (bool, string) {
				w := s.Info(b, "charon_reserve")["charon_reserve_waiters"]
				return w == strconv.Itoa(n), w + " waiters"
			})
			waitCPU = min(waitCPU, window())
			closeAll(waiters)
			harness.Eventually(b, 20*time.Second, func() (bool, string) {
				w := s.Info(b, "charon_reserve")["charon_reserve_waiters"]
				return w == "0", w + " waiters"
			})
		}
		b.ReportMetric(idleCPU, "idle-us/s")
		b.ReportMetric(waitCPU, "waiting-us/s")
		fmt.Printf("server CPU with %d idle connections: %.0f us/s; with %d idle connections and %d clients waiting in BLOCK: %.0f us/s (%+.2f us/s per waiter)\n",
			2*n, idleCPU, n, n, waitCPU, (waitCPU-idleCPU)/n)
	}
}
