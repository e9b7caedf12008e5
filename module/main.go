// Command module is Charon for Redis, built with -buildmode=c-shared into charon.so
// and loaded by redis-server (loadmodule /path/charon.so [name value ...]).
//
// This file holds the only list of commands; cshim's RedisModule_OnLoad creates the
// data types in C and then calls charonGoOnLoad once.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../cshim
#include "cshim.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/charon-redis/charon/rm"
)

// version is the release in the repository's VERSION file, set by make with
// -ldflags "-X main.version=..." (with the matching MODULE LIST number passed to
// cshim). COMMAND DOCS shows it as every command's "since".
var version = "0.0.0-dev"

// main is never run: a c-shared library only needs a main package.
func main() {}

//export charonGoOnLoad
func charonGoOnLoad(ctx *C.RedisModuleCtx, argv **C.RedisModuleString, argc C.int) C.int {
	return C.int(rm.Load(unsafe.Pointer(ctx), unsafe.Pointer(argv), int(argc), setup))
}

// options are the module arguments that are Charon's own (rm applies the Go runtime
// ones: gomaxprocs, gcpercent, memlimit).
type options struct {
	debug bool // CHARON.DEBUG PANIC is allowed (tests)
}

func parseOptions(args []rm.ModuleArg) (options, error) {
	var o options
	for _, a := range args {
		switch a.Name {
		case "debug":
			switch a.Value {
			case "yes":
				o.debug = true
			case "no":
				o.debug = false
			default:
				return o, fmt.Errorf("module argument debug: %q is not yes or no", a.Value)
			}
		default:
			return o, fmt.Errorf("unknown module argument %q (known: gomaxprocs, gcpercent, memlimit, debug)", a.Name)
		}
	}
	return o, nil
}

// setup returns every command of the module.
func setup(c rm.Ctx, args []rm.ModuleArg) ([]rm.Command, error) {
	opts, err := parseOptions(args)
	if err != nil {
		return nil, err
	}
	var cmds []rm.Command
	cmds = append(cmds, debugCommands(opts)...)
	rateCmds, err := rateCommands(c)
	if err != nil {
		return nil, err
	}
	cmds = append(cmds, rateCmds...)
	cmds = append(cmds, unreadCommands()...)
	holdCmds, err := holdCommands(c)
	if err != nil {
		return nil, err
	}
	cmds = append(cmds, holdCmds...)
	return cmds, nil
}
