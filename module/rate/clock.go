package rate

import "strconv"

// The key's absolute expiry is measured on the server's clock (spec, Storage): a
// request whose AT lies behind the server's clock (a replay, a client clock that lags)
// must never store a key that is already expired, or limiting silently stops.

// SecondsWindow is how close to the server's clock AT*1000 must be for AT to be taken
// for Unix seconds: 10 years.
const SecondsWindow = MaxDuration

// secondsBelow: an AT at or above this (1973-03-03 in ms) is never taken for seconds.
const secondsBelow = 100_000_000_000

// CheckAt refuses an AT that can only be Unix seconds: read as milliseconds it lies
// before 1973-03-03, and read as seconds it lies within 10 years of the server's
// clock serverNow. Small AT values (tests, simulations from 0) stay valid. The glue
// applies it to clients' requests only, never to a primary's stream or the AOF.
func (req *Request) CheckAt(serverNow int64) error {
	if !req.HasAt || req.At >= secondsBelow {
		return nil
	}
	if d := req.At*1000 - serverNow; d < -SecondsWindow || d > SecondsWindow {
		return nil
	}
	return argErr("AT", "must be Unix time in milliseconds; "+strconv.FormatInt(req.At, 10)+
		" lies in 1970 as milliseconds and within 10 years of the server clock as seconds: multiply it by 1000")
}

// ExpireAt moves an absolute expiry x of Apply's Result (ExpireAt or GlobalExpireAt,
// computed on the request's time line: effective time t) onto the server's clock:
// when t lies behind the clock reading clock, x moves forward by the difference, so
// the key lives for as long as it matters (reset_after) from now. When t is at or
// ahead of the clock x stays. x <= 0 (no expiry) stays.
//
// Deterministic replication: the primary reads its clock once and propagates it
// (CLOCK) whenever clock > t; a replica or the AOF passes that value, or t when none
// was propagated, and so sets the same absolute expiry as the primary.
func ExpireAt(x, t, clock int64) int64 {
	if x <= 0 || clock <= t {
		return x
	}
	return x + (clock - t)
}
