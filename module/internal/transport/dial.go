package transport

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// dialRecorder is a go-redis hook that remembers the last failed dial. When the
// Timeout ends an attempt while go-redis sleeps between its own dial retries, go-redis
// returns the bare context error and drops the dial's; the recorder keeps it, so the
// attempt's error still wraps the *net.OpError that says why Redis was unreachable.
type dialRecorder struct {
	last atomic.Pointer[dialFailure]
}

type dialFailure struct {
	at  time.Time
	err error
}

var _ redis.Hook = (*dialRecorder)(nil)

func (d *dialRecorder) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			d.last.Store(&dialFailure{at: time.Now(), err: err})
		} else {
			d.last.Store(nil)
		}
		return conn, err
	}
}

func (d *dialRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (d *dialRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// dialCauseWindow is how far back a failed dial still explains an attempt that ran
// out of time: go-redis dials in the background, between its own retries, and a pool
// that keeps failing answers from its last dial error without dialing again.
const dialCauseWindow = 2 * time.Second

// since returns the last dial error, if no dial succeeded since and it happened at or
// after dialCauseWindow before t; else nil.
func (d *dialRecorder) since(t time.Time) error {
	t = t.Add(-dialCauseWindow)
	if d == nil {
		return nil
	}
	f := d.last.Load()
	if f == nil || f.at.Before(t) {
		return nil
	}
	return f.err
}
