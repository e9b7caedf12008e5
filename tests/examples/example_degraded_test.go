//go:build integration

package examples_test

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/charon-redis/charon/module/ratelimit"
)

// Keep limiting while Redis is unreachable: a Limiter of a fleet of four that has not
// heard from Redis yet assumes a quarter of every limit, and decides locally.
func Example_failLocal() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                  "127.0.0.1:1", // nothing listens here
		DialerRetries:         1,
		DialerRetryTimeout:    time.Millisecond,
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	defer rdb.Close()
	limiter := ratelimit.NewLimiter(rdb, &ratelimit.Options{
		FailLocal: &ratelimit.LocalOptions{Instances: 4},
		Observer: ratelimit.ObserverFunc(func(ctx context.Context, e ratelimit.Event) {
			if e.Outcome == ratelimit.OutcomeDegraded || e.Outcome == ratelimit.OutcomeRecovered {
				fmt.Println(e.Outcome) // alert here
			}
		}),
	})

	api := ratelimit.PerSecond("api", 8)
	for range 3 {
		res, err := limiter.Allow(context.Background(), api, "user-5")
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(res.Allowed(), res.Local, res.TierLimit)
	}
	fmt.Println(limiter.Degraded())
	// Output:
	// degraded
	// true true 2
	// true true 2
	// false true 2
	// true
}
