//go:build integration

package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// hdT0 is the documentation's base time (2100-01-01T00:00:00Z): far ahead of the real
// clock, so keys built at it never expire during a test.
const hdT0 = int64(4102444800000)

var (
	hdReserveFields  = []string{"granted", "hold", "held", "limit", "global_held", "limited_by", "deadline", "retry_after", "fence"}
	hdReleaseFields  = []string{"copies", "remaining", "deadline", "held"}
	hdSeizeFields    = []string{"copies", "remaining", "deadline", "held", "fence"}
	hdTransferFields = []string{"copies", "hold", "deadline", "remaining", "held"}
)

// hdReply is a reply of one of the hold commands, by field name.
type hdReply map[string]any

func (r hdReply) int(t testing.TB, name string) int64 {
	t.Helper()
	v, ok := r[name].(int64)
	require.True(t, ok, "field %s = %#v", name, r[name])
	return v
}

func (r hdReply) str(name string) string {
	s, _ := r[name].(string)
	return s
}

// hdDo runs a hold command (RESP2) and names the fields of its reply.
func hdDo(t testing.TB, c rtConn, args ...any) (hdReply, error) {
	t.Helper()
	v, err := c.Do(context.Background(), args...).Slice()
	if err != nil {
		return nil, err
	}
	var names []string
	switch strings.ToUpper(args[0].(string)) {
	case "CHARON.RESERVE":
		names = hdReserveFields
	case "CHARON.TRANSFER":
		names = hdTransferFields
	case "CHARON.SEIZE":
		names = hdSeizeFields
	default:
		names = hdReleaseFields
	}
	require.Len(t, v, len(names), "%v: reply %#v", args, v)
	r := hdReply{}
	for i, n := range names {
		r[n] = v[i]
	}
	return r, nil
}

func hdMust(t testing.TB, c rtConn, args ...any) hdReply {
	t.Helper()
	r, err := hdDo(t, c, args...)
	require.NoError(t, err, "%v", args)
	return r
}

func TestHoldReserveReplies(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()

	r := hdMust(t, c, "CHARON.RESERVE", "hd:{db}:alice", "MAX", 3, "LIMIT", 5, "GLOBAL", "hd:{db}", 6, "AT", hdT0)
	require.Equal(t, int64(3), r.int(t, "granted"))
	require.Len(t, r.str("hold"), 16)
	require.Equal(t, int64(3), r.int(t, "held"))
	require.Equal(t, int64(5), r.int(t, "limit"))
	require.Equal(t, int64(3), r.int(t, "global_held"))
	require.Equal(t, "none", r.str("limited_by"))
	require.Equal(t, hdT0+60_000, r.int(t, "deadline"), "LEASE defaults to 60000")
	require.Equal(t, int64(0), r.int(t, "retry_after"))
	// Each key expires at its latest deadline + 1 ms.
	require.Equal(t, hdT0+60_001, rtPExpireTime(t, c, "hd:{db}:alice"))
	require.Equal(t, hdT0+60_001, rtPExpireTime(t, c, "hd:{db}"))
	require.Equal(t, "charon-hd", c.Type(ctx, "hd:{db}:alice").Val())

	// MIN 1: the global pool cuts MAX.
	r = hdMust(t, c, "CHARON.RESERVE", "hd:{db}:bob", "MAX", 5, "MIN", 1, "LIMIT", 5, "GLOBAL", "hd:{db}", 6, "LEASE", 1000, "AT", hdT0+1)
	require.Equal(t, int64(3), r.int(t, "granted"))
	require.Equal(t, "global", r.str("limited_by"))
	require.Equal(t, int64(6), r.int(t, "global_held"))
	bob := r.str("hold")

	// Rejected: null hold, retry_after until bob's copies end.
	r = hdMust(t, c, "CHARON.RESERVE", "hd:{db}:carol", "LIMIT", 5, "GLOBAL", "hd:{db}", 6, "AT", hdT0+2)
	require.Equal(t, int64(0), r.int(t, "granted"))
	require.Nil(t, r["hold"])
	require.Equal(t, int64(999), r.int(t, "retry_after"))
	require.Equal(t, int64(0), c.Exists(ctx, "hd:{db}:carol").Val(), "a rejection creates no key")
	// MIN above a limit: never.
	r = hdMust(t, c, "CHARON.RESERVE", "hd:{db}:carol", "MAX", 7, "LIMIT", 10, "GLOBAL", "hd:{db}", 6, "AT", hdT0+2)
	require.Equal(t, int64(-1), r.int(t, "retry_after"))

	// A group: limited_by names its position.
	r = hdMust(t, c, "CHARON.RESERVE", "hd:{db}:dave", "MAX", 2, "MIN", 0, "LIMIT", 5, "AT", hdT0+3, "GROUP", "hd:{db}:g1", 10, "hd:{db}:g2", 1)
	require.Equal(t, int64(1), r.int(t, "granted"))
	require.Equal(t, "group:2", r.str("limited_by"))
	require.Equal(t, int64(-1), r.int(t, "global_held"))

	// RESP3: a map with the same names.
	c3 := s.Client(t, harness.Protocol(3))
	m, err := c3.Do(ctx, "CHARON.RESERVE", "hd:{db}:erin", "LIMIT", 1, "DRYRUN", "AT", hdT0+4).Result()
	require.NoError(t, err)
	mm, ok := m.(map[any]any)
	require.True(t, ok, "%#v", m)
	for _, n := range hdReserveFields {
		require.Contains(t, mm, n)
	}
	require.Equal(t, int64(1), mm["granted"])
	require.Nil(t, mm["hold"], "DRYRUN creates no hold")
	require.Equal(t, int64(0), c.Exists(ctx, "hd:{db}:erin").Val())

	// Release some of bob's copies, renew, transfer, seize, release all.
	r = hdMust(t, c, "CHARON.RELEASE", "hd:{db}:bob", bob, "COPIES", 1, "GLOBAL", "hd:{db}", "AT", hdT0+5)
	require.Equal(t, []int64{1, 2, hdT0 + 1001, 2}, []int64{r.int(t, "copies"), r.int(t, "remaining"), r.int(t, "deadline"), r.int(t, "held")})
	r = hdMust(t, c, "CHARON.RENEW", "hd:{db}:bob", bob, "LEASE", 5000, "GLOBAL", "hd:{db}", "AT", hdT0+6)
	require.Equal(t, hdT0+5006, r.int(t, "deadline"))
	x := hdMust(t, c, "CHARON.TRANSFER", "hd:{db}:bob", bob, "COPIES", 1, "TTL", 100, "GLOBAL", "hd:{db}", "AT", hdT0+7)
	require.Equal(t, int64(1), x.int(t, "copies"))
	require.Equal(t, int64(1), x.int(t, "remaining"))
	require.Equal(t, hdT0+107, x.int(t, "deadline"))
	require.NotEqual(t, bob, x.str("hold"))
	r = hdMust(t, c, "CHARON.SEIZE", "hd:{db}:bob", x.str("hold"), "LEASE", 2000, "GLOBAL", "hd:{db}", "AT", hdT0+8)
	require.Equal(t, []int64{1, 1, hdT0 + 2008, 2}, []int64{r.int(t, "copies"), r.int(t, "remaining"), r.int(t, "deadline"), r.int(t, "held")})
	// Releasing an unknown hold: 0 copies, no error, nothing written.
	d := rtDigest(t, c)
	r = hdMust(t, c, "CHARON.RELEASE", "hd:{db}:bob", "00000000000000ff", "GLOBAL", "hd:{db}", "AT", hdT0+9)
	require.Equal(t, int64(0), r.int(t, "copies"))
	require.Equal(t, d, rtDigest(t, c))
	// Renewing a lost hold: LOST.
	_, err = hdDo(t, c, "CHARON.RENEW", "hd:{db}:bob", "00000000000000ff", "AT", hdT0+9)
	require.ErrorContains(t, err, "LOST")
	require.Equal(t, d, rtDigest(t, c))

	// INSPECT explains a hold key.
	info := rtInspect(t, c, "hd:{db}:bob", hdT0+10)
	require.Equal(t, "holds", info["kind"])
	require.Equal(t, int64(2), info["held"])
	require.Equal(t, int64(2), info["live_holds"])
	holds, ok := info["holds"].([]any)
	require.True(t, ok)
	require.Len(t, holds, 2)
}

// Leases free copies at their deadline and not a millisecond before; a clock that
// steps back (AT earlier than what the keys stored) never frees a hold early.
func TestHoldLeases(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	key := "hd:{lease}:a"
	r := hdMust(t, c, "CHARON.RESERVE", key, "MAX", 2, "LIMIT", 2, "LEASE", 1000, "AT", hdT0)
	require.Equal(t, int64(2), r.int(t, "granted"))
	for _, at := range []int64{hdT0, hdT0 + 1, hdT0 + 500, hdT0 + 999} {
		r = hdMust(t, c, "CHARON.RESERVE", key, "LIMIT", 2, "AT", at)
		require.Equal(t, int64(0), r.int(t, "granted"), "at +%d", at-hdT0)
		require.Equal(t, hdT0+1000-at, r.int(t, "retry_after"), "at +%d", at-hdT0)
	}
	r = hdMust(t, c, "CHARON.RESERVE", key, "LIMIT", 2, "LEASE", 1000, "AT", hdT0+1000)
	require.Equal(t, int64(1), r.int(t, "granted"), "the deadline frees the copies")
	require.Equal(t, int64(1), r.int(t, "held"))
	// The clock steps back 10 s: the hold granted at +1000 still counts until +2000.
	r = hdMust(t, c, "CHARON.RESERVE", key, "MAX", 2, "LIMIT", 2, "AT", hdT0-10_000)
	require.Equal(t, int64(0), r.int(t, "granted"))
	require.Equal(t, int64(1000), r.int(t, "retry_after"), "measured from the newest stored time")
	r = hdMust(t, c, "CHARON.RESERVE", key, "MIN", 1, "MAX", 2, "LIMIT", 2, "AT", hdT0-10_000)
	require.Equal(t, int64(1), r.int(t, "granted"))
	require.Equal(t, hdT0+1000+60_000, r.int(t, "deadline"), "the effective time is the newest stored")

	// AT in the past: the key must not be stored already expired.
	past := rtNow() - 3_600_000
	r = hdMust(t, c, "CHARON.RESERVE", "hd:{lease}:past", "LIMIT", 1, "LEASE", 5000, "AT", past)
	require.Equal(t, int64(1), r.int(t, "granted"))
	pttl := c.PTTL(context.Background(), "hd:{lease}:past").Val()
	require.Greater(t, pttl, 4*time.Second, "the key lives LEASE ms on the server's clock")
	require.LessOrEqual(t, pttl, 5001*time.Millisecond)
}

// Every bad argument is an error naming it, and writes nothing.
func TestHoldErrors(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	r := hdMust(t, c, "CHARON.RESERVE", "hd:{e}:a", "LIMIT", 5, "GLOBAL", "hd:{e}", 5, "AT", hdT0)
	id := r.str("hold")
	require.NoError(t, c.Do(ctx, "CHARON.RATE", "hd:{e}:rl", "AT", hdT0, "TIER", 10, 1000, 1000, 0).Err())
	require.NoError(t, c.ZAdd(ctx, "hd:{e}:z", redis.Z{Score: 1, Member: "m"}).Err())
	digest := rtDigest(t, c)
	cases := []struct {
		args []any
		want string
	}{
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "MAX", 0, "LIMIT", 1}, "ERR MAX:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "MAX", "x", "LIMIT", 1}, "ERR MAX:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "MAX", 2, "MIN", 3, "LIMIT", 1}, "ERR MIN:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a"}, "ERR LIMIT:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "LIMIT", 1000000000001}, "ERR LIMIT:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "LIMIT", 1, "LEASE", 0}, "ERR LEASE:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "LIMIT", 1, "LEASE", 315360000001}, "ERR LEASE:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "LIMIT", 1, "AT", -1}, "ERR AT:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "LIMIT", 1, "GLOBAL", "hd:{e}"}, "ERR GLOBAL:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "LIMIT", 1, "GLOBAL", "hd:{e}:a", 1}, "ERR GLOBAL:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "LIMIT", 1, "GROUP", "hd:{e}:g"}, "ERR GROUP:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "LIMIT", 1, "GROUP", "hd:{e}:g", 1, "hd:{e}:g", 1}, "ERR GROUP:"},
		// GROUP comes last: an option after it is refused, never read as a group key.
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "LIMIT", 1, "GROUP", "hd:{e}:g", 1, "AT", hdT0}, "ERR GROUP: GROUP comes last: 'AT'"},
		{[]any{"CHARON.RESERVE", "hd:{e}:b", "GROUP", "hd:{e}:g", 3, "LIMIT", 2}, "ERR GROUP: GROUP comes last: 'LIMIT'"},
		{[]any{"CHARON.RESERVE", "hd:{e}:b", "LIMIT", 1, "GROUP", "hd:{e}:g", 3, "lease", 2}, "ERR GROUP: GROUP comes last: 'lease'"},
		{[]any{"CHARON.RESERVE", "hd:{e}:b", "LIMIT", 1, "GROUP", "hd:{e}:g", 3, "DRYRUN"}, "ERR GROUP: GROUP comes last: 'DRYRUN'"},
		{[]any{"CHARON.RESERVE", "hd:{e}:b", "GROUP", "hd:{e}:g", 3, "MAX", 2, "MIN", 1}, "ERR GROUP: GROUP comes last: 'MAX'"},
		{[]any{"CHARON.RESERVE", "hd:{e}:b", "GROUP", "hd:{e}:g", 3, "GLOBAL", "hd:{e}", 5}, "ERR GROUP: GROUP comes last: 'GLOBAL'"},
		{[]any{"CHARON.RELEASE", "hd:{e}:a", id, "GROUP", "hd:{e}:g", "COPIES", 1}, "ERR GROUP: GROUP comes last: 'COPIES'"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "LIMIT", 1, "ID", "00000000000000aa"}, "ERR ID:"},
		{[]any{"CHARON.RESERVE", "hd:{e}:a", "LIMIT", 1, "FROB"}, "ERR syntax:"},
		{[]any{"CHARON.RELEASE", "hd:{e}:a", "nothex"}, "ERR hold:"},
		{[]any{"CHARON.RELEASE", "hd:{e}:a", id, "COPIES", 0}, "ERR COPIES:"},
		{[]any{"CHARON.RELEASE", "hd:{e}:a", id, "LEASE", 5}, "ERR syntax:"},
		{[]any{"CHARON.RENEW", "hd:{e}:a", id, "LEASE", -5}, "ERR LEASE:"},
		{[]any{"CHARON.TRANSFER", "hd:{e}:a", id}, "ERR TTL:"},
		{[]any{"CHARON.TRANSFER", "hd:{e}:a", id, "TTL", 5, "COPIES", 9}, "ERR COPIES:"},
		{[]any{"CHARON.SEIZE", "hd:{e}:a", "0000000000000000"}, "ERR hold:"},
		// Keys of the other kinds: WRONGTYPE, never a silent 0.
		{[]any{"CHARON.RESERVE", "hd:{e}:rl", "LIMIT", 1}, "WRONGTYPE"},
		{[]any{"CHARON.RESERVE", "hd:{e}:z", "LIMIT", 1}, "WRONGTYPE"},
		{[]any{"CHARON.RESERVE", "hd:{e}:b", "LIMIT", 1, "GLOBAL", "hd:{e}:rl", 1}, "WRONGTYPE"},
		{[]any{"CHARON.RESERVE", "hd:{e}:b", "LIMIT", 1, "GROUP", "hd:{e}:z", 1}, "WRONGTYPE"},
		{[]any{"CHARON.RELEASE", "hd:{e}:z", id}, "WRONGTYPE"},
		{[]any{"CHARON.RATE", "hd:{e}:a", "TIER", 1, 1000, 1000, 0}, "WRONGTYPE"},
	}
	for _, tc := range cases {
		err := c.Do(ctx, tc.args...).Err()
		require.Error(t, err, "%v", tc.args)
		require.True(t, strings.HasPrefix(err.Error(), tc.want), "%v: %v, want prefix %q", tc.args, err, tc.want)
		require.Equal(t, digest, rtDigest(t, c), "%v wrote something", tc.args)
	}
	require.Equal(t, int64(0), c.Exists(ctx, "hd:{e}:b", "hd:{e}:g", "LIMIT", "lease", "MAX", "GLOBAL", "COPIES").Val())
}

// A rejected reservation, a release of an unknown hold and a DRYRUN leave another
// client's WATCH intact; a grant aborts it.
func TestHoldWatch(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2))
	ctx := context.Background()
	key, gkey := "hd:{w}:a", "hd:{w}"
	hdMust(t, c, "CHARON.RESERVE", key, "LIMIT", 1, "GLOBAL", gkey, 10, "AT", hdT0)
	watched := func(fn func()) error {
		return c.Watch(ctx, func(tx *redis.Tx) error {
			fn()
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Ping(ctx)
				return nil
			})
			return err
		}, key, gkey)
	}
	other := s.Client(t, harness.Protocol(2))
	require.NoError(t, watched(func() {
		r := hdMust(t, other, "CHARON.RESERVE", key, "LIMIT", 1, "GLOBAL", gkey, 10, "AT", hdT0+1)
		require.Equal(t, int64(0), r.int(t, "granted"))
		hdMust(t, other, "CHARON.RELEASE", key, "00000000000000ff", "GLOBAL", gkey, "AT", hdT0+1)
		hdMust(t, other, "CHARON.RESERVE", key, "LIMIT", 2, "GLOBAL", gkey, 10, "DRYRUN", "AT", hdT0+1)
		_, err := hdDo(t, other, "CHARON.RENEW", key, "00000000000000ff", "GLOBAL", gkey, "AT", hdT0+1)
		require.Error(t, err)
	}), "a request that changed nothing aborted the transaction")
	require.ErrorIs(t, watched(func() {
		hdMust(t, other, "CHARON.RESERVE", key, "LIMIT", 2, "GLOBAL", gkey, 10, "AT", hdT0+1)
	}), redis.TxFailedErr, "a grant must abort the transaction")
}

// hdLoad runs concurrent reservers against conns (on one server or a cluster client):
// random MAX/MIN, random hold times, some holds never released (killed clients). Every
// reply must respect the limits.
func hdLoad(t *testing.T, c rtConn, dur time.Duration, workers int, prefix string) (grants int64) {
	t.Helper()
	ctx := context.Background()
	const domLimit, globLimit, poolLimit = 3, 10, 6
	gkey, pool := prefix+"{res}", prefix+"{res}:pool"
	var wg sync.WaitGroup
	var n atomic.Int64
	stop := time.Now().Add(dur)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for time.Now().Before(stop) {
				dom := fmt.Sprintf("%s{res}:d%d", prefix, r.IntN(5))
				max := 1 + r.IntN(3)
				args := []any{"CHARON.RESERVE", dom, "MAX", max, "MIN", 1, "LIMIT", domLimit, "GLOBAL", gkey, globLimit,
					"LEASE", 50 + r.IntN(200)}
				inPool := r.IntN(2) == 0
				if inPool {
					args = append(args, "GROUP", pool, poolLimit)
				}
				v, err := c.Do(ctx, args...).Slice()
				if err != nil {
					errs <- err
					return
				}
				granted, held, gheld := v[0].(int64), v[2].(int64), v[4].(int64)
				if held > domLimit || gheld > globLimit || granted > int64(max) {
					errs <- fmt.Errorf("limit exceeded: %v -> %v", args, v)
					return
				}
				if granted == 0 {
					continue
				}
				n.Add(1)
				if inPool {
					info, err := c.Do(ctx, "CHARON.INSPECT", pool).Result()
					if err == nil {
						m, _ := harness.ReplyMap(info)
						if h, _ := m["held"].(int64); h > poolLimit {
							errs <- fmt.Errorf("pool holds %d > %d", h, poolLimit)
							return
						}
					}
				}
				if r.IntN(4) == 0 {
					continue // a client that dies: the lease frees its copies
				}
				time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond) // the work done while holding
				rel := []any{"CHARON.RELEASE", dom, v[1].(string), "GLOBAL", gkey}
				if inPool {
					rel = append(rel, "GROUP", pool)
				}
				if err := c.Do(ctx, rel...).Err(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return n.Load()
}

func TestHoldConcurrentSingle(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t, harness.Protocol(2), func(o *redis.Options) { o.PoolSize = 32 })
	n := hdLoad(t, c, 2*time.Second, 24, "hd:c:")
	t.Logf("%d grants", n)
	require.Positive(t, n)
}

// The replica holds the same values (digests), and after a failover with a clock that
// lags the promoted replica keeps every live hold.
func TestHoldReplica(t *testing.T) {
	t.Parallel()
	p, r := harness.StartPrimaryReplica(t, harness.Options{})
	pc, rc := p.Client(t, harness.Protocol(2)), r.Client(t, harness.Protocol(2))
	ctx := context.Background()
	var ids []string
	for i := range 50 {
		res := hdMust(t, pc, "CHARON.RESERVE", fmt.Sprintf("hd:{rep}:d%d", i%7), "MAX", 2, "MIN", 1, "LIMIT", 4,
			"GLOBAL", "hd:{rep}", 20, "LEASE", 10_000+i, "AT", hdT0+int64(i), "GROUP", "hd:{rep}:g", 15)
		if h := res.str("hold"); h != "" {
			ids = append(ids, fmt.Sprintf("%d %s", i%7, h))
		}
	}
	for i, e := range ids[:5] {
		var d int
		var h string
		fmt.Sscan(e, &d, &h)
		hdMust(t, pc, "CHARON.RELEASE", fmt.Sprintf("hd:{rep}:d%d", d), h, "GLOBAL", "hd:{rep}", "AT", hdT0+100+int64(i), "GROUP", "hd:{rep}:g")
	}
	// Without AT: the server clock; the replica must store the same expiry.
	hdMust(t, pc, "CHARON.RESERVE", "hd:{rep}:now", "LIMIT", 1)
	hdMust(t, pc, "CHARON.RESERVE", "hd:{rep}:past", "LIMIT", 1, "AT", rtNow()-60_000, "LEASE", 120_000)
	harness.WaitReplicaSync(t, p, r)
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		a, b := rtDigest(t, pc), rtDigest(t, rc)
		return a == b, "primary " + a + " replica " + b
	})
	for _, k := range []string{"hd:{rep}", "hd:{rep}:g", "hd:{rep}:d0", "hd:{rep}:now", "hd:{rep}:past"} {
		require.Equal(t, rtDigestValue(t, pc, k), rtDigestValue(t, rc, k), k)
		require.Equal(t, rtPExpireTime(t, pc, k), rtPExpireTime(t, rc, k), k)
	}
	globalHeld := rtInspect(t, pc, "hd:{rep}", hdT0+200)["held"].(int64)
	require.Positive(t, globalHeld)

	// Failover: the replica becomes primary; its clients' clock lags by a minute.
	require.NoError(t, rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err())
	res := hdMust(t, rc, "CHARON.RESERVE", "hd:{rep}:new", "MAX", 20, "MIN", 0, "LIMIT", 20, "GLOBAL", "hd:{rep}", 20, "AT", hdT0-60_000)
	require.Equal(t, 20-globalHeld, res.int(t, "granted"), "every live hold survived the failover")
}
