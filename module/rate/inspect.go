package rate

import (
	"cmp"
	"fmt"
	"slices"
)

// TierInfo explains one stored tier at the inspection time.
type TierInfo struct {
	// Tier is the last configuration the key saw for this tier.
	Tier
	State TierState
	// Entered reports whether the tier was ever entered; EnteredAt is its latest entry
	// (-1 when never entered).
	Entered   bool
	EnteredAt int64
	// Hits is the number of hits in the tier's window (rule 2).
	Hits int64
	// ActiveUntil and CooldownUntil are the last ms of the active and cooldown periods
	// of the latest entry (-1 when never entered).
	ActiveUntil   int64
	CooldownUntil int64
	// NextChange is when the tier's state changes next without traffic, NextState the
	// state it changes to; NextChange is -1 when no change is due (an INACTIVE tier only
	// becomes ACTIVE when a request enters it).
	NextChange int64
	NextState  TierState
}

// LogEntry is one millisecond of a second log.
type LogEntry struct {
	At   int64
	Hits int64
}

// Info is what CHARON.INSPECT reports about a key.
type Info struct {
	Kind Kind
	// T is the inspection time: max(requested time, newest time in the key).
	T int64
	// Last is the newest timestamp stored in the key.
	Last int64
	// CurrentTier is the highest ACTIVE tier (1-based), 0 when none is ACTIVE.
	CurrentTier int
	// Tiers is empty for a global key.
	Tiers []TierInfo
	// WindowHits is the second-log count over the last 1000 ms (domain_hits, or
	// global_hits for a global key); SecondLog lists its entries, oldest first.
	WindowHits int64
	SecondLog  []LogEntry
	// Events is the number of stored log events, Bytes the encoded size.
	Events int
	Bytes  int
	// ExpireAt is the absolute time at which the key stops mattering (X);
	// ResetAfter = max(ExpireAt - T, 0).
	ExpireAt   int64
	ResetAfter int64
	// Caps are the caps stored in the key (rule 10; HARD and GLOBAL's per-second
	// limit are not stored), in order; Tokens the ONCE grants it remembers at T.
	Caps   []CapInfo
	Tokens []TokenInfo
}

// CapInfo explains one stored cap at the inspection time.
type CapInfo struct {
	Cap
	// BucketMs is the bucket length (1: counted exactly).
	BucketMs int64
	// Hits is what the cap counts at T, Room what it leaves.
	Hits, Room int64
	// NextLeave is when the oldest hit it counts stops counting (-1: none).
	NextLeave int64
}

// TokenInfo is one remembered ONCE grant.
type TokenInfo struct {
	Hash uint64
	// At is the grant's effective time, ExpiresAt the first time a replay is no
	// longer recognised (At + 10,001).
	At, ExpiresAt int64
	Granted       int64
}

// Inspect explains the stored value cur (non-empty) at nowMs, under the configuration
// stored in it. It is not on the hot path and allocates freely.
func Inspect(cur []byte, nowMs int64) (*Info, error) {
	size := len(cur)
	if len(cur) > 0 && cur[0] == encV1 {
		conv, err := convertV1(cur, nil)
		if err != nil {
			return nil, fmt.Errorf("inspect: %w", err)
		}
		cur = conv
	}
	var v view
	if err := parseView(cur, &v); err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	t := max(min(max(nowMs, 0), MaxAt), v.last)
	info := &Info{Kind: v.kind, T: t, Last: v.last, Events: liveEvents(&v), Bytes: size}
	var req Request
	req.NTiers = v.n
	for j := 0; j < v.n; j++ {
		req.Tiers[j] = v.tiers[j].cfg
	}
	c := calc{req: &req, v: v, hasV: true, n: v.n, t: t}
	for j := 0; j < v.n; j++ {
		c.entered[j] = v.tiers[j].entered
		c.entry[j] = v.tiers[j].entry
		c.state[j] = stateAt(c.entered[j], c.entry[j], &req.Tiers[j], t)
		if c.state[j] == Active {
			info.CurrentTier = j + 1
		}
		if j > 0 && c.state[j] == Inactive {
			continue
		}
		cu := v.tiers[j].cu
		v.advance(&cu, j, c.lower(j, t)) // checked by parseView
		c.hits[j] = cu.sum
	}
	if v.n > 0 && v.has1 {
		c.x1 = v.t1 + req.Tiers[0].Window + 1
	}
	sec := v.sec
	v.advance(&sec, -1, t-1000)
	info.WindowHits = sec.sum
	if sec.off < v.end {
		var w evWalk
		w.at(&v, sec.off, sec.ts)
		var f fault
		for {
			info.SecondLog = append(info.SecondLog, LogEntry{At: w.ts, Hits: w.e.total})
			if !w.step(&f) {
				break
			}
		}
	}
	for j := 0; j < v.n; j++ {
		cfg := req.Tiers[j]
		ti := TierInfo{Tier: cfg, State: c.state[j], Entered: c.entered[j], EnteredAt: c.entry[j],
			Hits: c.hits[j], ActiveUntil: -1, CooldownUntil: -1, NextChange: -1, NextState: c.state[j]}
		if ti.Entered {
			ti.ActiveUntil = ti.EnteredAt + cfg.Active
			ti.CooldownUntil = ti.ActiveUntil + cfg.Cooldown
			switch ti.State {
			case Active:
				ti.NextChange = ti.ActiveUntil + 1
				ti.NextState = Cooldown
				if cfg.Cooldown == 0 {
					ti.NextState = Inactive
				}
			case Cooldown:
				ti.NextChange, ti.NextState = ti.CooldownUntil+1, Inactive
			}
		} else {
			ti.EnteredAt = -1
		}
		info.Tiers = append(info.Tiers, ti)
	}
	info.ExpireAt = c.expiry(&c.entered, &c.entry)
	for i := 0; i < v.nc; i++ {
		cs := v.caps[i]
		ci := CapInfo{Cap: cs.cfg, BucketMs: cs.g, NextLeave: -1}
		if cs.exact() {
			v.advance(&cs.cu, -1, t-cs.cfg.Window)
			ci.Hits = cs.cu.sum
			if cs.cu.off < v.end {
				ci.NextLeave = cs.cu.ts + cs.cfg.Window + 1
			}
		} else {
			info.ExpireAt = max(info.ExpireAt, (floorDiv(v.last, cs.g)+1)*cs.g+cs.cfg.Window)
			capAdvance(v.b, &cs, floorDiv(t-cs.cfg.Window, cs.g))
			ci.Hits = cs.sum
			if cs.dead < cs.len {
				ci.NextLeave = (cs.first+1)*cs.g + cs.cfg.Window
			}
		}
		ci.Room = max(cs.cfg.Limit-ci.Hits, 0)
		info.Caps = append(info.Caps, ci)
	}
	var r tokReply
	for i := 0; i < v.tok.n; i++ {
		if getTok(v.b, i, &r); r.h != 0 && t-r.t0 <= onceLife {
			info.Tokens = append(info.Tokens, TokenInfo{Hash: r.h, At: r.t0, ExpiresAt: r.t0 + onceLife + 1, Granted: r.fields[FieldGranted]})
		}
	}
	slices.SortFunc(info.Tokens, func(a, b TokenInfo) int { return cmp.Compare(a.At, b.At) })
	info.ResetAfter = max(info.ExpireAt-t, 0)
	return info, nil
}
