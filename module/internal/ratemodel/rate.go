// Package ratemodel is a deliberately slow and literal model of CHARON.RATE (rules
// 1-11 of the rate contract) and of the hold commands (CHARON.RESERVE, RELEASE, RENEW,
// TRANSFER, SEIZE: rules 1-12 of the hold contract, without BLOCK). Both engines, the
// module's (module/rate, module/hold) and the server-side scripts, are compared with it
// request by request.
//
// It is written from the contract's text, never from an engine: plain slices, no
// pruning of anything that could still matter, no encoding, no cleverness. Every
// number it returns is read straight off the rule that defines it, and retry_after is
// found by trying later times. It has its own plain types and imports no engine, so
// the engines' internal tests can import it.
package ratemodel

import (
	"math"
	"sort"
)

// Reply field indexes of CHARON.RATE, in the order of the RESP2 reply.
const (
	FieldGranted = iota
	FieldTier
	FieldTierLimit
	FieldTierHits
	FieldDomainHits
	FieldGlobalHits
	FieldBurst
	FieldHardLimited
	FieldGlobalLimited
	FieldRetryAfter
	FieldResetAfter
	// NumFields is the length of the reply.
	NumFields
)

// OnceWindow is how long a granted request's ONCE token is remembered (rule 11): a
// replay at t0 + OnceWindow is still recognised, one at t0 + OnceWindow + 1 is not.
const OnceWindow = 10_000

// RetryUnknown is the retry_after of a rejection when the caller asked Rate not to
// compute it.
const RetryUnknown = -2

// Tier is one tier: Limit hits per Window ms, ACTIVE for Active ms after it is
// entered, then in COOLDOWN for Cooldown ms (rule 1).
type Tier struct {
	Limit, Window, Active, Cooldown int64
	Skippable                       bool
}

// Cap is a windowed cap (rule 10): at most N hits granted over the last Window ms.
// HARD n is Cap{n, 1000}; GLOBAL gkey n is the global cap Cap{n, 1000}.
type Cap struct {
	N, Window int64
}

// Request is one CHARON.RATE request.
type Request struct {
	// Max and Min as given (the caller applies the defaults: Min = Max).
	Max, Min int64
	// Tiers in order; none with Closed.
	Tiers  []Tier
	Closed bool
	// Caps are the per-domain caps (CAP, the caps after ';' in LIMITS, HARD).
	Caps []Cap
	// Global: the request names a global key; GlobalCaps are its caps (GLOBAL n is one
	// cap n/1000).
	Global     bool
	GlobalCaps []Cap
	// Once is the ONCE token ("" for none; a real token has 1..64 bytes).
	Once   string
	DryRun bool
}

type hit struct{ ts, n int64 }

type onceEntry struct {
	token string
	t0    int64
	res   Result
}

// Key is the state of one domain key, as the rules see it.
type Key struct {
	entered []bool
	entry   []int64
	// hits per tier; for tiers above the first, only those since the tier's latest
	// entry (rule 2: an INACTIVE higher tier's old hits are forgotten).
	hits [][]hit
	// grants is every grant (t, granted): the second log and what the caps count.
	grants []hit
	// caps are the bucketed caps (windows over 1000 ms) the key holds, by window:
	// each counts the grants at or after its value (see capSince).
	caps   map[int64]int64
	newest int64
	has    bool
	once   []onceEntry
}

// Global is the state of one global key: every grant made under it.
type Global struct {
	grants []hit
	caps   map[int64]int64
	newest int64
	has    bool
}

// NewKey returns an absent domain key.
func NewKey() *Key { return &Key{} }

// NewGlobal returns an absent global key.
func NewGlobal() *Global { return &Global{} }

// Exists reports whether any grant was recorded in the key.
func (k *Key) Exists() bool { return k.has }

// Newest is the newest effective time recorded in the key.
func (k *Key) Newest() int64 { return k.newest }

// Exists reports whether any grant was recorded in the global key.
func (g *Global) Exists() bool { return g.has }

// Newest is the newest effective time recorded in the global key.
func (g *Global) Newest() int64 { return g.newest }

// Clone returns an independent copy.
func (k *Key) Clone() *Key {
	c := &Key{newest: k.newest, has: k.has}
	c.entered = append([]bool(nil), k.entered...)
	c.entry = append([]int64(nil), k.entry...)
	c.grants = append([]hit(nil), k.grants...)
	c.hits = make([][]hit, len(k.hits))
	for i := range k.hits {
		c.hits[i] = append([]hit(nil), k.hits[i]...)
	}
	c.once = append([]onceEntry(nil), k.once...)
	c.caps = cloneCaps(k.caps)
	return c
}

// Clone returns an independent copy.
func (g *Global) Clone() *Global {
	return &Global{grants: append([]hit(nil), g.grants...), caps: cloneCaps(g.caps), newest: g.newest, has: g.has}
}

// Result is the outcome of one request.
type Result struct {
	// Fields is the reply (Field* indexes).
	Fields [NumFields]int64
	// Granted: the request was granted (also under DRYRUN, and for a replay of a grant).
	Granted bool
	// Replay: the request carried a remembered ONCE token (rule 11); Fields is the
	// remembered reply and nothing changed.
	Replay bool
	// Write: the keys changed (granted, not DRYRUN, not a replay).
	Write bool
	// T is the effective time (rule 8).
	T int64
	// ExpireAt is X of the reply's reset_after after the request (the key's absolute
	// expiry); 0 when the key holds nothing.
	ExpireAt int64
}

// state of tier i at t (rule 1).
type tierState int

const (
	inactive tierState = iota
	active
	cooldown
)

func (k *Key) state(i int, cfg Tier, t int64) tierState {
	if i >= len(k.entered) || !k.entered[i] {
		return inactive
	}
	e := k.entry[i]
	if e <= t && t <= e+cfg.Active {
		return active
	}
	if e+cfg.Active < t && t <= e+cfg.Active+cfg.Cooldown {
		return cooldown
	}
	return inactive
}

// window is the hits in tier i's window at t (rule 2).
func (k *Key) window(i int, cfg Tier, t int64) int64 {
	if i >= len(k.hits) || i > 0 && k.state(i, cfg, t) == inactive {
		return 0
	}
	var s int64
	for _, h := range k.hits[i] {
		if h.ts >= t-cfg.Window {
			s += h.n
		}
	}
	return s
}

// capGrain is a cap's bucket length g (rule 10): 1 ms (exact) up to 1000 ms windows,
// ceil(W/1000) beyond.
func capGrain(w int64) int64 {
	if w <= 1000 {
		return 1
	}
	return (w + 999) / 1000
}

// capEnd is the last millisecond of the bucket that a hit at ts lies in.
func capEnd(ts, g int64) int64 { return ts/g*g + g - 1 }

func cloneCaps(m map[int64]int64) map[int64]int64 {
	if m == nil {
		return nil
	}
	c := make(map[int64]int64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// capSince is the oldest grant that cap c counts at t. Rule 10: "a cap added to a key
// later counts only the hits the key still holds". Exact caps (windows up to 1000 ms)
// count from the second log, which every key holds. A bucketed cap the key holds
// counts the grants since it was added; one the key does not hold (new, or dropped
// by a grant that did not name it) counts what the key holds of its window, the
// second log: the grants of the last 1000 ms. (The project's reading, also written
// down in module/rate/FORMAT.md, version 3.)
func capSince(stored map[int64]int64, c Cap, t int64) int64 {
	if c.Window <= 1000 {
		return math.MinInt64
	}
	if s, ok := stored[c.Window]; ok {
		return s
	}
	return t - 1000
}

// capCount is what cap c counts at t over grants (rule 10): a hit counts while the
// end of its bucket is at or after t - W.
func capCount(grants []hit, stored map[int64]int64, c Cap, t int64) int64 {
	g := capGrain(c.Window)
	since := capSince(stored, c, t)
	var s int64
	for _, h := range grants {
		if h.ts >= since && capEnd(h.ts, g) >= t-c.Window {
			s += h.n
		}
	}
	return s
}

// keepCaps is what a grant at t leaves stored: the request's bucketed caps (each
// counting since it was added), and no other.
func keepCaps(stored map[int64]int64, caps []Cap, t int64) map[int64]int64 {
	m := map[int64]int64{}
	for _, c := range caps {
		if c.Window > 1000 {
			m[c.Window] = capSince(stored, c, t)
		}
	}
	return m
}

// second is the hits of a log in the last 1000 ms (domain_hits, global_hits).
func second(grants []hit, t int64) int64 {
	var s int64
	for _, h := range grants {
		if h.ts >= t-1000 {
			s += h.n
		}
	}
	return s
}

type outcome struct {
	t                int64
	cur              int
	granted          int64
	ok               bool
	take             []int64
	part             []bool
	hardCut, globCut bool
}

// effective is rule 8's time.
func effective(k *Key, g *Global, req *Request, now int64) int64 {
	t := now
	if k.has && k.newest > t {
		t = k.newest
	}
	if req.Global && g != nil && g.has && g.newest > t {
		t = g.newest
	}
	return t
}

// decide applies rules 3-6 and 10 at the effective time t.
func decide(k *Key, g *Global, req *Request, t int64) outcome {
	n := len(req.Tiers)
	o := outcome{t: t, take: make([]int64, n), part: make([]bool, n)}
	// Rule 3.
	for i := 0; i < n; i++ {
		if k.state(i, req.Tiers[i], t) == active {
			o.cur = i
		}
	}
	// Rules 4 and 10: every cap lowers MAX.
	capped := req.Max
	for _, c := range req.Caps {
		room := max(c.N-capCount(k.grants, k.caps, c, t), 0)
		if room < req.Max {
			o.hardCut = true
		}
		capped = min(capped, room)
	}
	if req.Global {
		for _, c := range req.GlobalCaps {
			var cnt int64
			if g != nil {
				cnt = capCount(g.grants, g.caps, c, t)
			}
			room := max(c.N-cnt, 0)
			if room < req.Max {
				o.globCut = true
			}
			capped = min(capped, room)
		}
	}
	// Rule 5.
	remaining := capped
	for i := o.cur; i < n && remaining > 0; i++ {
		cfg := req.Tiers[i]
		if k.state(i, cfg, t) == cooldown {
			if cfg.Skippable {
				continue
			}
			break
		}
		o.part[i] = true
		room := max(cfg.Limit-k.window(i, cfg, t), 0)
		room = min(room, remaining)
		o.take[i] = room
		remaining -= room
		o.granted += room
	}
	// Rule 6 (and 9: CLOSED has no tiers, nothing is granted).
	o.ok = !req.Closed && o.granted > 0 && o.granted >= req.Min
	return o
}

// commit records a granted outcome (rule 7).
func commit(k *Key, g *Global, req *Request, o outcome) {
	t := o.t
	n := len(req.Tiers)
	// The number of tiers changed: extra stored tiers are dropped, new ones start empty.
	for len(k.entered) < n {
		k.entered = append(k.entered, false)
		k.entry = append(k.entry, 0)
		k.hits = append(k.hits, nil)
	}
	k.entered, k.entry, k.hits = k.entered[:n], k.entry[:n], k.hits[:n]
	for i := 0; i < n; i++ {
		if o.part[i] && k.state(i, req.Tiers[i], t) == inactive {
			k.entered[i] = true
			k.entry[i] = t
			if i > 0 {
				k.hits[i] = nil
			}
		}
	}
	for i := 0; i < n; i++ {
		if o.take[i] > 0 {
			k.hits[i] = append(k.hits[i], hit{t, o.take[i]})
		}
	}
	k.caps = keepCaps(k.caps, req.Caps, t)
	k.grants = append(k.grants, hit{t, o.granted})
	k.newest, k.has = t, true
	if req.Global && g != nil {
		g.caps = keepCaps(g.caps, req.GlobalCaps, t)
		g.grants = append(g.grants, hit{t, o.granted})
		g.newest, g.has = t, true
	}
}

// tierFields are the reply's tier, tier_limit and tier_hits at t.
func tierFields(k *Key, req *Request, t int64) (tier, limit, hits int64) {
	n := len(req.Tiers)
	if n == 0 {
		return 0, 0, 0
	}
	cur := -1
	for i := 0; i < n; i++ {
		if k.state(i, req.Tiers[i], t) == active {
			cur = i
		}
	}
	if cur < 0 {
		return 0, req.Tiers[0].Limit, k.window(0, req.Tiers[0], t)
	}
	return int64(cur + 1), req.Tiers[cur].Limit, k.window(cur, req.Tiers[cur], t)
}

// ExpireAt is X of the reply's reset_after for the key under req's configuration at
// t: the latest of each tier-1 hit's ts + W1 + 1, each entered tier's entry + A + C +
// 1, each second-log entry's ts + 1001, and for each cap its newest bucket's end + W + 1.
func ExpireAt(k *Key, req *Request, t int64) int64 {
	var x int64
	if len(req.Tiers) > 0 && len(k.hits) > 0 {
		for _, h := range k.hits[0] {
			x = max(x, h.ts+req.Tiers[0].Window+1)
		}
	}
	for i := 0; i < len(req.Tiers) && i < len(k.entered); i++ {
		if k.entered[i] {
			x = max(x, k.entry[i]+req.Tiers[i].Active+req.Tiers[i].Cooldown+1)
		}
	}
	for _, h := range k.grants {
		x = max(x, h.ts+1001)
	}
	x = max(x, capsExpire(k.grants, k.caps, req.Caps, t))
	return x
}

// GlobalExpireAt is when the global key stops mattering at t: its newest entry +
// 1001, or later while one of caps still counts.
func GlobalExpireAt(g *Global, caps []Cap, t int64) int64 {
	var x int64
	for _, h := range g.grants {
		x = max(x, h.ts+1001)
	}
	return max(x, capsExpire(g.grants, g.caps, caps, t))
}

func capsExpire(grants []hit, stored map[int64]int64, caps []Cap, t int64) int64 {
	var x int64
	for _, c := range caps {
		gr := capGrain(c.Window)
		since := capSince(stored, c, t)
		for _, h := range grants {
			if h.ts >= since {
				x = max(x, capEnd(h.ts, gr)+c.Window+1)
			}
		}
	}
	return x
}

// Rate runs one request at time now against the domain key k and, when req.Global,
// the global key g, changing them unless the request is rejected, a DRYRUN or a
// replay. With retry false the retry_after of a rejection is RetryUnknown.
func Rate(k *Key, g *Global, req *Request, now int64, retry bool) Result {
	t := effective(k, g, req, now)
	// Rule 11: a remembered token is a replay.
	if req.Once != "" {
		for _, e := range k.once {
			if e.token == req.Once && t-e.t0 <= OnceWindow {
				r := e.res
				r.Replay, r.Write, r.T = true, false, t
				r.ExpireAt = ExpireAt(k, req, t)
				return r
			}
		}
	}
	o := decide(k, g, req, t)
	var r Result
	r.T = t
	f := &r.Fields
	if o.hardCut {
		f[FieldHardLimited] = 1
	}
	if o.globCut {
		f[FieldGlobalLimited] = 1
	}
	if !o.ok {
		f[FieldTier], f[FieldTierLimit], f[FieldTierHits] = tierFields(k, req, t)
		f[FieldDomainHits] = second(k.grants, t)
		f[FieldGlobalHits] = -1
		if req.Global {
			f[FieldGlobalHits] = second(g.grants, t)
		}
		r.ExpireAt = ExpireAt(k, req, t)
		f[FieldResetAfter] = max(r.ExpireAt-t, 0)
		f[FieldRetryAfter] = RetryUnknown
		if retry {
			f[FieldRetryAfter] = RetryAfter(k, g, req, t)
		}
		return r
	}
	r.Granted = true
	kk, gg := k, g
	if req.DryRun {
		kk = k.Clone()
		if g != nil {
			gg = g.Clone()
		}
	}
	for i := range req.Tiers {
		if o.part[i] && i > o.cur && kk.state(i, req.Tiers[i], t) == inactive {
			f[FieldBurst] = 1
		}
	}
	commit(kk, gg, req, o)
	f[FieldGranted] = o.granted
	f[FieldTier], f[FieldTierLimit], f[FieldTierHits] = tierFields(kk, req, t)
	f[FieldDomainHits] = second(kk.grants, t)
	f[FieldGlobalHits] = -1
	if req.Global {
		f[FieldGlobalHits] = second(gg.grants, t)
	}
	r.ExpireAt = ExpireAt(kk, req, t)
	f[FieldResetAfter] = r.ExpireAt - t
	if !req.DryRun {
		r.Write = true
		if req.Once != "" {
			// Only grants of the last 10 s are kept.
			live := k.once[:0]
			for _, e := range k.once {
				if t-e.t0 <= OnceWindow && e.token != req.Once {
					live = append(live, e)
				}
			}
			k.once = append(live, onceEntry{token: req.Once, t0: t, res: r})
		}
	}
	return r
}

// changes lists every time after t at which the decision for req could change when
// nothing else happens: a hit leaving a tier window (ts + W + 1), a tier changing
// state (e + A + 1, e + A + C + 1), and a grant leaving a cap (its bucket's end + W + 1).
func changes(k *Key, g *Global, req *Request, t int64) []int64 {
	var pts []int64
	add := func(p int64) {
		if p > t {
			pts = append(pts, p)
		}
	}
	for i, cfg := range req.Tiers {
		if i < len(k.hits) {
			for _, h := range k.hits[i] {
				add(h.ts + cfg.Window + 1)
			}
		}
		if i < len(k.entered) && k.entered[i] {
			add(k.entry[i] + cfg.Active + 1)
			add(k.entry[i] + cfg.Active + cfg.Cooldown + 1)
		}
	}
	capChanges := func(grants []hit, stored map[int64]int64, caps []Cap) {
		for _, c := range caps {
			gr := capGrain(c.Window)
			_, held := stored[c.Window]
			for _, h := range grants {
				add(capEnd(h.ts, gr) + c.Window + 1)
				if c.Window > 1000 && !held {
					add(h.ts + 1001) // an unheld cap counts the second log
				}
			}
		}
	}
	capChanges(k.grants, k.caps, req.Caps)
	if req.Global && g != nil {
		capChanges(g.grants, g.caps, req.GlobalCaps)
	}
	sort.Slice(pts, func(a, b int) bool { return pts[a] < pts[b] })
	return pts
}

// RetryAfter is retry_after for a request rejected at effective time t: the ms until
// the same request would be granted with no other traffic, -1 when never. The
// decision is constant between the times that changes lists, so trying t + 1 and each
// of them in order finds the first grant; after the last one nothing changes again.
func RetryAfter(k *Key, g *Global, req *Request, t int64) int64 {
	if req.Closed {
		return -1
	}
	if decide(k, g, req, t+1).ok {
		return 1
	}
	for _, p := range changes(k, g, req, t) {
		if decide(k, g, req, p).ok {
			return p - t
		}
	}
	return -1
}

// BruteRetryAfter is RetryAfter found by trying every later millisecond up to the
// last change (for testing RetryAfter itself on short windows).
func BruteRetryAfter(k *Key, g *Global, req *Request, t int64) int64 {
	if req.Closed {
		return -1
	}
	pts := changes(k, g, req, t)
	h := t + 1
	if len(pts) > 0 {
		h = pts[len(pts)-1]
	}
	for s := t + 1; s <= h; s++ {
		if decide(k, g, req, s).ok {
			return s - t
		}
	}
	return -1
}
