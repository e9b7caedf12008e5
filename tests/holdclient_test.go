//go:build integration

package tests

import (
	"context"
	"errors"
	"fmt"
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
	// A lease long enough that no scheduling stall on a loaded machine outlasts the
	// two thirds of it between renewals (300ms did: a 250ms stall lost the hold).
	pool := &concurrency.Pool{Name: "do", Limit: 1, Lease: 3 * time.Second}
	key, _ := concurrency.KeyNames(concurrency.DefaultPrefix, pool.Name, "alice")

	// Held past the deadline it had when fn started: only a renewal can keep it, and
	// nobody else gets the copy meanwhile.
	err := sem.Do(ctx, pool, "alice", concurrency.ReserveArgs{}, func(ctx context.Context, h *concurrency.Hold) error {
		// The domain key expires 1ms after its latest live deadline.
		first, err := rdb.Do(ctx, "PEXPIRETIME", key).Int64()
		if err != nil || first < 0 {
			return fmt.Errorf("PEXPIRETIME %s: %d, %v", key, first, err)
		}
		giveUp := time.Now().Add(30 * time.Second)
		for {
			now, err := rdb.Time(ctx).Result()
			if err != nil {
				return err
			}
			_, err = sem.Reserve(ctx, pool, "alice", concurrency.ReserveArgs{})
			switch {
			case ctx.Err() != nil:
				return context.Cause(ctx)
			case !errors.Is(err, concurrency.ErrRejected):
				return fmt.Errorf("the copy was free while held: %v", err)
			case now.UnixMilli() > first:
				return nil // renewed: held past its first deadline
			case time.Now().After(giveUp):
				return fmt.Errorf("the server's clock did not pass %d ms", first)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	require.NoError(t, err)
	// Released on return.
	h, err := sem.Reserve(ctx, pool, "alice", concurrency.ReserveArgs{})
	require.NoError(t, err)
	require.NoError(t, h.Release(ctx))

	// Lost: someone releases the hold; the next renewal cancels fn's context.
	err = sem.Do(ctx, pool, "alice", concurrency.ReserveArgs{}, func(ctx context.Context, h *concurrency.Hold) error {
		require.NoError(t, rdb.Do(ctx, "CHARON.RELEASE", key, h.ID).Err())
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

// Do cancels the function's context when the lease runs out while renewals fail
// without an answer that the hold is lost (here: the user may no longer RENEW), so the
// function never runs on after another client may have taken its copy.
func TestHoldClientDoLapse(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	admin := s.Client(t)
	ctx := context.Background()
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "worker", "on", ">pw", "~*", "&*", "+@all").Err())
	worker := s.Client(t, func(o *redis.Options) { o.Username, o.Password = "worker", "pw" })
	pool := &concurrency.Pool{Name: "lapse", Limit: 1, Lease: 300 * time.Millisecond}

	err := concurrency.New(worker, nil).Do(ctx, pool, "alice", concurrency.ReserveArgs{}, func(fctx context.Context, h *concurrency.Hold) error {
		require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "worker", "-charon.renew").Err())
		select {
		case <-fctx.Done():
			require.ErrorIs(t, context.Cause(fctx), concurrency.ErrLost)
			return fctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("not cancelled")
		}
	})
	require.ErrorIs(t, err, concurrency.ErrLost)
}
