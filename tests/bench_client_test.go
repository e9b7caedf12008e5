//go:build integration

package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/charon-redis/charon/tests/harness"
)

// BenchmarkClientPaths (make bench) is the "through the client" table: what a decision
// costs the server and how long the caller waits, for each way a Go server can ask,
// side by side on one server in one run, in rounds, with 1 and with 50 goroutines each
// asking one decision at a time for a random user out of 100,000. The load runs in
// tests/clientbench, a Go module of its own (it pulls go-redis/redis_rate through the
// module proxy, which the project's go.mod must not depend on), built here against this
// tree's clients.
//
// Environment: CHARON_BENCH_ROUNDS (default 3); CHARON_BENCH_CLIENT_DECISIONS (measured
// decisions per run with 50 goroutines, default 60000; a quarter of that with 1);
// CHARON_BENCH_BASELINE, a git commit whose clients get rows of their own ("baseline"),
// built from `git archive` of that commit; CHARON_BENCH_OUT as for the other tables.
func BenchmarkClientPaths(b *testing.B) {
	rounds := envInt("CHARON_BENCH_ROUNDS", 3)
	n50 := envInt("CHARON_BENCH_CLIENT_DECISIONS", 60000)
	root := harness.RepoRoot(b)
	binDir := filepath.Join(root, "build", "bin")

	type row struct {
		name, path, driver string
	}
	current := buildClientBench(b, root, filepath.Join(binDir, "clientbench"), "")
	rows := []row{
		{"go-redis INCR", "incr", current},
		{"go-redis/redis_rate v10 Allow(PerSecond(10)) (GCRA Lua)", "redis_rate", current},
		{"bare CHARON.RATE key LIMITS 10/1s via rdb.Do", "bare", current},
		{"ratelimit.Limiter Allow, 1 tier", "limiter1", current},
		{"ratelimit.Limiter Allow, 3 tiers", "limiter3", current},
		{"concurrency Reserve + Release (per pair)", "reserve", current},
	}
	baseline := os.Getenv("CHARON_BENCH_BASELINE")
	if baseline != "" {
		old := buildClientBench(b, root, filepath.Join(binDir, "clientbench-"+baseline), baseline)
		rows = append(rows,
			row{"baseline " + baseline + ": Limiter Allow, 1 tier", "limiter1", old},
			row{"baseline " + baseline + ": Limiter Allow, 3 tiers", "limiter3", old},
			row{"baseline " + baseline + ": Reserve + Release", "reserve", old},
		)
	}
	// The script engine (for Redis without the module), forced on the same server.
	nScripts := len(rows)
	rows = append(rows,
		row{"ratelimit.Limiter Allow, 1 tier, script engine", "scripts1", current},
		row{"ratelimit.Limiter Allow, 3 tiers, script engine", "scripts3", current},
		row{"concurrency Reserve + Release (per pair), script engine", "scriptsres", current},
	)

	s := harness.Start(b, harness.Options{})
	rdb := s.Client(b)
	goroutines := []int{1, 50}
	type cell struct {
		cpu, p50, p99 []float64
		errors        int
	}
	cells := make(map[string]*cell)
	key := func(r row, g int) string { return r.name + "|" + strconv.Itoa(g) }
	var pipelined, pipelinedOnce []float64
	for i := 0; i < b.N; i++ {
		for round := 0; round < rounds; round++ {
			for _, g := range goroutines {
				n := n50
				if g == 1 {
					n = max(n50/4, 1000)
				}
				for _, r := range rows {
					// Every row starts from an empty keyspace: the same dictionary sizes.
					if err := rdb.FlushAll(context.Background()).Err(); err != nil {
						b.Fatal(err)
					}
					res := runClientBench(b, r.driver, s.Addr(), r.path, g, n, fmt.Sprintf("cb%d", round))
					c := cells[key(r, g)]
					if c == nil {
						c = &cell{}
						cells[key(r, g)] = c
					}
					c.cpu = append(c.cpu, res.ServerCPUUs/float64(res.Decisions))
					c.p50 = append(c.p50, res.P50Us)
					c.p99 = append(c.p99, res.P99Us)
					c.errors += res.Errors
				}
			}
			for i, c := range []benchCase{
				// The Limiter's key names (prefix, resource, domain) and a token as long as its.
				{"bare -P 16", 100000, []string{"CHARON.RATE", "cb0:limiter1:{u__rand_int__}", "LIMITS", "10/1s"}},
				{"ONCE -P 16", 100000, []string{"CHARON.RATE", "cb0:limiter1:{u__rand_int__}", "LIMITS", "10/1s", "ONCE", "abcdefghij__rand_int__"}},
			} {
				if err := rdb.FlushAll(context.Background()).Err(); err != nil {
					b.Fatal(err)
				}
				us := redisBenchmark(b, s.Port(), rdb, 200000, 16, c)
				if i == 0 {
					pipelined = append(pipelined, us)
				} else {
					pipelinedOnce = append(pipelinedOnce, us)
				}
			}
		}
	}

	// Ratios are taken within a round (the machine is shared), then summarized.
	ratio := func(a, base []float64) []float64 {
		out := make([]float64, len(a))
		for i := range a {
			out[i] = a[i] / base[i]
		}
		return out
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n#### Through the client: server CPU and latency per decision (%d rounds; %d decisions with 50 goroutines, %d with 1; 100,000 users)\n\n",
		rounds, n50, max(n50/4, 1000))
	sb.WriteString("| path | goroutines | server CPU us/decision, min / median / max | vs INCR, min / median / max | client p50 us (median) | client p99 us (median) | errors |\n|---|---|---|---|---|---|---|\n")
	for _, g := range goroutines {
		incr := cells[key(rows[0], g)]
		for _, r := range rows {
			c := cells[key(r, g)]
			_, p50, _ := stats(c.p50)
			_, p99, _ := stats(c.p99)
			fmt.Fprintf(&sb, "| %s | %d | %s | %sx | %.0f | %.0f | %d |\n", r.name, g, fmtStats(c.cpu, 2), fmtStats(ratio(c.cpu, incr.cpu), 2), p50, p99, c.errors)
		}
	}
	fmt.Fprintf(&sb, "| (reference) bare CHARON.RATE key LIMITS 10/1s, redis-benchmark -c 50 -P 16 | | %s | | | | |\n", fmtStats(pipelined, 2))
	fmt.Fprintf(&sb, "| (reference) the same with ONCE and a 22-byte token, redis-benchmark -c 50 -P 16 | | %s | | | | |\n", fmtStats(pipelinedOnce, 2))

	sb.WriteString("\n| acceptance ratio (within each round) | min / median / max | bound |\n|---|---|---|\n")
	lim1 := cells[key(rows[3], 50)]
	fmt.Fprintf(&sb, "| Limiter 1 tier / redis_rate Allow, server CPU, 50 goroutines | %s | <= 0.5 |\n", fmtStats(ratio(lim1.cpu, cells[key(rows[1], 50)].cpu), 2))
	fmt.Fprintf(&sb, "| Limiter 1 tier, 50 goroutines / bare CHARON.RATE -P 16, server CPU | %s | <= 1.3 |\n", fmtStats(ratio(lim1.cpu, pipelined), 2))
	fmt.Fprintf(&sb, "| (reference) Limiter 1 tier, 50 goroutines / CHARON.RATE with ONCE -P 16, server CPU | %s | |\n", fmtStats(ratio(lim1.cpu, pipelinedOnce), 2))
	fmt.Fprintf(&sb, "| (reference) CHARON.RATE with ONCE / bare, -P 16, server CPU | %s | |\n", fmtStats(ratio(pipelinedOnce, pipelined), 2))
	for _, g := range goroutines {
		scr := cells[key(rows[nScripts], g)].cpu
		fmt.Fprintf(&sb, "| (reference) Limiter 1 tier on the scripts / on the module, server CPU, %d goroutines | %s | |\n", g, fmtStats(ratio(scr, cells[key(rows[3], g)].cpu), 2))
		fmt.Fprintf(&sb, "| (reference) Limiter 1 tier on the scripts / redis_rate Allow, server CPU, %d goroutines | %s | |\n", g, fmtStats(ratio(scr, cells[key(rows[1], g)].cpu), 2))
	}
	if baseline != "" {
		fmt.Fprintf(&sb, "| Limiter 1 tier / baseline, p50 latency, 1 goroutine | %s | <= 1.1 |\n",
			fmtStats(ratio(cells[key(rows[3], 1)].p50, cells[key(rows[6], 1)].p50), 2))
		fmt.Fprintf(&sb, "| Limiter 1 tier / baseline, server CPU, 50 goroutines | %s | |\n",
			fmtStats(ratio(lim1.cpu, cells[key(rows[6], 50)].cpu), 2))
	}
	benchReport(b, sb.String())
}

// clientBenchResult is what tests/clientbench prints.
type clientBenchResult struct {
	Path        string  `json:"path"`
	Decisions   int     `json:"decisions"`
	Granted     int     `json:"granted"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error"`
	ServerCPUUs float64 `json:"server_cpu_us"`
	P50Us       float64 `json:"p50_us"`
	P99Us       float64 `json:"p99_us"`
}

func runClientBench(b *testing.B, driver, addr, path string, g, n int, prefix string) clientBenchResult {
	b.Helper()
	cmd := exec.Command(driver, "-addr", addr, "-path", path, "-g", strconv.Itoa(g), "-n", strconv.Itoa(n), "-prefix", prefix)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("%s -path %s -g %d: %v\n%s", driver, path, g, err, stderr.String())
	}
	if stderr.Len() > 0 {
		// go-redis logs, e.g. the maintnotifications handshake line: none are expected.
		b.Fatalf("%s -path %s -g %d wrote to stderr:\n%s", driver, path, g, stderr.String())
	}
	var r clientBenchResult
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("%s: %v: %s", driver, err, out)
	}
	// A few errors are the limiter's Timeout on a busy shared machine; more is a bug.
	if r.Decisions == 0 || r.Errors*100 > r.Decisions {
		b.Fatalf("%s -path %s -g %d: %d errors in %d decisions (first: %s)", driver, path, g, r.Errors, r.Decisions, r.FirstError)
	}
	return r
}

// buildClientBench builds tests/clientbench into out, against this tree's clients or,
// when commit is set, against that commit's (git archive into build/), through the
// module proxy (GOFLAGS=-mod=mod), so that make bench fetches redis_rate itself.
func buildClientBench(b *testing.B, root, out, commit string) string {
	b.Helper()
	dir := filepath.Join(root, "tests", "clientbench")
	args := []string{"build", "-o", out}
	if commit != "" {
		src := filepath.Join(root, "build", "baseline-"+commit)
		if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
			if err := os.MkdirAll(src, 0o755); err != nil {
				b.Fatal(err)
			}
			archive := exec.Command("sh", "-c", "git -C \"$1\" archive \"$2\" go.mod go.sum module | tar -x -C \"$3\"", "sh", root, commit, src)
			if o, err := archive.CombinedOutput(); err != nil {
				b.Fatalf("git archive %s: %v\n%s", commit, err, o)
			}
		}
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err != nil {
			b.Fatal(err)
		}
		sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
		if err != nil {
			b.Fatal(err)
		}
		mod = bytes.Replace(mod, []byte("=> ../.."), []byte("=> "+src), 1)
		modfile := filepath.Join(src, "clientbench.mod")
		if err := os.WriteFile(modfile, mod, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "clientbench.sum"), sum, 0o644); err != nil {
			b.Fatal(err)
		}
		args = append(args, "-modfile", modfile)
	}
	args = append(args, ".")
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, o)
	}
	return out
}
