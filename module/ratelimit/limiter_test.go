package ratelimit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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
	require.Equal(t, &Result{Granted: 3, GlobalHits: -1, Override: OverrideFailOpen}, r, "never sent: Attempts 0")
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

// recorder is an Observer that keeps every Event.
type recorder struct{ events []Event }

func (r *recorder) Observe(_ context.Context, e Event) { r.events = append(r.events, e) }

func TestShortcutsRefuseBadN(t *testing.T) {
	obs := &recorder{}
	l := NewLimiter(unreachable(t), &Options{Observer: obs})
	res := PerSecond("api", 5)
	for _, n := range []int64{0, -1} {
		_, err := l.AllowN(context.Background(), res, "u", n)
		require.ErrorIs(t, err, ErrInvalid)
		_, err = l.AllowAtMost(context.Background(), res, "u", n)
		require.ErrorIs(t, err, ErrInvalid)
	}
	_, err := l.AllowN(context.Background(), res, "u", MaxCount+1)
	require.ErrorIs(t, err, ErrInvalid)
	require.Len(t, obs.events, 5)
	for _, e := range obs.events {
		require.Equal(t, OutcomeError, e.Outcome)
		require.Equal(t, "api", e.Resource)
		require.ErrorIs(t, e.Err, ErrInvalid)
		require.Zero(t, e.Attempts)
	}
	require.ErrorIs(t, l.Reset(context.Background(), res, ""), ErrInvalid)
	require.Error(t, l.Reset(context.Background(), res, "u"), "unreachable")
}

func TestObserverSeesFailOpenAndErrors(t *testing.T) {
	obs := &recorder{}
	l := NewLimiter(unreachable(t), &Options{FailOpen: true, Observer: obs})
	res := PerMinute("search", 5)
	r, err := l.AllowAtMost(context.Background(), res, "alice", 7)
	require.NoError(t, err)
	require.Equal(t, OverrideFailOpen, r.Override)
	require.Len(t, obs.events, 1)
	e := obs.events[0]
	require.Equal(t, OutcomeFailOpen, e.Outcome)
	require.Equal(t, "search", e.Resource)
	require.Equal(t, "alice", e.Domain)
	require.Equal(t, int64(1), e.Granted)
	require.Zero(t, e.Attempts, "never sent")
	require.Error(t, e.Err, "the error that made it fail open")
	require.Positive(t, e.Latency)

	l = NewLimiter(unreachable(t), &Options{Observer: obs})
	_, err = l.Allow(context.Background(), res, "bob")
	require.Error(t, err)
	require.Len(t, obs.events, 2)
	require.Equal(t, OutcomeError, obs.events[1].Outcome)
	require.Equal(t, err, obs.events[1].Err)
	require.Equal(t, "fail-open", OutcomeFailOpen.String())
}

// With go-redis's default dial retries (5 x 100ms per attempt, 4 attempts), a refused
// connection takes about 2s to surface; the Limiter's Timeout cuts it short, and an
// attempt cut short before anything was sent still fails open.
func TestTimeoutBoundsUnreachable(t *testing.T) {
	c := redis.NewClient(&redis.Options{
		Addr:                     closedAddr(t),
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { _ = c.Close() })
	l := NewLimiter(c, &Options{FailOpen: true, Timeout: 20 * time.Millisecond})
	res := PerSecond("api", 5)
	began := time.Now()
	r, err := l.Allow(context.Background(), res, "u")
	took := time.Since(began)
	require.NoError(t, err)
	require.Equal(t, OverrideFailOpen, r.Override)
	t.Logf("fail-open decided in %v with Timeout 20ms (go-redis alone: ~2s)", took)

	// Without FailOpen the error says what happened and proves nothing ran.
	l = NewLimiter(c, &Options{Timeout: 20 * time.Millisecond})
	_, err = l.Allow(context.Background(), res, "u")
	require.Error(t, err)
	require.Equal(t, classUnreachable, classify(err), "%v", err)
	require.NotErrorIs(t, err, ErrOutcomeUnknown)
}

// fakeServer speaks just enough RESP to pass the Limiter's check (COMMAND INFO, INFO
// cluster, the ONCE probe: taken when once is set) and then never answers again: every
// later command is recorded and left without a reply.
func fakeServer(t *testing.T, once bool) (addr string, received <-chan []string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	got := make(chan []string, 64)
	serve := func(conn net.Conn) {
		rd := bufio.NewReader(conn)
		line := func() string {
			l, err := rd.ReadString('\n')
			if err != nil {
				return ""
			}
			return strings.TrimRight(l, "\r\n")
		}
		for {
			head := line()
			if !strings.HasPrefix(head, "*") {
				return
			}
			n, _ := strconv.Atoi(head[1:])
			args := make([]string, n)
			for i := range args {
				size, _ := strconv.Atoi(strings.TrimPrefix(line(), "$"))
				buf := make([]byte, size+2)
				if _, err := io.ReadFull(rd, buf); err != nil {
					return
				}
				args[i] = string(buf[:size])
			}
			var reply string
			switch name := strings.ToUpper(args[0]); {
			case name == "HELLO":
				reply = "-ERR unknown command 'HELLO'\r\n"
			case name == "COMMAND":
				reply = "*1\r\n*1\r\n$11\r\ncharon.rate\r\n"
			case name == "INFO":
				reply = "$30\r\n# Cluster\r\ncluster_enabled:0\r\n\r\n"
			case name == "CHARON.RATE" && slices.Contains(args, "DRYRUN"):
				reply = "-ERR syntax: unknown option 'ONCE'\r\n"
				if once {
					reply = "*11\r\n:1\r\n:1\r\n:1\r\n:0\r\n:0\r\n:-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:1000\r\n"
				}
			default:
				got <- args
				continue
			}
			if _, err := conn.Write([]byte(reply)); err != nil {
				return
			}
		}
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			go serve(conn)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String(), got
}

// A server that passes the check and then never answers: the command was sent, so a
// timeout is an unknown outcome, never a fail-open grant. With ONCE the request is
// sent again with the same token (Resends) before the Limiter gives up; without it,
// the request travels alone inside MULTI/EXEC and is sent once.
func TestTimeoutAfterSendIsOutcomeUnknown(t *testing.T) {
	for _, once := range []bool{true, false} {
		t.Run(fmt.Sprintf("once=%v", once), func(t *testing.T) {
			addr, received := fakeServer(t, once)
			c := redis.NewClient(&redis.Options{
				Addr:                     addr,
				Protocol:                 2,
				DisableIdentity:          true,
				ContextTimeoutEnabled:    true,
				MaxRetries:               -1,
				MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			})
			t.Cleanup(func() { _ = c.Close() })
			obs := &recorder{}
			l := NewLimiter(c, &Options{FailOpen: true, Timeout: 50 * time.Millisecond, Resends: 2, Observer: obs})
			r, err := l.Allow(context.Background(), PerSecond("api", 5), "u")
			require.Nil(t, r)
			require.ErrorIs(t, err, ErrOutcomeUnknown)
			var ne net.Error
			require.ErrorAs(t, err, &ne, "the cause stays visible: %v", err)
			require.Len(t, obs.events, 1)
			require.Equal(t, OutcomeError, obs.events[0].Outcome)

			if !once {
				for _, want := range []string{"MULTI", "CHARON.RATE", "EXEC"} { // alone in a transaction
					require.Equal(t, want, strings.ToUpper((<-received)[0]))
				}
				require.Equal(t, 1, obs.events[0].Attempts)
				return
			}
			var tokens []string
			for range 3 { // the request and its two resends
				args := <-received
				require.Equal(t, "CHARON.RATE", args[0])
				i := slices.Index(args, "ONCE")
				require.Positive(t, i, "%q", args)
				tokens = append(tokens, args[i+1])
			}
			require.Equal(t, tokens[0], tokens[1], "a resend carries the same token")
			require.Equal(t, tokens[0], tokens[2])
			require.Len(t, tokens[0], 22)
			require.Equal(t, 3, obs.events[0].Attempts)
		})
	}
}

func TestExplainRemainingAndRejectedBy(t *testing.T) {
	res := &Resource{Name: "x", Tiers: []Tier{{Limit: 10, Window: time.Second, Active: time.Second}}, Hard: 6, Global: 100}
	cases := []struct {
		name      string
		r         Result
		need      int64
		remaining int64
		by        Limit
	}{
		{"granted, tier room smallest", Result{Granted: 1, TierLimit: 10, TierHits: 8, DomainHits: 3, GlobalHits: 50}, 1, 2, LimitNone},
		{"granted, hard room smallest", Result{Granted: 1, TierLimit: 10, TierHits: 2, DomainHits: 5, GlobalHits: 50}, 1, 1, LimitNone},
		{"granted, global room smallest", Result{Granted: 2, TierLimit: 10, TierHits: 2, DomainHits: 2, GlobalHits: 99}, 1, 1, LimitNone},
		{"tier full", Result{TierLimit: 10, TierHits: 10, DomainHits: 3, GlobalHits: 50}, 1, 0, LimitTier},
		{"hard full", Result{TierLimit: 10, TierHits: 2, DomainHits: 6, GlobalHits: 50}, 1, 0, LimitHard},
		{"hard short of min", Result{TierLimit: 10, TierHits: 2, DomainHits: 4, GlobalHits: 50}, 3, 2, LimitHard},
		{"global full", Result{TierLimit: 10, TierHits: 2, DomainHits: 6, GlobalHits: 100}, 1, 0, LimitGlobal},
		{"tier overfull (limits lowered)", Result{TierLimit: 10, TierHits: 14, DomainHits: 0, GlobalHits: 0}, 1, 0, LimitTier},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.r
			r.explain(res, c.need, c.need)
			require.Equal(t, c.remaining, r.Remaining)
			require.Equal(t, c.by, r.RejectedBy)
		})
	}
	closed := &Resource{Name: "x", Closed: true}
	r := Result{GlobalHits: -1, RetryAfter: Never}
	r.explain(closed, 1, 1)
	require.Equal(t, LimitClosed, r.RejectedBy)
	require.Equal(t, "closed", r.RejectedBy.String())
	noCaps := PerSecond("x", 5)
	r = Result{Granted: 1, TierLimit: 5, TierHits: 1, GlobalHits: -1}
	r.explain(noCaps, 1, 1)
	require.Equal(t, int64(4), r.Remaining)
}
