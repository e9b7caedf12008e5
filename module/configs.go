package main

import (
	"math"

	"github.com/charon-redis/charon/module/attime"
	"github.com/charon-redis/charon/rm"
)

// maxAtAhead is the config charon.max-at-ahead: how far ahead of the server clock a
// client's AT may be, in ms (0: no bound). Commands read it on the main thread only.
var maxAtAhead int64 = attime.DefaultMaxAhead

// registerConfigs declares Charon's own module configs (rm declares the Go runtime's).
// A server without module configs keeps the defaults.
func registerConfigs(c rm.Ctx) error {
	if !rm.HasAPI("RedisModule_RegisterNumericConfig") || !rm.HasAPI("RedisModule_LoadConfigs") {
		return nil
	}
	return c.RegisterNumericConfig(rm.NumericConfig{
		Name:    "max-at-ahead",
		Default: attime.DefaultMaxAhead,
		Min:     0,
		Max:     math.MaxInt64,
		Get:     func() int64 { return maxAtAhead },
		Set:     func(v int64) error { maxAtAhead = v; return nil },
	})
}

// checkAt applies the AT rules (module/attime) to a client's request; a request
// replayed from a primary or the AOF is never refused (the caller does not call it).
func checkAt(hasAt bool, at, serverNow int64) error {
	if !hasAt {
		return nil
	}
	return attime.Check(at, serverNow, maxAtAhead)
}
