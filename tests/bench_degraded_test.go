//go:build integration

package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/charon-redis/charon/module/ratelimit"
	"github.com/charon-redis/charon/tests/harness"
)

// BenchmarkRatelimitFailLocal is what the degraded mode costs: the same requests
// through a Limiter without and with FailLocal while Redis answers (every reply is
// also learned from), with 1 and 50 goroutines, side by side; and a local decision
// while Redis is unreachable. 1,000 domains in turn, a resource with GLOBAL.
func BenchmarkRatelimitFailLocal(b *testing.B) {
	s := harness.Start(b, harness.Options{})
	ctx := context.Background()
	res := &ratelimit.Resource{Name: "bench-local", Tiers: []ratelimit.Tier{{Limit: ratelimit.MaxCount, Window: time.Second, Active: time.Second}}, Global: ratelimit.MaxCount}
	domains := make([]string, 1000)
	for i := range domains {
		domains[i] = fmt.Sprint("user-", i)
	}
	newLimiter := func(addr string, failLocal bool) *ratelimit.Limiter {
		o := rlcClientOptions(s, 3)
		o.Addr = addr
		o.DialerRetries, o.DialerRetryTimeout, o.MaxRetries, o.ContextTimeoutEnabled = 1, time.Millisecond, -1, true
		rdb := redis.NewClient(o)
		b.Cleanup(func() { _ = rdb.Close() })
		opt := &ratelimit.Options{}
		if failLocal {
			opt.FailLocal = &ratelimit.LocalOptions{}
		}
		return ratelimit.NewLimiter(rdb, opt)
	}
	allow := func(b *testing.B, l *ratelimit.Limiter, parallel bool, wantLocal bool) {
		b.ReportAllocs()
		check := func(i int) {
			r, err := l.Allow(ctx, res, domains[i%len(domains)])
			if err != nil || r.Local != wantLocal {
				b.Fatal(r, err)
			}
		}
		if !parallel {
			for i := 0; i < b.N; i++ {
				check(i)
			}
			return
		}
		b.SetParallelism(25) // 50 goroutines on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				check(i)
				i++
			}
		})
	}
	plain, local := newLimiter(s.Addr(), false), newLimiter(s.Addr(), true)
	for round := 1; round <= 3; round++ {
		for _, g := range []struct {
			name     string
			parallel bool
		}{{"1", false}, {"50", true}} {
			b.Run(fmt.Sprintf("round%d/goroutines-%s/Redis", round, g.name), func(b *testing.B) { allow(b, plain, g.parallel, false) })
			b.Run(fmt.Sprintf("round%d/goroutines-%s/Redis-FailLocal", round, g.name), func(b *testing.B) { allow(b, local, g.parallel, false) })
		}
	}
	// Degraded: nothing listens on the address; the first request finds out.
	down := newLimiter("127.0.0.1:1", true)
	for _, g := range []struct {
		name     string
		parallel bool
	}{{"1", false}, {"50", true}} {
		b.Run("goroutines-"+g.name+"/degraded-local-decision", func(b *testing.B) { allow(b, down, g.parallel, true) })
	}
}
