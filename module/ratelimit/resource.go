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
	// MaxDuration bounds windows, active times and cooldowns (10 years).
	MaxDuration = time.Duration(rate.MaxDuration) * time.Millisecond
)

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

	// limits caches the LIMITS argument: a *limitsCache, read and written atomically
	// (an unsafe.Pointer rather than an atomic.Pointer so that Resource values can
	// still be copied by value).
	limits unsafe.Pointer
}

// limitsCache is the compact form of a tier list, kept with the tiers it encodes,
// and the same tiers in the engine's units (the degraded mode decides with them).
type limitsCache struct {
	tiers  []Tier
	limits string
	engine []rate.Tier
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
	return nil
}

// String renders the limits in the command's own words, e.g.
// "api: LIMITS 5/1s, 50/5s/5s/15s HARD 10", or "api: CLOSED".
func (r *Resource) String() string {
	var b strings.Builder
	b.WriteString(r.Name)
	b.WriteByte(':')
	if len(r.Tiers) > 0 {
		b.WriteString(" LIMITS ")
		b.WriteString(EncodeLimits(r.Tiers))
	}
	if r.Closed {
		b.WriteString(" CLOSED")
	}
	if r.Hard > 0 {
		b.WriteString(" HARD " + strconv.FormatInt(r.Hard, 10))
	}
	if r.Global > 0 {
		b.WriteString(" GLOBAL " + strconv.FormatInt(r.Global, 10))
	}
	return b.String()
}

// appendLimitArgs appends the limits: CLOSED, or the tiers in the TIER form; r must
// be valid.
func (r *Resource) appendLimitArgs(args []any) []any {
	if r.Closed {
		return append(args, "CLOSED")
	}
	if sendCompact {
		return append(args, "LIMITS", r.compactLimits())
	}
	for _, t := range r.Tiers {
		args = append(args, "TIER", t.Limit, t.Window.Milliseconds(), t.Active.Milliseconds(), t.Cooldown.Milliseconds())
		if t.Skippable {
			args = append(args, "SKIPPABLE")
		}
	}
	return args
}

// sendCompact chooses the form requests carry their tiers in: the compact LIMITS
// argument (one argument for all tiers) or TIER clauses (five or six per tier).
const sendCompact = true

// compactLimits returns EncodeLimits(r.Tiers), from the cache when the tiers have not
// changed since it was filled. The check is a comparison of T tiers; a hit allocates
// nothing.
func (r *Resource) compactLimits() string { return r.cached().limits }

// engineTiers returns the tiers in module/rate's units (whole milliseconds), from the
// same cache as compactLimits; r must be valid.
func (r *Resource) engineTiers() []rate.Tier { return r.cached().engine }

func (r *Resource) cached() *limitsCache {
	if c := (*limitsCache)(atomic.LoadPointer(&r.limits)); c != nil && slices.Equal(c.tiers, r.Tiers) {
		return c
	}
	c := &limitsCache{tiers: slices.Clone(r.Tiers), limits: EncodeLimits(r.Tiers), engine: make([]rate.Tier, len(r.Tiers))}
	for i, t := range r.Tiers {
		c.engine[i] = rate.Tier{Limit: t.Limit, Window: t.Window.Milliseconds(), Active: t.Active.Milliseconds(),
			Cooldown: t.Cooldown.Milliseconds(), Skippable: t.Skippable}
	}
	atomic.StorePointer(&r.limits, unsafe.Pointer(c))
	return c
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
