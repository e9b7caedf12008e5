package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/charon-redis/charon/module/internal/outcome"
)

// checker remembers whether the server was found fit: it knows the required
// commands, a cluster node is not reached through a plain client, and which commands
// take ONCE. One check runs at a time; concurrent requests wait for its result.
type checker struct {
	ok   atomic.Bool
	once atomic.Pointer[map[string]bool]

	mu    sync.Mutex
	bad   error // the misconfiguration the last check found
	badAt time.Time
	run   *checkRun // the check under way
}

type checkRun struct {
	done chan struct{}
	err  error
}

// suspect asks for a new check before the next request: connection trouble may mean
// a failover or a restart onto a server without the module, and while Redis cannot be
// reached the check fails before anything is sent (so FailOpen can apply).
func (c *checker) suspect() { c.ok.Store(false) }

// forget asks for a new check before the next request.
func (c *checker) forget() { c.ok.Store(false) }

// takesOnce reports whether the last check found that the server takes ONCE on name
// (or, for a feature's probe, has the feature).
func (c *checker) takesOnce(name string) bool {
	m := c.once.Load()
	return m != nil && (*m)[name]
}

// Ready checks the server unless a check passed and nothing since has cast doubt on
// it: at the first request, and after connection trouble.
// It returns nil, or an *Error: Misconfigured (kept for a second, then checked
// again), or what kept the check from being answered (Unreachable or GaveUp).
func (t *Transport) Ready(ctx context.Context) error {
	c := &t.chk
	if c.ok.Load() {
		return nil
	}
	for {
		c.mu.Lock()
		if c.ok.Load() {
			c.mu.Unlock()
			return nil
		}
		if c.bad != nil && time.Since(c.badAt) < recheckAfter {
			err := c.bad
			c.mu.Unlock()
			return err
		}
		if run := c.run; run != nil {
			c.mu.Unlock()
			select {
			case <-run.done:
				if Classify(run.err) == outcome.GaveUp && ctx.Err() == nil {
					continue // its caller left; check for this one
				}
				return run.err
			case <-ctx.Done():
				return t.errorf(outcome.GaveUp, nil, "checking the server", ctx.Err())
			}
		}
		run := &checkRun{done: make(chan struct{})}
		c.run = run
		c.mu.Unlock()

		err := t.check(ctx)

		c.mu.Lock()
		c.run = nil
		switch {
		case err == nil:
			c.bad = nil
			c.ok.Store(true)
		case Classify(err) == outcome.Misconfigured:
			c.bad, c.badAt = err, time.Now()
		}
		run.err = err
		close(run.done)
		c.mu.Unlock()
		return err
	}
}

// check asks the server, in one pipeline: COMMAND INFO of the required commands, INFO
// cluster through a plain client, and a ONCE probe per probed command.
func (t *Transport) check(ctx context.Context) error {
	began := time.Now()
	actx, cancel := t.AttemptContext(ctx)
	defer cancel()
	pipe := t.rdb.Pipeline()
	var info, cluster *redis.Cmd
	scriptsOnly := t.cfg.Use == UseScripts && t.cfg.Scripts != nil
	if len(t.cfg.Require) > 0 && !scriptsOnly {
		args := []any{"COMMAND", "INFO"}
		for _, n := range t.cfg.Require {
			args = append(args, n)
		}
		info = pipe.Do(actx, args...)
	}
	if t.plain {
		cluster = pipe.Do(actx, "INFO", "cluster")
	}
	if info == nil && !t.plain {
		pipe.Ping(actx) // at least reach Redis
	}
	probes := make(map[string]*redis.Cmd, len(t.cfg.Probes))
	for name, p := range t.cfg.Probes {
		if scriptsOnly {
			break
		}
		args := append(make([]any, 0, len(p.Args)+2), p.Args...)
		if !p.NoOnce {
			args = append(args, "ONCE", NewToken())
		}
		probes[name] = pipe.Do(actx, args...)
	}
	cmds, err := pipe.Exec(actx)
	fillErrs(cmds, err)
	for _, cmd := range cmds {
		var rerr redis.Error
		if err := cmd.Err(); err != nil && !errors.As(err, &rerr) {
			// The check is harmless, so whatever became of it, the request was not sent.
			cls := outcome.ClassifyCtx(ctx, err, false)
			noAnswer := cls == outcome.Unknown // sent, and the answer was lost
			var kind error
			switch {
			case cls == outcome.GaveUp:
			case ctx.Err() == nil && actx.Err() != nil:
				cls, kind = outcome.Unreachable, t.notSent()
			default:
				cls = outcome.Unreachable
			}
			e := t.errorf(cls, kind, "checking the server", t.withDialCause(err, began))
			e.checkNoAnswer = noAnswer && t.precise
			return e
		}
	}

	kind := KindModule
	switch {
	case scriptsOnly:
		kind = KindScripts
	case info != nil && info.Err() == nil: // NOPERM, or no COMMAND behind a proxy: unknowable
		if v, ok := info.Val().([]any); ok && len(v) == len(t.cfg.Require) {
			var missing []string
			for i, e := range v {
				if e == nil {
					missing = append(missing, t.cfg.Require[i])
				}
			}
			switch {
			case len(missing) == len(v) && t.cfg.Use == UseAuto && t.cfg.Scripts != nil:
				kind = KindScripts // no module here: the script engine serves the same rules
			case len(missing) == len(v):
				return t.errorf(outcome.Misconfigured, ErrMisconfigured, "checking the server", fmt.Errorf(
					"the server does not know %s: the Charon module is not loaded there (loadmodule /path/to/charon.so in redis.conf)%s",
					strings.Join(missing, ", "), t.forcedModule()))
			case len(missing) > 0:
				return t.errorf(outcome.Misconfigured, ErrMisconfigured, "checking the server", fmt.Errorf(
					"the server does not know %s: the Charon module loaded there is older than this client; upgrade it",
					strings.Join(missing, ", ")))
			}
		}
	case info != nil && t.cfg.Use == UseAuto && t.cfg.Scripts != nil:
		// COMMAND INFO refused: the probes tell whether the module's commands exist.
		for _, cmd := range probes {
			if unknownCommand(cmd.Err()) {
				kind = KindScripts
			}
		}
	}
	if cluster != nil && cluster.Err() == nil {
		if s, ok := cluster.Val().(string); ok && strings.Contains(s, "cluster_enabled:1") {
			addr := ""
			if c, ok := t.rdb.(*redis.Client); ok {
				addr = c.Options().Addr + " "
			}
			return t.errorf(outcome.Misconfigured, ErrMisconfigured, "checking the server", fmt.Errorf(
				"%sis a Redis Cluster node reached through a *redis.Client, which cannot follow MOVED; use redis.NewClusterClient", addr))
		}
	}
	once := make(map[string]bool, len(t.cfg.Probes))
	if kind == KindScripts {
		// The scripts take ONCE on every command that does; they have no other
		// option a probe asks about (BLOCK: the client waits by asking again).
		for name, p := range t.cfg.Probes {
			once[name] = !p.NoOnce
		}
	} else {
		for name, cmd := range probes {
			taken := t.cfg.Probes[name].Taken
			once[name] = cmd.Err() == nil && cmd.Val() != nil ||
				taken != "" && cmd.Err() != nil && redis.HasErrorPrefix(cmd.Err(), taken)
		}
	}
	t.chk.once.Store(&once)
	t.kind.Store(uint32(kind))
	return nil
}

// forcedModule adds to the error of a server without the module why the script
// engine was not used.
func (t *Transport) forcedModule() string {
	if t.cfg.Use == UseModule && t.cfg.Scripts != nil {
		return "; the client is set to use the module only (its engine option), not its script engine"
	}
	return ""
}
