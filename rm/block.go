package rm

// This file holds //export entry points; cgo allows only declarations in the
// preamble of such a file.

/*
#include "cshim.h"
*/
import "C"

import (
	"fmt"
	"runtime/debug"
)

// BlockedClient is a client that waits, blocked with Ctx.BlockOnKeys.
type BlockedClient struct{ p *C.RedisModuleBlockedClient }

// BlockHandlers are the module's callbacks for blocked clients and timers. Each gets
// the id the client was blocked (or the timer created) with.
type BlockHandlers struct {
	// Timeout runs in the waiter's own context when its wait ends: its timeout, CLIENT
	// UNBLOCK, or BlockedClient.Unblock (during which it runs). It must reply.
	Timeout func(c Ctx, args Args, id uint64)
	// Disconnect: the client went away while waiting (closed, CLIENT KILL, CLIENT
	// UNBLOCK ERROR, a cluster redirect). No reply is possible; c only serves timers.
	Disconnect func(c Ctx, id uint64)
	// Free: Redis is done with the waiter; the id may be reused after it.
	Free func(c Ctx, id uint64)
	// Timer: a timer made with CreateTimer fired.
	Timer func(c Ctx, id uint64)
}

// blockHandlers is set once at load (SetBlockHandlers) and only read afterwards.
var blockHandlers BlockHandlers

// SetBlockHandlers installs the callbacks, during OnLoad.
func SetBlockHandlers(h BlockHandlers) { blockHandlers = h }

// CanBlock reports whether the calling client may wait: not inside MULTI, a script,
// a module's call, the replication stream or the AOF.
func (c Ctx) CanBlock() bool { return C.cshim_can_block(c.p) != 0 }

// BlockOnKeys blocks the calling client on keys (so Redis times it out, unblocks it
// for CLIENT UNBLOCK, drops it on disconnect and redirects it when a cluster slot
// moves) as waiter id (not 0). timeoutMs 0 waits without a timeout. The command
// must not reply: the Timeout handler does, when the wait ends.
func (c Ctx) BlockOnKeys(keys []String, timeoutMs int64, id uint64) (BlockedClient, error) {
	if len(keys) == 0 || id == 0 {
		return BlockedClient{}, fmt.Errorf("rm: BlockOnKeys needs keys and an id")
	}
	ptrs := make([]*C.RedisModuleString, len(keys))
	for i, k := range keys {
		ptrs[i] = k.p
	}
	bc := C.cshim_block_on_keys(c.p, &ptrs[0], C.int(len(ptrs)), C.longlong(timeoutMs), C.uint64_t(id))
	if bc == nil {
		return BlockedClient{}, fmt.Errorf("rm: RedisModule_BlockClientOnKeys failed")
	}
	return BlockedClient{bc}, nil
}

// Unblock ends the wait: the Timeout handler runs, in the waiter's context, before
// Unblock returns (unless the client is gone already).
func (b BlockedClient) Unblock() { C.cshim_unblock(b.p) }

// CreateTimer makes a one-shot timer that calls the Timer handler with id after ms.
func (c Ctx) CreateTimer(ms int64, id uint64) uint64 {
	return uint64(C.cshim_timer_create(c.p, C.longlong(ms), C.uint64_t(id)))
}

// StopTimer cancels a timer; false when it fired already or never existed.
func (c Ctx) StopTimer(timer uint64) bool { return C.cshim_timer_stop(c.p, C.uint64_t(timer)) == 0 }

// SelectedDB is the database the context's keys are opened in.
func (c Ctx) SelectedDB() int { return int(C.cshim_selected_db(c.p)) }

// SelectDB makes the context open keys in database db.
func (c Ctx) SelectDB(db int) error {
	if C.cshim_select_db(c.p, C.int(db)) != 0 {
		return fmt.Errorf("rm: SELECT %d failed", db)
	}
	return nil
}

// Hold returns a reference to s that outlives the command; Release it when done.
func Hold(s String) String { return String{C.cshim_hold_string(s.p)} }

// Release drops a reference taken with Hold.
func (s String) Release() { C.cshim_release_string(s.p) }

// KeysLocal reports whether this node serves every key right now: always outside a
// cluster; in a cluster, false while the slot migrates away with a key already gone,
// or once another node serves it (the check Redis makes before a client's command).
func (c Ctx) KeysLocal(keys []String) bool {
	if len(keys) == 0 {
		return true
	}
	ptrs := make([]*C.RedisModuleString, len(keys))
	for i, k := range keys {
		ptrs[i] = k.p
	}
	return C.cshim_keys_local(c.p, &ptrs[0], C.int(len(ptrs))) != 0
}

// blockPanic logs a panic of a block callback; a panic never crosses into Redis.
func blockPanic(c Ctx, what string, r any) {
	msg := fmt.Sprintf("charon: panic in %s: %v\n%s", what, r, debug.Stack())
	if c.p != nil {
		c.Log(LogWarning, msg)
	}
}

//export charonGoBlockTimeout
func charonGoBlockTimeout(ctx *C.RedisModuleCtx, argv **C.RedisModuleString, argc C.int, id C.uint64_t) {
	c := Ctx{p: ctx}
	defer func() {
		if r := recover(); r != nil {
			blockPanic(c, "a blocked command's wake-up", r)
			c.ReplyError(fmt.Sprintf("ERR internal error: %v (see the server log)", r))
		}
	}()
	if blockHandlers.Timeout == nil {
		c.ReplyError("ERR internal error: no handler for a blocked command")
		return
	}
	blockHandlers.Timeout(c, Args{argv: argv, argc: int(argc)}, uint64(id))
}

//export charonGoBlockFree
func charonGoBlockFree(ctx *C.RedisModuleCtx, id C.uint64_t) {
	c := Ctx{p: ctx}
	defer func() {
		if r := recover(); r != nil {
			blockPanic(c, "freeing a blocked command", r)
		}
	}()
	if blockHandlers.Free != nil {
		blockHandlers.Free(c, uint64(id))
	}
}

//export charonGoBlockDisconnect
func charonGoBlockDisconnect(ctx *C.RedisModuleCtx, id C.uint64_t) {
	c := Ctx{p: ctx}
	defer func() {
		if r := recover(); r != nil {
			blockPanic(c, "a blocked client's disconnect", r)
		}
	}()
	if blockHandlers.Disconnect != nil {
		blockHandlers.Disconnect(c, uint64(id))
	}
}

//export charonGoTimer
func charonGoTimer(ctx *C.RedisModuleCtx, id C.uint64_t) {
	c := Ctx{p: ctx}
	defer func() {
		if r := recover(); r != nil {
			blockPanic(c, "a timer", r)
		}
	}()
	if blockHandlers.Timer != nil {
		blockHandlers.Timer(c, uint64(id))
	}
}
