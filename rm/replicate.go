package rm

/*
#cgo noescape cshim_replicate_v
#cgo nocallback cshim_replicate_v
#cgo noescape cshim_replicate_with_option
#cgo nocallback cshim_replicate_with_option
#include "cshim.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// ReplicateVerbatim propagates the command exactly as the client sent it.
func (c Ctx) ReplicateVerbatim() { C.cshim_replicate_verbatim(c.p) }

// Replicate propagates cmd with argv to replicas and the AOF, instead of the
// command the client sent.
func (c Ctx) Replicate(cmd string, argv []String) error {
	var p **C.RedisModuleString
	if len(argv) > 0 {
		// String holds only a C pointer, so the slice is a C pointer array in Go memory.
		p = (**C.RedisModuleString)(unsafe.Pointer(&argv[0]))
	}
	if C.cshim_replicate_v(c.p, cstr(cmd), C.size_t(len(cmd)), p, C.size_t(len(argv))) != 0 {
		return fmt.Errorf("rm: replicating %s: %w", cmd, errWriteFailed)
	}
	return nil
}

// ReplicateWithOption propagates cmd with the client's arguments, except that the
// option at args[skip] (and its value at skip+1; skip < 0: none) is left out and
// "name value" is appended: the same command with one option made explicit, such as
// the time a clock-dependent command used. One crossing.
func (c Ctx) ReplicateWithOption(cmd string, args Args, skip int, name String, value int64) error {
	return c.ReplicateWithOptions(cmd, args, Explicit{Skip: skip, Name: name, Value: value}, Explicit{Skip: -1})
}

// Explicit is an option that ReplicateWithOptions makes explicit: the client's own
// "Name x" at args[Skip] (Skip < 0: not given) is left out and, when Name is set,
// "Name Value" is appended.
type Explicit struct {
	Skip  int
	Name  String
	Value int64
}

// ReplicateWithOptions is ReplicateWithOption for two options, a then b; a.Name must
// be set, b.Name may be the zero String (b's option is then only left out). One
// crossing.
func (c Ctx) ReplicateWithOptions(cmd string, args Args, a, b Explicit) error {
	if C.cshim_replicate_with_option(c.p, cstr(cmd), C.size_t(len(cmd)), args.argv, C.int(args.argc),
		C.int(a.Skip), a.Name.p, C.longlong(a.Value), C.int(b.Skip), b.Name.p, C.longlong(b.Value)) != 0 {
		return fmt.Errorf("rm: replicating %s: %w", cmd, errWriteFailed)
	}
	return nil
}
