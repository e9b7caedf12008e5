//go:build integration

package tests

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/concurrency"
	"github.com/charon-redis/charon/module/ratelimit"
	"github.com/charon-redis/charon/module/unread"
	"github.com/charon-redis/charon/tests/harness"
)

// The Go clients' shared decision path (module/internal/transport) against real
// servers: batching, and the mistakes that must be loud (a server without the module,
// a cluster node through a plain client, Redis down or stopped). Helpers are prefixed
// cp (client parity).

// cpReads is the server's total_reads_processed: one per read of a client socket.
func cpReads(t *testing.T, s *harness.Server) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s.Info(t, "stats")["total_reads_processed"], 10, 64)
	require.NoError(t, err)
	return n
}

// Concurrent requests share round trips: the server reads many per read. A lone
// caller is sent at once: one read per request, as with a plain command.
func TestClientBatching(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	rdb := s.Client(t)
	l := ratelimit.NewLimiter(rdb, nil)
	res := ratelimit.PerSecond("batch", ratelimit.MaxCount)
	// A dry run is safe to repeat, so it takes the batched path whatever the module's
	// version; a grant does too where the module takes ONCE.
	ask := func(dom string) {
		r, err := l.RequestWith(ctx, res, dom, ratelimit.RequestArgs{Max: 1, DryRun: true})
		require.NoError(t, err)
		require.Equal(t, int64(1), r.Granted)
	}
	ask("warm-up") // the check and the connection

	const lone = 200
	before := cpReads(t, s)
	for i := range lone {
		ask("lone-" + strconv.Itoa(i))
	}
	loneReads := cpReads(t, s) - before - 1 // INFO itself is a read
	require.GreaterOrEqual(t, loneReads, int64(lone), "a lone caller waits for no company: one read per request")

	const goroutines, each = 50, 40
	before = cpReads(t, s)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ask(fmt.Sprintf("g%d-%d", g, i))
			}
		}()
	}
	wg.Wait()
	reads := cpReads(t, s) - before - 1
	total := int64(goroutines * each)
	t.Logf("lone caller: %d requests in %d reads; %d goroutines: %d requests in %d reads (%.1f per read)",
		lone, loneReads, goroutines, total, reads, float64(total)/float64(reads))
	require.Less(t, reads, total/4, "concurrent requests share round trips")
}

// A server without the module, the clients set to use the module only (by default
// they run the script engine there: tests/engine_test.go): every client says which
// command is missing and how to load it, even with FailOpen (a misconfiguration is
// never a reason to grant).
func TestClientNoModule(t *testing.T) {
	s := harness.Start(t, harness.Options{NoModule: true})
	ctx := context.Background()
	rdb := s.Client(t)

	var failOpens int
	l := ratelimit.NewLimiter(rdb, &ratelimit.Options{FailOpen: true, Engine: ratelimit.EngineModule,
		OnFailOpen: func(context.Context, string, string, error) { failOpens++ }})
	r, err := l.Allow(ctx, ratelimit.PerSecond("api", 5), "u")
	require.Nil(t, r)
	require.ErrorIs(t, err, ratelimit.ErrMisconfigured)
	require.ErrorContains(t, err, "CHARON.RATE")
	require.ErrorContains(t, err, "loadmodule")
	require.Zero(t, failOpens)

	sem := concurrency.New(rdb, &concurrency.Options{FailOpen: true, Engine: concurrency.EngineModule})
	h, err := sem.Reserve(ctx, &concurrency.Pool{Name: "db", Limit: 2}, "u", concurrency.ReserveArgs{})
	require.Nil(t, h)
	require.ErrorIs(t, err, concurrency.ErrMisconfigured)
	require.ErrorContains(t, err, "CHARON.RESERVE")
	t.Logf("ratelimit: %v", err)
}

// A cluster node reached through a *redis.Client: found by the check at start (INFO
// cluster), and, where the check cannot look (an ACL user without INFO), by the first
// MOVED (or CROSSSLOT). Both are errors naming the fix, never a fail-open.
func TestClientClusterThroughPlainClient(t *testing.T) {
	cl := harness.StartCluster(t, harness.Options{})
	ctx := context.Background()
	node := cl.Primaries(t)[0]
	cc := cl.ClusterClient(t)
	// Domains whose keys live on other nodes than node: a plain client gets MOVED.
	var doms []string
	for i := 0; len(doms) < 10; i++ {
		d := "u" + strconv.Itoa(i)
		k, _ := ratelimit.KeyNames(ratelimit.DefaultPrefix, "api", d, false)
		if cl.NodeForSlot(t, int(cc.ClusterKeySlot(ctx, k).Val())) != node {
			doms = append(doms, d)
		}
	}
	res := ratelimit.PerSecond("api", 5)
	// A pool whose keys live on another node, too.
	var pool *concurrency.Pool
	for i := 0; pool == nil; i++ {
		p := &concurrency.Pool{Name: "db" + strconv.Itoa(i), Limit: 2}
		k, _ := concurrency.KeyNames(concurrency.DefaultPrefix, p.Name, "u")
		if cl.NodeForSlot(t, int(cc.ClusterKeySlot(ctx, k).Val())) != node {
			pool = p
		}
	}

	check := func(t *testing.T, rdb *redis.Client, want string) {
		var failOpens int
		l := ratelimit.NewLimiter(rdb, &ratelimit.Options{FailOpen: true,
			OnFailOpen: func(context.Context, string, string, error) { failOpens++ }})
		for _, d := range doms {
			r, err := l.Allow(ctx, res, d)
			require.Nil(t, r)
			require.ErrorIs(t, err, ratelimit.ErrMisconfigured)
			require.ErrorContains(t, err, "redis.NewClusterClient")
			require.ErrorContains(t, err, want)
		}
		require.Zero(t, failOpens, "never a fail-open")

		sem := concurrency.New(rdb, &concurrency.Options{FailOpen: true})
		_, err := sem.Reserve(ctx, pool, "u", concurrency.ReserveArgs{})
		require.ErrorIs(t, err, concurrency.ErrMisconfigured)

		// Users of several slots: MOVED, or CROSSSLOT for a multi-key command.
		_, err = unread.New(rdb, nil).Counts(ctx, doms)
		require.ErrorIs(t, err, unread.ErrMisconfigured)
		require.ErrorContains(t, err, "redis.NewClusterClient")
		t.Logf("%v", err)
	}
	t.Run("found at start", func(t *testing.T) {
		check(t, node.Client(t), "Redis Cluster node")
	})
	t.Run("found by MOVED", func(t *testing.T) {
		admin := node.Client(t)
		require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info").Err())
		rdb := node.Client(t, func(o *redis.Options) { o.Username, o.Password = "noinfo", "pw" })
		check(t, rdb, "MOVED")
	})
}

// Redis down (the process killed): every client fails within its Timeout (not after
// go-redis's dial retries), with an error that wraps the connection's *net.OpError;
// unread.Counts returns that error, not a decoding error about a missing reply.
func TestClientRedisDown(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	o := rlcClientOptions(s, 3) // go-redis's defaults for dialing and retries
	rdb := redis.NewClient(o)
	defer rdb.Close()
	l := ratelimit.NewLimiter(rdb, nil)
	sem := concurrency.New(rdb, nil)
	ur := unread.New(rdb, nil)
	pool := &concurrency.Pool{Name: "db", Limit: 2}
	// Each works while Redis is up (and has checked the server).
	_, err := l.Allow(ctx, ratelimit.PerSecond("api", 5), "u")
	require.NoError(t, err)
	h, err := sem.Reserve(ctx, pool, "u", concurrency.ReserveArgs{})
	require.NoError(t, err)
	require.NoError(t, h.Release(ctx))
	_, err = ur.Counts(ctx, []string{"a", "b"})
	require.NoError(t, err)

	s.Kill(t)
	calls := map[string]func() error{
		"ratelimit.Allow": func() error {
			_, err := l.Allow(ctx, ratelimit.PerSecond("api", 5), "u")
			return err
		},
		"concurrency.Reserve": func() error {
			_, err := sem.Reserve(ctx, pool, "u", concurrency.ReserveArgs{})
			return err
		},
		"unread.Counts": func() error {
			_, err := ur.Counts(ctx, []string{"a", "b"})
			return err
		},
		"unread.Mark": func() error {
			_, err := ur.Mark(ctx, "a", "c1", 1)
			return err
		},
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range calls {
			if !yield(k) {
				return
			}
		}
	}) {
		var took []time.Duration
		var err error
		for range 5 {
			began := time.Now()
			err = calls[name]()
			took = append(took, time.Since(began))
			require.Error(t, err, name)
			var oe *net.OpError
			require.ErrorAs(t, err, &oe, "%s: the cause is kept: %v", name, err)
			require.NotContains(t, err.Error(), "want an integer", name)
		}
		slices.Sort(took)
		t.Logf("%s with Redis down: median %v, max %v (%v)", name, took[2], took[4], err)
	}
}

// Redis stopped (SIGSTOP: connections queue in the listen backlog, then dials time
// out): a FailOpen limiter fails open as the docs promise, once the request that was
// already on its way (sent on a pooled connection, no answer: ErrOutcomeUnknown) is
// past. Nothing else is returned as an error.
func TestClientStoppedFailsOpen(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	o := rlcClientOptions(s, 3)
	o.ContextTimeoutEnabled = true
	rdb := redis.NewClient(o)
	defer rdb.Close()
	var failOpens int
	l := ratelimit.NewLimiter(rdb, &ratelimit.Options{FailOpen: true,
		OnFailOpen: func(context.Context, string, string, error) { failOpens++ }})
	res := ratelimit.PerSecond("stopped", 1000)
	r, err := l.Allow(ctx, res, "u")
	require.NoError(t, err)
	require.Equal(t, ratelimit.OverrideNone, r.Override)

	pid := s.PID()
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	stopped := true
	t.Cleanup(func() {
		if stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	const n = 60
	var open, unknown int
	var others []error
	for range n {
		r, err := l.Allow(ctx, res, "u")
		switch {
		case err == nil && r.Override == ratelimit.OverrideFailOpen:
			open++
		case errors.Is(err, ratelimit.ErrOutcomeUnknown):
			unknown++
		default:
			others = append(others, fmt.Errorf("%+v, %w", r, err))
		}
	}
	t.Logf("Redis stopped: %d requests, %d failed open, %d outcome unknown, %d other", n, open, unknown, len(others))
	require.Empty(t, others, "every request fails open or says its outcome is unknown")
	require.LessOrEqual(t, unknown, 5, "only requests already sent on a connection are unknown")
	require.Equal(t, open, failOpens)

	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	stopped = false
	harness.Eventually(t, 20*time.Second, func() (bool, string) {
		r, err := l.Allow(ctx, res, "u")
		if err != nil {
			return false, err.Error()
		}
		return r.Override == ratelimit.OverrideNone, fmt.Sprintf("%+v", r)
	})
}

// Semaphore.Do when Redis dies just before the release: the job finished, so Do
// reports the job's own result; the copies come back at the lease's end, and the
// Observer says so.
func TestClientDoReleaseFails(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	rdb := s.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })
	var mu sync.Mutex
	var events []concurrency.Event
	sem := concurrency.New(rdb, &concurrency.Options{Observer: concurrency.ObserverFunc(func(_ context.Context, e concurrency.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	})})
	pool := &concurrency.Pool{Name: "jobs", Limit: 1, Lease: 10 * time.Second}
	var deadline time.Time
	err := sem.Do(ctx, pool, "u", concurrency.ReserveArgs{}, func(ctx context.Context, h *concurrency.Hold) error {
		deadline = h.Deadline
		s.Kill(t) // the job is done; Redis dies before the release
		return nil
	})
	require.NoError(t, err, "the job's own result")

	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(events), 2)
	require.Equal(t, concurrency.OpReserve, events[0].Op)
	require.Equal(t, concurrency.OutcomeOK, events[0].Outcome)
	last := events[len(events)-1]
	require.Equal(t, concurrency.OpRelease, last.Op)
	require.Equal(t, concurrency.OutcomeError, last.Outcome)
	require.Error(t, last.Err)
	require.Equal(t, deadline, last.Deadline, "when the server frees the copies by itself")
	require.Equal(t, "jobs", last.Pool)
	require.Equal(t, "error", last.Outcome.String())
	t.Logf("release: %v", last.Err)
}

// The concurrency Observer sees each command with its outcome, and Override has a
// String, as in package ratelimit.
func TestClientConcurrencyObserver(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	rdb := s.Client(t)
	var events []concurrency.Event
	sem := concurrency.New(rdb, &concurrency.Options{Observer: concurrency.ObserverFunc(func(_ context.Context, e concurrency.Event) {
		events = append(events, e) // one goroutine here
	})})
	pool := &concurrency.Pool{Name: "obs", Limit: 1}
	h, err := sem.Reserve(ctx, pool, "u", concurrency.ReserveArgs{})
	require.NoError(t, err)
	_, err = sem.Reserve(ctx, pool, "u", concurrency.ReserveArgs{})
	require.ErrorIs(t, err, concurrency.ErrRejected)
	require.NoError(t, h.Renew(ctx))
	tk, err := h.Transfer(ctx, 0, time.Minute)
	require.NoError(t, err)
	h2, err := sem.Seize(ctx, pool, tk)
	require.NoError(t, err)
	require.NoError(t, h2.Release(ctx))
	require.ErrorIs(t, h.Renew(ctx), concurrency.ErrLost)

	var got []string
	for _, e := range events {
		require.Equal(t, "obs", e.Pool)
		require.Equal(t, "u", e.Domain)
		got = append(got, e.Op.String()+":"+e.Outcome.String())
	}
	require.Equal(t, []string{"reserve:ok", "reserve:rejected", "renew:ok", "transfer:ok", "seize:ok", "release:ok", "renew:lost"}, got)
	require.Equal(t, "domain", events[1].LimitedBy)

	sem.SetKillSwitch(true)
	k, err := sem.Reserve(ctx, pool, "v", concurrency.ReserveArgs{Max: 2})
	require.NoError(t, err)
	require.Equal(t, "kill-switch", k.Override.String())
	require.Equal(t, "none", concurrency.OverrideNone.String())
	require.Equal(t, "fail-open", concurrency.OverrideFailOpen.String())
	require.True(t, strings.HasPrefix(concurrency.Override(9).String(), "Override("))
}

// ReserveArgs.MaxWait waits for a copy to come free, on any server: with BLOCK on the
// server, without it by asking again after each RetryAfter.
func TestClientReserveMaxWait(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	sem := concurrency.New(s.Client(t), nil)
	pool := &concurrency.Pool{Name: "maxwait", Limit: 1, Lease: time.Minute}
	first, err := sem.Reserve(ctx, pool, "u", concurrency.ReserveArgs{})
	require.NoError(t, err)
	got := make(chan error, 1)
	go func() {
		h, err := sem.Reserve(ctx, pool, "u", concurrency.ReserveArgs{MaxWait: 20 * time.Second})
		if err == nil && h.Copies != 1 {
			err = fmt.Errorf("granted %d copies", h.Copies)
		}
		got <- err
	}()
	// Released while the other waits (it is rejected until then, whatever the timing).
	require.NoError(t, first.Release(ctx))
	require.NoError(t, <-got)

	_, err = sem.Reserve(ctx, pool, "u", concurrency.ReserveArgs{MaxWait: 50 * time.Millisecond})
	var rej *concurrency.RejectedError
	require.ErrorAs(t, err, &rej, "the copy is held: rejected once MaxWait is over")
	never := &concurrency.Pool{Name: "maxwait-never", Limit: 1}
	_, err = sem.Reserve(ctx, never, "u", concurrency.ReserveArgs{Max: 2, MaxWait: time.Minute})
	require.ErrorAs(t, err, &rej)
	require.Equal(t, time.Duration(-1), rej.RetryAfter, "a reservation that can never fit does not wait")
}
