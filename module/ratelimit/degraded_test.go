package ratelimit

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// Unit tests of the degraded mode over an unreachable server; tests/degraded_test.go
// runs it against a real server that stops answering and comes back.

// lockedClock is a Clock that moves only when told to; safe for the probe's goroutine.
type lockedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *lockedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *lockedClock) Sleep(ctx context.Context, d time.Duration) error {
	c.advance(d)
	return ctx.Err()
}

func (c *lockedClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// eventLog records an Observer's events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (o *eventLog) Observe(_ context.Context, e Event) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
}

func (o *eventLog) outcomes() []Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Outcome
	for _, e := range o.events {
		out = append(out, e.Outcome)
	}
	return out
}

// dialCounter counts a client's dials.
type dialCounter struct{ n atomic.Int64 }

func (d *dialCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d.n.Add(1)
		return next(ctx, network, addr)
	}
}
func (d *dialCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (d *dialCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestFailLocalDecidesLocally(t *testing.T) {
	rdb := unreachable(t)
	dials := &dialCounter{}
	rdb.AddHook(dials)
	clk := &lockedClock{now: time.UnixMilli(1_700_000_000_000)}
	obs := &eventLog{}
	// Four instances expected and nothing learned yet: a share of 1/4 of 8 per
	// second, 2 per second. FailOpen is ignored next to FailLocal.
	l := NewLimiter(rdb, &Options{FailLocal: &LocalOptions{Instances: 4}, FailOpen: true, Observer: obs, Clock: clk})
	ctx := context.Background()
	res := PerSecond("api", 8)
	require.False(t, l.Degraded())

	r, err := l.Allow(ctx, res, "u")
	require.NoError(t, err)
	require.True(t, r.Local)
	require.Equal(t, int64(1), r.Granted)
	require.Equal(t, OverrideNone, r.Override)
	require.Equal(t, int64(2), r.TierLimit, "the instance's share of the tier")
	require.True(t, l.Degraded())
	require.Equal(t, []Outcome{OutcomeDegraded, OutcomeLocalGranted}, obs.outcomes())
	obs.mu.Lock()
	require.Error(t, obs.events[0].Err, "the error that showed Redis unreachable")
	require.Equal(t, "api", obs.events[0].Resource)
	require.True(t, obs.events[1].Local)
	obs.mu.Unlock()

	// While degraded nothing touches the network until a probe is due.
	before := dials.n.Load()
	r, err = l.Allow(ctx, res, "u")
	require.NoError(t, err)
	require.Equal(t, int64(1), r.Granted)
	r, err = l.Allow(ctx, res, "u")
	require.NoError(t, err)
	require.True(t, r.Local)
	require.Equal(t, int64(0), r.Granted)
	require.Equal(t, LimitTier, r.RejectedBy)
	require.Equal(t, time.Second+time.Millisecond, r.RetryAfter) // the first hit leaves the window
	require.Equal(t, 0, r.Attempts)
	for range 100 {
		_, err = l.Allow(ctx, res, "v")
		require.NoError(t, err)
	}
	require.Equal(t, before, dials.n.Load(), "no dial while degraded and no probe due")
	require.Equal(t, OutcomeLocalRejected, obs.outcomes()[3])

	// 500 ms later a request starts a probe (in the background); it fails, so the
	// Limiter stays degraded, and the next probe waits another 500 ms.
	clk.advance(DefaultProbeInterval)
	_, err = l.Allow(ctx, res, "u")
	require.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	for dials.n.Load() == before || l.deg.probing.Load() {
		require.True(t, time.Now().Before(deadline), "the probe dials")
		time.Sleep(time.Millisecond)
	}
	require.True(t, l.Degraded())
	probed := dials.n.Load()
	for range 10 {
		_, err = l.Allow(ctx, res, "u")
		require.NoError(t, err)
	}
	require.Equal(t, probed, dials.n.Load(), "one probe per interval")

	// A dry run decides and counts nothing; waiting waits locally.
	clk.advance(2 * time.Second)
	r, err = l.RequestWith(ctx, res, "w", RequestArgs{Max: 2, DryRun: true})
	require.NoError(t, err)
	require.True(t, r.Local)
	require.Equal(t, int64(2), r.Granted)
	r, err = l.RequestWith(ctx, res, "w", RequestArgs{Max: 2})
	require.NoError(t, err)
	require.Equal(t, int64(2), r.Granted)
	r, err = l.RequestWith(ctx, res, "w", RequestArgs{Max: 1, MaxWait: 2 * time.Second})
	require.NoError(t, err)
	require.True(t, r.Local)
	require.Equal(t, int64(1), r.Granted)
	require.GreaterOrEqual(t, r.Waited, time.Second, "waited on the local clock for the window")
}

func TestFailLocalKillSwitchAndClosed(t *testing.T) {
	obs := &eventLog{}
	l := NewLimiter(unreachable(t), &Options{FailLocal: &LocalOptions{Instances: 2}, Observer: obs})
	ctx := context.Background()
	closed := &Resource{Name: "billing", Closed: true}
	r, err := l.Allow(ctx, closed, "u")
	require.NoError(t, err)
	require.True(t, r.Local)
	require.Equal(t, int64(0), r.Granted)
	require.Equal(t, LimitClosed, r.RejectedBy)
	require.Equal(t, Never, r.RetryAfter)

	// The kill switch turns a local rejection into a grant, as it does a server's.
	l.SetKillSwitch(true)
	r, err = l.Allow(ctx, closed, "u")
	require.NoError(t, err)
	require.True(t, r.Local)
	require.Equal(t, int64(1), r.Granted)
	require.Equal(t, OverrideKillSwitch, r.Override)
	obs.mu.Lock()
	last := obs.events[len(obs.events)-1]
	obs.mu.Unlock()
	require.Equal(t, OutcomeKillSwitch, last.Outcome)
	require.True(t, last.Local)
	require.Equal(t, "local-granted local-rejected degraded recovered", OutcomeLocalGranted.String()+" "+
		OutcomeLocalRejected.String()+" "+OutcomeDegraded.String()+" "+OutcomeRecovered.String())
}

func TestFailLocalNotForOtherErrors(t *testing.T) {
	// Argument errors are returned as they are, never decided locally.
	l := NewLimiter(unreachable(t), &Options{FailLocal: &LocalOptions{}})
	_, err := l.Allow(context.Background(), PerSecond("api", 5), "")
	require.ErrorIs(t, err, ErrInvalid)
	require.False(t, l.Degraded())
	// Nor a context that ended.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = l.Allow(ctx, PerSecond("api", 5), "u")
	require.Error(t, err)
	require.True(t, errors.Is(err, context.Canceled), "%v", err)
	require.False(t, l.Degraded())
}

func TestMiddlewareLocal(t *testing.T) {
	f := &fakeRequester{result: &Result{Granted: 1, Tier: 1, TierLimit: 2, TierHits: 1, GlobalHits: -1, Local: true}}
	rec, seen := serve(t, f, MiddlewareOptions{Resource: &penalty})
	require.Equal(t, http.StatusOK, rec.Code)
	require.True(t, seen.Local)
	require.Equal(t, "local", rec.Header().Get(HeaderDecision))
	require.Empty(t, rec.Header().Get(HeaderRateLimit), "no fleet-wide numbers exist")
	require.NotEmpty(t, rec.Header().Get(HeaderRateLimitPolicy))

	f = &fakeRequester{result: &Result{Granted: 0, Tier: 1, TierLimit: 2, TierHits: 2, GlobalHits: -1, Local: true,
		RejectedBy: LimitTier, RetryAfter: 1500 * time.Millisecond}}
	rec, _ = serve(t, f, MiddlewareOptions{Resource: &penalty})
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Equal(t, "local", rec.Header().Get(HeaderDecision))
	require.Equal(t, "2", rec.Header().Get(HeaderRetryAfter))
	require.Empty(t, rec.Header().Get(HeaderRateLimit))

	// Redis's own answers carry no such field; fail-open grants say so.
	f = &fakeRequester{result: &Result{Granted: 1, Tier: 1, TierLimit: 5, TierHits: 1, GlobalHits: -1}}
	rec, _ = serve(t, f, MiddlewareOptions{Resource: &penalty})
	require.Empty(t, rec.Header().Get(HeaderDecision))
	f = &fakeRequester{result: &Result{Granted: 1, Override: OverrideFailOpen, GlobalHits: -1}}
	rec, _ = serve(t, f, MiddlewareOptions{Resource: &penalty})
	require.Equal(t, "fail-open", rec.Header().Get(HeaderDecision))
}
