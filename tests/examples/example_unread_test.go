//go:build integration

package examples_test

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/charon-redis/charon/module/unread"
)

// Unread counts on a Redis Cluster: one call for many users, whatever slots they live
// in, with an Observer counting commands and round trips. clusterAddrs are the
// cluster's nodes (see main_test.go).
func Example_unreadCounts() {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                    clusterAddrs,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	var calls []unread.Event
	counts := unread.New(rdb, &unread.Options{
		Observer: unread.ObserverFunc(func(ctx context.Context, e unread.Event) {
			calls = append(calls, e) // one call at a time here; use a lock otherwise
		}),
	})
	ctx := context.Background()

	// User 1234 gets 3 messages in conversation c9 and 1 in c10; user 42 one in c9.
	for _, m := range []struct {
		user, conv string
		n          int64
	}{{"1234", "c9", 3}, {"1234", "c10", 1}, {"42", "c9", 1}} {
		if _, err := counts.Mark(ctx, m.user, m.conv, m.n); err != nil {
			fmt.Println(err)
			return
		}
	}
	n, err := counts.Counts(ctx, []string{"1234", "42", "1234", "no-such-user"})
	if err != nil {
		fmt.Println("no answer:", err) // never a guessed number
		return
	}
	fmt.Println(n)

	left, _ := counts.Read(ctx, "1234", "c9") // user 1234 opens c9
	fmt.Println(left)

	last := calls[len(calls)-2] // the Counts call
	fmt.Println(last.Op, last.Keys, last.Fallback)
	// Output:
	// [2 1 2 0]
	// 1
	// counts 4 false
}
