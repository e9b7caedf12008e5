// Package outcome classifies what an error from go-redis proves about a command sent
// inside MULTI/EXEC: whether it may have run, surely did not, and whether retrying or
// failing open is sound. The clients for CHARON.RATE (module/ratelimit) and
// CHARON.RESERVE (module/concurrency) share it.
package outcome

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
)

// Class is what an error proves about the command.
type Class uint8

const (
	// Unknown: the command may have been executed.
	Unknown Class = iota
	// Server: the server answered with an error; nothing was written (the
	// contract: a CHARON.RATE error changes nothing, and an error while queueing
	// aborts the transaction).
	Server
	// Transient: a server error that proves the command was not executed and is
	// worth retrying soon (slot migration, failover, loading). MOVED, ASK and a bare
	// EXECABORT reach us only when go-redis's cluster client gave up redirecting a
	// transaction: it queues ASKING inside MULTI, where it comes too late, and after
	// MaxRedirects reports the transaction's EXECABORT instead of the redirect. That
	// happens while a slot's keys wait on the importing node. Redis answers ASK to the
	// queued command (the transaction is flagged, EXEC aborts); Valkey 9 checks a
	// transaction's keys only at EXEC and answers EXEC itself with ASK after
	// discarding the transaction. Either way nothing ran.
	Transient
	// Unreachable: the command was not sent, or not completely (no connection, no
	// pool slot, a write that failed before EXEC was complete).
	Unreachable
	// GaveUp: the caller's context ended before the command was sent, or the
	// go-redis client is closed. Not sent, but not a reason to fail open.
	GaveUp
)

// Classify decides what a go-redis error proves. It relies on the command travelling
// inside MULTI/EXEC: the transaction runs only once EXEC has been read
// completely, so an error while writing proves nothing ran. Anything it cannot prove is
// Unknown.
func Classify(err error) Class {
	var rerr redis.Error
	switch {
	case errors.As(err, &rerr):
		for _, p := range []string{"TRYAGAIN ", "CLUSTERDOWN ", "LOADING ", "MASTERDOWN ", "MOVED ", "ASK ", "EXECABORT "} {
			if redis.HasErrorPrefix(err, p) {
				return Transient
			}
		}
		return Server
	case errors.Is(err, redis.ErrClosed):
		return GaveUp
	case errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted):
		return Unreachable
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		switch oe.Op {
		case "dial", "write":
			if errors.Is(oe.Err, context.Canceled) || errors.Is(oe.Err, context.DeadlineExceeded) {
				return GaveUp // the caller's context ended while dialing
			}
			return Unreachable
		}
		return Unknown // "read" and anything else: it may have run
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return Unreachable
	}
	// go-redis returns a bare context error only before sending (waiting for a pool
	// slot, sleeping between its own retries of unsent commands); after sending, an
	// expired context shows up as a *net.OpError read timeout.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return GaveUp
	}
	return Unknown
}
