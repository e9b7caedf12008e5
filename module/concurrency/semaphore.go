package concurrency

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// rediser is the part of go-redis the Semaphore uses: *redis.Client,
// *redis.ClusterClient, *redis.Ring and every redis.UniversalClient satisfy it.
type rediser interface {
	TxPipeline() redis.Pipeliner
}

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
	// FailOpen grants a reservation when Redis provably did not run it (unreachable,
	// or a slot moving / failover); the Hold has Override OverrideFailOpen and no
	// server state, and OnFailOpen is called.
	FailOpen   bool
	OnFailOpen func(ctx context.Context, pool, domain string, err error)
	// KillSwitch is the kill switch's initial state; see SetKillSwitch.
	KillSwitch bool
}

// Override says why a Hold was granted without the server.
type Override uint8

// Overrides.
const (
	OverrideNone       Override = iota
	OverrideFailOpen            // Redis was unreachable and FailOpen is on
	OverrideKillSwitch          // the limits refused, but the kill switch is on
)

// Semaphore sends the hold commands. It is safe for concurrent use.
type Semaphore struct {
	rdb        rediser
	prefix     string
	failOpen   bool
	onFailOpen func(ctx context.Context, pool, domain string, err error)
	kill       atomic.Bool
}

// New returns a Semaphore over rdb. opt may be nil.
func New(rdb rediser, opt *Options) *Semaphore {
	var o Options
	if opt != nil {
		o = *opt
	}
	s := &Semaphore{rdb: rdb, prefix: o.KeyPrefix, failOpen: o.FailOpen, onFailOpen: o.OnFailOpen}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
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
}

// Ticket hands copies to another process: it Seizes them before Deadline.
type Ticket struct {
	ID       string
	Domain   string
	Groups   []string
	Copies   int64
	Deadline time.Time
}

// keyArgs appends GLOBAL and GROUP clauses; GROUP runs to the end of the command,
// so it is appended last. withLimits adds each limit (RESERVE).
func (s *Semaphore) keyArgs(args []any, p *Pool, groups []string, withLimits bool) ([]any, error) {
	_, gkey := KeyNames(s.prefix, p.Name, "")
	if p.Global > 0 {
		args = append(args, "GLOBAL", gkey)
		if withLimits {
			args = append(args, p.Global)
		}
	}
	if len(groups) > 0 {
		args = append(args, "GROUP")
		for _, name := range groups {
			g, ok := p.group(name)
			if !ok {
				return nil, invalid("pool %q has no group %q", p.Name, name)
			}
			args = append(args, GroupKey(s.prefix, p.Name, name))
			if withLimits {
				args = append(args, g.Limit)
			}
		}
	}
	return args, nil
}

// do runs one command inside MULTI/EXEC (go-redis never retries a transaction once
// written, so a reservation is never made twice) and returns its reply.
func (s *Semaphore) do(ctx context.Context, args []any) ([]any, error) {
	pipe := s.rdb.TxPipeline()
	cmd := pipe.Do(ctx, args...)
	_, err := pipe.Exec(ctx)
	if cerr := cmd.Err(); cerr != nil {
		err = cerr
	}
	if err != nil {
		if classify(err) == classUnknown {
			return nil, fmt.Errorf("concurrency: %s: %w: %w", args[0], ErrOutcomeUnknown, err)
		}
		if redis.HasErrorPrefix(err, "LOST") {
			return nil, fmt.Errorf("concurrency: %s: %w", args[0], ErrLost)
		}
		return nil, fmt.Errorf("concurrency: %s: %w", args[0], err)
	}
	switch v := cmd.Val().(type) {
	case []any:
		return v, nil
	case map[any]any: // RESP3: the same fields by name
		names := replyFields[args[0].(string)]
		out := make([]any, len(names))
		for i, n := range names {
			out[i] = v[n]
		}
		return out, nil
	}
	return nil, fmt.Errorf("concurrency: %s: %w: reply %T", args[0], ErrOutcomeUnknown, cmd.Val())
}

// replyFields are the reply fields of each command, in their RESP2 order.
var replyFields = map[string][]string{
	"CHARON.RESERVE":  {"granted", "hold", "held", "limit", "global_held", "limited_by", "deadline", "retry_after"},
	"CHARON.RELEASE":  {"copies", "remaining", "deadline", "held"},
	"CHARON.RENEW":    {"copies", "remaining", "deadline", "held"},
	"CHARON.SEIZE":    {"copies", "remaining", "deadline", "held"},
	"CHARON.TRANSFER": {"copies", "hold", "deadline", "remaining", "held"},
}

// field reads field i of an array (RESP2) reply, or name of a map (RESP3) one.
func intAt(v []any, i int) int64 {
	if i < len(v) {
		if n, ok := v[i].(int64); ok {
			return n
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

// Reserve asks for between Min and Max copies of p for domain. It returns the Hold,
// or an error: a *RejectedError (errors.Is ErrRejected) when the limits refuse,
// ErrInvalid, ErrOutcomeUnknown, or the server's error. With FailOpen or the kill
// switch it may return a Hold with an Override instead.
func (s *Semaphore) Reserve(ctx context.Context, p *Pool, domain string, a ReserveArgs) (*Hold, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if domain == "" {
		return nil, invalid("pool %q: empty domain", p.Name)
	}
	if a.Max == 0 {
		a.Max = 1
	}
	if a.Min == 0 {
		a.Min = a.Max
	}
	if a.Max < 1 || a.Max > MaxCount || a.Min < 1 || a.Min > a.Max {
		return nil, invalid("min %d / max %d", a.Min, a.Max)
	}
	key, _ := KeyNames(s.prefix, p.Name, domain)
	args := []any{"CHARON.RESERVE", key, "MAX", a.Max, "MIN", a.Min, "LEASE", p.lease().Milliseconds()}
	if p.Limit > 0 {
		args = append(args, "LIMIT", p.Limit)
	}
	args = withAt(args, a.At)
	args, err := s.keyArgs(args, p, a.Groups, true)
	if err != nil {
		return nil, err
	}
	h := &Hold{s: s, pool: p, domain: domain, groups: a.Groups, at: a.At}
	v, err := s.do(ctx, args)
	if err != nil {
		if c := classify(err); s.failOpen && (c == classUnreachable || c == classTransient) {
			if s.onFailOpen != nil {
				s.onFailOpen(ctx, p.Name, domain, err)
			}
			h.Copies, h.Override = a.Min, OverrideFailOpen
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
	return h, nil
}

// commonArgs is "<cmd> key hold [opts] [AT] [GLOBAL gkey] [GROUP keys...]".
func (h *Hold) commonArgs(cmd string, opts ...any) ([]any, error) {
	key, _ := KeyNames(h.s.prefix, h.pool.Name, h.domain)
	args := append([]any{cmd, key, h.ID}, opts...)
	args = withAt(args, h.at)
	return h.s.keyArgs(args, h.pool, h.groups, false)
}

// Release gives back every copy. Releasing twice, or after the lease ended, is not
// an error.
func (h *Hold) Release(ctx context.Context) error { return h.ReleaseCopies(ctx, 0) }

// ReleaseCopies gives back n copies (0: all).
func (h *Hold) ReleaseCopies(ctx context.Context, n int64) error {
	if h.Override != OverrideNone || h.ID == "" {
		return nil
	}
	var opts []any
	if n > 0 {
		opts = []any{"COPIES", n}
	}
	args, err := h.commonArgs("CHARON.RELEASE", opts...)
	if err != nil {
		return err
	}
	v, err := h.s.do(ctx, args)
	if err != nil {
		return err
	}
	h.Copies = intAt(v, 1)
	return nil
}

// Renew moves the deadline to now + the pool's lease; ErrLost when the server no
// longer holds the hold.
func (h *Hold) Renew(ctx context.Context) error {
	if h.Override != OverrideNone {
		h.Deadline = time.Now().Add(h.pool.lease())
		return nil
	}
	args, err := h.commonArgs("CHARON.RENEW", "LEASE", h.pool.lease().Milliseconds())
	if err != nil {
		return err
	}
	v, err := h.s.do(ctx, args)
	if err != nil {
		return err
	}
	h.Copies, h.Deadline = intAt(v, 0), time.UnixMilli(intAt(v, 2))
	return nil
}

// Transfer splits n copies (0: all) off the hold into a new hold that lives ttl for
// another process to Seize. The copies stay held throughout.
func (h *Hold) Transfer(ctx context.Context, n int64, ttl time.Duration) (*Ticket, error) {
	if h.Override != OverrideNone {
		return nil, invalid("an overridden hold cannot be transferred")
	}
	if ttl < time.Millisecond {
		return nil, invalid("ttl %v", ttl)
	}
	opts := []any{"TTL", ttl.Milliseconds()}
	if n > 0 {
		opts = append(opts, "COPIES", n)
	}
	args, err := h.commonArgs("CHARON.TRANSFER", opts...)
	if err != nil {
		return nil, err
	}
	v, err := h.s.do(ctx, args)
	if err != nil {
		return nil, err
	}
	h.Copies = intAt(v, 3)
	return &Ticket{ID: strAt(v, 1), Domain: h.domain, Groups: h.groups, Copies: intAt(v, 0), Deadline: time.UnixMilli(intAt(v, 2))}, nil
}

// Seize takes over a transferred hold with the pool's lease.
func (s *Semaphore) Seize(ctx context.Context, p *Pool, t *Ticket) (*Hold, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	h := &Hold{s: s, pool: p, domain: t.Domain, groups: t.Groups, ID: t.ID}
	args, err := h.commonArgs("CHARON.SEIZE", "LEASE", p.lease().Milliseconds())
	if err != nil {
		return nil, err
	}
	v, err := s.do(ctx, args)
	if err != nil {
		return nil, err
	}
	h.Copies, h.Deadline = intAt(v, 0), time.UnixMilli(intAt(v, 2))
	return h, nil
}

// Do reserves copies, runs fn while holding them, renews the lease every third of it
// in the background and releases them when fn returns. fn's context is cancelled with
// a cause wrapping ErrLost when a renewal finds the hold lost, or when the lease runs
// out before a renewal is answered (renewals failing: Redis unreachable, an error
// reply), so fn never goes on past the end of a lease it cannot prove it still holds;
// Do then returns an error wrapping ErrLost (together with fn's error). A rejection
// returns the *RejectedError without running fn.
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
	// Release with the caller's context: fn's may be cancelled.
	rerr := h.Release(context.WithoutCancel(ctx))
	switch {
	case lost != nil:
		return errors.Join(lost, ferr)
	case ferr != nil:
		return ferr
	}
	return rerr
}

// String describes the hold.
func (h *Hold) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hold %s: %d copies of %s for %s until %s", h.ID, h.Copies, h.pool.Name, h.domain, h.Deadline.UTC().Format(time.RFC3339Nano))
	return b.String()
}
