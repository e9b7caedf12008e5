package unread_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/charon-redis/charon/module/unread"
	"github.com/redis/go-redis/v9"
)

// These examples need a running server, so they are compiled but not run; the
// integration tests in tests/ run the same flows.

func ExampleNew() {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"},
	})
	defer rdb.Close()
	counts := unread.New(rdb, nil)

	n, err := counts.Counts(context.Background(), []string{"1234", "42", "1234", "no-such-user"})
	if err != nil {
		fmt.Println("no answer:", err) // never a guessed number
		return
	}
	fmt.Println(n) // e.g. [2 1 2 0]
}

func ExampleClient_Mark() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	c := unread.New(rdb, nil)
	ctx := context.Background()

	// Three new messages in conversation c9 of user 1234.
	inConv, err := c.Mark(ctx, "1234", "c9", 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	// The user opens c9: it leaves the set.
	left, err := c.Read(ctx, "1234", "c9")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(inConv, left)
}

func ExampleOptions_perKey() {
	// Behind a proxy that shards by itself (Codis, twemproxy), send one key per
	// command so the proxy can route every key to its owner.
	rdb := redis.NewClient(&redis.Options{Addr: "codis-proxy:19000"})
	defer rdb.Close()
	c := unread.New(rdb, &unread.Options{PerKey: true})
	_, _ = c.Counts(context.Background(), []string{"1", "19"})
}

func ExampleKey() {
	fmt.Println(unread.Key("1234"), unread.Slot(unread.Key("1234")))
	// Output: user_id{1234} 6025
}

// Count calls, keys and fallbacks per operation for metrics.
func ExampleObserver() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	var mu sync.Mutex
	calls, keys, fallbacks := map[string]int{}, map[string]int{}, 0
	c := unread.New(rdb, &unread.Options{
		Observer: unread.ObserverFunc(func(ctx context.Context, e unread.Event) {
			mu.Lock()
			defer mu.Unlock()
			calls[e.Op.String()]++
			keys[e.Op.String()] += e.Keys
			if e.Fallback {
				fallbacks++ // the module is missing on this server
			}
		}),
	})
	_, _ = c.Counts(context.Background(), []string{"1", "2"})
}
