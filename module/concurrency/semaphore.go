package concurrency

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/charon-redis/charon/module/internal/engine"
	"github.com/charon-redis/charon/module/internal/transport"
	"github.com/redis/go-redis/v9"
)

// rediser is the part of go-redis the Semaphore uses: *redis.Client,
// *redis.ClusterClient, *redis.Ring and every redis.UniversalClient satisfy it.
type rediser interface {
	Process(ctx context.Context, cmd redis.Cmder) error
	Pipeline() redis.Pipeliner
	TxPipeline() redis.Pipeliner
}

// DefaultTimeout bounds each attempt of a command (as in package ratelimit): when
// Redis is down, a reservation must fail (or fail open) in milliseconds, not after
// go-redis's dial retries.
const DefaultTimeout = transport.DefaultTimeout

// DefaultLease is the lease of a Pool that sets none (the server's default too).
const DefaultLease = 60 * time.Second

// MaxCount bounds limits and copies (the server's bound).
const MaxCount = 1_000_000_000_000

// Group is a pool shared by a group of domains (a bulkhead, a probation pool, or a
// block list with Limit 0).
type Group struct {
	Name  string
	Limit int64
}

// Pool describes one copy-limited resource.
type Pool struct {
	// Name names the resource; it is the hash tag of all its keys.
	Name string
	// Limit is the most copies one domain may hold at once; 0 means no per-domain
	// limit (block a domain with a Group of limit 0 instead).
	Limit int64
	// Global is the most copies all domains together may hold; 0 means no global key.
	Global int64
	// Groups are the groups a request may name (by name, in ReserveArgs.Groups).
	Groups []Group
	// Lease is how long a hold lives unless renewed; 0 means DefaultLease.
	Lease time.Duration
}

func (p *Pool) validate() error {
	switch {
	case p == nil || p.Name == "":
		return invalid("a pool needs a name")
	case p.Limit < 0 || p.Limit > MaxCount || p.Global < 0 || p.Global > MaxCount:
		return invalid("pool %q: limits must be in 0..%d", p.Name, int64(MaxCount))
	case p.Lease < 0 || (p.Lease > 0 && p.Lease < time.Millisecond):
		return invalid("pool %q: lease %v", p.Name, p.Lease)
	case p.Limit == 0 && p.Global == 0 && len(p.Groups) == 0:
		return invalid("pool %q names no limit", p.Name)
	}
	return nil
}

func (p *Pool) lease() time.Duration {
	if p.Lease == 0 {
		return DefaultLease
	}
	return p.Lease
}

func (p *Pool) group(name string) (Group, bool) {
	for _, g := range p.Groups {
		if g.Name == name {
			return g, true
		}
	}
	return Group{}, false
}

// Options tune a Semaphore; the zero value (or nil) is right for most uses.
type Options struct {
	// KeyPrefix starts every key name; "" means DefaultPrefix ("hd").
	KeyPrefix string
	// Timeout bounds each attempt of a command, on top of the caller's context:
	// connecting, waiting for a pool connection or a round trip, and with go-redis's
	// ContextTimeoutEnabled also the answer. 0 means DefaultTimeout (100ms), a
	// negative value no bound but the context's. An attempt whose time runs out
	// before the command was sent counts as Redis being unreachable (FailOpen
	// applies).
	Timeout time.Duration
	// Resends bounds how often a command whose answer was lost is sent again within
	// the caller's context: RESERVE and TRANSFER with the same ONCE token (the server
	// answers a replay with the original hold, fence and deadline and makes no extra
	// copy), RELEASE of a whole hold, RENEW and SEIZE as they are (running them twice
	// is running them once). 0 means 3; -1 none.
	Resends int
	// FailOpen grants a reservation when Redis provably did not run it (unreachable:
	// refused or timed-out dials, no pool connection, the Timeout before sending; or a
	// slot moving / failover); the Hold has Override OverrideFailOpen and no server
	// state, and OnFailOpen is called. Never for ErrOutcomeUnknown or ErrMisconfigured.
	FailOpen   bool
	OnFailOpen func(ctx context.Context, pool, domain string, err error)
	// Observer, when set, sees every command's outcome (reserve, release, renew,
	// transfer, seize) with its pool and latency: the hook for metrics. It is called
	// synchronously, once per call.
	Observer Observer
	// KillSwitch is the kill switch's initial state; see SetKillSwitch.
	KillSwitch bool
	// Engine picks what serves the commands: EngineAuto (detect the module, else run
	// the scripts), EngineModule or EngineScripts. See Engine.
	Engine Engine
}

// Override says why a Hold was granted without the server.
type Override uint8

// Overrides.
const (
	OverrideNone       Override = iota
	OverrideFailOpen            // Redis was unreachable and FailOpen is on
	OverrideKillSwitch          // the limits refused, but the kill switch is on
)

func (o Override) String() string {
	switch o {
	case OverrideNone:
		return "none"
	case OverrideFailOpen:
		return "fail-open"
	case OverrideKillSwitch:
		return "kill-switch"
	}
	return fmt.Sprintf("Override(%d)", uint8(o))
}

// Semaphore sends the hold commands. It is safe for concurrent use; create one per
// go-redis client and keep it: commands that goroutines send at the same moment share
// round trips.
//
// Before its first command, and again after connection trouble, it checks whether
// the server has the module (else it runs the same rules as server-side scripts;
// Options.Engine, Semaphore.Engine) and that a cluster is not reached through a plain
// *redis.Client, which is an error wrapping ErrMisconfigured that names the fix.
type Semaphore struct {
	tr         *transport.Transport
	prefix     string
	failOpen   bool
	onFailOpen func(ctx context.Context, pool, domain string, err error)
	observer   Observer
	kill       atomic.Bool
}

// New returns a Semaphore over rdb. opt may be nil.
func New(rdb rediser, opt *Options) *Semaphore {
	var o Options
	if opt != nil {
		o = *opt
	}
	s := &Semaphore{prefix: o.KeyPrefix, failOpen: o.FailOpen, onFailOpen: o.OnFailOpen, observer: o.Observer}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	probe, _ := KeyNames(s.prefix, "charon-probe", "once")
	s.tr = transport.New(rdb, transport.Config{
		Name:           "concurrency",
		Timeout:        o.Timeout,
		Retries:        o.Resends,
		OutcomeUnknown: ErrOutcomeUnknown,
		Require:        []string{"CHARON.RESERVE", "CHARON.RELEASE", "CHARON.RENEW", "CHARON.TRANSFER", "CHARON.SEIZE"},
		Scripts:        transport.ScriptEngine{},
		Use:            engine.Use(o.Engine),
		Probes: map[string]transport.Probe{
			"CHARON.RESERVE": {Args: []any{"CHARON.RESERVE", probe, "DRYRUN", "LIMIT", 1}},
			// No hold has this id: a server that takes ONCE answers LOST.
			"CHARON.TRANSFER": {Args: []any{"CHARON.TRANSFER", probe, "0000000000000001", "TTL", 1000}, Taken: "LOST"},
			// A server with BLOCK refuses it with DRYRUN ("ERR BLOCK: a DRYRUN does not
			// wait"); one without it calls BLOCK an unknown option.
			blockFeature: {Args: []any{"CHARON.RESERVE", probe, "DRYRUN", "LIMIT", 1, "BLOCK", 1}, Taken: "BLOCK:", NoOnce: true},
		},
	})
	s.kill.Store(o.KillSwitch)
	return s
}

// SetKillSwitch turns the kill switch on or off. While it is on, a reservation the
// limits refuse is granted anyway (max(Min, 1) copies, Override OverrideKillSwitch,
// nothing recorded on the server).
func (s *Semaphore) SetKillSwitch(on bool) { s.kill.Store(on) }

// ReserveArgs are the arguments of one reservation beyond pool and domain.
type ReserveArgs struct {
	// Max is the most copies wanted; 0 means 1.
	Max int64
	// Min is the fewest copies worth having, 0..Max; 0 means Max (all or nothing).
	Min int64
	// Groups names the Pool groups this domain belongs to for this request.
	Groups []string
	// At, when not zero, is the request's time (tests, replays) instead of the
	// server's clock.
	At time.Time
	// MaxWait, when positive, lets a reservation the limits refuse wait up to MaxWait
	// (and never past the context's deadline) for copies to come free. Against a
	// server with CHARON.RESERVE's BLOCK the wait happens on the server, without
	// polling: first come, first served, woken at once by a release or a lease's end,
	// on a connection of its own for the time it waits. Otherwise the client asks
	// again after each rejection's RetryAfter (with jitter). A reservation that can
	// never fit (RetryAfter -1) does not wait. The kill switch does not wait either.
	MaxWait time.Duration
}

// Hold is a reservation: Copies copies held until Deadline unless renewed.
type Hold struct {
	s        *Semaphore
	pool     *Pool
	domain   string
	groups   []string
	at       time.Time
	ID       string
	Copies   int64
	Deadline time.Time
	Override Override
	fence    int64
	// failOpenErr is the error a fail-open grant replaced (for the Observer).
	failOpenErr error
}

// Fence is the hold's fencing token: an integer that grows with every grant and seize
// of the resource, for a downstream store to refuse a holder whose lease lapsed (keep
// the largest fence seen; refuse writes that carry a smaller one). 0 when the server
// sends none (a module without fencing) and for an overridden hold.
func (h *Hold) Fence() int64 { return h.fence }

// Ticket hands copies to another process: it Seizes them before Deadline.
type Ticket struct {
	ID       string
	Domain   string
	Groups   []string
	Copies   int64
	Deadline time.Time
}

// keyArgs builds a request of the pool's keys: GLOBAL goes into the options, GROUP
// into Tail (it runs to the end of the command, so it comes last, after anything the
// transport adds). withLimits adds each limit (RESERVE).
func (s *Semaphore) keyArgs(r *transport.Request, p *Pool, groups []string, withLimits bool) error {
	_, gkey := KeyNames(s.prefix, p.Name, "")
	if p.Global > 0 {
		r.Args = append(r.Args, "GLOBAL", gkey)
		r.Keys = append(r.Keys, gkey)
		if withLimits {
			r.Args = append(r.Args, p.Global)
		}
	}
	if len(groups) > 0 {
		r.Tail = append(r.Tail, "GROUP")
		for _, name := range groups {
			g, ok := p.group(name)
			if !ok {
				return invalid("pool %q has no group %q", p.Name, name)
			}
			gk := GroupKey(s.prefix, p.Name, name)
			r.Tail = append(r.Tail, gk)
			r.Keys = append(r.Keys, gk)
			if withLimits {
				r.Tail = append(r.Tail, g.Limit)
			}
		}
	}
	return nil
}

// do sends one command through the transport (batched, ONCE where it applies, resent
// after a lost answer) and returns its reply as an array in RESP2 order.
func (s *Semaphore) do(ctx context.Context, r *transport.Request) ([]any, int, error) {
	v, st, err := s.tr.Do(ctx, r)
	name := r.Name()
	if err != nil {
		if redis.HasErrorPrefix(err, "LOST") {
			return nil, st.Attempts, fmt.Errorf("%w: %w", ErrLost, err)
		}
		return nil, st.Attempts, err
	}
	switch v := v.(type) {
	case []any:
		return v, st.Attempts, nil
	case map[any]any: // RESP3: the same fields by name
		names := replyFields[name]
		out := make([]any, len(names), len(names)+1)
		for i, n := range names {
			out[i] = v[n]
		}
		if f, ok := v["fence"]; ok {
			out = append(out, f)
		}
		return out, st.Attempts, nil
	}
	return nil, st.Attempts, fmt.Errorf("concurrency: %s: %w: reply %T", name, ErrOutcomeUnknown, v)
}

// replyFields are the reply fields of each command, in their RESP2 order. RESERVE and
// SEIZE may append "fence" last (a server with fencing tokens).
var replyFields = map[string][]string{
	"CHARON.RESERVE":  {"granted", "hold", "held", "limit", "global_held", "limited_by", "deadline", "retry_after"},
	"CHARON.RELEASE":  {"copies", "remaining", "deadline", "held"},
	"CHARON.RENEW":    {"copies", "remaining", "deadline", "held"},
	"CHARON.SEIZE":    {"copies", "remaining", "deadline", "held"},
	"CHARON.TRANSFER": {"copies", "hold", "deadline", "remaining", "held"},
}

// Positions of the fence in the RESP2 replies that carry one.
const (
	reserveFence = 8
	seizeFence   = 4
)

// field reads field i of an array (RESP2) reply, or name of a map (RESP3) one.
func intAt(v []any, i int) int64 {
	if i < len(v) {
		switch n := v[i].(type) {
		case int64:
			return n
		case string: // the script engine's fence (64 bits do not fit Lua's numbers)
			if x, err := strconv.ParseInt(n, 10, 64); err == nil {
				return x
			}
		}
	}
	return 0
}

func strAt(v []any, i int) string {
	if i < len(v) {
		if s, ok := v[i].(string); ok {
			return s
		}
	}
	return ""
}

func withAt(args []any, at time.Time) []any {
	if at.IsZero() {
		return args
	}
	return append(args, "AT", at.UnixMilli())
}

// request starts a request of cmd on the domain key.
func request(cmd, key string, repeat transport.Repeat, args ...any) *transport.Request {
	r := &transport.Request{Args: make([]any, 0, 16), Keys: []string{key}, Repeat: repeat, RetryUnsent: true}
	r.Args = append(append(r.Args, cmd, key), args...)
	return r
}

// Reserve asks for between Min and Max copies of p for domain. It returns the Hold,
// or an error: a *RejectedError (errors.Is ErrRejected) when the limits refuse,
// ErrInvalid, ErrOutcomeUnknown, ErrMisconfigured, or the server's or go-redis's error
// (wrapped: errors.As finds a *net.OpError). With FailOpen or the kill switch it may
// return a Hold with an Override instead. A reservation whose answer was lost is sent
// again with the same ONCE token: it is granted at most once.
func (s *Semaphore) Reserve(ctx context.Context, p *Pool, domain string, a ReserveArgs) (*Hold, error) {
	began := time.Now()
	h, attempts, err := s.reserve(ctx, p, domain, a)
	if s.observer != nil {
		e := Event{Op: OpReserve, Domain: domain, Attempts: attempts, Latency: time.Since(began), Err: err, Engine: s.Engine()}
		if p != nil {
			e.Pool = p.Name
		}
		var rej *RejectedError
		switch {
		case h != nil && h.Override == OverrideFailOpen:
			e.Outcome, e.Err = OutcomeFailOpen, h.failOpenErr
		case h != nil && h.Override == OverrideKillSwitch:
			e.Outcome = OutcomeKillSwitch
		case h != nil:
			e.Outcome = OutcomeOK
		case errors.As(err, &rej):
			e.Outcome, e.LimitedBy = OutcomeRejected, rej.LimitedBy
		default:
			e.Outcome = OutcomeError
		}
		if h != nil {
			e.Copies, e.Deadline = h.Copies, h.Deadline
		}
		s.observer.Observe(ctx, e)
	}
	return h, err
}

func (s *Semaphore) reserve(ctx context.Context, p *Pool, domain string, a ReserveArgs) (*Hold, int, error) {
	if err := p.validate(); err != nil {
		return nil, 0, err
	}
	if domain == "" {
		return nil, 0, invalid("pool %q: empty domain", p.Name)
	}
	if a.Max == 0 {
		a.Max = 1
	}
	if a.Min == 0 {
		a.Min = a.Max
	}
	if a.Max < 1 || a.Max > MaxCount || a.Min < 1 || a.Min > a.Max {
		return nil, 0, invalid("min %d / max %d", a.Min, a.Max)
	}
	if a.MaxWait < 0 {
		return nil, 0, invalid("negative max wait %v", a.MaxWait)
	}
	key, _ := KeyNames(s.prefix, p.Name, domain)
	r := request("CHARON.RESERVE", key, transport.Once)
	r.RetryUnsent = !s.failOpen
	// One token for the whole reservation, its waiting rounds included: a rejection is
	// not remembered, a grant is, so it is granted at most once.
	r.Token = transport.NewToken()
	// The server's defaults (MAX 1, MIN = MAX, LEASE 60s) go unsaid.
	if a.Max != 1 {
		r.Args = append(r.Args, "MAX", a.Max)
	}
	if a.Min != a.Max {
		r.Args = append(r.Args, "MIN", a.Min)
	}
	if p.lease() != DefaultLease {
		r.Args = append(r.Args, "LEASE", p.lease().Milliseconds())
	}
	if p.Limit > 0 {
		r.Args = append(r.Args, "LIMIT", p.Limit)
	}
	r.Args = withAt(r.Args, a.At)
	if err := s.keyArgs(r, p, a.Groups, true); err != nil {
		return nil, 0, err
	}
	h := &Hold{s: s, pool: p, domain: domain, groups: a.Groups, at: a.At}
	var until time.Time // the end of waiting; zero: no waiting
	if a.MaxWait > 0 {
		until = time.Now().Add(a.MaxWait)
		if dl, ok := ctx.Deadline(); ok && dl.Before(until) {
			until = dl
		}
		_ = s.tr.Ready(ctx) // learn whether the server waits (BLOCK); errors come below
	}
	base := len(r.Args)
	attempts := 0
	for round := 1; ; round++ {
		// BLOCK: wait on the server for what is left of MaxWait (bounded by how long
		// go-redis reads), on a connection of its own.
		r.Args, r.Block = r.Args[:base], 0
		if !until.IsZero() && s.tr.Supports(blockFeature) {
			wait := time.Until(until)
			if rb := s.tr.ReadBound(); rb > 0 && wait > rb {
				wait = rb
			}
			if ms := wait.Milliseconds(); ms >= 1 {
				r.Args, r.Block = append(r.Args, "BLOCK", ms), time.Duration(ms)*time.Millisecond
			}
		}
		v, sent, err := s.do(ctx, r)
		attempts += sent
		h2, err := s.reserved(ctx, h, p, domain, a, v, err)
		if h2 != nil || err == nil {
			return h2, attempts, err
		}
		var rej *RejectedError
		if !errors.As(err, &rej) || until.IsZero() || rej.RetryAfter < 0 || !time.Now().Before(until) {
			return nil, attempts, err
		}
		if r.Block > 0 {
			continue // the server waited; wait again for what is left
		}
		// Poll: come back after RetryAfter (at least 10ms, growing with the rounds,
		// ±25%), unless that is past the end of waiting.
		d := max(rej.RetryAfter, min(10*time.Millisecond<<min(round-1, 6), time.Second))
		d += time.Duration(float64(d) * 0.25 * (2*rand.Float64() - 1))
		if time.Now().Add(d).After(until) {
			return nil, attempts, err
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, attempts, err
		case <-t.C:
		}
	}
}

// blockFeature names the probe of CHARON.RESERVE's BLOCK option.
const blockFeature = "RESERVE BLOCK"

// reserved turns one RESERVE's reply (or error) into the Hold, or the rejection.
func (s *Semaphore) reserved(ctx context.Context, h *Hold, p *Pool, domain string, a ReserveArgs, v []any, err error) (*Hold, error) {
	if err != nil {
		if c := classify(err); s.failOpen && (c == classUnreachable || c == classTransient) {
			if s.onFailOpen != nil {
				s.onFailOpen(ctx, p.Name, domain, err)
			}
			h.Copies, h.Override, h.failOpenErr = a.Min, OverrideFailOpen, err
			h.Deadline = time.Now().Add(p.lease())
			return h, nil
		}
		return nil, err
	}
	if intAt(v, 0) == 0 {
		if s.kill.Load() {
			h.Copies, h.Override = a.Min, OverrideKillSwitch
			h.Deadline = time.Now().Add(p.lease())
			return h, nil
		}
		ra := time.Duration(intAt(v, 7)) * time.Millisecond
		if intAt(v, 7) < 0 {
			ra = -1
		}
		return nil, &RejectedError{RetryAfter: ra, LimitedBy: strAt(v, 5)}
	}
	h.ID, h.Copies, h.Deadline = strAt(v, 1), intAt(v, 0), time.UnixMilli(intAt(v, 6))
	h.fence = intAt(v, reserveFence)
	return h, nil
}

// hold builds a request of cmd on the hold: "<cmd> key hold [opts] [AT] [GLOBAL gkey]
// [GROUP keys...]".
func (h *Hold) request(cmd string, repeat transport.Repeat, opts ...any) (*transport.Request, error) {
	key, _ := KeyNames(h.s.prefix, h.pool.Name, h.domain)
	r := request(cmd, key, repeat, h.ID)
	r.Args = withAt(append(r.Args, opts...), h.at)
	if err := h.s.keyArgs(r, h.pool, h.groups, false); err != nil {
		return nil, err
	}
	return r, nil
}

// observe reports one hold command to the Observer.
func (h *Hold) observe(ctx context.Context, op Op, began time.Time, attempts int, err error) {
	if h.s.observer == nil {
		return
	}
	e := Event{Op: op, Pool: h.pool.Name, Domain: h.domain, Copies: h.Copies, Deadline: h.Deadline,
		Attempts: attempts, Latency: time.Since(began), Err: err, Outcome: OutcomeOK, Engine: h.s.Engine()}
	switch {
	case errors.Is(err, ErrLost):
		e.Outcome = OutcomeLost
	case err != nil:
		e.Outcome = OutcomeError
	}
	h.s.observer.Observe(ctx, e)
}

// Release gives back every copy. Releasing twice, or after the lease ended, is not
// an error.
func (h *Hold) Release(ctx context.Context) error { return h.ReleaseCopies(ctx, 0) }

// ReleaseCopies gives back n copies (0: all). Releasing all copies is safe to send
// again after a lost answer; releasing some is not, so it is sent once.
func (h *Hold) ReleaseCopies(ctx context.Context, n int64) error {
	if h.Override != OverrideNone || h.ID == "" {
		return nil
	}
	began := time.Now()
	repeat := transport.Idempotent
	var opts []any
	if n > 0 {
		opts, repeat = []any{"COPIES", n}, transport.Never
	}
	r, err := h.request("CHARON.RELEASE", repeat, opts...)
	if err != nil {
		return err
	}
	v, attempts, err := h.s.do(ctx, r)
	if err == nil {
		h.Copies = intAt(v, 1)
	}
	h.observe(ctx, OpRelease, began, attempts, err)
	return err
}

// Renew moves the deadline to now + the pool's lease; ErrLost when the server no
// longer holds the hold.
func (h *Hold) Renew(ctx context.Context) error {
	if h.Override != OverrideNone {
		h.Deadline = time.Now().Add(h.pool.lease())
		return nil
	}
	began := time.Now()
	r, err := h.request("CHARON.RENEW", transport.Idempotent, "LEASE", h.pool.lease().Milliseconds())
	if err != nil {
		return err
	}
	v, attempts, err := h.s.do(ctx, r)
	if err == nil {
		h.Copies, h.Deadline = intAt(v, 0), time.UnixMilli(intAt(v, 2))
	}
	h.observe(ctx, OpRenew, began, attempts, err)
	return err
}

// Transfer splits n copies (0: all) off the hold into a new hold that lives ttl for
// another process to Seize. The copies stay held throughout. A transfer whose answer
// was lost is sent again with the same ONCE token: it splits at most once.
func (h *Hold) Transfer(ctx context.Context, n int64, ttl time.Duration) (*Ticket, error) {
	if h.Override != OverrideNone {
		return nil, invalid("an overridden hold cannot be transferred")
	}
	if ttl < time.Millisecond {
		return nil, invalid("ttl %v", ttl)
	}
	began := time.Now()
	opts := []any{"TTL", ttl.Milliseconds()}
	if n > 0 {
		opts = append(opts, "COPIES", n)
	}
	r, err := h.request("CHARON.TRANSFER", transport.Once, opts...)
	if err != nil {
		return nil, err
	}
	v, attempts, err := h.s.do(ctx, r)
	var t *Ticket
	if err == nil {
		h.Copies = intAt(v, 3)
		t = &Ticket{ID: strAt(v, 1), Domain: h.domain, Groups: h.groups, Copies: intAt(v, 0), Deadline: time.UnixMilli(intAt(v, 2))}
	}
	h.observe(ctx, OpTransfer, began, attempts, err)
	return t, err
}

// Seize takes over a transferred hold with the pool's lease.
func (s *Semaphore) Seize(ctx context.Context, p *Pool, t *Ticket) (*Hold, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	began := time.Now()
	h := &Hold{s: s, pool: p, domain: t.Domain, groups: t.Groups, ID: t.ID}
	r, err := h.request("CHARON.SEIZE", transport.Idempotent, "LEASE", p.lease().Milliseconds())
	if err != nil {
		return nil, err
	}
	v, attempts, err := s.do(ctx, r)
	if err == nil {
		h.Copies, h.Deadline = intAt(v, 0), time.UnixMilli(intAt(v, 2))
		h.fence = intAt(v, seizeFence)
	}
	h.observe(ctx, OpSeize, began, attempts, err)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// Do reserves copies, runs fn while holding them, renews the lease every third of it
// in the background and releases them when fn returns. fn's context is cancelled with
// a cause wrapping ErrLost when a renewal finds the hold lost, or when the lease runs
// out before a renewal is answered (renewals failing: Redis unreachable, an error
// reply), so fn never goes on past the end of a lease it cannot prove it still holds;
// Do then returns an error wrapping ErrLost (together with fn's error). A rejection
// returns the *RejectedError without running fn.
//
// Otherwise Do returns fn's own result. A release that fails after fn returned (Redis
// unreachable just then) does not turn a finished job into a failed one: the copies
// come back when the lease ends, at the latest at the hold's deadline, and the
// Observer sees the failed release (OpRelease, OutcomeError, with that Deadline).
func (s *Semaphore) Do(ctx context.Context, p *Pool, domain string, a ReserveArgs, fn func(ctx context.Context, h *Hold) error) error {
	sent := time.Now()
	h, err := s.Reserve(ctx, p, domain, a)
	if err != nil {
		return err
	}
	lease := p.lease()
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The server stamped the hold's deadline after the request was sent, so the lease
	// lasts at least until sent+lease on this clock: past that, with no renewal
	// answered since, the hold may be gone. Each answered renewal moves this bound to
	// the time it was sent + lease.
	lapsed := fmt.Errorf("%w: the lease ran out before a renewal was answered", ErrLost)
	lapse := time.AfterFunc(time.Until(sent.Add(lease)), func() { cancel(lapsed) })
	defer lapse.Stop()
	done := make(chan struct{})
	renewed := make(chan error, 1)
	go func() {
		t := time.NewTicker(lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				renewed <- nil
				return
			case <-fctx.Done():
				if context.Cause(fctx) == lapsed {
					renewed <- lapsed
					return
				}
				<-done // the caller's context ended: fn is returning
				renewed <- nil
				return
			case <-t.C:
				start := time.Now()
				err := h.Renew(fctx)
				switch {
				case err == nil:
					if lapse.Stop() { // not fired yet: the hold lives until start+lease
						lapse.Reset(time.Until(start.Add(lease)))
					}
				case errors.Is(err, ErrLost):
					cancel(err)
					renewed <- err
					return
				}
			}
		}
	}()
	ferr := fn(fctx, h)
	close(done)
	lost := <-renewed
	if lost == nil {
		// The lapse timer or a renewal may have cancelled fn's context with ErrLost
		// just as fn returned, when the renewer's select saw done first: fn's
		// context is then the witness.
		if cause := context.Cause(fctx); errors.Is(cause, ErrLost) {
			lost = cause
		}
	}
	// Release with the caller's context: fn's may be cancelled. A failed release is
	// the Observer's business (the lease frees the copies), not the job's result.
	_ = h.Release(context.WithoutCancel(ctx))
	if lost != nil {
		return errors.Join(lost, ferr)
	}
	return ferr
}

// String describes the hold.
func (h *Hold) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hold %s: %d copies of %s for %s until %s", h.ID, h.Copies, h.pool.Name, h.domain, h.Deadline.UTC().Format(time.RFC3339Nano))
	return b.String()
}
