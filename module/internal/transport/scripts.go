package transport

import (
	"strings"
	"time"

	"github.com/charon-redis/charon/module/internal/script"
)

// Use picks the engine that serves a Transport's requests (Config.Use).
type Use uint8

const (
	// UseAuto asks the server at every check (the first request, and again after
	// connection trouble, a NOSCRIPT or an unknown command): the module where it knows
	// the Require'd commands, the script engine (Config.Scripts) where it knows none.
	UseAuto Use = iota
	// UseModule always sends the module's commands; a server without them is
	// misconfigured.
	UseModule
	// UseScripts always runs the script engine, module or not.
	UseScripts
)

// Kind is the engine a Transport uses.
type Kind uint8

const (
	// KindUnknown: no check has run yet (UseAuto).
	KindUnknown Kind = iota
	// KindModule: the module's commands.
	KindModule
	// KindScripts: the script engine.
	KindScripts
)

// ScriptEngine runs the module's commands CHARON.RATE, RESERVE, RELEASE, RENEW,
// TRANSFER and SEIZE as Charon's server-side scripts (module/internal/script): EVALSHA
// with the command's keys as KEYS, and EVAL when the server does not have the script
// (NoScript). The arguments are read by the module's own parsers, so a bad one is the
// module's error, word for word. Other commands (DEL) go as they are.
type ScriptEngine struct {
	// Now is the client's clock in Unix ms, sent as the request's time when it
	// carries no AT (the scripts never read the server's clock); nil means the wall
	// clock.
	Now func() int64
}

// Command implements Engine.
func (e ScriptEngine) Command(dst []any, r *Request, once string) ([]any, error) {
	name := r.Name()
	op, hold := script.OpOf(name)
	if !hold && !strings.EqualFold(name, "CHARON.RATE") {
		return ModuleEngine{}.Command(dst, r, once)
	}
	full, _ := ModuleEngine{}.Command(make([]any, 0, len(r.Args)+len(r.Tail)+2), r, once)
	now := time.Now().UnixMilli()
	if e.Now != nil {
		now = e.Now()
	}
	var c *script.Call
	var err error
	if hold {
		c, err = script.HoldArgs(op, full, now)
	} else {
		c, err = script.RateArgs(full, now)
	}
	if err != nil {
		return nil, serverError("ERR " + err.Error())
	}
	dst = append(dst, "EVALSHA", c.Hash(), len(c.Keys))
	for _, k := range c.Keys {
		dst = append(dst, k)
	}
	return append(dst, c.Args...), nil
}

// NoScript implements Engine: the same call as EVAL, which also caches the script.
func (ScriptEngine) NoScript(args []any) []any {
	if len(args) < 2 || args[0] != "EVALSHA" {
		return nil
	}
	sha, _ := args[1].(string)
	src := script.Source(sha)
	if src == "" {
		return nil
	}
	out := append(make([]any, 0, len(args)), "EVAL", src)
	return append(out, args[2:]...)
}

// serverError is the module's error for a request the script engine refuses before
// sending it (a bad argument): the text the module would have replied, and a
// redis.Error, so callers classify it as they classify the module's reply.
type serverError string

func (e serverError) Error() string { return string(e) }

// RedisError marks it as a server's error reply (go-redis's redis.Error).
func (serverError) RedisError() {}
