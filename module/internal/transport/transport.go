// Package transport is how the Charon clients (module/ratelimit, module/concurrency,
// module/unread) reach Redis through a user's go-redis client: one place for the
// decision path.
//
//   - Batched: concurrent requests share round trips (auto-pipelining, batch.go); a
//     lone request is sent at once.
//   - Bounded: every attempt has a deadline (Config.Timeout) on top of the caller's.
//   - Exactly once: a request whose command takes ONCE carries a fresh random token;
//     when its answer is lost (a timeout after sending, a broken connection) it is
//     sent again with the same token within the caller's deadline, and the server
//     answers a replay with the original reply without counting it again. A request
//     that is neither idempotent nor ONCE-capable (an older module) travels inside
//     MULTI/EXEC, which go-redis never sends twice, and is never sent again.
//   - Classified: every error says what it proves (package outcome) and wraps its
//     cause, so errors.As finds the *net.OpError or the redis.Error.
//   - Checked: before the first request, and again after connection trouble, the
//     server must know the commands (COMMAND INFO) and a cluster node must be reached
//     through a cluster client; misconfiguration is an error naming the fix.
//
// Engine is the seam where a request (keys and arguments) becomes the command sent:
// the module's own commands by default, a server-side script where the module cannot
// be loaded.
package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/charon-redis/charon/module/internal/outcome"
)

// Rediser is the part of go-redis the transport uses: *redis.Client (a single node,
// or a primary through Sentinel), *redis.ClusterClient, *redis.Ring, *redis.Conn and
// every redis.UniversalClient satisfy it.
type Rediser interface {
	Process(ctx context.Context, cmd redis.Cmder) error
	Pipeline() redis.Pipeliner
	TxPipeline() redis.Pipeliner
}

// Repeat says whether a request may be sent again after its answer was lost.
type Repeat uint8

const (
	// Never: a second copy could count twice (and the server cannot tell). Sent once,
	// inside MULTI/EXEC.
	Never Repeat = iota
	// Idempotent: running it twice has the effect of running it once (reads, DRYRUN,
	// RELEASE of a whole hold, RENEW, SEIZE, DEL). Batched, and sent again freely.
	Idempotent
	// Once: the command takes ONCE token. Batched and sent again with the same token
	// where the server supports ONCE (Config.Probes); treated as Never where it does not.
	Once
)

// Request is one logical request.
type Request struct {
	// Args is the command as the module takes it: name, first key, options.
	Args []any
	// Tail goes after everything the transport adds (ONCE): a clause that must come
	// last, such as CHARON.RESERVE's GROUP.
	Tail []any
	// Keys are the command's keys, first key first (what a script engine passes as
	// KEYS).
	Keys []string
	// Repeat says whether and how the request may be sent again.
	Repeat Repeat
	// RetryUnsent asks for another attempt (within Config.Retries and the caller's
	// context) when one was provably not sent (Redis unreachable for a moment: a dial
	// or handshake that timed out, no round trip free in time), except after a refused
	// connection (nothing listens: the server is down). A caller that fails open
	// leaves it off: it decides at once instead.
	RetryUnsent bool
	// Block is how long the command may wait on the server (CHARON.RESERVE ... BLOCK):
	// it goes on a connection of its own, never in a shared round trip (Redis answers
	// a connection's commands in order, so a waiting command would hold back the
	// others), and its attempt's deadline is Timeout + Block.
	Block time.Duration
	// Token is the ONCE token of a Repeat Once request; "" means a fresh one. A caller
	// that sends one logical request again (waiting after a rejection, a TRYAGAIN)
	// passes the same token each time: a rejection is not remembered, a grant is, so
	// the request is counted at most once whatever go-redis did underneath.
	Token string
}

// Name is the command's name (Args[0]).
func (r *Request) Name() string {
	if len(r.Args) == 0 {
		return ""
	}
	s, _ := r.Args[0].(string)
	return s
}

// describe names the request in errors: "CHARON.RATE rl:api:{u}".
func (r *Request) describe() string {
	if len(r.Keys) > 0 {
		return r.Name() + " " + r.Keys[0]
	}
	return r.Name()
}

// Engine turns a request into the command sent.
type Engine interface {
	// Command returns the arguments of the command that carries r, appended to dst;
	// once is the request's ONCE token ("" for none). An error (a redis.Error, the
	// server's words) refuses the request before anything is sent.
	Command(dst []any, r *Request, once string) ([]any, error)
	// NoScript returns the command to send instead of args after the server answered
	// NOSCRIPT (nothing ran), or nil.
	NoScript(args []any) []any
}

// ModuleEngine sends the module's own commands: Args, then ONCE token, then Tail.
type ModuleEngine struct{}

// Command implements Engine.
func (ModuleEngine) Command(dst []any, r *Request, once string) ([]any, error) {
	dst = append(dst, r.Args...)
	if once != "" {
		dst = append(dst, "ONCE", once)
	}
	return append(dst, r.Tail...), nil
}

// NoScript implements Engine: the module's commands are not scripts.
func (ModuleEngine) NoScript([]any) []any { return nil }

// Probe is a harmless request (a DRYRUN, or a hold that does not exist) that tells
// whether the server has a feature: ONCE on a command (Config.Probes keyed by the
// command's name; the transport adds ONCE and a token), or another option (keyed by
// any other name; Supports reports it). The server has it when it answers, or answers
// an error that starts with Taken (the parse accepted the option and the request
// failed later).
type Probe struct {
	Args  []any
	Taken string
	// NoOnce: the probe is about another option; send Args as they are.
	NoOnce bool
}

// Defaults.
const (
	// DefaultTimeout bounds each attempt when Config.Timeout is 0: the clients'
	// documented default.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultRetries is how often a request whose answer was lost is sent again (with
	// the same ONCE token, or because it is idempotent) before ErrOutcomeUnknown.
	DefaultRetries = 3
	// DefaultMaxInflight is how many round trips may be under way at once before
	// requests queue for the next one.
	DefaultMaxInflight = 1
	// DefaultMaxBatch bounds the requests of one round trip.
	DefaultMaxBatch = 512
	// recheckAfter is how long a misconfiguration found by a check is kept before the
	// server is checked again.
	recheckAfter = time.Second
)

// Config sets a Transport up.
type Config struct {
	// Name starts every error ("ratelimit", "concurrency", "unread").
	Name string
	// Timeout bounds each attempt (queueing for a round trip, connecting, sending,
	// and with go-redis's ContextTimeoutEnabled also the answer); 0 means
	// DefaultTimeout, negative none but the caller's context.
	Timeout time.Duration
	// Retries is how often a request is sent again after a lost answer (or, with
	// Request.RetryUnsent, after an attempt that could not be sent); 0 means
	// DefaultRetries, negative none.
	Retries int
	// OutcomeUnknown is the package's sentinel, wrapped by every error whose request
	// may have run without an answer reaching the caller.
	OutcomeUnknown error
	// Require lists the commands the server must know (checked with COMMAND INFO).
	Require []string
	// Probes tell whether the server takes ONCE on a command (keyed by its name) or
	// has another feature (keyed by the feature's name, NoOnce set).
	Probes map[string]Probe
	// Engine makes the module's commands; nil means ModuleEngine.
	Engine Engine
	// Scripts is the script engine: it serves the requests where the server has none
	// of the Require'd commands (Use UseAuto), or always (UseScripts). nil means none:
	// such a server is misconfigured.
	Scripts Engine
	// Use picks the engine (UseAuto: detected at each check).
	Use Use
	// MaxInflight and MaxBatch shape the batching; 0 means the defaults.
	MaxInflight int
	MaxBatch    int
}

// Transport sends requests; it is safe for concurrent use.
type Transport struct {
	rdb     Rediser
	cfg     Config
	engine  Engine
	retries int
	cluster bool // a *redis.ClusterClient: MOVED and ASK are its business
	plain   bool // a *redis.Client: check it does not point at a cluster node
	// precise: go-redis does not retry a command by itself (a *redis.Client with
	// MaxRetries -1), so an error says what became of the command's only attempt.
	// Otherwise a command that was sent and lost can come back with the error of a
	// later internal attempt (a refused dial, a context that expired in go-redis's
	// backoff), so every network error may hide a sent command.
	precise bool
	dials   *dialRecorder // nil unless rdb is a *redis.Client
	b       batcher
	chk     checker
	kind    atomic.Uint32 // the Kind in use: set by each check
}

// New returns a Transport over rdb.
func New(rdb Rediser, cfg Config) *Transport {
	t := &Transport{rdb: rdb, cfg: cfg, engine: cfg.Engine, retries: cfg.Retries}
	if t.engine == nil {
		t.engine = ModuleEngine{}
	}
	switch {
	case t.cfg.Timeout == 0:
		t.cfg.Timeout = DefaultTimeout
	case t.cfg.Timeout < 0:
		t.cfg.Timeout = 0
	}
	switch {
	case t.retries == 0:
		t.retries = DefaultRetries
	case t.retries < 0:
		t.retries = 0
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		t.cluster = true
	case *redis.Client:
		t.plain = true
		t.precise = c.Options().MaxRetries == 0
		t.dials = &dialRecorder{}
		c.AddHook(t.dials)
	}
	switch {
	case cfg.Use == UseScripts && cfg.Scripts != nil:
		t.kind.Store(uint32(KindScripts))
	case cfg.Use == UseModule || cfg.Scripts == nil:
		t.kind.Store(uint32(KindModule))
	}
	t.b = batcher{rdb: rdb, maxInflight: cfg.MaxInflight, maxBatch: cfg.MaxBatch}
	if t.b.maxInflight <= 0 {
		t.b.maxInflight = DefaultMaxInflight
	}

	if t.b.maxBatch <= 0 {
		t.b.maxBatch = DefaultMaxBatch
	}
	return t
}

// Engine reports the engine in use: the one the last check chose (KindUnknown before
// the first check with UseAuto).
func (t *Transport) Engine() Kind { return Kind(t.kind.Load()) }

// engineOf returns the engine of kind k.
func (t *Transport) engineOf(k Kind) Engine {
	if k == KindScripts {
		return t.cfg.Scripts
	}
	return t.engine
}

// Cluster reports whether rdb is a *redis.ClusterClient.
func (t *Transport) Cluster() bool { return t.cluster }

// Supports reports whether the last check found the feature that Config.Probes names
// (false before a check).
func (t *Transport) Supports(feature string) bool { return t.chk.takesOnce(feature) }

// ReadBound is the longest a command may wait on the server before go-redis gives up
// reading its answer: the client's ReadTimeout (less a margin) unless go-redis reads
// with the context's deadline (ContextTimeoutEnabled); 0 means no bound known.
func (t *Transport) ReadBound() time.Duration {
	var rt time.Duration
	switch c := t.rdb.(type) {
	case *redis.Client:
		if o := c.Options(); !o.ContextTimeoutEnabled {
			rt = o.ReadTimeout
		}
	case *redis.ClusterClient:
		if o := c.Options(); !o.ContextTimeoutEnabled {
			rt = o.ReadTimeout
		}
	}
	if rt <= 0 {
		return 0
	}
	return max(rt-rt/10-100*time.Millisecond, rt/2)
}

// Timeout is the per-attempt bound (0: none).
func (t *Transport) Timeout() time.Duration { return t.cfg.Timeout }

// AttemptContext bounds one attempt by the Timeout.
func (t *Transport) AttemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if t.cfg.Timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, t.cfg.Timeout)
}

// Stats is what the transport did for one request.
type Stats struct {
	// Attempts is the number of times the command was handed to go-redis (0 when it
	// never was: a check failed, or no round trip came free in time).
	Attempts int
	// Once reports that the request carried a ONCE token.
	Once bool
	// Engine is the engine the request went to (KindUnknown when no check could run).
	Engine Kind
}

// Do sends r and returns the server's reply. The error, if any, is an *Error.
func (t *Transport) Do(ctx context.Context, r *Request) (any, Stats, error) {
	var st Stats
	reply, err, gone := t.do(ctx, r, &st)
	if gone {
		// The server does not know the module's command (UseAuto): the module is gone
		// (a failover or restart onto a server without it). Nothing ran: detect again
		// and send it to the engine found.
		reply, err, _ = t.do(ctx, r, &st)
	}
	return reply, st, err
}

// do is one try of Do; gone reports an unknown command of the module under UseAuto
// (nothing ran; the caller checks the server again and tries once more).
func (t *Transport) do(ctx context.Context, r *Request, st *Stats) (reply any, err error, gone bool) {
	tries := 0 // attempts beyond the first, resends of lost answers included
	for {
		err := t.Ready(ctx)
		if err == nil {
			break
		}
		var e *Error
		if errors.As(err, &e) && e.checkNoAnswer {
			// The check's answer was lost on the way (a flaky network), which proves
			// nothing about the request: send it, and let its own answer decide.
			break
		}
		if r.RetryUnsent && Classify(err) == outcome.Unreachable && !refused(err) && tries < t.retries && ctx.Err() == nil {
			tries++
			continue
		}
		return nil, err, false
	}
	kind := t.Engine()
	st.Engine = kind
	eng := t.engineOf(kind)
	repeat := r.Repeat
	token := ""
	if repeat == Once {
		if t.chk.takesOnce(r.Name()) {
			token = r.Token
			if token == "" {
				token = NewToken()
			}
			st.Once = true
		} else {
			repeat = Never
		}
	}
	args, err := eng.Command(make([]any, 0, len(r.Args)+len(r.Tail)+2), r, token)
	if err != nil {
		return nil, t.errorf(outcome.Server, nil, r.describe(), err), false
	}
	if repeat == Never {
		st.Attempts++
		reply, err := t.sendTx(ctx, r, args, eng)
		return reply, err, t.moduleGone(kind, r, err)
	}

	maySent := false // an earlier attempt may have run
	for {
		began := time.Now()
		var actx context.Context
		var cancel context.CancelFunc
		var err error
		cmd := (*redis.Cmd)(nil)
		if r.Block > 0 {
			actx, cancel = ctx, func() {}
			if t.cfg.Timeout > 0 {
				actx, cancel = context.WithTimeout(ctx, t.cfg.Timeout+r.Block)
			}
			cmd = redis.NewCmd(actx, args...)
			err = t.rdb.Process(actx, cmd)
		} else {
			actx, cancel = t.AttemptContext(ctx)
			cmd = redis.NewCmd(actx, args...)
			err = t.b.do(actx, cmd)
		}
		cancel()
		if !errors.Is(err, errQueued) {
			st.Attempts++ // handed to go-redis
		}
		if err == nil {
			return cmd.Val(), nil, false
		}
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			// The server has not seen the script (a restart, a failover, a new node,
			// SCRIPT FLUSH): nothing ran. Send it whole, and check the server again
			// before the next request.
			if again := eng.NoScript(args); again != nil {
				t.chk.suspect()
				args = again
				continue
			}
		}
		err = t.withDialCause(err, began)
		var cls outcome.Class
		var kindErr error
		switch {
		case errors.Is(err, errQueued):
			cls, kindErr = outcome.Unreachable, t.notSent()
			if ctx.Err() != nil {
				cls = outcome.GaveUp
			}
		case errors.Is(err, errNoAnswer):
			cls = outcome.Unknown
		default:
			cls = outcome.ClassifyCtx(ctx, err, false)
			switch {
			case cls == outcome.Server || cls == outcome.Transient:
				if !maySent && t.moduleGone(kind, r, err) {
					return nil, err, true
				}
				if e := t.misconfigured(r, err); e != nil {
					return nil, e, false
				}
			case !t.precise:
				// go-redis's own retries may hide an attempt that was sent.
				cls = outcome.Unknown
			case cls == outcome.Unreachable && ctx.Err() == nil && actx.Err() != nil:
				kindErr = t.notSent()
			}
		}
		if cls == outcome.Unknown || cls == outcome.Unreachable {
			t.chk.suspect()
		}
		if cls == outcome.Unknown {
			maySent = true
		}
		// Ask again while an earlier attempt may have run and no answer says what
		// became of it: with the same token a replay returns the original reply. Ask
		// again, too, when nothing was sent and the caller would rather wait than fail
		// open. A server's "not now" (Transient) goes back to the caller, which waits
		// and asks again with the same token.
		again := maySent && (cls == outcome.Unknown || cls == outcome.Unreachable) ||
			!maySent && cls == outcome.Unreachable && r.RetryUnsent && !refused(err)
		if again && tries < t.retries && ctx.Err() == nil {
			tries++
			continue
		}
		if maySent && cls != outcome.Server {
			// An attempt may have run: the outcome is unknown (counted at most once).
			// The class stays what the last attempt proves, so a Redis that cannot be
			// reached now still lets FailOpen decide.
			kindErr = t.cfg.OutcomeUnknown
		}
		return nil, t.errorf(cls, kindErr, r.describe(), err), false
	}
}

// moduleGone reports an unknown command of the module while the engine is detected
// (UseAuto with a script engine): the server in front of us has no module now. It
// asks for a check before the next request.
func (t *Transport) moduleGone(kind Kind, r *Request, err error) bool {
	if kind != KindModule || t.cfg.Use != UseAuto || t.cfg.Scripts == nil || err == nil ||
		!unknownCommand(err) || !t.required(r.Name()) {
		return false
	}
	t.chk.forget()
	return true
}

// sendTx sends args alone inside MULTI/EXEC and classifies the outcome: the
// transaction runs only once EXEC is read, so a failed write proves nothing ran.
func (t *Transport) sendTx(ctx context.Context, r *Request, args []any, eng Engine) (any, error) {
	began := time.Now()
	actx, cancel := t.AttemptContext(ctx)
	defer cancel()
	pipe := t.rdb.TxPipeline()
	cmd := pipe.Do(actx, args...)
	_, err := pipe.Exec(actx)
	if cerr := cmd.Err(); cerr != nil {
		// The command's own error (e.g. TRYAGAIN while queueing) says more than EXECABORT.
		err = cerr
	}
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		if again := eng.NoScript(args); again != nil {
			// Nothing ran: the same transaction with the script's text.
			t.chk.suspect()
			pipe = t.rdb.TxPipeline()
			cmd = pipe.Do(actx, again...)
			_, err = pipe.Exec(actx)
			if cerr := cmd.Err(); cerr != nil {
				err = cerr
			}
		}
	}
	if err == nil {
		return cmd.Val(), nil
	}
	err = t.withDialCause(err, began)
	cls := outcome.ClassifyCtx(ctx, err, true)
	var kind error
	switch cls {
	case outcome.Server, outcome.Transient:
		if e := t.misconfigured(r, err); e != nil {
			return nil, e
		}
	case outcome.Unknown:
		t.chk.suspect()
		kind = t.cfg.OutcomeUnknown
	case outcome.Unreachable:
		t.chk.suspect()
		if ctx.Err() == nil && actx.Err() != nil {
			kind = t.notSent()
		}
	}
	return nil, t.errorf(cls, kind, r.describe(), err)
}

// Pipeline runs cmds as one go-redis pipeline, bounded by ctx and, when bounded, by
// one attempt's Timeout (a caller that batches itself, such as unread's per-node
// pipelines, may send more than one Timeout's worth; it calls Ready first). It returns
// go-redis's error, if any, classified; each command keeps its own reply or error.
func (t *Transport) Pipeline(ctx context.Context, cmds []redis.Cmder, bounded bool) error {
	began := time.Now()
	actx, cancel := ctx, context.CancelFunc(func() {})
	if bounded {
		actx, cancel = t.AttemptContext(ctx)
	}
	defer cancel()
	pipe := t.rdb.Pipeline()
	for _, c := range cmds {
		_ = pipe.Process(actx, c)
	}
	_, err := pipe.Exec(actx)
	if err == nil {
		return nil
	}
	fillErrs(cmds, err)
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return nil // a command's own error: each command says it
	}
	t.chk.suspect()
	err = t.withDialCause(err, began)
	cls := outcome.ClassifyCtx(ctx, err, false)
	var kind error
	if cls == outcome.Unreachable && ctx.Err() == nil && actx.Err() != nil {
		kind = t.notSent()
	}
	return t.errorf(cls, kind, "pipeline", err)
}

// Classify is what err proves: the class of an *Error, or outcome.Classify's.
func Classify(err error) outcome.Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return outcome.Classify(err)
}

// ErrNotSent is wrapped when a request was not sent within its attempt's Timeout
// (connecting, waiting for a pool connection or for a round trip): Redis counts as
// unreachable.
var ErrNotSent = errors.New("not sent within the Timeout")

// ErrMisconfigured is wrapped when the client or the server is set up wrong: the
// server does not know a command (the module is not loaded), or a Redis Cluster is
// reached through a client that is not a cluster client. It is never retried and
// never failed open.
var ErrMisconfigured = errors.New("misconfigured")

func (t *Transport) notSent() error {
	return fmt.Errorf("%w (%v)", ErrNotSent, t.cfg.Timeout)
}

// withDialCause adds the last failed dial since began to err when err is a bare
// context error (go-redis dropped the dial's error when the deadline ended its retry
// sleep), so errors.As still finds the *net.OpError.
func (t *Transport) withDialCause(err error, began time.Time) error {
	var oe *net.OpError
	if errors.As(err, &oe) || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return err
	}
	if d := t.dials.since(began); d != nil {
		return fmt.Errorf("%w (after %w)", err, d)
	}
	return err
}

// Error is the error of a request: what it proves, what it was, and its cause.
type Error struct {
	// Class is what the error proves about the request (package outcome).
	Class outcome.Class
	name  string // "ratelimit"
	op    string // "CHARON.RATE rl:api:{u}"
	kind  error  // a sentinel: OutcomeUnknown, ErrNotSent, ErrMisconfigured; or nil
	err   error  // the cause
	// checkNoAnswer: a check that reached Redis lost its answer (a precise client's
	// read error: not proof that Redis is unreachable, so the request goes ahead).
	checkNoAnswer bool
}

func (t *Transport) errorf(cls outcome.Class, kind error, op string, err error) *Error {
	return &Error{Class: cls, name: t.cfg.Name, op: op, kind: kind, err: err}
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.name)
	b.WriteString(": ")
	if e.op != "" {
		b.WriteString(e.op)
		b.WriteString(": ")
	}
	if e.kind != nil {
		b.WriteString(e.kind.Error())
		if e.err != nil {
			b.WriteString(": ")
		}
	}
	if e.err != nil {
		b.WriteString(e.err.Error())
	}
	return b.String()
}

// Unwrap gives the sentinel and the cause, so errors.Is and errors.As see both.
func (e *Error) Unwrap() []error {
	out := make([]error, 0, 2)
	if e.kind != nil {
		out = append(out, e.kind)
	}
	if e.err != nil {
		out = append(out, e.err)
	}
	return out
}

// misconfigured turns a server error that reveals a misconfiguration into one that
// names the fix, or returns nil.
func (t *Transport) misconfigured(r *Request, err error) error {
	if e := t.Misconfigured(r.describe(), err); e != nil {
		return e
	}
	if unknownCommand(err) && t.required(r.Name()) {
		t.chk.forget()
		return t.errorf(outcome.Misconfigured, ErrMisconfigured, r.describe(), fmt.Errorf(
			"%w: the server does not have the Charon module loaded (loadmodule /path/to/charon.so)", err))
	}
	return nil
}

// Misconfigured returns an error naming the fix when err shows a Redis Cluster node
// reached through a client that is not a cluster client (MOVED, ASK, CROSSSLOT), or
// nil. op names the command in the error.
func (t *Transport) Misconfigured(op string, err error) error {
	if t.cluster || !(redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK") || redis.HasErrorPrefix(err, "CROSSSLOT")) {
		return nil
	}
	t.chk.suspect()
	return t.errorf(outcome.Misconfigured, ErrMisconfigured, op, fmt.Errorf(
		"%w: the server is a Redis Cluster node and the client is not a cluster client; use redis.NewClusterClient", err))
}

func (t *Transport) required(name string) bool {
	for _, n := range t.cfg.Require {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// refused reports a connection refused: nothing listens there (the server is down),
// which another attempt a moment later will not change.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// NewToken returns a fresh ONCE token: 128 random bits in 22 characters.
func NewToken() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var b [22]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := range b {
		b[i] = alphabet[lo&63]
		lo = lo>>6 | hi<<58
		hi >>= 6
	}
	return string(b[:])
}

// unknownCommand reports the server's "ERR unknown command" (go-redis's
// HasErrorPrefix drops a leading "ERR ", so the prefix is matched without it).
func unknownCommand(err error) bool { return redis.HasErrorPrefix(err, "unknown command") }
