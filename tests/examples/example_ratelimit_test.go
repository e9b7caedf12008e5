//go:build integration

package examples_test

import (
	"context"
	"expvar"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/charon-redis/charon/module/ratelimit"
)

// Runnable examples of module/ratelimit; docs/go-client.md copies their bodies. addr
// is the address of a Redis server with the Charon module (see main_test.go).

// redis_rate's Allow: one hit, with the limit written inline.
func Example_allow() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)
	ctx := context.Background()

	for range 4 {
		res, err := limiter.Allow(ctx, ratelimit.PerHour("reports", 3), "user-1")
		if err != nil {
			fmt.Println("limiter unavailable:", err)
			return
		}
		fmt.Println(res.Allowed(), res.Remaining, res.RetryAfter.Round(time.Hour))
	}
	// Output:
	// true 2 0s
	// true 1 0s
	// true 0 0s
	// false 0 1h0m0s
}

// redis_rate's AllowN: n hits, all or nothing.
func Example_allowN() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)
	ctx := context.Background()

	uploads := ratelimit.PerMinute("uploads", 10) // declared once, reused
	for _, n := range []int64{4, 8, 6} {
		res, err := limiter.AllowN(ctx, uploads, "user-2", n)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("asked %d: granted %d, remaining %d\n", n, res.Granted, res.Remaining)
	}
	// Output:
	// asked 4: granted 4, remaining 6
	// asked 8: granted 0, remaining 6
	// asked 6: granted 6, remaining 0
}

// redis_rate's AllowAtMost: as many hits as are left, up to n.
func Example_allowAtMost() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)
	ctx := context.Background()

	export := ratelimit.PerHour("export-rows", 50)
	for range 3 {
		res, err := limiter.AllowAtMost(ctx, export, "account-7", 30)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("export %d rows (%v)\n", res.Granted, res.RejectedBy)
	}
	// Output:
	// export 30 rows (none)
	// export 20 rows (none)
	// export 0 rows (tier)
}

// redis_rate's Reset: forget what a domain used. RetryAfter is Never, not -1, when
// no wait can help.
func Example_reset() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)
	ctx := context.Background()

	login := ratelimit.PerHour("login", 2)
	res, _ := limiter.AllowN(ctx, login, "203.0.113.9", 2)
	fmt.Println(res.Granted, res.Remaining)
	res, _ = limiter.AllowN(ctx, login, "203.0.113.9", 3)
	fmt.Println(res.Granted, res.RetryAfter == ratelimit.Never)

	if err := limiter.Reset(ctx, login, "203.0.113.9"); err != nil {
		fmt.Println(err)
		return
	}
	res, _ = limiter.Allow(ctx, login, "203.0.113.9")
	fmt.Println(res.Granted, res.Remaining)
	// Output:
	// 2 0
	// 0 true
	// 1 1
}

// Charon's tiers: 5 per second, and a domain that bursts past it climbs into a 50 per
// 5s tier that is closed for 15s after use. At pins the request time so the output
// does not depend on the clock.
func Example_tiers() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)
	ctx := context.Background()

	search := &ratelimit.Resource{Name: "search", Hard: 60, Tiers: []ratelimit.Tier{
		{Limit: 5, Window: time.Second, Active: time.Second},
		{Limit: 50, Window: 5 * time.Second, Active: 5 * time.Second, Cooldown: 15 * time.Second},
	}}
	if err := search.Validate(); err != nil { // fail at startup, not per request
		panic(err)
	}
	fmt.Println(search)

	at := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, max := range []int64{4, 4, 40, 10} {
		res, err := limiter.RequestWith(ctx, search, "tenant-42", ratelimit.RequestArgs{Min: 1, Max: max, At: at})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("asked %d: granted %d in tier %d (burst %v), %d left\n",
			max, res.Granted, res.Tier, res.Burst, res.Remaining)
	}
	// Output:
	// search: LIMITS 5/1s, 50/5s/5s/15s HARD 60
	// asked 4: granted 4 in tier 1 (burst false), 1 left
	// asked 4: granted 4 in tier 2 (burst true), 47 left
	// asked 40: granted 40 in tier 2 (burst false), 7 left
	// asked 10: granted 7 in tier 2 (burst false), 0 left
}

// Caps over any window: 10 per second, and at most 20 per minute for each partner and
// 1,000 per day for all of them together, checked and counted in the same request. A
// request 2 seconds apart asks for up to 8; the minute runs out on the third.
func Example_caps() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, nil)
	ctx := context.Background()

	partners := &ratelimit.Resource{
		Name:       "partners",
		Tiers:      []ratelimit.Tier{{Limit: 10, Window: time.Second, Active: time.Second}},
		Caps:       []ratelimit.Cap{{Limit: 20, Per: time.Minute}},
		GlobalCaps: []ratelimit.Cap{{Limit: 1000, Per: 24 * time.Hour}},
	}
	if err := partners.Validate(); err != nil {
		panic(err)
	}
	fmt.Println(partners)

	at := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 4 {
		res, err := limiter.RequestWith(ctx, partners, "acme", ratelimit.RequestArgs{
			Min: 1, Max: 8, At: at.Add(time.Duration(i) * 2 * time.Second)})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("granted %d, cut by a cap %v, rejected by %v %+v, retry after %v\n",
			res.Granted, res.HardLimited, res.RejectedBy, res.RejectedCap, res.RetryAfter)
	}
	// Output:
	// partners: LIMITS 10/1s; 20/1m GLOBAL 1000/1d
	// granted 8, cut by a cap false, rejected by none {Limit:0 Per:0s}, retry after 0s
	// granted 8, cut by a cap false, rejected by none {Limit:0 Per:0s}, retry after 0s
	// granted 4, cut by a cap true, rejected by none {Limit:0 Per:0s}, retry after 0s
	// granted 0, cut by a cap true, rejected by cap {Limit:20 Per:1m0s}, retry after 54.06s
}

// tickClock is a fake ratelimit.Clock for examples: it starts at 2100-01-01 and each
// reading is 1ms after the previous one, so requests land in distinct milliseconds no
// matter how fast or slow the machine is. Sleep moves it instead of waiting.
type tickClock struct{ ms atomic.Int64 }

func newTickClock() *tickClock {
	c := &tickClock{}
	c.ms.Store(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	return c
}

func (c *tickClock) Now() time.Time { return time.UnixMilli(c.ms.Add(1)) }

func (c *tickClock) Sleep(ctx context.Context, d time.Duration) error {
	c.ms.Add(d.Milliseconds())
	return ctx.Err()
}

// The net/http middleware: the domain is the X-Api-Key header; a request without one is
// the client's mistake (400), not an outage. The rejection's t is the seconds until the
// first hit leaves the hour's window, rounded up, so it depends on the milliseconds
// between the requests: a fake clock (tickClock) sets the requests' time (AT).
func Example_middleware() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	// A fake clock keeps the output the same on every run; a server passes nil.
	limiter := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: newTickClock()})

	api := ratelimit.PerHour("http-api", 2)
	mw, err := limiter.Middleware(ratelimit.MiddlewareOptions{
		Resource: api,
		Domain: func(r *http.Request) (string, error) {
			return r.Header.Get("X-Api-Key"), nil // "" answers 400 (OnBadRequest)
		},
	})
	if err != nil {
		panic(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	})
	handler := mw(hello)

	for _, key := range []string{"k1", "k1", "k1", ""} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Header().Get("RateLimit"))
	}
	// Output:
	// 200 "t1";r=1
	// 200 "t1";r=0
	// 429 "t1";r=0;t=3600
	// 400
}

// An Observer counts outcomes per resource; here into an expvar.Map (standard library),
// served on /debug/vars. A metrics library is wired the same way.
func Example_observer() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()

	var outcomes expvar.Map // resource:outcome -> count
	var latency expvar.Int  // total microseconds
	limiter := ratelimit.NewLimiter(rdb, &ratelimit.Options{
		Observer: ratelimit.ObserverFunc(func(ctx context.Context, e ratelimit.Event) {
			outcomes.Add(e.Resource+":"+e.Outcome.String(), 1)
			latency.Add(e.Latency.Microseconds())
		}),
	})
	ctx := context.Background()
	pay := ratelimit.PerHour("payments", 2)
	for range 3 {
		_, _ = limiter.Allow(ctx, pay, "user-3")
	}
	_, _ = limiter.Allow(ctx, pay, "") // an error: empty domain
	fmt.Println(outcomes.String())
	// Output:
	// {"payments:error": 1, "payments:granted": 2, "payments:rejected": 1}
}

// Fail open when Redis is unreachable, decided within the Limiter's Timeout (100ms by
// default), with go-redis options that keep a limiter's client quiet and fast.
func Example_failOpen() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                  "127.0.0.1:1", // nothing listens here
		DialerRetries:         1,             // one dial per attempt, not 5
		DialerRetryTimeout:    time.Millisecond,
		MaxRetries:            -1,   // the limiter decides; no go-redis retries
		ContextTimeoutEnabled: true, // the Timeout also bounds reading the answer
		DisableIdentity:       true, // no CLIENT SETINFO (Redis < 7.2 lacks it)
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled, // no handshake error per connection
		},
	})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, &ratelimit.Options{
		FailOpen: true,
		Timeout:  50 * time.Millisecond,
		OnFailOpen: func(ctx context.Context, resource, domain string, err error) {
			fmt.Printf("failed open for %s/%s\n", resource, domain) // count and alert here
		},
	})

	res, err := limiter.Allow(context.Background(), ratelimit.PerSecond("api", 5), "user-4")
	if err != nil {
		fmt.Println(err) // outcome unknown, or a server error: never turned into a grant
		return
	}
	fmt.Println(res.Granted, res.Override)
	// Output:
	// failed open for api/user-4
	// 1 fail-open
}
