package unread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// srvErr is a server error reply, as go-redis classifies them (the redis.Error interface).
type srvErr string

func (e srvErr) Error() string { return string(e) }
func (srvErr) RedisError()     {}

func TestDedupe(t *testing.T) {
	uniq, pos := dedupe([]string{"a", "b", "a", "c", "b", "a"})
	require.Equal(t, []string{"a", "b", "c"}, uniq)
	require.Equal(t, []int32{0, 1, 0, 2, 1, 0}, pos)

	uniq, pos = dedupe(nil)
	require.Empty(t, uniq)
	require.Empty(t, pos)
}

// checkPlan asserts the invariants every plan must keep: each key exactly once, no
// batch over maxKeys, and on a cluster one slot per batch.
func checkPlan(t *testing.T, keys []string, batches [][]int32, cluster bool, maxKeys int) {
	t.Helper()
	seen := make([]int, len(keys))
	for _, b := range batches {
		require.NotEmpty(t, b)
		require.LessOrEqual(t, len(b), maxKeys)
		for _, k := range b {
			seen[k]++
			if cluster {
				require.Equal(t, Slot(keys[b[0]]), Slot(keys[k]), "batch mixes slots")
			}
		}
	}
	for i, n := range seen {
		require.Equal(t, 1, n, "key %d (%s) planned %d times", i, keys[i], n)
	}
}

func TestPlan(t *testing.T) {
	keys := make([]string, 5000)
	for i := range keys {
		keys[i] = Key(strconv.Itoa(i))
	}
	// Many IDs sharing one slot through a common tag exercise chunking inside a slot.
	for i := range 1200 {
		keys = append(keys, "user_id{same}"+strconv.Itoa(i))
	}

	t.Run("single node", func(t *testing.T) {
		b := plan(keys, false, false, 512)
		checkPlan(t, keys, b, false, 512)
		require.Len(t, b, (len(keys)+511)/512)
	})
	t.Run("cluster", func(t *testing.T) {
		b := plan(keys, true, false, 512)
		checkPlan(t, keys, b, true, 512)
		slots := map[int]bool{}
		for _, k := range keys {
			slots[Slot(k)] = true
		}
		// One batch per slot, plus two more for the 1200-key slot (512+512+176).
		require.Len(t, b, len(slots)+2)
	})
	t.Run("per key", func(t *testing.T) {
		b := plan(keys, true, true, 512)
		checkPlan(t, keys, b, false, 1)
		require.Len(t, b, len(keys))
	})
	t.Run("max keys 1", func(t *testing.T) {
		checkPlan(t, keys, plan(keys, false, false, 1), false, 1)
	})
	t.Run("deterministic", func(t *testing.T) {
		require.Equal(t, plan(keys, true, false, 100), plan(keys, true, false, 100))
	})
	t.Run("batches do not alias", func(t *testing.T) {
		// Appending to one batch must never write into the next one's keys.
		b := plan(keys[:10], false, false, 3)
		b[0] = append(b[0], 99)
		require.Equal(t, []int32{3, 4, 5}, b[1])
	})
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{srvErr("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{srvErr("MOVED 3999 127.0.0.1:6381"), true},
		{srvErr("ASK 3999 127.0.0.1:6381"), true},
		{srvErr("CLUSTERDOWN The cluster is down"), true},
		{srvErr("LOADING Redis is loading the dataset in memory"), true},
		{srvErr("MASTERDOWN Link with MASTER is down"), true},
		{srvErr("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{srvErr("CROSSSLOT Keys in request don't hash to the same slot"), false},
		{srvErr("ERR unknown command 'UNREAD.COUNT', with args beginning with: "), false},
		{srvErr("NOPERM this user has no permissions to access one of the keys"), false},
		{fmt.Errorf("wrapped: %w", srvErr("TRYAGAIN x")), true},
		{io.EOF, true},
		{io.ErrUnexpectedEOF, true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{redis.ErrPoolTimeout, true},
		{redis.ErrClosed, false},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{errors.New("something else"), false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, retryable(tt.err), "retryable(%v)", tt.err)
	}
}

func TestBackoffIsBoundedByDeadline(t *testing.T) {
	c := New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), &Options{
		MinRetryBackoff: time.Hour, MaxRetryBackoff: time.Hour,
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The wait would outlive the context, so backoff refuses without waiting an hour.
	require.ErrorIs(t, c.backoff(ctx, 1), context.DeadlineExceeded)

	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	require.ErrorIs(t, c.backoff(ctx2, 3), context.Canceled)
}

func TestNewDefaults(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	c := New(rdb, nil)
	require.Equal(t, DefaultMaxKeysPerCommand, c.maxKeys)
	require.Equal(t, DefaultMaxAttempts, c.maxAttempts)
	require.Equal(t, DefaultMinRetryBackoff, c.minBackoff)
	require.Equal(t, DefaultMaxRetryBackoff, c.maxBackoff)
	require.False(t, c.cluster)
	require.False(t, c.perKey)
	require.Equal(t, BackendAuto, c.Backend())

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cc.Close()
	require.True(t, New(cc, nil).cluster)

	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	require.True(t, New(ring, nil).perKey, "a Ring shards by first key, so one key per command")

	var u redis.UniversalClient = cc
	require.True(t, New(u, nil).cluster)

	forced := New(rdb, &Options{Backend: BackendPlain, MaxRetryBackoff: time.Microsecond})
	require.Equal(t, BackendPlain, forced.Backend())
	require.Equal(t, forced.minBackoff, forced.maxBackoff, "max is raised to min")
}

func TestNoModuleSwitchesOnce(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	unknown := srvErr("ERR unknown command 'UNREAD.COUNT', with args beginning with: 'x' ")

	auto := New(rdb, nil)
	require.False(t, auto.noModule(srvErr("WRONGTYPE Operation against a key holding the wrong kind of value")))
	require.Equal(t, BackendAuto, auto.Backend())
	auto.sawModule()
	require.Equal(t, BackendModule, auto.Backend())
	require.True(t, auto.noModule(unknown))
	require.Equal(t, BackendPlain, auto.Backend())
	auto.sawModule()
	require.Equal(t, BackendPlain, auto.Backend(), "plain stays plain")

	forced := New(rdb, &Options{Backend: BackendModule})
	require.False(t, forced.noModule(unknown))
	require.Equal(t, BackendModule, forced.Backend())
}

func TestBackendString(t *testing.T) {
	require.Equal(t, "auto", BackendAuto.String())
	require.Equal(t, "module", BackendModule.String())
	require.Equal(t, "plain", BackendPlain.String())
	require.Equal(t, "Backend(9)", Backend(9).String())
}

func TestArgumentErrorsNeedNoServer(t *testing.T) {
	// Refused before anything is sent: the address is unreachable on purpose.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rdb.Close()
	c := New(rdb, nil)
	ctx := context.Background()

	_, err := c.Mark(ctx, "u", "c", 0)
	require.ErrorContains(t, err, "count 0 outside")
	_, err = c.Mark(ctx, "u", "c", 1<<53)
	require.ErrorContains(t, err, "outside")
	_, err = c.Read(ctx, "u")
	require.ErrorContains(t, err, "no conversation")

	out, err := c.Counts(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, out)
	require.NotNil(t, out)
}

func TestDecodeInto(t *testing.T) {
	counts := make([]int64, 4)
	require.NoError(t, decodeInto(int64(7), []int32{2}, counts))
	require.NoError(t, decodeInto([]any{int64(1), int64(0)}, []int32{3, 0}, counts))
	require.Equal(t, []int64{0, 0, 7, 1}, counts)

	// A reply that does not fit its command is an error, and writes nothing.
	require.Error(t, decodeInto([]any{int64(1)}, []int32{0, 1}, counts))
	require.Error(t, decodeInto([]any{int64(1)}, []int32{1}, counts), "ZCARD answers an integer")
	require.Error(t, decodeInto(int64(-1), []int32{1}, counts))
	require.Error(t, decodeInto("3", []int32{1}, counts))
	require.Equal(t, []int64{0, 0, 7, 1}, counts)
}

func TestBatchCommand(t *testing.T) {
	keys := []string{"a", "b", "c"}
	require.Equal(t, "ZCARD", batchCommand([]int32{0}))
	require.Equal(t, "UNREAD.COUNT", batchCommand([]int32{0, 1}))
	require.Equal(t, "ZCARD b", describe(keys, []int32{1}))
	require.Equal(t, "UNREAD.COUNT c (+2 keys)", describe(keys, []int32{2, 0, 1}))
}
