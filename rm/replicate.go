package rm

/*
#cgo noescape cshim_replicate_v
#cgo nocallback cshim_replicate_v
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
