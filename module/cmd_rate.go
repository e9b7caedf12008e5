package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/rm"
)

// rateTypeName is the data type cshim/type_rate.c creates at load.
const rateTypeName = "charon-rl"

// keyRW is how CHARON.RATE uses both of its keys: it reads the log, answers from it
// and updates it.
const keyRW = rm.KeyRW | rm.KeyAccess | rm.KeyUpdate

// rateCommands declares CHARON.RATE, CHARON.INSPECT and CHARON.LOADVALUE (which
// aof_rewrite emits to recreate a value).
func rateCommands(c rm.Ctx) ([]rm.Command, error) {
	typ, err := rm.LookupType(rateTypeName)
	if err != nil {
		return nil, err
	}
	h := &rateHandler{typ: typ, fields: rm.NewFields(rate.FieldNames[:]...),
		at: c.NewString([]byte("AT")), clock: c.NewString([]byte("CLOCK"))}
	return []rm.Command{
		{
			Name:  "charon.rate",
			Flags: "write deny-oom",
			Arity: -2,
			// The legacy range covers the key; the GLOBAL key is found by its keyword
			// spec, so cluster slot checks, ACLs and COMMAND GETKEYS see both.
			FirstKey: 1, LastKey: 1, Step: 1,
			Summary:    "Asks Charon's tiered rate limiter for between MIN and MAX hits on a (resource, domain) key.",
			Complexity: "O(T) amortized, where T is the number of tiers, whatever the number of hits in a window or on the GLOBAL key.",
			Since:      version,
			KeySpecs: []rm.KeySpec{
				{Flags: keyRW, Index: 1, LastKey: 0, KeyStep: 1},
				{Flags: keyRW, Keyword: "GLOBAL", StartFrom: 2, LastKey: 0, KeyStep: 1},
			},
			Handler: h.rate,
			// C opens both keys and does the writes, the replication and the reply
			// around the one crossing into Go.
			Frame: &rm.FrameSpec{Type: typ, Event: evRate, Fields: h.fields},
		},
		{
			Name:     "charon.inspect",
			Flags:    "readonly",
			Arity:    -2,
			FirstKey: 1, LastKey: 1, Step: 1,
			Summary:    "Explains a CHARON.RATE key: per tier its state, entry, hits and next change; the second log; the expiry.",
			Complexity: "O(T + E)",
			Since:      version,
			KeySpecs:   []rm.KeySpec{{Flags: rm.KeyRO | rm.KeyAccess, Index: 1, LastKey: 0, KeyStep: 1}},
			Handler:    h.inspect,
		},
		{
			Name:     "charon.loadvalue",
			Flags:    "write deny-oom",
			Arity:    3,
			FirstKey: 1, LastKey: 1, Step: 1,
			Summary:    "Stores a serialized charon-rl value (emitted by AOF rewrite); the payload is validated first.",
			Complexity: "O(N) where N is the payload size.",
			Since:      version,
			KeySpecs:   []rm.KeySpec{{Flags: rm.KeyOW | rm.KeyUpdate, Index: 1, LastKey: 0, KeyStep: 1}},
			Handler:    h.loadValue,
		},
	}, nil
}

// Module keyspace events (class 'd' of notify-keyspace-events): one per key a
// request really wrote, named after the command; a request that changes nothing
// raises none and signals nothing (no WATCH abort, no client-side-cache invalidation).
var (
	evRate      = rm.NewEvent("charon.rate")
	evLoadValue = rm.NewEvent("charon.loadvalue")
)

// rateHandler holds CHARON.RATE's reusable state. Redis runs commands on its main
// thread only, so one set serves every call and the hot path allocates nothing.
type rateHandler struct {
	typ    *rm.Type
	fields *rm.Fields
	at     rm.String // "AT", for the replicated command
	clock  rm.String // "CLOCK", likewise

	parser rate.Parser // caches the parse of the last LIMITS strings
	req    rate.Request
	views  [][]byte
}

var (
	errGlobalIsKey = &argError{arg: "GLOBAL", reason: "the global key must differ from the key"}
	errClockClient = &argError{arg: "CLOCK", reason: "only accepted from a primary's replication stream or the AOF; " +
		"the module adds it when it propagates a request whose AT lay behind the server clock"}
)

// CHARON.RATE key [MAX n] [MIN n] [HARD n] [GLOBAL gkey n] [AT ms] [DRYRUN]
// (TIER ... | LIMITS "..." | CLOSED)
//
// A frame command (rm.FrameSpec): C has opened the key (frame key 0) and the GLOBAL
// key (frame key 1) and, after this returns, stores what it asked for, replicates and
// replies; this computes, and calls no Redis API.
func (h *rateHandler) rate(c rm.Ctx, args rm.Args) error {
	f, ok := c.Frame()
	if !ok {
		return errNoFrame
	}
	h.views = args.Views(h.views)
	req := &h.req
	if err := h.parser.Parse(h.views[2:], req); err != nil {
		return rateErr(err)
	}
	// The clock the keys' expiry is measured on (rate.ExpireAt): this server's for a
	// client's request, the primary's (CLOCK, else the request's time) for a replayed one.
	serverNow, replayed := f.Clock()
	if !replayed {
		if req.HasClock {
			return errClockClient
		}
		if err := req.CheckAt(serverNow, maxAtAhead); err != nil {
			return rateErr(err)
		}
	}
	if req.HasGlobal {
		gidx := req.GlobalKeyIdx + 2
		if bytes.Equal(h.views[1], h.views[gidx]) {
			return errGlobalIsKey
		}
		// C found the GLOBAL key as the key spec does (the first GLOBAL argument); a
		// valid request has no other.
		if f.KeyArg(1) != gidx {
			return fmt.Errorf("internal error: GLOBAL key at argument %d, the frame opened %d", gidx, f.KeyArg(1))
		}
	}
	cur, _, err := f.Value(0)
	if err != nil {
		return wrongEngine(c, args, 1, err)
	}
	var gcur []byte
	if req.HasGlobal {
		if gcur, _, err = f.Value(1); err != nil {
			return wrongEngine(c, args, req.GlobalKeyIdx+2, err)
		}
	}

	now := req.At
	if !req.HasAt {
		now = serverNow // also for a bare command replayed from an old AOF
	}
	// The stored values are rewritten in place when they fit, else built in C's
	// scratch buffers: either way C stores them without a copy from Go memory.
	res, val, gval, err := rate.ApplyInPlace(cur, gcur, req, now, f.Scratch(0), f.Scratch(1))
	if err != nil {
		return rateErr(err)
	}
	if res.Write {
		clock := serverNow
		if replayed {
			clock = res.T
			if req.HasClock {
				clock = req.Clock
			}
		}
		// Each key expires at the moment it stops mattering, on the server's clock.
		if err := f.Store(0, val, rate.ExpireAt(res.ExpireAt, res.T, clock)); err != nil {
			return err
		}
		if gval != nil {
			if err := f.Store(1, gval, rate.ExpireAt(res.GlobalExpireAt, res.T, clock)); err != nil {
				return err
			}
		}
		h.replicate(f, req, &res, clock)
	}
	countRate(req, &res)
	f.Reply(res.Fields[:])
	return nil
}

// replicate sends replicas and the AOF the request with its effective time explicit,
// and the clock reading when it moved the expiry (CLOCK), so that they compute what
// this server did and set the same expiry. A client's own AT already makes the time
// explicit: unless CLOCK must be added, the command goes as it came.
func (h *rateHandler) replicate(f rm.Frame, req *rate.Request, res *rate.Result, clock int64) {
	needClock := clock > res.T
	if req.HasAt && !req.HasClock && !needClock {
		f.ReplicateVerbatim()
		return
	}
	at := rm.Explicit{Skip: -1, Name: h.at, Value: res.T}
	if req.HasAt {
		at.Skip = req.AtIdx + 2
	}
	clk := rm.Explicit{Skip: -1}
	if req.HasClock {
		clk.Skip = req.ClockIdx + 2
	}
	if needClock {
		clk.Name, clk.Value = h.clock, clock
	}
	f.ReplicateWithOptions(at, clk)
}

var errNoFrame = errors.New("ERR internal error: CHARON.RATE runs only as a frame command")

// Keys that the Go client's script engine wrote (for Redis without the module) are
// hashes whose field "@" starts with one of these.
const scriptField = "@"

var scriptMagics = [...]string{"CRd1", "CRg1", "CRh1"}

// wrongEngine turns WRONGTYPE on argument i into an error naming the engine that
// wrote the key, when the Go client's script engine did: the module never reads it.
func wrongEngine(c rm.Ctx, args rm.Args, i int, err error) error {
	return wrongEngineKey(c, args.At(i), err)
}

// wrongEngineKey is wrongEngine for the key name.
func wrongEngineKey(c rm.Ctx, name rm.String, err error) error {
	if !errors.Is(err, rm.ErrWrongType) {
		return err
	}
	for _, m := range scriptMagics {
		if c.HashFieldHasPrefix(name, scriptField, m) {
			return errors.New("WRONGTYPE " + rate.QuoteArg(name.Bytes()) + " was written by Charon's script engine " +
				"(the Go client's engine for Redis without the module): the module does not read it; " +
				"use the script engine while the key lives, or delete it")
		}
	}
	return err
}

// rateErr turns the pure package's errors into reply texts: "ERR <ARG>: <reason>"
// for arguments, WRONGTYPE for a value of the other kind, ERR for a corrupt value.
func rateErr(err error) error {
	if r, ok := argReply(err); ok {
		return r
	}
	switch {
	case errors.Is(err, rate.ErrWrongKind):
		// "key holds a global log" (or the reverse): the wrong kind of value.
		return errors.New("WRONGTYPE " + strings.TrimSuffix(err.Error(), ": "+rate.ErrWrongKind.Error()))
	case errors.Is(err, rate.ErrCorrupt):
		return fmt.Errorf("ERR corrupt %s value: %v", rateTypeName, err)
	}
	return err
}

// CHARON.LOADVALUE key payload: what aof_rewrite emits for a value. The payload is
// checked by the same C validator rdb_load uses before anything is stored.
func (h *rateHandler) loadValue(c rm.Ctx, args rm.Args) error {
	payload := args.Bytes(2)
	if len(payload) > rm.MaxBlob {
		return rm.BlobTooBig("payload", h.typ, len(payload))
	}
	if !h.typ.Check(payload) {
		return &argError{arg: "payload", reason: "not a valid " + rateTypeName + " value"}
	}
	k := c.OpenWrite(args.At(1))
	defer k.Close()
	if t := k.Type(); t != rm.KeyEmpty && t != rm.KeyModule {
		return rm.ErrWrongType
	}
	if err := k.SetBlob(h.typ, payload, evLoadValue); err != nil {
		return err
	}
	c.ReplicateVerbatim()
	c.ReplySimple("OK")
	return nil
}
