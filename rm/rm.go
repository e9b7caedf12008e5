// Package rm is an idiomatic Go binding over cshim, the C side of a Redis module.
// It knows nothing of Charon: contexts, strings, keys, replies, command registration
// with key specs, replication and logging.
//
// Everything here runs on Redis's main thread, inside a command or OnLoad. Values
// returned as []byte views borrow C memory and are valid only during the call.
package rm

/*
#cgo CFLAGS: -I${SRCDIR}/../cshim
#cgo noescape cshim_args_views
#cgo nocallback cshim_args_views
#cgo noescape cshim_string_ptr_len
#cgo nocallback cshim_string_ptr_len
#cgo noescape cshim_string_to_long_long
#cgo nocallback cshim_string_to_long_long
#cgo noescape cshim_create_string
#cgo nocallback cshim_create_string
#include <stdlib.h>
#include "cshim.h"
*/
import "C"

import (
	"unsafe"

	_ "github.com/charon-redis/charon/cshim" // links the C side
)

// Ctx is the context of one command call (or of OnLoad). f is the frame C built
// around a frame command (nil otherwise).
type Ctx struct {
	p *C.RedisModuleCtx
	f *C.cshim_frame
}

// Valid reports whether the context is a real one (the zero Ctx is not).
func (c Ctx) Valid() bool { return c.p != nil }

// String is a Redis module string owned by Redis (an argument) or by the caller.
type String struct{ p *C.RedisModuleString }

// Args is a command's argument vector; index 0 is the command name.
type Args struct {
	argv **C.RedisModuleString
	argc int
	// views of every argument, when C already made them (a frame command)
	ptrs **C.char
	lens *C.size_t
}

// Len reports the number of arguments, the command name included.
func (a Args) Len() int { return a.argc }

// At returns argument i.
func (a Args) At(i int) String {
	return String{unsafe.Slice(a.argv, a.argc)[i]}
}

// Bytes returns a borrowed view of argument i.
func (a Args) Bytes(i int) []byte {
	if a.ptrs != nil {
		return a.view(i)
	}
	return a.At(i).Bytes()
}

// view is argument i from the views C made.
func (a Args) view(i int) []byte {
	p := unsafe.Slice(a.ptrs, a.argc)[i]
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(unsafe.Slice(a.lens, a.argc)[i]))
}

// From returns the arguments from index i on, as their own Args.
func (a Args) From(i int) Args {
	if i >= a.argc {
		return Args{}
	}
	b := Args{argv: &unsafe.Slice(a.argv, a.argc)[i], argc: a.argc - i}
	if a.ptrs != nil {
		b.ptrs, b.lens = &unsafe.Slice(a.ptrs, a.argc)[i], &unsafe.Slice(a.lens, a.argc)[i]
	}
	return b
}

// argScratch holds the pointers and lengths that Views asks C to fill. It lives in
// C memory: a Go array of pointers passed to C would make cgo's pointer check visit
// every element on every call. Redis calls commands on one thread, so one buffer
// serves every call.
var argScratch struct {
	ptrs **C.char
	lens *C.size_t
	cap  int
}

// Views returns every argument as a borrowed view, filled in one cgo call. dst is
// reused when it has the capacity.
func (a Args) Views(dst [][]byte) [][]byte {
	dst = dst[:0]
	if a.argc == 0 {
		return dst
	}
	if a.ptrs != nil {
		for i := 0; i < a.argc; i++ {
			dst = append(dst, a.view(i))
		}
		return dst
	}
	if argScratch.cap < a.argc {
		C.free(unsafe.Pointer(argScratch.ptrs))
		C.free(unsafe.Pointer(argScratch.lens))
		n := max(a.argc, 64)
		argScratch.ptrs = (**C.char)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))
		argScratch.lens = (*C.size_t)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(C.size_t(0)))))
		argScratch.cap = n
	}
	C.cshim_args_views(a.argv, C.int(a.argc), argScratch.ptrs, argScratch.lens)
	ptrs := unsafe.Slice(argScratch.ptrs, a.argc)
	lens := unsafe.Slice(argScratch.lens, a.argc)
	for i := range ptrs {
		dst = append(dst, unsafe.Slice((*byte)(unsafe.Pointer(ptrs[i])), int(lens[i])))
	}
	return dst
}

// Bytes returns a borrowed view of the string's bytes.
func (s String) Bytes() []byte {
	var n C.size_t
	p := C.cshim_string_ptr_len(s.p, &n)
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

// Int64 parses the string as a base-10 integer, as Redis does.
func (s String) Int64() (int64, error) {
	var v C.longlong
	if C.cshim_string_to_long_long(s.p, &v) != 0 {
		return 0, ErrNotInteger
	}
	return int64(v), nil
}

// NewString creates a string that the caller must release with FreeString.
func (c Ctx) NewString(b []byte) String {
	var p *C.char
	if len(b) > 0 {
		p = (*C.char)(unsafe.Pointer(&b[0]))
	}
	return String{C.cshim_create_string(c.p, p, C.size_t(len(b)))}
}

// NewStringInt64 creates a decimal string that the caller must release with FreeString.
func (c Ctx) NewStringInt64(v int64) String {
	return String{C.cshim_create_string_ll(c.p, C.longlong(v))}
}

// FreeString releases a string made by NewString or NewStringInt64.
func (c Ctx) FreeString(s String) { C.cshim_free_string(c.p, s.p) }

// Milliseconds is the server's clock in Unix milliseconds.
func Milliseconds() int64 { return int64(C.cshim_milliseconds()) }

// ClientClock returns the server's clock in Unix ms for a command a client sent. For
// a command replayed from a primary's replication stream or from the AOF being loaded
// it returns replayed true (and 0): such a command must not read this server's clock,
// its effects were decided where it first ran. One crossing.
func (c Ctx) ClientClock() (ms int64, replayed bool) {
	v := int64(C.cshim_client_clock(c.p))
	if v < 0 {
		return 0, true
	}
	return v, false
}

// IsRESP3 reports whether the calling client speaks RESP3.
func (c Ctx) IsRESP3() bool { return C.cshim_is_resp3(c.p) != 0 }

// Level is a Redis log level.
type Level string

// Log levels, as Redis names them.
const (
	LogDebug   Level = "debug"
	LogVerbose Level = "verbose"
	LogNotice  Level = "notice"
	LogWarning Level = "warning"
)

// Log writes msg to the Redis log.
func (c Ctx) Log(level Level, msg string) {
	lv := C.CString(string(level))
	defer C.free(unsafe.Pointer(lv))
	C.cshim_log(c.p, lv, (*C.char)(unsafe.Pointer(unsafe.StringData(msg))), C.size_t(len(msg)))
}

// ServerVersion is the running server's version as 0x00MMmmpp (7.0.15 = 0x0007000f).
func ServerVersion() int { return int(C.cshim_server_version()) }

// HasAPI reports whether the server exports the module API function name
// (e.g. "RedisModule_SetCommandACLCategories"), for features newer than Redis 7.0.
func HasAPI(name string) bool {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	return C.cshim_has_api(cs) != 0
}
