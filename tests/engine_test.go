//go:build integration

package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/concurrency"
	"github.com/charon-redis/charon/module/ratelimit"
	"github.com/charon-redis/charon/tests/harness"
)

// The Go clients on a Redis without the module (managed Redis): the same answers
// through the script engine as through the module, on a single node, a primary with
// its replica and a 3-primary cluster, with TIME refused inside scripts; detection at
// start and after the server changes; a key of one engine refused by the other.
// `make test-matrix` runs these tests (TestEngine*) against one more server without
// the module. Helpers are prefixed ce (client engine).

// ceNoModule are the options of a server that cannot load modules and refuses TIME
// inside scripts (as ElastiCache Serverless does).
func ceNoModule() harness.Options {
	return harness.Options{NoModule: true, Config: []string{`rename-command TIME ""`}}
}

// ceFrozenClock always says the same time; its Sleep (the wait after a TRYAGAIN) is
// real.
type ceFrozenClock struct{ t time.Time }

func (c ceFrozenClock) Now() time.Time { return c.t }

func (c ceFrozenClock) Sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// ceTimeRefused checks that the server does refuse TIME.
func ceTimeRefused(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	require.ErrorContains(t, rdb.Do(context.Background(), "TIME").Err(), "unknown command", "TIME is refused here")
	err := rdb.Eval(context.Background(), "return redis.call('TIME')", nil).Err()
	require.Error(t, err, "and refused inside scripts")
}

var ceResources = []*ratelimit.Resource{
	{Name: "tiers", Tiers: []ratelimit.Tier{
		{Limit: 5, Window: time.Second, Active: 2 * time.Second, Cooldown: time.Second},
		{Limit: 12, Window: 10 * time.Second, Active: 20 * time.Second},
		{Limit: 30, Window: time.Minute, Active: time.Minute, Skippable: true},
	}},
	{Name: "hard", Tiers: []ratelimit.Tier{{Limit: 20, Window: 5 * time.Second, Active: 5 * time.Second}}, Hard: 3},
	{Name: "global", Tiers: []ratelimit.Tier{{Limit: 6, Window: 2 * time.Second, Active: 2 * time.Second}}, Global: 9},
	{Name: "closed", Closed: true},
}

// ceRateStep is one random request of a trace.
type ceRateStep struct {
	res      *ratelimit.Resource
	domain   string
	args     ratelimit.RequestArgs
	advance  time.Duration
	reset    bool
	describe string
}

func ceRateTrace(seed uint64, n int) []ceRateStep {
	rnd := rand.New(rand.NewPCG(seed, 7))
	steps := make([]ceRateStep, n)
	for i := range steps {
		s := &steps[i]
		s.res = ceResources[rnd.IntN(len(ceResources))]
		s.domain = "d" + strconv.Itoa(rnd.IntN(4))
		max := int64(1 + rnd.IntN(4))
		s.args = ratelimit.RequestArgs{Max: max, Min: int64(rnd.IntN(int(max) + 1)), DryRun: rnd.IntN(12) == 0}
		s.advance = time.Duration(rnd.IntN(400)) * time.Millisecond
		s.reset = rnd.IntN(300) == 0
		s.describe = fmt.Sprintf("step %d: %s/%s %+v", i, s.res.Name, s.domain, s.args)
	}
	return steps
}

// ceRun plays steps on l (whose clock is c) and returns what each step answered.
func ceRun(t *testing.T, l *ratelimit.Limiter, c *rlcClock, steps []ceRateStep) []string {
	t.Helper()
	ctx := context.Background()
	out := make([]string, len(steps))
	for i, s := range steps {
		c.Advance(s.advance)
		if s.reset {
			require.NoError(t, l.Reset(ctx, s.res, s.domain))
		}
		r, err := l.RequestWith(ctx, s.res, s.domain, s.args)
		require.NoError(t, err, s.describe)
		r.Attempts = 0
		out[i] = fmt.Sprintf("%s: %+v", s.describe, *r)
	}
	return out
}

// The Limiter answers the same trace the same way on the module and on the scripts
// (tiers, cooldowns, skippable tiers, MIN/MAX, HARD, GLOBAL, DRYRUN, CLOSED, Reset),
// and says which engine it uses.
func TestEngineLimiterParity(t *testing.T) {
	t.Parallel()
	mod := harness.Start(t, harness.Options{})
	scr := harness.Start(t, ceNoModule())
	ceTimeRefused(t, scr.Client(t))
	cm := rlcNewClock()
	cs := &rlcClock{now: cm.Now()}
	var seen sync.Map // engines the observer saw
	obs := ratelimit.ObserverFunc(func(_ context.Context, e ratelimit.Event) { seen.Store(e.Engine, true) })
	lm := ratelimit.NewLimiter(mod.Client(t), &ratelimit.Options{Clock: cm})
	ls := ratelimit.NewLimiter(scr.Client(t, harness.Protocol(2)), &ratelimit.Options{Clock: cs, Observer: obs})
	require.Equal(t, ratelimit.EngineAuto, ls.Engine(), "nothing known before the first request")

	steps := ceRateTrace(1, 1500)
	want := ceRun(t, lm, cm, steps)
	got := ceRun(t, ls, cs, steps)
	grants := 0
	for i := range steps {
		require.Equal(t, want[i], got[i])
		if strings.Contains(got[i], "Granted:0 ") {
			grants++
		}
	}
	require.Positive(t, grants, "the trace reaches the limits")
	require.Equal(t, ratelimit.EngineModule, lm.Engine())
	require.Equal(t, ratelimit.EngineScripts, ls.Engine())
	_, ok := seen.Load(ratelimit.EngineScripts)
	require.True(t, ok, "the Observer sees the engine")
	key, _ := ls.Keys(ceResources[0], "d0")
	mk, _ := lm.Keys(ceResources[0], "d0")
	require.Equal(t, mk, key)
	ty, err := scr.Client(t).Type(context.Background(), key).Result()
	require.NoError(t, err)
	require.Equal(t, "hash", ty, "the scripts keep the data under the module's key names, in Redis's own types")
}

// ceHoldRun plays a random trace of hold commands and returns what each answered
// (ids aside: they are random).
func ceHoldRun(t *testing.T, s *concurrency.Semaphore, seed uint64, n int) []string {
	t.Helper()
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(seed, 11))
	pool := &concurrency.Pool{Name: "db", Limit: 3, Global: 5, Lease: 2 * time.Second,
		Groups: []concurrency.Group{{Name: "probation", Limit: 2}, {Name: "blocked"}}}
	at := time.UnixMilli(hdT0)
	var holds []*concurrency.Hold
	out := make([]string, 0, n)
	hold := func(h *concurrency.Hold) string {
		return fmt.Sprintf("copies %d deadline %d fence %d override %v", h.Copies, h.Deadline.UnixMilli(), h.Fence(), h.Override)
	}
	errText := func(err error) string {
		if err == nil {
			return "ok"
		}
		var rej *concurrency.RejectedError
		if errors.As(err, &rej) {
			return fmt.Sprintf("rejected by %s, retry after %v", rej.LimitedBy, rej.RetryAfter)
		}
		if errors.Is(err, concurrency.ErrLost) {
			return "lost"
		}
		require.NoError(t, err)
		return "?"
	}
	for i := range n {
		at = at.Add(time.Duration(rnd.IntN(300)) * time.Millisecond)
		op := rnd.IntN(10)
		var line string
		switch {
		case op < 5 || len(holds) == 0:
			max := int64(1 + rnd.IntN(3))
			a := concurrency.ReserveArgs{Max: max, Min: int64(1 + rnd.IntN(int(max))), At: at}
			switch rnd.IntN(6) {
			case 0:
				a.Groups = []string{"probation"}
			case 1:
				a.Groups = []string{"blocked"}
			}
			h, err := s.Reserve(ctx, pool, "d"+strconv.Itoa(rnd.IntN(3)), a)
			if err == nil {
				holds = append(holds, h)
				line = "reserve: " + hold(h)
			} else {
				line = "reserve: " + errText(err)
			}
		default:
			k := rnd.IntN(len(holds))
			h := holds[k]
			switch op {
			case 5, 6:
				line = "release: " + errText(h.Release(ctx)) + " " + hold(h)
				holds = append(holds[:k], holds[k+1:]...)
			case 7:
				line = "renew: " + errText(h.Renew(ctx)) + " " + hold(h)
			case 8:
				tk, err := h.Transfer(ctx, 1, time.Second)
				line = "transfer: " + errText(err)
				if err == nil {
					line += fmt.Sprintf(" ticket %d copies until %d", tk.Copies, tk.Deadline.UnixMilli())
					h2, err := s.Seize(ctx, pool, tk)
					line += "; seize: " + errText(err)
					if err == nil {
						holds = append(holds, h2)
						line += " " + hold(h2)
					}
				}
			default:
				line = "release 1: " + errText(h.ReleaseCopies(ctx, 1)) + " " + hold(h)
			}
		}
		out = append(out, fmt.Sprintf("%d: %s", i, line))
	}
	return out
}

// The Semaphore answers the same trace the same way on both engines: limits, groups,
// leases, fences, RELEASE of some copies, RENEW, TRANSFER and SEIZE.
func TestEngineSemaphoreParity(t *testing.T) {
	t.Parallel()
	mod := harness.Start(t, harness.Options{})
	scr := harness.Start(t, ceNoModule())
	var seen atomic.Value
	sm := concurrency.New(mod.Client(t), nil)
	ss := concurrency.New(scr.Client(t), &concurrency.Options{Observer: concurrency.ObserverFunc(func(_ context.Context, e concurrency.Event) {
		seen.Store(e.Engine)
	})})
	want := ceHoldRun(t, sm, 3, 600)
	got := ceHoldRun(t, ss, 3, 600)
	require.Equal(t, want, got)
	require.Equal(t, concurrency.EngineModule, sm.Engine())
	require.Equal(t, concurrency.EngineScripts, ss.Engine())
	require.Equal(t, concurrency.EngineScripts, seen.Load())
	joined := strings.Join(got, "\n")
	for _, s := range []string{"rejected by domain", "rejected by global", "rejected by group:", "lost", "seize: ok copies 1"} {
		require.Contains(t, joined, s, "the trace covers it")
	}
}

// Waiting on the scripts: a reservation with MaxWait waits by asking again (the
// scripts have no BLOCK) and gets the copies once they are released.
func TestEngineSemaphoreWaits(t *testing.T) {
	t.Parallel()
	srv := harness.Start(t, ceNoModule())
	ctx := context.Background()
	s := concurrency.New(srv.Client(t), nil)
	pool := &concurrency.Pool{Name: "w", Limit: 1, Lease: 1500 * time.Millisecond}
	h, err := s.Reserve(ctx, pool, "d", concurrency.ReserveArgs{})
	require.NoError(t, err)
	got := make(chan error, 1)
	go func() {
		h2, err := s.Reserve(ctx, pool, "d", concurrency.ReserveArgs{MaxWait: 30 * time.Second})
		if err == nil {
			err = h2.Release(ctx)
		}
		got <- err
	}()
	// The waiter asks again after each RetryAfter: let it ask at least once.
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		st := srv.Info(t, "commandstats")
		calls := 0
		for _, c := range []string{"cmdstat_evalsha", "cmdstat_eval"} {
			var n int
			if _, err := fmt.Sscanf(st[c], "calls=%d,", &n); err == nil {
				calls += n
			}
		}
		return calls >= 2, fmt.Sprintf("%d script calls", calls) // the holder's and the waiter's first
	})
	require.NoError(t, h.Release(ctx))
	require.NoError(t, <-got)
}

// A key written by one engine is refused by the other: the error names the engine,
// wraps the server's redis.Error unchanged, and is never failed open.
func TestEngineWrongEngine(t *testing.T) {
	t.Parallel()
	srv := harness.Start(t, harness.Options{})
	rdb := srv.Client(t)
	ctx := context.Background()
	var failedOpen atomic.Int32
	onFail := func(context.Context, string, string, error) { failedOpen.Add(1) }
	mod := ratelimit.NewLimiter(rdb, &ratelimit.Options{FailOpen: true, OnFailOpen: onFail})
	scr := ratelimit.NewLimiter(rdb, &ratelimit.Options{FailOpen: true, OnFailOpen: onFail, Engine: ratelimit.EngineScripts})
	res := ratelimit.PerMinute("wrong", 10)

	_, err := scr.Allow(ctx, res, "by-scripts")
	require.NoError(t, err)
	require.Equal(t, ratelimit.EngineScripts, scr.Engine(), "forced, module or not")
	r, err := mod.Allow(ctx, res, "by-scripts")
	require.Nil(t, r)
	require.ErrorContains(t, err, "written by Charon's script engine")
	var rerr redis.Error
	require.ErrorAs(t, err, &rerr)
	require.True(t, strings.HasPrefix(rerr.Error(), "WRONGTYPE "), rerr.Error())

	_, err = mod.Allow(ctx, res, "by-module")
	require.NoError(t, err)
	require.Equal(t, ratelimit.EngineModule, mod.Engine())
	r, err = scr.Allow(ctx, res, "by-module")
	require.Nil(t, r)
	require.ErrorContains(t, err, "was written by the Charon module engine")
	require.ErrorAs(t, err, &rerr)
	require.Zero(t, failedOpen.Load(), "a refusal is never failed open")

	sm := concurrency.New(rdb, &concurrency.Options{FailOpen: true})
	ss := concurrency.New(rdb, &concurrency.Options{FailOpen: true, Engine: concurrency.EngineScripts})
	pool := &concurrency.Pool{Name: "wrong", Limit: 2}
	_, err = ss.Reserve(ctx, pool, "by-scripts", concurrency.ReserveArgs{})
	require.NoError(t, err)
	h, err := sm.Reserve(ctx, pool, "by-scripts", concurrency.ReserveArgs{})
	require.Nil(t, h)
	require.ErrorContains(t, err, "script engine")
	_, err = sm.Reserve(ctx, pool, "by-module", concurrency.ReserveArgs{})
	require.NoError(t, err)
	h, err = ss.Reserve(ctx, pool, "by-module", concurrency.ReserveArgs{})
	require.Nil(t, h)
	require.ErrorContains(t, err, "was written by the Charon module engine")

	// Forcing the module where there is none is a misconfiguration that says so.
	bare := harness.Start(t, harness.Options{NoModule: true})
	_, err = ratelimit.NewLimiter(bare.Client(t), &ratelimit.Options{Engine: ratelimit.EngineModule}).Allow(ctx, res, "x")
	require.ErrorIs(t, err, ratelimit.ErrMisconfigured)
	require.ErrorContains(t, err, "set to use the module only")
}

// Detection follows the server: a client whose connections move from a server with
// the module to one without it (a failover onto another server, a restart without
// loadmodule) finds out at its next check, and back; SCRIPT FLUSH is survived by
// sending the script again (EVAL after NOSCRIPT).
func TestEngineDetectionFollowsServer(t *testing.T) {
	t.Parallel()
	mod := harness.Start(t, harness.Options{})
	scr := harness.Start(t, ceNoModule())
	var target atomic.Pointer[string]
	addr := mod.Addr()
	target.Store(&addr)
	rdb := mod.Client(t, func(o *redis.Options) {
		o.Dialer = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, *target.Load())
		}
	})
	var mu sync.Mutex
	var engines []ratelimit.Engine
	l := ratelimit.NewLimiter(rdb, &ratelimit.Options{Observer: ratelimit.ObserverFunc(func(_ context.Context, e ratelimit.Event) {
		mu.Lock()
		defer mu.Unlock()
		if len(engines) == 0 || engines[len(engines)-1] != e.Engine {
			engines = append(engines, e.Engine)
		}
	})})
	ctx := context.Background()
	res := ratelimit.PerMinute("follow", 1000)
	ask := func() error {
		_, err := l.Allow(ctx, res, "d")
		return err
	}
	// moveTo points new connections at s and drops the client's current ones.
	moveTo := func(s *harness.Server, from *harness.Server) {
		a := s.Addr()
		target.Store(&a)
		require.NoError(t, from.Client(t).Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err())
	}
	require.NoError(t, ask())
	require.Equal(t, ratelimit.EngineModule, l.Engine())

	moveTo(scr, mod)
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		err := ask()
		return err == nil && l.Engine() == ratelimit.EngineScripts, fmt.Sprintf("engine %v, err %v", l.Engine(), err)
	})
	// SCRIPT FLUSH: the next request meets NOSCRIPT and sends the script itself.
	require.NoError(t, scr.Client(t).ScriptFlush(ctx).Err())
	require.NoError(t, ask())
	require.Equal(t, ratelimit.EngineScripts, l.Engine())

	moveTo(mod, scr)
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		err := ask()
		return err == nil && l.Engine() == ratelimit.EngineModule, fmt.Sprintf("engine %v, err %v", l.Engine(), err)
	})
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []ratelimit.Engine{ratelimit.EngineModule, ratelimit.EngineScripts, ratelimit.EngineModule}, engines,
		"the Observer sees each change")
}

// A primary and its replica without the module: the replica holds the same data (the
// scripts replicate their effects), and after a failover the counts carry on.
func TestEngineReplica(t *testing.T) {
	t.Parallel()
	primary, replica := harness.StartPrimaryReplica(t, ceNoModule())
	ctx := context.Background()
	clock := rlcNewClock()
	l := ratelimit.NewLimiter(primary.Client(t), &ratelimit.Options{Clock: clock})
	s := concurrency.New(primary.Client(t), nil)
	res := ratelimit.PerHour("rep", 5)
	for i := range 7 {
		r, err := l.Allow(ctx, res, "d")
		require.NoError(t, err)
		require.Equal(t, i < 5, r.Allowed(), "request %d", i)
	}
	pool := &concurrency.Pool{Name: "rep", Limit: 2, Lease: time.Hour}
	h, err := s.Reserve(ctx, pool, "d", concurrency.ReserveArgs{Max: 2})
	require.NoError(t, err)
	harness.WaitReplicaSync(t, primary, replica)
	key, _ := l.Keys(res, "d")
	pd, err := primary.Client(t).Do(ctx, "DEBUG", "DIGEST-VALUE", key).Result()
	require.NoError(t, err)
	rd, err := replica.Client(t).Do(ctx, "DEBUG", "DIGEST-VALUE", key).Result()
	require.NoError(t, err)
	require.Equal(t, pd, rd, "the replica holds the same rate log")

	// Failover: the replica becomes the primary; the limits carry on there.
	require.NoError(t, replica.Client(t).Do(ctx, "REPLICAOF", "NO", "ONE").Err())
	l2 := ratelimit.NewLimiter(replica.Client(t), &ratelimit.Options{Clock: clock})
	r, err := l2.Allow(ctx, res, "d")
	require.NoError(t, err)
	require.False(t, r.Allowed(), "the five hits counted on the old primary still count")
	require.Equal(t, ratelimit.EngineScripts, l2.Engine())
	s2 := concurrency.New(replica.Client(t), nil)
	_, err = s2.Reserve(ctx, pool, "d", concurrency.ReserveArgs{})
	var rej *concurrency.RejectedError
	require.ErrorAs(t, err, &rej, "the hold made on the old primary still holds")
	require.NotEmpty(t, h.ID)
}

// A 3-primary cluster without the module: every key a script touches is in KEYS, so
// requests route like the module's commands (GLOBAL and GROUP keys share the
// resource's slot); during a reshard no answer is wrong: each domain is granted at
// most its limit, and the server counts exactly the grants the callers saw.
func TestEngineCluster(t *testing.T) {
	t.Parallel()
	c := harness.StartCluster(t, ceNoModule())
	rdb := c.ClusterClient(t)
	ceTimeRefused(t, c.Primaries(t)[0].Client(t))
	ctx := context.Background()
	l := ratelimit.NewLimiter(rdb, &ratelimit.Options{Timeout: 2 * time.Second})
	const domains, limit, goroutines = 300, 40, 8
	res := ratelimit.PerHour("cl", limit)
	glob := &ratelimit.Resource{Name: "clg", Tiers: []ratelimit.Tier{{Limit: 1000, Window: time.Hour, Active: time.Hour}}, Global: 25}

	from := c.Primaries(t)[0]
	reshard := c.StartReshard(t, from, c.OtherPrimary(t, from), 2000)
	granted := make([]atomic.Int64, domains)
	var globalGranted atomic.Int64
	var wg sync.WaitGroup
	var failures sync.Map
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 5))
			for range 600 {
				d := rnd.IntN(domains)
				r, err := l.Allow(ctx, res, strconv.Itoa(d))
				if err != nil {
					failures.Store(err.Error(), true)
					continue
				}
				if r.Allowed() {
					granted[d].Add(1)
				}
				if rnd.IntN(10) == 0 {
					r, err := l.Allow(ctx, glob, strconv.Itoa(d))
					if err != nil {
						failures.Store(err.Error(), true)
						continue
					}
					if r.Allowed() {
						globalGranted.Add(1)
						if r.GlobalHits > 25 {
							failures.Store(fmt.Sprintf("granted with %d global hits in the second", r.GlobalHits), true)
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	reshard.Wait(t)
	failures.Range(func(k, _ any) bool {
		t.Errorf("request failed: %v", k)
		return true
	})
	require.Equal(t, ratelimit.EngineScripts, l.Engine())
	// GLOBAL caps a second: 40 requests of as many domains at one instant (a clock
	// that stands still; they travel together, in one or two round trips) get 25.
	// (The scripts' keys live by the server's clock: a global key outlives its second
	// by the server's time, whatever time the client sends.)
	burst := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: ceFrozenClock{rlcNewClock().Now()}})
	var burstGranted atomic.Int64
	for d := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := burst.Allow(ctx, glob, "burst"+strconv.Itoa(d))
			if err != nil {
				failures.Store(err.Error(), true)
			} else if r.Allowed() {
				burstGranted.Add(1)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(25), burstGranted.Load(), "GLOBAL holds across domains")
	rejected := 0
	for d := range domains {
		g := granted[d].Load()
		require.LessOrEqual(t, g, int64(limit), "domain %d", d)
		r, err := l.RequestWith(ctx, res, strconv.Itoa(d), ratelimit.RequestArgs{Max: limit, Min: 1, DryRun: true})
		require.NoError(t, err)
		require.Equal(t, limit-g, r.Granted, "domain %d: the server counted exactly the grants seen", d)
		if g == limit {
			rejected++
		}
	}

	// Holds with GLOBAL and groups on the cluster.
	s := concurrency.New(rdb, nil)
	pool := &concurrency.Pool{Name: "clp", Limit: 2, Global: 3, Groups: []concurrency.Group{{Name: "g", Limit: 1}}}
	h1, err := s.Reserve(ctx, pool, "a", concurrency.ReserveArgs{Max: 2})
	require.NoError(t, err)
	_, err = s.Reserve(ctx, pool, "b", concurrency.ReserveArgs{Max: 2})
	var rej *concurrency.RejectedError
	require.ErrorAs(t, err, &rej)
	require.Equal(t, "global", rej.LimitedBy)
	h2, err := s.Reserve(ctx, pool, "b", concurrency.ReserveArgs{Groups: []string{"g"}})
	require.NoError(t, err)
	require.Positive(t, h2.Fence())
	require.NoError(t, h1.Release(ctx))
	require.NoError(t, h2.Release(ctx))
	// SCRIPT FLUSH on every node: the next commands send the scripts again.
	for _, n := range c.Primaries(t) {
		require.NoError(t, n.Client(t).ScriptFlush(ctx).Err())
	}
	h3, err := s.Reserve(ctx, pool, "b", concurrency.ReserveArgs{Max: 2, Groups: []string{"g"}, Min: 1})
	require.NoError(t, err)
	require.Equal(t, int64(1), h3.Copies, "the group allows one")
	t.Logf("%d domains, %d at their limit; GLOBAL granted %d", domains, rejected, globalGranted.Load())
}

// Exactly once on the scripts: the Limiter behind a proxy that loses 5% of the
// server's writes and resets connections; a lost answer is asked again with the same
// ONCE token, which the scripts remember as the module does.
func TestEngineExactlyOnceUnderFaults(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, ceNoModule())
	decisions := envInt("CHARON_FAULT_DECISIONS", 100000) / 5
	const keys, limit, goroutines = 300, 40, 20
	proxy := startFaultProxy(t, s.Addr(), 0.05, 0.01, 99)
	rdb := redis.NewClient(&redis.Options{
		Addr: proxy.Addr(), DialerRetries: 1, DialerRetryTimeout: time.Millisecond, MaxRetries: -1,
		ContextTimeoutEnabled: true, DisableIdentity: true,
	})
	defer rdb.Close()
	l := ratelimit.NewLimiter(rdb, nil)
	res := ratelimit.PerHour("eofaults", limit)
	type tally struct{ granted, unknown int }
	perKey := make([]tally, keys)
	var mu sync.Mutex
	var others []error
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 3))
			for range decisions / goroutines {
				k := rnd.IntN(keys)
				r, err := l.Allow(context.Background(), res, strconv.Itoa(k))
				mu.Lock()
				switch {
				case err == nil && r.Override == ratelimit.OverrideNone:
					if r.Granted == 1 {
						perKey[k].granted++
					}
				case errors.Is(err, ratelimit.ErrOutcomeUnknown):
					perKey[k].unknown++
				default:
					others = append(others, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, ratelimit.EngineScripts, l.Engine())
	direct := ratelimit.NewLimiter(s.Client(t), nil)
	var twice, lost, unknown int
	for k := range keys {
		r, err := direct.RequestWith(context.Background(), res, strconv.Itoa(k), ratelimit.RequestArgs{Max: limit, Min: 1, DryRun: true})
		require.NoError(t, err)
		used := int(limit - r.Granted)
		tk := perKey[k]
		unknown += tk.unknown
		twice += max(0, used-tk.granted-tk.unknown)
		lost += max(0, tk.granted-used)
	}
	_, drops, resets := proxy.stats()
	t.Logf("%d decisions: %d outcome unknown, %d other errors; proxy lost %d answers, reset %d connections", decisions, unknown, len(others), drops, resets)
	require.Empty(t, others)
	require.Zero(t, twice, "hits counted twice")
	require.Zero(t, lost, "grants the server did not record")
	require.LessOrEqual(t, unknown*1000, decisions, "ErrOutcomeUnknown <= 0.1%%")
	require.Positive(t, drops)
}
