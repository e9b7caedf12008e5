package hold

import "errors"

// ErrLost is the answer to RENEW, SEIZE or TRANSFER of a hold that the domain key does
// not hold at the effective time: unknown, released or expired. The client lost it.
var ErrLost = errors.New("the hold is not held (unknown, released or expired)")

// Limited-by codes of a Reserve reply: LimitedNone, LimitedDomain, LimitedGlobal, or
// LimitedGroup+g for group g (0-based).
const (
	LimitedNone   = 0
	LimitedDomain = 1
	LimitedGlobal = 2
	LimitedGroup  = 3
)

// Result is what a request decided. Plan fills it without changing anything; Commit
// then applies it when Write is set.
type Result struct {
	// T is the effective time: max(request time, newest time stored in any key).
	T int64
	// Write reports that the keys change (and the request is replicated).
	Write bool

	// Reserve.
	Granted    int64
	ID         uint64 // the new hold's id (Reserve, Transfer); 0: none
	Held       int64  // the domain's live copies after the request
	Limit      int64  // the domain limit, -1: none
	GlobalHeld int64  // the global key's live copies after, -1 without GLOBAL
	LimitedBy  int
	Deadline   int64 // the (new) hold's deadline; 0 when none
	RetryAfter int64

	// Release, Renew, Seize, Transfer.
	Copies    int64 // copies released, renewed, seized or transferred
	Remaining int64 // copies the original hold keeps (0: gone)
	// OrigDeadline is the original hold's deadline after the request (Transfer).
	OrigDeadline int64

	// Fence is the fencing token of a grant (Reserve) or a seize; 0 otherwise.
	Fence int64
	// Replay: the request's ONCE token is remembered; every reply field is the
	// remembered reply's, and nothing changes (Write is false).
	Replay bool
}

// onceReply packs a grant's reply into a token's reply words: Reserve: granted, id,
// held, limit, global_held, limited_by, deadline, fence; Transfer: copies, id,
// deadline, remaining, held.
func (res *Result) onceReply(cmd Cmd, r *[TokReplyWords]int64) {
	*r = [TokReplyWords]int64{}
	if cmd == Reserve {
		*r = [TokReplyWords]int64{res.Granted, int64(res.ID), res.Held, res.Limit, res.GlobalHeld, int64(res.LimitedBy), res.Deadline, res.Fence}
		return
	}
	r[0], r[1], r[2], r[3], r[4] = res.Copies, int64(res.ID), res.Deadline, res.Remaining, res.Held
}

// fromToken fills res with a remembered reply.
func (res *Result) fromToken(tk *Token) {
	r := &tk.Reply
	res.Replay = true
	res.ID = uint64(r[1])
	if tk.Kind == Reserve {
		res.Granted, res.Held, res.Limit, res.GlobalHeld = r[0], r[2], r[3], r[4]
		res.LimitedBy, res.Deadline, res.Fence = int(r[5]), r[6], r[7]
		return
	}
	res.Copies, res.Deadline, res.Remaining, res.Held = r[0], r[2], r[3], r[4]
}

// NextFence is the fence a grant or seize at effective time t gets:
// max(1 + the largest fence stored in any key, t << FenceShift), saturating at
// MaxFence (and t at MaxFenceTime).
func NextFence(keys Keys, t int64) int64 {
	var top int64
	for _, v := range keys {
		if v != nil && v.Fence() > top {
			top = v.Fence()
		}
	}
	f := int64(MaxFence)
	if top < MaxFence {
		f = top + 1
	}
	return max(f, min(max(t, 0), MaxFenceTime)<<FenceShift)
}

// remembered returns the token of req's ONCE in the domain key if it is still
// recognised at t (t - t0 <= OnceWindow).
func remembered(req *Request, keys Keys, t int64, tk *Token) bool {
	if !req.Once || keys[0] == nil {
		return false
	}
	pos := keys[0].FindToken(req.OnceHash)
	if pos < 0 {
		return false
	}
	keys[0].TokenAt(pos, tk)
	return t-tk.T0 <= OnceWindow
}

// Keys are the views of a request's keys in order: the domain key, the global key (if
// any), then the group keys. A nil view is an absent key.
type Keys []View

// limitOf is the limit the request names for key k.
func (req *Request) limitOf(k int) int64 {
	if k == 0 {
		if req.HasLimit {
			return req.Limit
		}
		return -1
	}
	if req.HasGlobal {
		if k == 1 {
			return req.GlobalLimit
		}
		return req.GroupLimit[k-2]
	}
	return req.GroupLimit[k-1]
}

// EffectiveTime is max(now, the newest time stored in any key).
func EffectiveTime(keys Keys, now int64) int64 {
	t := now
	for _, v := range keys {
		if v != nil && v.Newest() > t {
			t = v.Newest()
		}
	}
	return t
}

// IDFree reports whether no key stores a hold with this id.
func IDFree(keys Keys, id uint64) bool {
	if id == 0 {
		return false
	}
	for _, v := range keys {
		if v != nil && v.Find(id) >= 0 {
			return false
		}
	}
	return true
}

func live(v View, t int64) int64 {
	if v == nil {
		return 0
	}
	return v.Live(t)
}

// liveHold returns the slot of the hold id in v if it counts at t, else -1.
func liveHold(v View, id uint64, t int64) int {
	if v == nil {
		return -1
	}
	s := v.Find(id)
	if s < 0 || int64(v.rec(s, fDeadline)) <= t {
		return -1
	}
	return s
}

// Plan decides the request at time now with the new hold's id (Reserve, Transfer;
// the caller checks it with IDFree). It changes nothing.
func Plan(req *Request, keys Keys, now int64, id uint64, res *Result) error {
	*res = Result{Limit: -1, GlobalHeld: -1}
	t := EffectiveTime(keys, now)
	res.T = t
	var tk Token
	if remembered(req, keys, t, &tk) {
		if tk.Kind != req.Cmd {
			return argErr("ONCE", "this token already answered a "+tk.Kind.Name()+" on this key")
		}
		res.fromToken(&tk)
		return nil
	}
	if req.Cmd == Reserve {
		planReserve(req, keys, t, id, res)
		if res.Write {
			res.Fence = NextFence(keys, t)
		}
		return nil
	}
	dom := keys[0]
	s := liveHold(dom, req.Hold, t)
	switch req.Cmd {
	case Release:
		// Release in every key; reply with the domain key's hold.
		for k, v := range keys {
			ks := liveHold(v, req.Hold, t)
			if ks < 0 {
				continue
			}
			res.Write = true
			c := int64(v.rec(ks, fCopies))
			n := c
			if req.HasCopies && req.Copies < c {
				n = req.Copies
			}
			if k == 0 || res.Copies == 0 {
				res.Copies = n
			}
			if k == 0 {
				res.Remaining = c - n
				if res.Remaining > 0 {
					res.Deadline = int64(v.rec(ks, fDeadline))
				}
			}
		}
		res.Held = live(dom, t)
		if s >= 0 {
			res.Held -= res.Copies
		}
		return nil
	case Renew, Seize:
		if s < 0 {
			return ErrLost
		}
		res.Write = true
		res.Copies = int64(dom.rec(s, fCopies))
		res.Remaining = res.Copies
		res.Deadline = t + req.Lease
		res.Held = live(dom, t)
		if req.Cmd == Seize {
			res.Fence = NextFence(keys, t)
		}
		return nil
	case Transfer:
		if s < 0 {
			return ErrLost
		}
		c := int64(dom.rec(s, fCopies))
		n := c
		if req.HasCopies {
			if req.Copies > c {
				return argErr("COPIES", "the hold has only "+itoa(c)+" copies")
			}
			n = req.Copies
		}
		res.Write = true
		res.ID = id
		res.Copies = n
		res.Remaining = c - n
		res.Deadline = t + req.TTL
		if res.Remaining > 0 {
			res.OrigDeadline = int64(dom.rec(s, fDeadline))
		}
		res.Held = live(dom, t)
		return nil
	}
	return nil
}

func itoa(v int64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return string(b[i:])
}

func planReserve(req *Request, keys Keys, t int64, id uint64, res *Result) {
	granted := req.Max
	res.LimitedBy = LimitedNone
	minRoom := req.Max
	need := max(req.Min, 1)
	var domLive int64
	for k, v := range keys {
		lim := req.limitOf(k)
		l := live(v, t)
		if k == 0 {
			domLive = l
			res.Limit = lim
		}
		if req.HasGlobal && k == 1 {
			res.GlobalHeld = l
		}
		queued := req.Queued&(1<<uint(k)) != 0
		if lim < 0 && !queued {
			continue
		}
		room := max(lim-l, 0)
		if queued {
			// An earlier waiter is held back by this key: it gets the next copies.
			room = 0
		}
		if room < minRoom {
			minRoom = room
			res.LimitedBy = limitedCode(req, k)
		}
		granted = min(granted, room)
		if room < need && res.RetryAfter >= 0 {
			if lim >= 0 && lim < need {
				res.RetryAfter = -1
			} else if ra := retryAfter(v, t, need-room); ra >= 0 {
				res.RetryAfter = max(res.RetryAfter, ra)
			}
		}
	}
	res.Held = domLive
	if granted < req.Min || granted == 0 {
		if res.RetryAfter == 0 {
			// Only waiters ahead keep it out (their leases tell nothing of when they
			// are served): try again soon. Otherwise unreachable: a rejection always
			// has a short limit.
			res.RetryAfter = -1
			if req.Queued != 0 {
				res.RetryAfter = 1
			}
		}
		return
	}
	res.RetryAfter = 0
	res.Granted = granted
	res.Held += granted
	if res.GlobalHeld >= 0 {
		res.GlobalHeld += granted
	}
	res.Deadline = t + req.Lease
	if !req.DryRun {
		res.Write = true
		res.ID = id
	}
}

func limitedCode(req *Request, k int) int {
	switch {
	case k == 0:
		return LimitedDomain
	case req.HasGlobal && k == 1:
		return LimitedGlobal
	case req.HasGlobal:
		return LimitedGroup + k - 2
	default:
		return LimitedGroup + k - 1
	}
}

// retryAfter is the time from t until holds with `free` copies reach their
// deadlines, walking live holds in deadline order.
func retryAfter(v View, t int64, free int64) int64 {
	if v == nil {
		return -1
	}
	var sum int64
	for s := v.Head(); s >= 0; s = v.Next(s) {
		d := int64(v.rec(s, fDeadline))
		if d <= t {
			continue
		}
		sum += int64(v.rec(s, fCopies))
		if sum >= free {
			return d - t
		}
	}
	return -1 // unreachable when the limit fits need
}

// NeedsRoom reports whether key k needs room for one more hold before Commit. It is
// conservative: expired holds that Commit prunes first are not counted as room.
func NeedsRoom(req *Request, res *Result, v View) bool {
	if !res.Write || (req.Cmd != Reserve && req.Cmd != Transfer) {
		return false
	}
	if v == nil {
		return true
	}
	return v.Full()
}

// NeedsTokenRoom reports whether the domain key needs room for one more token before
// Commit (a granted Reserve or a Transfer with ONCE); conservative as NeedsRoom.
func NeedsTokenRoom(req *Request, res *Result, dom View) bool {
	if !res.Write || !req.Once {
		return false
	}
	return dom == nil || dom.TokFull()
}

// TokenRoomAfterPrune reports whether the domain key could remember one more token at
// t once the tokens older than the window are forgotten: false when MaxTokens grants
// of the last OnceWindow ms are remembered already.
func TokenRoomAfterPrune(dom View, t int64) bool {
	if dom == nil || dom.TokLen() < MaxTokens {
		return true
	}
	return int64(dom.tok(dom.tokPos(0), tT0)) < t-OnceWindow
}

// Commit applies a planned request to every key. Views must be present (the glue
// creates absent keys with Init) and have room when NeedsRoom said so.
func Commit(req *Request, keys Keys, res *Result) {
	t := res.T
	for k, v := range keys {
		v.Prune(t)
		v.PruneTokens(t)
		if res.Fence > 0 {
			v.SetFence(res.Fence)
		}
		if k == 0 && req.Once {
			var tk Token
			tk.Hash, tk.T0, tk.Kind = req.OnceHash, t, req.Cmd
			res.onceReply(req.Cmd, &tk.Reply)
			v.InsertToken(&tk)
		}
		switch req.Cmd {
		case Reserve:
			v.Touch(t, req.limitOf(k))
			v.Insert(res.ID, res.Granted, res.Deadline)
			continue
		case Release:
			if s := v.Find(req.Hold); s >= 0 {
				c := int64(v.rec(s, fCopies))
				if req.HasCopies && req.Copies < c {
					v.SetCopies(s, c-req.Copies)
				} else {
					v.Remove(s)
				}
			}
		case Renew, Seize:
			if s := v.Find(req.Hold); s >= 0 {
				v.Move(s, res.Deadline)
			}
		case Transfer:
			if s := v.Find(req.Hold); s >= 0 {
				c := int64(v.rec(s, fCopies))
				n := min(res.Copies, c)
				if n >= c {
					v.Remove(s)
				} else {
					v.SetCopies(s, c-n)
				}
				v.Insert(res.ID, n, res.Deadline)
			}
		}
		v.Touch(t, v.Limit())
	}
}

// ExpireAt is when a key should expire after Commit at effective time t, moved lag
// ms later: the latest of its latest deadline + 1 ms, its newest token's t0 +
// OnceWindow + 1 ms (a replay must find it), and the millisecond after its fence's
// time part (a grant in that same millisecond must see the fence, so fences never
// repeat). 0 when none of these lies after t: the key holds nothing that matters
// (delete it).
func ExpireAt(v View, t, lag int64) int64 {
	if v == nil {
		return 0
	}
	var x int64
	if v.Len() > 0 {
		x = v.Latest() + 1
	}
	if lt := v.LatestToken(); lt >= 0 {
		x = max(x, lt+OnceWindow+1)
	}
	if f := v.Fence(); f > 0 {
		x = max(x, min(f>>FenceShift, MaxFenceTime)+1)
	}
	if x <= t {
		return 0
	}
	return x + lag
}
