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
	"strings"
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
	if err := registerConfigs(c); err != nil {
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
	if err := registerStats(); err != nil {
		return nil, err
	}
	countCommands(cmds)
	if err := setACLCategories(c, cmds); err != nil {
		return nil, err
	}
	return cmds, nil
}

// aclCategory is the module's own ACL category (ACL CAT charon), on servers that can
// add one (Redis 7.4+); every command is in it.
const aclCategory = "charon"

// setACLCategories gives every command the server categories its flags imply
// (write/read, fast/slow) and the module's own category where the server has it.
// Servers before 7.2 have no API for either; the commands then have none.
func setACLCategories(c rm.Ctx, cmds []rm.Command) error {
	own, err := c.AddACLCategory(aclCategory)
	if err != nil {
		return err
	}
	for i := range cmds {
		cats := cmds[i].ACLCategories
		if cats == "" {
			cats = impliedACLCategories(cmds[i].Flags)
		}
		if own {
			cats = strings.TrimSpace(cats + " " + aclCategory)
		}
		cmds[i].ACLCategories = cats
	}
	return nil
}

// impliedACLCategories maps command flags to ACL categories as Redis does for its own
// commands: write -> @write, readonly -> @read, admin -> @admin @dangerous,
// fast -> @fast, else @slow.
func impliedACLCategories(flags string) string {
	var cats []string
	fast := false
	for _, f := range strings.Fields(flags) {
		switch f {
		case "write":
			cats = append(cats, "write")
		case "readonly":
			cats = append(cats, "read")
		case "admin":
			cats = append(cats, "admin", "dangerous")
		case "fast":
			fast = true
		}
	}
	if fast {
		cats = append(cats, "fast")
	} else {
		cats = append(cats, "slow")
	}
	return strings.Join(cats, " ")
}
