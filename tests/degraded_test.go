//go:build integration

package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/ratelimit"
	"github.com/charon-redis/charon/tests/harness"
)

// Degraded mode against a real server made unreachable under load (docs/go-client.md,
// "When Redis is unreachable: keep limiting"). Four client instances (each a Limiter over
// its own go-redis client) sit behind a round-robin balancer; 20 hot domains ask 50
// times a second each (5x their 10/1s limit) under a resource GLOBAL of 100/1s. The
// server is stopped with SIGSTOP for 10 s (dials hang, sent requests get no answer)
// and continued. The same traffic runs three times: FailLocal (this feature),
// FailOpen, and a naive local fallback (each instance enforces the full limits by
// itself, as go-chi/httprate-redis and rate-limiter-flexible's insurance limiter do).
// The test asserts FailLocal's limits; the comparisons' numbers and every timing are
// printed (docs/go-client.md quotes them).

const (
	dgInstances   = 4
	dgDomains     = 20
	dgPerDomain   = 50 // requests per second per domain
	dgDomainLimit = 10
	dgGlobal      = 100
	dgStopAt      = 8  // s after the start: SIGSTOP
	dgStopFor     = 10 // s
	dgAfter       = 6  // s of traffic after SIGCONT
)

type dgMode int

const (
	dgShare dgMode = iota
	dgFailOpen
	dgNaive
)

func (m dgMode) String() string { return [...]string{"FailLocal", "FailOpen", "naive local"}[m] }

// dgRun is one run's record.
type dgRun struct {
	mode  dgMode
	t0    time.Time
	stop  time.Time // SIGSTOP
	cont  time.Time // SIGCONT
	mu    sync.Mutex
	admit map[[2]int]int // (second since t0, domain) -> hits admitted; domain -1: all
	// From the Observers: each instance's entering and leaving degraded mode.
	entered, recovered []time.Time
	// Time spent in Allow: local decisions of a Limiter already degraded, local
	// decisions of requests that found Redis unreachable, fail-open grants.
	localLat, foundLat, failOpenLat []time.Duration
	localEvents                     int // Observer events with Local set
	errs                            map[string]int
	local                           int // results decided locally
}

// dgNaiveLimiter is the naive fallback: the full limits, per instance, in memory.
type dgNaiveLimiter struct {
	mu     sync.Mutex
	domain map[string][]time.Time
	global []time.Time
}

func (n *dgNaiveLimiter) allow(domain string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	prune := func(log []time.Time) []time.Time {
		i := 0
		for i < len(log) && now.Sub(log[i]) >= time.Second {
			i++
		}
		return log[i:]
	}
	n.global = prune(n.global)
	d := prune(n.domain[domain])
	if len(n.global) >= dgGlobal || len(d) >= dgDomainLimit {
		n.domain[domain] = d
		return false
	}
	n.global = append(n.global, now)
	n.domain[domain] = append(d, now)
	return true
}

func dgRunOnce(t *testing.T, mode dgMode) *dgRun {
	s := harness.Start(t, harness.Options{})
	res := &ratelimit.Resource{Name: "dg", Tiers: []ratelimit.Tier{{Limit: dgDomainLimit, Window: time.Second, Active: time.Second}}, Global: dgGlobal}
	run := &dgRun{mode: mode, admit: map[[2]int]int{}, errs: map[string]int{}}
	run.entered = make([]time.Time, dgInstances)
	run.recovered = make([]time.Time, dgInstances)

	lims := make([]*ratelimit.Limiter, dgInstances)
	naive := make([]*dgNaiveLimiter, dgInstances)
	for i := range lims {
		o := rlcClientOptions(s, 3)
		// The client options docs/go-client.md recommends for a limiter.
		o.DialerRetries, o.DialerRetryTimeout, o.MaxRetries, o.ContextTimeoutEnabled = 1, time.Millisecond, -1, true
		rdb := redis.NewClient(o)
		t.Cleanup(func() { _ = rdb.Close() })
		obs := ratelimit.ObserverFunc(func(_ context.Context, e ratelimit.Event) {
			run.mu.Lock()
			defer run.mu.Unlock()
			switch {
			case e.Outcome == ratelimit.OutcomeDegraded && run.entered[i].IsZero():
				run.entered[i] = time.Now()
			case e.Outcome == ratelimit.OutcomeRecovered && run.recovered[i].IsZero():
				run.recovered[i] = time.Now()
			case e.Local:
				run.localEvents++
			}
		})
		opt := &ratelimit.Options{Observer: obs}
		switch mode {
		case dgShare:
			opt.FailLocal = &ratelimit.LocalOptions{}
		case dgFailOpen:
			opt.FailOpen = true
		case dgNaive:
			naive[i] = &dgNaiveLimiter{domain: map[string][]time.Time{}}
		}
		lims[i] = ratelimit.NewLimiter(rdb, opt)
		_, err := lims[i].Allow(context.Background(), res, "warm-up")
		require.NoError(t, err)
	}

	// Start on a whole second of the wall clock, so windows are seconds.
	run.t0 = time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(run.t0))
	end := run.t0.Add((dgStopAt + dgStopFor + dgAfter) * time.Second)
	pid := s.PID()
	stopped := false
	defer func() {
		if stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()

	rng := rand.New(rand.NewPCG(1, 2))
	var wg sync.WaitGroup
	const tick = 10 * time.Millisecond
	perTick := dgDomains * dgPerDomain * int(tick) / int(time.Second)
	rr := 0
	for k := 0; ; k++ {
		at := run.t0.Add(time.Duration(k) * tick)
		if !at.Before(end) {
			break
		}
		time.Sleep(time.Until(at))
		switch {
		case !stopped && run.stop.IsZero() && !at.Before(run.t0.Add(dgStopAt*time.Second)):
			require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
			stopped, run.stop = true, time.Now()
		case stopped && !at.Before(run.t0.Add((dgStopAt+dgStopFor)*time.Second)):
			require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
			run.mu.Lock()
			stopped, run.cont = false, time.Now()
			run.mu.Unlock()
		}
		for range perTick {
			d := rng.IntN(dgDomains)
			i := rr % dgInstances // the round-robin balancer
			rr++
			wg.Add(1)
			go func() {
				defer wg.Done()
				domain := fmt.Sprint("user-", d)
				run.mu.Lock()
				afterCont := !run.cont.IsZero()
				run.mu.Unlock()
				// Decided without touching the network: the Limiter was degraded when
				// the request began, or Redis was back (a local rejection during the
				// handover). The others found Redis unreachable themselves.
				noNetwork := lims[i].Degraded() || afterCont
				began := time.Now()
				r, err := lims[i].Allow(context.Background(), res, domain)
				now := time.Now()
				took := now.Sub(began)
				granted := err == nil && r.Allowed()
				if err != nil && mode == dgNaive && !errors.Is(err, ratelimit.ErrInvalid) {
					granted, err = naive[i].allow(domain, now), nil
				}
				sec := int(now.Sub(run.t0) / time.Second)
				run.mu.Lock()
				defer run.mu.Unlock()
				if err != nil {
					run.errs[dgErrKind(err)]++
					return
				}
				switch {
				case r != nil && r.Local && noNetwork:
					run.local++
					run.localLat = append(run.localLat, took)
				case r != nil && r.Local:
					run.local++
					run.foundLat = append(run.foundLat, took)
				case r != nil && r.Override == ratelimit.OverrideFailOpen:
					run.failOpenLat = append(run.failOpenLat, took)
				}
				if granted {
					run.admit[[2]int{sec, d}]++
					run.admit[[2]int{sec, -1}]++
				}
			}()
		}
	}
	wg.Wait()
	return run
}

func dgErrKind(err error) string {
	switch {
	case errors.Is(err, ratelimit.ErrOutcomeUnknown):
		return "outcome unknown"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	}
	return "other: " + err.Error()
}

// windows returns the hits admitted in seconds [from, to) for domain d (-1: all).
func (r *dgRun) windows(from, to, d int) []float64 {
	var out []float64
	for s := from; s < to; s++ {
		out = append(out, float64(r.admit[[2]int{s, d}]))
	}
	return out
}

func dgP95(xs []float64) float64 {
	ys := slices.Clone(xs)
	slices.Sort(ys)
	return ys[max((95*len(ys)+99)/100-1, 0)]
}

func dgMean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func dgPercentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ys := slices.Clone(ds)
	slices.Sort(ys)
	return ys[min(int(p*float64(len(ys))), len(ys)-1)]
}

type dgSummary struct {
	before, during, p95During, maxAfter float64
	p95DomDuring, maxDomAfter           float64
}

func (r *dgRun) summary() dgSummary {
	var m dgSummary
	m.before = dgMean(r.windows(dgStopAt-5, dgStopAt, -1))
	during := r.windows(dgStopAt, dgStopAt+dgStopFor, -1)
	m.during, m.p95During = dgMean(during), dgP95(during)
	m.maxAfter = slices.Max(r.windows(dgStopAt+dgStopFor, dgStopAt+dgStopFor+dgAfter-1, -1))
	for d := range dgDomains {
		m.p95DomDuring = max(m.p95DomDuring, dgP95(r.windows(dgStopAt, dgStopAt+dgStopFor, d)))
		m.maxDomAfter = max(m.maxDomAfter, slices.Max(r.windows(dgStopAt+dgStopFor, dgStopAt+dgStopFor+dgAfter-1, d)))
	}
	return m
}

func (r *dgRun) log(t *testing.T) dgSummary {
	m := r.summary()
	t.Logf("%-11s hits/s before %.0f | outage: mean %.0f (%.2fx before), p95 %.0f (%.2fx GLOBAL), worst domain p95 %.0f (%.2fx) | after SIGCONT: max %.0f, worst domain %.0f",
		r.mode, m.before, m.during, m.during/m.before, m.p95During, m.p95During/dgGlobal, m.p95DomDuring, m.p95DomDuring/dgDomainLimit, m.maxAfter, m.maxDomAfter)
	t.Logf("%-11s per second: %v", r.mode, r.windows(0, dgStopAt+dgStopFor+dgAfter, -1))
	if len(r.errs) > 0 {
		t.Logf("%-11s errors: %v", r.mode, r.errs)
	}
	return m
}

// TestDegradedOutage is the acceptance run quoted in docs/go-client.md; it takes about
// 75 s (three runs of 24 s and their servers).
func TestDegradedOutage(t *testing.T) {
	share := dgRunOnce(t, dgShare)
	m := share.log(t)
	var enter, back []time.Duration
	for i := range dgInstances {
		if !share.entered[i].IsZero() {
			enter = append(enter, share.entered[i].Sub(share.stop))
		}
		if !share.recovered[i].IsZero() {
			back = append(back, share.recovered[i].Sub(share.cont))
		}
	}
	t.Logf("FailLocal   %d local decisions without the network: time in Allow p50 %v, p99 %v, p99.9 %v, max %v; %d requests found Redis unreachable themselves and decided locally: p50 %v, max %v",
		len(share.localLat), dgPercentile(share.localLat, 0.5), dgPercentile(share.localLat, 0.99), dgPercentile(share.localLat, 0.999), dgPercentile(share.localLat, 1),
		len(share.foundLat), dgPercentile(share.foundLat, 0.5), dgPercentile(share.foundLat, 1))
	t.Logf("FailLocal   degraded %v after SIGSTOP, back on Redis %v after SIGCONT (per instance)", enter, back)

	for _, mode := range []dgMode{dgFailOpen, dgNaive} {
		r := dgRunOnce(t, mode)
		cm := r.log(t)
		if mode == dgFailOpen {
			t.Logf("FailOpen    %d fail-open grants, latency p50 %v p99 %v", len(r.failOpenLat), dgPercentile(r.failOpenLat, 0.5), dgPercentile(r.failOpenLat, 0.99))
		}
		// The scenario is one where the alternatives break the limits: the checks
		// below can fail.
		assert.Greater(t, cm.p95During, 1.25*dgGlobal, "%v keeps the limits; the scenario proves nothing", mode)
	}

	// The acceptance, on FailLocal's run.
	require.Len(t, enter, dgInstances, "every instance went degraded")
	require.Len(t, back, dgInstances, "every instance came back to Redis")
	assert.GreaterOrEqual(t, m.before, 0.8*dgGlobal, "GLOBAL binds before the outage")
	assert.LessOrEqual(t, m.p95During, 1.25*dgGlobal, "GLOBAL during the outage (p95 over windows)")
	assert.LessOrEqual(t, m.p95DomDuring, 1.25*dgDomainLimit, "each domain during the outage (p95 over windows)")
	assert.GreaterOrEqual(t, m.during, 0.6*m.before, "the fleet keeps serving")
	assert.LessOrEqual(t, m.maxAfter, 1.25*dgGlobal, "no window after SIGCONT above 1.25x GLOBAL")
	assert.LessOrEqual(t, m.maxDomAfter, 1.25*dgDomainLimit, "no window after SIGCONT above 1.25x a domain's limit")
	assert.Positive(t, share.local)
	assert.Equal(t, share.local, share.localEvents, "the Observer sees every local decision")
	assert.Empty(t, share.errs, "every request that could not reach Redis was decided locally")
}
