package transport

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The batcher is the auto-pipelining: requests that arrive while MaxInflight round
// trips are already under way wait in a queue, and the next round trip carries all of
// them in one go-redis pipeline (one write and one read on the client, one read and
// one write on the server). A request that finds a round trip free is sent at once, on
// the caller's goroutine: a lone caller never waits for company and pays no goroutine
// switch.
//
// A round trip that takes much longer than usual (a connection that stopped
// answering) must not hold the queue back: when every round trip under way started
// more than hedgeFactor times the usual duration ago, a new request starts another
// one at once, carrying the queue with it (up to hardInflight round trips); so does a
// timer set when the queue forms, in case no new request comes.
//
// A queued call ends in one of three ways: a round trip takes it and delivers its
// answer; its deadline passes while it is still queued (it was never sent); or its
// deadline passes after a round trip took it (its answer is lost to it; whatever the
// round trip brings back is dropped).

// Call states.
const (
	queued    int32 = iota // waiting in the queue
	taken                  // part of a round trip under way
	done                   // answered (cmd holds the reply or error)
	abandoned              // the caller stopped waiting
)

const (
	hardInflight = 16                     // round trips under way at most, hedges included
	hedgeFactor  = 4                      // "much longer than usual"
	hedgeFloor   = 500 * time.Microsecond // never hedge a round trip younger than this
)

var (
	// errQueued: the call's deadline passed before any round trip took it.
	errQueued = errors.New("not sent: no round trip was free before the deadline")
	// errNoAnswer: the call's deadline passed while its round trip was under way.
	errNoAnswer = errors.New("no answer before the deadline")
)

type call struct {
	ctx   context.Context
	cmd   *redis.Cmd
	state atomic.Int32
	ready chan struct{} // receives one value when state becomes done
}

type batcher struct {
	rdb         Rediser
	maxInflight int
	maxBatch    int
	hedgeFloor  time.Duration // 0 means the const hedgeFloor (tests raise it)

	mu        sync.Mutex
	inflight  int
	lastStart time.Time     // when the youngest round trip started
	usual     time.Duration // moving average of answered round trips' durations
	queue     []*call
	spare     []*call // the other queue buffer, swapped in when a batch is taken
}

// do sends cmd (with ctx bounding this attempt) and waits for its answer, its error,
// or ctx's end (errQueued or errNoAnswer).
func (b *batcher) do(ctx context.Context, cmd *redis.Cmd) error {
	now := time.Now()
	b.mu.Lock()
	if b.inflight < b.maxInflight || b.inflight < hardInflight && now.Sub(b.lastStart) > b.hedgeAfterLocked() {
		// A round trip is free (and the queue is empty), or every one under way is
		// stuck: send from here, at once, with whatever waits.
		b.inflight++
		b.lastStart = now
		var batch []*call
		if len(b.queue) > 0 {
			batch = b.takeLocked()
		}
		b.mu.Unlock()
		if batch == nil {
			err := b.rdb.Process(ctx, cmd)
			b.finished(time.Since(now), answered(err))
			return err
		}
		c := &call{ctx: ctx, cmd: cmd, ready: make(chan struct{}, 1)}
		ok := b.send(append(batch, c))
		b.finished(time.Since(now), ok)
		return cmd.Err()
	}
	c := &call{ctx: ctx, cmd: cmd, ready: make(chan struct{}, 1)}
	b.queue = append(b.queue, c)
	if len(b.queue) == 1 {
		// The first to wait: if no round trip takes the queue in time (they are all
		// stuck, and nobody else comes along to notice), start one then.
		b.armHedgeLocked(now)
	}
	b.mu.Unlock()

	select {
	case <-c.ready:
		return cmd.Err()
	case <-ctx.Done():
	}
	if c.state.CompareAndSwap(queued, abandoned) {
		return errQueued
	}
	if c.state.CompareAndSwap(taken, abandoned) {
		return errNoAnswer
	}
	<-c.ready // answered just now
	return cmd.Err()
}

// armHedgeLocked sets a timer for when the youngest round trip will count as stuck.
func (b *batcher) armHedgeLocked(now time.Time) {
	wait := b.hedgeAfterLocked() - now.Sub(b.lastStart)
	time.AfterFunc(max(wait, 0)+time.Microsecond, b.hedge)
}

// hedge starts a round trip for the queue when every round trip under way is stuck.
func (b *batcher) hedge() {
	b.mu.Lock()
	if len(b.queue) == 0 || b.inflight >= hardInflight {
		b.mu.Unlock()
		return
	}
	now := time.Now()
	if now.Sub(b.lastStart) <= b.hedgeAfterLocked() {
		b.armHedgeLocked(now) // a round trip started since; watch that one
		b.mu.Unlock()
		return
	}
	b.inflight++
	b.lastStart = now
	batch := b.takeLocked()
	b.mu.Unlock()
	go b.work(batch)
}

// hedgeAfterLocked is how old the youngest round trip must be before another starts.
func (b *batcher) hedgeAfterLocked() time.Duration {
	floor := b.hedgeFloor
	if floor == 0 {
		floor = hedgeFloor
	}
	return max(floor, hedgeFactor*b.usual)
}

// finished ends a round trip that took d (answered says it brought answers back):
// with calls queued, a worker takes them over (the round trip stays in flight);
// otherwise the round trip is free again.
func (b *batcher) finished(d time.Duration, answered bool) {
	b.mu.Lock()
	if answered {
		b.usual += (d - b.usual) / 8
	}
	if len(b.queue) == 0 {
		b.inflight--
		b.mu.Unlock()
		return
	}
	b.lastStart = time.Now()
	batch := b.takeLocked()
	b.mu.Unlock()
	go b.work(batch)
}

// takeLocked removes up to maxBatch calls from the queue and returns them.
func (b *batcher) takeLocked() []*call {
	n := min(len(b.queue), b.maxBatch)
	batch := b.queue[:n:n]
	rest := b.queue[n:]
	b.queue = append(b.spare[:0], rest...)
	b.spare = nil
	return batch
}

// work sends batches until the queue is empty, then frees its round trip.
func (b *batcher) work(batch []*call) {
	for {
		began := time.Now()
		ok := b.send(batch)
		d := time.Since(began)
		b.mu.Lock()
		if ok {
			b.usual += (d - b.usual) / 8
		}
		if b.spare == nil {
			b.spare = batch[:0] // reuse the taken buffer for the next queue
		}
		if len(b.queue) == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		b.lastStart = time.Now()
		batch = b.takeLocked()
		b.mu.Unlock()
	}
}

// send runs the live calls of batch as one pipeline, delivers their answers and
// reports whether the round trip brought answers back.
func (b *batcher) send(batch []*call) bool {
	live := make([]*call, 0, len(batch))
	var deadline time.Time
	bounded := true
	for _, c := range batch {
		if !c.state.CompareAndSwap(queued, taken) {
			continue // abandoned while queued
		}
		live = append(live, c)
		if dl, ok := c.ctx.Deadline(); !ok {
			bounded = false
		} else if dl.After(deadline) {
			deadline = dl
		}
	}
	if len(live) == 0 {
		return true
	}

	// The round trip lasts until the latest of its calls' deadlines; a call whose own
	// deadline comes first stops waiting for it (errNoAnswer).
	ctx := context.WithoutCancel(live[0].ctx)
	cancel := func() {}
	if bounded {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	var err error
	if len(live) == 1 {
		err = b.rdb.Process(ctx, live[0].cmd)
	} else {
		pipe := b.rdb.Pipeline()
		for _, c := range live {
			_ = pipe.Process(ctx, c.cmd)
		}
		var cmds []redis.Cmder
		cmds, err = pipe.Exec(ctx)
		fillErrs(cmds, err)
	}
	cancel()
	for _, c := range live {
		if c.state.CompareAndSwap(taken, done) {
			c.ready <- struct{}{}
		}
	}
	return answered(err)
}

// answered reports whether err still means the server answered.
func answered(err error) bool {
	var rerr redis.Error
	return err == nil || errors.As(err, &rerr)
}

// fillErrs gives err to every command of a failed pipeline that got neither a reply
// nor an error of its own: go-redis (v9.16) leaves them so when its retries of the
// whole pipeline run out (a Cmd's nil reply is otherwise the error redis.Nil).
func fillErrs(cmds []redis.Cmder, err error) {
	if err == nil {
		return
	}
	for _, c := range cmds {
		if c.Err() != nil {
			continue
		}
		if v, ok := c.(*redis.Cmd); !ok || v.Val() != nil {
			continue // other Cmders cannot tell "not run" from a zero reply
		}
		c.SetErr(err)
	}
}
