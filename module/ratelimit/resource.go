package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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
// To refuse every request, give the resource no tiers: the server then answers
// every request with a rejection whose RetryAfter is -1.
type Resource struct {
	// Name identifies the resource in key names; it must not be empty.
	Name string
	// Tiers in climbing order; tier 1 is the everyday limit. At most MaxTiers.
	Tiers []Tier
	// Hard caps the hits one domain gets over the last second (HARD); 0 means no cap.
	Hard int64
	// Global caps the hits all domains of the resource get over the last second
	// (GLOBAL); 0 means no cap. It changes the key layout (see Keys).
	Global int64
}

// Simple returns a one-tier resource: limit hits per window, with the tier active for
// one window and no cooldown (Charon's "simple" pattern, e.g. 5 per second).
func Simple(name string, limit int64, window time.Duration) Resource {
	return Resource{Name: name, Tiers: []Tier{{Limit: limit, Window: window, Active: window}}}
}

// PerSecond, PerMinute and PerHour are Simple with a window of that length.
func PerSecond(name string, limit int64) Resource { return Simple(name, limit, time.Second) }

// PerMinute is Simple(name, limit, time.Minute).
func PerMinute(name string, limit int64) Resource { return Simple(name, limit, time.Minute) }

// PerHour is Simple(name, limit, time.Hour).
func PerHour(name string, limit int64) Resource { return Simple(name, limit, time.Hour) }

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
	if len(r.Tiers) > MaxTiers {
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
// "api: TIER 5 1000 1000 0 TIER 50 5000 5000 15000 HARD 10".
func (r *Resource) String() string {
	var b strings.Builder
	b.WriteString(r.Name)
	b.WriteByte(':')
	for _, t := range r.Tiers {
		fmt.Fprintf(&b, " TIER %d %d %d %d", t.Limit, t.Window.Milliseconds(), t.Active.Milliseconds(), t.Cooldown.Milliseconds())
		if t.Skippable {
			b.WriteString(" SKIPPABLE")
		}
	}
	if len(r.Tiers) == 0 {
		b.WriteString(" closed")
	}
	if r.Hard > 0 {
		b.WriteString(" HARD " + strconv.FormatInt(r.Hard, 10))
	}
	if r.Global > 0 {
		b.WriteString(" GLOBAL " + strconv.FormatInt(r.Global, 10))
	}
	return b.String()
}

// appendTierArgs appends the TIER clauses; r must be valid.
func (r *Resource) appendTierArgs(args []any) []any {
	for _, t := range r.Tiers {
		args = append(args, "TIER", t.Limit, t.Window.Milliseconds(), t.Active.Milliseconds(), t.Cooldown.Milliseconds())
		if t.Skippable {
			args = append(args, "SKIPPABLE")
		}
	}
	return args
}
