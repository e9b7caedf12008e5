//go:build integration

package tests

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/charon-redis/charon/module/concurrency"
	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestHoldClient(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	rdb := s.Client(t)
	ctx := context.Background()
	sem := concurrency.New(rdb, nil)
	at := time.UnixMilli(hdT0)
	pool := &concurrency.Pool{Name: "db", Limit: 2, Global: 3, Groups: []concurrency.Group{{Name: "probation", Limit: 1}, {Name: "blocked"}}}

	h, err := sem.Reserve(ctx, pool, "alice", concurrency.ReserveArgs{Max: 2, At: at})
	require.NoError(t, err)
	require.Equal(t, int64(2), h.Copies)
	require.Len(t, h.ID, 16)
	require.Equal(t, at.Add(concurrency.DefaultLease), h.Deadline)

	_, err = sem.Reserve(ctx, pool, "alice", concurrency.ReserveArgs{At: at})
	var rej *concurrency.RejectedError
	require.ErrorAs(t, err, &rej)
	require.True(t, errors.Is(err, concurrency.ErrRejected))
	require.Equal(t, "domain", rej.LimitedBy)
	require.Equal(t, concurrency.DefaultLease, rej.RetryAfter)

	_, err = sem.Reserve(ctx, pool, "mallory", concurrency.ReserveArgs{At: at, Groups: []string{"blocked"}})
	require.ErrorAs(t, err, &rej)
	require.Equal(t, time.Duration(-1), rej.RetryAfter)

	// Transfer one copy; another process seizes it.
	ticket, err := h.Transfer(ctx, 1, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, int64(1), ticket.Copies)
	require.Equal(t, int64(1), h.Copies)
	h2, err := sem.Seize(ctx, pool, ticket)
	require.NoError(t, err)
	require.Equal(t, int64(1), h2.Copies)
	require.NoError(t, h2.Release(ctx))
	require.NoError(t, h2.Release(ctx), "releasing twice is fine")
	require.ErrorIs(t, h2.Renew(ctx), concurrency.ErrLost)
	require.NoError(t, h.Renew(ctx))
	require.NoError(t, h.Release(ctx))

	// Kill switch: a rejection becomes an overridden hold with no server state.
	sem.SetKillSwitch(true)
	k, err := sem.Reserve(ctx, pool, "mallory", concurrency.ReserveArgs{At: at, Groups: []string{"blocked"}})
	require.NoError(t, err)
	require.Equal(t, concurrency.OverrideKillSwitch, k.Override)
	require.NoError(t, k.Release(ctx))
	sem.SetKillSwitch(false)

	// Fail-open: an unreachable server grants an overridden hold and reports it.
	var reported error
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	defer down.Close()
	fo := concurrency.New(down, &concurrency.Options{FailOpen: true, OnFailOpen: func(_ context.Context, _, _ string, err error) { reported = err }})
	f, err := fo.Reserve(ctx, pool, "alice", concurrency.ReserveArgs{})
	require.NoError(t, err)
	require.Equal(t, concurrency.OverrideFailOpen, f.Override)
	require.Error(t, reported)
	_, err = concurrency.New(down, nil).Reserve(ctx, pool, "alice", concurrency.ReserveArgs{})
	require.Error(t, err)
}

// Do renews the lease in the background and cancels the function's context when the
// hold is lost (here: released behind its back).
func TestHoldClientDo(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	rdb := s.Client(t)
	ctx := context.Background()
	sem := concurrency.New(rdb, nil)
	pool := &concurrency.Pool{Name: "do", Limit: 1, Lease: 300 * time.Millisecond}

	// Held for three leases: the renewals keep it; nobody else gets the copy.
	err := sem.Do(ctx, pool, "alice", concurrency.ReserveArgs{}, func(ctx context.Context, h *concurrency.Hold) error {
		end := time.Now().Add(900 * time.Millisecond)
		for time.Now().Before(end) {
			_, err := sem.Reserve(ctx, pool, "alice", concurrency.ReserveArgs{})
			if !errors.Is(err, concurrency.ErrRejected) {
				return errors.New("the copy was free while held")
			}
			time.Sleep(50 * time.Millisecond)
		}
		return ctx.Err()
	})
	require.NoError(t, err)
	// Released on return.
	h, err := sem.Reserve(ctx, pool, "alice", concurrency.ReserveArgs{})
	require.NoError(t, err)
	require.NoError(t, h.Release(ctx))

	// Lost: someone releases the hold; the next renewal cancels fn's context.
	err = sem.Do(ctx, pool, "alice", concurrency.ReserveArgs{}, func(ctx context.Context, h *concurrency.Hold) error {
		require.NoError(t, rdb.Do(ctx, "CHARON.RELEASE", "hd:{do}:d:alice", h.ID).Err())
		select {
		case <-ctx.Done():
			require.ErrorIs(t, context.Cause(ctx), concurrency.ErrLost)
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("not cancelled")
		}
	})
	require.ErrorIs(t, err, concurrency.ErrLost)
}
