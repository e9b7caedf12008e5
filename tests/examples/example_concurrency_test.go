//go:build integration

package examples_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/charon-redis/charon/module/concurrency"
)

// Runnable examples of module/concurrency; docs/go-client.md copies their bodies.

// Reserve and Release: at most 2 exports at once per tenant, 10 in all.
func Example_reserve() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	sem := concurrency.New(rdb, nil)
	ctx := context.Background()

	exports := &concurrency.Pool{Name: "exports", Limit: 2, Global: 10, Lease: time.Minute}
	var held []*concurrency.Hold
	for range 3 {
		h, err := sem.Reserve(ctx, exports, "tenant-7", concurrency.ReserveArgs{})
		var rej *concurrency.RejectedError
		switch {
		case errors.As(err, &rej):
			fmt.Println("busy: the", rej.LimitedBy, "limit")
		case err != nil:
			fmt.Println("no answer:", err)
			return
		default:
			fmt.Println("holding", h.Copies, "copy")
			held = append(held, h)
		}
	}
	for _, h := range held {
		if err := h.Release(ctx); err != nil {
			fmt.Println(err) // the lease frees the copy anyway
		}
	}
	h, err := sem.Reserve(ctx, exports, "tenant-7", concurrency.ReserveArgs{Max: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("after the releases: holding", h.Copies, "copies")
	_ = h.Release(ctx)
	// Output:
	// holding 1 copy
	// holding 1 copy
	// busy: the domain limit
	// after the releases: holding 2 copies
}

// Do: a job runs while it holds a copy; the lease is renewed in the background and
// the copy released when the job returns. The Observer sees each command.
func Example_semaphoreDo() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	var seen []string // one job at a time here; use a lock otherwise
	sem := concurrency.New(rdb, &concurrency.Options{
		Observer: concurrency.ObserverFunc(func(ctx context.Context, e concurrency.Event) {
			seen = append(seen, e.Op.String()+":"+e.Outcome.String())
		}),
	})
	reports := &concurrency.Pool{Name: "reports", Limit: 1, Lease: 30 * time.Second}

	err := sem.Do(context.Background(), reports, "tenant-9", concurrency.ReserveArgs{},
		func(ctx context.Context, h *concurrency.Hold) error {
			// ctx is cancelled (cause: ErrLost) if the hold is lost.
			fmt.Println("building the report with", h.Copies, "copy")
			return nil
		})
	fmt.Println(err, seen)
	// Output:
	// building the report with 1 copy
	// <nil> [reserve:ok release:ok]
}
