package rate

import "strconv"

// The compact form: LIMITS "10/1s, 50/5s/5s/15s, 1000/1m/1m/10m" carries every tier
// in one argument (spec, "The compact form"):
//
//	limits   = tier *( "," tier )
//	tier     = count "/" duration [ "/" duration [ "/" duration ] ] [ "?" ]
//	           ; limit / window [/ active [/ cooldown]] ; "?" marks a skippable tier
//	duration = digits [ "ms" | "s" | "m" | "h" | "d" ]   ; no unit = milliseconds
//
// Spaces and tabs around separators (and at either end) are ignored; active defaults
// to the window and cooldown to 0. Bounds are the TIER form's, and so are the parsed
// tiers, byte for byte.

// maxLimitsLen bounds a LIMITS string: 16 tiers of the longest fields with generous
// whitespace fit in it, and a longer string is refused before it is scanned.
const maxLimitsLen = 4096

// limitsField names the fields of a compact tier in errors.
var limitsField = [4]string{"limit", "window", "active", "cooldown"}

// limitsArg names a field of tier n (1-based) of a LIMITS string.
func limitsArg(n int, field string) string {
	s := "LIMITS tier " + strconv.Itoa(n)
	if field != "" {
		s += " " + field
	}
	return s
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// ParseLimits parses a LIMITS string without caps into tiers and returns their number.
// It allocates nothing on success. Errors are *ArgError naming the tier and the field.
func ParseLimits(s []byte, tiers *[MaxTiers]Tier) (int, error) {
	var caps capList
	n, err := ParseCompact(s, tiers, &caps)
	if err == nil && caps.n > 0 {
		return 0, argErr("LIMITS", "caps are not allowed here")
	}
	return n, err
}

// ParseCompact parses a LIMITS string, tiers and the caps after ';' (rule 10):
//
//	limits = tier *( "," tier ) [ ";" cap *( "," cap ) ]
//	cap    = count "/" duration
//
// It returns the number of tiers; the caps are appended to caps in order (a 1000 ms
// cap included: it is HARD). It allocates nothing on success.
func ParseCompact(s []byte, tiers *[MaxTiers]Tier, caps *capList) (int, error) {
	if len(s) > maxLimitsLen {
		return 0, argErr("LIMITS", "longer than "+strconv.Itoa(maxLimitsLen)+" bytes")
	}
	n := 0
	i := 0
	var u units
	for {
		if n == MaxTiers {
			return 0, argErr(limitsArg(n+1, ""), "at most "+strconv.Itoa(MaxTiers)+" tiers are allowed")
		}
		t := &tiers[n]
		var err error
		if i, err = parseCompactTier(s, i, n+1, t, &u); err != nil {
			return 0, err
		}
		n++
		if i == len(s) {
			return n, u.check()
		}
		// parseCompactTier stops only at the end, a ',' or a ';'.
		if s[i] == ';' {
			if _, err := parseCaps(s, i+1, "LIMITS", caps, &u); err != nil {
				return 0, err
			}
			return n, u.check()
		}
		i++
	}
}

// ParseCapsString parses a caps string (GLOBAL's: cap *( "," cap )), appending to caps.
// Errors name "<what> cap <n> ...".
func ParseCapsString(s []byte, what string, caps *capList) error {
	if len(s) > maxLimitsLen {
		return argErr(what, "longer than "+strconv.Itoa(maxLimitsLen)+" bytes")
	}
	var u units
	if _, err := parseCaps(s, 0, what, caps, &u); err != nil {
		return err
	}
	return u.check()
}

// capArg names a field of cap n (1-based) of a caps string: "LIMITS cap 2 window".
func capArg(what string, n int, field string) string {
	s := what + " cap " + strconv.Itoa(n)
	if field != "" {
		s += " " + field
	}
	return s
}

// parseCaps parses "cap *( "," cap )" from s[i:] to the end into caps.
func parseCaps(s []byte, i int, what string, caps *capList, u *units) (int, error) {
	for k := 1; ; k++ {
		var vals [2]int64
		for f := 0; f < 2; f++ {
			for i < len(s) && isSpace(s[i]) {
				i++
			}
			start := i
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			field := limitsField[f]
			if i == start {
				return 0, argErr(capArg(what, k, field), "expected digits"+found(s, i))
			}
			v, ok := digitsValue(s[start:i])
			unit := int64(1)
			if f == 1 {
				digitsEnd := i
				unit, i = durationUnit(s, i)
				u.saw(what, k, 1, v, i > digitsEnd)
			}
			lo, hi := int64(0), int64(MaxCount)
			if f == 1 {
				lo, hi = 1, MaxDuration
			}
			if !ok || v > hi/unit || v*unit < lo {
				if f == 0 {
					return 0, rangeErr(capArg(what, k, "limit"), lo, hi)
				}
				return 0, argErr(capArg(what, k, "window"), "must be a duration between "+strconv.FormatInt(lo, 10)+
					" and "+strconv.FormatInt(hi, 10)+" ms (digits, then ms, s, m, h, d or nothing for ms)")
			}
			vals[f] = v * unit
			for i < len(s) && isSpace(s[i]) {
				i++
			}
			if f == 0 {
				if i >= len(s) || s[i] != '/' {
					return 0, argErr(capArg(what, k, "window"), "expected '/' and a window after the limit"+found(s, i))
				}
				i++
			}
		}
		if err := caps.add(Cap{Limit: vals[0], Window: vals[1]}, what, k); err != nil {
			return 0, err
		}
		if i == len(s) {
			return i, nil
		}
		if s[i] != ',' {
			return 0, argErr(capArg(what, k, ""), "expected ',' or the end"+found(s, i))
		}
		i++
	}
}

// durationUnit reads an optional unit at s[i] and returns its length in ms and the
// index after it (no unit: 1 ms, i).
func durationUnit(s []byte, i int) (int64, int) {
	switch {
	case i+1 < len(s) && s[i] == 'm' && s[i+1] == 's':
		return 1, i + 2
	case i < len(s) && s[i] == 's':
		return 1000, i + 1
	case i < len(s) && s[i] == 'm':
		return 60_000, i + 1
	case i < len(s) && s[i] == 'h':
		return 3_600_000, i + 1
	case i < len(s) && s[i] == 'd':
		return 86_400_000, i + 1
	}
	return 1, i
}

// units records which durations of a LIMITS string carry a unit. A string that mixes
// both is refused: "50/5s/5s/15" almost surely meant 15s, not 15 ms. A zero is the
// same in every unit and counts as neither.
type units struct {
	some bool // a duration with a unit (ms included) was seen
	// The first duration without a unit: n = 0 when none; else the tier (what ==
	// "") or cap of what (LIMITS, GLOBAL) number n, its field and value.
	n     int
	what  string
	field int
	bare  int64
}

func (u *units) saw(what string, n, field int, v int64, hasUnit bool) {
	switch {
	case v == 0:
	case hasUnit:
		u.some = true
	case u.n == 0:
		u.what, u.n, u.field, u.bare = what, n, field, v
	}
}

func (u *units) check() error {
	if !u.some || u.n == 0 {
		return nil
	}
	v := strconv.FormatInt(u.bare, 10)
	arg := limitsArg(u.n, limitsField[u.field])
	if u.what != "" {
		arg = capArg(u.what, u.n, "window")
	}
	return argErr(arg, v+" has no unit while other durations "+
		"have one: write "+v+"s or "+v+"ms (a bare number means ms only when no duration has a unit)")
}

// parseCompactTier parses tier number n starting at s[i] into t and returns the index
// of the ',' or ';' that ends it, or len(s).
func parseCompactTier(s []byte, i, n int, t *Tier, u *units) (int, error) {
	var vals [4]int64
	nf := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		field := limitsField[nf]
		if i == start {
			return 0, argErr(limitsArg(n, field), "expected digits"+found(s, i))
		}
		v, ok := digitsValue(s[start:i])
		unit := int64(1)
		if nf > 0 {
			// A duration: digits and an optional unit.
			digitsEnd := i
			unit, i = durationUnit(s, i)
			u.saw("", n, nf, v, i > digitsEnd)
		}
		lo, hi := int64(1), int64(MaxDuration)
		switch nf {
		case 0:
			lo, hi = 0, MaxCount
		case 3:
			lo = 0
		}
		if !ok || v > hi/unit || v*unit < lo {
			return 0, limitsRangeErr(n, nf, lo, hi)
		}
		vals[nf] = v * unit
		nf++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i < len(s) && s[i] == '/' {
			if nf == 4 {
				return 0, argErr(limitsArg(n, ""), "at most limit/window/active/cooldown"+found(s, i))
			}
			i++
			continue
		}
		if nf == 1 {
			return 0, argErr(limitsArg(n, "window"), "expected '/' and a window after the limit"+found(s, i))
		}
		break
	}
	*t = Tier{Limit: vals[0], Window: vals[1], Active: vals[1], Cooldown: 0}
	if nf > 2 {
		t.Active = vals[2]
	}
	if nf > 3 {
		t.Cooldown = vals[3]
	}
	if i < len(s) && s[i] == '?' {
		t.Skippable = true
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	if i < len(s) && s[i] != ',' && s[i] != ';' {
		return 0, argErr(limitsArg(n, ""), "expected ',', ';' or the end"+found(s, i))
	}
	return i, nil
}

// digitsValue is the value of a run of ASCII digits, ok false above 2^62. It stops
// before a step could overflow, so no number wraps around into the bounds.
func digitsValue(b []byte) (int64, bool) {
	var v int64
	for _, c := range b {
		if v > (1<<62)/10 {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, v <= 1<<62
}

func limitsRangeErr(n, nf int, lo, hi int64) error {
	if nf == 0 {
		return rangeErr(limitsArg(n, "limit"), lo, hi)
	}
	return argErr(limitsArg(n, limitsField[nf]), "must be a duration between "+strconv.FormatInt(lo, 10)+
		" and "+strconv.FormatInt(hi, 10)+" ms (digits, then ms, s, m, h, d or nothing for ms)")
}

// found describes what the parser met at s[i]: " at the end" or " at 'x...'".
func found(s []byte, i int) string {
	if i >= len(s) {
		return ", found the end"
	}
	return ", found " + quoteArg(s[i:])
}

// limitsCacheEntries is how many LIMITS strings a LimitsCache keeps; servers send a
// few, one per resource.
const limitsCacheEntries = 8

// limitsCacheKey bounds the strings a LimitsCache keeps; longer ones are parsed every
// time.
const limitsCacheKey = 256

// LimitsCache keeps the parse of the last few LIMITS strings (and GLOBAL caps strings)
// seen, in fixed arrays so that neither a hit nor a miss allocates. The zero value is
// empty.
type LimitsCache struct {
	entries [limitsCacheEntries]limitsEntry
	next    int // the entry a miss replaces (round robin)
}

type limitsEntry struct {
	keyLen int
	used   bool
	global bool // a GLOBAL caps string, not a LIMITS string
	n      int
	key    [limitsCacheKey]byte
	tiers  [MaxTiers]Tier
	caps   capList
}

func (lc *LimitsCache) find(s []byte, global bool) *limitsEntry {
	for k := range lc.entries {
		e := &lc.entries[k]
		if e.used && e.global == global && e.keyLen == len(s) && string(e.key[:e.keyLen]) == string(s) {
			return e
		}
	}
	return nil
}

func (lc *LimitsCache) store(s []byte, global bool) *limitsEntry {
	if len(s) == 0 || len(s) > limitsCacheKey {
		return nil
	}
	e := &lc.entries[lc.next]
	lc.next = (lc.next + 1) % limitsCacheEntries
	e.used, e.global = true, global
	e.keyLen = copy(e.key[:], s)
	return e
}

// parse fills req.Tiers and req.NTiers from s and its caps into caps (empty), from
// the cache when s was seen.
func (lc *LimitsCache) parse(s []byte, req *Request, caps *capList) error {
	if e := lc.find(s, false); e != nil {
		req.NTiers = e.n
		copy(req.Tiers[:e.n], e.tiers[:e.n])
		*caps = e.caps
		return nil
	}
	n, err := ParseCompact(s, &req.Tiers, caps)
	if err != nil {
		return err
	}
	req.NTiers = n
	if e := lc.store(s, false); e != nil {
		e.n = n
		copy(e.tiers[:n], req.Tiers[:n])
		e.caps = *caps
	}
	return nil
}

// parseGlobal parses GLOBAL's caps string s into caps (empty), from the cache when s
// was seen.
func (lc *LimitsCache) parseGlobal(s []byte, caps *capList) error {
	if e := lc.find(s, true); e != nil {
		*caps = e.caps
		return nil
	}
	if err := ParseCapsString(s, "GLOBAL", caps); err != nil {
		return err
	}
	if e := lc.store(s, true); e != nil {
		e.caps = *caps
	}
	return nil
}
