package script

import (
	"encoding/binary"
	"math"
	"strings"

	"github.com/charon-redis/charon/module/rate"
)

// Tier is one tier of a rate request (the module's TIER clause).
type Tier struct {
	Limit, Window, Active, Cooldown int64
	Skippable                       bool
}

// Cap is a windowed cap: at most N hits over the last Window ms. The module's HARD n
// is Cap{n, 1000} among the domain caps, GLOBAL gkey n is Cap{n, 1000} among the
// global caps.
type Cap struct {
	N, Window int64
}

// Rate is one CHARON.RATE request for the script engine. Min is taken as given (the
// module's default MIN = MAX is applied by ParseRate).
type Rate struct {
	Key      string
	Max, Min int64
	Tiers    []Tier
	Closed   bool
	Caps     []Cap
	// GlobalKey names the global key ("" without GLOBAL); GlobalCaps are its caps.
	GlobalKey  string
	GlobalCaps []Cap
	// Once is the ONCE token ("": none).
	Once   string
	DryRun bool
	// At is the request time in Unix ms: the effective time is the newest of At and
	// the keys' stored times (rule 8).
	At int64
}

// Call builds the script call: KEYS are the key and the global key; ARGV[1] the
// request as little-endian doubles (one argument: the script reads it in one call),
// ARGV[2] the ONCE token.
func (r *Rate) Call() *Call {
	flags := 0.0
	if r.DryRun {
		flags++
	}
	if r.Closed {
		flags += 2
	}
	v := make([]float64, 0, 8+5*len(r.Tiers)+2*(len(r.Caps)+len(r.GlobalCaps)))
	v = append(v, float64(r.At), float64(r.Max), float64(r.Min), flags, float64(len(r.Tiers)))
	for _, t := range r.Tiers {
		s := 0.0
		if t.Skippable {
			s = 1
		}
		v = append(v, float64(t.Limit), float64(t.Window), float64(t.Active), float64(t.Cooldown), s)
	}
	v = append(v, float64(len(r.Caps)))
	for _, c := range r.Caps {
		v = append(v, float64(c.N), float64(c.Window))
	}
	keys := []string{r.Key}
	if r.GlobalKey == "" {
		v = append(v, -1)
	} else {
		keys = append(keys, r.GlobalKey)
		v = append(v, float64(len(r.GlobalCaps)))
		for _, c := range r.GlobalCaps {
			v = append(v, float64(c.N), float64(c.Window))
		}
	}
	return &Call{script: rateScript, Keys: keys, Args: []any{packDoubles(v), r.Once}}
}

// packDoubles encodes v as little-endian IEEE doubles (every bound of the contract,
// 10^12 counts, 10-year durations, 2^53 times, is exact in a double).
func packDoubles(v []float64) string {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return string(b)
}

// ParseRate reads the arguments a client sends the module's CHARON.RATE after the key
// (args) with the module's own parser, so a bad argument is the module's error, word
// for word (a *rate.ArgError). now is the client's clock in Unix ms, used when args
// carries no AT.
func ParseRate(key string, args []string, now int64) (*Rate, error) {
	views := make([][]byte, len(args))
	for i, a := range args {
		views[i] = []byte(a)
	}
	var req rate.Request
	if err := rate.ParseRequest(views, &req); err != nil {
		return nil, err
	}
	if req.HasClock {
		return nil, &rate.ArgError{Arg: "CLOCK", Reason: "only accepted from a primary's replication stream or the AOF"}
	}
	r := &Rate{Key: key, Max: req.Max, Min: req.Min, Closed: req.Closed, DryRun: req.DryRun, At: now}
	if req.HasAt {
		r.At = req.At
	}
	for _, t := range req.Tiers[:req.NTiers] {
		r.Tiers = append(r.Tiers, Tier{Limit: t.Limit, Window: t.Window, Active: t.Active, Cooldown: t.Cooldown, Skippable: t.Skippable})
	}
	for _, c := range req.Caps[:req.NCaps] {
		r.Caps = append(r.Caps, Cap{N: c.Limit, Window: c.Window})
	}
	if req.HasHard {
		r.Caps = append(r.Caps, Cap{N: req.Hard, Window: 1000})
	}
	if req.HasGlobal {
		r.GlobalKey = args[req.GlobalKeyIdx]
		if r.GlobalKey == key {
			return nil, &rate.ArgError{Arg: "GLOBAL", Reason: "the global key must differ from the key"}
		}
		if req.HasGlobalLimit {
			r.GlobalCaps = append(r.GlobalCaps, Cap{N: req.GlobalLimit, Window: 1000})
		}
		for _, c := range req.GlobalCaps[:req.NGlobalCaps] {
			r.GlobalCaps = append(r.GlobalCaps, Cap{N: c.Limit, Window: c.Window})
		}
	}
	if req.HasOnce {
		// The parser keeps the token's hash; the script remembers the token itself.
		for i := 0; i+1 < len(args); i++ {
			if strings.EqualFold(args[i], "ONCE") && rate.OnceHash([]byte(args[i+1])) == req.Once {
				r.Once = args[i+1]
				break
			}
		}
	}
	return r, nil
}

// RateFieldNames are the reply's fields in order (the module's RESP3 map keys).
var RateFieldNames = rate.FieldNames

// DecodeRate reads a CHARON.RATE reply, the script's or the module's (a RESP2 array or
// a RESP3 map), into its 11 fields in reply order (rate.Field* indexes).
func DecodeRate(v any) ([rate.NumFields]int64, error) {
	var f [rate.NumFields]int64
	switch x := v.(type) {
	case []any:
		if len(x) != rate.NumFields {
			return f, replyErr("%d elements, want %d", len(x), rate.NumFields)
		}
		for i, e := range x {
			n, ok := asInt(e)
			if !ok {
				return f, replyErr("element %d is %T", i, e)
			}
			f[i] = n
		}
		return f, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			s, ok := k.(string)
			if !ok {
				return f, replyErr("map key %T", k)
			}
			m[s] = e
		}
		return decodeRateMap(m)
	case map[string]any:
		return decodeRateMap(x)
	}
	return f, replyErr("%T", v)
}

func decodeRateMap(m map[string]any) ([rate.NumFields]int64, error) {
	var f [rate.NumFields]int64
	if len(m) != rate.NumFields {
		return f, replyErr("%d fields, want %d", len(m), rate.NumFields)
	}
	for i, name := range rate.FieldNames {
		n, ok := asInt(m[name])
		if !ok {
			return f, replyErr("field %s is %T", name, m[name])
		}
		f[i] = n
	}
	return f, nil
}
