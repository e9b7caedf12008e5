package concurrency

import (
	"errors"
	"fmt"
	"time"

	"github.com/charon-redis/charon/module/internal/outcome"
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

// errClass and its values are package outcome's (shared with module/ratelimit:
// commands travel inside MULTI/EXEC, so an error while writing proves nothing ran).
type errClass = outcome.Class

const (
	classUnknown     = outcome.Unknown
	classServer      = outcome.Server
	classTransient   = outcome.Transient
	classUnreachable = outcome.Unreachable
	classGaveUp      = outcome.GaveUp
)

// classify decides what err proves: this package's own sentinel first, then what
// go-redis's error proves.
func classify(err error) errClass {
	if errors.Is(err, ErrOutcomeUnknown) {
		return classUnknown
	}
	return outcome.Classify(err)
}
