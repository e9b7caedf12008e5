package rm

// This file holds the //export entry points; cgo allows only declarations in the
// preamble of such a file.

/*
#include "cshim.h"
*/
import "C"

import (
	"fmt"
	"runtime/debug"
	"unsafe"
)

// charonGoCommand is the one C->Go crossing of every command: the trampoline of
// slot calls it, and it runs the handler registered there. A panic never crosses
// back into Redis: it becomes an error reply and a log line with the stack.
//
//export charonGoCommand
func charonGoCommand(slot C.int, ctx *C.RedisModuleCtx, argv **C.RedisModuleString, argc C.int, keysRequest C.int) C.int {
	c := Ctx{p: ctx}
	defer func() {
		if r := recover(); r != nil {
			c.replyPanic(slot, r)
		}
	}()
	if int(slot) >= len(commands) {
		c.ReplyError("ERR internal error: unknown command slot")
		return 0
	}
	args := Args{argv: argv, argc: int(argc)}
	if keysRequest != 0 {
		c.reportKeys(&commands[slot], args)
		return 0
	}
	if err := commands[slot].Handler(c, args); err != nil {
		c.replyErr(err)
	}
	return 0
}

// charonGoFrame is charonGoCommand for a frame command (rm.FrameSpec): C opened the
// keys and made views of the arguments; what the handler asks of the frame, C does
// after it returns. A handler that fails, or panics, leaves f.reply at 0: C then
// writes nothing.
//
//export charonGoFrame
func charonGoFrame(slot C.int, ctx *C.RedisModuleCtx, argv **C.RedisModuleString, argc C.int, f *C.cshim_frame) {
	c := Ctx{p: ctx, f: f}
	defer func() {
		if r := recover(); r != nil {
			f.reply = 0
			c.replyPanic(slot, r)
		}
	}()
	args := Args{argv: argv, argc: int(argc), ptrs: f.arg_ptrs, lens: f.arg_lens}
	if err := commands[slot].Handler(c, args); err != nil {
		f.reply = 0
		c.replyErr(err)
	}
}

// replyPanic turns a handler's recovered panic into a log line with the stack and
// an error reply naming the command.
func (c Ctx) replyPanic(slot C.int, r any) {
	name := "?"
	if int(slot) < len(commands) {
		name = commands[slot].Name
	}
	c.Log(LogWarning, fmt.Sprintf("charon: panic in %s: %v\n%s", name, r, debug.Stack()))
	c.ReplyError(fmt.Sprintf("ERR internal error in %s: %v (see the server log)", name, r))
}

// ReplyErr replies err as the dispatcher replies a handler's error, for code that
// replies outside a handler (a blocked client's wake-up).
func (c Ctx) ReplyErr(err error) { c.replyErr(err) }

// replyErr maps a handler's error to its reply, in one place.
func (c Ctx) replyErr(err error) {
	switch {
	case err == ErrWrongArity || isErr(err, ErrWrongArity):
		C.cshim_wrong_arity(c.p)
	case err == ErrWrongType || isErr(err, ErrWrongType):
		C.cshim_reply_wrongtype(c.p)
	default:
		c.ReplyError(errorReplyText(err))
	}
}

// LoadFunc is the module's part of OnLoad: it reads the module arguments that rm did
// not consume and returns the commands to register.
type LoadFunc func(c Ctx, args []ModuleArg) ([]Command, error)

// Load runs OnLoad's Go part; module/main.go's exported OnLoad hook calls it with the
// pointers C handed over. It turns the Go runtime arguments into module configs
// (charon.gomaxprocs, charon.gcpercent, charon.memlimit), installs the INFO callback,
// calls load (which may register counters and configs of its own), applies every
// config (LoadConfigs), then registers the commands. Any failure is logged and
// refuses the load (returns 1).
func Load(ctx, argv unsafe.Pointer, argc int, load LoadFunc) (rc int) {
	c := Ctx{p: (*C.RedisModuleCtx)(ctx)}
	defer func() {
		if r := recover(); r != nil {
			c.Log(LogWarning, fmt.Sprintf("charon: refusing to load: panic: %v\n%s", r, debug.Stack()))
			rc = 1
		}
	}()
	args := Args{argv: (**C.RedisModuleString)(argv), argc: argc}
	raw := make([]string, args.Len())
	for i := range raw {
		raw[i] = string(args.Bytes(i))
	}
	rt, legacy, rest, err := parseRuntimeArgs(raw)
	if err == nil {
		err = c.setupRuntime(rt, legacy)
	}
	if err == nil {
		err = c.registerInfo()
	}
	var cmds []Command
	if err == nil {
		cmds, err = load(c, rest)
	}
	if err == nil {
		err = c.loadConfigs()
	}
	if err != nil {
		c.Log(LogWarning, "charon: refusing to load: "+err.Error())
		return 1
	}
	for i := range cmds {
		if err := cmds[i].validate(); err != nil {
			c.Log(LogWarning, "charon: refusing to load: "+err.Error())
			return 1
		}
	}
	commands = cmds
	for i := range commands {
		if err := c.register(i, &commands[i]); err != nil {
			c.Log(LogWarning, "charon: refusing to load: "+err.Error())
			return 1
		}
	}
	return 0
}
