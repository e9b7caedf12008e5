//go:build integration

package script_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/charon-redis/charon/module/internal/ratemodel"
	"github.com/charon-redis/charon/module/internal/script"
	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
)

// One reference, two engines: random request traces run against the reference model
// (module/internal/ratemodel, written from the contract), against the script engine
// on a server that cannot call TIME, and, for every request the module implements,
// against the module's CHARON.RATE. Every reply field must agree.

// T0 is the traces' time origin: 2100-01-01, far ahead of any server clock, so
// the module's absolute expiries never pass during a test.
const T0 = 4102444800000

// noTime is the config line that removes TIME: a script that called it would fail.
const noTime = `rename-command TIME ""`

// rateOp is one request of a trace in every engine's terms.
type rateOp struct {
	key    string
	max    int64
	min    int64
	hasMin bool
	tiers  []ratemodel.Tier
	closed bool
	hard   int64 // -1: none
	caps   []ratemodel.Cap
	global bool
	gcaps  []ratemodel.Cap // GLOBAL's caps; one n/1000 cap is "GLOBAL gkey n"
	once   string
	dry    bool
	at     int64
}

func (o *rateOp) model() ratemodel.Request {
	m := ratemodel.Request{Max: o.max, Min: o.max, Tiers: o.tiers, Closed: o.closed, Global: o.global, Once: o.once, DryRun: o.dry}
	if o.hasMin {
		m.Min = o.min
	}
	m.Caps = append([]ratemodel.Cap(nil), o.caps...)
	if o.hard >= 0 {
		m.Caps = append(m.Caps, ratemodel.Cap{N: o.hard, Window: 1000})
	}
	if o.global {
		m.GlobalCaps = o.gcaps
	}
	return m
}

func (o *rateOp) script(gkey string) *script.Rate {
	m := o.model()
	r := &script.Rate{Key: o.key, Max: m.Max, Min: m.Min, Closed: o.closed, Once: o.once, DryRun: o.dry, At: o.at}
	for _, t := range o.tiers {
		r.Tiers = append(r.Tiers, script.Tier{Limit: t.Limit, Window: t.Window, Active: t.Active, Cooldown: t.Cooldown, Skippable: t.Skippable})
	}
	for _, c := range m.Caps {
		r.Caps = append(r.Caps, script.Cap{N: c.N, Window: c.Window})
	}
	if o.global {
		r.GlobalKey = gkey
		for _, c := range o.gcaps {
			r.GlobalCaps = append(r.GlobalCaps, script.Cap{N: c.N, Window: c.Window})
		}
	}
	return r
}

// moduleArgs renders the request as CHARON.RATE arguments (the contract's grammar);
// ok is false when it needs what the module on this server lacks.
func (o *rateOp) moduleArgs(gkey string, caps, once bool) (args []any, ok bool) {
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	args = []any{"CHARON.RATE", o.key, "MAX", i64(o.max), "AT", i64(o.at)}
	if o.hasMin {
		args = append(args, "MIN", i64(o.min))
	}
	if o.hard >= 0 {
		args = append(args, "HARD", i64(o.hard))
	}
	if len(o.caps) > 0 {
		if !caps {
			return nil, false
		}
		for _, c := range o.caps {
			args = append(args, "CAP", i64(c.N), i64(c.Window))
		}
	}
	if o.global {
		if len(o.gcaps) == 1 && o.gcaps[0].Window == 1000 {
			args = append(args, "GLOBAL", gkey, i64(o.gcaps[0].N))
		} else {
			if !caps {
				return nil, false
			}
			var s []string
			for _, c := range o.gcaps {
				s = append(s, i64(c.N)+"/"+i64(c.Window)+"ms")
			}
			args = append(args, "GLOBAL", gkey, strings.Join(s, ", "))
		}
	}
	if o.once != "" {
		if !once {
			return nil, false
		}
		args = append(args, "ONCE", o.once)
	}
	if o.dry {
		args = append(args, "DRYRUN")
	}
	if o.closed {
		args = append(args, "CLOSED")
	}
	for _, t := range o.tiers {
		args = append(args, "TIER", i64(t.Limit), i64(t.Window), i64(t.Active), i64(t.Cooldown))
		if t.Skippable {
			args = append(args, "SKIPPABLE")
		}
	}
	return args, true
}

// rateTrace draws one seed's configuration and requests. full adds what only rule 10
// and 11 give (caps over any window, GLOBAL caps strings, ONCE).
type rateTrace struct {
	rng   *rand.Rand
	tiers []ratemodel.Tier
	sumL  int64
	hard  int64
	caps  []ratemodel.Cap
	glob  bool
	gcaps []ratemodel.Cap
	full  bool
	now   int64
	maxD  int64
	toks  []string
	ntok  int
}

func newRateTrace(seed uint64, full bool) *rateTrace {
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	tr := &rateTrace{rng: rng, full: full, hard: -1, maxD: []int64{400, 5000}[seed%2]}
	n := 1 + rng.IntN(4)
	for i := 0; i < n; i++ {
		t := ratemodel.Tier{Limit: rng.Int64N(9), Window: 1 + rng.Int64N(tr.maxD), Active: 1 + rng.Int64N(tr.maxD),
			Cooldown: rng.Int64N(tr.maxD), Skippable: rng.IntN(3) == 0}
		if rng.IntN(4) == 0 || i == 0 && rng.IntN(2) == 0 {
			t.Cooldown = 0
		}
		tr.tiers = append(tr.tiers, t)
		tr.sumL += t.Limit
	}
	if rng.IntN(3) == 0 {
		tr.hard = rng.Int64N(tr.sumL + 3)
	}
	capWindows := []int64{1 + rng.Int64N(999), 1500, 2500, 7000, 20000, 60000}
	if full { // distinct windows: the module takes each window once
		for _, w := range rng.Perm(len(capWindows))[:rng.IntN(3)] {
			tr.caps = append(tr.caps, ratemodel.Cap{N: rng.Int64N(3*tr.sumL + 3), Window: capWindows[w]})
		}
	}
	tr.glob = rng.IntN(2) == 0
	if tr.glob {
		tr.gcaps = []ratemodel.Cap{{N: rng.Int64N(2*tr.sumL + 3), Window: 1000}}
		if full && rng.IntN(2) == 0 {
			tr.gcaps = append(tr.gcaps, ratemodel.Cap{N: rng.Int64N(6*tr.sumL + 3), Window: capWindows[1+rng.IntN(len(capWindows)-1)]})
			if rng.IntN(3) == 0 {
				tr.gcaps = tr.gcaps[1:] // no 1 s cap at all
			}
		}
	}
	tr.now = T0 + rng.Int64N(100_000)
	return tr
}

func (tr *rateTrace) next(keys []string) rateOp {
	rng := tr.rng
	switch r := rng.IntN(20); {
	case r < 8:
		tr.now += rng.Int64N(40)
	case r < 17:
		tr.now += rng.Int64N(tr.maxD / 2)
	case r < 19:
		tr.now -= rng.Int64N(500) // a clock that steps back (rule 8)
	default:
		tr.now += rng.Int64N(4 * tr.maxD)
	}
	o := rateOp{key: keys[rng.IntN(len(keys))], max: 1 + rng.Int64N(max(tr.sumL, 1)+2), hard: -1, at: tr.now, tiers: tr.tiers, caps: tr.caps}
	o.min = rng.Int64N(o.max + 1)
	o.hasMin = rng.IntN(3) > 0
	if tr.hard >= 0 && rng.IntN(4) > 0 {
		o.hard = tr.hard
	}
	if tr.glob && rng.IntN(4) > 0 {
		o.global, o.gcaps = true, tr.gcaps
		if len(tr.gcaps) > 1 && rng.IntN(7) == 0 {
			o.gcaps = tr.gcaps[:1] // the long cap dropped (by a grant), added again later
		}
	}
	if rng.IntN(7) == 0 {
		o.caps = nil
	}
	o.dry = rng.IntN(10) == 0
	if rng.IntN(40) == 0 {
		o.closed, o.tiers = true, nil
	}
	if tr.full && rng.IntN(4) == 0 {
		if len(tr.toks) > 0 && rng.IntN(2) == 0 {
			o.once = tr.toks[rng.IntN(len(tr.toks))] // a retry
		} else {
			tr.ntok++
			o.once = fmt.Sprintf("tok-%d", tr.ntok)
			tr.toks = append(tr.toks, o.once)
			if len(tr.toks) > 4 {
				tr.toks = tr.toks[1:]
			}
		}
	}
	return o
}

// moduleSupport probes what the module on s implements of rules 10 and 11.
func moduleSupport(t *testing.T, c *redis.Client) (caps, once bool) {
	ctx := context.Background()
	at := strconv.FormatInt(T0, 10)
	caps = c.Do(ctx, "CHARON.RATE", "probe:caps", "CAP", "1", "5000", "AT", at, "DRYRUN", "TIER", "1", "1000", "1000", "0").Err() == nil
	once = c.Do(ctx, "CHARON.RATE", "probe:once", "ONCE", "x", "AT", at, "DRYRUN", "TIER", "1", "1000", "1000", "0").Err() == nil
	if !caps {
		t.Logf("SKIPPED FOR THE MODULE: CAP and GLOBAL caps strings (rule 10) are not implemented by this module build; those requests run against the model and the scripts only")
	}
	if !once {
		t.Logf("SKIPPED FOR THE MODULE: ONCE (rule 11) is not implemented by this module build; those requests run against the model and the scripts only")
	}
	return caps, once
}

type rateEngines struct {
	sc         *redis.Client // the script engine's server (no module, no TIME)
	mod        *redis.Client // the module's server
	caps, once bool
}

func startRateEngines(t *testing.T) *rateEngines {
	scSrv := harness.Start(t, harness.Options{NoModule: true, Config: []string{noTime}})
	modSrv := harness.Start(t, harness.Options{})
	e := &rateEngines{sc: scSrv.Client(t, harness.Protocol(2)), mod: modSrv.Client(t)}
	if err := e.sc.Do(context.Background(), "TIME").Err(); err == nil {
		t.Fatal("TIME works on the script engine's server: the rename did not apply")
	}
	e.caps, e.once = moduleSupport(t, e.mod)
	return e
}

type rateStats struct {
	requests, module, grants, replays, retries, expired int
}

// runRateTrace runs one seed; mod says whether the module side runs too.
func runRateTrace(t *testing.T, e *rateEngines, seed uint64, full bool, steps int, st *rateStats) {
	ctx := context.Background()
	tr := newRateTrace(seed, full)
	pfx := fmt.Sprintf("s%d:", seed)
	keys := []string{pfx + "a", pfx + "b"}
	gkey := pfx + "g"
	type models struct {
		k map[string]*ratemodel.Key
		g *ratemodel.Global
	}
	newModels := func() models {
		return models{k: map[string]*ratemodel.Key{keys[0]: ratemodel.NewKey(), keys[1]: ratemodel.NewKey()}, g: ratemodel.NewGlobal()}
	}
	ms, mm := newModels(), newModels() // against the scripts, against the module
	modOK := true                      // the module has seen every request of this trace
	lastTok := map[string]int64{}      // per key, the time of its newest remembered token
	for step := 0; step < steps; step++ {
		o := tr.next(keys)
		// A script key that expired on the server's clock (the trace runs far ahead
		// of it, so only a stalled machine gets here) holds nothing that matters any
		// more; the model forgets it too.
		for _, k := range append([]string{gkey}, keys...) {
			// About to expire on the server's clock: it must not expire between this
			// check and the request (the model keeps it), so it lives on; persisted
			// first, then looked for, so that it cannot vanish in between.
			if ttl, _ := e.sc.PTTL(ctx, k).Result(); ttl >= 0 && ttl < 2*time.Second {
				e.sc.Persist(ctx, k)
			}
			if n, _ := e.sc.Exists(ctx, k).Result(); n == 0 {
				if k == gkey && ms.g.Exists() {
					ms.g = ratemodel.NewGlobal()
					st.expired++
				} else if k != gkey && ms.k[k].Exists() {
					ms.k[k] = ratemodel.NewKey()
					st.expired++
				}
			}
		}
		req := o.model()
		want := ratemodel.Rate(ms.k[o.key], ms.g, &req, o.at, true)
		call := o.script(gkey).Call()
		v, err := call.Run(ctx, e.sc).Result()
		if err != nil {
			t.Fatalf("seed %d step %d: script: %v (%+v)", seed, step, err, o)
		}
		got, err := script.DecodeRate(v)
		if err != nil {
			t.Fatalf("seed %d step %d: %v", seed, step, err)
		}
		ctxs := fmt.Sprintf("seed %d step %d t=%d %+v caps=%v gcaps=%v", seed, step, want.T, req, req.Caps, req.GlobalCaps)
		if got != want.Fields {
			t.Fatalf("%s:\n script %v\n model  %v replay=%v", ctxs, got, want.Fields, want.Replay)
		}
		if want.Write {
			// The key lives as long as it matters (reset_after), or while its newest
			// ONCE token is remembered, on the server's clock.
			if o.once != "" {
				lastTok[o.key] = want.T
			}
			life := got[ratemodel.FieldResetAfter]
			if tk, ok := lastTok[o.key]; ok {
				life = max(life, tk+ratemodel.OnceWindow+1-want.T)
			}
			pttl, err := e.sc.PTTL(ctx, o.key).Result()
			if err != nil || pttl <= 0 || pttl.Milliseconds() > life {
				t.Fatalf("%s: PTTL %v (%v), want at most %d", ctxs, pttl, err, life)
			}
		}
		st.requests++
		if want.Granted {
			st.grants++
		}
		if want.Replay {
			st.replays++
		}
		if !want.Granted && got[ratemodel.FieldRetryAfter] > 0 {
			st.retries++
		}
		// The module.
		args, ok := o.moduleArgs(gkey, e.caps, e.once)
		if !ok || !modOK {
			modOK = false // the module's keys would miss this request from now on
			continue
		}
		mwant := ratemodel.Rate(mm.k[o.key], mm.g, &req, o.at, true)
		mv, err := e.mod.Do(ctx, args...).Result()
		if err != nil {
			t.Fatalf("%s: module: %v (%q)", ctxs, err, args)
		}
		mgot, err := script.DecodeRate(mv)
		if err != nil {
			t.Fatalf("%s: module reply: %v", ctxs, err)
		}
		if mgot != mwant.Fields {
			t.Fatalf("%s:\n module %v\n model  %v (%q)", ctxs, mgot, mwant.Fields, args)
		}
		st.module++
	}
}

func TestRateScriptMatchesModel(t *testing.T) {
	e := startRateEngines(t)
	var st rateStats
	seeds := uint64(200)
	if testing.Short() {
		seeds = 40
	}
	for seed := uint64(0); seed < seeds; seed++ {
		runRateTrace(t, e, seed, seed%2 == 1, 200, &st)
	}
	t.Logf("%d seeds, %d requests: 0 mismatches between model and scripts (%d granted, %d replays, %d positive retry_after); %d of them also matched by the module; %d script keys expired on the server clock",
		seeds, st.requests, st.grants, st.replays, st.retries, st.module, st.expired)
	if st.replays == 0 || st.retries == 0 {
		t.Fatalf("traces too weak: %d replays, %d retries", st.replays, st.retries)
	}
}
