package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/charon-redis/charon/module/internal/outcome"
	"github.com/charon-redis/charon/module/internal/transport"
	"github.com/charon-redis/charon/module/ratelimit/internal/local"
)

// Degraded mode: Options.FailLocal. While Redis answers, every reply teaches the
// Limiter this instance's share of each resource's and domain's traffic (its own
// grants against the hits the reply reports for the window); while Redis cannot be
// reached, the Limiter decides alone, enforcing that share of every limit. The
// machinery is package local; this file wires it to the Limiter: when to go
// degraded, the probe that brings it back, and the Results and Events it produces.

// DefaultProbeInterval is how often, at most, a degraded Limiter asks Redis whether
// it answers again.
const DefaultProbeInterval = 500 * time.Millisecond

// LocalOptions tune the degraded mode (Options.FailLocal). The zero value is right
// for most uses; set Instances when the fleet is known.
type LocalOptions struct {
	// Instances is the number of instances of the server that share the limits
	// (behind one balancer). It only matters before this instance has seen a reply
	// from Redis: until then it assumes a share of 1/Instances. 0 means 1 (alone).
	Instances int
	// MaxDomains bounds the (resource, domain) pairs the Limiter keeps what it
	// learned and its local counts for; the least recently used is forgotten first.
	// 0 means 10,000.
	MaxDomains int
	// MaxBytes bounds the memory of those pairs (about 350 bytes each, plus the local
	// counts of an outage); 0 means 8 MiB.
	MaxBytes int
	// HalfLife is how fast what the Limiter learned fades: a share follows the fleet
	// as instances come and go. 0 means 5s.
	HalfLife time.Duration
	// ProbeInterval is how often, at most, a degraded Limiter asks Redis whether it
	// answers again (a request that finds the last probe that old starts one in the
	// background and still decides locally). 0 means DefaultProbeInterval (500ms).
	ProbeInterval time.Duration
}

// degraded is a Limiter's degraded-mode state.
type degraded struct {
	table     *local.Table
	every     time.Duration // probe interval
	probeArgs []any         // CHARON.RATE probe-key DRYRUN LIMITS 1/1s
	probeKeys []string

	on      atomic.Bool
	probing atomic.Bool
	probeAt atomic.Int64 // Unix ns (the Limiter's clock) of the last probe's start or end
	leftAt  atomic.Int64 // Unix ns of the last return to Redis
	since   atomic.Int64 // Unix ns of the last entry

	mu sync.Mutex // serializes entering and leaving
}

func newDegraded(o *LocalOptions, prefix string) *degraded {
	every := o.ProbeInterval
	if every <= 0 {
		every = DefaultProbeInterval
	}
	// The other instances find Redis back up to a probe interval later than this one.
	cfg := local.Config{MaxDomains: o.MaxDomains, MaxBytes: o.MaxBytes, HalfLife: o.HalfLife.Milliseconds(),
		Margin: every.Milliseconds()}
	if o.Instances > 0 {
		cfg.Prior = 1 / float64(o.Instances)
	}
	key, _ := KeyNames(prefix, "charon-probe", "degraded", false)
	return &degraded{table: local.New(cfg), every: every,
		probeArgs: []any{"CHARON.RATE", key, "DRYRUN", "LIMITS", "1/1s"}, probeKeys: []string{key}}
}

// Degraded reports whether the Limiter is deciding locally because Redis could not
// be reached (Options.FailLocal). It is false without FailLocal.
func (l *Limiter) Degraded() bool { return l.deg != nil && l.deg.on.Load() }

// localLimits are res's limits for package local, from the Resource's cache (no
// allocation): its tiers, HARD and caps, GLOBAL and global caps.
func localLimits(res *Resource) local.Limits {
	c := res.compact()
	lim := local.Limits{Closed: res.Closed, Caps: c.engineCaps}
	if !res.Closed {
		lim.Tiers = c.engine
	}
	if res.hasGlobal() {
		lim.GlobalCaps = c.engineGlobal
	}
	return lim
}

// redisUnreachable reports whether err means Redis could not be reached for now: the
// conditions under which FailOpen grants (nothing was sent, or a cluster kept saying
// "not now"), and also a request that was sent and never answered (Redis stopped
// answering; ONCE makes sure it is counted at most once if it ran). Never an argument
// error, a misconfiguration, a server's error, a reply that could not be decoded or
// the caller's context ending.
func redisUnreachable(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) || errors.Is(err, errBadReply) {
		return false
	}
	switch te.Class {
	case outcome.Unreachable, outcome.Transient, outcome.Unknown:
		return true
	}
	return false
}

// enter makes the Limiter degraded because of cause, found by a request that began
// at began (the Limiter's clock). A request that began before the last return to
// Redis reports the outage that ended, not a new one: it does not enter (and reports
// false). The Observer sees OutcomeDegraded once per entry.
func (l *Limiter) enter(ctx context.Context, res *Resource, domain string, cause error, began time.Time) bool {
	d := l.deg
	if d.on.Load() {
		return true
	}
	d.mu.Lock()
	if began.UnixNano() < d.leftAt.Load() {
		d.mu.Unlock()
		return false
	}
	if d.on.Load() {
		d.mu.Unlock()
		return true
	}
	d.table.Enter()
	now := l.clock.Now().UnixNano()
	d.since.Store(now)
	d.probeAt.Store(now)
	d.on.Store(true)
	d.mu.Unlock()
	if l.observer != nil {
		l.observer.Observe(ctx, Event{Resource: res.Name, Domain: domain, Outcome: OutcomeDegraded, Err: cause})
	}
	return true
}

// leave returns the Limiter to Redis; the Observer sees OutcomeRecovered with the
// outage's length as Latency.
func (l *Limiter) leave(ctx context.Context) {
	d := l.deg
	d.mu.Lock()
	if !d.on.Load() {
		d.mu.Unlock()
		return
	}
	now := l.clock.Now().UnixNano()
	d.table.Leave(now / int64(time.Millisecond))
	d.leftAt.Store(now)
	d.on.Store(false)
	d.mu.Unlock()
	if l.observer != nil {
		l.observer.Observe(ctx, Event{Outcome: OutcomeRecovered, Latency: time.Duration(now - d.since.Load())})
	}
}

// maybeProbe starts a probe in the background unless one ran within the probe
// interval or is under way. Requests never wait for it.
func (l *Limiter) maybeProbe(now time.Time) {
	d := l.deg
	if now.UnixNano()-d.probeAt.Load() < int64(d.every) || !d.probing.CompareAndSwap(false, true) {
		return
	}
	d.probeAt.Store(now.UnixNano())
	go l.probe()
}

// probe asks Redis a harmless question (a DRYRUN of a probe key) within the
// Limiter's Timeout; an answer ends the degraded mode.
func (l *Limiter) probe() {
	d := l.deg
	defer func() {
		d.probeAt.Store(l.clock.Now().UnixNano())
		d.probing.Store(false)
	}()
	ctx := context.Background()
	_, _, err := l.tr.Do(ctx, &transport.Request{Args: d.probeArgs, Keys: d.probeKeys, Repeat: transport.Idempotent})
	if err == nil {
		l.leave(ctx)
	}
}

// decideLocally answers a request from the local share of the limits at time at.
func (l *Limiter) decideLocally(res *Resource, domain string, lim *local.Limits, a RequestArgs, at time.Time) (*Result, error) {
	d, err := l.deg.table.Decide(res.Name, domain, lim, a.Min, a.Max, a.DryRun, at.UnixMilli())
	if err != nil {
		return nil, err
	}
	return l.localResult(res, &d, a)
}

// localResult turns a local decision into a Result (Local set, the kill switch
// applied as to a server's rejection).
func (l *Limiter) localResult(res *Resource, d *local.Decision, a RequestArgs) (*Result, error) {
	r, err := resultFromFields(&d.Fields)
	if err != nil {
		return nil, err // a bug of package local: its fields are the engine's
	}
	r.Local = true
	r.Remaining = max(r.TierLimit-r.TierHits, 0)
	switch {
	case r.Granted > 0:
		r.RejectedBy = LimitNone
	case res.Closed:
		r.RejectedBy = LimitClosed
	case r.GlobalLimited:
		r.RejectedBy = LimitGlobal
	case r.HardLimited:
		r.RejectedBy = LimitHard
	default:
		r.RejectedBy = LimitTier
	}
	if r.Granted == 0 && l.kill.Load() {
		r.Granted, r.Override = minGrant(a), OverrideKillSwitch
	}
	return &r, nil
}
