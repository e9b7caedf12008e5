package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/internal/outcome"
)

// fake is a RESP server that answers every command with :1, except that a command
// named HOLD is answered only once release is closed (a slow server), and HELLO is
// refused (go-redis then speaks RESP2). It counts commands per read.
type fake struct {
	ln       net.Listener
	release  chan struct{} // releases the first HOLD
	release2 func()        // releases the second
	second   chan struct{}
	holds    atomic.Int64 // HOLD commands received
	mu       sync.Mutex
	perRead  []int // commands parsed from each read of a connection
}

func startFake(t *testing.T) *fake {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fake{ln: ln, release: make(chan struct{}), second: make(chan struct{})}
	var once sync.Once
	f.release2 = func() { once.Do(func() { close(f.second) }) }
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				f.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		select {
		case <-f.release:
		default:
			close(f.release)
		}
		f.release2()
	})
	return f
}

func (f *fake) serve(c net.Conn) {
	rd := bufio.NewReaderSize(c, 1<<16)
	for {
		// One "read": everything already buffered after the first byte arrives.
		if _, err := rd.Peek(1); err != nil {
			return
		}
		n := 0
		var replies []byte
		for {
			args, err := readCommand(rd)
			if err != nil {
				return
			}
			n++
			switch strings.ToUpper(args[0]) {
			case "HELLO":
				replies = append(replies, "-ERR unknown command 'HELLO'\r\n"...)
			case "SLEEP": // a slow command: its batch's replies wait for it
				ms, _ := strconv.Atoi(args[1])
				time.Sleep(time.Duration(ms) * time.Millisecond)
				replies = append(replies, ":1\r\n"...)
			case "HOLD":
				gate := f.release
				if f.holds.Add(1) > 1 {
					gate = f.second
				}
				if _, err := c.Write(replies); err != nil {
					return
				}
				replies = nil
				<-gate
				replies = append(replies, ":1\r\n"...)
			default:
				replies = append(replies, ":1\r\n"...)
			}
			if rd.Buffered() == 0 {
				break
			}
		}
		f.mu.Lock()
		f.perRead = append(f.perRead, n)
		f.mu.Unlock()
		if _, err := c.Write(replies); err != nil {
			return
		}
	}
}

func readCommand(rd *bufio.Reader) ([]string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || line[0] != '*' {
		return nil, errors.New("not an array")
	}
	args := make([]string, n)
	for i := range args {
		l, err := rd.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, _ := strconv.Atoi(strings.TrimSpace(l[1:]))
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}

func (f *fake) reads() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.perRead...)
}

func fakeClient(t *testing.T, f *fake) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:                     f.ln.Addr().String(),
		Protocol:                 2,
		DisableIdentity:          true,
		MaxRetries:               -1,
		ContextTimeoutEnabled:    true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newBatcher returns a batcher that never hedges (the tests hold round trips on
// purpose); TestStuckRoundTripIsHedged turns hedging back on.
func newBatcher(rdb Rediser, inflight int) *batcher {
	return &batcher{rdb: rdb, maxInflight: inflight, maxBatch: DefaultMaxBatch, hedgeFloor: time.Hour}
}

// A lone caller is sent at once: one command per read on the server, never queued.
func TestLoneCallerSentAtOnce(t *testing.T) {
	f := startFake(t)
	b := newBatcher(fakeClient(t, f), 1)
	for range 50 {
		cmd := redis.NewCmd(context.Background(), "PING")
		require.NoError(t, b.do(context.Background(), cmd))
	}
	for _, n := range f.reads() {
		require.Equal(t, 1, n, "one command per read: %v", f.reads())
	}
}

// Calls that arrive while the round trip is under way wait, and the next round trip
// carries all of them in one pipeline.
func TestConcurrentCallsShareRoundTrips(t *testing.T) {
	f := startFake(t)
	b := newBatcher(fakeClient(t, f), 1)
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- b.do(ctx, redis.NewCmd(ctx, "HOLD")) }()
	waitFor(t, func() bool { return f.holds.Load() == 1 })

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- b.do(ctx, redis.NewCmd(ctx, "PING"))
		}()
	}
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == n })
	close(f.release)
	require.NoError(t, <-first)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	reads := f.reads()
	require.Contains(t, reads, n, "the %d queued calls went in one round trip: %v", n, reads)
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Zero(t, b.inflight, "every round trip finished")
}

// A queued call whose deadline passes before a round trip takes it was never sent
// (errQueued); one whose round trip is stuck when its deadline passes has no answer
// (errNoAnswer). Neither leaks a round trip.
func TestDeadlines(t *testing.T) {
	f := startFake(t)
	b := newBatcher(fakeClient(t, f), 1)
	ctx := context.Background()
	stuck := make(chan error, 1)
	go func() { stuck <- b.do(ctx, redis.NewCmd(ctx, "HOLD")) }()
	waitFor(t, func() bool { return f.holds.Load() == 1 })

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	err := b.do(short, redis.NewCmd(short, "PING"))
	require.ErrorIs(t, err, errQueued)

	close(f.release)
	require.NoError(t, <-stuck)
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.inflight == 0 })

	// A call taken into a round trip that outlives its deadline: its batch waits for a
	// slow command, and the call gives up on it (errNoAnswer).
	go func() { stuck <- b.do(ctx, redis.NewCmd(ctx, "HOLD")) }()
	waitFor(t, func() bool { return f.holds.Load() == 2 })
	slow, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	quick, qcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer qcancel()
	got := make(chan error, 2)
	go func() { got <- b.do(quick, redis.NewCmd(quick, "PING")) }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 1 })
	go func() { got <- b.do(slow, redis.NewCmd(slow, "SLEEP", 2000)) }()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 2 })
	f.release2()
	require.NoError(t, <-stuck)
	var errs []error
	for range 2 {
		errs = append(errs, <-got)
	}
	require.Contains(t, errs, error(nil), "the slow command is answered")
	require.True(t, errors.Is(errs[0], errNoAnswer) || errors.Is(errs[1], errNoAnswer), "%v", errs)
}

// A round trip that takes far longer than usual does not hold the queue back: a new
// call starts another one.
func TestStuckRoundTripIsHedged(t *testing.T) {
	f := startFake(t)
	b := newBatcher(fakeClient(t, f), 1)
	b.hedgeFloor = 0
	ctx := context.Background()
	for range 20 { // learn the usual duration
		require.NoError(t, b.do(ctx, redis.NewCmd(ctx, "PING")))
	}
	stuck := make(chan error, 1)
	go func() { stuck <- b.do(ctx, redis.NewCmd(ctx, "HOLD")) }()
	waitFor(t, func() bool { return f.holds.Load() == 1 })
	b.mu.Lock()
	after := b.hedgeAfterLocked()
	b.mu.Unlock()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return time.Since(b.lastStart) > after })
	// Not queued behind the stuck round trip: answered while HOLD is still unanswered.
	require.NoError(t, b.do(ctx, redis.NewCmd(ctx, "PING")))
	select {
	case err := <-stuck:
		t.Fatalf("HOLD answered too early: %v", err)
	default:
	}
	close(f.release)
	require.NoError(t, <-stuck)
}

func TestToken(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		tok := NewToken()
		require.Len(t, tok, 22)
		require.False(t, seen[tok])
		seen[tok] = true
		for _, c := range tok {
			require.True(t, c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z', "%q", tok)
		}
	}
}

func TestModuleEngineOrder(t *testing.T) {
	r := &Request{Args: []any{"CHARON.RESERVE", "k", "LIMIT", 2}, Tail: []any{"GROUP", "g", 1}}
	args, err := ModuleEngine{}.Command(nil, r, "tok")
	require.NoError(t, err)
	require.Equal(t, []any{"CHARON.RESERVE", "k", "LIMIT", 2, "ONCE", "tok", "GROUP", "g", 1}, args,
		"ONCE before the clause that runs to the end")
	args, err = ModuleEngine{}.Command(nil, r, "")
	require.NoError(t, err)
	require.Equal(t, []any{"CHARON.RESERVE", "k", "LIMIT", 2, "GROUP", "g", 1}, args)
}

// The script engine sends EVALSHA with the command's keys as KEYS (GROUP keys last,
// ONCE in the call), EVAL after NOSCRIPT, other commands as they are, and refuses a
// bad argument with the module's own error.
func TestScriptEngineCommand(t *testing.T) {
	e := ScriptEngine{Now: func() int64 { return 1_700_000_000_000 }}
	r := &Request{Args: []any{"CHARON.RESERVE", "hd:{p}:d", "LIMIT", int64(2), "GLOBAL", "hd:{p}", int64(5)},
		Tail: []any{"GROUP", "hd:{p}:g", int64(1)}}
	args, err := e.Command(nil, r, "tok")
	require.NoError(t, err)
	require.Equal(t, "EVALSHA", args[0])
	require.Len(t, args[1], 40)
	require.Equal(t, []any{3, "hd:{p}:d", "hd:{p}", "hd:{p}:g"}, args[2:6])
	require.Equal(t, "reserve", args[6])
	require.Equal(t, "1700000000000", args[7], "the client's clock without AT")
	require.Contains(t, args, "tok")
	eval := e.NoScript(args)
	require.Equal(t, "EVAL", eval[0])
	require.Contains(t, eval[1], "CHARON.RESERVE")
	require.Equal(t, args[2:], eval[2:])
	require.Nil(t, e.NoScript(eval), "EVAL has no fallback")

	rate := &Request{Args: []any{"CHARON.RATE", "rl:{a}:b", "AT", int64(5), "LIMITS", "10/1s"}}
	args, err = e.Command(nil, rate, "")
	require.NoError(t, err)
	require.Equal(t, []any{"EVALSHA", args[1], 1, "rl:{a}:b"}, args[:4])
	require.NotEqual(t, args[1], eval[1])

	del := &Request{Args: []any{"DEL", "k"}}
	args, err = e.Command(nil, del, "")
	require.NoError(t, err)
	require.Equal(t, []any{"DEL", "k"}, args)

	_, err = e.Command(nil, &Request{Args: []any{"CHARON.RATE", "k", "MAX", int64(0), "LIMITS", "1/1s"}}, "")
	var rerr redis.Error
	require.ErrorAs(t, err, &rerr)
	require.True(t, strings.HasPrefix(err.Error(), "ERR MAX: "), err.Error())
}

func TestErrorWrapsKindAndCause(t *testing.T) {
	sentinel := errors.New("pkg: outcome unknown")
	cause := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("i/o timeout")}
	tr := New(fakeRediser{}, Config{Name: "pkg", OutcomeUnknown: sentinel})
	e := tr.errorf(outcome.Unknown, sentinel, "CHARON.RATE k", cause)
	require.Equal(t, "pkg: CHARON.RATE k: pkg: outcome unknown: read tcp: i/o timeout", e.Error())
	require.ErrorIs(t, e, sentinel)
	var oe *net.OpError
	require.ErrorAs(t, e, &oe)
	require.Equal(t, outcome.Unknown, Classify(e))
}

type fakeRediser struct{ Rediser }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A call that queues behind a stuck round trip is sent by a hedge when nobody else
// comes along: a timer set when the queue formed.
func TestQueuedCallIsHedgedByTimer(t *testing.T) {
	f := startFake(t)
	b := newBatcher(fakeClient(t, f), 1)
	b.hedgeFloor = 20 * time.Millisecond
	ctx := context.Background()
	stuck := make(chan error, 1)
	go func() { stuck <- b.do(ctx, redis.NewCmd(ctx, "HOLD")) }()
	waitFor(t, func() bool { return f.holds.Load() == 1 })
	// Queued at once (the round trip is young), answered without any other call.
	require.NoError(t, b.do(ctx, redis.NewCmd(ctx, "PING")))
	select {
	case err := <-stuck:
		t.Fatalf("HOLD answered too early: %v", err)
	default:
	}
	close(f.release)
	require.NoError(t, <-stuck)
}
