// Package attime holds the one rule every command that takes AT applies to it: AT is
// Unix time in milliseconds, and a wrong unit or a time far ahead of the server clock
// must never silently lock a key (effective time never goes back, so one request far
// in the future would freeze a key's clock until then). It is pure Go: the server
// clock and the bound are arguments.
package attime

import (
	"strconv"

	"github.com/charon-redis/charon/module/internal/args"
)

const (
	// SecondsBelow: an AT below it (1973-03-03 in ms) may be Unix seconds.
	SecondsBelow = 100_000_000_000
	// SecondsWindow is how close to the server's clock AT*1000 must lie for AT to be
	// taken for Unix seconds: 10 years of 365 days, in ms.
	SecondsWindow = 10 * 365 * 24 * 3600 * 1000
	// MicrosFrom: an AT at or above it (the year 2286 in ms) can only be micro- or
	// nanoseconds.
	MicrosFrom = 10_000_000_000_000
	// DefaultMaxAhead is the default of the config charon.max-at-ahead, in ms: 1 hour.
	DefaultMaxAhead = 3_600_000
	// ConfigName is the module config that bounds how far ahead of the server clock AT
	// may be (0: no bound).
	ConfigName = "charon.max-at-ahead"
)

// Check refuses an AT given by a client (never one replayed from a primary or the
// AOF: the glue does not call it for those):
//   - 10^13 or more: micro- or nanoseconds;
//   - below 10^11 while AT*1000 lies within 10 years of the server clock serverNow:
//     seconds (small values, as tests and simulations from 0 use, stay valid);
//   - more than maxAhead ms ahead of serverNow (maxAhead 0: no bound).
//
// The error names AT, the unit or the config.
func Check(at, serverNow, maxAhead int64) error {
	if at >= MicrosFrom {
		return unitErr(at)
	}
	if at < SecondsBelow {
		if d := at*1000 - serverNow; d >= -SecondsWindow && d <= SecondsWindow {
			return args.Err("AT", "must be Unix time in milliseconds; "+strconv.FormatInt(at, 10)+
				" lies in 1970 as milliseconds and within 10 years of the server clock as seconds: multiply it by 1000")
		}
	}
	if maxAhead > 0 && at-serverNow > maxAhead {
		return args.Err("AT", strconv.FormatInt(at, 10)+" lies more than "+ConfigName+" ("+
			strconv.FormatInt(maxAhead, 10)+" ms) ahead of the server clock: it would hold the keys' clock there "+
			"(CONFIG SET "+ConfigName+" 0 lifts the bound)")
	}
	return nil
}

// Refine returns the unit error for an AT value b that failed its parser's range check
// (0..2^53) because it is 10^13 or more, as microseconds and nanoseconds are; else
// err. The parsers call it so that a nanosecond AT is named as such, not only as out
// of range.
func Refine(b []byte, err error) error {
	if v, ok := args.ParseInt(b); ok && v >= MicrosFrom {
		return unitErr(v)
	}
	return err
}

func unitErr(at int64) error {
	return args.Err("AT", "must be Unix time in milliseconds; "+strconv.FormatInt(at, 10)+
		" is 10^13 or more (after the year 2286), so microseconds or nanoseconds: divide it by 1000 or 1000000")
}
