// Package args holds the argument-parsing primitives that the module's pure command
// parsers (module/rate, module/hold) share: the error that names an argument,
// case-insensitive keyword matching and Redis-style integer parsing. It is pure Go
// (stdlib only, no cgo, nothing of Redis) and allocates nothing but its errors.
package args

// Error names the offending argument of a command and says why. The glue turns it into
// the reply "ERR <Arg>: <Reason>".
type Error struct {
	Arg    string
	Reason string
}

// Error returns "<Arg>: <reason>".
func (e *Error) Error() string { return e.Arg + ": " + e.Reason }

// Err returns an *Error naming arg.
func Err(arg, reason string) error { return &Error{Arg: arg, Reason: reason} }

// EqFold reports whether b equals the upper-case ASCII keyword kw, ignoring case.
func EqFold(b []byte, kw string) bool {
	if len(b) != len(kw) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != kw[i] {
			return false
		}
	}
	return true
}

// ParseInt parses a decimal int64 the way Redis's string2ll does: optional '-', no
// leading zeros, no spaces or '+', no overflow.
func ParseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := false
	i := 0
	if b[0] == '-' {
		neg = true
		i = 1
		if len(b) == 1 {
			return 0, false
		}
	}
	if b[i] == '0' {
		// "0" alone is fine; "-0" and leading zeros are not.
		return 0, len(b) == 1
	}
	var v uint64
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > (1<<63)/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}

// ParseBounded is ParseInt restricted to [lo, hi].
func ParseBounded(b []byte, lo, hi int64) (int64, bool) {
	v, ok := ParseInt(b)
	if !ok || v < lo || v > hi {
		return 0, false
	}
	return v, true
}

// Value returns the value of the option name at args[i] (args[i+1]), or an *Error if
// the option was seen before or has no value; the caller parses the value.
func Value(args [][]byte, i int, name string, seen bool) ([]byte, error) {
	if seen {
		return nil, Err(name, "given more than once")
	}
	if i+1 >= len(args) {
		return nil, Err(name, "missing value")
	}
	return args[i+1], nil
}
