// Package script is Charon's script engine: CHARON.RATE and the hold commands
// (CHARON.RESERVE, RELEASE, RENEW, TRANSFER, SEIZE) as server-side Lua scripts, for
// servers that cannot load the module (managed Redis and Valkey). The scripts follow
// the same rules and give the same replies as the module; this package is their Go
// runner: it turns a request into the scripts' KEYS and ARGV, runs them (EVALSHA,
// EVAL on NOSCRIPT) and decodes their replies into the same fields as the module's.
//
// A request can go either way: ParseRate and ParseHold read exactly the arguments a
// client sends the module (the module's own parsers validate them, so errors are the
// module's), so a client builds one argument list and picks the engine per call.
//
// The scripts never read the server's clock (some managed services refuse TIME in
// scripts): every call carries the time, the AT of the request or the client's clock.
// Every key they touch is in KEYS, so Redis Cluster and ACLs see what they see for
// the module's commands.
package script

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

//go:embed rate.lua
var rateLua string

//go:embed hold.lua
var holdLua string

var (
	rateScript = redis.NewScript(rateLua)
	holdScript = redis.NewScript(holdLua)
)

// RateSource and HoldSource are the scripts' text (for SCRIPT LOAD by other means,
// benchmarks and documentation).
func RateSource() string { return rateLua }

// HoldSource is the hold script's text.
func HoldSource() string { return holdLua }

// Call is one script invocation: run it with Run.
type Call struct {
	script *redis.Script
	// Keys are the script's KEYS (the module command's keys, in its order).
	Keys []string
	// Args are the script's ARGV.
	Args []any
}

// Run sends the call: EVALSHA, and EVAL when the server does not have the script yet
// (NOSCRIPT: a restarted server, a new cluster node, a failover, SCRIPT FLUSH), which
// also caches it there.
func (c *Call) Run(ctx context.Context, rdb redis.Scripter) *redis.Cmd {
	return c.script.Run(ctx, rdb, c.Keys, c.Args...)
}

// RunRO is not offered: every call may write.

// Load caches both scripts on the server (SCRIPT LOAD; on a cluster client every
// primary). Optional: Run falls back to EVAL.
func Load(ctx context.Context, rdb redis.Scripter) error {
	if err := rateScript.Load(ctx, rdb).Err(); err != nil {
		return err
	}
	return holdScript.Load(ctx, rdb).Err()
}

// ErrReply is returned for a reply whose shape is not the expected one.
var ErrReply = errors.New("script: unexpected reply")

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func replyErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrReply}, a...)...)
}

// asInt reads an integer reply element: an integer, or a decimal string (the scripts
// send 64-bit fences as strings; Lua numbers are doubles).
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// Hash is the SHA1 of the call's script (what EVALSHA names).
func (c *Call) Hash() string { return c.script.Hash() }

// Source returns the text of the script whose SHA1 is sha ("" when it is neither
// script): what EVAL sends after EVALSHA met NOSCRIPT.
func Source(sha string) string {
	switch sha {
	case rateScript.Hash():
		return rateLua
	case holdScript.Hash():
		return holdLua
	}
	return ""
}
