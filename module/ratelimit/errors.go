package ratelimit

import (
	"errors"

	"github.com/charon-redis/charon/module/internal/outcome"
	"github.com/charon-redis/charon/module/internal/transport"
)

// ErrOutcomeUnknown is wrapped (together with the cause) when CHARON.RATE may have
// reached the server and no answer came back, even to the resends with the same ONCE
// token (Options.Resends): read timeouts, connection resets or closes after the
// command was written, a reply that could not be parsed. The hits may or may not have
// been counted (at most once). The client never waits after it and never fails open
// on it.
var ErrOutcomeUnknown = errors.New("ratelimit: outcome unknown, the request may have been counted")

// ErrMisconfigured is wrapped when the client or the server is set up wrong: the
// server does not know CHARON.RATE (the module is not loaded), or a Redis Cluster is
// reached through a *redis.Client instead of a *redis.ClusterClient (the server
// answers MOVED). The error names the fix; it is never failed open. The same value
// as concurrency.ErrMisconfigured and unread.ErrMisconfigured.
var ErrMisconfigured = transport.ErrMisconfigured

// errClass and its values are package outcome's, named as this package uses them.
type errClass = outcome.Class

const (
	classUnknown     = outcome.Unknown
	classServer      = outcome.Server
	classTransient   = outcome.Transient
	classUnreachable = outcome.Unreachable
	classGaveUp      = outcome.GaveUp
)

// classify decides what err proves: what the transport found, else the limiter's
// own sentinel (a reply it could not decode), else what go-redis's error proves.
func classify(err error) errClass {
	var te *transport.Error
	switch {
	case err == nil:
		return classServer // not used
	case errors.As(err, &te):
		return te.Class
	case errors.Is(err, ErrOutcomeUnknown):
		return classUnknown
	}
	return outcome.Classify(err)
}
