package ratelimit

import (
	"context"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/require"
)

// closedAddr returns a loopback address nobody listens on: connecting is refused.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// unreachable is a real go-redis client whose dials are refused at once.
func unreachable(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:                     closedAddr(t),
		MaxRetries:               -1,
		DialerRetries:            1,
		DialerRetryTimeout:       time.Millisecond,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRequestValidatesBeforeSending(t *testing.T) {
	// Over an unreachable server, anything that got as far as sending would fail with a
	// dial error instead of ErrInvalid.
	l := NewLimiter(unreachable(t), nil)
	ctx := context.Background()
	good := PerSecond("api", 5)
	bad := Resource{Name: "api", Tiers: []Tier{{Limit: 5, Window: 1500 * time.Microsecond, Active: time.Second}}}
	cases := []struct {
		name string
		res  *Resource
		dom  string
		a    RequestArgs
	}{
		{"bad resource", &bad, "u", RequestArgs{Max: 1}},
		{"nil resource", nil, "u", RequestArgs{Max: 1}},
		{"empty domain", good, "", RequestArgs{Max: 1}},
		{"max too big", good, "u", RequestArgs{Max: MaxCount + 1}},
		{"negative max", good, "u", RequestArgs{Max: -1}},
		{"min above max", good, "u", RequestArgs{Min: 3, Max: 2}},
		{"negative min", good, "u", RequestArgs{Min: -1, Max: 2}},
		{"negative wait", good, "u", RequestArgs{Max: 1, MaxWait: -time.Second}},
		{"at before 1970", good, "u", RequestArgs{Max: 1, At: time.UnixMilli(-1)}},
		{"at beyond 2^53 ms", good, "u", RequestArgs{Max: 1, At: time.UnixMilli(1<<53 + 1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := l.RequestWith(ctx, c.res, c.dom, c.a)
			require.Nil(t, r)
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
	_, err := l.Request(ctx, good, "u", 0, 0)
	require.ErrorIs(t, err, ErrInvalid, "Request(min 0, max 0) is refused: max must be at least 1")
}

func TestUnreachableFailsClosedByDefault(t *testing.T) {
	l := NewLimiter(unreachable(t), nil)
	res := PerSecond("api", 5)
	r, err := l.Allow(context.Background(), res, "u")
	require.Nil(t, r)
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrOutcomeUnknown), "a refused dial proves nothing was sent: %v", err)
	require.Equal(t, classUnreachable, classify(err), "%v", err)
	var oe *net.OpError
	require.ErrorAs(t, err, &oe, "go-redis's error stays reachable through the wrapping")
}

func TestFailOpenGrantsMinAndReports(t *testing.T) {
	type call struct {
		res, dom string
		err      error
	}
	var calls []call
	l := NewLimiter(unreachable(t), &Options{
		FailOpen: true,
		OnFailOpen: func(_ context.Context, res, dom string, err error) {
			calls = append(calls, call{res, dom, err})
		},
	})
	res := PerSecond("api", 5)
	r, err := l.Request(context.Background(), res, "alice", 3, 10)
	require.NoError(t, err)
	require.Equal(t, &Result{Granted: 3, GlobalHits: -1, Override: OverrideFailOpen, Attempts: 1}, r)
	r, err = l.Request(context.Background(), res, "bob", 0, 10)
	require.NoError(t, err)
	require.Equal(t, int64(1), r.Granted, "Min 0 fails open with one hit, never zero")
	require.Len(t, calls, 2)
	require.Equal(t, "api", calls[0].res)
	require.Equal(t, "alice", calls[0].dom)
	require.Equal(t, classUnreachable, classify(calls[0].err))

	// A context that ended is the caller giving up, not Redis being down.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r, err = l.Allow(ctx, res, "carol")
	require.Error(t, err)
	require.Nil(t, r)
	require.Len(t, calls, 2, "no fail-open for a canceled context")

	// Validation errors are never turned into grants.
	_, err = l.Request(context.Background(), res, "", 1, 1)
	require.ErrorIs(t, err, ErrInvalid)
	require.Len(t, calls, 2)
}

func TestKillSwitchFlag(t *testing.T) {
	l := NewLimiter(unreachable(t), &Options{KillSwitch: true})
	require.True(t, l.KillSwitch())
	l.SetKillSwitch(false)
	require.False(t, l.KillSwitch())
}

func TestNewLimiterDefaults(t *testing.T) {
	l := NewLimiter(unreachable(t), &Options{MinBackoff: time.Second, MaxBackoff: time.Millisecond, TransientRetries: -1})
	require.Equal(t, backoff{min: time.Second, max: time.Second}, l.loop.backoff)
	require.Equal(t, 0, l.loop.transientRetries)
	l = NewLimiter(unreachable(t), nil)
	require.Equal(t, backoff{min: DefaultMinBackoff, max: DefaultMaxBackoff}, l.loop.backoff)
	require.Equal(t, DefaultTransientRetries, l.loop.transientRetries)
	require.Equal(t, DefaultPrefix, l.prefix)
	res := Resource{Name: "api", Global: 10}
	key, gkey := l.Keys(&res, "u")
	require.Equal(t, "rl:{api}:u", key)
	require.Equal(t, "rl:{api}", gkey)
	key, gkey = l.Keys(nil, "u")
	require.Empty(t, key+gkey, "no panic on a nil resource")
	l = NewLimiter(unreachable(t), &Options{KeyPrefix: "app1"})
	key, _ = l.Keys(&Resource{Name: "api"}, "u")
	require.Equal(t, "app1:api:{u}", key)
}

func TestNoGoroutineLeakOnFailure(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		c := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialerRetries: 1, DialerRetryTimeout: time.Millisecond,
			DisableIdentity: true, MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
		defer c.Close()
		l := NewLimiter(c, &Options{FailOpen: true})
		res := PerSecond("api", 5)
		for i := 0; i < 20; i++ {
			_, err := l.RequestWith(context.Background(), res, "u", RequestArgs{Max: 1, MaxWait: time.Second})
			require.NoError(t, err)
		}
	}()
	waitGoroutines(t, base)
}
