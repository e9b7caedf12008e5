package ratelimit

import (
	"errors"

	"github.com/charon-redis/charon/module/internal/outcome"
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

// errClass and its values are package outcome's, named as this package uses them.
type errClass = outcome.Class

const (
	classUnknown     = outcome.Unknown
	classServer      = outcome.Server
	classTransient   = outcome.Transient
	classUnreachable = outcome.Unreachable
	classGaveUp      = outcome.GaveUp
)

// classify decides what err proves: the limiter's own sentinels first, then what
// go-redis's error proves (package outcome).
func classify(err error) errClass {
	switch {
	case err == nil:
		return classServer // not used
	case errors.Is(err, ErrOutcomeUnknown):
		return classUnknown
	case errors.Is(err, errNotSent):
		return classUnreachable
	}
	return outcome.Classify(err)
}
