package concurrency

import (
	"context"
	"fmt"
	"time"
)

// Op is the command an Event describes.
type Op uint8

// Ops.
const (
	OpReserve  Op = iota // Reserve (and the reservation of Do)
	OpRelease            // Release, ReleaseCopies (and Do's release)
	OpRenew              // Renew (and Do's renewals)
	OpTransfer           // Transfer
	OpSeize              // Seize
)

func (o Op) String() string {
	switch o {
	case OpReserve:
		return "reserve"
	case OpRelease:
		return "release"
	case OpRenew:
		return "renew"
	case OpTransfer:
		return "transfer"
	case OpSeize:
		return "seize"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Outcome is what a command came to, as an Observer sees it.
type Outcome uint8

// Outcomes.
const (
	// OutcomeOK: the server did it (a reservation granted, a release, a renewal...).
	OutcomeOK Outcome = iota
	// OutcomeRejected: the limits refused a reservation (Event.LimitedBy says which).
	OutcomeRejected
	// OutcomeKillSwitch: the limits refused and the kill switch granted anyway.
	OutcomeKillSwitch
	// OutcomeFailOpen: Redis could not be reached and FailOpen granted (Event.Err is
	// the error it replaced).
	OutcomeFailOpen
	// OutcomeLost: the server no longer holds the hold (ErrLost).
	OutcomeLost
	// OutcomeError: the command returned an error (Event.Err).
	OutcomeError
)

func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeRejected:
		return "rejected"
	case OutcomeKillSwitch:
		return "kill-switch"
	case OutcomeFailOpen:
		return "fail-open"
	case OutcomeLost:
		return "lost"
	case OutcomeError:
		return "error"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Event describes one finished command for an Observer.
type Event struct {
	// Op is the command; Pool the pool's name: the labels to count by.
	Op   Op
	Pool string
	// Domain is on whose behalf: for logs and traces (as a metric label it would make
	// one series per domain).
	Domain string
	// Outcome is what the command came to.
	Outcome Outcome
	// Copies is the hold's copies after the command (granted, kept, or 0).
	Copies int64
	// Deadline is the hold's deadline after the command. For a release that failed
	// (OutcomeError), it is when the server frees the copies by itself.
	Deadline time.Time
	// LimitedBy names the limit that refused a reservation (OutcomeRejected).
	LimitedBy string
	// Attempts is the number of times the command was sent, resends included (0 when
	// it never was).
	Attempts int
	// Latency is the wall time the call took.
	Latency time.Duration
	// Engine is the engine serving the Semaphore's commands when this one ended
	// (EngineModule or EngineScripts; EngineAuto when no check of the server could
	// run): a label to alert on when it changes.
	Engine Engine
	// Err is the error returned to the caller, or the error a fail-open grant
	// replaced; nil otherwise. A release inside Semaphore.Do that fails is reported
	// here only: Do returns the job's own result.
	Err error
}

// Observer sees every command of a Semaphore (Options.Observer): wire it to your
// metrics library. Observe is called synchronously on the command's goroutine (the
// renewals of Do: on its renewer goroutine), so it must be quick and safe for
// concurrent use.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to the Observer interface.
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f(ctx, e).
func (f ObserverFunc) Observe(ctx context.Context, e Event) { f(ctx, e) }
