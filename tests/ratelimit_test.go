//go:build integration

package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/module/ratelimit"
	"github.com/charon-redis/charon/tests/harness"
)

// Integration tests of the Go client module/ratelimit against real servers. Helpers
// here are prefixed rlc (rate limit client) to stay apart from other files' names.

// rlcClock is a fake ratelimit.Clock: it moves only when told to or when the waiting
// loop sleeps. A Limiter given it sends AT = Now() with every request, so the server
// lives on the same fake time.
type rlcClock struct {
	mu      sync.Mutex
	now     time.Time
	sleeps  []time.Duration
	onSleep func() // runs after each sleep: lets a test act while a waiter sleeps
}

// rlcNewClock starts an hour ahead of the wall clock, so that the absolute expiry the
// server sets from AT is never already in the past while the test runs.
func rlcNewClock() *rlcClock {
	return &rlcClock{now: time.Now().Add(time.Hour).Truncate(time.Millisecond)}
}

func (c *rlcClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *rlcClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	f := c.onSleep
	c.mu.Unlock()
	if f != nil {
		f()
	}
	return nil
}

func (c *rlcClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *rlcClock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// rlcRawArgs writes the CHARON.RATE command for res by hand from the spec's grammar
// (independently of the client's own argument builder): TIER and CAP clauses, and
// GLOBAL's caps as a string of milliseconds.
func rlcRawArgs(key, gkey string, res *ratelimit.Resource, min, max, at int64, dry bool) []any {
	args := []any{"CHARON.RATE", key, "MAX", max, "MIN", min, "AT", at}
	if res.Hard > 0 {
		args = append(args, "HARD", res.Hard)
	}
	for _, c := range res.Caps {
		args = append(args, "CAP", c.Limit, c.Per.Milliseconds())
	}
	switch {
	case len(res.GlobalCaps) > 0:
		var caps []string
		if res.Global > 0 {
			caps = append(caps, fmt.Sprintf("%d/1000ms", res.Global))
		}
		for _, c := range res.GlobalCaps {
			caps = append(caps, fmt.Sprintf("%d/%dms", c.Limit, c.Per.Milliseconds()))
		}
		args = append(args, "GLOBAL", gkey, strings.Join(caps, ","))
	case res.Global > 0:
		args = append(args, "GLOBAL", gkey, res.Global)
	}
	if dry {
		args = append(args, "DRYRUN")
	}
	for _, t := range res.Tiers {
		args = append(args, "TIER", t.Limit, t.Window.Milliseconds(), t.Active.Milliseconds(), t.Cooldown.Milliseconds())
		if t.Skippable {
			args = append(args, "SKIPPABLE")
		}
	}
	return args
}

// rlcReplyFields reads a raw CHARON.RATE reply: a RESP3 map, or the RESP2 array of
// integers in the spec's order.
func rlcReplyFields(t testing.TB, v any) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if arr, ok := v.([]any); ok {
		require.Len(t, arr, rate.NumFields, "RESP2 reply %v", v)
		for i, e := range arr {
			n, ok := e.(int64)
			require.True(t, ok, "element %d of %v", i, v)
			out[rate.FieldNames[i]] = n
		}
		return out
	}
	m, err := harness.ReplyMap(v)
	require.NoError(t, err)
	require.Len(t, m, rate.NumFields, "RESP3 reply %v", v)
	for k, e := range m {
		n, ok := e.(int64)
		require.True(t, ok, "field %s of %v", k, v)
		out[k] = n
	}
	return out
}

// rlcResultFields turns a client Result back into the reply's fields.
func rlcResultFields(r *ratelimit.Result) map[string]int64 {
	b := func(x bool) int64 {
		if x {
			return 1
		}
		return 0
	}
	retry := r.RetryAfter.Milliseconds()
	if r.RetryAfter == ratelimit.Never {
		retry = -1
	}
	return map[string]int64{
		"granted": r.Granted, "tier": int64(r.Tier), "tier_limit": r.TierLimit, "tier_hits": r.TierHits,
		"domain_hits": r.DomainHits, "global_hits": r.GlobalHits, "burst": b(r.Burst),
		"hard_limited": b(r.HardLimited), "global_limited": b(r.GlobalLimited),
		"retry_after": retry, "reset_after": r.ResetAfter.Milliseconds(),
	}
}

// rlcUsed asks (DRYRUN, MIN 0) how many of capacity hits of a one-tier resource are
// used at time at: the dry run grants what is left.
func rlcUsed(t testing.TB, rdb redis.UniversalClient, key string, res *ratelimit.Resource, capacity int64, at int64) int64 {
	t.Helper()
	v, err := rdb.Do(context.Background(), rlcRawArgs(key, "", res, 0, capacity, at, true)...).Result()
	require.NoError(t, err)
	return capacity - rlcReplyFields(t, v)["granted"]
}

// rlcNoLeak runs f and then polls until the goroutine count is back to what it was
// before (go-redis closes pools and the HTTP stack closes connections asynchronously).
func rlcNoLeak(t *testing.T, f func()) {
	t.Helper()
	base := runtime.NumGoroutine()
	f()
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		n := runtime.NumGoroutine()
		if n <= base {
			return true, ""
		}
		buf := make([]byte, 1<<16)
		return false, fmt.Sprintf("%d goroutines, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	})
}

var (
	rlcPenalty = ratelimit.Resource{Tiers: []ratelimit.Tier{
		{Limit: 5, Window: time.Second, Active: time.Second},
		{Limit: 50, Window: 5 * time.Second, Active: 5 * time.Second, Cooldown: 15 * time.Second},
	}, Hard: 8}
	rlcPunish = ratelimit.Resource{Tiers: []ratelimit.Tier{
		{Limit: 5, Window: time.Second, Active: time.Second},
		{Limit: 1, Window: 15 * time.Second, Active: 15 * time.Second},
	}}
	rlcSkippy = ratelimit.Resource{Tiers: []ratelimit.Tier{
		{Limit: 3, Window: time.Second, Active: time.Second},
		{Limit: 4, Window: 2 * time.Second, Active: 2 * time.Second, Cooldown: 3 * time.Second, Skippable: true},
		{Limit: 20, Window: 10 * time.Second, Active: 4 * time.Second, Cooldown: 6 * time.Second},
	}, Hard: 12, Global: 9}
	// Caps over windows the test's 150 steps (about 26 s of fake time) fill: per
	// domain 12 per 3 s (in buckets of 3 ms) and 30 per 20 s (20 ms),
	// resource-wide 30 per 4 s beside GLOBAL's 9 per second.
	rlcCapped = ratelimit.Resource{Tiers: []ratelimit.Tier{
		{Limit: 5, Window: time.Second, Active: time.Second},
		{Limit: 50, Window: 5 * time.Second, Active: 5 * time.Second, Cooldown: 15 * time.Second},
	}, Hard: 8, Caps: []ratelimit.Cap{{Limit: 12, Per: 3 * time.Second}, {Limit: 30, Per: 20 * time.Second}},
		Global: 9, GlobalCaps: []ratelimit.Cap{{Limit: 30, Per: 4 * time.Second}}}
	// One cap of each kind, so that the client can name the one that rejected.
	rlcOneCap = ratelimit.Resource{Tiers: []ratelimit.Tier{{Limit: 6, Window: time.Second, Active: time.Second}},
		Caps: []ratelimit.Cap{{Limit: 15, Per: 5 * time.Second}}, GlobalCaps: []ratelimit.Cap{{Limit: 45, Per: 6 * time.Second}}}
)

// rlcHasGlobal reports whether res has a global key: the KeyNames rule's global flag.
func rlcHasGlobal(res *ratelimit.Resource) bool { return res.Global > 0 || len(res.GlobalCaps) > 0 }

func rlcNamed(r ratelimit.Resource, name string) *ratelimit.Resource {
	r.Name = name
	return &r
}

// rlcCompareWithServer drives the same random request sequence through the client
// (resource <name>-c) and as raw commands (resource <name>-r), at the same fake times,
// and requires every field of every answer to be equal. It returns how often each
// interesting outcome occurred, so callers can require coverage.
func rlcCompareWithServer(t *testing.T, rdb redis.UniversalClient, tmpl ratelimit.Resource, name string, seed uint64) map[string]int {
	t.Helper()
	ctx := context.Background()
	clk := rlcNewClock()
	l := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: clk})
	resC, resR := rlcNamed(tmpl, name+"-c"), rlcNamed(tmpl, name+"-r")
	rng := rand.New(rand.NewPCG(seed, 99))
	seen := map[string]int{}
	domains := []string{"alice", "bob", "c{a}rol%"}
	for step := 0; step < 150; step++ {
		clk.Advance(time.Duration(rng.IntN(350)) * time.Millisecond)
		dom := domains[rng.IntN(len(domains))]
		max := int64(1 + rng.IntN(6))
		min := int64(rng.IntN(int(max) + 1))
		if rng.IntN(20) == 0 {
			min, max = 1000, 1000 // more than any tier can ever give
		}
		dry := rng.IntN(10) == 0
		r, err := l.RequestWith(ctx, resC, dom, ratelimit.RequestArgs{Min: min, Max: max, DryRun: dry})
		require.NoError(t, err, "step %d", step)
		key, gkey := ratelimit.KeyNames("rl", resR.Name, dom, rlcHasGlobal(resR))
		v, err := rdb.Do(ctx, rlcRawArgs(key, gkey, resR, min, max, clk.Now().UnixMilli(), dry)...).Result()
		require.NoError(t, err, "step %d raw", step)
		want := rlcReplyFields(t, v)
		require.Equal(t, want, rlcResultFields(r), "step %d: %s min %d max %d dry %v", step, dom, min, max, dry)
		require.Equal(t, ratelimit.OverrideNone, r.Override)
		require.Equal(t, 1, r.Attempts)
		need := min
		if need < 1 {
			need = 1
		}
		if r.Granted == 0 && rlcCapRejection(t, rdb, key, gkey, resR, r, need, max, clk.Now().UnixMilli()) {
			seen["rejecting cap checked"]++
		}
		switch {
		case r.RetryAfter == ratelimit.Never:
			seen["never"]++
		case r.Granted == 0:
			seen["rejected"]++
		default:
			seen["granted"]++
		}
		for k, ok := range map[string]bool{"burst": r.Burst, "hard": r.HardLimited, "global": r.GlobalLimited, "tier2+": r.Tier >= 2,
			"by cap": r.RejectedBy == ratelimit.LimitCap, "by global cap": r.RejectedBy == ratelimit.LimitGlobalCap,
			"named long cap": r.RejectedCap.Per > time.Second} {
			if ok {
				seen[k]++
			}
		}
	}
	// The client's keys follow the documented rule: the ones the raw commands used,
	// with the client's resource name.
	key, gkey := ratelimit.KeyNames("rl", resC.Name, "alice", rlcHasGlobal(resC))
	n, err := rdb.Exists(ctx, key).Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "key %s", key)
	if gkey != "" {
		require.True(t, strings.HasPrefix(key, "rl:{"+resC.Name+"}:"), key)
		n, err := rdb.Exists(ctx, gkey).Result()
		require.NoError(t, err)
		require.Equal(t, int64(1), n, "global key %s", gkey)
	} else {
		require.Equal(t, "rl:"+resC.Name+":{alice}", key)
	}
	return seen
}

// rlcCapRejection checks the cap the client says rejected r (RejectedBy, RejectedCap)
// against the server: a DRYRUN for need hits at time at under that cap alone (or,
// when the client could not tell which of a kind's caps it was, under all of them),
// with a tier that has room, must be rejected too. When Min < Max and caps of both
// kinds cut the request, the documented guess is checked as that: some cap of either
// kind rejects. It reports whether r named a cap.
func rlcCapRejection(t *testing.T, rdb redis.UniversalClient, key, gkey string, res *ratelimit.Resource, r *ratelimit.Result, need, maxHits, at int64) bool {
	t.Helper()
	longOf := func(caps []ratelimit.Cap) (n int) {
		for _, c := range caps {
			if c.Per != time.Second {
				n++
			}
		}
		return n
	}
	guess := need < maxHits && r.HardLimited && r.GlobalLimited && longOf(res.Caps) > 0 && longOf(res.GlobalCaps) > 0 &&
		(r.RejectedBy == ratelimit.LimitCap || r.RejectedBy == ratelimit.LimitGlobalCap)
	long := func(caps []ratelimit.Cap) []ratelimit.Cap {
		if r.RejectedCap.Per != 0 {
			return []ratelimit.Cap{r.RejectedCap}
		}
		var out []ratelimit.Cap
		for _, c := range caps {
			if c.Per != time.Second {
				out = append(out, c)
			}
		}
		return out
	}
	args := []any{"CHARON.RATE", key, "MAX", need, "AT", at, "DRYRUN", "TIER", rate.MaxCount, 1000, 1000, 0}
	if guess {
		require.Equal(t, ratelimit.Cap{}, r.RejectedCap, "a guess names no cap")
		for _, c := range long(res.Caps) {
			args = append(args, "CAP", c.Limit, c.Per.Milliseconds())
		}
	}
	switch r.RejectedBy {
	case ratelimit.LimitHard, ratelimit.LimitCap:
		if guess {
			var caps []string
			for _, c := range long(res.GlobalCaps) {
				caps = append(caps, fmt.Sprintf("%d/%dms", c.Limit, c.Per.Milliseconds()))
			}
			args = append(args, "GLOBAL", gkey, strings.Join(caps, ","))
			break
		}
		for _, c := range long(res.Caps) {
			args = append(args, "CAP", c.Limit, c.Per.Milliseconds())
		}
	case ratelimit.LimitGlobal, ratelimit.LimitGlobalCap:
		var caps []string
		for _, c := range long(res.GlobalCaps) {
			caps = append(caps, fmt.Sprintf("%d/%dms", c.Limit, c.Per.Milliseconds()))
		}
		args = append(args, "GLOBAL", gkey, strings.Join(caps, ","))
	default:
		return false
	}
	if r.RejectedBy == ratelimit.LimitHard || r.RejectedBy == ratelimit.LimitGlobal {
		require.Equal(t, time.Second, r.RejectedCap.Per, "%v names its cap", r.RejectedBy)
	}
	v, err := rdb.Do(context.Background(), args...).Result()
	require.NoError(t, err, "%q", args)
	require.Zero(t, rlcReplyFields(t, v)["granted"], "%q: the cap the client named (%v %+v) rejects alone; %+v", args, r.RejectedBy, r.RejectedCap, *r)
	return true
}

func rlcCheckCoverage(t *testing.T, seen map[string]int, want ...string) {
	t.Helper()
	for _, k := range want {
		require.Positive(t, seen[k], "the sequence never produced %q: %v", k, seen)
	}
}

// The client's Result equals the server's reply, field by field, under RESP2 and
// RESP3, for tier climbing, HARD, GLOBAL, rejections and never-grantable requests.
func TestRatelimitClientMatchesServer(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rlcNoLeak(t, func() {
				rdb := redis.NewClient(rlcClientOptions(s, proto))
				defer rdb.Close()
				seen := rlcCompareWithServer(t, rdb, rlcPenalty, fmt.Sprintf("penalty%d", proto), 1)
				rlcCheckCoverage(t, seen, "granted", "rejected", "never", "burst", "hard", "tier2+")
				seen = rlcCompareWithServer(t, rdb, rlcSkippy, fmt.Sprintf("skippy%d", proto), 2)
				rlcCheckCoverage(t, seen, "granted", "rejected", "never", "burst", "global")
				seen = rlcCompareWithServer(t, rdb, rlcCapped, fmt.Sprintf("capped%d", proto), 3)
				rlcCheckCoverage(t, seen, "granted", "rejected", "never", "burst", "hard", "global", "by cap", "by global cap")
				seen = rlcCompareWithServer(t, rdb, rlcOneCap, fmt.Sprintf("onecap%d", proto), 4)
				rlcCheckCoverage(t, seen, "granted", "rejected", "never", "hard", "global", "by cap", "by global cap", "named long cap", "rejecting cap checked")
			})
		})
	}
}

// rlcClientOptions are the harness's client defaults, for clients a test creates and
// closes itself (to check for leaked goroutines).
func rlcClientOptions(s *harness.Server, proto int) *redis.Options {
	return &redis.Options{
		Addr:                     s.Addr(),
		Protocol:                 proto,
		DisableIdentity:          true, // Redis 7.0 has no CLIENT SETINFO
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		ReadTimeout:              10 * time.Second,
		WriteTimeout:             10 * time.Second,
	}
}

// Waiting on a real server, with time driven by the fake clock (AT): the client sleeps
// for the server's RetryAfter and is then granted, never sleeps past MaxWait, and
// gives up at once when the wait cannot fit.
func TestRatelimitClientWaiting(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	rdb := s.Client(t)
	ctx := context.Background()

	t.Run("waits for RetryAfter, then granted", func(t *testing.T) {
		clk := rlcNewClock()
		l := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: clk})
		res := ratelimit.PerSecond("wait-simple", 5)
		r, err := l.Request(ctx, res, "u", 5, 5)
		require.NoError(t, err)
		require.Equal(t, int64(5), r.Granted)
		start := clk.Now()

		// Without MaxWait: rejected at once, with the server's RetryAfter.
		r, err = l.Allow(ctx, res, "u")
		require.NoError(t, err)
		require.Zero(t, r.Granted)
		first := r.RetryAfter
		require.Positive(t, first)
		require.LessOrEqual(t, first, 1001*time.Millisecond)

		r, err = l.RequestWith(ctx, res, "u", ratelimit.RequestArgs{Max: 1, MaxWait: 2 * time.Second})
		require.NoError(t, err)
		require.Equal(t, int64(1), r.Granted)
		require.GreaterOrEqual(t, r.Attempts, 2)
		slept := clk.Slept()
		require.Len(t, slept, r.Attempts-1)
		require.GreaterOrEqual(t, slept[0], first, "the first sleep honours RetryAfter")
		require.LessOrEqual(t, slept[0], first*5/4+time.Millisecond, "jitter is at most +25%")
		require.LessOrEqual(t, clk.Now().Sub(start), 2*time.Second)
		require.Equal(t, clk.Now().Sub(start), r.Waited)
		// The server agrees: one more hit was recorded at the fake time.
		key, _ := l.Keys(res, "u")
		require.Equal(t, int64(1), rlcUsed(t, rdb, key, res, 5, clk.Now().UnixMilli()))
	})

	t.Run("gives up at once when RetryAfter exceeds MaxWait", func(t *testing.T) {
		clk := rlcNewClock()
		l := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: clk})
		res := rlcNamed(rlcPunish, "wait-prison")
		r, err := l.Request(ctx, res, "u", 6, 6) // 5 from tier 1 + 1 from the prison: enters it
		require.NoError(t, err)
		require.Equal(t, int64(6), r.Granted)
		require.Equal(t, 2, r.Tier)
		r, err = l.RequestWith(ctx, res, "u", ratelimit.RequestArgs{Max: 1, MaxWait: time.Second})
		require.NoError(t, err)
		require.Zero(t, r.Granted)
		require.Greater(t, r.RetryAfter, time.Second, "prison: about 15s")
		require.Equal(t, 1, r.Attempts)
		require.Zero(t, r.Waited)
		require.Empty(t, clk.Slept(), "no sleep that would end past the deadline")
	})

	t.Run("never grantable is not waited for", func(t *testing.T) {
		clk := rlcNewClock()
		l := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: clk})
		res := ratelimit.PerSecond("wait-never", 5)
		r, err := l.RequestWith(ctx, res, "u", ratelimit.RequestArgs{Min: 6, Max: 6, MaxWait: time.Hour})
		require.NoError(t, err)
		require.Equal(t, ratelimit.Never, r.RetryAfter)
		require.Equal(t, 1, r.Attempts)
		require.Empty(t, clk.Slept())
	})

	t.Run("contention: a waiter that keeps losing stops at MaxWait", func(t *testing.T) {
		clk := rlcNewClock()
		l := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: clk, MinBackoff: 50 * time.Millisecond})
		rival := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: clk})
		res := ratelimit.Simple("wait-contention", 3, 2*time.Second)
		r, err := l.Request(ctx, res, "u", 3, 3)
		require.NoError(t, err)
		require.Equal(t, int64(3), r.Granted)
		// Whenever the waiter sleeps, a rival takes whatever was freed meanwhile.
		stolen := int64(0)
		clk.onSleep = func() {
			r, err := rival.Request(ctx, res, "u", 1, 3)
			require.NoError(t, err)
			stolen += r.Granted
		}
		start := clk.Now()
		r, err = l.RequestWith(ctx, res, "u", ratelimit.RequestArgs{Max: 1, MaxWait: 7 * time.Second})
		require.NoError(t, err)
		require.Zero(t, r.Granted, "the rival always wins")
		require.Positive(t, stolen)
		require.GreaterOrEqual(t, r.Attempts, 3)
		require.LessOrEqual(t, clk.Now().Sub(start), 7*time.Second, "never past MaxWait")
		require.Equal(t, clk.Now().Sub(start), r.Waited)
		slept := clk.Slept()
		require.Len(t, slept, r.Attempts-1)
		// Each sleep respected the RetryAfter the server gave before it (>= 1ms apart
		// from the rival's hits), and none was shorter than the backoff's -25% floor.
		for i, d := range slept {
			require.GreaterOrEqual(t, d, 37*time.Millisecond, "sleep %d", i)
		}
	})

	t.Run("wall clock: a real wait is granted", func(t *testing.T) {
		rlcNoLeak(t, func() {
			l := ratelimit.NewLimiter(rdb, nil)
			res := ratelimit.Simple("wait-real", 1, 300*time.Millisecond)
			r, err := l.Allow(ctx, res, "u")
			require.NoError(t, err)
			require.Equal(t, int64(1), r.Granted)
			r, err = l.RequestWith(ctx, res, "u", ratelimit.RequestArgs{Max: 1, MaxWait: 10 * time.Second})
			require.NoError(t, err)
			require.Equal(t, int64(1), r.Granted)
			require.GreaterOrEqual(t, r.Attempts, 2)
			require.Positive(t, r.Waited)
		})
	})

	t.Run("context deadline bounds the wait", func(t *testing.T) {
		l := ratelimit.NewLimiter(rdb, nil)
		res := ratelimit.Simple("wait-ctx", 1, time.Hour)
		_, err := l.Allow(ctx, res, "u")
		require.NoError(t, err)
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		r, err := l.RequestWith(cctx, res, "u", ratelimit.RequestArgs{Max: 1, MaxWait: 2 * time.Hour})
		require.NoError(t, err)
		require.Zero(t, r.Granted)
		require.Equal(t, 1, r.Attempts, "an hour's RetryAfter does not fit in the context")
	})
}

// A CHARON.RATE whose reply does not arrive is reported as ErrOutcomeUnknown and sent
// exactly once, even by a go-redis client configured to retry (MaxRetries 3). The
// server is frozen with DEBUG SLEEP so that commands reach its socket but are answered
// only after the client's read timeout; when it wakes up it runs whatever arrived. A
// plain rdb.Do of the same command, the control, is retried by go-redis and counted
// more than once, which proves the scenario provokes retries.
func TestRatelimitClientOutcomeUnknownNotResent(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	ctl := s.Client(t)
	rdb := s.Client(t, func(o *redis.Options) {
		o.ReadTimeout = 300 * time.Millisecond
		o.MaxRetries = 3
		o.MinRetryBackoff = time.Millisecond
		o.MaxRetryBackoff = 2 * time.Millisecond
		o.PoolSize = 8
	})
	// Idle, initialized connections let go-redis's retries reach the server's socket
	// (a fresh connection would stall in its HELLO handshake instead). Six concurrent
	// BLPOPs hold six connections at once and leave them initialized in the pool.
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = rdb.Do(ctx, "BLPOP", "rlc-nothing", "0.1").Err()
		}()
	}
	wg.Wait()
	require.GreaterOrEqual(t, rdb.PoolStats().IdleConns, uint32(4), "precondition: warm connections")

	var failOpens int
	l := ratelimit.NewLimiter(rdb, &ratelimit.Options{
		FailOpen:   true, // must not turn an unknown outcome into a grant
		OnFailOpen: func(context.Context, string, string, error) { failOpens++ },
	})
	res := ratelimit.PerHour("unknown", 10)
	at := rlcNewClock().Now()
	keyTx, _ := l.Keys(res, "tx")
	keyDo, _ := l.Keys(res, "do")
	// A first request lets the limiter check the server while it still answers.
	_, err := l.Allow(ctx, res, "warm-up")
	require.NoError(t, err)

	blocker := s.Client(t, func(o *redis.Options) { o.ReadTimeout = 30 * time.Second; o.MaxRetries = -1 })
	slept := make(chan error, 1)
	go func() { slept <- blocker.Do(ctx, "DEBUG", "SLEEP", "5").Err() }()
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		return rlcFrozen(s.Addr()), "server not frozen by DEBUG SLEEP yet"
	})

	r, err := l.RequestWith(ctx, res, "tx", ratelimit.RequestArgs{Max: 1, At: at})
	require.Nil(t, r)
	require.ErrorIs(t, err, ratelimit.ErrOutcomeUnknown, "precondition: the server must still be frozen")
	var ne net.Error
	require.ErrorAs(t, err, &ne, "the cause stays visible")
	require.True(t, ne.Timeout())
	require.Zero(t, failOpens)

	ctrl := rdb.Do(ctx, rlcRawArgs(keyDo, "", res, 1, 1, at.UnixMilli(), false)...).Err()
	require.Error(t, ctrl, "precondition: the control must time out too")

	require.NoError(t, <-slept, "DEBUG SLEEP")
	var usedTx, usedDo int64
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		usedTx = rlcUsed(t, ctl, keyTx, res, 10, at.UnixMilli())
		usedDo = rlcUsed(t, ctl, keyDo, res, 10, at.UnixMilli())
		return usedTx >= 1 && usedDo >= 2, fmt.Sprintf("client counted %d, control counted %d", usedTx, usedDo)
	})
	require.Equal(t, int64(1), usedTx, "the client's request must be counted exactly once")
	t.Logf("after one timed-out request each: client counted %d hit(s), plain rdb.Do with MaxRetries 3 counted %d", usedTx, usedDo)
}

// rlcFrozen reports whether a PING on a fresh connection gets no answer within 100ms.
func rlcFrozen(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	_, err = conn.Read(make([]byte, 16))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// The kill switch turns rejections into grants that say so, and the server records
// nothing for them.
func TestRatelimitClientKillSwitch(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	rdb := s.Client(t)
	ctx := context.Background()
	clk := rlcNewClock()
	l := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: clk})
	res := ratelimit.PerHour("kill", 2)
	key, _ := l.Keys(res, "u")

	r, err := l.Request(ctx, res, "u", 2, 2)
	require.NoError(t, err)
	require.Equal(t, int64(2), r.Granted)
	r, err = l.Request(ctx, res, "u", 1, 3)
	require.NoError(t, err)
	require.Zero(t, r.Granted)
	require.Equal(t, ratelimit.OverrideNone, r.Override)
	rejected := *r
	digest := func() string {
		v, err := rdb.Do(ctx, "DEBUG", "DIGEST-VALUE", key).Result()
		require.NoError(t, err)
		return fmt.Sprint(v)
	}
	before := digest()

	l.SetKillSwitch(true)
	r, err = l.RequestWith(ctx, res, "u", ratelimit.RequestArgs{Min: 1, Max: 3, MaxWait: time.Minute})
	require.NoError(t, err)
	require.Equal(t, int64(1), r.Granted, "the kill switch grants Min (at least 1)")
	require.Equal(t, ratelimit.OverrideKillSwitch, r.Override)
	require.Equal(t, rejected.RetryAfter, r.RetryAfter, "the server's answer is kept")
	require.Equal(t, rejected.TierHits, r.TierHits)
	require.Equal(t, 1, r.Attempts, "no waiting while the kill switch is on")
	require.Equal(t, before, digest(), "nothing recorded")
	require.Equal(t, int64(2), rlcUsed(t, rdb, key, res, 2, clk.Now().UnixMilli()))

	// Grants are unaffected by the switch.
	r, err = l.Allow(ctx, res, "other")
	require.NoError(t, err)
	require.Equal(t, ratelimit.OverrideNone, r.Override)

	l.SetKillSwitch(false)
	r, err = l.Allow(ctx, res, "u")
	require.NoError(t, err)
	require.Zero(t, r.Granted)
	require.Equal(t, ratelimit.OverrideNone, r.Override)
}

// Fail-open grants only when Redis is unreachable, reports it, and the client recovers
// when the server comes back.
func TestRatelimitClientFailOpen(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	res := ratelimit.PerHour("failopen", 5)
	rlcNoLeak(t, func() {
		o := rlcClientOptions(s, 3)
		o.MaxRetries = -1
		o.DialerRetries = 1
		o.DialerRetryTimeout = time.Millisecond
		rdb := redis.NewClient(o)
		defer rdb.Close()
		var mu sync.Mutex
		var reported []error
		open := ratelimit.NewLimiter(rdb, &ratelimit.Options{FailOpen: true, OnFailOpen: func(_ context.Context, res, dom string, err error) {
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, "failopen", res)
			require.Equal(t, "u", dom)
			reported = append(reported, err)
		}})
		closed := ratelimit.NewLimiter(rdb, nil)

		r, err := open.Allow(ctx, res, "u")
		require.NoError(t, err)
		require.Equal(t, ratelimit.OverrideNone, r.Override, "server up: a real answer")

		s.Kill(t)
		r, err = open.Request(ctx, res, "u", 2, 4)
		require.NoError(t, err)
		require.Equal(t, int64(2), r.Granted, "fail-open grants Min")
		require.Equal(t, ratelimit.OverrideFailOpen, r.Override)
		require.Len(t, reported, 1)
		require.Error(t, reported[0])
		require.NotErrorIs(t, reported[0], ratelimit.ErrOutcomeUnknown)

		_, err = closed.Allow(ctx, res, "u")
		require.Error(t, err, "without FailOpen an unreachable Redis is an error")
		require.NotErrorIs(t, err, ratelimit.ErrOutcomeUnknown, "nothing was sent: %v", err)

		s.Start(t)
		harness.Eventually(t, 20*time.Second, func() (bool, string) {
			r, err := closed.Allow(ctx, res, "u")
			if err != nil {
				return false, err.Error()
			}
			return r.Override == ratelimit.OverrideNone && r.Granted == 1, fmt.Sprintf("%+v", r)
		})
	})
}

// A stopped server with go-redis's default dial and retry settings: a FailOpen limiter
// still decides within its own Timeout (DefaultTimeout), not after go-redis's dial
// retries (about 2s per request). The figures are logged, never asserted.
func TestRatelimitClientFailOpenDeadline(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	res := ratelimit.PerHour("deadline", 5)
	rlcNoLeak(t, func() {
		o := rlcClientOptions(s, 3) // go-redis defaults for dialing and retries
		o.ContextTimeoutEnabled = true
		rdb := redis.NewClient(o)
		defer rdb.Close()
		obs := &rlcEvents{}
		l := ratelimit.NewLimiter(rdb, &ratelimit.Options{FailOpen: true, Observer: obs})
		// A real answer first (on this shared machine a cold connection can take longer
		// than the Timeout: that request fails open, the next one finds the connection).
		harness.Eventually(t, 10*time.Second, func() (bool, string) {
			r, err := l.Allow(ctx, res, "u")
			if err != nil {
				return false, err.Error()
			}
			return r.Override == ratelimit.OverrideNone, fmt.Sprintf("%+v", r)
		})

		s.Kill(t)
		var took []time.Duration
		harness.Eventually(t, 10*time.Second, func() (bool, string) {
			began := time.Now()
			r, err := l.Allow(ctx, res, "u")
			took = append(took, time.Since(began))
			if err != nil {
				return false, err.Error()
			}
			return r.Override == ratelimit.OverrideFailOpen && len(took) >= 20, fmt.Sprintf("%+v after %d calls", r, len(took))
		})
		slices.Sort(took)
		t.Logf("FailOpen with the default Timeout (%v), server killed: %d calls, min %v, median %v, max %v",
			ratelimit.DefaultTimeout, len(took), took[0], took[len(took)/2], took[len(took)-1])
		ev := obs.take()
		last := ev[len(ev)-1]
		require.Equal(t, ratelimit.OutcomeFailOpen, last.Outcome)
		require.Equal(t, "deadline", last.Resource)
		require.Error(t, last.Err)

		// For comparison, the same call with no Timeout waits for go-redis to give up.
		slow := ratelimit.NewLimiter(rdb, &ratelimit.Options{FailOpen: true, Timeout: -1})
		began := time.Now()
		r, err := slow.Allow(ctx, res, "u")
		require.NoError(t, err)
		require.Equal(t, ratelimit.OverrideFailOpen, r.Override)
		t.Logf("the same without a Timeout: %v", time.Since(began))

		// With the go-redis options docs/go-client.md recommends for a limiter's client.
		q := rlcClientOptions(s, 3)
		q.DialerRetries, q.DialerRetryTimeout, q.MaxRetries, q.ContextTimeoutEnabled = 1, time.Millisecond, -1, true
		quiet := redis.NewClient(q)
		defer quiet.Close()
		fast := ratelimit.NewLimiter(quiet, &ratelimit.Options{FailOpen: true})
		took = took[:0]
		for range 20 {
			began := time.Now()
			r, err := fast.Allow(ctx, res, "u")
			took = append(took, time.Since(began))
			require.NoError(t, err)
			require.Equal(t, ratelimit.OverrideFailOpen, r.Override)
		}
		slices.Sort(took)
		t.Logf("with DialerRetries 1, DialerRetryTimeout 1ms, MaxRetries -1: min %v, median %v, max %v", took[0], took[len(took)/2], took[len(took)-1])
	})
}

// rlcEvents is a ratelimit.Observer that keeps every Event.
type rlcEvents struct {
	mu     sync.Mutex
	events []ratelimit.Event
}

func (o *rlcEvents) Observe(_ context.Context, e ratelimit.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, e)
}

func (o *rlcEvents) take() []ratelimit.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.events
	o.events = nil
	return e
}

// The net/http middleware over a real Redis: RateLimit and RateLimit-Policy on every
// answer, 429 with Retry-After once the limit is reached, per domain.
func TestRatelimitClientMiddleware(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	rlcNoLeak(t, func() {
		rdb := redis.NewClient(rlcClientOptions(s, 3))
		defer rdb.Close()
		l := ratelimit.NewLimiter(rdb, nil)
		res := ratelimit.PerHour("http", 2)
		res.Hard = 10
		mw, err := l.Middleware(ratelimit.MiddlewareOptions{
			Resource: res,
			Domain:   func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil },
		})
		require.NoError(t, err)
		srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			res := ratelimit.ResultFromContext(r.Context())
			fmt.Fprintf(w, "granted %d", res.Granted)
		})))
		defer srv.Close()
		client := srv.Client()
		defer client.CloseIdleConnections()

		get := func(user string) *http.Response {
			req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
			require.NoError(t, err)
			req.Header.Set("X-User", user)
			resp, err := client.Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			return resp
		}
		const policy = `"t1";q=2;w=3600, "hard";q=10;w=1`
		for i, want := range []string{`"t1";r=1, "hard";r=9`, `"t1";r=0, "hard";r=8`} {
			resp := get("alice")
			require.Equal(t, http.StatusOK, resp.StatusCode, "request %d", i)
			require.Equal(t, policy, resp.Header.Get("RateLimit-Policy"))
			require.Equal(t, want, resp.Header.Get("RateLimit"), "request %d", i)
			require.Empty(t, resp.Header.Get("Retry-After"))
		}
		resp := get("alice")
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		require.Equal(t, policy, resp.Header.Get("RateLimit-Policy"))
		retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		require.NoError(t, err, "Retry-After %q", resp.Header.Get("Retry-After"))
		require.True(t, retry >= 3590 && retry <= 3601, "Retry-After %d: about an hour", retry)
		require.Equal(t, fmt.Sprintf(`"t1";r=0;t=%d, "hard";r=8`, retry), resp.Header.Get("RateLimit"))

		resp = get("bob")
		require.Equal(t, http.StatusOK, resp.StatusCode, "another domain is not limited")
		require.Equal(t, `"t1";r=1, "hard";r=9`, resp.Header.Get("RateLimit"))

		// The server holds what the headers said: alice used both hits.
		key, _ := l.Keys(res, "alice")
		require.Equal(t, int64(2), rlcUsed(t, rdb, key, res, 2, time.Now().UnixMilli()))

		// No X-User header: the client's mistake, 400, nothing asked of Redis.
		resp = get("")
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.Empty(t, resp.Header.Get("RateLimit"))

		// A Global cap that rejects before the tiers do: RateLimit leads with it. Its t
		// counts until the first hit is 1001ms old, so the requests run on a fake clock
		// 1ms apart (on the real one t is 2 when all four land in one millisecond, and
		// the fourth is granted when they are over a second apart).
		clk := rlcNewClock()
		shared := ratelimit.PerHour("http-global", 100)
		shared.Hard, shared.Global = 50, 3
		gmw, err := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: clk}).Middleware(ratelimit.MiddlewareOptions{Resource: shared,
			Domain: func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil }})
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		for _, user := range []string{"a", "b", "c", "d"} {
			clk.Advance(time.Millisecond)
			rec = httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set("X-User", user)
			gmw(http.NotFoundHandler()).ServeHTTP(rec, req)
		}
		require.Equal(t, http.StatusTooManyRequests, rec.Code, "the fourth domain meets the global cap")
		rl := rec.Header().Get("RateLimit")
		require.True(t, strings.HasPrefix(rl, `"global";r=0;t=1, "t1";r=100, "hard";r=50`), "RateLimit %q", rl)
		require.Equal(t, "1", rec.Header().Get("Retry-After"))
	})
}

// On a 3-primary cluster: the same field-by-field equality under both protocols, the
// key-naming rule (one slot with GLOBAL, spread without), waiting, and a slot caught
// mid-migration (TRYAGAIN: retried, then failed open or reported; never counted twice).
func TestRatelimitClientCluster(t *testing.T) {
	cl := harness.StartCluster(t, harness.Options{})
	ctx := context.Background()

	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("matches server RESP%d", proto), func(t *testing.T) {
			rlcNoLeak(t, func() {
				cc := redis.NewClusterClient(rlcClusterOptions(cl, proto))
				defer cc.Close()
				seen := rlcCompareWithServer(t, cc, rlcPenalty, fmt.Sprintf("cpenalty%d", proto), 3)
				rlcCheckCoverage(t, seen, "granted", "rejected", "burst", "hard")
				seen = rlcCompareWithServer(t, cc, rlcSkippy, fmt.Sprintf("cskippy%d", proto), 4)
				rlcCheckCoverage(t, seen, "granted", "rejected", "global")
			})
		})
	}

	t.Run("key slots", func(t *testing.T) {
		cc := cl.ClusterClient(t)
		slot := func(k string) int64 {
			n, err := cc.ClusterKeySlot(ctx, k).Result()
			require.NoError(t, err)
			return n
		}
		owners := map[string]bool{}
		slots := map[int64]bool{}
		for i := 0; i < 40; i++ {
			dom := "user-" + strconv.Itoa(i)
			k, g := ratelimit.KeyNames("rl", "global-api", dom, true)
			require.Equal(t, slot(g), slot(k), "%s and %s", k, g)
			k, g = ratelimit.KeyNames("rl", "spread-api", dom, false)
			require.Empty(t, g)
			s := slot(k)
			slots[s] = true
			owners[cl.NodeForSlot(t, int(s)).Addr()] = true
		}
		require.Greater(t, len(slots), 30, "domains of a resource without GLOBAL spread over slots")
		require.Len(t, owners, harness.ClusterPrimaries, "... and over every primary")
	})

	t.Run("waiting with the fake clock", func(t *testing.T) {
		cc := cl.ClusterClient(t)
		clk := rlcNewClock()
		l := ratelimit.NewLimiter(cc, &ratelimit.Options{Clock: clk})
		res := ratelimit.PerSecond("cwait", 3)
		res.Global = 100
		_, err := l.Request(ctx, res, "u", 3, 3)
		require.NoError(t, err)
		r, err := l.RequestWith(ctx, res, "u", ratelimit.RequestArgs{Max: 1, MaxWait: 3 * time.Second})
		require.NoError(t, err)
		require.Equal(t, int64(1), r.Granted)
		require.GreaterOrEqual(t, r.Attempts, 2)
		require.LessOrEqual(t, r.Waited, 3*time.Second)
		require.Positive(t, r.GlobalHits)
		require.Equal(t, r.DomainHits, r.GlobalHits, "one domain: the global log saw the same hits")
	})

	t.Run("slot mid-migration", func(t *testing.T) {
		testRatelimitMidMigration(t, cl)
	})
}

func rlcClusterOptions(cl *harness.Cluster, proto int) *redis.ClusterOptions {
	o := &redis.ClusterOptions{
		Protocol:                 proto,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		ReadTimeout:              10 * time.Second,
		WriteTimeout:             10 * time.Second,
	}
	for _, n := range cl.Nodes() {
		o.Addrs = append(o.Addrs, n.Addr())
	}
	return o
}

func testRatelimitMidMigration(t *testing.T, cl *harness.Cluster) {
	ctx := context.Background()
	cc := cl.ClusterClient(t)
	clk := rlcNewClock()
	var failOpens []error
	// A generous Timeout per attempt: go-redis's cluster client retries TRYAGAIN by
	// itself with backoff, and an attempt that ran out of time there is, rightly, an
	// outcome the client cannot know (its earlier internal tries may have run). The
	// 100 ms default is exceeded that way on a loaded machine; this test is about
	// what TRYAGAIN and ASK prove, not about timeouts.
	strict := ratelimit.NewLimiter(cc, &ratelimit.Options{Clock: clk, Timeout: 5 * time.Second})
	open := ratelimit.NewLimiter(cc, &ratelimit.Options{Clock: clk, Timeout: 5 * time.Second, FailOpen: true,
		OnFailOpen: func(_ context.Context, _, _ string, err error) { failOpens = append(failOpens, err) }})
	res := ratelimit.PerHour("migrating", 100)
	res.Global = 1000
	key, gkey := strict.Keys(res, "old")
	r, err := strict.Allow(ctx, res, "old")
	require.NoError(t, err)
	require.Equal(t, int64(1), r.Granted)

	slot := int(cc.ClusterKeySlot(ctx, key).Val())
	from := cl.NodeForSlot(t, slot)
	to := cl.OtherPrimary(t, from)
	m := cl.BeginSlotMigration(t, slot, from, to)
	m.MoveKeys(t, key) // the global key stays behind: the pair is split

	// The source refuses the command while the slot moves: TRYAGAIN when it sees both
	// keys (one present, one gone), ASK when it sees only the first (Redis 7.0's cluster
	// routing reads a module command's keys from firstkey/lastkey unless the command
	// uses the getkeys API), which go-redis cannot follow inside MULTI and reports as
	// EXECABORT. Valkey 9 checks a transaction's keys against a moving slot at EXEC
	// only: the command is QUEUED and EXEC itself is answered -ASK, the transaction
	// discarded; go-redis reports that ASK. All three prove nothing ran: the client
	// retries, then reports or fails open.
	notRun := func(err error) bool {
		return redis.HasErrorPrefix(err, "TRYAGAIN") || redis.HasErrorPrefix(err, "EXECABORT") ||
			redis.HasErrorPrefix(err, "ASK")
	}
	r, err = strict.Allow(ctx, res, "old")
	require.Nil(t, r)
	require.Error(t, err)
	require.True(t, notRun(err), "want TRYAGAIN, EXECABORT or ASK after the retries, got %v", err)
	require.NotErrorIs(t, err, ratelimit.ErrOutcomeUnknown)
	t.Logf("split pair mid-migration: %v", err)

	r, err = open.Allow(ctx, res, "old")
	require.NoError(t, err)
	require.Equal(t, ratelimit.OverrideFailOpen, r.Override)
	// Every transient retry was sent; a resend of a lost answer may add one.
	require.GreaterOrEqual(t, r.Attempts, 1+ratelimit.DefaultTransientRetries)
	require.Len(t, failOpens, 1)
	require.True(t, notRun(failOpens[0]), "%v", failOpens[0])

	// Both keys on the target, slot still migrating: the source answers ASK (to the
	// queued command on Redis, to EXEC on Valkey 9), which go-redis cannot follow
	// inside MULTI. Whatever the client answers, it must not be "unknown", and nothing
	// may be counted twice.
	m.MoveKeys(t, gkey)
	r, err = strict.Allow(ctx, res, "old")
	t.Logf("both keys on the importing node: result %+v, error %v", r, err)
	if err != nil {
		require.True(t, notRun(err), "%v", err)
		require.NotErrorIs(t, err, ratelimit.ErrOutcomeUnknown)
	}
	asked := int64(0)
	if err == nil && r.Granted > 0 {
		asked = 1
	}

	m.Finish(t)
	r, err = strict.Allow(ctx, res, "old")
	require.NoError(t, err)
	require.Equal(t, int64(1), r.Granted)
	// The dry run is sent without GLOBAL: it counts only the domain's own hits.
	noGlobal := *res
	noGlobal.Global = 0
	used := rlcUsed(t, cc, key, &noGlobal, 100, clk.Now().UnixMilli())
	require.Equal(t, 2+asked, used, "hits recorded for the domain: the grants, each once")
}

// BenchmarkRatelimitClient compares the client (MULTI/EXEC around CHARON.RATE, decode,
// validation) with a bare rdb.Do of the same command on one server.
func BenchmarkRatelimitClient(b *testing.B) {
	s := harness.Start(b, harness.Options{})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		rdb := s.Client(b, harness.Protocol(proto))
		res := ratelimit.PerSecond("bench", ratelimit.MaxCount)
		l := ratelimit.NewLimiter(rdb, nil)
		b.Run(fmt.Sprintf("RESP%d/limiter-Allow", proto), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r, err := l.Allow(ctx, res, "u")
				if err != nil || r.Granted != 1 {
					b.Fatal(r, err)
				}
			}
		})
		key, _ := l.Keys(res, "u")
		b.Run(fmt.Sprintf("RESP%d/raw-Do", proto), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if err := rdb.Do(ctx, "CHARON.RATE", key, "MAX", 1, "MIN", 1, "TIER", ratelimit.MaxCount, 1000, 1000, 0).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
		// Three tiers: the client sends one LIMITS argument (cached per Resource)
		// instead of 15 TIER arguments; the raw forms show what that saves.
		three := &ratelimit.Resource{Name: "bench3", Tiers: []ratelimit.Tier{
			{Limit: ratelimit.MaxCount, Window: time.Second, Active: time.Second},
			{Limit: ratelimit.MaxCount, Window: 5 * time.Second, Active: 5 * time.Second, Cooldown: 15 * time.Second},
			{Limit: ratelimit.MaxCount, Window: time.Minute, Active: time.Minute, Cooldown: 10 * time.Minute},
		}}
		b.Run(fmt.Sprintf("RESP%d/limiter-Allow-3tiers", proto), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if r, err := l.Allow(ctx, three, "u"); err != nil || r.Granted != 1 {
					b.Fatal(r, err)
				}
			}
		})
		// The same with caps: 2 per domain (LIMITS "...; caps") and GLOBAL with 2
		// (a caps string), both cached per Resource like the tiers.
		capped := &ratelimit.Resource{Name: "bench3caps", Tiers: three.Tiers,
			Caps:       []ratelimit.Cap{{Limit: ratelimit.MaxCount, Per: time.Hour}, {Limit: ratelimit.MaxCount, Per: 24 * time.Hour}},
			GlobalCaps: []ratelimit.Cap{{Limit: ratelimit.MaxCount, Per: time.Hour}, {Limit: ratelimit.MaxCount, Per: 24 * time.Hour}}}
		b.Run(fmt.Sprintf("RESP%d/limiter-Allow-3tiers-2caps-global2caps", proto), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if r, err := l.Allow(ctx, capped, "u"); err != nil || r.Granted != 1 {
					b.Fatal(r, err)
				}
			}
		})
		key3, _ := l.Keys(three, "u")
		tierArgs := []any{"CHARON.RATE", key3, "MAX", 1, "MIN", 1}
		for _, t := range three.Tiers {
			tierArgs = append(tierArgs, "TIER", t.Limit, t.Window.Milliseconds(), t.Active.Milliseconds(), t.Cooldown.Milliseconds())
		}
		limitsArgs := []any{"CHARON.RATE", key3, "MAX", 1, "MIN", 1, "LIMITS", ratelimit.EncodeLimits(three.Tiers)}
		for name, args := range map[string][]any{"TIER": tierArgs, "LIMITS": limitsArgs} {
			b.Run(fmt.Sprintf("RESP%d/raw-Do-3tiers-%s", proto, name), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if err := rdb.Do(ctx, args...).Err(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// The redis_rate-style calls on a real server, time driven by AT: AllowN is all or
// nothing, AllowAtMost takes what is left, Remaining counts down, Reset forgets, and a
// Closed resource is refused with RetryAfter Never. The client sends the compact
// LIMITS form; a raw TIER-form dry run sees the same state.
func TestRatelimitClientRedisRateShapes(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rdb := redis.NewClient(rlcClientOptions(s, proto))
			defer rdb.Close()
			clk := rlcNewClock()
			l := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: clk, Timeout: -1})
			res := ratelimit.PerMinute(fmt.Sprintf("shapes%d", proto), 10)

			r, err := l.Allow(ctx, res, "u")
			require.NoError(t, err)
			require.Equal(t, int64(1), r.Granted)
			require.Equal(t, int64(9), r.Remaining)
			require.Equal(t, time.Duration(0), r.RetryAfter)
			require.Equal(t, ratelimit.LimitNone, r.RejectedBy)

			r, err = l.AllowN(ctx, res, "u", 4)
			require.NoError(t, err)
			require.Equal(t, int64(4), r.Granted)
			require.Equal(t, int64(5), r.Remaining)

			r, err = l.AllowN(ctx, res, "u", 6)
			require.NoError(t, err)
			require.Equal(t, int64(0), r.Granted, "all or nothing")
			require.Equal(t, ratelimit.LimitTier, r.RejectedBy)
			require.Positive(t, r.RetryAfter)
			require.NotEqual(t, ratelimit.Never, r.RetryAfter)

			r, err = l.AllowAtMost(ctx, res, "u", 8)
			require.NoError(t, err)
			require.Equal(t, int64(5), r.Granted, "what is left")
			require.Equal(t, int64(0), r.Remaining)
			key, _ := l.Keys(res, "u")
			require.Equal(t, int64(10), rlcUsed(t, rdb, key, res, 10, clk.Now().UnixMilli()), "the TIER form sees the LIMITS form's hits")

			r, err = l.AllowN(ctx, res, "u", 11)
			require.NoError(t, err)
			require.Equal(t, ratelimit.Never, r.RetryAfter, "more than the limit can ever give")

			require.NoError(t, l.Reset(ctx, res, "u"))
			require.Zero(t, rdb.Exists(ctx, key).Val())
			r, err = l.Allow(ctx, res, "u")
			require.NoError(t, err)
			require.Equal(t, int64(9), r.Remaining, "reset forgot the hits")

			// Inline limits, and a resource with a Hard cap that rejects first.
			capped := ratelimit.PerMinute(res.Name+"-hard", 10)
			capped.Hard = 2
			r, err = l.AllowN(ctx, capped, "v", 2)
			require.NoError(t, err)
			require.Equal(t, int64(0), r.Remaining, "the Hard room is the smaller")
			r, err = l.Allow(ctx, capped, "v")
			require.NoError(t, err)
			require.Equal(t, int64(0), r.Granted)
			require.Equal(t, ratelimit.LimitHard, r.RejectedBy)

			// Closed: refused, nothing stored; a Resource with no tiers is refused by
			// the client before anything is sent.
			closed := &ratelimit.Resource{Name: res.Name + "-closed", Closed: true}
			r, err = l.Allow(ctx, closed, "u")
			require.NoError(t, err)
			require.Equal(t, int64(0), r.Granted)
			require.Equal(t, ratelimit.Never, r.RetryAfter)
			require.Equal(t, ratelimit.LimitClosed, r.RejectedBy)
			ckey, _ := l.Keys(closed, "u")
			require.Zero(t, rdb.Exists(ctx, ckey).Val())
			_, err = l.Allow(ctx, &ratelimit.Resource{Name: "forgot"}, "u")
			require.ErrorIs(t, err, ratelimit.ErrInvalid)
			require.ErrorContains(t, err, "no tiers")
			// The server agrees: no TIER and no CLOSED is an error naming TIER.
			err = rdb.Do(ctx, "CHARON.RATE", "rl:forgot:{u}", "MAX", 1).Err()
			require.Error(t, err)
			require.Contains(t, err.Error(), "TIER")
		})
	}
}

// rlcAligned is a fake clock moved forward to the next multiple of align, so that a
// cap's buckets (rule 10: multiples of g = ceil(W/1000) ms since the epoch) start with
// the test.
func rlcAligned(align time.Duration) *rlcClock {
	clk := rlcNewClock()
	ms := clk.Now().UnixMilli()
	a := align.Milliseconds()
	clk.Advance(time.Duration((a-ms%a)%a) * time.Millisecond)
	return clk
}

// Caps over any window through the client (rule 10): a minute cap binds across the
// tier's seconds, counting in 60 ms buckets (a hit leaves when its bucket ended a
// minute ago, not before), MIN above a cap is never grantable, GLOBAL caps count
// every domain, and the client names the cap that rejected.
func TestRatelimitClientCaps(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rdb := redis.NewClient(rlcClientOptions(s, proto))
			defer rdb.Close()
			clk := rlcAligned(time.Minute)
			t0 := clk.Now()
			l := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: clk, Timeout: -1})
			minute := ratelimit.Cap{Limit: 5, Per: time.Minute}
			res := &ratelimit.Resource{Name: fmt.Sprintf("caps%d", proto), Tiers: []ratelimit.Tier{{Limit: 10, Window: time.Second, Active: time.Second}},
				Caps: []ratelimit.Cap{minute}}

			r, err := l.AllowN(ctx, res, "u", 3)
			require.NoError(t, err)
			require.Equal(t, int64(3), r.Granted)
			clk.Advance(100 * time.Millisecond)
			r, err = l.Allow(ctx, res, "u")
			require.NoError(t, err)
			require.Equal(t, int64(1), r.Granted)
			require.False(t, r.HardLimited)
			clk.Advance(100 * time.Millisecond)
			r, err = l.AllowAtMost(ctx, res, "u", 3)
			require.NoError(t, err)
			require.Equal(t, int64(1), r.Granted, "the minute has 1 left, the tier 6")
			require.True(t, r.HardLimited, "a cap cut MAX")
			require.Equal(t, int64(0), r.Remaining, "the cap cut the grant short: nothing left")

			// Over a second later the tier is empty, the minute is not.
			clk.Advance(1100 * time.Millisecond)
			r, err = l.Allow(ctx, res, "u")
			require.NoError(t, err)
			require.Equal(t, int64(0), r.Granted)
			require.Equal(t, int64(0), r.TierHits)
			require.Equal(t, ratelimit.LimitCap, r.RejectedBy)
			require.Equal(t, minute, r.RejectedCap)
			require.Equal(t, int64(0), r.Remaining)
			// The first 3 hits lie in the bucket [t0, t0+60ms): they leave at t0+60ms+1m.
			leave := t0.Add(60*time.Millisecond + time.Minute)
			require.Equal(t, leave.Sub(clk.Now()), r.RetryAfter)

			clk.Advance(leave.Sub(clk.Now()) - time.Millisecond)
			r, err = l.Allow(ctx, res, "u")
			require.NoError(t, err)
			require.Equal(t, int64(0), r.Granted, "1 ms before the bucket leaves the minute")
			require.Equal(t, time.Millisecond, r.RetryAfter)
			clk.Advance(time.Millisecond)
			r, err = l.AllowAtMost(ctx, res, "u", 5)
			require.NoError(t, err)
			require.Equal(t, int64(3), r.Granted, "the bucket's 3 hits left together")

			// More than a cap can ever give: never, and named.
			r, err = l.AllowN(ctx, res, "v", 6)
			require.NoError(t, err)
			require.Equal(t, ratelimit.Never, r.RetryAfter)
			require.Equal(t, ratelimit.LimitCap, r.RejectedBy)

			// Two caps: the reply does not say which rejected; RetryAfter waits for it.
			two := &ratelimit.Resource{Name: res.Name + "-two", Tiers: res.Tiers,
				Caps: []ratelimit.Cap{minute, {Limit: 7, Per: time.Hour}}}
			r, err = l.AllowN(ctx, two, "u", 5)
			require.NoError(t, err)
			require.Equal(t, int64(5), r.Granted)
			clk.Advance(2 * time.Second)
			r, err = l.Allow(ctx, two, "u")
			require.NoError(t, err)
			require.Equal(t, ratelimit.LimitCap, r.RejectedBy)
			require.Equal(t, ratelimit.Cap{}, r.RejectedCap)
			require.Positive(t, r.RetryAfter)
			require.LessOrEqual(t, r.RetryAfter, time.Minute+60*time.Millisecond)

			// GLOBAL caps across domains: 12 per hour for the whole resource.
			shared := &ratelimit.Resource{Name: res.Name + "-shared", Tiers: []ratelimit.Tier{{Limit: 100, Window: time.Second, Active: time.Second}},
				GlobalCaps: []ratelimit.Cap{{Limit: 12, Per: time.Hour}}}
			r, err = l.AllowAtMost(ctx, shared, "a", 10)
			require.NoError(t, err)
			require.Equal(t, int64(10), r.Granted)
			require.Equal(t, int64(10), r.GlobalHits)
			r, err = l.AllowAtMost(ctx, shared, "b", 10)
			require.NoError(t, err)
			require.Equal(t, int64(2), r.Granted, "the hour has 2 left for everyone")
			require.True(t, r.GlobalLimited)
			clk.Advance(5 * time.Second)
			r, err = l.Allow(ctx, shared, "c")
			require.NoError(t, err)
			require.Equal(t, int64(0), r.Granted, "a third domain meets the global cap")
			require.Equal(t, ratelimit.LimitGlobalCap, r.RejectedBy)
			require.Equal(t, shared.GlobalCaps[0], r.RejectedCap)
			require.Equal(t, int64(0), r.GlobalHits, "the last second is empty: only the hour is full")
			// The keys share the resource's slot; the global key lives while the hour
			// counts its hits: its newest bucket (3.6 s) ends, plus the hour.
			ka, gkey := l.Keys(shared, "a")
			require.Equal(t, "rl:{"+shared.Name+"}:a", ka)
			require.Equal(t, "rl:{"+shared.Name+"}", gkey)
			exp, err := rdb.PExpireTime(ctx, gkey).Result()
			require.NoError(t, err)
			g := int64(3600)
			last := clk.Now().Add(-5 * time.Second).UnixMilli()
			require.Equal(t, (last/g)*g+g+time.Hour.Milliseconds(), exp.Milliseconds(), "PEXPIRETIME of %s", gkey)

			// The client's arguments are the compact form.
			require.Equal(t, "shared: LIMITS 100/1s GLOBAL 12/1h", strings.Replace(shared.String(), shared.Name, "shared", 1))
		})
	}
}

// The middleware over a real Redis with caps: RateLimit-Policy lists every window,
// and a rejection by the minute cap leads RateLimit with it and its t, which agrees
// with Retry-After and the server's retry_after.
func TestRatelimitClientMiddlewareCaps(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	rdb := s.Client(t)
	clk := rlcAligned(time.Minute)
	l := ratelimit.NewLimiter(rdb, &ratelimit.Options{Clock: clk})
	res := &ratelimit.Resource{Name: "http-caps", Tiers: []ratelimit.Tier{{Limit: 10, Window: time.Second, Active: time.Second}},
		Hard: 5, Caps: []ratelimit.Cap{{Limit: 3, Per: time.Minute}}, GlobalCaps: []ratelimit.Cap{{Limit: 1000, Per: 24 * time.Hour}}}
	mw, err := l.Middleware(ratelimit.MiddlewareOptions{Resource: res,
		Domain: func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil }})
	require.NoError(t, err)
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	get := func(user string) *httptest.ResponseRecorder {
		clk.Advance(time.Millisecond)
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("X-User", user)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	const policy = `"t1";q=10;w=1, "hard";q=5;w=1, "cap-1m";q=3;w=60, "global-1d";q=1000;w=86400`
	for i, want := range []string{`"t1";r=9, "hard";r=4`, `"t1";r=8, "hard";r=3`, `"t1";r=7, "hard";r=2`} {
		rec := get("alice")
		require.Equal(t, http.StatusOK, rec.Code, "request %d", i)
		require.Equal(t, policy, rec.Header().Get("RateLimit-Policy"))
		require.Equal(t, want, rec.Header().Get("RateLimit"), "request %d", i)
	}
	// The fourth: the hits at t0+1..3 ms lie in the bucket [t0, t0+60ms) and leave
	// the minute at t0+60ms+1m, 60.056 s after this request at t0+4 ms: t=61.
	rec := get("alice")
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Equal(t, policy, rec.Header().Get("RateLimit-Policy"))
	require.Equal(t, `"cap-1m";r=0;t=61, "t1";r=7, "hard";r=2`, rec.Header().Get("RateLimit"))
	require.Equal(t, "61", rec.Header().Get("Retry-After"))
	// The server agrees: a dry run at the same time waits 60.056 s.
	key, gkey := l.Keys(res, "alice")
	v, err := rdb.Do(context.Background(), "CHARON.RATE", key, "DRYRUN", "AT", clk.Now().UnixMilli(), "HARD", 5,
		"GLOBAL", gkey, "1000/1d", "LIMITS", "10/1s; 3/1m").Result()
	require.NoError(t, err)
	require.Equal(t, int64(60056), rlcReplyFields(t, v)["retry_after"])
	// Another domain has its own minute; the day is shared.
	rec = get("bob")
	require.Equal(t, http.StatusOK, rec.Code)
}
