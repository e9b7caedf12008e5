package ratemodel

import (
	"errors"
	"strconv"
)

// HoldCmd is one of the hold commands.
type HoldCmd int

// The hold commands.
const (
	Reserve HoldCmd = iota
	Release
	Renew
	Transfer
	Seize
)

// ErrLost answers RENEW, SEIZE or TRANSFER of a hold the domain key does not hold at
// the effective time (unknown, released or expired): rule 5.
var ErrLost = errors.New("LOST")

// ErrCopies answers a TRANSFER of more copies than the hold has.
var ErrCopies = errors.New("COPIES")

// FenceShift: a fence is at least t * 2^FenceShift (rule 10).
const FenceShift = 20

// HoldRequest is one request of a hold command. Keys are names; the model keeps the
// state of every key it has seen.
type HoldRequest struct {
	Cmd HoldCmd
	// Key is the domain key; Global the global key ("" for none); Groups the group keys.
	Key    string
	Global string
	Groups []string
	// Reserve: Max, Min (the caller applies the default Min = Max), the limits
	// (HasLimit/Limit for the domain, GlobalLimit, GroupLimits[i] for Groups[i]).
	Max, Min    int64
	HasLimit    bool
	Limit       int64
	GlobalLimit int64
	GroupLimits []int64
	// Hold is the hold a RELEASE, RENEW, TRANSFER or SEIZE names.
	Hold uint64
	// HasCopies/Copies: COPIES of RELEASE and TRANSFER (default all).
	HasCopies bool
	Copies    int64
	// Lease (RESERVE, RENEW, SEIZE) and TTL (TRANSFER) in ms.
	Lease, TTL int64
	DryRun     bool
	// Once is the ONCE token of a RESERVE or TRANSFER ("" for none).
	Once string
	// NewID is the id of the hold a RESERVE or TRANSFER creates (hold ids are random:
	// the caller draws them, or reads them off the engine it compares with).
	NewID uint64
}

// HoldReply is what a hold command answers.
type HoldReply struct {
	// Err is ErrLost or ErrCopies (then nothing else is set and nothing changed).
	Err error
	// Replay: a remembered ONCE token; the reply is the remembered one.
	Replay bool
	// Write: the keys changed.
	Write bool
	// T is the effective time.
	T int64

	// RESERVE: granted, hold (0: null), held, limit, global_held, limited_by,
	// deadline, retry_after, fence.
	Granted    int64
	ID         uint64
	Held       int64
	Limit      int64
	GlobalHeld int64
	LimitedBy  string
	Deadline   int64
	RetryAfter int64
	Fence      int64

	// RELEASE, RENEW, SEIZE: copies, remaining, deadline, held (and fence for SEIZE).
	// TRANSFER: copies, hold (ID), deadline, remaining, held.
	Copies    int64
	Remaining int64
}

type holdRec struct {
	id       uint64
	copies   int64
	deadline int64
}

type holdOnce struct {
	token string
	t0    int64
	rep   HoldReply
}

// holdKey is one key of the hold model; absent when it has never been written or
// was deleted (a write left it holding nothing).
type holdKey struct {
	holds  []holdRec
	newest int64
	fence  int64
	once   []holdOnce
}

// Holds is the state of every hold key.
type Holds struct {
	keys map[string]*holdKey
	// NoFences models a server without rule 10 (a module build that predates
	// fences): grants and seizes get no fence and keys keep none.
	NoFences bool
}

// NewHolds returns a model with no keys.
func NewHolds() *Holds { return &Holds{keys: map[string]*holdKey{}} }

// Exists reports whether key exists.
func (h *Holds) Exists(key string) bool { return h.keys[key] != nil }

// Forget deletes key, as if it expired.
func (h *Holds) Forget(key string) { delete(h.keys, key) }

// Live is the copies key holds at t (rule 1).
func (h *Holds) Live(key string, t int64) int64 { return live(h.keys[key], t) }

// Newest is the newest time stored in key (0 when absent).
func (h *Holds) Newest(key string) int64 {
	if k := h.keys[key]; k != nil {
		return k.newest
	}
	return 0
}

// ExpireAt is key's expiry (0 when absent): rule 7's latest deadline + 1, kept while
// a ONCE token or the fence's millisecond still matters (see holdKey.expireAt).
func (h *Holds) ExpireAt(key string) int64 {
	k := h.keys[key]
	if k == nil {
		return 0
	}
	return k.expireAt()
}

func live(k *holdKey, t int64) int64 {
	if k == nil {
		return 0
	}
	var s int64
	for _, r := range k.holds {
		if t < r.deadline {
			s += r.copies
		}
	}
	return s
}

func (k *holdKey) find(id uint64, t int64) int {
	if k == nil {
		return -1
	}
	for i, r := range k.holds {
		if r.id == id && t < r.deadline {
			return i
		}
	}
	return -1
}

// names are the request's keys in order: domain, global, groups.
func (req *HoldRequest) names() []string {
	n := []string{req.Key}
	if req.Global != "" {
		n = append(n, req.Global)
	}
	return append(n, req.Groups...)
}

// limits are the limits of names() for a RESERVE (-1: none).
func (req *HoldRequest) limits() []int64 {
	l := []int64{-1}
	if req.HasLimit {
		l[0] = req.Limit
	}
	if req.Global != "" {
		l = append(l, req.GlobalLimit)
	}
	return append(l, req.GroupLimits...)
}

func (req *HoldRequest) limitName(i int) string {
	switch {
	case i == 0:
		return "domain"
	case req.Global != "" && i == 1:
		return "global"
	case req.Global != "":
		return "group:" + strconv.Itoa(i-1)
	}
	return "group:" + strconv.Itoa(i)
}

// Do runs one request at time now.
func (h *Holds) Do(req *HoldRequest, now int64) HoldReply {
	names := req.names()
	keys := make([]*holdKey, len(names))
	t := now
	for i, n := range names {
		keys[i] = h.keys[n]
		if keys[i] != nil {
			t = max(t, keys[i].newest)
		}
	}
	dom := keys[0]
	// Rule 12: a remembered token is a replay.
	if req.Once != "" && (req.Cmd == Reserve || req.Cmd == Transfer) && dom != nil {
		for _, e := range dom.once {
			if e.token == req.Once && t-e.t0 <= OnceWindow {
				r := e.rep
				r.Replay, r.Write, r.T = true, false, t
				return r
			}
		}
	}
	r := HoldReply{T: t, Limit: -1, GlobalHeld: -1}
	switch req.Cmd {
	case Reserve:
		h.reserve(req, names, keys, t, &r)
	case Release:
		h.release(req, names, keys, t, &r)
	case Renew, Seize:
		if dom.find(req.Hold, t) < 0 {
			return HoldReply{Err: ErrLost, T: t}
		}
		c := dom.holds[dom.find(req.Hold, t)].copies
		r.Copies, r.Remaining, r.Deadline = c, c, t+req.Lease
		r.Held = live(dom, t)
		r.Write = true
		fence := int64(0)
		if req.Cmd == Seize {
			fence = h.nextFence(keys, t)
			r.Fence = fence
		}
		h.write(names, t, fence, false, func(i int, k *holdKey) {
			if s := k.find(req.Hold, t); s >= 0 {
				k.holds[s].deadline = r.Deadline
			}
		})
	case Transfer:
		s := dom.find(req.Hold, t)
		if s < 0 {
			return HoldReply{Err: ErrLost, T: t}
		}
		c := dom.holds[s].copies
		n := c
		if req.HasCopies {
			if req.Copies > c {
				return HoldReply{Err: ErrCopies, T: t}
			}
			n = req.Copies
		}
		r.Copies, r.ID, r.Deadline, r.Remaining = n, req.NewID, t+req.TTL, c-n
		r.Held = live(dom, t)
		r.Write = true
		h.write(names, t, 0, false, func(i int, k *holdKey) {
			if s := k.find(req.Hold, t); s >= 0 {
				kc := k.holds[s].copies
				m := min(n, kc)
				k.holds[s].copies -= m
				k.holds = append(k.holds, holdRec{id: req.NewID, copies: m, deadline: r.Deadline})
			}
		})
	}
	if r.Write && req.Once != "" && (req.Cmd == Reserve || req.Cmd == Transfer) {
		if d := h.keys[req.Key]; d != nil {
			keep := d.once[:0]
			for _, e := range d.once {
				if t-e.t0 <= OnceWindow && e.token != req.Once {
					keep = append(keep, e)
				}
			}
			d.once = append(keep, holdOnce{token: req.Once, t0: t, rep: r})
		}
	}
	return r
}

// nextFence is rule 10's fence: max(1 + the largest fence stored in any key of the
// request, t * 2^20).
func (h *Holds) nextFence(keys []*holdKey, t int64) int64 {
	if h.NoFences {
		return 0
	}
	var f int64
	for _, k := range keys {
		if k != nil {
			f = max(f, k.fence)
		}
	}
	return max(f+1, t<<FenceShift)
}

// write applies a change to every key of the request: creates absent keys, records
// the time and the fence, prunes expired holds (and holds left with no copies) and
// deletes a key that stopped mattering (see expireAt).
func (h *Holds) write(names []string, t, fence int64, create bool, change func(i int, k *holdKey)) {
	for i, n := range names {
		k := h.keys[n]
		if k == nil && !create {
			continue // only a grant creates keys
		}
		if k == nil {
			k = &holdKey{}
			h.keys[n] = k
		}
		change(i, k)
		k.newest = max(k.newest, t)
		k.fence = max(k.fence, fence)
		keep := k.holds[:0]
		for _, r := range k.holds {
			if t < r.deadline && r.copies > 0 {
				keep = append(keep, r)
			}
		}
		k.holds = keep
		if k.expireAt() <= t {
			delete(h.keys, n)
		}
	}
}

// expireAt is when a key stops mattering (rule 7): its latest deadline + 1; and, as the
// project reads rules 10 and 12, not before its newest ONCE token's t0 + 10,001 (a
// replay within 10 s must find it) nor before the millisecond after its fence's time
// part (a grant in the same millisecond must see the fence, so fences never repeat).
func (k *holdKey) expireAt() int64 {
	var x int64
	for _, r := range k.holds {
		x = max(x, r.deadline+1)
	}
	for _, e := range k.once {
		x = max(x, e.t0+OnceWindow+1)
	}
	if k.fence > 0 {
		x = max(x, k.fence>>FenceShift+1)
	}
	return x
}

func (h *Holds) reserve(req *HoldRequest, names []string, keys []*holdKey, t int64, r *HoldReply) {
	lims := req.limits()
	granted := req.Max
	minRoom := req.Max
	r.LimitedBy = "none"
	need := max(req.Min, 1)
	for i, k := range keys {
		l := live(k, t)
		if i == 0 {
			r.Held = l
			r.Limit = lims[0]
		}
		if req.Global != "" && i == 1 {
			r.GlobalHeld = l
		}
		if lims[i] < 0 {
			continue
		}
		room := max(lims[i]-l, 0)
		if room < minRoom {
			minRoom = room
			r.LimitedBy = req.limitName(i)
		}
		granted = min(granted, room)
	}
	if granted < req.Min || granted == 0 {
		r.RetryAfter = holdRetry(req, keys, lims, t, need)
		return
	}
	r.Granted = granted
	r.Held += granted
	if r.GlobalHeld >= 0 {
		r.GlobalHeld += granted
	}
	r.Deadline = t + req.Lease
	if req.DryRun {
		return // a DRYRUN gets no fence: nothing is granted
	}
	r.Fence = h.nextFence(keys, t)
	r.ID = req.NewID
	r.Write = true
	h.write(names, t, r.Fence, true, func(i int, k *holdKey) {
		k.holds = append(k.holds, holdRec{id: req.NewID, copies: granted, deadline: r.Deadline})
	})
}

// holdRetry is the ms until need copies fit under every limit with no other traffic:
// live counts only fall, at deadlines, so the first deadline after which every limit
// has room is the answer; -1 when need exceeds a limit.
func holdRetry(req *HoldRequest, keys []*holdKey, lims []int64, t, need int64) int64 {
	fits := func(s int64) bool {
		for i, k := range keys {
			if lims[i] >= 0 && lims[i]-live(k, s) < need {
				return false
			}
		}
		return true
	}
	best := int64(-1)
	for _, k := range keys {
		if k == nil {
			continue
		}
		for _, rec := range k.holds {
			if rec.deadline > t && fits(rec.deadline) && (best < 0 || rec.deadline < best) {
				best = rec.deadline
			}
		}
	}
	if best < 0 {
		return -1
	}
	return best - t
}

func (h *Holds) release(req *HoldRequest, names []string, keys []*holdKey, t int64, r *HoldReply) {
	found := false
	for i, k := range keys {
		s := k.find(req.Hold, t)
		if s < 0 {
			continue
		}
		c := k.holds[s].copies
		n := c
		if req.HasCopies && req.Copies < c {
			n = req.Copies
		}
		if i == 0 || !found {
			r.Copies = n
		}
		if i == 0 {
			r.Remaining = c - n
			if r.Remaining > 0 {
				r.Deadline = k.holds[s].deadline
			}
		}
		found = true
	}
	r.Held = live(keys[0], t)
	if keys[0].find(req.Hold, t) >= 0 {
		r.Held -= r.Copies
	}
	if !found {
		return
	}
	r.Write = true
	h.write(names, t, 0, false, func(i int, k *holdKey) {
		if s := k.find(req.Hold, t); s >= 0 {
			if req.HasCopies && req.Copies < k.holds[s].copies {
				k.holds[s].copies -= req.Copies
			} else {
				k.holds[s].copies = 0
			}
		}
	})
}
