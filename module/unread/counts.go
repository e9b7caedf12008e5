package unread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/charon-redis/charon/module/internal/outcome"
	"github.com/charon-redis/charon/module/internal/transport"
	"github.com/charon-redis/charon/module/unread/wire"
	"github.com/redis/go-redis/v9"
)

// errNoModule means the server answered "unknown command" to UNREAD.COUNT.
var errNoModule = errors.New("server does not know " + wire.CmdCount)

// countKeys returns ZCARD of each key, in order. Each distinct key is read once.
func (c *Client) countKeys(ctx context.Context, keys []string, st *callStats) ([]int64, error) {
	out := make([]int64, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	uniq, pos := dedupe(keys)
	counts := make([]int64, len(uniq))

	err := errNoModule
	if c.Backend() != BackendPlain {
		err = c.run(ctx, uniq, counts, true, st)
	}
	if errors.Is(err, errNoModule) {
		// Plain from now on (noModule switched the backend): read it all with ZCARD.
		st.fellBack(c)
		err = c.run(ctx, uniq, counts, false, st)
	}
	if err != nil {
		return nil, err
	}

	for i, p := range pos {
		out[i] = counts[p]
	}
	return out, nil
}

// dedupe returns the distinct keys in first-seen order and, for each input key, the
// index of its distinct key.
func dedupe(keys []string) (uniq []string, pos []int32) {
	index := make(map[string]int32, len(keys))
	uniq = make([]string, 0, len(keys))
	pos = make([]int32, len(keys))
	for i, k := range keys {
		p, ok := index[k]
		if !ok {
			p = int32(len(uniq))
			index[k] = p
			uniq = append(uniq, k)
		}
		pos[i] = p
	}
	return uniq, pos
}

// plan splits key indices into the batches that become one command each: per key for
// plain commands and behind sharding proxies, per hash slot on a cluster, and chunks
// of at most maxKeys everywhere. Cost is linear in the number of keys.
func plan(keys []string, cluster, perKey bool, maxKeys int) [][]int32 {
	if perKey || maxKeys == 1 {
		batches := make([][]int32, len(keys))
		flat := make([]int32, len(keys))
		for i := range keys {
			flat[i] = int32(i)
			batches[i] = flat[i : i+1 : i+1]
		}
		return batches
	}
	var groups [][]int32
	if cluster {
		// Slots in first-seen order keep the plan deterministic.
		slotGroup := make(map[int]int, len(keys))
		for i, k := range keys {
			s := Slot(k)
			g, ok := slotGroup[s]
			if !ok {
				g = len(groups)
				slotGroup[s] = g
				groups = append(groups, nil)
			}
			groups[g] = append(groups[g], int32(i))
		}
	} else {
		all := make([]int32, len(keys))
		for i := range keys {
			all[i] = int32(i)
		}
		groups = [][]int32{all}
	}
	batches := make([][]int32, 0, len(groups))
	for _, g := range groups {
		for len(g) > maxKeys {
			batches = append(batches, g[:maxKeys:maxKeys])
			g = g[maxKeys:]
		}
		batches = append(batches, g)
	}
	return batches
}

// run reads the counts of keys into counts: UNREAD.COUNT for a batch of several keys
// (module), ZCARD for a single key or without the module. ZCARD of one key is the
// same answer, WRONGTYPE included, and costs the server less than a module command:
// on a cluster most slots hold one of the requested users.
//
// All commands of a round go out in one pipeline: go-redis sends a plain client's
// pipeline in one round trip and splits a ClusterClient's pipeline by node, one round
// trip per node, nodes in parallel, following MOVED and ASK. Commands the cluster
// refuses for now (TRYAGAIN and friends) are sent again after a bounded backoff, a
// multi-key command refused with TRYAGAIN as single-key commands, which the server
// never answers with TRYAGAIN.
func (c *Client) run(ctx context.Context, keys []string, counts []int64, module bool, st *callStats) error {
	batches := plan(keys, c.cluster, c.perKey || !module, c.maxKeys)
	bounded := true // the first round is bounded by the Timeout
	for attempt := 1; ; attempt++ {
		if attempt == 1 {
			st.sent(len(batches), 0)
		} else {
			st.sent(len(batches), len(batches))
		}
		cmds := make([]*redis.Cmd, len(batches))
		all := make([]redis.Cmder, len(batches))
		for i, b := range batches {
			args := make([]any, 0, len(b)+1)
			args = append(args, batchCommand(b))
			for _, k := range b {
				args = append(args, keys[k])
			}
			cmds[i] = redis.NewCmd(ctx, args...)
			all[i] = cmds[i]
		}
		// Before the first round and after connection trouble, the transport checks
		// the server within the Timeout: an unreachable Redis fails the call at once.
		if err := c.tr.Ready(ctx); err != nil {
			return err
		}
		// Every command gets its own reply or error, checked below. The first round is
		// bounded by the Timeout too, so a Redis that just went away fails the call at
		// once; once the check has found Redis reachable, a round is bounded by the
		// caller's context only (a big one may take longer than the Timeout).
		perr := c.tr.Pipeline(ctx, all, bounded)
		if bounded {
			bounded = false
			if perr != nil && transport.Classify(perr) == outcome.Unreachable {
				// Cut short before anything was sent: check the server (within the
				// Timeout) and, if it answers, send the same round again, unbounded.
				if err := c.tr.Ready(ctx); err != nil {
					return err
				}
				attempt--
				continue
			}
		}

		var retry [][]int32
		var lastErr error
		for i, cmd := range cmds {
			b := batches[i]
			if err := cmd.Err(); err != nil {
				if merr := c.tr.Misconfigured(describe(keys, b), err); merr != nil {
					return merr
				}
				switch {
				case len(b) > 1 && c.noModule(err):
					return errNoModule
				case retryable(err):
					lastErr = err
					if len(b) > 1 && redis.HasErrorPrefix(err, "TRYAGAIN") {
						for j := range b {
							retry = append(retry, b[j:j+1:j+1])
						}
					} else {
						retry = append(retry, b)
					}
					continue
				default:
					return fmt.Errorf("%s: %w", describe(keys, b), err)
				}
			}
			if err := decodeInto(cmd.Val(), b, counts); err != nil {
				return fmt.Errorf("%s: %w", describe(keys, b), err)
			}
			if len(b) > 1 {
				c.sawModule() // an UNREAD.COUNT was answered
			}
		}
		if len(retry) == 0 {
			return nil
		}
		if attempt >= c.maxAttempts {
			return fmt.Errorf("%d commands still refused after %d attempts: %w", len(retry), attempt, lastErr)
		}
		if err := c.backoff(ctx, attempt); err != nil {
			return fmt.Errorf("%d commands refused, no time to retry (%w): %w", len(retry), err, lastErr)
		}
		batches = retry
	}
}

// batchCommand is the command that reads batch b.
func batchCommand(b []int32) string {
	if len(b) == 1 {
		return "ZCARD"
	}
	return wire.CmdCount
}

// describe names a batch's command for an error: "ZCARD k" or "UNREAD.COUNT k (+n keys)".
func describe(keys []string, b []int32) string {
	if len(b) == 1 {
		return batchCommand(b) + " " + keys[b[0]]
	}
	return fmt.Sprintf("%s %s (+%d keys)", batchCommand(b), keys[b[0]], len(b)-1)
}

// decodeInto stores a command's reply for the keys of batch b.
func decodeInto(reply any, b []int32, counts []int64) error {
	if len(b) == 1 {
		n, err := wire.DecodeCount(reply)
		if err != nil {
			return err
		}
		counts[b[0]] = n
		return nil
	}
	vals, err := wire.DecodeCounts(reply, len(b))
	if err != nil {
		return err
	}
	for j, k := range b {
		counts[k] = vals[j]
	}
	return nil
}

// retryable reports errors that say "not now" rather than "wrong": a slot moving
// (TRYAGAIN; MOVED and ASK that outlived go-redis's own redirects), a cluster without
// a primary for a slot yet (CLUSTERDOWN), or a connection lost to a failing node.
// Counts are reads, so sending one again is always safe.
func retryable(err error) bool {
	for _, p := range []string{"TRYAGAIN", "MOVED", "ASK", "CLUSTERDOWN", "LOADING", "MASTERDOWN"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	if errors.Is(err, redis.ErrClosed) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return false // any other server error is an answer, not a hiccup
	}
	var nerr net.Error
	return errors.As(err, &nerr) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, redis.ErrPoolTimeout)
}

// backoff waits before round attempt+1: MinRetryBackoff doubled per round, capped at
// MaxRetryBackoff. It gives up at once when the context would expire first.
func (c *Client) backoff(ctx context.Context, attempt int) error {
	d := c.minBackoff
	for i := 1; i < attempt && d < c.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.maxBackoff)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return context.DeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
