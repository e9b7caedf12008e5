//go:build integration

package script_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charon-redis/charon/module/internal/script"
	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
)

// The script engine's cost (make bench). Every number is server CPU (INFO cpu, user +
// sys) per request, every case side by side on one server in one run, repeated in
// rounds; ratios are taken within a round and reported as min / median / max.
// Environment: CHARON_BENCH_ROUNDS (default 3), CHARON_BENCH_REQUESTS (default
// 200000), CHARON_BENCH_OUT (appends the markdown tables), CHARON_BENCH_GCRA (a GCRA
// Lua in the style of go-redis/redis_rate; default ../shared/bench/gcra.lua).

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
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

func stats(xs []float64) (lo, med, hi float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[0], s[len(s)/2], s[len(s)-1]
}

func fmtStats(xs []float64, digits int) string {
	if len(xs) == 0 {
		return "-"
	}
	lo, med, hi := stats(xs)
	f := "%." + strconv.Itoa(digits) + "f"
	return fmt.Sprintf(f+" / "+f+" / "+f, lo, med, hi)
}

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

// benchCase makes request i of a case: a command's arguments (for Do).
type benchCase struct {
	name string
	mk   func(key string) []any
}

func loadScript(b testing.TB, rdb *redis.Client, src string) string {
	sha, err := rdb.ScriptLoad(context.Background(), src).Result()
	if err != nil {
		b.Fatalf("SCRIPT LOAD: %v", err)
	}
	return sha
}

// evalsha renders a runner call for another key as EVALSHA arguments.
func evalsha(sha string, c *script.Call, keys ...string) []any {
	out := []any{"EVALSHA", sha, len(c.Keys)}
	for i := range c.Keys {
		out = append(out, keys[i])
	}
	return append(out, c.Args...)
}

// drive sends n requests of c over 100,000 random keys from 50 connections, each
// sending pipelines of depth pipe (the shape of redis-benchmark -c 50 -P pipe -r
// 100000, which cannot send the script engine's binary argument), and returns the
// server CPU microseconds per request.
func drive(b testing.TB, ctl, rdb *redis.Client, c benchCase, n, pipe int) float64 {
	ctx := context.Background()
	const conns = 50
	before := serverCPU(b, ctl)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	per := n / conns
	for g := 0; g < conns; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for sent := 0; sent < per; {
				p := rdb.Pipeline()
				for k := 0; k < pipe && sent < per; k++ {
					p.Do(ctx, c.mk(fmt.Sprintf("%012d", rng.IntN(100000)))...)
					sent++
				}
				cmds, err := p.Exec(ctx)
				if err != nil {
					errs <- err
					return
				}
				for _, cmd := range cmds {
					if cmd.Err() != nil {
						errs <- cmd.Err()
						return
					}
				}
			}
		}(uint64(g))
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("%s: %v", c.name, err)
	}
	return (serverCPU(b, ctl) - before) / float64(per*conns)
}

// BenchmarkScriptEngineCost: the script engine next to the module's CHARON.RATE, a
// GCRA Lua like redis_rate's and the Lua design CHARON.RATE replaced (charon.lua),
// on one server, side by side in rounds, at pipeline 16 and 1, 50 connections,
// 100,000 random keys. Every request is a grant or a rejection at one fixed AT.
func BenchmarkScriptEngineCost(b *testing.B) {
	rounds := benchEnv("CHARON_BENCH_ROUNDS", 3)
	requests := benchEnv("CHARON_BENCH_REQUESTS", 200000)
	s := harness.Start(b, harness.Options{})
	ctl := s.Client(b, harness.Protocol(2))
	rdb := s.Client(b, harness.Protocol(2), func(o *redis.Options) { o.PoolSize = 60 })
	at := time.Now().UnixMilli()
	ats := strconv.FormatInt(at, 10)
	rateSHA := loadScript(b, ctl, script.RateSource())
	three := []script.Tier{{Limit: 10, Window: 1000, Active: 1000}, {Limit: 50, Window: 5000, Active: 5000, Cooldown: 15000},
		{Limit: 1000, Window: 60000, Active: 60000, Cooldown: 600000}}
	sc3 := (&script.Rate{Key: "k", Max: 1, Min: 1, Tiers: three, At: at}).Call()
	sc1 := (&script.Rate{Key: "k", Max: 1, Min: 1, Tiers: three[:1], At: at}).Call()
	scG := (&script.Rate{Key: "k", Max: 1, Min: 1, Tiers: three, At: at, GlobalKey: "g",
		GlobalCaps: []script.Cap{{N: 1_000_000_000, Window: 1000}, {N: 1_000_000_000_000, Window: 86_400_000}}}).Call()
	cases := []benchCase{
		{"INCR", func(k string) []any { return []any{"INCR", "k:" + k} }},
		{"module CHARON.RATE, 3 tiers", func(k string) []any {
			return []any{"CHARON.RATE", "rl:{a}:" + k, "AT", ats, "LIMITS", "10/1s,50/5s/5s/15s,1000/1m/1m/10m"}
		}},
		{"script engine, 3 tiers", func(k string) []any { return evalsha(rateSHA, sc3, "sc:{a}:"+k) }},
		{"script engine, 1 tier", func(k string) []any { return evalsha(rateSHA, sc1, "sc:{b}:"+k) }},
		{"script engine, 3 tiers + GLOBAL (1 s and 1 day caps)", func(k string) []any { return evalsha(rateSHA, scG, "sc:{c}:"+k, "sc:{c}") }},
	}
	root := harness.RepoRoot(b)
	gcraPath := os.Getenv("CHARON_BENCH_GCRA")
	if gcraPath == "" {
		gcraPath = filepath.Join(root, "..", "shared", "bench", "gcra.lua")
	}
	if src, err := os.ReadFile(gcraPath); err == nil {
		sha := loadScript(b, ctl, string(src))
		// 10 per second with a burst of 10, as the script engine's tier 1, at the
		// client's time as the script engine gets it.
		cases = append(cases, benchCase{"GCRA Lua (redis_rate style, 1 limit)", func(k string) []any {
			return []any{"EVALSHA", sha, 1, "gcra:" + k, ats, 10, 10, 1000, 1}
		}})
	} else {
		b.Logf("no GCRA baseline (%v): set CHARON_BENCH_GCRA", err)
	}
	luaPath := os.Getenv("CHARON_BENCH_LUA")
	if luaPath == "" {
		luaPath = filepath.Join(root, "..", "shared", "bench", "charon.lua")
	}
	if src, err := os.ReadFile(luaPath); err == nil {
		sha := loadScript(b, ctl, string(src))
		cases = append(cases, benchCase{"charon.lua (ZSET per tier, 3 tiers)", func(k string) []any {
			return []any{"EVALSHA", sha, 1, "charon:{" + k + "}", ats, 1, 1, 10, 1000, 1000, 0, 50, 5000, 5000, 15000, 1000, 60000, 60000, 600000}
		}})
	}
	for i := 0; i < b.N; i++ {
		for _, pipe := range []int{16, 1} {
			n := requests
			if pipe == 1 {
				n = max(requests/4, 1000)
			}
			us := make([][]float64, len(cases))
			for r := 0; r < rounds; r++ {
				for k, c := range cases {
					us[k] = append(us[k], drive(b, ctl, rdb, c, n, pipe))
				}
			}
			ratio := func(a, base int) []float64 {
				if a < 0 || base < 0 || a >= len(us) || base >= len(us) {
					return nil
				}
				out := make([]float64, len(us[a]))
				for j := range out {
					out[j] = us[a][j] / us[base][j]
				}
				return out
			}
			gcra := -1
			for k, c := range cases {
				if strings.HasPrefix(c.name, "GCRA") {
					gcra = k
				}
			}
			var sb strings.Builder
			fmt.Fprintf(&sb, "\n#### Script engine: server CPU per decision, pipeline %d (%d rounds of %d requests per case; 50 connections, 100,000 random keys)\n\n", pipe, rounds, n)
			sb.WriteString("| case | server CPU us/request, min / median / max | vs module CHARON.RATE | vs GCRA Lua |\n|---|---|---|---|\n")
			for k, c := range cases {
				fmt.Fprintf(&sb, "| %s | %s | %sx | %sx |\n", c.name, fmtStats(us[k], 3), fmtStats(ratio(k, 1), 2), fmtStats(ratio(k, gcra), 2))
			}
			benchReport(b, sb.String())
		}
	}
}

// BenchmarkScriptEngineGrowth: the same requests on a key holding 100,000
// distinct-ms hits in its window and on small or fresh keys, side by side in rounds,
// and the memory each key takes. Requests "at its newest ms" merge into the key's
// newest hit (the key keeps its size); "one new ms each" appends (the key grows);
// "fresh" makes a new key per request.
func BenchmarkScriptEngineGrowth(b *testing.B) {
	rounds := benchEnv("CHARON_BENCH_ROUNDS", 3)
	const per = 20000
	s := harness.Start(b, harness.Options{NoModule: true, Config: []string{noTime}})
	rdb := s.Client(b, harness.Protocol(2))
	ctx := context.Background()
	if err := script.Load(ctx, rdb); err != nil {
		b.Fatal(err)
	}
	tier := []script.Tier{{Limit: 1_000_000_000_000, Window: 315360000000, Active: 315360000000}}
	caps := []script.Cap{{N: 1_000_000_000_000, Window: 3_600_000}, {N: 1_000_000_000_000, Window: 86_400_000}}
	fresh := 0
	// send runs n requests pipelined: on key (or a fresh key each when key is ""),
	// at "at" and, with step, one ms later each; returns the next time.
	send := func(key string, withCaps bool, at int64, step bool, n int) int64 {
		for done := 0; done < n; {
			p := rdb.Pipeline()
			for j := 0; j < 1000 && done < n; j++ {
				k := key
				if k == "" {
					fresh++
					k = "gf:" + strconv.Itoa(fresh)
				}
				r := &script.Rate{Key: k, Max: 1, Min: 1, Tiers: tier, At: at}
				if withCaps {
					r.Caps = caps
				}
				r.Call().Run(ctx, p)
				if step {
					at++
				}
				done++
			}
			cmds, err := p.Exec(ctx)
			if err != nil {
				b.Fatalf("%s: %v", key, err)
			}
			for _, c := range cmds {
				if c.Err() != nil {
					b.Fatalf("%s: %v", key, c.Err())
				}
			}
		}
		return at
	}
	type kcase struct {
		name     string
		key      string
		hits     int
		withCaps bool
		step     bool
		at       int64
	}
	cases := []*kcase{
		{name: "fresh key per request", step: true},
		{name: "key with 10 hits, at its newest ms", key: "g:10", hits: 10},
		{name: "key with 100,000 hits, at its newest ms", key: "g:100000", hits: 100000},
		{name: "key with 100,000 hits, one new ms each", key: "g:grow", hits: 100000, step: true},
		{name: "2 caps (1 h, 1 d): fresh key per request", withCaps: true, step: true},
		{name: "2 caps: key with 10 hits, at its newest ms", key: "gc:10", hits: 10, withCaps: true},
		{name: "2 caps: key with 100,000 hits, at its newest ms", key: "gc:100000", hits: 100000, withCaps: true},
		{name: "2 caps: key with 100,000 hits, one new ms each", key: "gc:grow", hits: 100000, withCaps: true, step: true},
	}
	mem := map[string]int64{}
	for _, c := range cases {
		c.at = T0
		if c.key != "" {
			c.at = send(c.key, c.withCaps, T0, true, c.hits) - 1
			mem[c.key] = rdb.MemoryUsage(ctx, c.key, 0).Val()
		}
	}
	for i := 0; i < b.N; i++ {
		us := make([][]float64, len(cases))
		for r := 0; r < rounds; r++ {
			for k, c := range cases {
				before := serverCPU(b, rdb)
				c.at = send(c.key, c.withCaps, c.at, c.step, per)
				us[k] = append(us[k], (serverCPU(b, rdb)-before)/per)
			}
		}
		ratio := func(a, base int) []float64 {
			out := make([]float64, len(us[a]))
			for j := range out {
				out[j] = us[a][j] / us[base][j]
			}
			return out
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "\n#### Script engine growth: server CPU per request (%d rounds of %d requests per case, pipelined by 1000; tier 1: a 10-year window)\n\n", rounds, per)
		sb.WriteString("| case | server CPU us/request, min / median / max | vs fresh key | vs the 10-hit key | MEMORY USAGE |\n|---|---|---|---|---|\n")
		for k, c := range cases {
			base := k - k%4
			m := "-"
			if c.key != "" {
				m = strconv.FormatInt(mem[c.key], 10) + " B"
			}
			vs10 := "-"
			if k%4 >= 2 {
				vs10 = fmtStats(ratio(k, base+1), 2) + "x"
			}
			fmt.Fprintf(&sb, "| %s | %s | %sx | %s | %s |\n", c.name, fmtStats(us[k], 3), fmtStats(ratio(k, base), 2), vs10, m)
		}
		sb.WriteString("\n(expected: a key with 100,000 distinct-ms hits in window <= 1.5x a fresh key)\n")
		benchReport(b, sb.String())
	}
}
