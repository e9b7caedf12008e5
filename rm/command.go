package rm

/*
#include <stdlib.h>
#include "cshim.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"unsafe"
)

// Handler runs one command. It replies itself on success; on failure it returns an
// error and replies nothing (the dispatcher turns the error into the reply).
type Handler func(c Ctx, args Args) error

// KeyFlag describes what a command does with a key (REDISMODULE_CMD_KEY_*).
type KeyFlag uint64

// Key-spec flags, with the values of redismodule.h.
const (
	KeyRO KeyFlag = 1 << iota
	KeyRW
	KeyOW
	KeyRM
	KeyAccess
	KeyUpdate
	KeyInsert
	KeyDelete
	KeyNotKey
	KeyIncomplete
	KeyVariableFlags
)

// KeySpec declares where a command's keys are (Redis 7 key specs): begin the search
// at Index, or after Keyword (searching from StartFrom); then take keys up to
// LastKey (relative; -1 = to the end) every KeyStep arguments.
type KeySpec struct {
	Flags     KeyFlag
	Index     int
	Keyword   string
	StartFrom int
	LastKey   int
	KeyStep   int
	Limit     int
}

// Command declares one module command.
type Command struct {
	Name       string
	Flags      string // RedisModule_CreateCommand flags, e.g. "write deny-oom"
	Arity      int    // -N means at least N arguments, the name included
	FirstKey   int
	LastKey    int
	Step       int
	Summary    string
	Complexity string
	Since      string
	// ACLCategories is applied only on servers that have the API (Redis 7.2+).
	ACLCategories string
	KeySpecs      []KeySpec
	Handler       Handler
	// Frame, when set, makes the command a frame command (see FrameSpec).
	Frame *FrameSpec
}

// commands is the dispatch table: slot i is the command registered with trampoline i.
// It is filled once, during OnLoad, and only read afterwards.
var commands []Command

func (cmd *Command) validate() error {
	switch {
	case cmd.Name == "" || strings.ContainsAny(cmd.Name, " \r\n"):
		return fmt.Errorf("invalid command name %q", cmd.Name)
	case cmd.Handler == nil:
		return fmt.Errorf("command %s: no handler", cmd.Name)
	case cmd.Arity == 0:
		return fmt.Errorf("command %s: arity 0 is not valid", cmd.Name)
	case cmd.FirstKey < 0 || cmd.Step < 0 || (cmd.FirstKey > 0 && cmd.Step == 0):
		return fmt.Errorf("command %s: bad first/last/step %d/%d/%d", cmd.Name, cmd.FirstKey, cmd.LastKey, cmd.Step)
	}
	for i, ks := range cmd.KeySpecs {
		if ks.Keyword == "" && ks.Index < 1 {
			return fmt.Errorf("command %s: key spec %d: begin-search index must be >= 1", cmd.Name, i)
		}
		if ks.Flags == 0 {
			return fmt.Errorf("command %s: key spec %d: no flags", cmd.Name, i)
		}
	}
	return nil
}

// register creates cmd in Redis with trampoline slot and applies its command info.
func (c Ctx) register(slot int, cmd *Command) error {
	if slot >= C.CSHIM_MAX_COMMANDS {
		return fmt.Errorf("command %s: more than %d commands", cmd.Name, C.CSHIM_MAX_COMMANDS)
	}
	// These C strings are read by Redis for the life of the module: never freed.
	name := C.CString(cmd.Name)
	flags := C.CString(cmd.registrationFlags())
	if C.cshim_create_command(c.p, C.int(slot), name, flags, C.int(cmd.FirstKey), C.int(cmd.LastKey), C.int(cmd.Step)) != 0 {
		return fmt.Errorf("command %s: RedisModule_CreateCommand failed (flags %q)", cmd.Name, cmd.Flags)
	}
	specs := (*C.cshim_keyspec)(C.calloc(C.size_t(len(cmd.KeySpecs)+1), C.size_t(unsafe.Sizeof(C.cshim_keyspec{}))))
	for i, ks := range cmd.KeySpecs {
		s := &unsafe.Slice(specs, len(cmd.KeySpecs))[i]
		s.flags = C.uint64_t(ks.Flags)
		s.index = C.int(ks.Index)
		if ks.Keyword != "" {
			s.keyword = C.CString(ks.Keyword)
			s.index = C.int(ks.StartFrom)
		}
		s.lastkey, s.keystep, s.limit = C.int(ks.LastKey), C.int(ks.KeyStep), C.int(ks.Limit)
	}
	if C.cshim_set_command_info(c.p, name, optCString(cmd.Summary), optCString(cmd.Complexity),
		optCString(cmd.Since), C.int(cmd.Arity), specs, C.int(len(cmd.KeySpecs))) != 0 {
		return fmt.Errorf("command %s: RedisModule_SetCommandInfo refused its info (arity or key specs)", cmd.Name)
	}
	if cmd.Frame != nil {
		if err := cmd.Frame.define(slot, cmd); err != nil {
			return err
		}
	}
	if cmd.ACLCategories != "" {
		rc := C.cshim_set_acl_categories(c.p, name, C.CString(cmd.ACLCategories))
		if rc != 0 && rc != C.CSHIM_NOAPI {
			return fmt.Errorf("command %s: ACL categories %q refused", cmd.Name, cmd.ACLCategories)
		}
	}
	return nil
}

func optCString(s string) *C.char {
	if s == "" {
		return nil
	}
	return C.CString(s)
}
