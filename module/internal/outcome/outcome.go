// Package outcome classifies what an error from go-redis proves about a command:
// whether it may have run, surely did not, and whether retrying or failing open is
// sound. The Charon clients (module/ratelimit, module/concurrency, module/unread)
// share it through module/internal/transport.
package outcome

import (
	"context"
	"errors"
	"io"
	"net"
	"os"

	"github.com/redis/go-redis/v9"
)

// Class is what an error proves about the command.
type Class uint8

const (
	// Unknown: the command may have been executed.
	Unknown Class = iota
	// Server: the server answered with an error; nothing was written (the
	// contract: a Charon command's error changes nothing, and an error while queueing
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
	// pool slot, a connection whose handshake failed, a write that failed before a
	// transaction's EXEC was complete, the client's own deadline before sending).
	Unreachable
	// GaveUp: the caller's context ended before the command was sent, or the
	// go-redis client is closed. Not sent, but not a reason to fail open.
	GaveUp
	// Misconfigured: the client or the server is set up wrong (the module is not
	// loaded, a cluster node is reached through a non-cluster client). Nothing ran;
	// never retried, never a reason to fail open. Found by the clients' own checks,
	// never by Classify.
	Misconfigured
)

func (c Class) String() string {
	switch c {
	case Unknown:
		return "unknown"
	case Server:
		return "server"
	case Transient:
		return "transient"
	case Unreachable:
		return "unreachable"
	case GaveUp:
		return "gave-up"
	case Misconfigured:
		return "misconfigured"
	}
	return "Class(?)"
}

// transientPrefixes are the server errors that prove a command did not run and say
// "not now".
var transientPrefixes = []string{"TRYAGAIN ", "CLUSTERDOWN ", "LOADING ", "MASTERDOWN ", "MOVED ", "ASK ", "EXECABORT "}

// Classify decides what a go-redis error proves about a command sent inside
// MULTI/EXEC: the transaction runs only once EXEC has been read completely, so an
// error while writing proves nothing ran. Anything it cannot prove is Unknown. With
// no caller's context at hand, a context error means the caller gave up.
func Classify(err error) Class { return classify(context.TODO(), false, err, true) }

// ClassifyCtx decides what a go-redis error proves about a command. tx says the
// command travelled inside MULTI/EXEC (a failed write then proves nothing ran);
// otherwise a failed write may have sent a complete command and is Unknown. ctx is the
// caller's context: only its end makes an unsent command GaveUp; a deadline of the
// client's own (a dial timeout, an attempt timeout) makes it Unreachable.
//
// go-redis (v9.16) returns a connection's setup errors (dial, the HELLO handshake)
// before anything of the command is written, and returns the handshake's network
// errors unwrapped from their *net.OpError; a command's own read or write errors keep
// theirs. So an error with a *net.OpError whose Op is "read" may have run, while a
// bare network error (a timeout, a reset) came from setting up a connection.
func ClassifyCtx(ctx context.Context, err error, tx bool) Class { return classify(ctx, true, err, tx) }

// classify is ClassifyCtx; haveCtx false means the caller's context is not known.
func classify(ctx context.Context, haveCtx bool, err error, tx bool) Class {
	// gaveUp: did the caller end an unsent command? Without its context, an inner
	// context error says so.
	gaveUp := func(inner error) bool {
		if haveCtx {
			return ctx.Err() != nil
		}
		return errors.Is(inner, context.Canceled) || errors.Is(inner, context.DeadlineExceeded)
	}
	var rerr redis.Error
	switch {
	case errors.As(err, &rerr):
		for _, p := range transientPrefixes {
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
		case "dial":
			if gaveUp(oe.Err) {
				return GaveUp // the caller's context ended while dialing
			}
			return Unreachable
		case "write":
			if !tx {
				return Unknown // a plain command may be complete on the wire
			}
			if gaveUp(oe.Err) {
				return GaveUp
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
		if gaveUp(err) {
			return GaveUp
		}
		return Unreachable
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return Unknown // a reply cut short: the command may have run
	}
	var ne net.Error
	var se *os.SyscallError
	if errors.As(err, &ne) || errors.As(err, &se) {
		// A bare network error: a connection's handshake failed (see above).
		if haveCtx && ctx.Err() != nil {
			return GaveUp
		}
		return Unreachable
	}
	return Unknown
}
