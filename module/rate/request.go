// Package rate implements CHARON.RATE's pure logic: argument parsing, Charon's tiered
// sliding-window algorithm and the flat byte encoding of a key's value. It knows nothing
// of Redis: time is an argument, values are byte slices the caller owns, and errors are
// typed values that the glue turns into replies.
//
// It is the engine inside the Redis module, not a client: Go servers that ask Redis
// for hits import github.com/charon-redis/charon/module/ratelimit instead.
package rate

import (
	"bytes"
	"strconv"

	"github.com/charon-redis/charon/module/attime"
	"github.com/charon-redis/charon/module/internal/args"
)

// Bounds from the CHARON.RATE contract.
const (
	// MaxTiers is the largest number of TIER clauses in one request.
	MaxTiers = 16
	// MaxCount bounds tier limits, MIN, HARD and GLOBAL limits (hits).
	MaxCount = 1_000_000_000_000
	// MaxMax bounds MAX; MAX is at least 1.
	MaxMax = MaxCount
	// MaxDuration bounds windows, active and cooldown times: 10 years of 365 days, in ms.
	MaxDuration = 10 * 365 * 24 * 3600 * 1000
	// MaxAt bounds AT (2^53, the largest integer a double holds exactly).
	MaxAt = 1 << 53
)

// Tier is one TIER clause: Limit hits per Window ms, usable for Active ms after it is
// entered, then closed for Cooldown ms.
type Tier struct {
	Limit     int64
	Window    int64
	Active    int64
	Cooldown  int64
	Skippable bool
}

// Request is a parsed CHARON.RATE argument list. It is caller-owned and reusable:
// ParseRequest overwrites every field.
type Request struct {
	// Max is the most hits asked for (default 1).
	Max int64
	// Min is the fewest hits worth having; it defaults to Max (all or nothing).
	Min int64
	// HasHard reports a HARD clause; Hard is the per-key limit over the last 1000 ms.
	HasHard bool
	Hard    int64
	// HasGlobal reports a GLOBAL clause; GlobalLimit is the resource-wide limit over the
	// last 1000 ms and GlobalKeyIdx the index of the global key name in the args given
	// to ParseRequest (else -1); the command's argv index is GlobalKeyIdx+2.
	HasGlobal    bool
	GlobalLimit  int64
	GlobalKeyIdx int
	// HasAt reports an AT clause; At is its time in ms and AtIdx the index of the AT
	// keyword in the args given to ParseRequest (else -1; its value is at AtIdx+1), so
	// the glue can replace or append AT when replicating.
	HasAt bool
	At    int64
	AtIdx int
	// DryRun asks for the answer without any change.
	DryRun bool
	// Closed is the CLOSED keyword: the resource is closed, every request is rejected
	// with retry_after -1 (rule 9). It comes with no tiers.
	Closed bool
	// HasClock reports a CLOCK clause: the server clock reading (ms) that a primary
	// measured the key's expiry against, which it adds when it propagates a request
	// whose AT lay behind its clock, so that replicas and the AOF set the same
	// absolute expiry (see ExpireAt). ClockIdx is the index of the CLOCK keyword in
	// the args given to ParseRequest (else -1).
	HasClock bool
	Clock    int64
	ClockIdx int
	// HasLimits reports the compact form: the tiers came from one LIMITS string.
	HasLimits bool
	// Tiers[:NTiers] are the TIER clauses (or the LIMITS string's tiers) in order.
	Tiers  [MaxTiers]Tier
	NTiers int

	// Caps[:NCaps] are the per-domain caps other than HARD (CAP clauses, the caps of
	// LIMITS), in order; a 1000 ms cap is HARD. HasGlobalLimit reports GLOBAL's
	// 1000 ms cap (GLOBAL gkey n, or a 1 s cap in its caps string), GlobalLimit its n;
	// GlobalCaps[:NGlobalCaps] are GLOBAL's other caps (rule 10).
	NCaps          int
	Caps           [MaxCaps]Cap
	HasGlobalLimit bool
	NGlobalCaps    int
	GlobalCaps     [MaxCaps]Cap

	// HasOnce reports ONCE token; Once is the token's hash (OnceHash), what the key
	// remembers (rule 11).
	HasOnce bool
	Once    uint64
}

// MaxOnceLen bounds a ONCE token (bytes).
const MaxOnceLen = 64

// OnceHash is the 64-bit hash a key remembers of a ONCE token: FNV-1a 64 of its bytes,
// 0 mapped to 1 (a token slot holding 0 is empty).
func OnceHash(token []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range token {
		h ^= uint64(c)
		h *= 1099511628211
	}
	if h == 0 {
		h = 1
	}
	return h
}

// ArgError names the offending argument of a command. The glue turns it into the reply
// "ERR <Arg>: <Reason>". It is the one argument error of the module's parsers
// (module/hold's ArgError is the same type).
type ArgError = args.Error

// Short local names for the shared primitives (functions, not variables, so that they
// inline and escape analysis sees through them: the hot path allocates nothing).
func argErr(arg, reason string) error { return args.Err(arg, reason) }
func eqFold(b []byte, kw string) bool { return args.EqFold(b, kw) }
func parseInt(b []byte) (int64, bool) { return args.ParseInt(b) }

// rangeErr builds the error for a number outside [lo, hi].
func rangeErr(arg string, lo, hi int64) error {
	return argErr(arg, "must be an integer between "+strconv.FormatInt(lo, 10)+" and "+strconv.FormatInt(hi, 10))
}

func parseBounded(b []byte, lo, hi int64) (int64, bool) { return args.ParseBounded(b, lo, hi) }

// QuoteArg makes a user argument safe to echo in an error reply: quoted, printable
// ASCII only (a NUL, CR or LF becomes '?'), at most 32 bytes and "..." when cut.
// Every echoed argument of the module goes through it.
func QuoteArg(b []byte) string { return quoteArg(b) }

func quoteArg(b []byte) string {
	const max = 32
	n := len(b)
	if n > max {
		n = max
	}
	buf := make([]byte, 0, n+5)
	buf = append(buf, '\'')
	for _, c := range b[:n] {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		buf = append(buf, c)
	}
	if len(b) > max {
		buf = append(buf, "..."...)
	}
	buf = append(buf, '\'')
	return string(buf)
}

// tierArg names argument part of TIER clause number n (1-based).
func tierArg(n int, part string) string {
	s := "TIER " + strconv.Itoa(n)
	if part != "" {
		s += " " + part
	}
	return s
}

// ParseRequest parses the arguments of CHARON.RATE that follow the key (args[0] is the
// first option) into req. It allocates nothing on success. Errors are *ArgError.
// A Parser does the same and also caches the parse of LIMITS strings.
func ParseRequest(args [][]byte, req *Request) error {
	return parseRequest(args, req, nil)
}

func parseRequest(args [][]byte, req *Request, cache *LimitsCache) error {
	*req = Request{Max: 1, GlobalKeyIdx: -1, AtIdx: -1, ClockIdx: -1}
	hasMax, hasMin := false, false
	var caps capList // per-domain caps in order: CAP clauses and LIMITS's
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case eqFold(a, "MAX"):
			v, err := optionValue(args, i, "MAX", hasMax, 1, MaxMax)
			if err != nil {
				return err
			}
			req.Max, hasMax = v, true
			i++
		case eqFold(a, "MIN"):
			v, err := optionValue(args, i, "MIN", hasMin, 0, MaxCount)
			if err != nil {
				return err
			}
			req.Min, hasMin = v, true
			i++
		case eqFold(a, "HARD"):
			v, err := optionValue(args, i, "HARD", req.HasHard, 0, MaxCount)
			if err != nil {
				return err
			}
			req.Hard, req.HasHard = v, true
			i++
		case eqFold(a, "GLOBAL"):
			if req.HasGlobal {
				return argErr("GLOBAL", "given more than once")
			}
			if i+2 >= len(args) {
				return errGlobalArgs
			}
			if v, ok := parseBounded(args[i+2], 0, MaxCount); ok {
				req.GlobalLimit, req.HasGlobalLimit = v, true
			} else {
				if _, isInt := parseInt(args[i+2]); isInt {
					return argErr("GLOBAL", "takes a key and a limit; the limit must be an integer between 0 and "+strconv.FormatInt(MaxCount, 10))
				}
				if bytes.IndexByte(args[i+2], '/') < 0 {
					return errGlobalArgs
				}
				if err := parseGlobalCaps(args[i+2], req, cache); err != nil {
					return err
				}
			}
			req.HasGlobal, req.GlobalKeyIdx = true, i+1
			i += 2
		case eqFold(a, "CAP"):
			if i+2 >= len(args) {
				return argErr("CAP "+strconv.Itoa(caps.n+1), "expected limit window-ms")
			}
			k := caps.n + 1
			lim, ok := parseBounded(args[i+1], 0, MaxCount)
			if !ok {
				return rangeErr("CAP "+strconv.Itoa(k)+" limit", 0, MaxCount)
			}
			w, ok := parseBounded(args[i+2], 1, MaxDuration)
			if !ok {
				return rangeErr("CAP "+strconv.Itoa(k)+" window-ms", 1, MaxDuration)
			}
			if err := caps.add(Cap{Limit: lim, Window: w}, "CAP", k); err != nil {
				return err
			}
			i += 2
		case eqFold(a, "ONCE"):
			tok, err := optionBytes(args, i, "ONCE", req.HasOnce)
			if err != nil {
				return err
			}
			if len(tok) < 1 || len(tok) > MaxOnceLen {
				return argErr("ONCE", "the token must be 1 to "+strconv.Itoa(MaxOnceLen)+" bytes")
			}
			req.HasOnce, req.Once = true, OnceHash(tok)
			i++
		case eqFold(a, "AT"):
			v, err := optionValue(args, i, "AT", req.HasAt, 0, MaxAt)
			if err != nil {
				if !req.HasAt && i+1 < len(args) {
					err = attime.Refine(args[i+1], err)
				}
				return err
			}
			req.At, req.HasAt, req.AtIdx = v, true, i
			i++
		case eqFold(a, "CLOCK"):
			v, err := optionValue(args, i, "CLOCK", req.HasClock, 0, MaxAt)
			if err != nil {
				return err
			}
			req.Clock, req.HasClock, req.ClockIdx = v, true, i
			i++
		case eqFold(a, "DRYRUN"):
			if req.DryRun {
				return argErr("DRYRUN", "given more than once")
			}
			req.DryRun = true
		case eqFold(a, "CLOSED"):
			if req.Closed {
				return argErr("CLOSED", "given more than once")
			}
			req.Closed = true
		case eqFold(a, "LIMITS"):
			if req.HasLimits {
				return argErr("LIMITS", "given more than once")
			}
			if req.NTiers > 0 {
				return errLimitsAndTier
			}
			if i+1 >= len(args) {
				return argErr("LIMITS", `missing value, e.g. LIMITS "10/1s, 50/5s/5s/15s"`)
			}
			var own capList
			var err error
			if cache != nil {
				err = cache.parse(args[i+1], req, &own)
			} else {
				req.NTiers, err = ParseCompact(args[i+1], &req.Tiers, &own)
			}
			if err != nil {
				return err
			}
			for k := 0; k < own.n; k++ {
				if err := caps.add(own.c[k], "LIMITS", k+1); err != nil {
					return err
				}
			}
			req.HasLimits = true
			i++
		case eqFold(a, "TIER"):
			if req.HasLimits {
				return errLimitsAndTier
			}
			n := req.NTiers + 1
			if n > MaxTiers {
				return argErr(tierArg(n, ""), "at most "+strconv.Itoa(MaxTiers)+" tiers are allowed")
			}
			if i+4 >= len(args) {
				return argErr(tierArg(n, ""), "expected limit window-ms active-ms cooldown-ms")
			}
			t := &req.Tiers[req.NTiers]
			var ok bool
			if t.Limit, ok = parseBounded(args[i+1], 0, MaxCount); !ok {
				return rangeErr(tierArg(n, "limit"), 0, MaxCount)
			}
			if t.Window, ok = parseBounded(args[i+2], 1, MaxDuration); !ok {
				return rangeErr(tierArg(n, "window-ms"), 1, MaxDuration)
			}
			if t.Active, ok = parseBounded(args[i+3], 1, MaxDuration); !ok {
				return rangeErr(tierArg(n, "active-ms"), 1, MaxDuration)
			}
			if t.Cooldown, ok = parseBounded(args[i+4], 0, MaxDuration); !ok {
				return rangeErr(tierArg(n, "cooldown-ms"), 0, MaxDuration)
			}
			i += 4
			if i+1 < len(args) && eqFold(args[i+1], "SKIPPABLE") {
				t.Skippable = true
				i++
			}
			req.NTiers = n
		case eqFold(a, "SKIPPABLE"):
			return argErr("SKIPPABLE", "must follow the four numbers of a TIER clause")
		default:
			return argErr("syntax", "unknown option "+quoteArg(a))
		}
	}
	if !hasMin {
		req.Min = req.Max
	} else if req.Min > req.Max {
		return argErr("MIN", "must not be greater than MAX")
	}
	if caps.n > 0 {
		if req.HasHard {
			// HARD n is the cap n/1000ms: it counts towards the caps and its window.
			if err := caps.add(Cap{Limit: req.Hard, Window: secondWindow}, "HARD", 0); err != nil {
				return err
			}
		}
		req.NCaps, req.HasHard, req.Hard = caps.split(&req.Caps)
	}
	// Rule 9: a closed resource says so; forgetting the limits is an error.
	switch {
	case req.Closed && req.NTiers > 0:
		return argErr("CLOSED", "a closed resource takes no TIER or LIMITS")
	case !req.Closed && req.NTiers == 0:
		return argErr("TIER", "no limits given: add TIER clauses or LIMITS, or say CLOSED to reject every request")
	}
	return nil
}

// parseGlobalCaps reads GLOBAL's caps string (rule 10) into req.
func parseGlobalCaps(s []byte, req *Request, cache *LimitsCache) error {
	var caps capList
	var err error
	if cache != nil {
		err = cache.parseGlobal(s, &caps)
	} else {
		err = ParseCapsString(s, "GLOBAL", &caps)
	}
	if err != nil {
		return err
	}
	req.NGlobalCaps, req.HasGlobalLimit, req.GlobalLimit = caps.split(&req.GlobalCaps)
	return nil
}

var (
	errGlobalArgs    = argErr("GLOBAL", `takes a key and a limit, or a key and caps: GLOBAL gkey n, GLOBAL gkey "5000/1s, 2000000/1d"`)
	errLimitsAndTier = argErr("LIMITS", "use either LIMITS or TIER clauses, not both")
)

// Parser parses CHARON.RATE requests like ParseRequest and keeps the parse of the
// LIMITS strings it saw last, since servers send the same few strings over and over.
// It is not safe for concurrent use; the zero value is ready.
type Parser struct {
	cache LimitsCache
}

// Parse is ParseRequest with the LIMITS cache. It allocates nothing.
func (p *Parser) Parse(args [][]byte, req *Request) error {
	return parseRequest(args, req, &p.cache)
}

// optionBytes returns the value of the option name at argv[i], for an option not seen
// before.
func optionBytes(argv [][]byte, i int, name string, seen bool) ([]byte, error) {
	return args.Value(argv, i, name, seen)
}

// optionValue reads the value of the option name at args[i] (its value is args[i+1]):
// an integer in [lo, hi], for an option not seen before.
func optionValue(argv [][]byte, i int, name string, seen bool, lo, hi int64) (int64, error) {
	b, err := args.Value(argv, i, name, seen)
	if err != nil {
		return 0, err
	}
	v, ok := parseBounded(b, lo, hi)
	if !ok {
		return 0, rangeErr(name, lo, hi)
	}
	return v, nil
}

// ParseInspect parses the arguments of CHARON.INSPECT that follow the key: nothing, or
// AT unix-ms. Errors are *ArgError.
func ParseInspect(args [][]byte) (at int64, hasAt bool, err error) {
	switch {
	case len(args) == 0:
		return 0, false, nil
	case eqFold(args[0], "AT"):
		v, err := optionValue(args, 0, "AT", false, 0, MaxAt)
		if err != nil {
			if len(args) > 1 {
				err = attime.Refine(args[1], err)
			}
			return 0, false, err
		}
		if len(args) > 2 {
			return 0, false, argErr("syntax", "unexpected argument "+quoteArg(args[2]))
		}
		return v, true, nil
	default:
		return 0, false, argErr("syntax", "unknown option "+quoteArg(args[0]))
	}
}

// valid reports whether req is within the bounds ParseRequest guarantees, so that a
// hand-built Request cannot make Apply write a value Validate would refuse.
func (req *Request) valid() bool {
	if req.NTiers < 0 || req.NTiers > MaxTiers || req.Max < 1 || req.Max > MaxMax ||
		req.Min < 0 || req.Min > req.Max ||
		req.HasHard && (req.Hard < 0 || req.Hard > MaxCount) ||
		req.HasGlobal && (req.GlobalLimit < 0 || req.GlobalLimit > MaxCount) {
		return false
	}
	for i := 0; i < req.NTiers; i++ {
		t := &req.Tiers[i]
		if t.Limit < 0 || t.Limit > MaxCount || t.Window < 1 || t.Window > MaxDuration ||
			t.Active < 1 || t.Active > MaxDuration || t.Cooldown < 0 || t.Cooldown > MaxDuration {
			return false
		}
	}
	return true
}
