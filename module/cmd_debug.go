package main

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/charon-redis/charon/module/internal/args"
	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/rm"
)

// CHARON.DEBUG RUNTIME reports the Go runtime's settings (checks that module
// arguments were applied, and that no GC runs during a benchmark). CHARON.DEBUG
// PANIC panics on purpose to prove a panic never takes the server down; it works
// only when the module was loaded with "debug yes".
func debugCommands(opts options) []rm.Command {
	return []rm.Command{{
		Name:       "charon.debug",
		Flags:      "readonly",
		Arity:      2,
		Summary:    "Reports the module's Go runtime (RUNTIME) or tests panic recovery (PANIC, with module argument debug yes).",
		Complexity: "O(1)",
		Since:      version,
		Handler: func(c rm.Ctx, args rm.Args) error {
			return debugCommand(c, args, opts)
		},
	}}
}

var runtimeFields = []string{"gomaxprocs", "gcpercent", "memlimit", "numgc", "goroutines", "goversion", "server_version", "acl_categories_api"}

func debugCommand(c rm.Ctx, args rm.Args, opts options) error {
	sub := args.Bytes(1)
	switch {
	case bytes.EqualFold(sub, []byte("RUNTIME")):
		info := rm.ReadRuntimeInfo()
		c.ReplyMap(len(runtimeFields))
		c.ReplyBulkString(runtimeFields[0])
		c.ReplyInt64(int64(info.GoMaxProcs))
		c.ReplyBulkString(runtimeFields[1])
		c.ReplyInt64(int64(info.GCPercent))
		c.ReplyBulkString(runtimeFields[2])
		c.ReplyInt64(info.MemLimit)
		c.ReplyBulkString(runtimeFields[3])
		c.ReplyInt64(int64(info.NumGC))
		c.ReplyBulkString(runtimeFields[4])
		c.ReplyInt64(int64(info.Goroutines))
		c.ReplyBulkString(runtimeFields[5])
		c.ReplyBulkString(info.GoVersion)
		v := rm.ServerVersion()
		c.ReplyBulkString(runtimeFields[6])
		c.ReplyBulkString(fmt.Sprintf("%d.%d.%d", v>>16&0xff, v>>8&0xff, v&0xff))
		c.ReplyBulkString(runtimeFields[7])
		c.ReplyInt64(boolInt(rm.HasAPI("RedisModule_SetCommandACLCategories")))
		return nil
	case bytes.EqualFold(sub, []byte("PANIC")):
		if !opts.debug {
			return errDebugDisabled
		}
		// An index out of range: a real runtime panic, not a panic() call.
		var empty []int
		return fmt.Errorf("unreachable: %d", empty[len(sub)])
	default:
		return &argError{arg: "subcommand", reason: "must be RUNTIME or PANIC, got " + rate.QuoteArg(sub)}
	}
}

var errDebugDisabled = &argError{arg: "PANIC", reason: "disabled; load the module with 'debug yes' to allow it"}

// argError is an error reply that names the offending argument: "ERR <arg>: <reason>".
type argError struct{ arg, reason string }

func (e *argError) Error() string { return "ERR " + e.arg + ": " + e.reason }

// argReply turns the pure parsers' argument error (module/rate and module/hold share
// one type, *args.Error) into the reply "ERR <ARG>: <reason>"; ok is false for any
// other error.
func argReply(err error) (reply error, ok bool) {
	var arg *args.Error
	if !errors.As(err, &arg) {
		return nil, false
	}
	return errors.New("ERR " + arg.Error()), true
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
