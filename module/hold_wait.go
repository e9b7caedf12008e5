package main

import (
	"errors"

	"github.com/charon-redis/charon/module/hold"
	"github.com/charon-redis/charon/rm"
)

// CHARON.RESERVE ... BLOCK ms: a reservation that cannot be granted waits for copies.
//
// A waiter is blocked with RedisModule_BlockClientOnKeys on every key of its request
// (Redis then keeps its timeout, CLIENT UNBLOCK, disconnects and cluster redirects),
// and is listed in a queue per key (per database) in arrival order. The module serves
// waiters itself, because Redis's per-key order cannot say "first come, first served"
// across the several keys of a request:
//
//   - After every hold command that wrote, and when a waiter leaves, the waiters of
//     the keys concerned are tried in arrival order. A waiter is granted when its
//     request fits and no earlier waiter is held back by one of its keys (an earlier
//     waiter that has less room on a key than it needs gets that key's next copies;
//     one held back by another of its keys does not block the key for others). The
//     same rule makes a new request, blocking or not, wait behind the queue.
//   - A waiter is granted by ending its wait (RedisModule_UnblockClient), which runs
//     the request again in the waiter's own context (at once on Redis 7.0 and Valkey,
//     in the next event-loop turn on Redis 7.2 and later, the copies staying its
//     meanwhile): it writes, replicates as a plain RESERVE with AT and ID explicit,
//     and replies there, fenced like any grant.
//   - Leases expire without any command: each waiter has a timer (RedisModule_CreateTimer)
//     at the moment enough live holds reach their deadlines for it to fit, and no
//     other timer; between events the server does no work for a waiter.
//   - A timeout (or CLIENT UNBLOCK) runs the request a last time: granted if it fits
//     now, else the rejection reply. A disconnect removes the waiter and nothing else.
//   - In a cluster, a waiter whose slot is migrating away (a key gone) or served
//     elsewhere ends with a TRYAGAIN error when it is tried; once the slot has moved,
//     Redis itself ends the wait with MOVED.
//
// Everything runs on Redis's main thread; the module starts no goroutine.

// Waiter states.
const (
	waitWaiting  = iota // in its queues
	waitGranting        // chosen: Unblock runs its request in its own context
	waitFailing         // its slot is moving: Unblock replies the error
	waitDone            // replied or gone, out of every queue
)

// waiter is one blocked CHARON.RESERVE.
type waiter struct {
	id       uint64 // the blocked client's privdata: generation << 24 | slot + 1
	seq      uint64 // arrival order
	db       int
	state    int
	bc       rm.BlockedClient
	keys     []rm.String // held references to the request's keys, in request order
	names    [][]byte    // their names
	queues   []*keyQueue // the queue of each key
	req      hold.Request
	deadline int64  // when the wait times out (server clock, ms); 0: never
	timer    uint64 // the pending timer, 0: none
}

// keyQueue lists the waiters of one key in arrival order.
type keyQueue struct {
	db      int
	name    string
	entries []queueEntry
	mark    bool // scratch of wake
}

type queueEntry struct {
	w *waiter
	k int // the key's index in w's request
}

// wakeTimerID is the id of the timer that runs deferred wakes (waiter ids are never 0).
const wakeTimerID = 0

const waiterSlotBits = 24

// waitState is the registry of waiters. One per server: Redis runs every callback
// on its main thread.
type waitState struct {
	slots     []*waiter
	free      []int
	nextSeq   uint64
	order     []*waiter              // waiting, in arrival order
	queues    []map[string]*keyQueue // by database
	pending   []*keyQueue            // keys whose waiters are to be tried
	waking    bool
	wakeTimer bool // a deferred wake is scheduled

	// scratch of attempt and wake
	cands []*waiter
	kv    [maxHoldKeys]hold.View
	rk    [maxHoldKeys]rm.ReadKey
	req   hold.Request
	res   hold.Result
}

// errSlotMoving ends a wait whose slot moves to another node.
var errSlotMoving = errors.New("TRYAGAIN the slot of this request's keys is moving to another node: " +
	"the wait ended and nothing was granted; send the request again")

func (ws *waitState) lookup(id uint64) *waiter {
	slot := int(id&(1<<waiterSlotBits-1)) - 1
	if id == 0 || slot < 0 || slot >= len(ws.slots) {
		return nil
	}
	if w := ws.slots[slot]; w != nil && w.id == id {
		return w
	}
	return nil
}

func (ws *waitState) queue(db int, name []byte, create bool) *keyQueue {
	for db >= len(ws.queues) {
		if !create {
			return nil
		}
		ws.queues = append(ws.queues, nil)
	}
	m := ws.queues[db]
	if q := m[string(name)]; q != nil || !create {
		return q
	}
	if m == nil {
		m = map[string]*keyQueue{}
		ws.queues[db] = m
	}
	q := &keyQueue{db: db, name: string(name)}
	m[q.name] = q
	return q
}

// waiting counts the waiters of a key (CHARON.INSPECT).
func (ws *waitState) waiting(db int, name []byte) int {
	if q := ws.queue(db, name, false); q != nil {
		return len(q.entries)
	}
	return 0
}

// queued is the request's Queued mask: bit k when an earlier waiter (seq below
// before) is held back by key k, i.e. has less room on it than it needs.
func (ws *waitState) queued(db int, keys hold.Keys, names [][]byte, t int64, before uint64) uint64 {
	if len(ws.order) == 0 || db >= len(ws.queues) || ws.queues[db] == nil {
		return 0
	}
	var mask uint64
	for k, name := range names {
		q := ws.queues[db][string(name)]
		if q == nil {
			continue
		}
		var live int64
		if keys[k] != nil {
			live = keys[k].Live(t)
		}
		for _, e := range q.entries {
			if e.w.seq >= before {
				break
			}
			// A waiter chosen for a grant that the server runs later (Redis 7.2 and
			// later end a wait on keys in their next event-loop turn) has not taken
			// its copies yet: they are its, so it holds back every key it waits on.
			if e.w.state == waitGranting {
				mask |= 1 << uint(k)
				break
			}
			if lim := e.w.req.LimitOf(e.k); lim >= 0 && lim-live < e.w.req.Need() {
				mask |= 1 << uint(k)
				break
			}
		}
	}
	return mask
}

// markWritten schedules the waiters of the written keys (db, names) to be tried.
func (ws *waitState) markWritten(db int, names [][]byte) {
	if len(ws.order) == 0 {
		return
	}
	for _, n := range names {
		if q := ws.queue(db, n, false); q != nil {
			ws.pending = append(ws.pending, q)
		}
	}
}

// block makes the current request (req, its key names in request order) wait.
func (h *holdHandler) block(c rm.Ctx, req *hold.Request, names []rm.String, views [][]byte, t, retryAfter int64) error {
	ws := &h.ws
	slot := len(ws.slots)
	if n := len(ws.free); n > 0 {
		slot, ws.free = ws.free[n-1], ws.free[:n-1]
	} else {
		if slot >= 1<<waiterSlotBits-1 {
			return errors.New("ERR BLOCK: too many clients wait already")
		}
		ws.slots = append(ws.slots, &waiter{})
	}
	w := ws.slots[slot]
	gen := w.id>>waiterSlotBits + 1
	*w = waiter{id: gen<<waiterSlotBits | uint64(slot+1), keys: w.keys[:0], names: w.names[:0], queues: w.queues[:0]}
	w.seq = ws.nextSeq
	ws.nextSeq++
	w.db = c.SelectedDB()
	w.req = *req
	w.req.Queued = 0
	clock := rm.Milliseconds()
	if req.Block > 0 {
		w.deadline = clock + req.Block
	}
	bc, err := c.BlockOnKeys(names, req.Block, w.id)
	if err != nil {
		w.id = gen << waiterSlotBits // invalid until reused
		ws.free = append(ws.free, slot)
		return err
	}
	w.bc = bc
	for i, name := range names {
		w.keys = append(w.keys, rm.Hold(name))
		w.names = append(w.names, append([]byte(nil), views[i]...))
		q := ws.queue(w.db, views[i], true)
		q.entries = append(q.entries, queueEntry{w: w, k: i})
		w.queues = append(w.queues, q)
	}
	ws.order = append(ws.order, w)
	stats[reserveWaits]++
	stats[reserveWaiters] = uint64(len(ws.order))
	h.arm(c, w, t, retryAfter)
	return nil
}

// arm sets w's timer for the moment enough live holds reach their deadlines
// (retryAfter ms after the effective time t), unless w times out first.
func (h *holdHandler) arm(c rm.Ctx, w *waiter, t, retryAfter int64) {
	if w.timer != 0 {
		c.StopTimer(w.timer)
		w.timer = 0
	}
	if retryAfter <= 0 {
		return // never by expiry alone: a release or a timeout ends the wait
	}
	clock := rm.Milliseconds()
	delay := max(t+retryAfter-clock, 1)
	if w.deadline > 0 && clock+delay >= w.deadline {
		return
	}
	w.timer = c.CreateTimer(delay, w.id)
}

// leave takes w out of its queues and the arrival order for good; its keys are tried
// again (whatever it held back may serve others now).
func (h *holdHandler) leave(c rm.Ctx, w *waiter) {
	if w.state == waitDone {
		return
	}
	h.unqueue(c, w)
	w.state = waitDone
}

// unqueue takes w out of its queues and the arrival order, keeping its state.
func (h *holdHandler) unqueue(c rm.Ctx, w *waiter) {
	ws := &h.ws
	if len(w.queues) == 0 || w.queues[0] == nil {
		return // out already
	}
	if w.timer != 0 && c.Valid() {
		c.StopTimer(w.timer)
	}
	w.timer = 0
	for _, q := range w.queues {
		for i, e := range q.entries {
			if e.w == w {
				q.entries = append(q.entries[:i], q.entries[i+1:]...)
				break
			}
		}
		if len(q.entries) == 0 {
			delete(ws.queues[q.db], q.name)
		} else {
			ws.pending = append(ws.pending, q)
		}
	}
	for i, o := range ws.order {
		if o == w {
			ws.order = append(ws.order[:i], ws.order[i+1:]...)
			break
		}
	}
	for i := range w.queues {
		w.queues[i] = nil
	}
	stats[reserveWaiters] = uint64(len(ws.order))
}

// release gives w's slot back (Redis freed the blocked client).
func (h *holdHandler) release(c rm.Ctx, w *waiter) {
	h.leave(c, w)
	for i := range w.keys {
		w.keys[i].Release()
	}
	w.keys, w.names, w.queues = w.keys[:0], w.names[:0], w.queues[:0]
	slot := int(w.id&(1<<waiterSlotBits-1)) - 1
	w.id = w.id >> waiterSlotBits << waiterSlotBits // no id matches it until reused
	h.ws.free = append(h.ws.free, slot)
}

// deferWake tries the pending keys from a timer, outside the callback Redis is in.
func (h *holdHandler) deferWake(c rm.Ctx) {
	if len(h.ws.pending) == 0 || h.ws.wakeTimer || !c.Valid() {
		return
	}
	h.ws.wakeTimer = true
	c.CreateTimer(0, wakeTimerID)
}

// wake tries the waiters of the pending keys in arrival order, until no key is
// pending. onlyDB >= 0 (a command's context, whose database must not change) leaves
// the other databases' keys to a deferred wake.
func (h *holdHandler) wake(c rm.Ctx, onlyDB int) {
	ws := &h.ws
	if ws.waking || len(ws.pending) == 0 {
		return
	}
	ws.waking = true
	defer func() { ws.waking = false }()
	var later []*keyQueue
	for len(ws.pending) > 0 {
		for _, q := range ws.pending {
			if onlyDB >= 0 && q.db != onlyDB {
				later = append(later, q)
				continue
			}
			q.mark = true
		}
		ws.pending = ws.pending[:0]
		ws.cands = ws.cands[:0]
		for _, w := range ws.order {
			for _, q := range w.queues {
				if q.mark {
					ws.cands = append(ws.cands, w)
					break
				}
			}
		}
		for _, w := range ws.cands {
			for _, q := range w.queues {
				q.mark = false
			}
		}
		for _, w := range ws.cands {
			if w.state == waitWaiting {
				h.attempt(c, w)
			}
		}
	}
	if len(later) > 0 {
		ws.pending = append(ws.pending, later...)
		h.deferWake(c)
	}
}

// attempt grants w if it can be granted now (by ending its wait), or re-arms its timer.
func (h *holdHandler) attempt(c rm.Ctx, w *waiter) {
	ws := &h.ws
	if c.SelectedDB() != w.db {
		if err := c.SelectDB(w.db); err != nil {
			return
		}
	}
	if !c.KeysLocal(w.keys) {
		w.state = waitFailing
		w.bc.Unblock() // runs onWaitEnd in w's context, now
		h.unqueue(c, w)
		return
	}
	n := len(w.keys)
	keys := hold.Keys(ws.kv[:n])
	ready := false
	opened := 0
	for i := 0; i < n; i++ {
		rk, val, found, err := c.OpenBlobRead(w.keys[i], h.typ)
		if err != nil {
			ready = true // WRONGTYPE now: the request itself replies it
			break
		}
		ws.rk[i] = rk
		opened++
		keys[i] = nil
		if found {
			keys[i] = hold.View(val)
		}
	}
	var t int64
	if !ready {
		now := rm.Milliseconds()
		if w.req.HasAt {
			now = max(now, w.req.At)
		}
		t = hold.EffectiveTime(keys, now)
		req := &ws.req
		*req = w.req
		req.Queued = ws.queued(w.db, keys, w.names, t, w.seq)
		err := hold.Plan(req, keys, now, 1, &ws.res)
		ready = err != nil || ws.res.Write || ws.res.Replay
	}
	for i := 0; i < opened; i++ {
		ws.rk[i].Close()
	}
	if !ready {
		h.arm(c, w, t, ws.res.RetryAfter)
		return
	}
	w.state = waitGranting
	w.bc.Unblock() // runs onWaitEnd in w's context: now on Redis 7.0 and Valkey
	// Redis 7.2 and later run it in their next event-loop turn: until then w stays in
	// its queues as granting, so that neither the waiters behind it nor a new request
	// take the copies it was chosen for (queued); onWaitEnd takes it out.
}

// onWaitEnd runs in the waiter's context when its wait ends: a grant chosen by
// attempt, a slot moving away, or its timeout / CLIENT UNBLOCK (then the request runs
// a last time: granted if it fits now, else the rejection reply).
func (h *holdHandler) onWaitEnd(c rm.Ctx, args rm.Args, id uint64) {
	w := h.ws.lookup(id)
	if w == nil || w.state == waitDone {
		c.ReplyError("ERR internal error: a wait ended that the module does not know")
		return
	}
	state := w.state
	h.leave(c, w)
	if state == waitFailing {
		c.ReplyErr(errSlotMoving)
		return
	}
	h.cur = w
	h.res = hold.Result{}
	err := h.run(c, args, hold.Reserve)
	h.cur = nil
	if err != nil {
		c.ReplyErr(holdErr(err))
	}
	if err == nil && (h.res.Write || h.res.Replay) {
		stats[reserveWaitGrants]++
	} else if state == waitWaiting {
		stats[reserveWaitTimeouts]++
	}
	if !h.ws.waking {
		// Redis is timing the client out (or serving CLIENT UNBLOCK), or runs a grant
		// it deferred: try the others from a timer, not from inside that. (Inside a
		// wake, the wake itself goes on with the keys this one wrote.)
		h.deferWake(c)
	}
}

// onDisconnect: the client went away while waiting; nothing was granted to it.
func (h *holdHandler) onDisconnect(c rm.Ctx, id uint64) {
	if w := h.ws.lookup(id); w != nil {
		h.leave(c, w)
		h.deferWake(c)
	}
}

// onFree: Redis is done with the blocked client.
func (h *holdHandler) onFree(c rm.Ctx, id uint64) {
	if w := h.ws.lookup(id); w != nil {
		h.release(c, w)
		// A grant the server deferred and then dropped (the client went away in
		// between) leaves its copies to the others.
		h.deferWake(c)
	}
}

// onTimer: a waiter's timer (leases it waited for end now) or the deferred wake.
func (h *holdHandler) onTimer(c rm.Ctx, id uint64) {
	if id == wakeTimerID {
		h.ws.wakeTimer = false
		h.wake(c, -1)
		return
	}
	w := h.ws.lookup(id)
	if w == nil || w.state != waitWaiting || w.timer == 0 {
		return
	}
	w.timer = 0
	h.ws.pending = append(h.ws.pending, w.queues...)
	h.wake(c, -1)
}
