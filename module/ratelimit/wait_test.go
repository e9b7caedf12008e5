package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock advances only when the loop sleeps (or a step says time passed).
type fakeClock struct {
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.UnixMilli(1_700_000_000_000)} }

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func fixedRand(u float64) func() float64 { return func() float64 { return u } }

func newLoop(c Clock, rnd func() float64) *waitLoop {
	return &waitLoop{clock: c, rand: rnd, backoff: backoff{min: 10 * time.Millisecond, max: time.Second}, transientRetries: 3}
}

func rejected(retry time.Duration) *Result { return &Result{Granted: 0, Tier: 1, RetryAfter: retry} }
func granted(n int64) *Result              { return &Result{Granted: n, Tier: 1} }

func TestBackoffAndJitter(t *testing.T) {
	b := backoff{min: 10 * time.Millisecond, max: 300 * time.Millisecond}
	var got []time.Duration
	for n := 1; n <= 7; n++ {
		got = append(got, b.delay(n))
	}
	ms := time.Millisecond
	require.Equal(t, []time.Duration{10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 300 * ms, 300 * ms}, got)
	require.Equal(t, 300*ms, b.delay(1000), "no overflow for large n")

	require.Equal(t, 75*ms, jitter(100*ms, 0))
	require.Equal(t, 100*ms, jitter(100*ms, 0.5))
	require.Less(t, jitter(100*ms, 0.999999), 125*ms)
	require.Greater(t, jitter(100*ms, 0.999999), 124*ms)

	// RetryAfter is a floor, and dominates a smaller backoff.
	require.Equal(t, 700*ms, rejectionSleep(b, 1, 700*ms, 0))
	require.Equal(t, 700*ms, rejectionSleep(b, 1, 700*ms, 0.5))
	require.Equal(t, 875*ms, rejectionSleep(b, 1, 700*ms, 1.0))
	// Backoff wins once it is larger than RetryAfter; jitter applies around it.
	require.Equal(t, 160*ms, rejectionSleep(b, 5, 2*ms, 0.5))
	require.Equal(t, 120*ms, rejectionSleep(b, 5, 2*ms, 0))
	// No RetryAfter (0): plain backoff.
	require.Equal(t, 10*ms, rejectionSleep(b, 1, 0, 0.5))
}

func TestWaitLoopAnswersAtOnce(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		maxWait time.Duration
		res     *Result
	}{
		{"granted", time.Second, granted(2)},
		{"rejected without MaxWait", 0, rejected(100 * time.Millisecond)},
		{"rejected forever (Never)", time.Hour, rejected(Never)},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := newFakeClock()
			calls := 0
			r, err := newLoop(clk, fixedRand(0.5)).run(ctx, c.maxWait, func(context.Context, int) (*Result, error) {
				calls++
				return c.res, nil
			})
			require.NoError(t, err)
			require.Equal(t, 1, calls)
			require.Equal(t, 1, r.Attempts)
			require.Zero(t, r.Waited)
			require.Empty(t, clk.sleeps)
		})
	}
}

func TestWaitLoopUsesRetryAfter(t *testing.T) {
	clk := newFakeClock()
	start := clk.Now()
	var at []time.Duration
	r, err := newLoop(clk, fixedRand(0.5)).run(context.Background(), 5*time.Second, func(_ context.Context, n int) (*Result, error) {
		at = append(at, clk.Now().Sub(start))
		if n < 3 {
			return rejected(700 * time.Millisecond), nil
		}
		return granted(1), nil
	})
	require.NoError(t, err)
	require.Equal(t, int64(1), r.Granted)
	require.Equal(t, 3, r.Attempts)
	require.Equal(t, []time.Duration{0, 700 * time.Millisecond, 1400 * time.Millisecond}, at)
	require.Equal(t, 1400*time.Millisecond, r.Waited)
}

// The deadline property, on many random schedules: the loop never sleeps past start +
// MaxWait, and it stops only when the next sleep would cross it (or the answer is
// final).
func TestWaitLoopNeverSleepsPastDeadline(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 3000; i++ {
		clk := newFakeClock()
		start := clk.Now()
		maxWait := time.Duration(1+rng.IntN(5000)) * time.Millisecond
		var lastU float64
		lp := newLoop(clk, func() float64 { lastU = rng.Float64(); return lastU })
		var lastRetry time.Duration
		r, err := lp.run(context.Background(), maxWait, func(_ context.Context, n int) (*Result, error) {
			// Requests take time too: 0..5 ms each.
			clk.now = clk.now.Add(time.Duration(rng.IntN(6)) * time.Millisecond)
			lastRetry = time.Duration(rng.IntN(1500)) * time.Millisecond
			return rejected(lastRetry), nil
		})
		require.NoError(t, err)
		elapsed := clk.Now().Sub(start)
		var slept time.Duration
		for _, s := range clk.sleeps {
			slept += s
			require.GreaterOrEqual(t, s, time.Duration(0))
		}
		require.Equal(t, slept, r.Waited)
		require.LessOrEqual(t, slept, maxWait, "run %d slept past MaxWait", i)
		require.LessOrEqual(t, elapsed, maxWait+5*time.Millisecond, "run %d", i)
		// It gave up only because the next sleep would have crossed the deadline.
		next := rejectionSleep(lp.backoff, r.Attempts, lastRetry, lastU)
		require.Greater(t, elapsed+next, maxWait, "run %d gave up early", i)
		require.Len(t, clk.sleeps, r.Attempts-1)
	}
}

func TestWaitLoopContextDeadlineWins(t *testing.T) {
	clk := newFakeClock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	calls := 0
	r, err := newLoop(clk, fixedRand(0.5)).run(ctx, time.Hour, func(context.Context, int) (*Result, error) {
		calls++
		return rejected(time.Second), nil
	})
	require.NoError(t, err)
	require.Equal(t, 1, calls, "a 1s RetryAfter cannot fit in a 300ms context")
	require.Zero(t, r.Granted)
	require.Empty(t, clk.sleeps)
}

func TestWaitLoopCanceledWhileSleeping(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clk := newFakeClock()
	r, err := newLoop(clk, fixedRand(0.5)).run(ctx, time.Minute, func(context.Context, int) (*Result, error) {
		cancel()
		return rejected(time.Second), nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.NotNil(t, r, "the last rejection comes back with the error")
	require.Zero(t, r.Granted)
	require.Equal(t, 1, r.Attempts)
}

func TestWaitLoopErrors(t *testing.T) {
	ctx := context.Background()
	tryagain := fmt.Errorf("ratelimit: CHARON.RATE k: %w", serverErr("TRYAGAIN Multiple keys request during rehashing of slot"))
	t.Run("transient errors are retried with backoff, then returned", func(t *testing.T) {
		clk := newFakeClock()
		calls := 0
		_, err := newLoop(clk, fixedRand(0.5)).run(ctx, 0, func(context.Context, int) (*Result, error) {
			calls++
			return nil, tryagain
		})
		require.ErrorIs(t, err, tryagain)
		require.Equal(t, 4, calls, "1 + 3 transient retries")
		require.Equal(t, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}, clk.sleeps)
	})
	t.Run("transient then granted", func(t *testing.T) {
		clk := newFakeClock()
		r, err := newLoop(clk, fixedRand(0.5)).run(ctx, 0, func(_ context.Context, n int) (*Result, error) {
			if n == 1 {
				return nil, tryagain
			}
			return granted(1), nil
		})
		require.NoError(t, err)
		require.Equal(t, 2, r.Attempts)
	})
	for _, e := range []error{
		fmt.Errorf("x: %w: %w", ErrOutcomeUnknown, errors.New("i/o timeout")),
		serverErr("ERR MAX: bad"),
		context.Canceled,
	} {
		t.Run(fmt.Sprintf("not retried: %v", e), func(t *testing.T) {
			clk := newFakeClock()
			calls := 0
			_, err := newLoop(clk, fixedRand(0.5)).run(ctx, time.Hour, func(context.Context, int) (*Result, error) {
				calls++
				return nil, e
			})
			require.ErrorIs(t, err, e)
			require.Equal(t, 1, calls)
			require.Empty(t, clk.sleeps)
		})
	}
	t.Run("transient retries respect the deadline", func(t *testing.T) {
		clk := newFakeClock()
		calls := 0
		lp := newLoop(clk, fixedRand(0.5))
		lp.backoff = backoff{min: time.Second, max: time.Second}
		_, err := lp.run(ctx, 1500*time.Millisecond, func(context.Context, int) (*Result, error) {
			calls++
			return nil, tryagain
		})
		require.ErrorIs(t, err, tryagain)
		require.Equal(t, 2, calls)
		require.Equal(t, []time.Duration{time.Second}, clk.sleeps)
	})
}

// waitGoroutines polls until the goroutine count is back to base (go-redis pools and
// timers wind down asynchronously).
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, %d before:\n%s", n, base, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWallClockSleep(t *testing.T) {
	base := runtime.NumGoroutine()
	c := wallClock{}
	require.NoError(t, c.Sleep(context.Background(), time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, c.Sleep(ctx, time.Hour), context.Canceled)
	require.ErrorIs(t, c.Sleep(ctx, 0), context.Canceled)
	require.NoError(t, c.Sleep(context.Background(), -time.Second))
	waitGoroutines(t, base)
}
