package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/charon-redis/charon/module/rate"
)

// Override says why a Result grants hits that the server did not grant.
type Override uint8

const (
	// OverrideNone: the Result is the server's answer.
	OverrideNone Override = iota
	// OverrideKillSwitch: the server rejected the request (nothing was recorded) and the
	// kill switch turned the rejection into a grant. The server's fields are kept.
	OverrideKillSwitch
	// OverrideFailOpen: Redis could not be reached, so nothing was asked and nothing
	// recorded; Options.FailOpen granted the request. The server's fields are zero,
	// GlobalHits is -1.
	OverrideFailOpen
)

func (o Override) String() string {
	switch o {
	case OverrideNone:
		return "none"
	case OverrideKillSwitch:
		return "kill-switch"
	case OverrideFailOpen:
		return "fail-open"
	}
	return fmt.Sprintf("Override(%d)", uint8(o))
}

// Never is the RetryAfter of a request that can never be granted: its Min is above
// what any tier, Hard or Global can ever give, or the resource is Closed. It is the
// largest Duration, so it sorts after every real wait and a loop that sleeps for
// RetryAfter never spins.
const Never = time.Duration(math.MaxInt64)

// Limit names the limit that decided a rejection.
type Limit uint8

const (
	// LimitNone: the request was granted by the server.
	LimitNone Limit = iota
	// LimitTier: the tiers had no room (the current tier's window is full and no tier
	// above could be entered).
	LimitTier
	// LimitHard: the per-domain Hard cap left less room than the request's Min.
	LimitHard
	// LimitGlobal: the resource-wide Global cap left less room than the request's Min.
	LimitGlobal
	// LimitClosed: the resource is Closed.
	LimitClosed
	// LimitCap: one of the per-domain Caps over a window other than one second left
	// less room than the request's Min (Result.RejectedCap names it when the reply
	// singles it out).
	LimitCap
	// LimitGlobalCap: one of the resource-wide GlobalCaps over a window other than one
	// second left less room than the request's Min.
	LimitGlobalCap
)

func (l Limit) String() string {
	switch l {
	case LimitNone:
		return "none"
	case LimitTier:
		return "tier"
	case LimitHard:
		return "hard"
	case LimitGlobal:
		return "global"
	case LimitClosed:
		return "closed"
	case LimitCap:
		return "cap"
	case LimitGlobalCap:
		return "global-cap"
	}
	return fmt.Sprintf("Limit(%d)", uint8(l))
}

// Result is the answer to one request: every field of the CHARON.RATE reply, plus what
// the client did around it.
type Result struct {
	// Granted is the number of hits the caller may use; 0 means rejected. It is the
	// server's number unless Override says otherwise.
	Granted int64
	// Tier is the current tier after the request, 1-based; 0 when no tier is active.
	Tier int
	// TierLimit is that tier's limit (tier 1's when Tier is 0).
	TierLimit int64
	// TierHits is the number of hits in that tier's window.
	TierHits int64
	// DomainHits is the number of hits granted to this domain over the last second.
	DomainHits int64
	// GlobalHits is the number of hits granted to the whole resource over the last
	// second; -1 when the resource has no Global limit.
	GlobalHits int64
	// Burst reports that the request entered a tier above the current one.
	Burst bool
	// HardLimited reports that a per-domain cap (Hard or one of Caps) left less room
	// than the request's Max.
	HardLimited bool
	// GlobalLimited reports that a resource-wide cap (Global or one of GlobalCaps)
	// left less room than the request's Max.
	GlobalLimited bool
	// Remaining is the number of hits a request could still get right now without
	// climbing: the current tier's room (TierLimit - TierHits), lowered to the room
	// left under Hard and Global; never negative. A request for more may still be
	// granted by bursting into a tier above. 0 on a fail-open grant. The reply counts
	// the last second only, so a cap over another window (Caps, GlobalCaps) lowers
	// Remaining only when the reply shows it cut the request: to 0 after a grant it
	// cut short, below the request's Min after a rejection; otherwise Remaining may
	// promise more than such a cap has left.
	Remaining int64
	// RetryAfter is how long until the same request would be granted with no other
	// traffic. 0 when the server granted it; Never (not -1) when it never will be: Min
	// is above what any tier, Hard or Global can ever give, or the resource is Closed.
	// A kill-switch override keeps the server's value. (redis_rate uses -1 for
	// "allowed"; here a grant is 0 and "never" is the named constant Never.)
	RetryAfter time.Duration
	// ResetAfter is how long until the key holds nothing that matters any more (it
	// expires then); always finite, 0 when nothing is stored.
	ResetAfter time.Duration
	// RejectedBy names the limit that rejected the request; LimitNone when the server
	// granted it (also under a kill-switch grant it names the server's reason). When
	// several limits had too little room, the first of Closed, Global, Hard, the
	// global caps, the caps and the tiers is named. One case is a guess: with Min
	// below Max, when caps of both kinds (per domain and global, over windows other
	// than a second) cut the request, the reply does not say which kind had less than
	// Min, and RejectedBy names the one whose per-second room alone cannot explain the
	// cut, else the global caps (with RejectedCap zero).
	RejectedBy Limit
	// RejectedCap is the cap that rejected the request: Cap{Global, time.Second} for
	// LimitGlobal, Cap{Hard, time.Second} for LimitHard (or the cap of GlobalCaps or
	// Caps over a second that stands for them), and for LimitGlobalCap and LimitCap
	// the one cap of that kind over another window. The reply does not say which of
	// several such caps rejected: with two or more of them (say 1000 per hour and
	// 10000 per day), RejectedCap is the zero Cap and RetryAfter still waits for
	// whichever it was. Zero when no cap rejected.
	RejectedCap Cap

	// Local reports a decision made without Redis, by the degraded mode
	// (Options.FailLocal): Redis could not be reached, so this instance decided from
	// its share of the limits and nothing was recorded in Redis. The other fields are
	// then the local engine's: TierLimit is this instance's share of the tier's limit,
	// TierHits, DomainHits and GlobalHits count this instance's local hits, Remaining
	// is the room left in its share of the current tier, and RetryAfter is when this
	// instance would grant the same request.
	Local bool
	// Override is why Granted differs from the answer (the server's, or the local
	// one); OverrideNone normally.
	Override Override
	// Attempts is the number of times the command was sent: more than 1 while
	// waiting, after errors that prove it did not run, or when an answer was lost and
	// the request was sent again with the same ONCE token; 0 when it never was (a
	// fail-open grant because Redis could not be reached).
	Attempts int
	// Waited is the total time spent sleeping between attempts.
	Waited time.Duration
}

// Allowed reports whether the caller may go ahead (Granted > 0).
func (r *Result) Allowed() bool { return r != nil && r.Granted > 0 }

// errBadReply is wrapped by every decoding error: the reply does not have the shape of
// a CHARON.RATE reply (a different server, module version or command).
var errBadReply = errors.New("ratelimit: unexpected CHARON.RATE reply")

// fieldIndex maps a RESP3 map key to its position in the RESP2 array.
var fieldIndex = func() map[string]int {
	m := make(map[string]int, rate.NumFields)
	for i, n := range rate.FieldNames {
		m[n] = i
	}
	return m
}()

// decodeReply turns a CHARON.RATE reply into a Result: a RESP2 array of NumFields
// integers, or a RESP3 map of the same fields by name. Any other shape, a missing,
// repeated or unknown field, a non-integer or an out-of-range value is an error; the
// reply is never trusted to be well formed.
func decodeReply(v any) (Result, error) {
	var f [rate.NumFields]int64
	switch r := v.(type) {
	case []any:
		if len(r) != rate.NumFields {
			return Result{}, fmt.Errorf("%w: array of %d elements, want %d", errBadReply, len(r), rate.NumFields)
		}
		for i, e := range r {
			n, ok := e.(int64)
			if !ok {
				return Result{}, fmt.Errorf("%w: element %d (%s) is %T, want an integer", errBadReply, i+1, rate.FieldNames[i], e)
			}
			f[i] = n
		}
	case map[any]any:
		if len(r) != rate.NumFields {
			return Result{}, fmt.Errorf("%w: map of %d fields, want %d", errBadReply, len(r), rate.NumFields)
		}
		var seen [rate.NumFields]bool
		for k, e := range r {
			name, ok := k.(string)
			if !ok {
				return Result{}, fmt.Errorf("%w: map key %v is %T, want a string", errBadReply, k, k)
			}
			i, ok := fieldIndex[name]
			if !ok {
				return Result{}, fmt.Errorf("%w: unknown field %q", errBadReply, name)
			}
			n, ok := e.(int64)
			if !ok {
				return Result{}, fmt.Errorf("%w: field %s is %T, want an integer", errBadReply, name, e)
			}
			f[i], seen[i] = n, true
		}
		for i, ok := range seen {
			if !ok {
				// Unreachable with 11 distinct known keys, but cheap to state.
				return Result{}, fmt.Errorf("%w: field %s missing", errBadReply, rate.FieldNames[i])
			}
		}
	default:
		return Result{}, fmt.Errorf("%w: %T, want an array or a map", errBadReply, v)
	}
	return resultFromFields(&f)
}

// resultFromFields checks each field's range and converts units.
func resultFromFields(f *[rate.NumFields]int64) (Result, error) {
	check := func(i int, lo, hi int64) error {
		if f[i] < lo || f[i] > hi {
			return fmt.Errorf("%w: %s = %d is outside [%d, %d]", errBadReply, rate.FieldNames[i], f[i], lo, hi)
		}
		return nil
	}
	const maxMs = int64(1<<63-1) / int64(time.Millisecond)
	for _, c := range []struct {
		i      int
		lo, hi int64
	}{
		{rate.FieldGranted, 0, rate.MaxCount},
		{rate.FieldTier, 0, rate.MaxTiers},
		{rate.FieldTierLimit, 0, rate.MaxCount},
		{rate.FieldTierHits, 0, 1<<63 - 1},
		{rate.FieldDomainHits, 0, 1<<63 - 1},
		{rate.FieldGlobalHits, -1, 1<<63 - 1},
		{rate.FieldBurst, 0, 1},
		{rate.FieldHardLimited, 0, 1},
		{rate.FieldGlobalLimited, 0, 1},
		{rate.FieldRetryAfter, -1, maxMs},
		{rate.FieldResetAfter, 0, maxMs},
	} {
		if err := check(c.i, c.lo, c.hi); err != nil {
			return Result{}, err
		}
	}
	retry := time.Duration(f[rate.FieldRetryAfter]) * time.Millisecond
	if f[rate.FieldRetryAfter] < 0 {
		retry = Never
	}
	return Result{
		Granted:       f[rate.FieldGranted],
		Tier:          int(f[rate.FieldTier]),
		TierLimit:     f[rate.FieldTierLimit],
		TierHits:      f[rate.FieldTierHits],
		DomainHits:    f[rate.FieldDomainHits],
		GlobalHits:    f[rate.FieldGlobalHits],
		Burst:         f[rate.FieldBurst] == 1,
		HardLimited:   f[rate.FieldHardLimited] == 1,
		GlobalLimited: f[rate.FieldGlobalLimited] == 1,
		RetryAfter:    retry,
		ResetAfter:    time.Duration(f[rate.FieldResetAfter]) * time.Millisecond,
	}, nil
}

// explain fills Remaining, RejectedBy and RejectedCap, which need the request: the
// resource's caps, the fewest hits the request accepts (need >= 1) and the most it
// asked for (maxHits >= need).
//
// The reply counts the last second (DomainHits, GlobalHits), so the per-second caps'
// room is known exactly. For caps over other windows it says only that some cap of a
// kind left less room than maxHits (HardLimited, GlobalLimited). After a rejection
// whose per-second rooms were at least need, that means a longer cap left less than
// need when need == maxHits (Allow, AllowN, the middleware), or when the current tier
// alone had room for need (the climb would have given it, so the caps cut MAX below
// need).
func (r *Result) explain(res *Resource, need, maxHits int64) {
	room := max(r.TierLimit-r.TierHits, 0)
	hardRoom, globalRoom := int64(math.MaxInt64), int64(math.MaxInt64)
	hard, hasHard := perSecond(res.Hard, res.Caps)
	if hasHard {
		hardRoom = max(hard-r.DomainHits, 0)
	}
	global, hasGlobal := perSecond(res.Global, res.GlobalCaps)
	if hasGlobal && r.GlobalHits >= 0 {
		globalRoom = max(global-r.GlobalHits, 0)
	}
	r.Remaining = min(room, hardRoom, globalRoom)
	r.RejectedCap = Cap{}
	nCaps, onlyCap := longCaps(res.Caps)
	nGlobalCaps, onlyGlobalCap := longCaps(res.GlobalCaps)
	longCut := r.HardLimited && nCaps > 0 || r.GlobalLimited && nGlobalCaps > 0
	if r.Granted > 0 {
		r.RejectedBy = LimitNone
		if longCut {
			// A cap cut MAX, and the grant is min(room under the caps, what the climb
			// could take): either that cap or the current tier has nothing left.
			r.Remaining = 0
		}
		return
	}
	// A flagged kind's caps left less than need when need == maxHits; otherwise when
	// the current tier alone had room for need (tier 1 may be cooling down when no
	// tier is active, and then gives nothing), some cap left less than need.
	capsShort := need == maxHits || room >= need && (r.Tier > 0 || len(res.Tiers) == 0 || res.Tiers[0].Cooldown == 0)
	globalFlagged, hardFlagged := r.GlobalLimited && nGlobalCaps > 0, r.HardLimited && nCaps > 0
	// Which kind, when both are flagged and need < maxHits: a kind whose per-second
	// room is at least maxHits owes its flag to a longer cap; else the reply cannot
	// tell, and the global caps are named (RejectedCap stays zero).
	preferHard := need < maxHits && globalFlagged && hardFlagged && hardRoom >= maxHits && globalRoom < maxHits
	switch {
	case res.Closed:
		r.RejectedBy = LimitClosed
	case globalRoom < need:
		r.RejectedBy, r.RejectedCap = LimitGlobal, Cap{Limit: global, Per: time.Second}
	case hardRoom < need:
		r.RejectedBy, r.RejectedCap = LimitHard, Cap{Limit: hard, Per: time.Second}
	case capsShort && globalFlagged && !preferHard:
		r.RejectedBy = LimitGlobalCap
		if nGlobalCaps == 1 && (need == maxHits || !hardFlagged) {
			r.RejectedCap = onlyGlobalCap
		}
		r.Remaining = min(r.Remaining, need-1)
	case capsShort && hardFlagged:
		r.RejectedBy = LimitCap
		if nCaps == 1 && (need == maxHits || !globalFlagged) {
			r.RejectedCap = onlyCap
		}
		r.Remaining = min(r.Remaining, need-1)
	default:
		r.RejectedBy = LimitTier
	}
}
