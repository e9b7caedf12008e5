package ratelimit

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/charon-redis/charon/module/rate"
)

// ErrInvalid is wrapped by every error about arguments the client refuses to send:
// a Resource, a domain or a request outside the CHARON.RATE contract. Nothing was sent.
var ErrInvalid = errors.New("ratelimit: invalid argument")

// Bounds of the CHARON.RATE contract, in the client's units.
const (
	// MaxTiers is the most tiers a Resource may have.
	MaxTiers = rate.MaxTiers
	// MaxCount bounds tier limits, Hard, Global, Min and Max (hits).
	MaxCount = rate.MaxCount
	// MaxDuration bounds windows, active times, cooldowns and caps' windows (10 years).
	MaxDuration = time.Duration(rate.MaxDuration) * time.Millisecond
	// MaxCaps is the most caps one key may have: Caps with Hard counted among them
	// (Hard is the cap over one second), and GlobalCaps with Global counted.
	MaxCaps = rate.MaxCaps
)

// Cap bounds the hits granted over any window of length Per to Limit, whatever the
// tiers allow: "1,000 per hour and 10,000 per day" are Cap{1000, time.Hour} and
// Cap{10000, 24 * time.Hour}, checked and counted in the same request as the tiers.
// Per is a whole number of milliseconds (1ms..MaxDuration), never rounded. Caps up to
// a second count exactly; a longer cap counts in buckets of Per/1000 (rounded up to
// whole ms: 3.6s for an hour, 86.4s for a day), so a hit counts at most one bucket
// longer than Per, and a cap never lets more than Limit through in any window of Per.
// A cap of Limit 0 refuses every request (RetryAfter Never).
type Cap struct {
	// Limit is the most hits in any window of length Per (0..MaxCount).
	Limit int64
	// Per is the window's length (1ms..MaxDuration).
	Per time.Duration
}

// Tier is one sliding window of a Resource: at most Limit hits per Window, usable for
// Active after the tier is entered, then closed for Cooldown. Durations travel as whole
// milliseconds; a duration with a sub-millisecond remainder is refused (never rounded),
// so the limit the server enforces is the limit written here.
type Tier struct {
	// Limit is the number of hits per Window (0..MaxCount). 0 makes the tier a wall.
	Limit int64
	// Window is the length of the sliding window (1ms..MaxDuration).
	Window time.Duration
	// Active is how long the tier stays usable once entered (1ms..MaxDuration).
	Active time.Duration
	// Cooldown is how long the tier stays closed after Active (0..MaxDuration). A tier in
	// cooldown stops a request from climbing past it unless Skippable is set.
	Cooldown time.Duration
	// Skippable lets a request climb past this tier while it cools down.
	Skippable bool
}

// Resource is what is protected (a database, an external API) and its limits. Every
// request carries the limits, so changing them takes effect on the next request.
//
// The zero values of Hard and Global mean "no such limit" (the clause is not sent).
// Caps and GlobalCaps add caps over any window: Hard is the per-domain cap over one
// second and Global the resource-wide one, so a Resource may say "5 per second, 1,000
// per hour, 10,000 per day for each user, 2,000,000 per day for everyone" in one
// request.
// A Resource needs at least one tier; to refuse every request on purpose, set Closed
// instead (the server then rejects every request with RetryAfter Never). A Resource
// with neither is refused by Validate, so forgetting the limits never looks like a
// working limiter.
//
// Declare a Resource once and pass the same pointer to every request: the client
// caches the resource's compact LIMITS argument in it, so a request does not build
// it again. Changing Tiers later is fine (the cache notices), but do not change a
// Resource while requests use it, and do not copy one that requests are using.
type Resource struct {
	// Name identifies the resource in key names; it must not be empty.
	Name string
	// Tiers in climbing order; tier 1 is the everyday limit. 1..MaxTiers unless Closed.
	Tiers []Tier
	// Closed refuses every request (CHARON.RATE ... CLOSED): the resource is shut,
	// every request is rejected with RetryAfter Never and nothing is recorded. A closed
	// Resource has no tiers.
	Closed bool
	// Hard caps the hits one domain gets over the last second (HARD); 0 means no cap.
	Hard int64
	// Global caps the hits all domains of the resource get over the last second
	// (GLOBAL); 0 means no cap. It changes the key layout (see Keys).
	Global int64
	// Caps bound the hits one domain gets over other windows (the caps after ';' in
	// the LIMITS argument), e.g. {{1000, time.Hour}, {10000, 24 * time.Hour}}. Each
	// window at most once; a cap over exactly one second is Hard's (set one or the
	// other). At most MaxCaps, Hard counted.
	Caps []Cap
	// GlobalCaps bound the hits all domains of the resource get together over other
	// windows (GLOBAL's caps string), e.g. {{2000000, 24 * time.Hour}}. The same rules
	// as Caps, with Global in Hard's place. Like Global, they change the key layout.
	GlobalCaps []Cap

	// limits caches the LIMITS and GLOBAL arguments: a *limitsCache, read and written atomically
	// (an unsafe.Pointer rather than an atomic.Pointer so that Resource values can
	// still be copied by value).
	limits unsafe.Pointer
}

// limitsCache holds the compact arguments of a Resource, kept with the limits they
// encode: the LIMITS string (tiers, then the caps after ';') and GLOBAL's value (its
// per-second limit alone as a number, or with the global caps as a caps string). The
// arguments are kept as interface values too, so that a request appends them without
// converting (allocating) again. The same limits in module/rate's units (whole
// milliseconds) serve the degraded mode, which decides with the engine.
type limitsCache struct {
	tiers      []Tier
	caps       []Cap
	globalCaps []Cap
	global     int64

	limits    string
	limitsArg any
	globalArg any // nil without a Global limit

	engine       []rate.Tier
	engineCaps   []rate.Cap // Hard and Caps
	engineGlobal []rate.Cap // Global and GlobalCaps
}

// Simple returns a one-tier resource: limit hits per window, with the tier active for
// one window and no cooldown (Charon's "simple" pattern, e.g. 5 per second). It
// returns a pointer so that it can be written inline in a request:
//
//	res, err := limiter.Allow(ctx, ratelimit.PerSecond("api", 10), userID)
//
// (declaring it once in a variable saves an allocation per request).
func Simple(name string, limit int64, window time.Duration) *Resource {
	return &Resource{Name: name, Tiers: []Tier{{Limit: limit, Window: window, Active: window}}}
}

// PerSecond is Simple(name, limit, time.Second): limit hits per second.
func PerSecond(name string, limit int64) *Resource { return Simple(name, limit, time.Second) }

// PerMinute is Simple(name, limit, time.Minute).
func PerMinute(name string, limit int64) *Resource { return Simple(name, limit, time.Minute) }

// PerHour is Simple(name, limit, time.Hour).
func PerHour(name string, limit int64) *Resource { return Simple(name, limit, time.Hour) }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// checkMs reports why d is not a whole number of milliseconds within [lo, MaxDuration],
// or "" when it is.
func checkMs(d, lo time.Duration) string {
	switch {
	case d%time.Millisecond != 0:
		return fmt.Sprintf("%v is not a whole number of milliseconds", d)
	case d < lo || d > MaxDuration:
		return fmt.Sprintf("%v is outside [%v, %v]", d, lo, MaxDuration)
	}
	return ""
}

// Validate checks the resource against the CHARON.RATE contract. Requests validate
// their resource before anything is sent; call Validate at startup to fail early.
func (r *Resource) Validate() error {
	if r == nil {
		return invalid("nil resource")
	}
	if r.Name == "" {
		return invalid("resource name is empty")
	}
	switch {
	case r.Closed && len(r.Tiers) > 0:
		return invalid("resource %q: closed, but has %d tiers (a closed resource has none)", r.Name, len(r.Tiers))
	case !r.Closed && len(r.Tiers) == 0:
		return invalid("resource %q: no tiers (set Closed to refuse every request)", r.Name)
	case len(r.Tiers) > MaxTiers:
		return invalid("resource %q: %d tiers, at most %d", r.Name, len(r.Tiers), MaxTiers)
	}
	for i := range r.Tiers {
		t := &r.Tiers[i]
		if t.Limit < 0 || t.Limit > MaxCount {
			return invalid("resource %q: tier %d limit %d is outside [0, %d]", r.Name, i+1, t.Limit, int64(MaxCount))
		}
		for _, c := range []struct {
			what string
			d    time.Duration
			lo   time.Duration
		}{{"window", t.Window, time.Millisecond}, {"active", t.Active, time.Millisecond}, {"cooldown", t.Cooldown, 0}} {
			if why := checkMs(c.d, c.lo); why != "" {
				return invalid("resource %q: tier %d %s %s", r.Name, i+1, c.what, why)
			}
		}
	}
	if r.Hard < 0 || r.Hard > MaxCount {
		return invalid("resource %q: hard %d is outside [0, %d]", r.Name, r.Hard, int64(MaxCount))
	}
	if r.Global < 0 || r.Global > MaxCount {
		return invalid("resource %q: global %d is outside [0, %d]", r.Name, r.Global, int64(MaxCount))
	}
	if err := validateCaps(r.Name, "cap", "hard", r.Hard, r.Caps); err != nil {
		return err
	}
	return validateCaps(r.Name, "global cap", "global", r.Global, r.GlobalCaps)
}

// validateCaps checks one kind of caps (what: "cap" or "global cap") against the
// module's bounds; second names the kind's per-second limit (Hard or Global), which
// counts as a cap when set.
func validateCaps(name, what, second string, secondLimit int64, caps []Cap) error {
	n := len(caps)
	if secondLimit > 0 {
		n++
	}
	if n > MaxCaps {
		extra := ""
		if secondLimit > 0 {
			extra = " (" + second + " counts as one)"
		}
		return invalid("resource %q: %d %ss%s, at most %d", name, n, what, extra, MaxCaps)
	}
	for i, c := range caps {
		if c.Limit < 0 || c.Limit > MaxCount {
			return invalid("resource %q: %s %d limit %d is outside [0, %d]", name, what, i+1, c.Limit, int64(MaxCount))
		}
		if why := checkMs(c.Per, time.Millisecond); why != "" {
			return invalid("resource %q: %s %d per %s", name, what, i+1, why)
		}
		if c.Per == time.Second && secondLimit > 0 {
			return invalid("resource %q: %s %d per 1s is %s's window: set %s or this cap, not both", name, what, i+1, second, second)
		}
		for j := range i {
			if caps[j].Per == c.Per {
				return invalid("resource %q: %s %d per %v: %s %d has the same window (give each window once)", name, what, i+1, c.Per, what, j+1)
			}
		}
	}
	return nil
}

// hasGlobal reports a resource-wide limit (Global or GlobalCaps): the requests name a
// global key.
func (r *Resource) hasGlobal() bool { return r.Global > 0 || len(r.GlobalCaps) > 0 }

// perSecond returns a kind's cap over one second: Hard (Global), or the cap of Caps
// (GlobalCaps) over 1s, which means the same; ok is false when there is none.
func perSecond(limit int64, caps []Cap) (n int64, ok bool) {
	if limit > 0 {
		return limit, true
	}
	for _, c := range caps {
		if c.Per == time.Second {
			return c.Limit, true
		}
	}
	return 0, false
}

// longCaps counts the caps over windows other than one second: the ones the server's
// reply has no count for.
func longCaps(caps []Cap) (n int, only Cap) {
	for _, c := range caps {
		if c.Per != time.Second {
			n, only = n+1, c
		}
	}
	return n, only
}

// String renders the limits in the command's own words, e.g.
// "api: LIMITS 5/1s, 50/5s/5s/15s; 1000/1h HARD 10 GLOBAL 5000/1s, 2000000/1d", or
// "api: CLOSED".
func (r *Resource) String() string {
	var b strings.Builder
	b.WriteString(r.Name)
	b.WriteByte(':')
	if len(r.Tiers) > 0 {
		b.WriteString(" LIMITS ")
		b.WriteString(EncodeLimits(r.Tiers))
		if len(r.Caps) > 0 {
			b.WriteString("; ")
			b.WriteString(EncodeCaps(r.Caps))
		}
	}
	if r.Closed {
		b.WriteString(" CLOSED")
		if len(r.Caps) > 0 {
			b.WriteString(" CAPS ")
			b.WriteString(EncodeCaps(r.Caps))
		}
	}
	if r.Hard > 0 {
		b.WriteString(" HARD " + strconv.FormatInt(r.Hard, 10))
	}
	switch {
	case len(r.GlobalCaps) > 0:
		b.WriteString(" GLOBAL ")
		b.WriteString(encodeGlobal(r.Global, r.GlobalCaps))
	case r.Global > 0:
		b.WriteString(" GLOBAL " + strconv.FormatInt(r.Global, 10))
	}
	return b.String()
}

// appendLimitArgs appends the limits: the tiers and caps (LIMITS, or TIER and CAP
// clauses), or CLOSED with CAP clauses; r must be valid.
func (r *Resource) appendLimitArgs(args []any) []any {
	if r.Closed {
		for _, c := range r.Caps {
			args = append(args, "CAP", c.Limit, c.Per.Milliseconds())
		}
		return append(args, "CLOSED")
	}
	if sendCompact {
		return append(args, "LIMITS", r.compact().limitsArg)
	}
	for _, t := range r.Tiers {
		args = append(args, "TIER", t.Limit, t.Window.Milliseconds(), t.Active.Milliseconds(), t.Cooldown.Milliseconds())
		if t.Skippable {
			args = append(args, "SKIPPABLE")
		}
	}
	for _, c := range r.Caps {
		args = append(args, "CAP", c.Limit, c.Per.Milliseconds())
	}
	return args
}

// globalArg is GLOBAL's value: the per-second limit (Global) as a number, the way
// requests without global caps always sent it, or with GlobalCaps the caps string
// ("5000/1s, 2000000/1d"). r must be valid and have a global limit.
func (r *Resource) globalArg() any { return r.compact().globalArg }

// sendCompact chooses the form requests carry their tiers in: the compact LIMITS
// argument (one argument for all tiers) or TIER clauses (five or six per tier).
const sendCompact = true

// compactLimits returns the LIMITS argument: EncodeLimits(r.Tiers), then "; " and
// EncodeCaps(r.Caps) when there are caps.
func (r *Resource) compactLimits() string { return r.compact().limits }

// engineCaps returns the per-second limit (when set) and caps in module/rate's units.
func engineCaps(perSecond int64, caps []Cap) []rate.Cap {
	var out []rate.Cap
	if perSecond > 0 {
		out = append(out, rate.Cap{Limit: perSecond, Window: 1000})
	}
	for _, c := range caps {
		out = append(out, rate.Cap{Limit: c.Limit, Window: c.Per.Milliseconds()})
	}
	return out
}

// compact returns the cached arguments, from the cache when the limits have not
// changed since it was filled. The check compares the tiers and caps; a hit
// allocates nothing.
func (r *Resource) compact() *limitsCache {
	if c := (*limitsCache)(atomic.LoadPointer(&r.limits)); c != nil && c.global == r.Global &&
		slices.Equal(c.tiers, r.Tiers) && slices.Equal(c.caps, r.Caps) && slices.Equal(c.globalCaps, r.GlobalCaps) {
		return c
	}
	c := &limitsCache{tiers: slices.Clone(r.Tiers), caps: slices.Clone(r.Caps), globalCaps: slices.Clone(r.GlobalCaps), global: r.Global}
	c.limits = EncodeLimits(r.Tiers)
	if len(r.Caps) > 0 {
		c.limits += "; " + EncodeCaps(r.Caps)
	}
	c.limitsArg = c.limits
	c.engine = make([]rate.Tier, len(r.Tiers))
	for i, t := range r.Tiers {
		c.engine[i] = rate.Tier{Limit: t.Limit, Window: t.Window.Milliseconds(), Active: t.Active.Milliseconds(),
			Cooldown: t.Cooldown.Milliseconds(), Skippable: t.Skippable}
	}
	c.engineCaps = engineCaps(r.Hard, r.Caps)
	c.engineGlobal = engineCaps(r.Global, r.GlobalCaps)
	switch {
	case len(r.GlobalCaps) > 0:
		c.globalArg = encodeGlobal(r.Global, r.GlobalCaps)
	case r.Global > 0:
		c.globalArg = r.Global
	}
	atomic.StorePointer(&r.limits, unsafe.Pointer(c))
	return c
}

// encodeGlobal is GLOBAL's caps string: the per-second limit first (when set), then
// the caps.
func encodeGlobal(global int64, caps []Cap) string {
	if global > 0 {
		return EncodeCaps(append([]Cap{{Limit: global, Per: time.Second}}, caps...))
	}
	return EncodeCaps(caps)
}

// EncodeCaps writes caps in CHARON.RATE's compact form: "limit/window" per cap, joined
// by ", ", each window with the largest unit that expresses it exactly (as in
// EncodeLimits). {{1000, time.Hour}, {10000, 24 * time.Hour}} gives
// "1000/1h, 10000/1d": the caps after ';' in a LIMITS argument, or GLOBAL's caps
// string. The caps should be valid (see Validate).
func EncodeCaps(caps []Cap) string {
	b := make([]byte, 0, 16*len(caps))
	for i, c := range caps {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendInt(b, c.Limit, 10)
		b = append(b, '/')
		b = appendCompactDuration(b, c.Per)
	}
	return string(b)
}

// EncodeLimits writes tiers in CHARON.RATE's compact form, the LIMITS argument:
// "limit/window[/active[/cooldown]][?]" per tier, joined by ", ". Each duration takes
// the largest unit (d, h, m, s, ms) that expresses it exactly; active is left out
// when it equals the window and the cooldown is 0, the cooldown when it is 0, and "?"
// marks a skippable tier. For example the tiers of 10 per second, 50 per 5s with a
// 15s cooldown and 1000 per minute with a 10m cooldown give
// "10/1s, 50/5s/5s/15s, 1000/1m/1m/10m". The tiers should be valid (see Validate):
// durations are written in whole milliseconds.
func EncodeLimits(tiers []Tier) string {
	b := make([]byte, 0, 24*len(tiers))
	for i, t := range tiers {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendInt(b, t.Limit, 10)
		b = append(b, '/')
		b = appendCompactDuration(b, t.Window)
		if t.Active != t.Window || t.Cooldown != 0 {
			b = append(b, '/')
			b = appendCompactDuration(b, t.Active)
		}
		if t.Cooldown != 0 {
			b = append(b, '/')
			b = appendCompactDuration(b, t.Cooldown)
		}
		if t.Skippable {
			b = append(b, '?')
		}
	}
	return string(b)
}

// compactUnits are the compact form's duration units, largest first.
var compactUnits = [...]struct {
	d    time.Duration
	unit string
}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}

// appendCompactDuration writes d (whole milliseconds) with the largest exact unit.
func appendCompactDuration(b []byte, d time.Duration) []byte {
	if d != 0 {
		for _, u := range compactUnits {
			if d%u.d == 0 {
				return append(strconv.AppendInt(b, int64(d/u.d), 10), u.unit...)
			}
		}
	}
	return append(strconv.AppendInt(b, d.Milliseconds(), 10), "ms"...)
}
