package unread

import (
	"context"
	"fmt"
	"time"
)

// Op is the Client call an Event describes.
type Op uint8

const (
	OpCounts Op = iota // Counts and Count
	OpMark             // Mark
	OpRead             // Read
)

func (o Op) String() string {
	switch o {
	case OpCounts:
		return "counts"
	case OpMark:
		return "mark"
	case OpRead:
		return "read"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Event describes one finished Client call for an Observer.
type Event struct {
	// Op is the call: the label to count by.
	Op Op
	// Keys is the number of user keys the call asked about (Counts: user IDs given,
	// duplicates included; Mark and Read: 1).
	Keys int
	// Commands is the number of commands sent, retries included.
	Commands int
	// RoundTrips is the number of rounds the call waited for: each round is one
	// pipeline (one round trip per cluster node, the nodes in parallel) or one command.
	RoundTrips int
	// Redirects is the number of commands sent again because the cluster refused them
	// for now: TRYAGAIN while a slot moves, and MOVED, ASK or CLUSTERDOWN that outlived
	// go-redis's own redirects. The MOVED and ASK redirects go-redis's ClusterClient
	// follows by itself are not visible here (a go-redis Hook sees them).
	Redirects int
	// Fallback reports that plain sorted-set commands answered because the server does
	// not know the UNREAD.* commands (BackendAuto found no module). Always false when
	// Options.Backend forces a backend.
	Fallback bool
	// Latency is the wall time the call took.
	Latency time.Duration
	// Err is the error the call returned, or nil.
	Err error
}

// Observer sees every call of a Client (Options.Observer): wire it to your metrics
// library. Observe is called synchronously once per call, so it must be quick and
// safe for concurrent use.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to the Observer interface.
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f(ctx, e).
func (f ObserverFunc) Observe(ctx context.Context, e Event) { f(ctx, e) }

// callStats collects an Event while a call runs.
type callStats struct {
	began time.Time
	e     Event
}

func (c *Client) startCall(op Op, keys int) *callStats {
	if c.observer == nil {
		return nil
	}
	return &callStats{began: time.Now(), e: Event{Op: op, Keys: keys}}
}

// sent records a round of n commands, of which redirected are repeats.
func (s *callStats) sent(n, redirected int) {
	if s != nil {
		s.e.Commands += n
		s.e.RoundTrips++
		s.e.Redirects += redirected
	}
}

func (s *callStats) fellBack(c *Client) {
	if s != nil && !c.forced {
		s.e.Fallback = true
	}
}

func (c *Client) endCall(ctx context.Context, s *callStats, err error) {
	if s == nil {
		return
	}
	s.e.Latency = time.Since(s.began)
	s.e.Err = err
	c.observer.Observe(ctx, s.e)
}
