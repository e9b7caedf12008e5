//go:build integration

package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/tests/harness"
)

// The CHARON.RATE cost benchmarks (make bench). Every number is server CPU (INFO cpu,
// user + sys) per request, measured with redis-benchmark, every case side by side in
// one run, repeated in rounds; ratios are taken within a round (the machine is shared,
// so rounds differ) and reported as min / median / max. BenchmarkRateInstructions
// counts instructions under valgrind (cachegrind) for the cases where the cost must
// not grow. Environment: CHARON_BENCH_ROUNDS (default 3), CHARON_BENCH_REQUESTS
// (default 200000 per case and round), CHARON_BENCH_OUT (a file that receives the
// markdown tables, for docs/benchmarks.md), CHARON_BENCH_LUA (charon.lua, the Lua
// design CHARON.RATE replaces; skipped when absent).

// The 3-tier configuration of every case, in both forms, and as charon.lua's ARGV.
var (
	benchTiers = []string{"TIER", "10", "1000", "1000", "0", "TIER", "50", "5000", "5000", "15000",
		"TIER", "1000", "60000", "60000", "600000"}
	benchLimits = []string{"LIMITS", "10/1s,50/5s/5s/15s,1000/1m/1m/10m"}
	benchLuaArg = []string{"*", "1", "1", "10", "1000", "1000", "0", "50", "5000", "5000", "15000",
		"1000", "60000", "60000", "600000"}
)

// growthTier is the one tier of the growth cases: never full, a 10-year window.
var growthTier = []string{"TIER", "1000000000000", "315360000000", "315360000000", "0"}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// benchCase is one redis-benchmark command over a key space (-r).
type benchCase struct {
	name string
	keys int // -r: random keys; 0: one key
	cmd  []string
}

// growthValue is a domain value with n hits at n distinct ms ending at last, under
// growthTier, entered at the first hit.
func growthValue(b testing.TB, n int, last int64) []byte {
	v := &rate.Value{Kind: rate.KindDomain, Last: last}
	first := last - int64(n) + 1
	v.Tiers = []rate.StoredTier{{Tier: rate.Tier{Limit: 1_000_000_000_000, Window: 315360000000, Active: 315360000000},
		Entered: true, EnteredAt: first}}
	v.Events = make([]rate.Event, n)
	for i := range v.Events {
		v.Events[i].At = first + int64(i)
		v.Events[i].Counts[0] = 1
	}
	enc, err := rate.Encode(nil, v)
	if err != nil {
		b.Fatal(err)
	}
	return enc
}

// rateCases sets up the keys and script the cases need on rdb and returns the cases
// (the compact form only when the server's module knows LIMITS).
func rateCases(b testing.TB, rdb *redis.Client) []benchCase {
	ctx := context.Background()
	// The Lua baseline is not part of the repository: CHARON_BENCH_LUA names it.
	luaPath := os.Getenv("CHARON_BENCH_LUA")
	if luaPath == "" {
		luaPath = "/work/shared/bench/charon.lua"
	}
	script, err := os.ReadFile(luaPath)
	var sha string
	if err == nil {
		sha, err = rdb.ScriptLoad(ctx, string(script)).Result()
		if err != nil {
			b.Fatalf("SCRIPT LOAD charon.lua: %v", err)
		}
	}
	now := time.Now().UnixMilli()
	at := strconv.FormatInt(now, 10)
	cases := []benchCase{
		{"INCR", 100000, []string{"INCR", "k:__rand_int__"}},
		// The cheapest write that gives its key an expiry, as CHARON.RATE must.
		{"SET PX 1000 (write with expiry)", 100000, []string{"SET", "s:__rand_int__", "x", "PX", "1000"}},
		{"3-tier TIER form", 100000, append([]string{"CHARON.RATE", "rl:{a}:__rand_int__", "MAX", "1"}, benchTiers...)},
	}
	if rdb.Do(ctx, append([]any{"CHARON.RATE", "rl:{probe}"}, toAny(benchLimits)...)...).Err() == nil {
		cases = append(cases, benchCase{"3-tier compact LIMITS form", 100000, append([]string{"CHARON.RATE", "rl:{b}:__rand_int__"}, benchLimits...)})
	}
	cases = append(cases,
		benchCase{"DRYRUN (TIER form)", 100000, append([]string{"CHARON.RATE", "rl:{a}:__rand_int__", "DRYRUN", "MAX", "1"}, benchTiers...)},
		benchCase{"reject (1/h, 1,000 keys)", 1000, []string{"CHARON.RATE", "rj:__rand_int__", "MAX", "1", "TIER", "1", "3600000", "3600000", "0"}},
		benchCase{"GLOBAL shared by 100k domains", 100000, append([]string{"CHARON.RATE", "rl:{g}:__rand_int__", "GLOBAL", "rl:{g}", "1000000000", "MAX", "1"}, benchTiers...)},
	)
	// Caps (rule 10): 3 tiers with 2 per-domain caps and a GLOBAL with 2 caps, on 100k
	// keys; and one key with 8 caps holding 10 or 100,000 hits over its longest cap's
	// window (a day), asked at one fixed AT.
	if rdb.Do(ctx, "CHARON.RATE", "rl:{probe}", "LIMITS", "1/1s;5/1h").Err() == nil {
		cases = append(cases, benchCase{"3 tiers + 2 caps + GLOBAL with 2 caps", 100000, []string{"CHARON.RATE", "rl:{c}:__rand_int__",
			"LIMITS", "10/1s,50/5s/5s/15s,1000/1m/1m/10m;1000/1h,10000/1d", "GLOBAL", "rl:{c}", "1000000000/1s,1000000000000/1d"}})
		for _, n := range []int{10, 100000} {
			key := fmt.Sprintf("capgrow:%d", n)
			fillCapsKey(b, rdb, key, n, now-1)
			cases = append(cases, benchCase{fmt.Sprintf("8 caps, key with %d hits in the longest window", n), 0,
				[]string{"CHARON.RATE", key, "AT", at, "LIMITS", growthCapsLimits}})
		}
	}
	for _, n := range []int{10, 1000, 100000} {
		key := fmt.Sprintf("grow:%d", n)
		if err := rdb.Do(ctx, "CHARON.LOADVALUE", key, string(growthValue(b, n, now-1))).Err(); err != nil {
			b.Fatalf("LOADVALUE %s: %v", key, err)
		}
		cases = append(cases, benchCase{fmt.Sprintf("key with %d distinct-ms hits in window", n), 0,
			append([]string{"CHARON.RATE", key, "AT", at, "MAX", "1"}, growthTier...)})
	}
	if sha != "" {
		cases = append(cases, benchCase{"Lua charon.lua (EVALSHA, 3 tiers)", 100000,
			append([]string{"EVALSHA", sha, "1", "charon:{r:__rand_int__}"}, benchLuaArg...)})
	}
	return cases
}

// growthCapsLimits: one tier that never fills and 8 caps that never bind, one exact
// and seven in buckets, the longest a day.
const growthCapsLimits = "1000000000000/1s;1000000000/500ms,1000000000/2s,1000000000/10s,1000000000/1m," +
	"1000000000/10m,1000000000/1h,1000000000/6h,1000000000/1d"

// fillCapsKey gives key n hits spread over the day before last, through CHARON.RATE
// with AT (pipelined).
func fillCapsKey(b testing.TB, rdb *redis.Client, key string, n int, last int64) {
	ctx := context.Background()
	step := int64(86_400_000 / n)
	for lo := 0; lo < n; lo += 5000 {
		pipe := rdb.Pipeline()
		for i := lo; i < min(n, lo+5000); i++ {
			pipe.Do(ctx, "CHARON.RATE", key, "AT", last-int64(n-1-i)*step, "LIMITS", growthCapsLimits)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatalf("filling %s: %v", key, err)
		}
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i := range s {
		out[i] = s[i]
	}
	return out
}

// redisBenchmark runs one case with pipeline depth pipe and returns the server CPU us
// per request.
func redisBenchmark(b testing.TB, port int, rdb *redis.Client, requests, pipe int, c benchCase) float64 {
	bin := filepath.Join(filepath.Dir(harness.RedisCLIPath(b)), "redis-benchmark")
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-c", "50", "-P", strconv.Itoa(pipe), "-n", strconv.Itoa(requests), "-q"}
	if c.keys > 0 {
		args = append(args, "-r", strconv.Itoa(c.keys))
	}
	before := serverCPU(b, rdb)
	out, err := exec.Command(bin, append(args, c.cmd...)...).CombinedOutput()
	if err != nil {
		b.Fatalf("redis-benchmark %v: %v\n%s", c.cmd, err, out)
	}
	if strings.Contains(string(out), "ERR") || strings.Contains(string(out), "WRONGTYPE") {
		b.Fatalf("redis-benchmark %v: %s", c.cmd, out)
	}
	return (serverCPU(b, rdb) - before) / float64(requests)
}

func serverCPU(b testing.TB, rdb *redis.Client) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatalf("INFO cpu: %v", err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		name, val, ok := strings.Cut(line, ":")
		if ok && (name == "used_cpu_user" || name == "used_cpu_sys") {
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				b.Fatalf("INFO cpu %s=%q: %v", name, val, err)
			}
			total += f
		}
	}
	return total * 1e6
}

// stats is min / median / max.
func stats(xs []float64) (lo, med, hi float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[0], s[len(s)/2], s[len(s)-1]
}

func fmtStats(xs []float64, digits int) string {
	lo, med, hi := stats(xs)
	f := "%." + strconv.Itoa(digits) + "f"
	return fmt.Sprintf(f+" / "+f+" / "+f, lo, med, hi)
}

// benchReport prints a table and appends it to CHARON_BENCH_OUT when set.
func benchReport(b testing.TB, text string) {
	fmt.Print(text)
	if p := os.Getenv("CHARON_BENCH_OUT"); p != "" {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(text); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRateCost: server CPU per request of every case, side by side, in rounds,
// twice: with pipeline depth 16 (many requests per read: the command's own cost
// dominates) and, for the main cases, with no pipelining (one request per read and
// per write, as a server calling the limiter once per request of its own does).
func BenchmarkRateCost(b *testing.B) {
	rounds := envInt("CHARON_BENCH_ROUNDS", 3)
	requests := envInt("CHARON_BENCH_REQUESTS", 200000)
	floor := buildFloorModule(b)
	s := harness.Start(b, harness.Options{Config: []string{"loadmodule " + floor}})
	rdb := s.Client(b)
	cases := rateCases(b, rdb)
	cases = append(cases[:2], append([]benchCase{{"module API floor (tests/benchfloor, C, computes nothing)", 100000,
		append([]string{"FLOOR.RATE", "fl:__rand_int__"}, benchLimits...)},
		{"module API floor, two keys (with GLOBAL)", 100000, append([]string{"FLOOR.RATE", "fl:{g}:__rand_int__", "GLOBAL", "fl:{g}"}, benchLimits...)},
		{"module API floor, TIER form's arguments", 100000, append([]string{"FLOOR.RATE", "fl:{t}:__rand_int__", "MAX", "1"}, benchTiers...)},
	}, cases[2:]...)...)
	for i := 0; i < b.N; i++ {
		for _, pipe := range []int{16, 1} {
			run := cases
			n := requests
			if pipe == 1 {
				run = nil
				for _, c := range cases {
					if !strings.HasPrefix(c.name, "key with") && !strings.HasPrefix(c.name, "GLOBAL") {
						run = append(run, c)
					}
				}
				n = max(requests/4, 1000) // a request costs several times more unpipelined
			}
			rateCostTable(b, s.Port(), rdb, run, rounds, n, pipe)
		}
	}
}

// rateCostTable measures cases in rounds at one pipeline depth and reports the table
// and the acceptance ratios.
func rateCostTable(b *testing.B, port int, rdb *redis.Client, cases []benchCase, rounds, requests, pipe int) {
	us := make([][]float64, len(cases))
	for r := 0; r < rounds; r++ {
		for k, c := range cases {
			us[k] = append(us[k], redisBenchmark(b, port, rdb, requests, pipe, c))
		}
	}
	idx := func(prefix string) int {
		for k, c := range cases {
			if strings.HasPrefix(c.name, prefix) {
				return k
			}
		}
		return -1
	}
	ratio := func(a, base int) []float64 {
		if a < 0 || base < 0 {
			return nil
		}
		out := make([]float64, len(us[a]))
		for i := range out {
			out[i] = us[a][i] / us[base][i]
		}
		return out
	}
	incr := idx("INCR")
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n#### Server CPU per request, pipeline %d (%d rounds of %d requests per case; redis-benchmark -c 50 -P %d)\n\n", pipe, rounds, requests, pipe)
	sb.WriteString("| case | server CPU us/request, min / median / max | vs INCR, min / median / max |\n|---|---|---|\n")
	for k, c := range cases {
		fmt.Fprintf(&sb, "| %s | %s | %sx |\n", c.name, fmtStats(us[k], 3), fmtStats(ratio(k, incr), 2))
	}
	fmt.Fprintf(&sb, "\n| acceptance ratio, pipeline %d (within each round) | min / median / max | bound |\n|---|---|---|\n", pipe)
	for _, a := range []struct {
		name, num, den, bound string
	}{
		{"key with 100,000 hits / key with 10 hits", "key with 100000", "key with 10 ", "<= 1.2"},
		{"8 caps: key with 100,000 hits in the longest window / with 10", "8 caps, key with 100000", "8 caps, key with 10 ", "<= 1.2"},
		{"3 tiers + 2 caps + GLOBAL with 2 caps / module API floor", "3 tiers + 2 caps", "module API floor (", "<= 1.5"},
		{"(reference) 3 tiers + 2 caps + GLOBAL with 2 caps / two-key floor", "3 tiers + 2 caps", "module API floor, two", ""},
		{"3-tier TIER form / compact LIMITS form", "3-tier TIER", "3-tier compact", "<= 1.1"},
		{"(reference) floor with the TIER form's arguments / floor", "module API floor, TIER", "module API floor (", ""},
		{"3-tier compact LIMITS form / module API floor", "3-tier compact", "module API floor (", "<= 1.25"},
		{"GLOBAL over 100k domains / same without GLOBAL", "GLOBAL", "3-tier TIER", "<= 1.3"},
		{"3-tier TIER form / INCR", "3-tier TIER", "INCR", "<= 2.0"},
		{"3-tier compact LIMITS form / INCR", "3-tier compact", "INCR", "<= 1.6"},
		{"Lua charon.lua / compact LIMITS form", "Lua", "3-tier compact", ">= 15"},
		{"(reference) SET PX / INCR", "SET PX", "INCR", ""},
		{"(reference) module API floor / INCR", "module API floor (", "INCR", ""},
	} {
		if rs := ratio(idx(a.num), idx(a.den)); len(rs) > 0 {
			fmt.Fprintf(&sb, "| %s | %s | %s |\n", a.name, fmtStats(rs, 2), a.bound)
		}
	}
	benchReport(b, sb.String())
}

// buildFloorModule compiles tests/benchfloor/floor.c, the benchmark-only module whose
// FLOOR.RATE makes a grant's Redis API calls from C and computes nothing, against the
// pinned redismodule.h, and returns the .so's path.
func buildFloorModule(b *testing.B) string {
	root := harness.RepoRoot(b)
	out := filepath.Join(b.TempDir(), "floor.so")
	cc := exec.Command("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
		"-I", filepath.Join(root, "cshim"), "-o", out, filepath.Join(root, "tests", "benchfloor", "floor.c"))
	if o, err := cc.CombinedOutput(); err != nil {
		b.Fatalf("building the floor module: %v\n%s", err, o)
	}
	return out
}

// BenchmarkRateMemory1M: memory per domain with 1M domain keys of the 3-tier form,
// each holding one hit: MEMORY USAGE of sampled keys and used_memory per key.
func BenchmarkRateMemory1M(b *testing.B) {
	const domains = 1_000_000
	s := harness.Start(b, harness.Options{})
	rdb := s.Client(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		must := func(err error) {
			if err != nil {
				b.Fatal(err)
			}
		}
		must(rdb.FlushAll(ctx).Err())
		used := func() int64 {
			v, err := strconv.ParseInt(s.Info(b, "memory")["used_memory"], 10, 64)
			must(err)
			return v
		}
		before := used()
		// One pipelined burst per 10k keys: every key name exists exactly once. AT lies
		// an hour ahead, so no key expires (each would, a second after its hit).
		at := time.Now().UnixMilli() + 3_600_000
		for lo := 0; lo < domains; lo += 10000 {
			pipe := rdb.Pipeline()
			for k := lo; k < lo+10000; k++ {
				pipe.Do(ctx, append([]any{"CHARON.RATE", "rl:{m}:" + strconv.Itoa(k), "AT", at + int64(k/1000)}, toAny(benchTiers)...)...)
			}
			_, err := pipe.Exec(ctx)
			must(err)
		}
		n, err := rdb.DBSize(ctx).Result()
		must(err)
		perKey := float64(used()-before) / float64(n)
		var mem []float64
		for k := 0; k < domains; k += domains / 200 {
			m, err := rdb.MemoryUsage(ctx, "rl:{m}:"+strconv.Itoa(k)).Result()
			must(err)
			mem = append(mem, float64(m))
		}
		benchReport(b, fmt.Sprintf("\n#### Memory at %d domains (3 tiers, one hit each)\n\n| measure | bytes |\n|---|---|\n"+
			"| MEMORY USAGE per key (200 samples), min / median / max | %s |\n| used_memory growth / keys | %.0f |\n",
			n, fmtStats(mem, 0), perKey))
	}
}

// BenchmarkRateInstructions: instructions per request of the engine (module/rate's
// BenchmarkApplyGrowth*: ApplyInPlace on a key holding n distinct-ms hits, one grant
// per ms) under valgrind's cachegrind, from two runs per case (k1 and k2 requests) so
// that start-up and the key's construction cancel out (GOGC=off: no collection
// adds its work to one run only). The whole server cannot run
// under valgrind 3.19 with Go 1.26: the Go runtime's lock spinning executes RDTSCP,
// which valgrind does not decode, GODEBUG=cpu.rdtscp=off notwithstanding.
func BenchmarkRateInstructions(b *testing.B) {
	if _, err := exec.LookPath("valgrind"); err != nil {
		b.Skip("valgrind is not installed")
	}
	const k1, k2 = 2000, 12000
	dir := b.TempDir()
	bin := filepath.Join(dir, "rate.test")
	build := exec.Command("go", "test", "-c", "-o", bin, "./module/rate")
	build.Dir = harness.RepoRoot(b)
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go test -c: %v\n%s", err, out)
	}
	run := func(bench string, n int) float64 {
		out := filepath.Join(dir, fmt.Sprintf("cg.%s.%d", bench, n))
		cmd := exec.Command("valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file="+out,
			bin, "-test.run", "^$", "-test.bench", "^"+bench+"$", "-test.benchtime", strconv.Itoa(n)+"x")
		// GOMAXPROCS=1: with more Ps, the runtime's idle threads spin on locks under
		// valgrind (which runs one thread at a time) and add millions of instructions
		// that differ from run to run.
		cmd.Env = append(os.Environ(), "GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off", "GOGC=off", "GOMAXPROCS=1")
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("valgrind %s: %v\n%s", bench, err, lastLines(string(o), 20))
		}
		data, err := os.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		m := summaryRE.FindSubmatch(data)
		if m == nil {
			b.Fatalf("no summary in %s", out)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n#### Engine instructions per request under valgrind (cachegrind; (run with %d - run with %d requests) / %d)\n\n| case | instructions / request | vs 10 hits |\n|---|---|---|\n", k2, k1, k2-k1)
	for i := 0; i < b.N; i++ {
		var base float64
		for _, n := range []int{10, 1000, 100000} {
			bench := fmt.Sprintf("BenchmarkApplyGrowth%d", n)
			per := (run(bench, k2) - run(bench, k1)) / float64(k2-k1)
			if n == 10 {
				base = per
			}
			fmt.Fprintf(&sb, "| key with %d distinct-ms hits in window | %.0f | %.2fx |\n", n, per, per/base)
		}
		// Caps: 8 caps (one exact, seven in buckets), n hits over the longest one's day.
		for _, n := range []int{10, 100000} {
			bench := fmt.Sprintf("BenchmarkApplyGrowthCaps%d", n)
			per := (run(bench, k2) - run(bench, k1)) / float64(k2-k1)
			if n == 10 {
				base = per
			}
			fmt.Fprintf(&sb, "| key with 8 caps and %d hits over the longest cap's window | %.0f | %.2fx |\n", n, per, per/base)
		}
	}
	benchReport(b, sb.String())
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var summaryRE = regexp.MustCompile(`(?m)^summary: (\d+)`)
