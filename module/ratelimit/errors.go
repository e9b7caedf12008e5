package ratelimit

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
)

// ErrOutcomeUnknown is wrapped (together with the cause) when CHARON.RATE may have
// reached the server but no answer came back: a read timeout, a connection reset or
// closed after the command was written, a reply that could not be parsed. The hits may
// or may not have been counted. The client never sends such a request again (a second
// copy could count the hits twice), never waits after it and never fails open on it.
var ErrOutcomeUnknown = errors.New("ratelimit: outcome unknown, the request may have been counted")

// errNotSent is wrapped when the Limiter's own Timeout ended an attempt before the
// command was sent (dialing, waiting for a pool connection, go-redis's retries of
// unsent commands): Redis counts as unreachable.
var errNotSent = errors.New("not sent within the limiter's timeout")

// errClass says what an error from go-redis proves about the command.
type errClass uint8

const (
	// classUnknown: the command may have been executed.
	classUnknown errClass = iota
	// classServer: the server answered with an error; nothing was written (the
	// contract: a CHARON.RATE error changes nothing, and an error while queueing
	// aborts the transaction).
	classServer
	// classTransient: a server error that proves the command was not executed and is
	// worth retrying soon (slot migration, failover, loading). MOVED, ASK and a bare
	// EXECABORT reach us only when go-redis's cluster client gave up redirecting a
	// transaction: it queues ASKING inside MULTI, where it comes too late, and after
	// MaxRedirects reports the transaction's EXECABORT instead of the redirect. That
	// happens while a slot's keys wait on the importing node. Redis answers ASK to the
	// queued command (the transaction is flagged, EXEC aborts); Valkey 9 checks a
	// transaction's keys only at EXEC and answers EXEC itself with ASK after
	// discarding the transaction. Either way nothing ran.
	classTransient
	// classUnreachable: the command was not sent, or not completely (no connection, no
	// pool slot, a write that failed before EXEC was complete).
	classUnreachable
	// classGaveUp: the caller's context ended before the command was sent, or the
	// go-redis client is closed. Not sent, but not a reason to fail open.
	classGaveUp
)

// classify decides what err proves. It relies on the command travelling inside
// MULTI/EXEC (see Limiter): the transaction runs only once EXEC has been read
// completely, so an error while writing proves nothing ran. Anything it cannot prove is
// classUnknown.
func classify(err error) errClass {
	var rerr redis.Error
	switch {
	case err == nil:
		return classServer // not used
	case errors.Is(err, ErrOutcomeUnknown):
		return classUnknown
	case errors.Is(err, errNotSent):
		return classUnreachable
	case errors.As(err, &rerr):
		for _, p := range []string{"TRYAGAIN ", "CLUSTERDOWN ", "LOADING ", "MASTERDOWN ", "MOVED ", "ASK ", "EXECABORT "} {
			if redis.HasErrorPrefix(err, p) {
				return classTransient
			}
		}
		return classServer
	case errors.Is(err, redis.ErrClosed):
		return classGaveUp
	case errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted):
		return classUnreachable
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		switch oe.Op {
		case "dial", "write":
			if errors.Is(oe.Err, context.Canceled) || errors.Is(oe.Err, context.DeadlineExceeded) {
				return classGaveUp // the caller's context ended while dialing
			}
			return classUnreachable
		}
		return classUnknown // "read" and anything else: it may have run
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return classUnreachable
	}
	// go-redis returns a bare context error only before sending (waiting for a pool
	// slot, sleeping between its own retries of unsent commands); after sending, an
	// expired context shows up as a *net.OpError read timeout.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return classGaveUp
	}
	return classUnknown
}
