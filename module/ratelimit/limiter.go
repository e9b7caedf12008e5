package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/charon-redis/charon/module/internal/engine"
	"github.com/charon-redis/charon/module/internal/transport"
	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/module/ratelimit/internal/local"
	"github.com/redis/go-redis/v9"
)

// rediser is the part of go-redis the Limiter uses. *redis.Client (single node, or a
// primary found through Sentinel), *redis.ClusterClient, *redis.Ring, *redis.Conn and
// every redis.UniversalClient satisfy it.
type rediser interface {
	Process(ctx context.Context, cmd redis.Cmder) error
	Pipeline() redis.Pipeliner
	TxPipeline() redis.Pipeliner
}

// Defaults applied to zero Options fields.
const (
	// DefaultTimeout bounds each attempt of a request (connecting, waiting for a pool
	// connection, go-redis's own retries of unsent commands, and with go-redis's
	// ContextTimeoutEnabled also the answer). A limiter sits on every request's path:
	// when Redis is down, FailOpen must decide in milliseconds, not after go-redis's
	// dial retries (5 x 100ms per attempt, 4 attempts by default).
	DefaultTimeout          = transport.DefaultTimeout
	DefaultMinBackoff       = 10 * time.Millisecond
	DefaultMaxBackoff       = time.Second
	DefaultTransientRetries = 3
	// DefaultResends is how often a request whose answer was lost is sent again with
	// its ONCE token before the Limiter gives up with ErrOutcomeUnknown.
	DefaultResends = transport.DefaultRetries
)

// Options tune a Limiter. The zero value (or nil) is right for most uses: no fail-open,
// kill switch off, default backoff.
type Options struct {
	// KeyPrefix starts every key name; "" means DefaultPrefix ("rl"). See KeyNames.
	KeyPrefix string

	// Timeout bounds each attempt of a request, on top of the caller's context: 0
	// means DefaultTimeout (100ms), a negative value no bound but the context's. An
	// attempt whose time runs out before the command was sent counts as Redis being
	// unreachable (FailOpen applies); one that runs out after it was sent is sent
	// again with the same ONCE token (Resends), and ends in ErrOutcomeUnknown only
	// when no attempt is answered. go-redis applies a context deadline to reading the
	// answer only with its ContextTimeoutEnabled option; otherwise its ReadTimeout
	// applies.
	Timeout time.Duration
	// Resends bounds how often a request whose answer was lost (a timeout after
	// sending, a broken connection) is sent again, with the same ONCE token, within
	// the caller's context; without FailOpen, also how often an attempt that could not
	// be sent (no connection for a moment) is tried again. 0 means DefaultResends (3);
	// -1 none.
	Resends int

	// FailOpen grants a request when Redis cannot be reached: no connection could be
	// made (refused, or the dial timed out), a new connection's handshake got no
	// answer, no pool connection was free in time, the Timeout ran out before the
	// command was sent, or a cluster kept answering TRYAGAIN, CLUSTERDOWN, LOADING,
	// MASTERDOWN, MOVED, ASK or EXECABORT (a slot moving, a failover). In all these
	// cases the command provably did not run. The Result grants max(Min, 1) hits with
	// Override = OverrideFailOpen and OnFailOpen is called. Never used when the
	// outcome is unknown (ErrOutcomeUnknown), when the context ended, for a
	// misconfiguration (ErrMisconfigured) or for any other server error.
	FailOpen bool
	// OnFailOpen, when set, is called (synchronously) for every fail-open grant with
	// the error that caused it. Use it to count and alert.
	OnFailOpen func(ctx context.Context, resource, domain string, err error)

	// FailLocal, when set, keeps limiting while Redis cannot be reached (degraded
	// mode), instead of admitting everything (FailOpen) or failing every request.
	// While Redis answers, each reply teaches the Limiter this instance's share of
	// every resource's and domain's traffic; when a request finds Redis unreachable
	// (the conditions of FailOpen, and also a request sent and never answered), the
	// Limiter goes degraded: it decides every request locally, at once, enforcing its
	// share of each limit (the tiers with their windows, active times and cooldowns,
	// Hard, Global), and the Result says Local. A request at most every
	// ProbeInterval (500ms) starts a probe of Redis in the background; when Redis
	// answers, requests go to Redis again, bounded for the windows the local grants
	// still count in. The Observer sees OutcomeDegraded and OutcomeRecovered, and
	// each local decision. FailLocal takes precedence over FailOpen. See
	// docs/go-client.md, "When Redis is unreachable".
	FailLocal *LocalOptions

	// Observer, when set, sees every request's outcome (grant, rejection, kill-switch
	// or fail-open grant, error) with its resource and latency: the hook for metrics.
	// It is called synchronously, once per request, after the answer is known.
	Observer Observer

	// KillSwitch is the kill switch's initial state; see Limiter.SetKillSwitch.
	KillSwitch bool

	// MinBackoff and MaxBackoff bound the exponential backoff of the waiting loop
	// (min, 2*min, ... max, each ±25%). 0 means DefaultMinBackoff / DefaultMaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// TransientRetries bounds the retries after TRYAGAIN, CLUSTERDOWN, LOADING,
	// MASTERDOWN, MOVED, ASK or EXECABORT (the command did not run; a slot is moving
	// or a failover is under way). 0 means DefaultTransientRetries; -1 none.
	TransientRetries int

	// Engine picks what serves the requests: EngineAuto (detect the module, else run
	// the scripts), EngineModule or EngineScripts. See Engine.
	Engine Engine

	// Clock replaces the wall clock of the waiting loop. When set, every request is
	// sent with AT = Clock.Now() so the server uses the same time (tests, simulations,
	// replays). nil means the wall clock, and the server's own clock for requests.
	Clock Clock
}

// Limiter asks CHARON.RATE for hits. It is safe for concurrent use; create one per
// go-redis client and keep it: its requests share round trips.
//
// Every CHARON.RATE carries ONCE with a fresh random token. When its answer is lost
// (a timeout after sending, a broken connection, a failover), the request is sent
// again with the same token, and the server answers a replay with the original reply
// without counting it again; go-redis's own retries (Options.MaxRetries) resend the
// same token too. So a request is counted at most once and no go-redis setting needs
// to change. Requests that goroutines make at the same moment share round trips
// (auto-pipelining); a lone request is sent at once. Against a module without ONCE,
// each request travels alone inside MULTI/EXEC, which go-redis never sends twice, and
// a lost answer is ErrOutcomeUnknown.
//
// Before its first request, and again after connection trouble, the Limiter checks
// whether the server has the module (else it runs the same rules as server-side
// scripts; Options.Engine, Limiter.Engine) and that a cluster is not reached through
// a plain *redis.Client, which is an error wrapping ErrMisconfigured that names the
// fix.
type Limiter struct {
	tr         *transport.Transport
	prefix     string
	failOpen   bool
	onFailOpen func(ctx context.Context, resource, domain string, err error)
	observer   Observer
	kill       atomic.Bool
	clock      Clock
	sendClock  bool // Options.Clock was set: requests carry AT = clock.Now()
	loop       waitLoop
	deg        *degraded // FailLocal; nil without
}

// NewLimiter returns a Limiter over rdb. opt may be nil. On a *redis.Client it adds a
// go-redis hook that remembers the last failed dial, so that an attempt the Timeout
// ended while go-redis was retrying its dials still reports why.
func NewLimiter(rdb rediser, opt *Options) *Limiter {
	var o Options
	if opt != nil {
		o = *opt
	}
	l := &Limiter{
		prefix:     o.KeyPrefix,
		failOpen:   o.FailOpen,
		onFailOpen: o.OnFailOpen,
		observer:   o.Observer,
		clock:      o.Clock,
		sendClock:  o.Clock != nil,
	}
	if l.prefix == "" {
		l.prefix = DefaultPrefix
	}
	if l.clock == nil {
		l.clock = wallClock{}
	}
	probe, _ := KeyNames(l.prefix, "charon-probe", "once", false)
	l.tr = transport.New(rdb, transport.Config{
		Name:           "ratelimit",
		Timeout:        o.Timeout,
		Retries:        o.Resends,
		OutcomeUnknown: ErrOutcomeUnknown,
		Require:        []string{"CHARON.RATE"},
		Scripts:        transport.ScriptEngine{},
		Use:            engine.Use(o.Engine),
		Probes: map[string]transport.Probe{
			"CHARON.RATE": {Args: []any{"CHARON.RATE", probe, "DRYRUN", "LIMITS", "1/1s"}},
		},
	})
	b := backoff{min: o.MinBackoff, max: o.MaxBackoff}
	if b.min <= 0 {
		b.min = DefaultMinBackoff
	}
	if b.max <= 0 {
		b.max = DefaultMaxBackoff
	}
	if b.max < b.min {
		b.max = b.min
	}
	retries := o.TransientRetries
	switch {
	case retries == 0:
		retries = DefaultTransientRetries
	case retries < 0:
		retries = 0
	}
	l.loop = waitLoop{clock: l.clock, rand: rand.Float64, backoff: b, transientRetries: retries}
	if o.FailLocal != nil {
		l.deg = newDegraded(o.FailLocal, l.prefix)
		l.failOpen = false // FailLocal takes precedence
	}
	l.kill.Store(o.KillSwitch)
	return l
}

// SetKillSwitch turns the kill switch on or off, at once, for every request of this
// Limiter. While it is on, a request the server rejects is granted anyway (max(Min, 1)
// hits, never more than asked), reported by Override = OverrideKillSwitch with the
// server's fields kept, and never waited for. The server records nothing for a
// rejected request, so switching it on cannot distort the counts. Use it to roll out
// new limits in observe-only mode, or to stop limiting during an incident.
func (l *Limiter) SetKillSwitch(on bool) { l.kill.Store(on) }

// KillSwitch reports whether the kill switch is on.
func (l *Limiter) KillSwitch() bool { return l.kill.Load() }

// Keys returns the key names a request for (res, domain) uses; see KeyNames. A nil
// res has no keys.
func (l *Limiter) Keys(res *Resource, domain string) (key, globalKey string) {
	if res == nil {
		return "", ""
	}
	return KeyNames(l.prefix, res.Name, domain, res.hasGlobal())
}

// RequestArgs are the arguments of one request beyond resource and domain
// (Limiter.RequestWith).
type RequestArgs struct {
	// Max is the most hits wanted; 0 means 1. At most MaxCount.
	Max int64
	// Min is the fewest hits worth having, 0..Max. The server grants the largest
	// number in [Min, Max] that the limits allow, or rejects. A grant is never 0 hits,
	// so Min 0 behaves as Min 1.
	Min int64
	// MaxWait, when positive, lets the request wait for a rejection to clear: it is
	// sent again after RetryAfter (with backoff and jitter) as long as the answer can
	// arrive within MaxWait and the context's deadline. 0 means answer at once.
	MaxWait time.Duration
	// At, when not zero, is the request's time (CHARON.RATE AT) instead of the
	// server's clock: replays and tests. Retries while waiting move it forward by the
	// time waited.
	At time.Time
	// DryRun asks what the answer would be; nothing is recorded.
	DryRun bool
}

// Allow asks for one hit and does not wait (redis_rate's Allow). The limit can be
// written inline: limiter.Allow(ctx, ratelimit.PerSecond("api", 10), userID).
func (l *Limiter) Allow(ctx context.Context, res *Resource, domain string) (*Result, error) {
	return l.RequestWith(ctx, res, domain, RequestArgs{Min: 1, Max: 1})
}

// AllowN asks for exactly n hits, all or nothing, and does not wait (redis_rate's
// AllowN). n must be in [1, MaxCount].
func (l *Limiter) AllowN(ctx context.Context, res *Resource, domain string, n int64) (*Result, error) {
	if n < 1 {
		return nil, l.refuse(ctx, res, domain, invalid("n %d is outside [1, %d]", n, int64(MaxCount)))
	}
	return l.RequestWith(ctx, res, domain, RequestArgs{Min: n, Max: n})
}

// AllowAtMost asks for as many hits as the limits allow, at most n, at least 1, and
// does not wait (redis_rate's AllowAtMost); Result.Granted says how many. n must be
// in [1, MaxCount].
func (l *Limiter) AllowAtMost(ctx context.Context, res *Resource, domain string, n int64) (*Result, error) {
	if n < 1 {
		return nil, l.refuse(ctx, res, domain, invalid("n %d is outside [1, %d]", n, int64(MaxCount)))
	}
	return l.RequestWith(ctx, res, domain, RequestArgs{Min: 1, Max: n})
}

// Request asks for between min and max hits (1 <= max) and does not wait.
func (l *Limiter) Request(ctx context.Context, res *Resource, domain string, min, max int64) (*Result, error) {
	if max < 1 {
		return nil, l.refuse(ctx, res, domain, invalid("max %d is outside [1, %d]", max, int64(MaxCount)))
	}
	return l.RequestWith(ctx, res, domain, RequestArgs{Min: min, Max: max})
}

// Reset forgets what domain used of res: it deletes the domain's key (redis_rate's
// Reset). The resource-wide Global count is shared by all domains and is left alone.
func (l *Limiter) Reset(ctx context.Context, res *Resource, domain string) error {
	if res == nil || res.Name == "" || domain == "" {
		return invalid("reset needs a named resource and a domain")
	}
	key, _ := l.Keys(res, domain)
	_, _, err := l.tr.Do(ctx, &transport.Request{Args: []any{"DEL", key}, Keys: []string{key}, Repeat: transport.Idempotent, RetryUnsent: true})
	return err
}

// RequestWith asks for hits of res on behalf of domain; the other calls are shortcuts
// for it. It returns the server's answer (Granted 0 is a rejection, not an error), or
// an error:
//   - wrapping ErrInvalid when the arguments break the contract (nothing was sent);
//   - wrapping ErrOutcomeUnknown when the command may have run but no answer came
//     back, after every resend with the same ONCE token (Options.Resends);
//   - wrapping ErrMisconfigured when the server lacks the module or a cluster is
//     reached through a non-cluster client;
//   - wrapping the server's redis.Error, or go-redis's error (a *net.OpError for a
//     network failure), otherwise.
//
// With FailOpen, an unreachable Redis gives a grant instead of an error. When the
// context ends while the request waits, the last rejection is returned together with
// the context's error.
func (l *Limiter) RequestWith(ctx context.Context, res *Resource, domain string, a RequestArgs) (*Result, error) {
	began := time.Now()
	var info requestInfo
	r, err := l.requestWith(ctx, res, domain, a, &info)
	if l.observer != nil {
		if err == nil && info.failOpenErr != nil {
			l.observe(ctx, res, domain, r, info.failOpenErr, info.attempts, time.Since(began))
		} else {
			l.observe(ctx, res, domain, r, err, info.attempts, time.Since(began))
		}
	}
	return r, err
}

// requestInfo is what requestWith tells the observer beyond its result.
type requestInfo struct {
	failOpenErr error // the error a fail-open grant replaced
	attempts    int   // times the command was sent
}

// refuse reports an argument error to the observer and returns it.
func (l *Limiter) refuse(ctx context.Context, res *Resource, domain string, err error) error {
	if l.observer != nil {
		l.observe(ctx, res, domain, nil, err, 0, 0)
	}
	return err
}

// requestWith is RequestWith without the observer; info receives the error a
// fail-open grant replaced and the number of times the command was sent.
func (l *Limiter) requestWith(ctx context.Context, res *Resource, domain string, a RequestArgs, info *requestInfo) (*Result, error) {
	if err := res.Validate(); err != nil {
		return nil, err
	}
	if domain == "" {
		return nil, invalid("resource %q: empty domain", res.Name)
	}
	if a.Max == 0 {
		a.Max = 1
	}
	if a.Max < 1 || a.Max > MaxCount {
		return nil, invalid("max %d is outside [1, %d]", a.Max, int64(MaxCount))
	}
	if a.Min < 0 || a.Min > a.Max {
		return nil, invalid("min %d is outside [0, max=%d]", a.Min, a.Max)
	}
	if a.MaxWait < 0 {
		return nil, invalid("negative max wait %v", a.MaxWait)
	}
	if !a.At.IsZero() {
		if ms := a.At.UnixMilli(); ms < 0 || ms > rate.MaxAt {
			return nil, invalid("at %v is outside the server's range", a.At)
		}
	}

	key, gkey := l.Keys(res, domain)
	args := l.rateArgs(res, key, gkey, a)
	nBase := len(args)
	var lim local.Limits
	if l.deg != nil {
		lim = localLimits(res)
	}

	start := l.clock.Now()
	attempts := 0 // times the command was sent, resends included
	// One ONCE token for the whole logical request: every attempt (after a rejection,
	// a TRYAGAIN, a lost answer) carries it, so it is granted and counted at most once.
	token := transport.NewToken()
	step := func(ctx context.Context, _ int) (*Result, error) {
		now := l.clock.Now()
		at := now
		if !a.At.IsZero() {
			at = a.At.Add(now.Sub(start))
		}
		args, a := args[:nBase], a
		if l.deg != nil {
			if l.deg.on.Load() {
				l.maybeProbe(now)
				return l.decideLocally(res, domain, &lim, a, at)
			}
			// Back on Redis after an outage: while the outage's local grants still
			// count in a window, the local share bounds what Redis may grant (the hits
			// are taken locally first).
			d, on, err := l.deg.table.Admit(res.Name, domain, &lim, a.Min, a.Max, a.DryRun, at.UnixMilli())
			switch {
			case err != nil:
				return nil, err
			case on && d.Granted == 0:
				return l.localResult(res, &d, a)
			case on && d.Granted < a.Max:
				a.Max = d.Granted
				args = l.rateArgs(res, key, gkey, a)
			}
		}
		switch {
		case !a.At.IsZero():
			args = append(args, "AT", at.UnixMilli())
		case l.sendClock:
			args = append(args, "AT", now.UnixMilli())
		}
		r, sent, err := l.send(ctx, key, gkey, token, args, a)
		attempts += sent
		if err != nil {
			return nil, err
		}
		if l.deg != nil {
			l.deg.table.Observe(res.Name, domain, local.Reply{Granted: r.Granted, DomainHits: r.DomainHits,
				GlobalHits: r.GlobalHits, DryRun: a.DryRun}, at.UnixMilli())
		}
		r.explain(res, minGrant(a), a.Max)
		if r.Granted == 0 && l.kill.Load() {
			r.Granted, r.Override = minGrant(a), OverrideKillSwitch
		}
		return r, nil
	}
	r, err := l.loop.run(ctx, a.MaxWait, step)
	if err != nil && l.deg != nil && redisUnreachable(err) {
		// Redis cannot be reached: decide locally from now on, waiting locally for
		// what is left of MaxWait.
		if l.enter(ctx, res, domain, err, start) {
			wait := time.Duration(0)
			if a.MaxWait > 0 {
				wait = max(a.MaxWait-l.clock.Now().Sub(start), time.Nanosecond)
			}
			r, err = l.loop.run(ctx, wait, step)
		} else {
			// The request began before Redis came back: the answer it lost belongs to
			// the outage that ended.
			r, err = l.decideLocally(res, domain, &lim, a, l.clock.Now())
		}
	}
	info.attempts = attempts
	if r != nil {
		r.Attempts = attempts
	}
	if err == nil {
		return r, nil
	}
	if l.failOpen {
		if c := classify(err); c == classUnreachable || c == classTransient {
			if l.onFailOpen != nil {
				l.onFailOpen(ctx, res.Name, domain, err)
			}
			info.failOpenErr = err
			return &Result{Granted: minGrant(a), GlobalHits: -1, Override: OverrideFailOpen, Attempts: attempts}, nil
		}
	}
	return r, err
}

// rateArgs is a request's CHARON.RATE command line, without AT.
func (l *Limiter) rateArgs(res *Resource, key, gkey string, a RequestArgs) []any {
	n := 20 // CHARON.RATE key MAX n MIN n HARD n GLOBAL k n DRYRUN LIMITS s AT t
	if !sendCompact {
		n += 6 * len(res.Tiers)
	}
	args := make([]any, 0, n)
	args = append(args, "CHARON.RATE", key)
	// The server's defaults (MAX 1, MIN = MAX) go unsaid: fewer arguments to parse.
	if a.Max != 1 {
		args = append(args, "MAX", a.Max)
	}
	if a.Min != a.Max {
		args = append(args, "MIN", a.Min)
	}
	if res.Hard > 0 {
		args = append(args, "HARD", res.Hard)
	}
	if gkey != "" {
		args = append(args, "GLOBAL", gkey, res.globalArg())
	}
	if a.DryRun {
		args = append(args, "DRYRUN")
	}
	return res.appendLimitArgs(args)
}

// minGrant is what an override grants: the fewest hits the caller can use.
func minGrant(a RequestArgs) int64 { return max(a.Min, 1) }

// send sends one CHARON.RATE through the transport (ONCE, batching, resends) and
// decodes the reply; sent is the number of times the command was sent.
func (l *Limiter) send(ctx context.Context, key, gkey, token string, args []any, a RequestArgs) (*Result, int, error) {
	// A Limiter that fails open or decides locally does so at once; one that does
	// neither tries again while its context lets it.
	req := transport.Request{Args: args, Keys: []string{key}, Repeat: transport.Once, Token: token, RetryUnsent: !l.failOpen && l.deg == nil}
	if gkey != "" {
		req.Keys = append(req.Keys, gkey)
	}
	if a.DryRun {
		req.Repeat = transport.Idempotent
	}
	v, st, err := l.tr.Do(ctx, &req)
	if err != nil {
		return nil, st.Attempts, err
	}
	r, err := decodeReply(v)
	if err == nil {
		switch {
		case r.Granted > a.Max:
			err = fmt.Errorf("%w: granted %d, more than max %d", errBadReply, r.Granted, a.Max)
		case r.Granted > 0 && r.Granted < a.Min:
			err = fmt.Errorf("%w: granted %d, less than min %d", errBadReply, r.Granted, a.Min)
		}
	}
	if err != nil {
		if a.DryRun {
			return nil, st.Attempts, fmt.Errorf("ratelimit: CHARON.RATE %s: %w", key, err)
		}
		// The server ran the command; what it recorded is unknown to us.
		return nil, st.Attempts, fmt.Errorf("ratelimit: CHARON.RATE %s: %w: %w", key, ErrOutcomeUnknown, err)
	}
	return &r, st.Attempts, nil
}
