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

// rateHandler holds CHARON.RATE's reusable scratch. Redis runs commands on its main
// thread only, so one set of buffers serves every call and the hot path allocates
// nothing once they have grown.
type rateHandler struct {
	typ    *rm.Type
	fields *rm.Fields
	at     rm.String // "AT", for the replicated command
	clock  rm.String // "CLOCK", likewise

	parser rate.Parser // caches the parse of the last LIMITS strings
	req    rate.Request
	views  [][]byte
	out    []byte
	gout   []byte
}

var (
	errGlobalIsKey = &argError{arg: "GLOBAL", reason: "the global key must differ from the key"}
	errClockClient = &argError{arg: "CLOCK", reason: "only accepted from a primary's replication stream or the AOF; " +
		"the module adds it when it propagates a request whose AT lay behind the server clock"}
)

// CHARON.RATE key [MAX n] [MIN n] [HARD n] [GLOBAL gkey n] [AT ms] [DRYRUN]
// (TIER ... | LIMITS "..." | CLOSED)
func (h *rateHandler) rate(c rm.Ctx, args rm.Args) error {
	h.views = args.Views(h.views)
	req := &h.req
	if err := h.parser.Parse(h.views[2:], req); err != nil {
		return rateErr(err)
	}
	// The clock the keys' expiry is measured on (rate.ExpireAt): this server's for a
	// client's request, the primary's (CLOCK, else the request's time) for a replayed one.
	serverNow, replayed := c.ClientClock()
	if !replayed {
		if req.HasClock {
			return errClockClient
		}
		if err := req.CheckAt(serverNow); err != nil {
			return rateErr(err)
		}
	}
	gidx := -1
	if req.HasGlobal {
		gidx = req.GlobalKeyIdx + 2
		if bytes.Equal(h.views[1], h.views[gidx]) {
			return errGlobalIsKey
		}
	}

	key, cur, _, err := c.OpenBlobWrite(args.At(1), h.typ)
	if err != nil {
		return err
	}
	defer key.Close()
	var gkey rm.WriteKey
	var gcur []byte
	if gidx >= 0 {
		gkey, gcur, _, err = c.OpenBlobWrite(args.At(gidx), h.typ)
		if err != nil {
			return err
		}
		defer gkey.Close()
	}

	now := req.At
	if !req.HasAt {
		now = serverNow
		if replayed {
			now = rm.Milliseconds() // a bare command in an old AOF
		}
	}
	// The stored values are rewritten in place when they fit (StoreBlob then copies
	// nothing).
	res, val, gval, err := rate.ApplyInPlace(cur, gcur, req, now, h.out[:0], h.gout[:0])
	if err != nil {
		return rateErr(err)
	}
	if res.Write {
		if len(val) > rm.MaxBlob || len(gval) > rm.MaxBlob {
			return rm.BlobTooBig("key", h.typ, max(len(val), len(gval)))
		}
		clock := serverNow
		if replayed {
			clock = res.T
			if req.HasClock {
				clock = req.Clock
			}
		}
		// Each key expires at the moment it stops mattering, on the server's clock.
		if err := key.StoreBlob(h.typ, val, rate.ExpireAt(res.ExpireAt, res.T, clock), evRate); err != nil {
			return err
		}
		if gval != nil {
			if err := gkey.StoreBlob(h.typ, gval, rate.ExpireAt(res.GlobalExpireAt, res.T, clock), evRate); err != nil {
				return err
			}
		}
		// Replicas and the AOF get the request with its effective time made explicit
		// (AT replaced or appended), and the clock reading when it moved the expiry
		// (CLOCK), so they compute what the primary did and set the same expiry.
		at := rm.Explicit{Skip: -1, Name: h.at, Value: res.T}
		if req.HasAt {
			at.Skip = req.AtIdx + 2
		}
		clk := rm.Explicit{Skip: -1}
		if req.HasClock {
			clk.Skip = req.ClockIdx + 2
		}
		if clock > res.T {
			clk.Name, clk.Value = h.clock, clock
		}
		if err := c.ReplicateWithOptions("CHARON.RATE", args, at, clk); err != nil {
			return err
		}
		h.out, h.gout = keepScratch(h.out, val, cur), keepScratch(h.gout, gval, gcur)
	}
	countRate(req, &res)
	c.ReplyIntFields(h.fields, res.Fields[:])
	return nil
}

// keepScratch keeps the larger of a scratch buffer and what Apply grew it into
// (never the stored value itself, written in place).
func keepScratch(scratch, grown, stored []byte) []byte {
	if cap(grown) > cap(scratch) && (len(stored) == 0 || len(grown) == 0 || &grown[0] != &stored[0]) {
		return grown[:0]
	}
	return scratch
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
