//go:build integration

package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/concurrency"
	"github.com/charon-redis/charon/tests/harness"
)

// hoRequire fails the test unless the server has what the hold client's newest paths
// use: ONCE on RESERVE, the fence field, BLOCK.
func hoRequire(t *testing.T, rdb *redis.Client) {
	t.Helper()
	ctx := context.Background()
	v, err := rdb.Do(ctx, "CHARON.RESERVE", "hd:{probe}:d:x", "DRYRUN", "LIMIT", 1, "ONCE", "t").Slice()
	require.NoError(t, err, "the module must take ONCE on CHARON.RESERVE")
	require.Len(t, v, 9, "the module must append the fence to RESERVE's reply")
	err = rdb.Do(ctx, "CHARON.RESERVE", "hd:{probe}:d:x", "DRYRUN", "LIMIT", 1, "BLOCK", 1).Err()
	require.True(t, redis.HasErrorPrefix(err, "BLOCK:"), "the module must know BLOCK: %v", err)
}

// Reservations behind the fault proxy (5% of the server's writes lost, connections
// reset): a reservation whose answer was lost is sent again with its ONCE token and
// gets back the same hold, so the copies Redis holds are exactly the holds the callers
// got: none made twice, none lost, every hold id distinct, every fence distinct on its
// key.
func TestHoldClientExactlyOnceUnderFaults(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	direct := s.Client(t, harness.Protocol(2))
	hoRequire(t, direct)
	const domains, goroutines = 200, 20
	reservations := envInt("CHARON_FAULT_RESERVATIONS", 20000)
	proxy := startFaultProxy(t, s.Addr(), 0.05, 0.01, 7)
	rdb := redis.NewClient(&redis.Options{
		Addr:                     proxy.Addr(),
		DialerRetries:            1,
		DialerRetryTimeout:       time.Millisecond,
		MaxRetries:               -1,
		ContextTimeoutEnabled:    true,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer rdb.Close()
	sem := concurrency.New(rdb, nil)
	// Copies are never released: each domain may hold as many as it is ever asked for.
	pool := &concurrency.Pool{Name: "faults", Limit: concurrency.MaxCount, Lease: time.Hour}

	var mu sync.Mutex
	held := make([]int64, domains)
	ids := map[string]bool{}
	fences := map[string]bool{} // domain/fence: a fence is unique per key
	var unknown int
	var others []error
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 11))
			for range reservations / goroutines {
				d := rnd.IntN(domains)
				h, err := sem.Reserve(context.Background(), pool, strconv.Itoa(d), concurrency.ReserveArgs{})
				mu.Lock()
				switch {
				case err == nil:
					held[d] += h.Copies
					f := fmt.Sprintf("%d/%d", d, h.Fence())
					if ids[h.ID] || fences[f] || h.Fence() == 0 {
						others = append(others, fmt.Errorf("hold %s (fence %d of domain %d) seen twice", h.ID, h.Fence(), d))
					}
					ids[h.ID], fences[f] = true, true
				case errors.Is(err, concurrency.ErrOutcomeUnknown):
					unknown++
				default:
					others = append(others, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	var got, onServer, twice, lost int64
	for d := range domains {
		key, _ := concurrency.KeyNames(concurrency.DefaultPrefix, pool.Name, strconv.Itoa(d))
		v, err := direct.Do(context.Background(), "CHARON.RESERVE", key, "DRYRUN", "LIMIT", concurrency.MaxCount).Slice()
		require.NoError(t, err)
		n, _ := v[2].(int64) // held: the domain's live copies, the dry run's included
		dry, _ := v[0].(int64)
		n -= dry
		got += held[d]
		onServer += n
		if n > held[d]+int64(unknown) {
			twice += n - held[d]
		}
		if n < held[d] {
			lost += held[d] - n
		}
	}
	writes, drops, resets := proxy.stats()
	t.Logf("%d reservations: %d holds, %d outcome unknown (%.3f%%), %d other errors; Redis holds %d copies (%d twice, %d lost); proxy: %d writes, %d lost, %d resets",
		reservations, len(ids), unknown, 100*float64(unknown)/float64(reservations), len(others), onServer, twice, lost, writes, drops, resets)
	for i, e := range others {
		if i == 3 {
			break
		}
		t.Logf("other: %v", e)
	}
	require.Zero(t, len(others))
	require.Zero(t, lost)
	require.GreaterOrEqual(t, onServer, got)
	require.LessOrEqual(t, onServer, got+int64(unknown), "no reservation made twice")
	require.LessOrEqual(t, unknown*1000, reservations, "ErrOutcomeUnknown <= 0.1%%")
	require.Greater(t, drops, int64(reservations/1000), "the proxy lost answers")
}

// Hold.Fence grows with every grant of a resource, and a seize gets a fresh one.
func TestHoldClientFence(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	rdb := s.Client(t)
	hoRequire(t, s.Client(t, harness.Protocol(2)))
	ctx := context.Background()
	sem := concurrency.New(rdb, nil)
	pool := &concurrency.Pool{Name: "fenced", Limit: 5, Global: 10}
	var last int64
	var holds []*concurrency.Hold
	for i := range 5 {
		h, err := sem.Reserve(ctx, pool, "d"+strconv.Itoa(i%2), concurrency.ReserveArgs{})
		require.NoError(t, err)
		require.Greater(t, h.Fence(), last, "fences grow across the resource")
		last = h.Fence()
		holds = append(holds, h)
	}
	tk, err := holds[0].Transfer(ctx, 0, time.Minute)
	require.NoError(t, err)
	h, err := sem.Seize(ctx, pool, tk)
	require.NoError(t, err)
	require.Greater(t, h.Fence(), last, "a seize gets a fence of its own")
}

// Waiting with MaxWait uses the server's BLOCK: a reservation that waits is granted when
// the copy is released, and it was sent once (no polling), unlike against a server
// without BLOCK... which this module is not.
func TestHoldClientWaits(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	rdb := s.Client(t)
	hoRequire(t, s.Client(t, harness.Protocol(2)))
	ctx := context.Background()
	var events []concurrency.Event
	var mu sync.Mutex
	sem := concurrency.New(rdb, &concurrency.Options{Observer: concurrency.ObserverFunc(func(_ context.Context, e concurrency.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	})})
	pool := &concurrency.Pool{Name: "wait", Limit: 1}
	first, err := sem.Reserve(ctx, pool, "u", concurrency.ReserveArgs{})
	require.NoError(t, err)

	reserveCalls := func() int64 {
		st := s.Info(t, "commandstats")["cmdstat_charon.reserve"]
		var n int64
		_, _ = fmt.Sscanf(st, "calls=%d", &n)
		return n
	}
	before := reserveCalls()
	got := make(chan *concurrency.Hold, 1)
	errc := make(chan error, 1)
	go func() {
		h, err := sem.Reserve(ctx, pool, "u", concurrency.ReserveArgs{MaxWait: 2 * time.Second})
		got <- h
		errc <- err
	}()
	// The waiter is blocked on the server (INFO counts it); then the copy is released.
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		w := s.Info(t, "charon_reserve")["charon_reserve_waiters"]
		return w == "1", "waiters: " + w
	})
	require.NoError(t, first.Release(ctx))
	h := <-got
	require.NoError(t, <-errc)
	require.Equal(t, int64(1), h.Copies)
	require.Greater(t, h.Fence(), first.Fence())
	calls := reserveCalls() - before
	t.Logf("a waiting reservation: %d RESERVE calls", calls)
	require.LessOrEqual(t, calls, int64(2), "it waited on the server, without polling")

	// A reservation that cannot fit in time gets the rejection after MaxWait.
	_, err = sem.Reserve(ctx, pool, "u", concurrency.ReserveArgs{MaxWait: 100 * time.Millisecond})
	var rej *concurrency.RejectedError
	require.ErrorAs(t, err, &rej)
	require.Equal(t, "domain", rej.LimitedBy)
}
