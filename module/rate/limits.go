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

// ParseLimits parses a LIMITS string into tiers and returns their number. It
// allocates nothing on success. Errors are *ArgError naming the tier and the field.
func ParseLimits(s []byte, tiers *[MaxTiers]Tier) (int, error) {
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
		// parseCompactTier stops only at the end or after a ','.
		i++
	}
}

// units records which durations of a LIMITS string carry a unit. A string that mixes
// both is refused: "50/5s/5s/15" almost surely meant 15s, not 15 ms. A zero is the
// same in every unit and counts as neither.
type units struct {
	some      bool  // a duration with a unit (ms included) was seen
	bareTier  int   // the first duration without a unit: its tier (0: none),
	bareField int   // field
	bare      int64 // and value
}

func (u *units) saw(tier, field int, v int64, hasUnit bool) {
	if hasUnit {
		u.some = true
	} else if u.bareTier == 0 {
		u.bareTier, u.bareField, u.bare = tier, field, v
	}
}

func (u *units) check() error {
	if !u.some || u.bareTier == 0 {
		return nil
	}
	v := strconv.FormatInt(u.bare, 10)
	return argErr(limitsArg(u.bareTier, limitsField[u.bareField]), v+" has no unit while other durations "+
		"have one: write "+v+"s or "+v+"ms (a bare number means ms only when no duration has a unit)")
}

// parseCompactTier parses tier number n starting at s[i] into t and returns the index
// of the ',' that ends it, or len(s).
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
			switch {
			case i+1 < len(s) && s[i] == 'm' && s[i+1] == 's':
				i += 2
			case i < len(s) && s[i] == 's':
				unit, i = 1000, i+1
			case i < len(s) && s[i] == 'm':
				unit, i = 60_000, i+1
			case i < len(s) && s[i] == 'h':
				unit, i = 3_600_000, i+1
			case i < len(s) && s[i] == 'd':
				unit, i = 86_400_000, i+1
			}
			if v != 0 {
				u.saw(n, nf, v, i > digitsEnd)
			}
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
	if i < len(s) && s[i] != ',' {
		return 0, argErr(limitsArg(n, ""), "expected ',' or the end"+found(s, i))
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

// LimitsCache keeps the parse of the last few LIMITS strings seen, in fixed arrays so
// that neither a hit nor a miss allocates. The zero value is empty.
type LimitsCache struct {
	entries [limitsCacheEntries]limitsEntry
	next    int // the entry a miss replaces (round robin)
}

type limitsEntry struct {
	keyLen int
	n      int // 0: unused (a string that parses has at least one tier)
	key    [limitsCacheKey]byte
	tiers  [MaxTiers]Tier
}

// parse fills req.Tiers and req.NTiers from s, from the cache when s was seen.
func (lc *LimitsCache) parse(s []byte, req *Request) error {
	for k := range lc.entries {
		e := &lc.entries[k]
		if e.n > 0 && e.keyLen == len(s) && string(e.key[:e.keyLen]) == string(s) {
			req.NTiers = e.n
			copy(req.Tiers[:e.n], e.tiers[:e.n])
			return nil
		}
	}
	n, err := ParseLimits(s, &req.Tiers)
	if err != nil {
		return err
	}
	req.NTiers = n
	if len(s) > 0 && len(s) <= limitsCacheKey {
		e := &lc.entries[lc.next]
		lc.next = (lc.next + 1) % limitsCacheEntries
		e.keyLen = copy(e.key[:], s)
		e.n = n
		copy(e.tiers[:n], req.Tiers[:n])
	}
	return nil
}
