// Command clientbench drives one decision path against a Redis server with the Charon
// module, as a Go backend would: G goroutines, each asking one decision at a time for
// a random user out of U, through go-redis. It prints one JSON line: decisions made,
// the server CPU they cost (INFO cpu, used_cpu_user + used_cpu_sys, read around the
// measured phase only) and the client's latency percentiles.
//
// tests/bench_client_test.go (make bench) runs it for every path, side by side in
// rounds, and prints the "through the client" table.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/charon-redis/charon/module/concurrency"
	"github.com/charon-redis/charon/module/ratelimit"
)

// Paths, by name.
var paths = map[string]string{
	"incr":       "go-redis INCR (rdb.Incr)",
	"redis_rate": "go-redis/redis_rate v10 Allow(PerSecond(10))",
	"bare":       "bare CHARON.RATE key LIMITS 10/1s via rdb.Do (the Limiter's key names)",
	"limiter1":   "ratelimit.Limiter.Allow, 1 tier (PerSecond 10)",
	"limiter3":   "ratelimit.Limiter.Allow, 3 tiers",
	"reserve":    "concurrency Reserve + Release (one pair)",
	"scripts1":   "ratelimit.Limiter.Allow, 1 tier, on the script engine (Options.Engine EngineScripts)",
	"scripts3":   "ratelimit.Limiter.Allow, 3 tiers, on the script engine",
	"scriptsres": "concurrency Reserve + Release (one pair), on the script engine",
}

type result struct {
	Path        string  `json:"path"`
	Goroutines  int     `json:"goroutines"`
	Decisions   int     `json:"decisions"`
	Granted     int     `json:"granted"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	ServerCPUUs float64 `json:"server_cpu_us"`
	WallSeconds float64 `json:"wall_seconds"`
	P50Us       float64 `json:"p50_us"`
	P99Us       float64 `json:"p99_us"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "Redis address")
	path := flag.String("path", "limiter1", "decision path: "+strings.Join(slices.Sorted(func(yield func(string) bool) {
		for k := range paths {
			if !yield(k) {
				return
			}
		}
	}), ", "))
	g := flag.Int("g", 50, "goroutines")
	users := flag.Int("users", 100000, "distinct users")
	n := flag.Int("n", 100000, "measured decisions (all goroutines together)")
	warm := flag.Int("warm", 2000, "decisions before measuring")
	prefix := flag.String("prefix", "cb", "key prefix (resource names)")
	resp := flag.Int("resp", 0, "RESP version (0: go-redis's default, 3)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the client here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "clientbench: %v\n", err)
			os.Exit(1)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "clientbench: %v\n", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if _, ok := paths[*path]; !ok {
		fmt.Fprintf(os.Stderr, "clientbench: unknown path %q\n", *path)
		os.Exit(2)
	}
	r, err := run(*addr, *path, *g, *users, *n, *warm, *prefix, *resp)
	if err != nil {
		fmt.Fprintf(os.Stderr, "clientbench: %v\n", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

// decide makes one decision for user u and reports whether it was granted.
type decide func(ctx context.Context, u string) (bool, error)

func newPath(rdb *redis.Client, path, prefix string) decide {
	switch path {
	case "incr":
		return func(ctx context.Context, u string) (bool, error) {
			return true, rdb.Incr(ctx, prefix+":incr:"+u).Err()
		}
	case "redis_rate":
		rl := redis_rate.NewLimiter(rdb)
		lim := redis_rate.PerSecond(10)
		return func(ctx context.Context, u string) (bool, error) {
			r, err := rl.Allow(ctx, prefix+":rr:"+u, lim)
			return err == nil && r.Allowed > 0, err
		}
	case "bare":
		return func(ctx context.Context, u string) (bool, error) {
			v, err := rdb.Do(ctx, "CHARON.RATE", prefix+":limiter1:{"+u+"}", "LIMITS", "10/1s").Result()
			return err == nil && v != nil, err
		}
	case "limiter1", "limiter3", "scripts1", "scripts3":
		o := &ratelimit.Options{KeyPrefix: prefix}
		if strings.HasPrefix(path, "scripts") {
			o.Engine = ratelimit.EngineScripts
		}
		l := ratelimit.NewLimiter(rdb, o)
		res := ratelimit.PerSecond(path, 10)
		if path == "limiter3" || path == "scripts3" {
			res = &ratelimit.Resource{Name: path, Tiers: []ratelimit.Tier{
				{Limit: 10, Window: time.Second, Active: time.Second},
				{Limit: 50, Window: 5 * time.Second, Active: 5 * time.Second, Cooldown: 15 * time.Second},
				{Limit: 1000, Window: time.Minute, Active: time.Minute, Cooldown: 10 * time.Minute},
			}}
		}
		return func(ctx context.Context, u string) (bool, error) {
			r, err := l.Allow(ctx, res, u)
			return err == nil && r.Allowed(), err
		}
	case "reserve", "scriptsres":
		o := &concurrency.Options{KeyPrefix: prefix}
		if path == "scriptsres" {
			o.Engine = concurrency.EngineScripts
		}
		s := concurrency.New(rdb, o)
		pool := &concurrency.Pool{Name: "reserve", Limit: 10}
		return func(ctx context.Context, u string) (bool, error) {
			h, err := s.Reserve(ctx, pool, u, concurrency.ReserveArgs{})
			if err != nil {
				return false, err
			}
			return true, h.Release(ctx)
		}
	}
	panic("unreachable")
}

func run(addr, path string, g, users, n, warm int, prefix string, resp int) (*result, error) {
	ctx := context.Background()
	opts := func() *redis.Options {
		return &redis.Options{
			Addr:                     addr,
			Protocol:                 resp,
			DisableIdentity:          true, // Redis 7.0 has no CLIENT SETINFO
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		}
	}
	ctl := redis.NewClient(opts())
	defer ctl.Close()
	rdb := redis.NewClient(opts())
	defer rdb.Close()
	do := newPath(rdb, path, prefix)

	names := make([]string, users)
	for i := range names {
		names[i] = "u" + strconv.Itoa(i)
	}
	// phase runs total decisions over g goroutines; lat, when set, receives each
	// decision's latency in ns.
	var granted, errs atomic.Int64
	var firstErr atomic.Value
	phase := func(total int, lat [][]int64) {
		var wg sync.WaitGroup
		for w := range g {
			share := total / g
			if w < total%g {
				share++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rnd := rand.New(rand.NewPCG(uint64(w)+1, uint64(time.Now().UnixNano())))
				for i := 0; i < share; i++ {
					u := names[rnd.IntN(users)]
					t0 := time.Now()
					ok, err := do(ctx, u)
					d := time.Since(t0)
					if lat != nil {
						lat[w] = append(lat[w], int64(d))
					}
					switch {
					case err != nil:
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					case ok:
						granted.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	phase(max(warm, g), nil)
	granted.Store(0)
	errs.Store(0)

	lat := make([][]int64, g)
	for w := range lat {
		lat[w] = make([]int64, 0, n/g+1)
	}
	cpu0, err := serverCPU(ctx, ctl)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	phase(n, lat)
	wall := time.Since(began)
	cpu1, err := serverCPU(ctx, ctl)
	if err != nil {
		return nil, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))]) / 1e3
	}
	r := &result{
		Path: path, Goroutines: g, Decisions: len(all),
		Granted: int(granted.Load()), Errors: int(errs.Load()),
		ServerCPUUs: cpu1 - cpu0, WallSeconds: wall.Seconds(),
		P50Us: pct(0.50), P99Us: pct(0.99),
	}
	if e, ok := firstErr.Load().(string); ok {
		r.FirstError = e
	}
	return r, nil
}

// serverCPU is the server's user + system CPU time so far, in microseconds.
func serverCPU(ctx context.Context, rdb *redis.Client) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		name, val, ok := strings.Cut(line, ":")
		if ok && (name == "used_cpu_user" || name == "used_cpu_sys") {
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu %s=%q: %w", name, val, err)
			}
			total += f
		}
	}
	return total * 1e6, nil
}
