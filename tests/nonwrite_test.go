//go:build integration

package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/tests/harness"
)

// A request that changes nothing writes nothing (spec, Storage; issue 9): no WATCH
// abort, no client-side-caching invalidation, no keyspace event. A real write signals
// each key it wrote once and raises one module keyspace event (class 'd') per key,
// named after the command. Helpers are prefixed nw.

// nwConn is a raw RESP2 connection for what go-redis does not expose: the id of a
// connection that then subscribes, and every message it receives, in order.
type nwConn struct {
	c net.Conn
	r *bufio.Reader
}

func nwDial(t *testing.T, s *harness.Server) *nwConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &nwConn{c: c, r: bufio.NewReader(c)}
}

func (n *nwConn) send(t *testing.T, args ...string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	require.NoError(t, n.c.SetWriteDeadline(time.Now().Add(5*time.Second)))
	_, err := n.c.Write([]byte(b.String()))
	require.NoError(t, err)
}

// read reads one RESP2 value: string, int64, error, nil or []any.
func (n *nwConn) read(t *testing.T) any {
	t.Helper()
	require.NoError(t, n.c.SetReadDeadline(time.Now().Add(10*time.Second)))
	v, err := nwParse(n.r)
	require.NoError(t, err)
	return v
}

func nwParse(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return errors.New(line[1:]), nil
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = nwParse(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected RESP line %q", line)
}

// nwProbe watches a server for signals: a REDIRECT target of a BCAST tracking client
// (every invalidation of any key), subscribed to module keyspace events, and a
// client whose WATCH is checked after each action.
type nwProbe struct {
	s     *harness.Server
	ctl   *redis.Client
	sub   *nwConn
	watch *redis.Client
	fence int
}

// nwSignal is one observed signal: "invalidate <key>" or "<event> <key>".
type nwSignal = string

func nwStartProbe(t *testing.T, s *harness.Server) *nwProbe {
	t.Helper()
	ctx := context.Background()
	p := &nwProbe{s: s, ctl: s.Client(t), sub: nwDial(t, s)}
	p.watch = s.Client(t, func(o *redis.Options) { o.PoolSize = 1 })
	// Module keyspace events, keyevent form: __keyevent@0__:<event> <key>.
	require.NoError(t, p.ctl.ConfigSet(ctx, "notify-keyspace-events", "Ed").Err())
	p.sub.send(t, "CLIENT", "ID")
	id, ok := p.sub.read(t).(int64)
	require.True(t, ok)
	p.sub.send(t, "SUBSCRIBE", "__redis__:invalidate")
	p.sub.read(t)
	p.sub.send(t, "PSUBSCRIBE", "__keyevent@*__:*")
	p.sub.read(t)
	// A tracking client in BCAST mode, redirected to sub: every change of any key.
	tracker := s.Client(t, func(o *redis.Options) {
		o.PoolSize = 1
		o.Protocol = 2
		o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
			return cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST").Err()
		}
	})
	require.NoError(t, tracker.Ping(ctx).Err())
	return p
}

// drain returns the signals up to a fence: a SET of a fresh key, whose invalidation
// is the last thing sub receives for this step.
func (p *nwProbe) drain(t *testing.T) []nwSignal {
	t.Helper()
	p.fence++
	fence := fmt.Sprintf("nw:fence:%d", p.fence)
	require.NoError(t, p.ctl.Set(context.Background(), fence, "1", 0).Err())
	var out []nwSignal
	for {
		msg, ok := p.sub.read(t).([]any)
		require.True(t, ok, "a pub/sub message")
		switch msg[0] {
		case "message": // invalidation: [message __redis__:invalidate [keys...]]
			keys, _ := msg[2].([]any)
			for _, k := range keys {
				if k == fence {
					return out
				}
				out = append(out, "invalidate "+k.(string))
			}
		case "pmessage": // [pmessage pattern __keyevent@0__:<event> key]
			ch := msg[2].(string)
			out = append(out, ch[strings.Index(ch, ":")+1:]+" "+msg[3].(string))
		}
	}
}

// check runs action with keys WATCHed by another client and requires exactly the
// signals want (invalidations and events, in any order); a WATCH survives only when
// nothing was written.
func (p *nwProbe) check(t *testing.T, what string, keys []string, action func(c *redis.Client), want ...nwSignal) {
	t.Helper()
	ctx := context.Background()
	p.drain(t) // nothing left over from setup
	err := p.watch.Watch(ctx, func(tx *redis.Tx) error {
		action(p.ctl)
		_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Ping(ctx)
			return nil
		})
		return err
	}, keys...)
	if len(want) == 0 {
		require.NoError(t, err, "%s: MULTI/PING/EXEC after WATCH %v must not be aborted", what, keys)
	} else {
		require.ErrorIs(t, err, redis.TxFailedErr, "%s: a real write must abort WATCH %v", what, keys)
	}
	require.ElementsMatch(t, want, p.drain(t), "%s: signals", what)
}

func nwDo(t *testing.T, args ...any) func(c *redis.Client) {
	return func(c *redis.Client) {
		t.Helper()
		_ = c.Do(context.Background(), args...).Err()
	}
}

func nwMustErr(t *testing.T, prefix string, args ...any) func(c *redis.Client) {
	return func(c *redis.Client) {
		t.Helper()
		err := c.Do(context.Background(), args...).Err()
		require.Error(t, err, "%v", args)
		require.True(t, strings.HasPrefix(err.Error(), prefix), "%v: %v", args, err)
	}
}

func nwGranted(t *testing.T, want int64, args ...any) func(c *redis.Client) {
	return func(c *redis.Client) {
		t.Helper()
		f := rtFields(t, c.Do(context.Background(), args...).Val(), 3)
		require.Equal(t, want, f[0], "granted: %v", args)
	}
}

func TestNonWriteRate(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	p := nwStartProbe(t, s)
	ctx := context.Background()
	base := rtNow() + 60_000
	const k, g = "rl:{x}:k", "rl:{x}"
	two := []string{"TIER", "2", "1000", "1000", "0"}
	req := func(at int64, extra ...string) []any { return rtCmd(k, at, rtCat(extra, two)...) }
	keys := []string{k, g}

	// A grant writes the key: one invalidation, one event.
	p.check(t, "grant", keys, nwGranted(t, 2, req(base, "MAX", "2")...), "invalidate "+k, "charon.rate "+k)
	// With GLOBAL, both keys: one of each per key.
	p.check(t, "grant with GLOBAL", keys, nwGranted(t, 1, rtCmd("rl:{x}:j", base, rtCat([]string{"GLOBAL", g, "10"}, two)...)...),
		"invalidate rl:{x}:j", "charon.rate rl:{x}:j", "invalidate "+g, "charon.rate "+g)

	// Every non-writing outcome: no signal, WATCH survives.
	p.check(t, "rejected", keys, nwGranted(t, 0, req(base+1)...))
	p.check(t, "rejected with GLOBAL", keys, nwGranted(t, 0, rtCmd(k, base+1, rtCat([]string{"GLOBAL", g, "10"}, two)...)...))
	p.check(t, "DRYRUN", keys, nwGranted(t, 1, rtCmd("rl:{x}:fresh", base, rtCat([]string{"DRYRUN"}, two)...)...))
	p.check(t, "DRYRUN on the key", keys, nwGranted(t, 0, req(base+2, "DRYRUN")...))
	p.check(t, "CLOSED", keys, nwGranted(t, 0, rtCmd(k, base+3, "CLOSED")...))
	p.check(t, "MIN 0 granting 0", keys, nwGranted(t, 0, req(base+3, "MIN", "0")...))
	p.check(t, "no TIER", keys, nwMustErr(t, "ERR TIER:", rtCmd(k, base+3, "MAX", "1")...))
	p.check(t, "bad argument", keys, nwMustErr(t, "ERR MAX:", req(base+3, "MAX", "0")...))
	p.check(t, "AT in seconds", keys, nwMustErr(t, "ERR AT:", req(rtNow()/1000)...))
	p.check(t, "CLOCK from a client", keys, nwMustErr(t, "ERR CLOCK:", req(base+3, "CLOCK", "5")...))
	require.NoError(t, p.ctl.Set(ctx, "rl:{x}:str", "v", 0).Err())
	p.drain(t)
	p.check(t, "WRONGTYPE on the GLOBAL key", []string{k, "rl:{x}:str"},
		nwMustErr(t, "WRONGTYPE", rtCmd(k, base+5000, rtCat([]string{"GLOBAL", "rl:{x}:str", "10"}, two)...)...))
	p.check(t, "WRONGTYPE on the key", []string{"rl:{x}:str"}, nwMustErr(t, "WRONGTYPE", rtCmd("rl:{x}:str", base, two...)...))
	p.check(t, "global key used as a domain key", keys, nwMustErr(t, "WRONGTYPE", rtCmd(g, base+5000, two...)...))
	p.check(t, "INSPECT", keys, nwDo(t, "CHARON.INSPECT", k))

	// CHARON.LOADVALUE: a refused payload writes nothing; a stored one signals once.
	dump, err := p.ctl.Do(ctx, "CHARON.INSPECT", k).Result()
	require.NoError(t, err)
	require.NotNil(t, dump)
	val := rtValueOf(t, p.ctl, k)
	p.check(t, "LOADVALUE refused", []string{"rl:{x}:copy"}, nwMustErr(t, "ERR payload:", "CHARON.LOADVALUE", "rl:{x}:copy", "junk"))
	p.check(t, "LOADVALUE", []string{"rl:{x}:copy"}, nwDo(t, "CHARON.LOADVALUE", "rl:{x}:copy", string(val)),
		"invalidate rl:{x}:copy", "charon.loadvalue rl:{x}:copy")
}

func TestNonWriteUnread(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	p := nwStartProbe(t, s)
	ctx := context.Background()
	const k = "user_id{1}"
	keys := []string{k}
	p.check(t, "MARK", keys, nwDo(t, "UNREAD.MARK", k, "c1", "3"), "invalidate "+k, "unread.mark "+k)
	p.check(t, "MARK bad count", keys, nwMustErr(t, "ERR count:", "UNREAD.MARK", k, "c1", "0"))
	p.check(t, "MARK arity", keys, nwMustErr(t, "ERR wrong number", "UNREAD.MARK", k))
	p.check(t, "READ of nothing unread", keys, nwDo(t, "UNREAD.READ", k, "c9", "c8"))
	p.check(t, "READ of a missing key", []string{"user_id{2}"}, nwDo(t, "UNREAD.READ", "user_id{2}", "c1"))
	p.check(t, "COUNT", keys, nwDo(t, "UNREAD.COUNT", k))
	require.NoError(t, p.ctl.Set(ctx, "user_id{3}", "v", 0).Err())
	p.drain(t)
	p.check(t, "MARK WRONGTYPE", []string{"user_id{3}"}, nwMustErr(t, "WRONGTYPE", "UNREAD.MARK", "user_id{3}", "c1"))
	p.check(t, "READ WRONGTYPE", []string{"user_id{3}"}, nwMustErr(t, "WRONGTYPE", "UNREAD.READ", "user_id{3}", "c1"))
	p.check(t, "MARK another", keys, nwDo(t, "UNREAD.MARK", k, "c2"), "invalidate "+k, "unread.mark "+k)
	// Several removals in one READ: one signal, one event.
	p.check(t, "READ", keys, nwDo(t, "UNREAD.READ", k, "c1", "c9", "c2"), "invalidate "+k, "unread.read "+k)
	require.Equal(t, int64(0), p.ctl.Exists(ctx, k).Val(), "an emptied set is deleted")
}

// TestRateBehindServerClock: requests an hour behind the server's clock (a replay, a
// lagging client clock) keep limiting; the key lives for reset_after on the server's
// clock, and the replica and the AOF get the same absolute expiry.
func TestRateBehindServerClock(t *testing.T) {
	t.Parallel()
	primary, replica := harness.StartPrimaryReplica(t, harness.Options{Config: []string{"appendonly yes"}})
	p := primary.Client(t)
	ctx := context.Background()
	tier := []string{"LIMITS", "5/1m"}
	at := rtNow() - 3_600_000
	before := rtNow()
	var granted int64
	for i := range 8 {
		f := rtFields(t, p.Do(ctx, rtCmd("rl:{b}:k", at+int64(i), rtCat([]string{"GLOBAL", "rl:{b}", "100"}, tier)...)...).Val(), 3)
		granted += f[0]
	}
	after := rtNow()
	require.Equal(t, int64(5), granted, "an hour behind the server clock, the limit still holds")
	exp := rtPExpireTime(t, p, "rl:{b}:k")
	// The last grant was at at+4 with reset_after 60001 on the AT time line: on the
	// server's clock the key lives 60001 ms from the moment of that request.
	require.GreaterOrEqual(t, exp, before+60_001-4)
	require.LessOrEqual(t, exp, after+60_001)
	gexp := rtPExpireTime(t, p, "rl:{b}")
	require.GreaterOrEqual(t, gexp, before+1001-4)
	require.LessOrEqual(t, gexp, after+1001)

	harness.WaitReplicaSync(t, primary, replica)
	r := replica.Client(t)
	for _, k := range []string{"rl:{b}:k", "rl:{b}"} {
		require.Equal(t, rtPExpireTime(t, p, k), rtPExpireTime(t, r, k), "%s: the replica's absolute expiry", k)
		require.Equal(t, rtDigestValue(t, p, k), rtDigestValue(t, r, k), "%s: DIGEST-VALUE", k)
	}
	require.Equal(t, rtDigest(t, p), rtDigest(t, r))

	// The AOF replays the same expiry: reload it and compare.
	require.NoError(t, p.Do(ctx, "DEBUG", "LOADAOF").Err())
	require.Equal(t, exp, rtPExpireTime(t, p, "rl:{b}:k"), "the AOF's absolute expiry")
	f := rtFields(t, p.Do(ctx, rtCmd("rl:{b}:k", at+10, tier...)...).Val(), 3)
	require.Equal(t, int64(0), f[0], "still limited after the AOF reload")
}

func TestRateErrorTexts(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t)
	ctx := context.Background()
	for _, tc := range []struct {
		args []any
		want string
	}{
		{rtCmd("rl:{e}:k", 1800000000, "TIER", "5", "1000", "1000", "0"),
			"ERR AT: must be Unix time in milliseconds; 1800000000 lies in 1970 as milliseconds and within 10 years of the server clock as seconds: multiply it by 1000"},
		{[]any{"CHARON.RATE", "rl:{e}:k", "MAX", "5"}, "ERR TIER: no limits given: add TIER clauses or LIMITS, or say CLOSED to reject every request"},
		{[]any{"CHARON.RATE", "rl:{e}:k", "GLOBAL", "rl:{e}", "TIER", "5", "1000", "1000", "0"}, `ERR GLOBAL: takes a key and a limit, or a key and caps: GLOBAL gkey n, GLOBAL gkey "5000/1s, 2000000/1d"`},
		{[]any{"CHARON.RATE", "rl:{e}:k", "LIMITS", "10/1s", "TIER", "5", "1000", "1000", "0"}, "ERR LIMITS: use either LIMITS or TIER clauses, not both"},
		{[]any{"CHARON.RATE", "rl:{e}:k", "LIMITS", "10/1s, 5/0s"},
			"ERR LIMITS tier 2 window: must be a duration between 1 and 315360000000 ms (digits, then ms, s, m, h, d or nothing for ms)"},
		{[]any{"CHARON.RATE", "rl:{e}:k", "LIMITS", "10/1s, 50/5s/5s/15"},
			"ERR LIMITS tier 2 cooldown: 15 has no unit while other durations have one: write 15s or 15ms (a bare number means ms only when no duration has a unit)"},
		{[]any{"CHARON.RATE", "rl:{e}:k", "LIMITS", "18446744073709551617/1s"}, "ERR LIMITS tier 1 limit: must be an integer between 0 and 1000000000000"},
		{[]any{"CHARON.RATE", "rl:{e}:k", "LIMITS", "5/18446744073709552616"},
			"ERR LIMITS tier 1 window: must be a duration between 1 and 315360000000 ms (digits, then ms, s, m, h, d or nothing for ms)"},
		{[]any{"CHARON.DEBUG", strings.Repeat("A", 5000)}, "ERR subcommand: must be RUNTIME or PANIC, got '" + strings.Repeat("A", 32) + "...'"},
		{[]any{"CHARON.DEBUG", "RUN\x00TIME\r\nx"}, "ERR subcommand: must be RUNTIME or PANIC, got 'RUN?TIME??x'"},
	} {
		err := c.Do(ctx, tc.args...).Err()
		require.EqualError(t, err, tc.want, "%q", tc.args)
	}
	// AT in seconds refused eight times: nothing stored, nothing granted.
	require.Equal(t, int64(0), c.Exists(ctx, "rl:{e}:k").Val())
	// Small AT values (simulations from 0) stay valid.
	require.Equal(t, int64(1), rtFields(t, c.Do(ctx, rtCmd("rl:{e}:sim", 5, "LIMITS", "5/1s")...).Val(), 3)[0])

	// The 64 MiB cap is named.
	big := strings.Repeat("x", 64<<20+1)
	err := c.Do(ctx, "CHARON.LOADVALUE", "rl:{e}:big", big).Err()
	require.EqualError(t, err, "ERR payload: a charon-rl value of 67108865 bytes exceeds the 64 MiB cap on a value; nothing was written")
	require.Equal(t, int64(0), c.Exists(ctx, "rl:{e}:big").Val())

	// Loading the module a second time is refused with a reason in the log.
	require.Error(t, c.Do(ctx, "MODULE", "LOAD", harness.ModulePath(t)).Err())
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		return s.LogContains("a module named 'charon' is already loaded"), "the log says why the second load was refused"
	})
	require.NoError(t, c.Ping(ctx).Err())
}

// TestRatePropagatedForms: what a grant sends replicas and the AOF. A request without
// AT gets the time it used appended; one with AT goes verbatim (AT already makes it
// deterministic); one whose AT lies behind the server clock keeps its AT and gets
// CLOCK appended, so that the expiry is the same everywhere.
func TestRatePropagatedForms(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{Config: []string{"appendonly yes"}})
	c := s.Client(t)
	ctx := context.Background()
	ahead := rtNow() + 60_000
	behind := rtNow() - 3_600_000
	require.Equal(t, int64(1), rtFields(t, c.Do(ctx, "CHARON.RATE", "rl:{f}:bare", "LIMITS", "5/1m").Val(), 3)[0])
	require.Equal(t, int64(1), rtFields(t, c.Do(ctx, rtCmd("rl:{f}:ahead", ahead, "LIMITS", "5/1m")...).Val(), 3)[0])
	require.Equal(t, int64(1), rtFields(t, c.Do(ctx, rtCmd("rl:{f}:behind", behind, "LIMITS", "5/1m")...).Val(), 3)[0])
	resp := func(args ...string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		return b.String()
	}
	var aof string
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		incr, err := filepath.Glob(filepath.Join(s.Dir(), "appendonlydir", "*.incr.aof"))
		require.NoError(t, err)
		aof = ""
		for _, f := range incr {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			aof += string(b)
		}
		return strings.Count(aof, "CHARON.RATE") == 3, "the AOF holds the three grants"
	})
	ms := `\$13\r\n\d{13}\r\n`
	bare := resp("CHARON.RATE", "rl:{f}:bare", "LIMITS", "5/1m", "AT")
	require.Regexp(t, regexp.QuoteMeta("*6"+bare[2:])+ms, aof, "a bare request gets AT appended")
	require.Contains(t, aof, resp("CHARON.RATE", "rl:{f}:ahead", "AT", strconv.FormatInt(ahead, 10), "LIMITS", "5/1m"),
		"a request with AT goes verbatim")
	late := resp("CHARON.RATE", "rl:{f}:behind", "LIMITS", "5/1m", "AT", strconv.FormatInt(behind, 10), "CLOCK")
	require.Regexp(t, regexp.QuoteMeta("*8"+late[2:])+ms, aof, "a request behind the clock keeps AT and gets CLOCK")
}

// TestRateLimitsForm: the compact form answers and stores exactly what the TIER form
// does, and is replicated as sent.
func TestRateLimitsForm(t *testing.T) {
	t.Parallel()
	primary, replica := harness.StartPrimaryReplica(t, harness.Options{Config: []string{"appendonly yes"}})
	c := primary.Client(t)
	ctx := context.Background()
	base := rtNow() + 60_000
	full := []string{"TIER", "10", "1000", "1000", "0", "TIER", "50", "5000", "5000", "15000", "TIER", "1000", "60000", "60000", "600000"}
	compact := []string{"LIMITS", "10/1s, 50/5s/5s/15s, 1000/1m/1m/10m"}
	grants := 0
	for i := range 40 {
		at := base + int64(i*37)
		opts := []string{"MAX", strconv.Itoa(1 + i%7), "MIN", "0"}
		a := rtFields(t, c.Do(ctx, rtCmd("rl:{l}:tier", at, rtCat(opts, full)...)...).Val(), 3)
		b := rtFields(t, c.Do(ctx, rtCmd("rl:{l}:limits", at, rtCat(opts, compact)...)...).Val(), 3)
		require.Equal(t, a, b, "request %d", i)
		if a[0] > 0 {
			grants++
		}
	}
	require.Equal(t, rtValueOf(t, c, "rl:{l}:tier"), rtValueOf(t, c, "rl:{l}:limits"), "identical stored values")
	require.Equal(t, rtPExpireTime(t, c, "rl:{l}:tier"), rtPExpireTime(t, c, "rl:{l}:limits"))
	harness.WaitReplicaSync(t, primary, replica)
	require.Equal(t, rtDigest(t, c), rtDigest(t, replica.Client(t)))
	// The AOF (fed like the replicas) holds the compact form as sent, once per grant in
	// either form: these requests carry AT, so they are propagated verbatim. The server writes the AOF after replying (Valkey 9
	// later than Redis), so read it until every grant is there.
	var aof []byte
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		incr, err := filepath.Glob(filepath.Join(primary.Dir(), "appendonlydir", "*.incr.aof"))
		require.NoError(t, err)
		aof = aof[:0]
		for _, f := range incr {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			aof = append(aof, b...)
		}
		nl, nt := strings.Count(string(aof), "$6\r\nLIMITS\r\n"), strings.Count(string(aof), "$4\r\nTIER\r\n$2\r\n10\r\n")
		return nl == grants && nt == grants, fmt.Sprintf("AOF holds %d LIMITS and %d TIER commands, want %d of each", nl, nt, grants)
	})
	require.Positive(t, grants)
	require.Contains(t, string(aof), "$11\r\nCHARON.RATE\r\n$13\r\nrl:{l}:limits\r\n$2\r\nAT\r\n")
	require.Contains(t, string(aof), "$6\r\nLIMITS\r\n$35\r\n10/1s, 50/5s/5s/15s, 1000/1m/1m/10m\r\n*")
}
