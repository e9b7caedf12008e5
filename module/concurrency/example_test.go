package concurrency_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/charon-redis/charon/module/concurrency"
	"github.com/redis/go-redis/v9"
)

// A bulkhead: at most 4 concurrent exports per tenant and 20 in all; the function
// runs while the copy is held, the lease is renewed in the background.
func ExampleSemaphore_Do() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	sem := concurrency.New(rdb, nil)
	exports := &concurrency.Pool{Name: "exports", Limit: 4, Global: 20, Lease: 30 * time.Second}
	err := sem.Do(context.Background(), exports, "tenant-42", concurrency.ReserveArgs{},
		func(ctx context.Context, h *concurrency.Hold) error {
			// ... run the export; ctx is cancelled if the hold is lost.
			return nil
		})
	var rej *concurrency.RejectedError
	if errors.As(err, &rej) {
		fmt.Println("busy, retry in", rej.RetryAfter)
	}
}

// A probation pool: new customers share 5 upstream connections between them, on top
// of their own limit of 2.
func Example_probationPool() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	sem := concurrency.New(rdb, nil)
	upstream := &concurrency.Pool{Name: "upstream", Limit: 2, Global: 100,
		Groups: []concurrency.Group{{Name: "probation", Limit: 5}}}
	h, err := sem.Reserve(context.Background(), upstream, "new-customer", concurrency.ReserveArgs{Groups: []string{"probation"}})
	if err != nil {
		return
	}
	defer h.Release(context.Background())
	// ... use the connection
}

// A block list: a group with limit 0 refuses its members every copy.
func Example_blockList() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	sem := concurrency.New(rdb, nil)
	seats := &concurrency.Pool{Name: "seats", Limit: 10, Groups: []concurrency.Group{{Name: "blocked", Limit: 0}}}
	_, err := sem.Reserve(context.Background(), seats, "abuser", concurrency.ReserveArgs{Groups: []string{"blocked"}})
	fmt.Println(errors.Is(err, concurrency.ErrRejected))
}

// Hand-off between processes: the first transfers its copies, the second seizes them
// with the ticket (sent over any channel, e.g. a job queue).
func Example_handOff() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	sem := concurrency.New(rdb, nil)
	jobs := &concurrency.Pool{Name: "jobs", Limit: 3}
	h, err := sem.Reserve(ctx, jobs, "tenant-7", concurrency.ReserveArgs{})
	if err != nil {
		return
	}
	ticket, err := h.Transfer(ctx, 0, 10*time.Second)
	if err != nil {
		return
	}
	// ... in the other process:
	h2, err := sem.Seize(ctx, jobs, ticket)
	if err != nil {
		return
	}
	defer h2.Release(ctx)
}
