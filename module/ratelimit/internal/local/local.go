// Package local keeps a rate limiter limiting while Redis cannot be reached: the
// client's degraded mode. It is pure (no Redis, no clock, no randomness): time is an
// argument, in Unix milliseconds.
//
// While Redis answers, the client feeds every CHARON.RATE reply to Observe. From the
// replies the Table learns the instance's share of each domain's traffic (its own
// grants against domain_hits, the fleet's grants to the domain over the last second)
// and of each resource's (its grants against global_hits, or, without GLOBAL, against
// the domain_hits of all the resource's domains). See estimate.go for the estimator.
//
// While Redis is unreachable the client calls Enter once, then Decide for every
// request: the Table runs the module's own engine (module/rate: tiers with their
// windows, active times and cooldowns, HARD, caps, GLOBAL) on values it keeps in
// memory, every domain limit scaled to the domain's share and every global limit to
// the resource's (scale.go). A domain it has no evidence about gets the resource's
// share: the instance's part of the fleet's traffic, which is 1/N behind a fair
// balancer of N instances. Each value starts from the instance's own grants of the
// last second, so the first window of an outage does not grant a second window's
// worth. Decisions are Results that say they were made locally (Decision).
//
// When Redis answers again (Leave), the local grants of the outage, this instance's
// and every other's, are not in Redis's windows, so for a while Redis would grant a
// full window on top of them. Until those windows have passed (the handover), Admit
// bounds each request by the local values as well: it takes the hits from them first,
// and the client asks Redis for at most that many. Each instance then grants at most
// its share in any window that spans the return to Redis, and the fleet at most the
// limit. The handover of a pair lasts until the longest window of its limits (as
// stretched by the share) has passed since Leave, plus Config.Margin (the other
// instances may have gone on granting locally until their own probe found Redis), and
// at least as long as the pair's own local grants count. Taking the hits before Redis
// answers (not recording Redis's grant afterwards) keeps concurrent requests from all
// passing on the same room; when Redis grants less, the local values count a little
// more than was granted, which errs on the safe side until the handover ends.
//
// Memory is bounded: at most Config.MaxDomains (resource, domain) pairs are tracked,
// and their local values together hold at most about Config.MaxBytes; the least
// recently used pair is forgotten first. A resource is forgotten with its last
// domain.
package local

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/charon-redis/charon/module/rate"
)

// Defaults for zero Config fields.
const (
	DefaultMaxDomains = 10_000
	DefaultMaxBytes   = 8 << 20
	DefaultHalfLife   = 5_000 // ms
	// MinShare is the smallest share of a resource an instance ever assumes: an
	// instance that had no traffic of a resource before an outage still grants a
	// trickle if traffic moves to it (at most MinShare of the limit per instance).
	MinShare = 1.0 / 128
	// DomainFloor is the smallest share of a domain, relative to the resource's
	// share: behind a balancer that pins a domain to another instance, this one still
	// grants a trickle if the domain comes to it during an outage. With N instances
	// the fleet grants at most 1 + (N-1)·DomainFloor/N of a domain's limit this way.
	DomainFloor = 1.0 / 8
)

// entryBytes is what a tracked pair costs beyond its domain name and local value:
// the entry, its map slot and its ring.
const entryBytes = 256

// Config bounds and tunes a Table. The zero value takes the defaults.
type Config struct {
	// MaxDomains bounds the (resource, domain) pairs tracked; 0 means
	// DefaultMaxDomains.
	MaxDomains int
	// MaxBytes bounds the memory of the tracked pairs (entries, domain names and
	// local values); 0 means DefaultMaxBytes.
	MaxBytes int
	// HalfLife (ms) is how fast old evidence fades; 0 means DefaultHalfLife.
	HalfLife int64
	// Margin (ms) lengthens every handover: the time the other instances of the
	// fleet may go on deciding locally after this one returned to Redis (their probe
	// interval).
	Margin int64
	// Prior is the share of a resource assumed before any reply was seen: 1/N for a
	// fleet of N instances; 0 means 1 (alone).
	Prior float64
}

// Limits are a resource's limits in the engine's units (ms). They are the same for
// every domain of the resource and must stay valid (module/rate's bounds).
type Limits struct {
	// Tiers in climbing order; empty when Closed.
	Tiers []rate.Tier
	// Caps are the per-domain caps, HARD n as {n, 1000}.
	Caps []rate.Cap
	// GlobalCaps are the resource's caps, GLOBAL n as {n, 1000}.
	GlobalCaps []rate.Cap
	// Closed refuses every request.
	Closed bool
}

// Reply is what Observe needs of a CHARON.RATE reply.
type Reply struct {
	Granted    int64
	DomainHits int64
	GlobalHits int64 // -1 without GLOBAL
	// DryRun: the request recorded nothing (the reply counts what it would have).
	DryRun bool
}

// Decision is a local answer, in CHARON.RATE's reply fields: the limits in them
// (tier_limit) are this instance's share, the counts (tier_hits, domain_hits,
// global_hits) this instance's local ones.
type Decision struct {
	Fields [rate.NumFields]int64
	// Granted is Fields[rate.FieldGranted].
	Granted int64
	// DomainShare and ResourceShare are the shares the limits were scaled by.
	DomainShare, ResourceShare float64
}

// ErrLimits is wrapped when Limits break module/rate's bounds.
var ErrLimits = errors.New("local: invalid limits")

// Table is an instance's knowledge of its share of the traffic and its local state
// during an outage. It is safe for concurrent use.
type Table struct {
	cfg Config

	// Admit looks for the pair while now < until (the latest end of a pair's own
	// handover) or now < left + span (the last Leave plus the longest stretched
	// window of the limits decided on during the outage, plus Margin); after both it
	// returns at once without locking.
	until atomic.Int64
	left  atomic.Int64
	span  atomic.Int64

	mu    sync.Mutex
	epoch uint64 // outages begun (Enter)
	res   map[string]*resource
	lru   entry        // sentinel of the LRU ring: lru.next is the most recently used
	n     int          // pairs tracked
	bytes int          // their memory (entryBytes + domain + local value, + resource values)
	q     rate.Request // the engine's request, reused (it is 1 KB)
}

type resource struct {
	name    string
	domains map[string]*entry
	glob    ratio // from global_hits
	agg     ratio // from the domain_hits of all its domains
	mine    ring  // this instance's grants of the resource
	local   value // the global value
}

type entry struct {
	domain     string
	res        *resource
	prev, next *entry
	est        ratio
	mine       ring
	local      value
}

// value is a local CHARON.RATE value (module/rate's encoding) and what the Table
// knows of it.
type value struct {
	b     []byte
	exp   int64  // when it stops mattering (the engine's ExpireAt); 0: empty
	last  int64  // newest grant recorded in it, local or Redis's
	until int64  // when the grants of an outage stop counting: the handover's end
	epoch uint64 // the outage it was seeded for
}

// live reports whether the value still counts at now.
func (v *value) live(now int64) bool { return v.b != nil && now < v.exp }

// New returns an empty Table.
func New(cfg Config) *Table {
	if cfg.MaxDomains <= 0 {
		cfg.MaxDomains = DefaultMaxDomains
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.HalfLife <= 0 {
		cfg.HalfLife = DefaultHalfLife
	}
	if cfg.Prior <= 0 || cfg.Prior > 1 {
		cfg.Prior = 1
	}
	t := &Table{cfg: cfg, res: make(map[string]*resource)}
	t.lru.next, t.lru.prev = &t.lru, &t.lru
	return t
}

// Enter begins an outage: local values are seeded again from the instance's recent
// grants when they are first used.
func (t *Table) Enter() {
	t.mu.Lock()
	t.epoch++
	t.mu.Unlock()
}

// Leave ends an outage at now: Redis answers again, and the handover begins.
func (t *Table) Leave(now int64) {
	t.left.Store(now)
}

// Observe learns from a reply of Redis to a request of res for domain at now.
func (t *Table) Observe(res, domain string, r Reply, now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.touch(res, domain)
	rs := e.res
	if r.Granted < 0 || r.DomainHits < r.Granted {
		return // not a reply of the module's: learn nothing from it
	}
	h := t.cfg.HalfLife
	m, d := e.mine.last(now), float64(r.DomainHits-r.Granted)
	e.est.add(m, d, now, h)
	rs.agg.add(m, d, now, h)
	if r.GlobalHits >= r.Granted {
		rs.glob.add(rs.mine.last(now), float64(r.GlobalHits-r.Granted), now, h)
	}
	if r.DryRun || r.Granted == 0 {
		return
	}
	e.mine.add(now, r.Granted)
	rs.mine.add(now, r.Granted)
}

// Decide answers a request locally at now: at most maxHits, at least max(minHits, 1),
// under the instance's share of every limit of lim. A dry run records nothing.
func (t *Table) Decide(res, domain string, lim *Limits, minHits, maxHits int64, dryRun bool, now int64) (Decision, error) {
	if err := check(lim, minHits, maxHits); err != nil {
		return Decision{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.touch(res, domain)
	t.seed(e, lim, now)
	d, err := t.apply(e, lim, partDomain|partGlobal, minHits, maxHits, dryRun, now, true)
	if dspan, gspan := spans(lim, d.DomainShare, d.ResourceShare); max(dspan, gspan)+t.cfg.Margin > t.span.Load() {
		t.span.Store(max(dspan, gspan) + t.cfg.Margin)
	}
	return d, err
}

// Admit is asked before a request goes to Redis. During a handover (see the package
// comment) it answers the request on the local values and reports active: a
// rejection is the answer (the request must not go to Redis); a grant is the most
// Redis may grant, and its hits are taken from the local values already (unless
// dryRun). Otherwise it returns active false, at once and without locking once every
// handover is over.
func (t *Table) Admit(res, domain string, lim *Limits, minHits, maxHits int64, dryRun bool, now int64) (d Decision, active bool, err error) {
	left := t.left.Load()
	if now >= t.until.Load() && (left == 0 || now >= left+t.span.Load()) {
		return Decision{}, false, nil
	}
	if err := check(lim, minHits, maxHits); err != nil {
		return Decision{}, false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var e *entry
	var sd, sr float64
	rs := t.res[res]
	if rs != nil {
		sr = t.resourceShare(rs)
		sd = sr
		if e = rs.domains[domain]; e != nil {
			sd = t.domainShare(e, sr)
		}
	} else {
		sr = max(t.cfg.Prior, MinShare)
		sd = sr
	}
	var p part
	if left != 0 {
		dspan, gspan := spans(lim, sd, sr)
		if now < left+dspan+t.cfg.Margin {
			p |= partDomain
		}
		if gspan > 0 && now < left+gspan+t.cfg.Margin {
			p |= partGlobal
		}
	}
	if e != nil && now < e.local.until {
		p |= partDomain
	}
	if rs != nil && now < rs.local.until {
		p |= partGlobal
	}
	if p == 0 {
		return Decision{}, false, nil
	}
	if e == nil {
		e = t.touch(res, domain)
	}
	d, err = t.apply(e, lim, p, minHits, maxHits, dryRun, now, false)
	return d, err == nil, err
}

// spans returns the longest window of lim's domain limits (tiers, caps) and of its
// global caps (0 without), as stretched by the shares sd and sr.
func spans(lim *Limits, sd, sr float64) (domain, global int64) {
	for _, t := range lim.Tiers {
		_, w := scale(t.Limit, t.Window, sd)
		domain = max(domain, w)
	}
	for _, c := range lim.Caps {
		_, w := scale(c.Limit, c.Window, sd)
		domain = max(domain, w)
	}
	for _, c := range lim.GlobalCaps {
		_, w := scale(c.Limit, c.Window, sr)
		global = max(global, w)
	}
	return domain, global
}

// Shares returns the shares a decision for (res, domain) would use now, and whether
// the pair is tracked.
func (t *Table) Shares(res, domain string) (ofDomain, ofResource float64, tracked bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := t.res[res]
	if rs == nil {
		s := max(t.cfg.Prior, MinShare)
		return s, s, false
	}
	sr := t.resourceShare(rs)
	e := rs.domains[domain]
	if e == nil {
		return sr, sr, false
	}
	return t.domainShare(e, sr), sr, true
}

// Size returns the number of pairs tracked and the memory they hold (bytes).
func (t *Table) Size() (pairs, bytes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n, t.bytes
}

func check(lim *Limits, minHits, maxHits int64) error {
	switch {
	case lim == nil:
		return fmt.Errorf("%w: nil", ErrLimits)
	case lim.Closed != (len(lim.Tiers) == 0):
		return fmt.Errorf("%w: %d tiers, closed %v", ErrLimits, len(lim.Tiers), lim.Closed)
	case len(lim.Tiers) > rate.MaxTiers:
		return fmt.Errorf("%w: %d tiers", ErrLimits, len(lim.Tiers))
	case len(lim.Caps) > rate.MaxCaps || len(lim.GlobalCaps) > rate.MaxCaps:
		return fmt.Errorf("%w: %d caps, %d global caps", ErrLimits, len(lim.Caps), len(lim.GlobalCaps))
	case maxHits < 1 || maxHits > rate.MaxMax || minHits < 0 || minHits > maxHits:
		return fmt.Errorf("%w: min %d, max %d", ErrLimits, minHits, maxHits)
	}
	return nil
}

// resourceShare is the instance's share of rs's traffic: from global_hits when the
// replies carried it, else from all its domains' domain_hits.
func (t *Table) resourceShare(rs *resource) float64 {
	r := &rs.agg
	if rs.glob.den > 0 || rs.glob.num > 0 {
		r = &rs.glob
	}
	return max(r.share(t.cfg.Prior), MinShare)
}

// domainShare is the instance's share of e's traffic given the resource's share sr.
func (t *Table) domainShare(e *entry, sr float64) float64 {
	return max(e.est.leaning(sr, t.cfg.HalfLife), sr*DomainFloor)
}

// apply runs the engine on e's values (the halves in p) and keeps what it wrote.
// outage marks the grant as one of an outage (it extends the handover).
func (t *Table) apply(e *entry, lim *Limits, p part, minHits, maxHits int64, dry bool, now int64, outage bool) (Decision, error) {
	rs := e.res
	sr := t.resourceShare(rs)
	sd := t.domainShare(e, sr)
	d := Decision{DomainShare: sd, ResourceShare: sr}
	if lim.Closed && p&partDomain != 0 {
		// Rule 9: nothing to apply; the request can never be granted.
		d.Fields[rate.FieldRetryAfter] = -1
		d.Fields[rate.FieldGlobalHits] = -1
		return d, nil
	}
	q := &t.q
	build(q, lim, p, sd, sr, minHits, maxHits, dry)
	var cur, gcur []byte
	if p&partDomain != 0 {
		cur = e.local.b
	}
	if q.HasGlobal {
		gcur = rs.local.b
	}
	res, nv, ngv, err := rate.ApplyInPlace(cur, gcur, q, now, nil, nil)
	if err != nil {
		// Only values this Table wrote are ever read, so this is a bug: start over.
		t.setValue(&e.local, nil)
		t.setValue(&rs.local, nil)
		return d, fmt.Errorf("local: %w", err)
	}
	d.Fields = res.Fields
	d.Granted = res.Fields[rate.FieldGranted]
	if !res.Write {
		return d, nil
	}
	if p&partDomain != 0 {
		t.keep(&e.local, nv, res.ExpireAt, res.T, outage)
	}
	if q.HasGlobal {
		t.keep(&rs.local, ngv, res.GlobalExpireAt, res.T, outage)
	}
	t.trim(e)
	return d, nil
}

// keep stores a value the engine wrote at t.
func (t *Table) keep(v *value, b []byte, exp, at int64, outage bool) {
	t.setValue(v, b)
	v.exp, v.last = exp, max(v.last, at)
	if outage {
		v.until = max(v.until, exp)
		if exp > t.until.Load() {
			t.until.Store(exp)
		}
	}
}

// setValue replaces v's bytes, keeping the memory count.
func (t *Table) setValue(v *value, b []byte) {
	t.bytes += cap(b) - cap(v.b)
	v.b = b
	if b == nil {
		v.exp, v.last = 0, 0
	}
}

// seed prepares e's values for an outage the first time they are used in it: a value
// that no longer counts is dropped, and the instance's own grants of the last second
// that the value does not hold yet are replayed into it, at the end of their bucket.
// The fleet's grants of that second are in Redis, and this instance's share of them
// is its own: without them, each instance would grant a full share again in the first
// second of the outage.
func (t *Table) seed(e *entry, lim *Limits, now int64) {
	rs := e.res
	if e.local.epoch != t.epoch {
		e.local.epoch = t.epoch
		if !e.local.live(now) {
			t.setValue(&e.local, nil)
		}
		e.mine.each(e.local.last, now, func(at, n int64) {
			_, _ = t.apply(e, lim, partDomain, 1, n, false, at, false)
		})
	}
	if rs.local.epoch != t.epoch && len(lim.GlobalCaps) > 0 {
		rs.local.epoch = t.epoch
		if !rs.local.live(now) {
			t.setValue(&rs.local, nil)
		}
		rs.mine.each(rs.local.last, now, func(at, n int64) {
			_, _ = t.apply(e, lim, partGlobal, 1, n, false, at, false)
		})
	}
}

// touch returns the entry of (res, domain), created if needed, as the most recently
// used; creating one may forget the least recently used others.
func (t *Table) touch(res, domain string) *entry {
	rs := t.res[res]
	if rs == nil {
		rs = &resource{name: res, domains: make(map[string]*entry)}
		t.res[res] = rs
	}
	e := rs.domains[domain]
	if e != nil {
		if t.lru.next != e {
			e.unlink()
			t.pushFront(e)
		}
		return e
	}
	e = &entry{domain: domain, res: rs}
	rs.domains[domain] = e
	t.pushFront(e)
	t.n++
	t.bytes += entryBytes + len(domain)
	t.trim(e)
	return e
}

// trim forgets the least recently used pairs, never keep, while the Table is over
// its bounds.
func (t *Table) trim(keep *entry) {
	for t.n > t.cfg.MaxDomains || t.bytes > t.cfg.MaxBytes {
		old := t.lru.prev
		if old == keep || old == &t.lru {
			return
		}
		t.forget(old)
	}
}

func (t *Table) forget(e *entry) {
	e.unlink()
	t.setValue(&e.local, nil)
	rs := e.res
	delete(rs.domains, e.domain)
	t.n--
	t.bytes -= entryBytes + len(e.domain)
	if len(rs.domains) == 0 {
		t.setValue(&rs.local, nil)
		delete(t.res, rs.name)
	}
}

func (t *Table) pushFront(e *entry) {
	e.prev, e.next = &t.lru, t.lru.next
	t.lru.next.prev = e
	t.lru.next = e
}

func (e *entry) unlink() {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}
