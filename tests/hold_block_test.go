//go:build integration

package tests

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// hdWaiters is INFO's count of clients waiting in CHARON.RESERVE ... BLOCK.
func hdWaiters(t testing.TB, s *harness.Server) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s.Info(t, "charon_reserve")["charon_reserve_waiters"], 10, 64)
	require.NoError(t, err)
	return n
}

// hdWaitFor polls until n clients wait.
func hdWaitFor(t testing.TB, s *harness.Server, n int64) {
	t.Helper()
	harness.Eventually(t, 20*time.Second, func() (bool, string) {
		got := hdWaiters(t, s)
		return got == n, fmt.Sprintf("%d clients wait, want %d", got, n)
	})
}

// hdConn is one connection of its own (a blocked command holds its connection).
type hdConn struct {
	*redis.Conn
	id int64
}

func hdNewConn(t testing.TB, s *harness.Server) hdConn {
	t.Helper()
	c := s.Client(t, harness.Protocol(2), func(o *redis.Options) {
		o.PoolSize = 1
		o.ReadTimeout = 30 * time.Second
		o.MaxRetries = -1 // the server's own answer (go-redis retries TRYAGAIN)
	})
	conn := c.Conn()
	t.Cleanup(func() { _ = conn.Close() })
	id, err := conn.ClientID(context.Background()).Result()
	require.NoError(t, err)
	return hdConn{conn, id}
}

// hdRawBlock sends one command on a connection of its own and returns the
// connection without reading the reply: closing it is a client going away.
func hdRawBlock(t testing.TB, s *harness.Server, args ...string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err = conn.Write([]byte(b.String()))
	require.NoError(t, err)
	return conn
}

// hdAsync runs a hold command on conn in the background; the result arrives on the
// channel.
type hdResult struct {
	r   hdReply
	err error
	at  time.Time
}

func hdAsync(t testing.TB, conn hdConn, args ...any) <-chan hdResult {
	t.Helper()
	ch := make(chan hdResult, 1)
	go func() {
		v, err := conn.Do(context.Background(), args...).Slice()
		res := hdResult{err: err, at: time.Now()}
		if err == nil {
			res.r = hdReply{}
			for i, n := range hdReserveFields {
				if i < len(v) {
					res.r[n] = v[i]
				}
			}
		}
		ch <- res
	}()
	return ch
}

func hdRecv(t testing.TB, ch <-chan hdResult) hdResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no reply within 30 s")
		return hdResult{}
	}
}

// BLOCK semantics, one at a time: a release serves the waiter (fenced, replicated as a
// plain RESERVE), a timeout gives the rejection reply, an expiring lease wakes the
// waiter at its deadline (no other event), a waiter blocked by GLOBAL wakes when the
// pool frees on another domain, MULTI does not wait, DRYRUN and BLOCK do not mix.
func TestHoldBlock(t *testing.T) {
	t.Parallel()
	p, r := harness.StartPrimaryReplica(t, harness.Options{AppendOnly: true})
	c := p.Client(t, harness.Protocol(2))
	ctx := context.Background()

	// A release serves the waiter.
	a := hdMust(t, c, "CHARON.RESERVE", "hd:{b}:k", "LIMIT", 1, "LEASE", 600_000)
	w := hdNewConn(t, p)
	ch := hdAsync(t, w, "CHARON.RESERVE", "hd:{b}:k", "LIMIT", 1, "LEASE", 600_000, "BLOCK", 10_000)
	hdWaitFor(t, p, 1)
	select {
	case res := <-ch:
		t.Fatalf("answered while the copy is held: %v %v", res.r, res.err)
	default:
	}
	hdMust(t, c, "CHARON.RELEASE", "hd:{b}:k", a.str("hold"))
	got := hdRecv(t, ch)
	require.NoError(t, got.err)
	require.Equal(t, int64(1), got.r.int(t, "granted"))
	require.NotEqual(t, a.str("hold"), got.r.str("hold"))
	require.Greater(t, got.r.int(t, "fence"), a.int(t, "fence"), "the waiter's grant is fenced like any other")
	require.Equal(t, int64(0), hdWaiters(t, p))
	require.Equal(t, int64(1), rtInspect(t, c, "hd:{b}:k", rtNow())["held"])

	// A timeout: the rejection reply, nothing written.
	d := rtDigest(t, c)
	start := time.Now()
	to := hdRecv(t, hdAsync(t, w, "CHARON.RESERVE", "hd:{b}:k", "LIMIT", 1, "BLOCK", 100))
	require.NoError(t, to.err)
	require.GreaterOrEqual(t, to.at.Sub(start), 100*time.Millisecond)
	require.Equal(t, int64(0), to.r.int(t, "granted"))
	require.Nil(t, to.r["hold"])
	require.Equal(t, "domain", to.r.str("limited_by"))
	require.Greater(t, to.r.int(t, "retry_after"), int64(500_000))
	require.Equal(t, d, rtDigest(t, c))

	// A lease that ends wakes the waiter at its deadline, with no other command.
	l := hdMust(t, c, "CHARON.RESERVE", "hd:{b}:lease", "LIMIT", 1, "LEASE", 300)
	lw := hdRecv(t, hdAsync(t, w, "CHARON.RESERVE", "hd:{b}:lease", "LIMIT", 1, "BLOCK", 10_000))
	require.NoError(t, lw.err)
	require.Equal(t, int64(1), lw.r.int(t, "granted"))
	require.GreaterOrEqual(t, lw.at.UnixMilli(), l.int(t, "deadline"), "not before the deadline")

	// GLOBAL: a waiter on one domain wakes when another domain frees the pool.
	g1 := hdMust(t, c, "CHARON.RESERVE", "hd:{b}:d1", "MAX", 2, "LIMIT", 5, "GLOBAL", "hd:{b}", 2, "LEASE", 600_000)
	gch := hdAsync(t, w, "CHARON.RESERVE", "hd:{b}:d2", "LIMIT", 5, "GLOBAL", "hd:{b}", 2, "BLOCK", 10_000)
	hdWaitFor(t, p, 1)
	hdMust(t, c, "CHARON.RELEASE", "hd:{b}:d1", g1.str("hold"), "COPIES", 1, "GLOBAL", "hd:{b}")
	gg := hdRecv(t, gch)
	require.NoError(t, gg.err)
	require.Equal(t, int64(1), gg.r.int(t, "granted"))
	require.Equal(t, int64(2), gg.r.int(t, "global_held"))

	// A GROUP pool the same way.
	p1 := hdMust(t, c, "CHARON.RESERVE", "hd:{b}:e1", "LIMIT", 5, "LEASE", 600_000, "GROUP", "hd:{b}:pool", 1)
	pch := hdAsync(t, w, "CHARON.RESERVE", "hd:{b}:e2", "LIMIT", 5, "BLOCK", 10_000, "GROUP", "hd:{b}:pool", 1)
	hdWaitFor(t, p, 1)
	hdMust(t, c, "CHARON.RELEASE", "hd:{b}:e1", p1.str("hold"), "GROUP", "hd:{b}:pool")
	pp := hdRecv(t, pch)
	require.NoError(t, pp.err)
	require.Equal(t, int64(1), pp.r.int(t, "granted"))

	// Inside MULTI a RESERVE does not wait (as BLPOP): the rejection, at once.
	tx := c.TxPipeline()
	mc := tx.Do(ctx, "CHARON.RESERVE", "hd:{b}:k", "LIMIT", 1, "BLOCK", 0)
	_, err := tx.Exec(ctx)
	require.NoError(t, err)
	mv, err := mc.Slice()
	require.NoError(t, err)
	require.Equal(t, int64(0), mv[0])
	// DRYRUN does not wait.
	require.Contains(t, rtErr(t, c, "CHARON.RESERVE", "hd:{b}:k", "LIMIT", 1, "BLOCK", 10, "DRYRUN"), "ERR BLOCK:")
	require.Contains(t, rtErr(t, c, "CHARON.RESERVE", "hd:{b}:k", "LIMIT", 1, "BLOCK", -1), "ERR BLOCK:")
	// A request that can never fit does not wait either.
	nv := hdRecv(t, hdAsync(t, w, "CHARON.RESERVE", "hd:{b}:k", "MAX", 2, "LIMIT", 1, "BLOCK", 0))
	require.NoError(t, nv.err)
	require.Equal(t, int64(-1), nv.r.int(t, "retry_after"))

	// The grants reached the replica and the AOF as plain RESERVEs with AT and ID (no
	// BLOCK: a replica never waits): equal values.
	harness.WaitReplicaSync(t, p, r)
	require.Equal(t, rtDigest(t, c), rtDigest(t, r.Client(t, harness.Protocol(2))))
	require.Equal(t, int64(0), hdWaiters(t, p))
	incr, err := filepath.Glob(filepath.Join(p.Dir(), "appendonlydir", "*.incr.aof"))
	require.NoError(t, err)
	require.NotEmpty(t, incr)
	var aof []byte
	for _, f := range incr {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		aof = append(aof, b...)
	}
	require.Contains(t, string(aof), "CHARON.RESERVE")
	require.NotContains(t, strings.ToUpper(string(aof)), "BLOCK")
	require.Contains(t, string(aof), "$2\r\nID\r\n")
}

// A killed blocked client leaks nothing, 1,000 times over (CLIENT KILL, a closed
// connection, CLIENT UNBLOCK ERROR in turn): no copy granted, no waiter left, the
// server unchanged and answering.
func TestHoldBlockKillRepeated(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	hdMust(t, c, "CHARON.RESERVE", "hd:{kill}:k", "LIMIT", 1, "GLOBAL", "hd:{kill}", 1, "LEASE", 3_600_000)
	d := rtDigest(t, c)
	for i := 0; i < 1000; i++ {
		conn, err := net.Dial("tcp", s.Addr())
		require.NoError(t, err)
		rd := bufio.NewReader(conn)
		_, err = conn.Write([]byte("*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n"))
		require.NoError(t, err)
		line, err := rd.ReadString('\n')
		require.NoError(t, err)
		id, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, ":")), 10, 64)
		require.NoError(t, err)
		args := []string{"CHARON.RESERVE", "hd:{kill}:k", "MAX", strconv.Itoa(1 + i%2), "MIN", "1", "LIMIT", "2", "GLOBAL", "hd:{kill}", "1", "BLOCK", "0"}
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		_, err = conn.Write([]byte(b.String()))
		require.NoError(t, err)
		hdWaitFor(t, s, 1)
		switch i % 3 {
		case 0:
			require.NoError(t, c.Do(ctx, "CLIENT", "KILL", "ID", id).Err())
		case 1:
			require.NoError(t, conn.Close())
		default:
			require.Equal(t, int64(1), c.Do(ctx, "CLIENT", "UNBLOCK", id, "ERROR").Val())
		}
		hdWaitFor(t, s, 0)
		_ = conn.Close()
	}
	require.Equal(t, d, rtDigest(t, c), "nothing was granted to a client that left")
	require.Equal(t, "1000", s.Info(t, "charon_reserve")["charon_reserve_waits"])
	require.Equal(t, "0", s.Info(t, "charon_reserve")["charon_reserve_wait_grants"])
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		n := s.Info(t, "clients")["blocked_clients"]
		return n == "0", n + " blocked clients"
	})
	require.Equal(t, int64(1), rtInspect(t, c, "hd:{kill}", rtNow())["held"])
}

// A client that goes away while waiting leaves nothing: CLIENT KILL, closing the
// connection, CLIENT UNBLOCK ERROR (all without a grant) and CLIENT UNBLOCK TIMEOUT
// (the rejection reply); the copies it waited for go to the next waiter.
func TestHoldBlockLeaves(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	a := hdMust(t, c, "CHARON.RESERVE", "hd:{x}:k", "LIMIT", 1, "LEASE", 600_000)
	d := rtDigest(t, c)

	killed := hdNewConn(t, s)
	kch := hdAsync(t, killed, "CHARON.RESERVE", "hd:{x}:k", "LIMIT", 1, "BLOCK", 0)
	hdWaitFor(t, s, 1)
	require.NoError(t, c.Do(ctx, "CLIENT", "KILL", "ID", killed.id).Err())
	require.Error(t, hdRecv(t, kch).err)
	hdWaitFor(t, s, 0)

	closed := hdRawBlock(t, s, "CHARON.RESERVE", "hd:{x}:k", "LIMIT", "1", "BLOCK", "0")
	hdWaitFor(t, s, 1)
	require.NoError(t, closed.Close())
	hdWaitFor(t, s, 0)

	unb := hdNewConn(t, s)
	uch := hdAsync(t, unb, "CHARON.RESERVE", "hd:{x}:k", "LIMIT", 1, "BLOCK", 0)
	hdWaitFor(t, s, 1)
	require.Equal(t, int64(1), c.Do(ctx, "CLIENT", "UNBLOCK", unb.id, "ERROR").Val())
	require.ErrorContains(t, hdRecv(t, uch).err, "UNBLOCKED")
	hdWaitFor(t, s, 0)

	uch = hdAsync(t, unb, "CHARON.RESERVE", "hd:{x}:k", "LIMIT", 1, "BLOCK", 0)
	hdWaitFor(t, s, 1)
	require.Equal(t, int64(1), c.Do(ctx, "CLIENT", "UNBLOCK", unb.id, "TIMEOUT").Val())
	ur := hdRecv(t, uch)
	require.NoError(t, ur.err)
	require.Equal(t, int64(0), ur.r.int(t, "granted"))
	hdWaitFor(t, s, 0)
	require.Equal(t, d, rtDigest(t, c), "nothing was written for the clients that left")
	require.Equal(t, "0", s.Info(t, "clients")["blocked_clients"])

	// The next waiter gets the copy when it frees.
	next := hdNewConn(t, s)
	nch := hdAsync(t, next, "CHARON.RESERVE", "hd:{x}:k", "LIMIT", 1, "BLOCK", 0)
	hdWaitFor(t, s, 1)
	hdMust(t, c, "CHARON.RELEASE", "hd:{x}:k", a.str("hold"))
	n := hdRecv(t, nch)
	require.NoError(t, n.err)
	require.Equal(t, int64(1), n.r.int(t, "granted"))
}

// First come, first served per key: a waiter that needs 2 copies is not passed by a
// later one that needs 1, blocking or not; a waiter held back by its own domain does
// not hold the shared pool for others.
func TestHoldBlockFIFO(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	a := hdMust(t, c, "CHARON.RESERVE", "hd:{q}:k", "MAX", 2, "LIMIT", 2, "LEASE", 600_000)
	big := hdNewConn(t, s)
	bch := hdAsync(t, big, "CHARON.RESERVE", "hd:{q}:k", "MAX", 2, "LIMIT", 2, "BLOCK", 20_000)
	hdWaitFor(t, s, 1)
	small := hdNewConn(t, s)
	sch := hdAsync(t, small, "CHARON.RESERVE", "hd:{q}:k", "MAX", 1, "LIMIT", 2, "BLOCK", 20_000)
	hdWaitFor(t, s, 2)

	// One copy frees: it fits the small one, but the big one came first.
	hdMust(t, c, "CHARON.RELEASE", "hd:{q}:k", a.str("hold"), "COPIES", 1)
	r := hdMust(t, c, "CHARON.RESERVE", "hd:{q}:k", "LIMIT", 2)
	require.Equal(t, int64(0), r.int(t, "granted"), "a new request waits behind the queue too")
	require.Equal(t, "domain", r.str("limited_by"))
	require.Equal(t, int64(2), hdWaiters(t, s))
	// The second copy frees: the big one gets both; the small one keeps waiting.
	hdMust(t, c, "CHARON.RELEASE", "hd:{q}:k", a.str("hold"))
	b := hdRecv(t, bch)
	require.NoError(t, b.err)
	require.Equal(t, int64(2), b.r.int(t, "granted"))
	hdWaitFor(t, s, 1)
	hdMust(t, c, "CHARON.RELEASE", "hd:{q}:k", b.r.str("hold"), "COPIES", 1)
	sm := hdRecv(t, sch)
	require.NoError(t, sm.err)
	require.Equal(t, int64(1), sm.r.int(t, "granted"))

	// A waiter held back by its own domain (LIMIT 1, full) does not stop another
	// domain from using the pool it shares.
	hdMust(t, c, "CHARON.RESERVE", "hd:{q}:d1", "LIMIT", 1, "GLOBAL", "hd:{q}", 10, "LEASE", 600_000)
	own := hdNewConn(t, s)
	_ = hdAsync(t, own, "CHARON.RESERVE", "hd:{q}:d1", "LIMIT", 1, "GLOBAL", "hd:{q}", 10, "BLOCK", 20_000)
	hdWaitFor(t, s, 1)
	o := hdMust(t, c, "CHARON.RESERVE", "hd:{q}:d2", "MAX", 5, "LIMIT", 5, "GLOBAL", "hd:{q}", 10)
	require.Equal(t, int64(5), o.int(t, "granted"))
}

// waitsOf reads INFO's count of requests that have waited, without failing the test
// (goroutines must not).
func waitsOf(c *redis.Client) (int64, error) {
	info, err := c.Info(context.Background(), "charon_reserve").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "charon_reserve_waits:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO charon_reserve has no charon_reserve_waits")
}

// 200 goroutines contend for a limit of 5 with random hold times and BLOCK 2 s; one
// request in ten asks for all 5 copies. Requests enter one at a time through a gate
// that waits until the server has either answered or blocked each, so the test knows
// the server's arrival order. Never more than 5 copies are held (counted by the
// clients, which count a copy from its grant until before its release is sent, and
// sampled with INSPECT); grants come in arrival order (fences increase with arrival:
// 0 overtakes); the 5-copy requests are all granted (none starves behind 1-copy ones).
func TestHoldBlockContention(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	const (
		workers = 200
		limit   = 5
		key     = "hd:{cont}:k"
	)
	dur := 6 * time.Second
	pool := s.Client(t, harness.Protocol(2), func(o *redis.Options) {
		o.PoolSize = workers + 10
		o.ReadTimeout = 10 * time.Second
	})
	ctl := s.Client(t, harness.Protocol(2))

	type outcome struct {
		seq, copies, fence int64
		waited, granted    bool
		wait               time.Duration
	}
	var (
		gate     sync.Mutex
		seq      int64
		held     atomic.Int64
		maxHeld  atomic.Int64
		mu       sync.Mutex
		outcomes []outcome
	)
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 99))
			for time.Now().Before(deadline) {
				copies := int64(1)
				if r.IntN(10) == 0 {
					copies = limit
				}
				gate.Lock()
				seq++
				my := seq
				waitsBefore, err := waitsOf(ctl)
				if err != nil {
					gate.Unlock()
					errs <- err
					return
				}
				start := time.Now()
				ch := make(chan hdResult, 1)
				go func() {
					v, err := pool.Do(ctx, "CHARON.RESERVE", key, "MAX", copies, "LIMIT", limit, "LEASE", 30_000, "BLOCK", 2000).Slice()
					res := hdResult{err: err, at: time.Now()}
					if err == nil {
						res.r = hdReply{}
						for i, n := range hdReserveFields {
							res.r[n] = v[i]
						}
					}
					ch <- res
				}()
				// The request has arrived when it is answered or has blocked.
				var res hdResult
				answered, waited := false, false
				for !answered && !waited {
					select {
					case res = <-ch:
						answered = true
					default:
						n, err := waitsOf(ctl)
						if err != nil {
							gate.Unlock()
							errs <- err
							return
						}
						waited = n > waitsBefore
						if !waited {
							time.Sleep(200 * time.Microsecond)
						}
					}
				}
				gate.Unlock()
				if !answered {
					res = <-ch
				}
				if res.err != nil {
					errs <- res.err
					return
				}
				o := outcome{seq: my, copies: copies, waited: waited, wait: res.at.Sub(start)}
				if res.r["hold"] != nil {
					o.granted = true
					o.fence = res.r["fence"].(int64)
					n := held.Add(copies)
					for m := maxHeld.Load(); n > m && !maxHeld.CompareAndSwap(m, n); m = maxHeld.Load() {
					}
					time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
					held.Add(-copies)
					if err := pool.Do(ctx, "CHARON.RELEASE", key, res.r["hold"]).Err(); err != nil {
						errs <- err
						return
					}
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		}(g)
	}
	// The server's own count, sampled.
	var serverMax int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if v, err := ctl.Do(ctx, "CHARON.INSPECT", key).Result(); err == nil && v != nil {
				if m, err := harness.ReplyMap(v); err == nil {
					serverMax = max(serverMax, m["held"].(int64))
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	sort.Slice(outcomes, func(i, j int) bool { return outcomes[i].seq < outcomes[j].seq })
	var grants, waitedN, timeouts, overtakes, big, bigGranted int
	var maxFence int64
	var bigWait, maxWait time.Duration
	for _, o := range outcomes {
		if o.waited {
			waitedN++
		}
		if o.copies == limit {
			big++
		}
		if !o.granted {
			timeouts++
			continue
		}
		grants++
		if o.copies == limit {
			bigGranted++
			bigWait = max(bigWait, o.wait)
		}
		maxWait = max(maxWait, o.wait)
		if o.fence < maxFence {
			overtakes++ // an earlier arrival was granted after this one
		}
		maxFence = max(maxFence, o.fence)
	}
	t.Logf("%d requests from %d goroutines in %v: %d granted (%d waited first), %d timed out; %d overtakes; "+
		"most copies held: %d by the clients' count, %d sampled on the server; 5-copy requests: %d, %d granted, longest wait %v; longest wait %v",
		len(outcomes), workers, dur, grants, waitedN, timeouts, overtakes, maxHeld.Load(), serverMax, big, bigGranted, bigWait, maxWait)
	require.LessOrEqual(t, maxHeld.Load(), int64(limit))
	require.LessOrEqual(t, serverMax, int64(limit))
	require.Zero(t, overtakes, "waiters of one key are served in arrival order")
	require.Positive(t, big)
	require.Equal(t, big, bigGranted, "no 5-copy request starves behind 1-copy requests")
	require.Positive(t, waitedN)
	hdWaitFor(t, s, 0)
}
