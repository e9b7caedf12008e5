package concurrency

import (
	"errors"
	"fmt"
	"time"

	"github.com/charon-redis/charon/module/internal/outcome"
	"github.com/charon-redis/charon/module/internal/transport"
)

var (
	// ErrRejected is wrapped by the *RejectedError of a reservation the limits refused.
	ErrRejected = errors.New("concurrency: rejected by the limits")
	// ErrLost is returned when the server no longer holds a hold (released, expired,
	// or unknown): renewing, transferring or seizing it fails, and Do cancels its
	// function's context with it as the cause.
	ErrLost = errors.New("concurrency: the hold was lost (released, expired or unknown)")
	// ErrOutcomeUnknown is wrapped when a command may have run but no answer came
	// back, even to its resends (Options.Resends; RESERVE and TRANSFER resend their
	// ONCE token, so they run at most once). Against a module without ONCE, a RESERVE
	// or TRANSFER whose answer was lost is not sent again.
	ErrOutcomeUnknown = errors.New("concurrency: outcome unknown, the command may have run")
	// ErrMisconfigured is wrapped when the client or the server is set up wrong: the
	// server does not know the hold commands (the module is not loaded), or a Redis
	// Cluster is reached through a *redis.Client (the server answers MOVED). The error
	// names the fix; it is never failed open. The same value as
	// ratelimit.ErrMisconfigured.
	ErrMisconfigured = transport.ErrMisconfigured
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

// errClass and its values are package outcome's (shared with module/ratelimit).
type errClass = outcome.Class

const (
	classUnknown     = outcome.Unknown
	classServer      = outcome.Server
	classTransient   = outcome.Transient
	classUnreachable = outcome.Unreachable
	classGaveUp      = outcome.GaveUp
)

// classify decides what err proves: what the transport found, else this package's
// own sentinel (a reply it could not decode), else what go-redis's error proves.
func classify(err error) errClass {
	var te *transport.Error
	switch {
	case errors.As(err, &te):
		return te.Class
	case errors.Is(err, ErrOutcomeUnknown):
		return classUnknown
	}
	return outcome.Classify(err)
}
