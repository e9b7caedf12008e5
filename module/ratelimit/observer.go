package ratelimit

import (
	"context"
	"fmt"
	"time"
)

// Outcome is what a request came to, as an Observer sees it.
type Outcome uint8

const (
	// OutcomeGranted: the server granted hits.
	OutcomeGranted Outcome = iota
	// OutcomeRejected: the server rejected the request (Event.RejectedBy says why).
	OutcomeRejected
	// OutcomeKillSwitch: the server rejected the request and the kill switch granted
	// it anyway.
	OutcomeKillSwitch
	// OutcomeFailOpen: Redis could not be reached and FailOpen granted the request.
	OutcomeFailOpen
	// OutcomeError: the request returned an error (Event.Err).
	OutcomeError
	// OutcomeLocalGranted: Redis could not be reached and the Limiter (FailLocal)
	// granted the request from this instance's share of the limits.
	OutcomeLocalGranted
	// OutcomeLocalRejected: Redis could not be reached and the Limiter (FailLocal)
	// rejected the request: this instance's share of a limit was used up
	// (Event.RejectedBy says which).
	OutcomeLocalRejected
	// OutcomeDegraded is not a request's outcome: the Limiter (FailLocal) found Redis
	// unreachable and decides locally from now on. Event.Err is the error that showed
	// it; Resource and Domain are those of the request that found it. Reported once
	// per outage, before that request's own Event.
	OutcomeDegraded
	// OutcomeRecovered is not a request's outcome: Redis answered the Limiter's probe
	// and requests go to Redis again. Event.Latency is how long the Limiter was
	// degraded; Resource and Domain are empty.
	OutcomeRecovered
)

func (o Outcome) String() string {
	switch o {
	case OutcomeGranted:
		return "granted"
	case OutcomeRejected:
		return "rejected"
	case OutcomeKillSwitch:
		return "kill-switch"
	case OutcomeFailOpen:
		return "fail-open"
	case OutcomeError:
		return "error"
	case OutcomeLocalGranted:
		return "local-granted"
	case OutcomeLocalRejected:
		return "local-rejected"
	case OutcomeDegraded:
		return "degraded"
	case OutcomeRecovered:
		return "recovered"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Event describes one finished request for an Observer.
type Event struct {
	// Resource is the resource's name: the label to count by.
	Resource string
	// Domain is on whose behalf the request was made. It is here for logs and traces;
	// as a metric label it would make one series per user.
	Domain string
	// Outcome is what the request came to.
	Outcome Outcome
	// Granted is the number of hits the caller may use (0 unless granted).
	Granted int64
	// RejectedBy is the limit that rejected the request (OutcomeRejected,
	// OutcomeLocalRejected and OutcomeKillSwitch), LimitNone otherwise.
	RejectedBy Limit
	// Local reports a request decided without Redis by the degraded mode
	// (Result.Local): OutcomeLocalGranted, OutcomeLocalRejected, or OutcomeKillSwitch
	// when the kill switch granted a local rejection.
	Local bool
	// Attempts is the number of times the command was sent, resends with the same
	// ONCE token included (0 when it never was).
	Attempts int
	// Latency is the wall time the call took, waiting included.
	Latency time.Duration
	// Engine is the engine serving the Limiter's requests when this one ended
	// (EngineModule or EngineScripts; EngineAuto when no check of the server could
	// run): a label to alert on when it changes.
	Engine Engine
	// Err is the error returned to the caller (OutcomeError), or the error that made
	// the limiter fail open (OutcomeFailOpen); nil otherwise.
	Err error
}

// Observer sees the outcome of every request of a Limiter (Options.Observer): wire it
// to your metrics library. Observe is called synchronously on the request's goroutine,
// so it must be quick and safe for concurrent use.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to the Observer interface.
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f(ctx, e).
func (f ObserverFunc) Observe(ctx context.Context, e Event) { f(ctx, e) }

// observe builds the Event of a finished request and hands it to the observer. err is
// the call's error, or for a fail-open grant the error it replaced.
func (l *Limiter) observe(ctx context.Context, res *Resource, domain string, r *Result, err error, attempts int, latency time.Duration) {
	e := Event{Domain: domain, Latency: latency, Err: err, Attempts: attempts, Engine: l.Engine()}
	if res != nil {
		e.Resource = res.Name
	}
	switch {
	case r != nil && r.Override == OverrideFailOpen:
		e.Outcome = OutcomeFailOpen // err is the error it replaced
	case err != nil || r == nil:
		e.Outcome = OutcomeError
	case r.Override == OverrideKillSwitch:
		e.Outcome = OutcomeKillSwitch
	case r.Local && r.Granted > 0:
		e.Outcome = OutcomeLocalGranted
	case r.Local:
		e.Outcome = OutcomeLocalRejected
	case r.Granted > 0:
		e.Outcome = OutcomeGranted
	default:
		e.Outcome = OutcomeRejected
	}
	if r != nil {
		if e.Outcome != OutcomeError {
			e.Granted = r.Granted
			e.RejectedBy = r.RejectedBy
			e.Local = r.Local
		}
	}
	l.observer.Observe(ctx, e)
}
