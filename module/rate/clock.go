package rate

import "github.com/charon-redis/charon/module/attime"

// The key's absolute expiry is measured on the server's clock (spec, Storage): a
// request whose AT lies behind the server's clock (a replay, a client clock that lags)
// must never store a key that is already expired, or limiting silently stops.

// CheckAt applies attime.Check to a client's AT (the glue never calls it for a request
// replayed from a primary or the AOF): micro/nanoseconds and seconds are refused, and
// so is an AT more than maxAhead ms ahead of the server clock serverNow (0: no bound).
func (req *Request) CheckAt(serverNow, maxAhead int64) error {
	if !req.HasAt {
		return nil
	}
	return attime.Check(req.At, serverNow, maxAhead)
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
