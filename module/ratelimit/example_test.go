package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"sync"
	"time"

	"github.com/charon-redis/charon/module/ratelimit"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// These examples need a running server with the Charon module, so they are compiled
// but not run; tests/ratelimit_test.go runs the same flows against real servers.

// Charon's simple pattern: 5 hits per second and domain.
func ExampleNewLimiter() {
	rdb := redis.NewClient(&redis.Options{
		Addr: "127.0.0.1:6379",
		// Redis < 8 refuses go-redis's maintenance-notification handshake, and
		// go-redis logs that: do not ask.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil) // keep it: its requests share round trips

	api := ratelimit.PerSecond("api", 5)
	res, err := limiter.Allow(context.Background(), api, "user-1234")
	switch {
	case errors.Is(err, ratelimit.ErrOutcomeUnknown):
		fmt.Println("no answer, even to resends; the hit was counted at most once")
	case err != nil:
		fmt.Println("limiter unavailable:", err)
	case res.Granted == 0:
		fmt.Println("rejected, retry in", res.RetryAfter)
	default:
		fmt.Println("go ahead")
	}
}

// Charon's penalty pattern: 5 per second; a domain that bursts past it climbs into a
// 50-per-5s tier, and after using that tier for 5s it is locked out of it for 15s,
// falling back to 5 per second.
func ExampleResource_penalty() {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"}})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)

	search := ratelimit.Resource{Name: "search", Tiers: []ratelimit.Tier{
		{Limit: 5, Window: time.Second, Active: time.Second},
		{Limit: 50, Window: 5 * time.Second, Active: 5 * time.Second, Cooldown: 15 * time.Second},
	}}
	if err := search.Validate(); err != nil { // fail at startup, not per request
		log.Fatal(err)
	}
	// Take up to 10 results' worth of hits, at least 1.
	res, err := limiter.Request(context.Background(), &search, "tenant-42", 1, 10)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("granted %d in tier %d (burst: %v)\n", res.Granted, res.Tier, res.Burst)
}

// Charon's punishment pattern: 5 per second; a domain that goes over lands in a prison
// tier that allows 1 hit per 15s for 15s. While the prison tier is active it is the
// current tier, so the domain cannot use tier 1's allowance.
func ExampleResource_punishment() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)

	login := ratelimit.Resource{Name: "login", Tiers: []ratelimit.Tier{
		{Limit: 5, Window: time.Second, Active: time.Second},
		{Limit: 1, Window: 15 * time.Second, Active: 15 * time.Second},
	}}
	// Wait up to 2s for a rejection to clear before giving up.
	res, err := limiter.RequestWith(context.Background(), &login, "203.0.113.9", ratelimit.RequestArgs{Max: 1, MaxWait: 2 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	if res.Tier == 2 {
		fmt.Println("in prison until at least", res.RetryAfter)
	}
}

// Charon's batch pattern: 50 hits in a 60s window, then closed for 3540s, i.e. one
// batch of at most 50 per hour, all within the batch's first minute.
func ExampleResource_batch() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)

	export := ratelimit.Resource{Name: "export", Tiers: []ratelimit.Tier{
		{Limit: 50, Window: 60 * time.Second, Active: 60 * time.Second, Cooldown: 3540 * time.Second},
	}}
	// Ask for 50, accept any number down to 1.
	res, err := limiter.Request(context.Background(), &export, "account-7", 1, 50)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("export %d rows now; the next batch opens in %v\n", res.Granted, res.RetryAfter)
}

// A resource-wide cap: at most 1000 hits per second over all domains, and 20 per
// second for any one domain, on top of the tiers. The domain keys and the global key
// share a hash slot (see KeyNames).
func ExampleResource_global() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)

	partner := ratelimit.PerMinute("partner-api", 600)
	partner.Hard, partner.Global = 20, 1000
	key, globalKey := limiter.Keys(partner, "alice")
	fmt.Println(key, globalKey) // rl:{partner-api}:alice rl:{partner-api}
	res, err := limiter.Allow(context.Background(), partner, "alice")
	if err == nil {
		fmt.Println(res.GlobalHits, res.GlobalLimited)
	}
}

// Fail open when Redis is unreachable, and keep a kill switch for rollouts.
func ExampleOptions_failOpen() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, &ratelimit.Options{
		FailOpen: true,
		OnFailOpen: func(ctx context.Context, resource, domain string, err error) {
			log.Printf("rate limiter failed open for %s/%s: %v", resource, domain, err)
		},
	})
	limiter.SetKillSwitch(true) // observe-only while new limits roll out

	api := ratelimit.PerSecond("api", 5)
	res, err := limiter.Allow(context.Background(), api, "user-1")
	if err != nil {
		fmt.Println(err) // outcome unknown, or a server error: never turned into a grant
		return
	}
	if res.Override != ratelimit.OverrideNone {
		fmt.Println("would have been", res.Override, "- granted anyway")
	}
}

func ExampleLimiter_Middleware() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)

	api := ratelimit.PerMinute("http-api", 120)
	mw, err := limiter.Middleware(ratelimit.MiddlewareOptions{
		Resource: api,
		Domain: func(r *http.Request) (string, error) {
			if key := r.Header.Get("X-Api-Key"); key != "" {
				return key, nil
			}
			return "", errors.New("missing API key")
		},
		// The default answers 400 Bad Request; choose 401 instead.
		OnBadRequest: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, err.Error(), http.StatusUnauthorized)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res := ratelimit.ResultFromContext(r.Context())
		fmt.Fprintf(w, "hello, %d hits left\n", res.Remaining)
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mw(hello)))
}

// redis_rate's shapes: an inline limit, n hits all or nothing, up to n hits, and Reset.
func ExampleLimiter_AllowN() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)
	ctx := context.Background()

	res, err := limiter.AllowN(ctx, ratelimit.PerMinute("uploads", 10), "user-2", 4)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Granted, res.Remaining) // 4 6

	res, err = limiter.AllowAtMost(ctx, ratelimit.PerMinute("uploads", 10), "user-2", 8)
	if err == nil {
		fmt.Println(res.Granted, res.Remaining) // 6 0
	}
	_ = limiter.Reset(ctx, ratelimit.PerMinute("uploads", 10), "user-2") // forget user-2's hits
}

// A closed resource refuses every request (RetryAfter Never) without forgetting to
// say so: a Resource with neither tiers nor Closed is an error.
func ExampleResource_closed() {
	maintenance := &ratelimit.Resource{Name: "billing", Closed: true}
	fmt.Println(maintenance.Validate(), maintenance)

	forgot := &ratelimit.Resource{Name: "billing"}
	fmt.Println(errors.Is(forgot.Validate(), ratelimit.ErrInvalid))
	// Output:
	// <nil> billing: CLOSED
	// true
}

// The compact form requests carry: one LIMITS argument for all tiers.
func ExampleEncodeLimits() {
	fmt.Println(ratelimit.EncodeLimits([]ratelimit.Tier{
		{Limit: 10, Window: time.Second, Active: time.Second},
		{Limit: 50, Window: 5 * time.Second, Active: 5 * time.Second, Cooldown: 15 * time.Second},
		{Limit: 1000, Window: time.Minute, Active: time.Minute, Cooldown: 10 * time.Minute, Skippable: true},
	}))
	// Output: 10/1s, 50/5s/5s/15s, 1000/1m/1m/10m?
}

// Count outcomes per resource and outcome, and sum latencies: the shape of a wiring to
// any metrics library (see docs/go-client.md for Prometheus).
func ExampleObserver() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	var mu sync.Mutex
	counts := map[string]int{}
	limiter := ratelimit.NewLimiter(rdb, &ratelimit.Options{
		Observer: ratelimit.ObserverFunc(func(ctx context.Context, e ratelimit.Event) {
			mu.Lock()
			defer mu.Unlock()
			counts[e.Resource+" "+e.Outcome.String()]++
			if e.Outcome == ratelimit.OutcomeRejected {
				counts[e.Resource+" rejected by "+e.RejectedBy.String()]++
			}
		}),
	})
	_, _ = limiter.Allow(context.Background(), ratelimit.PerSecond("api", 5), "user-1")
}
