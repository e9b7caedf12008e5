package rate

// A deliberately slow and literal model of the spec's rules 1-9, kept apart from the
// real implementation: plain slices, no pruning, no encoding, no cleverness. Every
// number it returns is read straight off the rule that defines it. retry_after is
// found by trying every later millisecond.

type refHit struct{ ts, n int64 }

type refKey struct {
	entered []bool
	entry   []int64
	hits    [][]refHit // per tier, only since the tier's latest entry for tiers > 1
	second  []refHit
	newest  int64
	has     bool
}

type refGlobal struct {
	log    []refHit
	newest int64
	has    bool
}

func newRefKey(n int) *refKey {
	return &refKey{entered: make([]bool, n), entry: make([]int64, n), hits: make([][]refHit, n)}
}

func (k *refKey) clone() *refKey {
	c := &refKey{newest: k.newest, has: k.has}
	c.entered = append([]bool(nil), k.entered...)
	c.entry = append([]int64(nil), k.entry...)
	c.second = append([]refHit(nil), k.second...)
	c.hits = make([][]refHit, len(k.hits))
	for i := range k.hits {
		c.hits[i] = append([]refHit(nil), k.hits[i]...)
	}
	return c
}

func (g *refGlobal) clone() *refGlobal {
	return &refGlobal{log: append([]refHit(nil), g.log...), newest: g.newest, has: g.has}
}

// Rule 1.
func refStateOf(k *refKey, i int, cfg Tier, t int64) TierState {
	if !k.entered[i] {
		return Inactive
	}
	e := k.entry[i]
	if e <= t && t <= e+cfg.Active {
		return Active
	}
	if e+cfg.Active < t && t <= e+cfg.Active+cfg.Cooldown {
		return Cooldown
	}
	return Inactive
}

// Rule 2.
func refWindow(k *refKey, i int, cfg Tier, t int64) int64 {
	if i > 0 && refStateOf(k, i, cfg, t) == Inactive {
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

func refLog(log []refHit, t int64) int64 {
	var s int64
	for _, h := range log {
		if h.ts >= t-1000 {
			s += h.n
		}
	}
	return s
}

type refOutcome struct {
	t                    int64
	cur                  int // rule 3, index
	granted              int64
	ok                   bool
	take                 []int64
	part                 []bool
	hardRoom, globalRoom int64
}

func refDecide(k *refKey, g *refGlobal, req *Request, now int64) refOutcome {
	n := req.NTiers
	o := refOutcome{take: make([]int64, n), part: make([]bool, n)}
	// Rule 8.
	t := now
	if k.has && k.newest > t {
		t = k.newest
	}
	if req.HasGlobal && g.has && g.newest > t {
		t = g.newest
	}
	o.t = t
	// Rule 3.
	for i := 0; i < n; i++ {
		if refStateOf(k, i, req.Tiers[i], t) == Active {
			o.cur = i
		}
	}
	// Rule 4.
	capped := req.Max
	o.hardRoom, o.globalRoom = 1<<62, 1<<62
	if req.HasHard {
		o.hardRoom = req.Hard - refLog(k.second, t)
		if o.hardRoom < 0 {
			o.hardRoom = 0
		}
		if o.hardRoom < capped {
			capped = o.hardRoom
		}
	}
	if req.HasGlobal {
		o.globalRoom = req.GlobalLimit - refLog(g.log, t)
		if o.globalRoom < 0 {
			o.globalRoom = 0
		}
		if o.globalRoom < capped {
			capped = o.globalRoom
		}
	}
	// Rule 5.
	remaining := capped
	for i := o.cur; i < n && remaining > 0; i++ {
		cfg := req.Tiers[i]
		if refStateOf(k, i, cfg, t) == Cooldown {
			if cfg.Skippable {
				continue
			}
			break
		}
		o.part[i] = true
		room := cfg.Limit - refWindow(k, i, cfg, t)
		if room < 0 {
			room = 0
		}
		if room > remaining {
			room = remaining
		}
		o.take[i] = room
		remaining -= room
		o.granted += room
	}
	// Rule 6 (and 9: no tiers, nothing granted).
	o.ok = o.granted > 0 && o.granted >= req.Min
	return o
}

// refCommit records a granted outcome (rule 7).
func refCommit(k *refKey, g *refGlobal, req *Request, o refOutcome) {
	t := o.t
	for i := 0; i < req.NTiers; i++ {
		if o.part[i] && refStateOf(k, i, req.Tiers[i], t) == Inactive {
			k.entered[i] = true
			k.entry[i] = t
			if i > 0 {
				k.hits[i] = nil // an inactive higher tier's old hits are forgotten
			}
		}
	}
	for i := 0; i < req.NTiers; i++ {
		if o.take[i] > 0 {
			k.hits[i] = append(k.hits[i], refHit{t, o.take[i]})
		}
	}
	k.second = append(k.second, refHit{t, o.granted})
	k.newest, k.has = t, true
	if req.HasGlobal {
		g.log = append(g.log, refHit{t, o.granted})
		g.newest, g.has = t, true
	}
}

// refReply describes the state at t: tier, tier_limit, tier_hits.
func refTier(k *refKey, req *Request, t int64) (tier, limit, hits int64) {
	if req.NTiers == 0 {
		return 0, 0, 0
	}
	cur := -1
	for i := 0; i < req.NTiers; i++ {
		if refStateOf(k, i, req.Tiers[i], t) == Active {
			cur = i
		}
	}
	if cur < 0 {
		return 0, req.Tiers[0].Limit, refWindow(k, 0, req.Tiers[0], t)
	}
	return int64(cur + 1), req.Tiers[cur].Limit, refWindow(k, cur, req.Tiers[cur], t)
}

func refX(k *refKey, req *Request) int64 {
	var x int64
	if req.NTiers > 0 {
		for _, h := range k.hits[0] {
			x = max(x, h.ts+req.Tiers[0].Window+1)
		}
	}
	for i := 0; i < req.NTiers; i++ {
		if k.entered[i] {
			x = max(x, k.entry[i]+req.Tiers[i].Active+req.Tiers[i].Cooldown+1)
		}
	}
	for _, h := range k.second {
		x = max(x, h.ts+1001)
	}
	return x
}

// refHorizon is a time after which nothing stored matters any more.
func refHorizon(k *refKey, g *refGlobal, req *Request) int64 {
	x := refX(k, req)
	for i := 1; i < req.NTiers; i++ {
		for _, h := range k.hits[i] {
			x = max(x, h.ts+req.Tiers[i].Window+1)
		}
	}
	for _, h := range g.log {
		x = max(x, h.ts+1001)
	}
	return x
}

type refResult struct {
	fields   [NumFields]int64
	granted  bool
	t        int64
	expireAt int64
}

// refRequest runs one request against the model, mutating it unless rejected or
// DRYRUN. With bruteRetry it computes retry_after by trying every later ms.
func refRequest(k *refKey, g *refGlobal, req *Request, now int64, bruteRetry bool) refResult {
	o := refDecide(k, g, req, now)
	var r refResult
	r.t = o.t
	t := o.t
	f := &r.fields
	if req.HasHard && o.hardRoom < req.Max {
		f[FieldHardLimited] = 1
	}
	if req.HasGlobal && o.globalRoom < req.Max {
		f[FieldGlobalLimited] = 1
	}
	if !o.ok {
		f[FieldTier], f[FieldTierLimit], f[FieldTierHits] = refTier(k, req, t)
		f[FieldDomainHits] = refLog(k.second, t)
		f[FieldGlobalHits] = -1
		if req.HasGlobal {
			f[FieldGlobalHits] = refLog(g.log, t)
		}
		r.expireAt = refX(k, req)
		f[FieldResetAfter] = max(r.expireAt-t, 0)
		f[FieldRetryAfter] = -2 // unknown unless brute-forced
		if bruteRetry {
			f[FieldRetryAfter] = refBruteRetry(k, g, req, t)
		}
		return r
	}
	r.granted = true
	kk, gg := k, g
	if req.DryRun {
		kk, gg = k.clone(), g.clone()
	}
	for i := 0; i < req.NTiers; i++ {
		if o.part[i] && i > o.cur && refStateOf(kk, i, req.Tiers[i], t) == Inactive {
			f[FieldBurst] = 1
		}
	}
	refCommit(kk, gg, req, o)
	f[FieldGranted] = o.granted
	f[FieldTier], f[FieldTierLimit], f[FieldTierHits] = refTier(kk, req, t)
	f[FieldDomainHits] = refLog(kk.second, t)
	f[FieldGlobalHits] = -1
	if req.HasGlobal {
		f[FieldGlobalHits] = refLog(gg.log, t)
	}
	r.expireAt = refX(kk, req)
	f[FieldResetAfter] = r.expireAt - t
	return r
}

func refBruteRetry(k *refKey, g *refGlobal, req *Request, t int64) int64 {
	h := refHorizon(k, g, req)
	for d := int64(1); ; d++ {
		if refDecide(k, g, req, t+d).ok {
			return d
		}
		if t+d > h {
			return -1
		}
	}
}
