package concurrency

import "github.com/charon-redis/charon/module/internal/engine"

// Engine is what serves a Semaphore's commands: the Charon module's CHARON.RESERVE, RELEASE, RENEW, TRANSFER and SEIZE, or
// the same rules as server-side Lua scripts, for a Redis that cannot load modules
// (ElastiCache, MemoryDB, Memorystore, Azure Cache for Redis, Upstash, managed
// Valkey). Both give the same answers; they keep their data in different types, so a
// key written by one is refused by the other (an error naming the engine, never
// misread and never failed open).
type Engine = engine.Engine

const (
	// EngineAuto (the default) asks the server whether it has the module (COMMAND
	// INFO, which managed services answer) before the first command, and again after
	// connection trouble (a failover, a restart), a NOSCRIPT or an unknown command:
	// the module where it is loaded, the scripts where it is not. Semaphore.Engine says
	// which it found.
	EngineAuto = engine.Auto
	// EngineModule always sends the module's commands; a server without the module is an error
	// wrapping ErrMisconfigured.
	EngineModule = engine.Module
	// EngineScripts always runs the scripts (EVALSHA, EVAL on NOSCRIPT), module or
	// not: for a server where the module will be loaded later, whose keys were
	// written by the scripts. The scripts have no BLOCK: ReserveArgs.MaxWait waits
	// by asking again after each rejection's RetryAfter.
	EngineScripts = engine.Scripts
)

// Engine reports the engine serving the Semaphore's commands: EngineModule or
// EngineScripts, as the last check found (or as Options.Engine forces); EngineAuto
// before the first command has checked the server.
func (s *Semaphore) Engine() Engine { return engine.Of(s.tr.Engine()) }
