package main

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/charon-redis/charon/module/attime"
	"github.com/charon-redis/charon/module/hold"
	"github.com/charon-redis/charon/rm"
)

// holdTypeName is the data type cshim/type_hold.c creates at load.
const holdTypeName = "charon-hd"

const maxHoldKeys = hold.MaxGroups + 2

// The reply fields of each command, in RESP2 order (RESP3: a map with these names).
// fence is appended last to the replies that grant or seize, so clients that read
// the earlier fields by position keep working.
var (
	reserveFieldNames  = []string{"granted", "hold", "held", "limit", "global_held", "limited_by", "deadline", "retry_after", "fence"}
	releaseFieldNames  = []string{"copies", "remaining", "deadline", "held"}
	seizeFieldNames    = []string{"copies", "remaining", "deadline", "held", "fence"}
	transferFieldNames = []string{"copies", "hold", "deadline", "remaining", "held"}
)

// holdHandler holds the scratch of the five hold commands. Redis runs commands on its
// main thread only, so one set of buffers serves every call and the hot path
// allocates nothing once they have grown.
type holdHandler struct {
	typ                       *rm.Type
	reserveF, releaseF, xferF *rm.Fields
	seizeF                    *rm.Fields
	atS, idS, lagS            rm.String
	rng                       *rand.ChaCha8
	events                    [5]*rm.Event
	loadEv                    *rm.Event
	reported                  [maxHoldKeys]bool
	req                       hold.Request
	res                       hold.Result
	views                     [][]byte
	names                     [maxHoldKeys]rm.String
	wkeys                     [maxHoldKeys]rm.WriteKey
	kv                        [maxHoldKeys]hold.View
	scratch                   []byte
	repl                      []rm.String
	kinds                     [12]byte
	vals                      [12]int64
	strs                      [64]byte
	keyNames                  [maxHoldKeys][]byte // the request's key names, in key order

	// ws holds the waiters of CHARON.RESERVE ... BLOCK (hold_wait.go); cur is the
	// waiter whose request runs again in its own context (nil for a client's request).
	ws  waitState
	cur *waiter
}

// holdCommands declares CHARON.RESERVE, RELEASE, RENEW, TRANSFER, SEIZE, LOADHOLD
// (which aof_rewrite emits) and HOLDSEED (tests and docs).
func holdCommands(c rm.Ctx) ([]rm.Command, error) {
	typ, err := rm.LookupType(holdTypeName)
	if err != nil {
		return nil, err
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seeding hold ids: %w", err)
	}
	h := &holdHandler{
		typ:      typ,
		reserveF: rm.NewFields(reserveFieldNames...),
		releaseF: rm.NewFields(releaseFieldNames...),
		xferF:    rm.NewFields(transferFieldNames...),
		seizeF:   rm.NewFields(seizeFieldNames...),
		atS:      c.NewString([]byte("AT")),
		idS:      c.NewString([]byte("ID")),
		lagS:     c.NewString([]byte("LAG")),
		rng:      rand.NewChaCha8(seed),
	}
	for i, name := range []string{"charon.reserve", "charon.release", "charon.renew", "charon.transfer", "charon.seize"} {
		h.events[i] = rm.NewEvent(name)
	}
	h.loadEv = rm.NewEvent("charon.loadhold")
	holdInspect = h.inspect
	rm.SetBlockHandlers(rm.BlockHandlers{Timeout: h.onWaitEnd, Disconnect: h.onDisconnect, Free: h.onFree, Timer: h.onTimer})
	// The domain key by index; GLOBAL's key by keyword; the group keys run from the
	// GROUP keyword to the end (every other argument for RESERVE, whose keys carry
	// limits), so cluster slot checks, ACLs and COMMAND GETKEYS see every key.
	specs := func(first int, groupStep int) []rm.KeySpec {
		return []rm.KeySpec{
			{Flags: keyRW, Index: 1, LastKey: 0, KeyStep: 1},
			{Flags: keyRW, Keyword: "GLOBAL", StartFrom: first, LastKey: 0, KeyStep: 1},
			{Flags: keyRW, Keyword: "GROUP", StartFrom: first, LastKey: -1, KeyStep: groupStep},
		}
	}
	cmd := func(name string, arity int, summary string, first, step int, k hold.Cmd) rm.Command {
		return rm.Command{
			Name: name, Flags: "write deny-oom", Arity: arity,
			FirstKey: 1, LastKey: 1, Step: 1,
			Summary:    summary,
			Complexity: "O(K) amortized for K keys named (O(1) per key when leases are uniform); O(H) to compute retry_after on a rejection.",
			Since:      version,
			KeySpecs:   specs(first, step),
			Handler: func(c rm.Ctx, args rm.Args) error {
				err := h.run(c, args, k)
				if len(h.ws.pending) > 0 {
					// Copies this request freed go to the waiters first.
					h.wake(c, c.SelectedDB())
				}
				return err
			},
		}
	}
	return []rm.Command{
		cmd("charon.reserve", -2, "Reserves between MIN and MAX copies of a copy-limited resource under the domain, GLOBAL and GROUP limits, as a hold with a lease.", 2, 2, hold.Reserve),
		cmd("charon.release", -3, "Releases copies of a hold in every key named; an unknown or expired hold releases nothing.", 3, 1, hold.Release),
		cmd("charon.renew", -3, "Moves a live hold's deadline to now + LEASE in every key named.", 3, 1, hold.Renew),
		cmd("charon.transfer", -3, "Splits copies off a live hold into a new hold that lives TTL ms, for another process to SEIZE.", 3, 1, hold.Transfer),
		cmd("charon.seize", -3, "Takes over a transferred hold: renews it with its own LEASE and reports its copies.", 3, 1, hold.Seize),
		{
			Name: "charon.loadhold", Flags: "write deny-oom", Arity: 3,
			FirstKey: 1, LastKey: 1, Step: 1,
			Summary:    "Stores a serialized charon-hd value (emitted by AOF rewrite); the payload is validated first.",
			Complexity: "O(N) where N is the number of holds.",
			Since:      version,
			KeySpecs:   []rm.KeySpec{{Flags: rm.KeyOW | rm.KeyUpdate, Index: 1, LastKey: 0, KeyStep: 1}},
			Handler:    h.loadHold,
		},
		{
			Name: "charon.holdseed", Flags: "admin", Arity: 2,
			Summary:    "Reseeds this server's hold id generator with a fixed seed, making the next ids predictable: for tests and documentation only.",
			Complexity: "O(1)",
			Since:      version,
			Handler:    h.holdSeed,
		},
	}, nil
}

// holdErr turns the pure package's errors into reply texts.
func holdErr(err error) error {
	if r, ok := argReply(err); ok {
		return r
	}
	switch {
	case errors.Is(err, hold.ErrLost):
		return errors.New("LOST " + err.Error())
	}
	return err
}

var (
	errHoldID       = &argError{arg: "ID", reason: "set only by the primary (replication stream, AOF)"}
	errHoldIDTaken  = &argError{arg: "ID", reason: "a hold with this id exists already"}
	errTooManyHolds = errors.New("ERR a key may store at most 1048576 holds")
	errTooManyOnce  = &argError{arg: "ONCE", reason: "the key remembers 65536 tokens of the last 10000 ms already, " +
		"the most it keeps; nothing was written, retry within a few seconds"}
)

// run serves one of the five hold commands.
func (h *holdHandler) run(c rm.Ctx, args rm.Args, cmd hold.Cmd) error {
	h.views = args.Views(h.views)
	req := &h.req
	rest := h.views[2:]
	if err := hold.Parse(cmd, rest, req); err != nil {
		return holdErr(err)
	}
	if err := req.CheckKeys(h.views[1], rest); err != nil {
		return holdErr(err)
	}
	clock, fromPrimary := c.ClientClock()
	if !fromPrimary {
		if req.HasID {
			return errHoldID
		}
		// A waiter's AT was checked when it came; time has moved on since.
		if err := checkAt(req.HasAt && h.cur == nil, req.At, clock); err != nil {
			return holdErr(err)
		}
	}
	n := req.NKeys()
	h.names[0], h.keyNames[0] = args.At(1), h.views[1]
	k := 1
	if req.HasGlobal {
		h.names[k], h.keyNames[k] = args.At(req.GlobalIdx+2), h.views[req.GlobalIdx+2]
		k++
	}
	for g := 0; g < req.NGroups; g++ {
		h.names[k], h.keyNames[k] = args.At(req.GroupIdx[g]+2), h.views[req.GroupIdx[g]+2]
		k++
	}

	// The module signals nothing implicitly (NO_IMPLICIT_SIGNAL_MODIFIED), so keys
	// opened for writing stay untouched, unsignalled and unreplicated unless commit
	// writes them: a request that changes nothing leaves every WATCH intact.
	keys := hold.Keys(h.kv[:n])
	opened := 0
	defer func() {
		for i := 0; i < opened; i++ {
			h.wkeys[i].Close()
		}
	}()
	for i := 0; i < n; i++ {
		key, val, found, err := c.OpenBlobWrite(h.names[i], h.typ)
		if err != nil {
			return wrongEngineKey(c, h.names[i], err)
		}
		h.wkeys[i] = key
		opened++
		keys[i] = nil
		if found {
			keys[i] = hold.View(val)
		}
	}
	now := req.At
	switch {
	case !req.HasAt:
		now = clock
	case h.cur != nil:
		now = max(req.At, clock) // a waiter's time moves on with the clock
	}
	if cmd == hold.Reserve && !fromPrimary && len(h.ws.order) > 0 {
		// First come, first served: nothing from a key an earlier waiter waits on.
		before := ^uint64(0)
		if h.cur != nil {
			before = h.cur.seq
		}
		req.Queued = h.ws.queued(c.SelectedDB(), keys, h.keyNames[:n], hold.EffectiveTime(keys, now), before)
	}
	var id uint64
	if cmd == hold.Reserve || cmd == hold.Transfer {
		if req.HasID {
			if id = req.ID; !hold.IDFree(keys, id) {
				return errHoldIDTaken
			}
		} else {
			for id = h.rng.Uint64(); !hold.IDFree(keys, id); id = h.rng.Uint64() {
			}
		}
	}
	res := &h.res
	if err := hold.Plan(req, keys, now, id, res); err != nil {
		return holdErr(err)
	}
	if res.Replay {
		// A retry of a request the key remembers: the same reply, nothing written.
		h.reply(c, cmd)
		return nil
	}
	if res.Write {
		for i := 0; i < n; i++ {
			if keys[i] != nil && hold.NeedsRoom(req, res, keys[i]) && keys[i].Len() >= hold.MaxHolds {
				return errTooManyHolds
			}
		}
		if req.Once && !hold.TokenRoomAfterPrune(keys[0], res.T) {
			return errTooManyOnce
		}
		if err := h.commit(c, args, keys, clock, fromPrimary); err != nil {
			return err
		}
		if len(h.ws.order) > 0 {
			h.ws.markWritten(c.SelectedDB(), h.keyNames[:n])
		}
	} else if cmd == hold.Reserve && req.HasBlock && h.cur == nil && !fromPrimary && res.RetryAfter != -1 && c.CanBlock() {
		// Not now, maybe later: wait (the reply comes when the wait ends).
		return h.block(c, req, h.names[:n], h.keyNames[:n], res.T, res.RetryAfter)
	}
	h.reply(c, cmd)
	return nil
}

// commit grows or creates the values that need room, applies the planned request, sets each key's
// expiry (or deletes an empty key), signals the keys and replicates the request with
// its effective time and new id made explicit.
func (h *holdHandler) commit(c rm.Ctx, args rm.Args, keys hold.Keys, clock int64, fromPrimary bool) error {
	req, res := &h.req, &h.res
	n := len(keys)
	ev := h.events[req.Cmd]
	for i := 0; i < n; i++ {
		key := h.wkeys[i]
		v := keys[i]
		h.reported[i] = false
		moreHolds := hold.NeedsRoom(req, res, v)
		moreTokens := i == 0 && hold.NeedsTokenRoom(req, res, v)
		if v == nil || moreHolds || moreTokens {
			newCap, newTok := hold.MinCap, 0
			if v != nil {
				newCap, newTok = v.Cap(), v.TokCap()
				if moreHolds {
					newCap *= 2
				}
			}
			if moreTokens {
				// Double, but never past MaxTokens: a full ring has expired tokens
				// that Commit forgets first (TokenRoomAfterPrune said so).
				newTok = min(max(hold.MinTokCap, 2*newTok), hold.MaxTokens)
			}
			size := hold.SizeWith(newCap, newTok)
			if cap(h.scratch) < size {
				h.scratch = make([]byte, size)
			}
			buf := h.scratch[:size]
			var nv hold.View
			if v == nil {
				nv = hold.InitWith(buf, newCap, newTok)
			} else {
				nv = v.RebuildWith(buf, newCap, newTok)
			}
			if err := key.SetBlob(h.typ, nv, ev); err != nil {
				return err
			}
			h.reported[i] = true // SetBlob reported the write
			val, _, _ := key.Blob(h.typ)
			v = hold.View(val)
		}
		keys[i] = v
	}
	hold.Commit(req, keys, res)

	lag := req.Lag
	if !fromPrimary && req.Lag == 0 {
		// Deadlines are on the request's clock; a request from the past must not
		// store a key that the server's clock has already expired.
		lag = max(clock-res.T, 0)
	}
	for i := 0; i < n; i++ {
		if exp := hold.ExpireAt(keys[i], res.T, lag); exp == 0 {
			if err := h.wkeys[i].Delete(); err != nil {
				return err
			}
		} else if err := h.wkeys[i].SetAbsExpire(exp); err != nil {
			return err
		}
		if !h.reported[i] {
			h.wkeys[i].Written(ev)
		}
	}
	return h.replicate(c, args, lag)
}

// replicate sends the command with AT (the effective time), ID (a new hold's id) and
// LAG made explicit, ahead of the GROUP clause that runs to the end.
func (h *holdHandler) replicate(c rm.Ctx, args rm.Args, lag int64) error {
	req, res := &h.req, &h.res
	end := args.Len()
	if req.GroupsIdx >= 0 {
		end = req.GroupsIdx + 2
	}
	h.repl = h.repl[:0]
	for i := 1; i < end; i++ {
		skip := false
		for s := 0; s < req.NSkip; s++ {
			if i == req.Skip[s]+2 || i == req.Skip[s]+3 {
				skip = true
			}
		}
		if !skip {
			h.repl = append(h.repl, args.At(i))
		}
	}
	at := c.NewStringInt64(res.T)
	defer c.FreeString(at)
	h.repl = append(h.repl, h.atS, at)
	if res.ID != 0 {
		var hex [16]byte
		hold.FormatID(&hex, res.ID)
		ids := c.NewString(hex[:])
		defer c.FreeString(ids)
		h.repl = append(h.repl, h.idS, ids)
	}
	if lag > 0 {
		ls := c.NewStringInt64(lag)
		defer c.FreeString(ls)
		h.repl = append(h.repl, h.lagS, ls)
	}
	for i := end; i < args.Len(); i++ {
		h.repl = append(h.repl, args.At(i))
	}
	return c.Replicate(req.Cmd.Name(), h.repl)
}

// reply sends the command's named fields in one crossing.
func (h *holdHandler) reply(c rm.Ctx, cmd hold.Cmd) {
	res := &h.res
	kinds, vals := h.kinds[:0], h.vals[:0]
	strs := h.strs[:0]
	intF := func(v int64) {
		kinds = append(kinds, rm.FieldInt)
		vals = append(vals, v)
	}
	idF := func(id uint64) {
		if id == 0 {
			kinds = append(kinds, rm.FieldNull)
			vals = append(vals, 0)
			return
		}
		var hex [16]byte
		hold.FormatID(&hex, id)
		kinds = append(kinds, rm.FieldBulk)
		vals = append(vals, rm.BulkRef(len(strs), 16))
		strs = append(strs, hex[:]...)
	}
	switch cmd {
	case hold.Reserve:
		intF(res.Granted)
		idF(res.ID)
		intF(res.Held)
		intF(res.Limit)
		intF(res.GlobalHeld)
		off := len(strs)
		strs = appendLimitedBy(strs, res.LimitedBy)
		kinds = append(kinds, rm.FieldBulk)
		vals = append(vals, rm.BulkRef(off, len(strs)-off))
		intF(res.Deadline)
		intF(res.RetryAfter)
		intF(res.Fence)
		c.ReplyMixedFields(h.reserveF, kinds, vals, strs)
	case hold.Transfer:
		intF(res.Copies)
		idF(res.ID)
		intF(res.Deadline)
		intF(res.Remaining)
		intF(res.Held)
		c.ReplyMixedFields(h.xferF, kinds, vals, strs)
	default:
		intF(res.Copies)
		intF(res.Remaining)
		intF(res.Deadline)
		intF(res.Held)
		if cmd == hold.Seize {
			intF(res.Fence)
			c.ReplyMixedFields(h.seizeF, kinds, vals, strs)
			return
		}
		c.ReplyMixedFields(h.releaseF, kinds, vals, strs)
	}
}

func appendLimitedBy(dst []byte, code int) []byte {
	switch code {
	case hold.LimitedNone:
		return append(dst, "none"...)
	case hold.LimitedDomain:
		return append(dst, "domain"...)
	case hold.LimitedGlobal:
		return append(dst, "global"...)
	}
	dst = append(dst, "group:"...)
	return strconv.AppendInt(dst, int64(code-hold.LimitedGroup+1), 10)
}

// CHARON.LOADHOLD key payload: what aof_rewrite emits. The payload is checked (as
// rdb_load does) and laid out before anything is stored.
func (h *holdHandler) loadHold(c rm.Ctx, args rm.Args) error {
	payload := args.Bytes(2)
	shape, err := hold.Inspect(payload)
	if err != nil {
		return &argError{arg: "payload", reason: "not a valid " + holdTypeName + " value"}
	}
	buf := make([]byte, shape.Size())
	v, err := hold.Build(payload, buf)
	if err != nil {
		return &argError{arg: "payload", reason: "not a valid " + holdTypeName + " value"}
	}
	k := c.OpenWrite(args.At(1))
	defer k.Close()
	if t := k.Type(); t != rm.KeyEmpty && t != rm.KeyModule {
		return rm.ErrWrongType
	}
	if err := k.SetBlob(h.typ, v, h.loadEv); err != nil {
		return err
	}
	c.ReplicateVerbatim()
	c.ReplySimple("OK")
	return nil
}

// CHARON.HOLDSEED seed: makes the next hold ids of this server predictable.
func (h *holdHandler) holdSeed(c rm.Ctx, args rm.Args) error {
	s, err := strconv.ParseUint(string(args.Bytes(1)), 10, 64)
	if err != nil {
		return &argError{arg: "seed", reason: "must be an unsigned 64-bit integer"}
	}
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], s)
	h.rng = rand.NewChaCha8(seed)
	c.ReplySimple("OK")
	return nil
}

// holdInspect is set when the hold commands are registered; CHARON.INSPECT calls it
// for a key that holds a charon-hd value.
var holdInspect func(c rm.Ctx, args rm.Args) (handled bool, err error)

// inspect explains a hold key: its totals and every stored hold.
func (h *holdHandler) inspect(c rm.Ctx, args rm.Args) (bool, error) {
	key, val, found, err := c.OpenBlobRead(args.At(1), h.typ)
	if err != nil || !found {
		if err == nil {
			key.Close()
		}
		return false, nil
	}
	defer key.Close()
	h.views = args.Views(h.views)
	at := rm.Milliseconds()
	switch {
	case len(h.views) == 2:
	case len(h.views) == 4 && strings.EqualFold(string(h.views[2]), "AT"):
		v, err := strconv.ParseInt(string(h.views[3]), 10, 64)
		if err != nil || v < 0 || v > hold.MaxAt {
			return true, holdErr(attime.Refine(h.views[3], &argError{arg: "AT", reason: "must be an integer in 0..9007199254740992"}))
		}
		// The unit rules apply; the bound ahead does not (INSPECT writes nothing, so it
		// cannot hold a key's clock ahead).
		if err := attime.Check(v, rm.Milliseconds(), 0); err != nil {
			return true, holdErr(err)
		}
		at = v
	default:
		return true, &argError{arg: "syntax", reason: "CHARON.INSPECT key [AT unix-ms]"}
	}
	v := hold.View(val)
	t := max(at, v.Newest())
	live := v.Live(t)
	expHolds, _ := v.Expired(t)
	var latest int64
	for s := v.Head(); s >= 0; s = v.Next(s) {
		_, _, d := v.Hold(s)
		latest = d
	}
	summary := fmt.Sprintf("%d copies held by %d live holds", live, v.Len()-expHolds)
	if v.Limit() >= 0 {
		summary += fmt.Sprintf(" (limit %d, named by the last write)", v.Limit())
	}
	if expHolds > 0 {
		summary += fmt.Sprintf("; %d expired holds not pruned yet", expHolds)
	}
	// Tokens still recognised at t (a replay at t0 + OnceWindow is).
	liveTokens := 0
	var tk hold.Token
	for i := 0; i < v.TokLen(); i++ {
		v.TokenAt(v.OldestToken(i), &tk)
		if t-tk.T0 <= hold.OnceWindow {
			liveTokens++
		}
	}
	if liveTokens > 0 {
		summary += fmt.Sprintf("; remembers %d ONCE tokens", liveTokens)
	}
	waiters := h.ws.waiting(c.SelectedDB(), h.views[1])
	if waiters > 0 {
		summary += fmt.Sprintf("; %d clients wait (BLOCK)", waiters)
	}
	c.ReplyMap(14)
	bulkPair(c, "kind", "holds")
	bulkPair(c, "summary", summary)
	intPair(c, "time", t)
	intPair(c, "newest", v.Newest())
	intPair(c, "limit", v.Limit())
	intPair(c, "held", live)
	intPair(c, "live_holds", int64(v.Len()-expHolds))
	intPair(c, "expired_holds", int64(expHolds))
	intPair(c, "latest_deadline", latest)
	intPair(c, "key_expire_at", key.AbsExpire())
	intPair(c, "fence", v.Fence())
	intPair(c, "waiters", int64(waiters))
	c.ReplyBulkString("holds")
	c.ReplyArray(v.Len() - expHolds)
	for s := v.Head(); s >= 0; s = v.Next(s) {
		id, copies, d := v.Hold(s)
		if d <= t {
			continue
		}
		var hex [16]byte
		hold.FormatID(&hex, id)
		c.ReplyMap(4)
		bulkPair(c, "hold", string(hex[:]))
		intPair(c, "copies", copies)
		intPair(c, "deadline", d)
		intPair(c, "expires_in", d-t)
	}
	// The ONCE tokens by their hash (the key never stores a token itself), the
	// command they answered, when, and the hold that answer named.
	c.ReplyBulkString("once")
	c.ReplyArray(liveTokens)
	for i := 0; i < v.TokLen(); i++ {
		v.TokenAt(v.OldestToken(i), &tk)
		if t-tk.T0 > hold.OnceWindow {
			continue
		}
		var hh, hex [16]byte
		hold.FormatID(&hh, tk.Hash)
		hold.FormatID(&hex, uint64(tk.Reply[1]))
		c.ReplyMap(5)
		bulkPair(c, "token_hash", string(hh[:]))
		bulkPair(c, "command", tk.Kind.Name())
		intPair(c, "at", tk.T0)
		bulkPair(c, "hold", string(hex[:]))
		intPair(c, "forgotten_in", tk.T0+hold.OnceWindow+1-t)
	}
	return true, nil
}
