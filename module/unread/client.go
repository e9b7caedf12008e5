// Package unread is the Go client of the UNREAD.* commands: the package a Go server
// imports to answer "how many conversations with unread messages does each of these
// users have" from Redis, correctly on a single node, a primary with replicas and a
// Redis Cluster, including while the cluster moves slots.
//
//	import "github.com/charon-redis/charon/module/unread"
//
// (Its subpackage wire is the commands' contract, shared with the module; servers do
// not need it.) Options.Observer sees every call: keys, commands, round trips, resends
// while slots move, fallbacks to plain commands, latency. docs/go-client.md is the
// guide.
//
// Each user has a sorted set named by Key (user_id{ID}) whose members are the
// conversations with unread messages and whose scores are the numbers of unread
// messages in them. The Charon module's UNREAD.* commands own that data model; on a
// server that cannot load modules the client falls back to plain sorted-set commands
// with the same answers.
//
// The failure this package exists to prevent: a multi-key script or command sent to
// the node of its first key, with the other keys read as missing there (0) on a
// sharded deployment. The client never sends keys of different hash slots in one
// command on a cluster, retries what the cluster refuses while slots move, and
// returns an error rather than a number it could not read from the key's owner.
package unread

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/charon-redis/charon/module/internal/transport"
	"github.com/charon-redis/charon/module/unread/wire"
	"github.com/redis/go-redis/v9"
)

// ErrMisconfigured is wrapped when a Redis Cluster is reached through a
// *redis.Client instead of a *redis.ClusterClient: the error names the fix. The same
// value as ratelimit.ErrMisconfigured.
var ErrMisconfigured = transport.ErrMisconfigured

// rediser is the part of go-redis the client uses. *redis.Client, *redis.ClusterClient,
// *redis.Ring and every redis.UniversalClient satisfy it.
type rediser interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
	Process(ctx context.Context, cmd redis.Cmder) error
	Pipeline() redis.Pipeliner
	TxPipeline() redis.Pipeliner
}

// Backend says which commands the client sends.
type Backend int32

const (
	// BackendAuto (the zero value) detects the backend on first use: the UNREAD.*
	// commands, or plain sorted-set commands when the server does not know them.
	BackendAuto Backend = iota
	// BackendModule sends UNREAD.* commands (the Charon module is loaded).
	BackendModule
	// BackendPlain sends ZCARD / ZINCRBY / ZREM: for servers that cannot load modules
	// (managed services, old or proxied deployments).
	BackendPlain
)

func (b Backend) String() string {
	switch b {
	case BackendAuto:
		return "auto"
	case BackendModule:
		return "module"
	case BackendPlain:
		return "plain"
	}
	return fmt.Sprintf("Backend(%d)", int32(b))
}

// Defaults applied to zero Options fields.
const (
	// DefaultTimeout bounds each command and the check of the server (as in package
	// ratelimit): with Redis down, a call fails in milliseconds, not after go-redis's
	// dial retries.
	DefaultTimeout           = transport.DefaultTimeout
	DefaultMaxKeysPerCommand = 512
	DefaultMaxAttempts       = 12
	DefaultMinRetryBackoff   = 4 * time.Millisecond
	DefaultMaxRetryBackoff   = 256 * time.Millisecond
)

// Options tunes a Client. The zero value (or nil) is right for most uses.
type Options struct {
	// Backend forces a backend; BackendAuto (zero) detects it once per Client.
	Backend Backend
	// Timeout bounds, on top of the caller's context, each command of Mark and Read
	// and the check of the server that runs before the first call and again after
	// connection trouble (before the next call, and before each further round of
	// Counts): connecting, waiting for a pool connection, and with go-redis's
	// ContextTimeoutEnabled also the answer. So a call to a Redis that cannot be
	// reached returns the connection's error within about the Timeout. A round of
	// Counts (one pipeline per node, possibly thousands of keys) is bounded by the
	// caller's context only. 0 means DefaultTimeout (100ms), a negative value no
	// bound but the context's.
	Timeout time.Duration
	// MaxKeysPerCommand caps the keys of one UNREAD.COUNT. 0 means
	// DefaultMaxKeysPerCommand.
	MaxKeysPerCommand int
	// MaxAttempts bounds the rounds one call makes while the server answers
	// TRYAGAIN, MOVED, ASK or CLUSTERDOWN (slots moving, failover) or the connection
	// fails. 0 means DefaultMaxAttempts; 1 means no retry. The context's deadline
	// bounds the rounds as well.
	MaxAttempts int
	// MinRetryBackoff and MaxRetryBackoff bound the exponential wait between rounds.
	// 0 means DefaultMinRetryBackoff / DefaultMaxRetryBackoff.
	MinRetryBackoff time.Duration
	MaxRetryBackoff time.Duration
	// Observer, when set, sees every call (calls, keys, commands, round trips,
	// redirects, fallbacks, latency): the hook for metrics.
	Observer Observer
	// PerKey sends every key in a command of its own. Set it when a proxy that shards
	// keys by itself (Codis, twemproxy, Envoy) sits in front of Redis: such a proxy
	// routes a multi-key command by its first key, which is the bug this package
	// exists to prevent. A *redis.Ring is detected and always treated this way.
	PerKey bool
}

// Client reads and writes unread counts through a go-redis client. It is safe for
// concurrent use; create one per go-redis client and keep it.
type Client struct {
	rdb     rediser
	tr      *transport.Transport
	cluster bool // group keys by hash slot
	perKey  bool // one key per command
	backend atomic.Int32
	forced  bool // Options.Backend was set: never switch

	observer    Observer
	maxKeys     int
	maxAttempts int
	minBackoff  time.Duration
	maxBackoff  time.Duration
}

// New returns a Client over rdb: a *redis.Client (single node, or a primary through
// Sentinel), a *redis.ClusterClient, a *redis.Ring, or any redis.UniversalClient.
// opt may be nil.
func New(rdb rediser, opt *Options) *Client {
	var o Options
	if opt != nil {
		o = *opt
	}
	c := &Client{
		rdb:         rdb,
		perKey:      o.PerKey,
		observer:    o.Observer,
		maxKeys:     o.MaxKeysPerCommand,
		maxAttempts: o.MaxAttempts,
		minBackoff:  o.MinRetryBackoff,
		maxBackoff:  o.MaxRetryBackoff,
	}
	switch rdb.(type) {
	case *redis.ClusterClient:
		c.cluster = true
	case *redis.Ring:
		// Ring shards on the client by each command's first key.
		c.perKey = true
	}
	if c.maxKeys <= 0 {
		c.maxKeys = DefaultMaxKeysPerCommand
	}
	if c.maxAttempts <= 0 {
		c.maxAttempts = DefaultMaxAttempts
	}
	if c.minBackoff <= 0 {
		c.minBackoff = DefaultMinRetryBackoff
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = DefaultMaxRetryBackoff
	}
	if c.maxBackoff < c.minBackoff {
		c.maxBackoff = c.minBackoff
	}
	// The transport bounds each round and checks, before the first call and after
	// connection trouble, that a cluster is not reached through a plain client.
	c.tr = transport.New(rdb, transport.Config{Name: "unread", Timeout: o.Timeout})
	c.backend.Store(int32(o.Backend))
	c.forced = o.Backend != BackendAuto
	return c
}

// Backend reports the backend in use: BackendAuto until the first call has told
// module from plain, then BackendModule or BackendPlain.
func (c *Client) Backend() Backend { return Backend(c.backend.Load()) }

// Counts returns, for each user ID in order, the number of conversations with unread
// messages (0 for an unknown user). Duplicates and an empty list are fine. It returns
// an error, and no counts, if any count could not be read from the node that owns the
// user's key.
func (c *Client) Counts(ctx context.Context, userIDs []string) ([]int64, error) {
	st := c.startCall(OpCounts, len(userIDs))
	keys := make([]string, len(userIDs))
	for i, id := range userIDs {
		keys[i] = Key(id)
	}
	out, err := c.countKeys(ctx, keys, st)
	if err != nil {
		err = fmt.Errorf("unread: counts for %d users: %w", len(userIDs), err)
		out = nil
	}
	c.endCall(ctx, st, err)
	return out, err
}

// Count returns the number of conversations with unread messages of one user.
func (c *Client) Count(ctx context.Context, userID string) (int64, error) {
	out, err := c.Counts(ctx, []string{userID})
	if err != nil {
		return 0, err
	}
	return out[0], nil
}

// Mark records count (>= 1) new unread messages in a conversation of a user and
// returns the conversation's number of unread messages.
func (c *Client) Mark(ctx context.Context, userID, conversation string, count int64) (int64, error) {
	st := c.startCall(OpMark, 1)
	n, err := c.mark(ctx, userID, conversation, count, st)
	c.endCall(ctx, st, err)
	return n, err
}

func (c *Client) mark(ctx context.Context, userID, conversation string, count int64, st *callStats) (int64, error) {
	if count < 1 || count > wire.MaxMarkCount {
		return 0, fmt.Errorf("unread: mark: count %d outside [1, %d]", count, int64(wire.MaxMarkCount))
	}
	key := Key(userID)
	if c.Backend() != BackendPlain {
		n, err := c.do(ctx, wire.CmdMark, key, conversation, count)
		st.sent(1, 0)
		switch {
		case err == nil:
			c.sawModule()
			v, derr := wire.DecodeCount(n)
			if derr != nil {
				return 0, fmt.Errorf("unread: %s reply: %w", wire.CmdMark, derr)
			}
			return v, nil
		case !c.noModule(err):
			return 0, fmt.Errorf("unread: %s %s: %w", wire.CmdMark, key, err)
		}
	}
	st.fellBack(c)
	reply, err := c.do(ctx, "ZINCRBY", key, count, conversation)
	st.sent(1, 0)
	if err != nil {
		return 0, fmt.Errorf("unread: ZINCRBY %s: %w", key, err)
	}
	// go-redis's Cmd.Float64 does not take RESP3 doubles, hence wire's decoder.
	score, err := wire.DecodeScore(reply)
	if err != nil {
		return 0, fmt.Errorf("unread: ZINCRBY reply: %w", err)
	}
	return wire.ScoreToCount(score), nil
}

// Read marks conversations of a user as read (removes them) and returns the user's new
// number of conversations with unread messages.
func (c *Client) Read(ctx context.Context, userID string, conversations ...string) (int64, error) {
	st := c.startCall(OpRead, 1)
	n, err := c.read(ctx, userID, conversations, st)
	c.endCall(ctx, st, err)
	return n, err
}

func (c *Client) read(ctx context.Context, userID string, conversations []string, st *callStats) (int64, error) {
	if len(conversations) == 0 {
		return 0, errors.New("unread: read: no conversation given")
	}
	key := Key(userID)
	if c.Backend() != BackendPlain {
		args := make([]any, 0, len(conversations)+2)
		args = append(args, wire.CmdRead, key)
		for _, conv := range conversations {
			args = append(args, conv)
		}
		n, err := c.do(ctx, args...)
		st.sent(1, 0)
		switch {
		case err == nil:
			c.sawModule()
			v, derr := wire.DecodeCount(n)
			if derr != nil {
				return 0, fmt.Errorf("unread: %s reply: %w", wire.CmdRead, derr)
			}
			return v, nil
		case !c.noModule(err):
			return 0, fmt.Errorf("unread: %s %s: %w", wire.CmdRead, key, err)
		}
	}
	// ZREM and ZCARD in one transaction, so the count is the one right after the
	// removal; both touch one key, hence one slot on a cluster.
	args := make([]any, 0, len(conversations)+2)
	args = append(args, "ZREM", key)
	for _, conv := range conversations {
		args = append(args, conv)
	}
	st.fellBack(c)
	if err := c.tr.Ready(ctx); err != nil {
		return 0, err
	}
	actx, cancel := c.tr.AttemptContext(ctx)
	defer cancel()
	pipe := c.rdb.TxPipeline()
	pipe.Do(actx, args...)
	card := pipe.Do(actx, "ZCARD", key)
	_, err := pipe.Exec(actx)
	st.sent(2, 0)
	if err != nil {
		return 0, fmt.Errorf("unread: ZREM+ZCARD %s: %w", key, err)
	}
	v, err := wire.DecodeCount(card.Val())
	if err != nil {
		return 0, fmt.Errorf("unread: ZCARD reply: %w", err)
	}
	return v, nil
}

// do sends one command after the transport's check, bounded by the Timeout.
func (c *Client) do(ctx context.Context, args ...any) (any, error) {
	if err := c.tr.Ready(ctx); err != nil {
		return nil, err
	}
	actx, cancel := c.tr.AttemptContext(ctx)
	defer cancel()
	return c.rdb.Do(actx, args...).Result()
}

// sawModule records that the server knows the UNREAD.* commands, unless a backend
// was already settled.
func (c *Client) sawModule() {
	c.backend.CompareAndSwap(int32(BackendAuto), int32(BackendModule))
}

// noModule reports whether err says the server does not know the UNREAD.* commands,
// and then switches an auto-detecting client to plain commands for good.
func (c *Client) noModule(err error) bool {
	// A forced module backend surfaces the error instead.
	if c.forced || !redis.HasErrorPrefix(err, "unknown command") {
		return false
	}
	// Also from BackendModule: a failover may have promoted a node without the module.
	c.backend.Store(int32(BackendPlain))
	return true
}
