package script

import (
	"context"
	"fmt"
	"strings"

	"github.com/charon-redis/charon/module/rate"
	"github.com/redis/go-redis/v9"
)

// Engine is what serves a client's requests: the module's commands or the scripts.
type Engine uint8

const (
	// EngineModule: the server has the Charon module (CHARON.RATE and friends).
	EngineModule Engine = iota + 1
	// EngineScript: the server has no module; the scripts serve the same rules.
	EngineScript
)

func (e Engine) String() string {
	switch e {
	case EngineModule:
		return "module"
	case EngineScript:
		return "script"
	}
	return fmt.Sprintf("Engine(%d)", uint8(e))
}

// Client is what the engine functions need of a go-redis client: *redis.Client,
// *redis.ClusterClient and *redis.Ring fit.
type Client interface {
	redis.Scripter
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// Detect asks the server whether it has the module: COMMAND INFO charon.rate, which
// managed services answer (they refuse MODULE LIST). Clients call it at start and
// again after a failover or a redirect to a node that may differ.
func Detect(ctx context.Context, rdb Client) (Engine, error) {
	v, err := rdb.Do(ctx, "COMMAND", "INFO", "charon.rate").Slice()
	if err != nil {
		return 0, err
	}
	if len(v) == 1 && v[0] != nil {
		return EngineModule, nil
	}
	return EngineScript, nil
}

// RateArgs turns a module CHARON.RATE command line (args[0] "CHARON.RATE", args[1]
// the key, then its options, strings or integers) into the script call; now (Unix ms)
// is used when it carries no AT. A bad argument is the module's own error.
func RateArgs(args []any, now int64) (*Call, error) {
	key, rest, err := stringArgs(args)
	if err != nil {
		return nil, err
	}
	r, err := ParseRate(key, rest, now)
	if err != nil {
		return nil, err
	}
	return r.Call(), nil
}

// DoRate sends a module CHARON.RATE command line to the engine e and returns the
// reply's fields (rate.Field* order), whichever engine answered.
func DoRate(ctx context.Context, rdb Client, e Engine, args []any, now int64) ([rate.NumFields]int64, error) {
	var v any
	var err error
	if e == EngineModule {
		v, err = rdb.Do(ctx, args...).Result()
	} else {
		var c *Call
		if c, err = RateArgs(args, now); err != nil {
			return [rate.NumFields]int64{}, err
		}
		v, err = c.Run(ctx, rdb).Result()
	}
	if err != nil {
		return [rate.NumFields]int64{}, err
	}
	return DecodeRate(v)
}

func stringArgs(args []any) (key string, rest []string, err error) {
	if len(args) < 2 {
		return "", nil, fmt.Errorf("script: a command line needs a command and a key, got %d arguments", len(args))
	}
	out := make([]string, len(args))
	for i, a := range args {
		switch x := a.(type) {
		case string:
			out[i] = x
		case []byte:
			out[i] = string(x)
		case int:
			out[i] = itoa(int64(x))
		case int64:
			out[i] = itoa(x)
		default:
			return "", nil, fmt.Errorf("script: argument %d is %T", i, a)
		}
	}
	return out[1], out[2:], nil
}

// OpOf returns the hold command named name (case-insensitive: "CHARON.RESERVE", ...).
func OpOf(name string) (Op, bool) {
	for op := Reserve; op <= Seize; op++ {
		if strings.EqualFold(name, op.Command()) {
			return op, true
		}
	}
	return 0, false
}

// HoldArgs turns a module hold command line (args[0] the command, args[1] the key,
// then its options) into the script call; now (Unix ms) is used when it carries no
// AT. A bad argument is the module's own error.
func HoldArgs(op Op, args []any, now int64) (*Call, error) {
	key, rest, err := stringArgs(args)
	if err != nil {
		return nil, err
	}
	h, err := ParseHold(op, key, rest, now)
	if err != nil {
		return nil, err
	}
	return h.Call(), nil
}
