package ratelimit

import (
	"context"
	"fmt"
	"time"
)

// Clock is the time source of the waiting loop. The zero Options use the wall clock.
// A Clock set in Options also sets every request's time (AT), so a fake Clock drives
// the server's notion of time as well: tests and simulations can wait through hours of
// windows without sleeping.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx ends, whichever is first, and returns ctx.Err()
	// in the second case.
	Sleep(ctx context.Context, d time.Duration) error
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jitterFraction spreads every sleep over ±25% so that waiters rejected together do
// not come back together.
const jitterFraction = 0.25

// backoff is the exponential part of the waiting policy: min, 2*min, 4*min, ... max.
type backoff struct {
	min, max time.Duration
}

// delay is the un-jittered backoff before retry n (n >= 1).
func (b backoff) delay(n int) time.Duration {
	d := b.min
	for i := 1; i < n && d < b.max; i++ {
		d *= 2
	}
	if d > b.max {
		d = b.max
	}
	return d
}

// jitter moves d by a fraction of itself in [-25%, +25%); u is uniform in [0, 1).
func jitter(d time.Duration, u float64) time.Duration {
	return d + time.Duration(float64(d)*jitterFraction*(2*u-1))
}

// rejectionSleep is the sleep after the n-th rejection (n >= 1). The server's
// RetryAfter is the earliest time the same request can succeed, so it is a floor:
// sleep = jitter(max(RetryAfter, backoff(n))), never below RetryAfter. Backoff grows
// while others keep winning the race for the freed hits.
func rejectionSleep(b backoff, n int, retryAfter time.Duration, u float64) time.Duration {
	d := b.delay(n)
	if retryAfter > d {
		d = retryAfter
	}
	d = jitter(d, u)
	if d < retryAfter {
		d = retryAfter
	}
	return d
}

// waitLoop is the retry policy, free of Redis: time comes from clock, randomness from
// rand, and each attempt from step. It is exercised with a fake clock in unit tests.
type waitLoop struct {
	clock            Clock
	rand             func() float64 // uniform in [0, 1)
	backoff          backoff
	transientRetries int // retries after classTransient errors
}

// run calls step until it grants, cannot wait or must not be repeated, and returns the
// last answer with Attempts and Waited filled in.
//
//   - A grant, an error that is not transient, or a rejection when maxWait <= 0 or
//     RetryAfter is Never ends the loop at once. ErrOutcomeUnknown is never transient.
//   - A rejection sleeps rejectionSleep; a transient error sleeps jitter(backoff(n)),
//     at most transientRetries times.
//   - The deadline is start+maxWait (when maxWait > 0) or the context's deadline,
//     whichever is first. A sleep that would end after it is not taken: the loop
//     returns the last answer instead, so it never sleeps past the deadline.
func (w *waitLoop) run(ctx context.Context, maxWait time.Duration, step func(ctx context.Context, attempt int) (*Result, error)) (*Result, error) {
	start := w.clock.Now()
	var deadline time.Time
	hasDeadline := false
	if maxWait > 0 {
		deadline, hasDeadline = start.Add(maxWait), true
	}
	if dl, ok := ctx.Deadline(); ok {
		// The context counts wall time; carry its remaining time over to w.clock.
		if cd := start.Add(time.Until(dl)); !hasDeadline || cd.Before(deadline) {
			deadline, hasDeadline = cd, true
		}
	}
	var waited time.Duration
	rejections, transients := 0, 0
	for attempt := 1; ; attempt++ {
		r, err := step(ctx, attempt)
		if r != nil {
			r.Attempts, r.Waited = attempt, waited
		}
		var d time.Duration
		switch {
		case err != nil:
			if classify(err) != classTransient || transients >= w.transientRetries {
				return r, err
			}
			transients++
			d = jitter(w.backoff.delay(transients), w.rand())
		case r.Granted > 0 || maxWait <= 0 || r.RetryAfter == Never:
			return r, nil
		default:
			rejections++
			d = rejectionSleep(w.backoff, rejections, r.RetryAfter, w.rand())
		}
		before := w.clock.Now()
		if hasDeadline && before.Add(d).After(deadline) {
			return r, err
		}
		if serr := w.clock.Sleep(ctx, d); serr != nil {
			return r, fmt.Errorf("ratelimit: stopped waiting after %d attempts: %w", attempt, serr)
		}
		waited += w.clock.Now().Sub(before)
	}
}
