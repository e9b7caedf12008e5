package concurrency

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	// ErrRejected is wrapped by the *RejectedError of a reservation the limits refused.
	ErrRejected = errors.New("concurrency: rejected by the limits")
	// ErrLost is returned when the server no longer holds a hold (released, expired,
	// or unknown): renewing, transferring or seizing it fails, and Do cancels its
	// function's context with it as the cause.
	ErrLost = errors.New("concurrency: the hold was lost (released, expired or unknown)")
	// ErrOutcomeUnknown is wrapped when a command may have run but no answer came
	// back; it is never sent again (a reservation could be made twice).
	ErrOutcomeUnknown = errors.New("concurrency: outcome unknown, the command may have run")
	// ErrInvalid is wrapped when arguments break the contract; nothing was sent.
	ErrInvalid = errors.New("concurrency: invalid argument")
)

// RejectedError describes a rejected reservation.
type RejectedError struct {
	// RetryAfter is how long until enough copies end their leases for Min to fit with
	// no other traffic; -1 when Min can never fit.
	RetryAfter time.Duration
	// LimitedBy names the limit that cut Max: "domain", "global" or "group:N".
	LimitedBy string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("concurrency: rejected by the %s limit (retry after %v)", e.LimitedBy, e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Unwrap() error { return ErrRejected }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// errClass says what an error from go-redis proves about the command (as in package
// ratelimit: commands travel inside MULTI/EXEC, so an error while writing proves
// nothing ran).
type errClass uint8

const (
	classUnknown errClass = iota
	classServer
	classTransient
	classUnreachable
	classGaveUp
)

func classify(err error) errClass {
	var rerr redis.Error
	switch {
	case errors.Is(err, ErrOutcomeUnknown):
		return classUnknown
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
				return classGaveUp
			}
			return classUnreachable
		}
		return classUnknown
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return classUnreachable
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return classGaveUp
	}
	return classUnknown
}
