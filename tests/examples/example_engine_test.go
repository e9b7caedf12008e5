//go:build integration

package examples_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/charon-redis/charon/module/concurrency"
	"github.com/charon-redis/charon/module/ratelimit"
)

// On a Redis that cannot load modules (managedAddr: no module, TIME refused), the
// clients run the same rules as server-side scripts and say so.
func Example_managedRedis() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     managedAddr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	ctx := context.Background()
	limiter := ratelimit.NewLimiter(rdb, &ratelimit.Options{
		Observer: ratelimit.ObserverFunc(func(_ context.Context, e ratelimit.Event) {
			fmt.Println("observed:", e.Outcome, "on the", e.Engine, "engine")
		}),
	})
	fmt.Println("before the first request:", limiter.Engine())
	for range 3 {
		res, err := limiter.Allow(ctx, ratelimit.PerMinute("search", 2), "user-1")
		if err != nil {
			fmt.Println("limiter unavailable:", err)
			return
		}
		fmt.Println(res.Allowed(), res.Remaining)
	}
	fmt.Println("engine:", limiter.Engine())

	sem := concurrency.New(rdb, nil)
	h, err := sem.Reserve(ctx, &concurrency.Pool{Name: "exports", Limit: 1}, "user-1", concurrency.ReserveArgs{})
	if err != nil {
		fmt.Println("no hold:", err)
		return
	}
	fmt.Println(h.Copies, "copy held, fence > 0:", h.Fence() > 0, "engine:", sem.Engine())
	_ = h.Release(ctx)
	// Output:
	// before the first request: auto
	// observed: granted on the scripts engine
	// true 1
	// observed: granted on the scripts engine
	// true 0
	// observed: rejected on the scripts engine
	// false 0
	// engine: scripts
	// 1 copy held, fence > 0: true engine: scripts
}

// Forcing an engine: the module only (an error where it is missing), or the scripts
// even where the module is loaded (while keys the scripts wrote still live).
func Example_forceEngine() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     managedAddr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	ctx := context.Background()
	moduleOnly := ratelimit.NewLimiter(rdb, &ratelimit.Options{Engine: ratelimit.EngineModule})
	_, err := moduleOnly.Allow(ctx, ratelimit.PerMinute("search", 2), "user-2")
	fmt.Println(errors.Is(err, ratelimit.ErrMisconfigured))

	withModule := redis.NewClient(&redis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer withModule.Close()
	scripts := ratelimit.NewLimiter(withModule, &ratelimit.Options{Engine: ratelimit.EngineScripts})
	res, err := scripts.Allow(ctx, ratelimit.PerMinute("search-scripts", 2), "user-2")
	fmt.Println(res.Allowed(), err, scripts.Engine())
	// Output:
	// true
	// true <nil> scripts
}
