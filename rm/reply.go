package rm

/*
#cgo noescape cshim_reply_long_longs
#cgo nocallback cshim_reply_long_longs
#cgo noescape cshim_reply_int_fields
#cgo nocallback cshim_reply_int_fields
#cgo noescape cshim_reply_bulk
#cgo nocallback cshim_reply_bulk
#cgo noescape cshim_reply_simple
#cgo nocallback cshim_reply_simple
#cgo noescape cshim_reply_error
#cgo nocallback cshim_reply_error
#cgo nocallback cshim_reply_long_long
#include <stdlib.h>
#include "cshim.h"
*/
import "C"

import "unsafe"

// ReplyInt64 replies with an integer.
func (c Ctx) ReplyInt64(v int64) { C.cshim_reply_long_long(c.p, C.longlong(v)) }

// ReplyDouble replies with a double (a bulk string under RESP2).
func (c Ctx) ReplyDouble(v float64) { C.cshim_reply_double(c.p, C.double(v)) }

// ReplySimple replies with a simple string such as "OK".
func (c Ctx) ReplySimple(s string) {
	C.cshim_reply_simple(c.p, cstr(s), C.size_t(len(s)))
}

// ReplyError replies with an error; s should start with a code ("ERR ...").
func (c Ctx) ReplyError(s string) {
	C.cshim_reply_error(c.p, cstr(s), C.size_t(len(s)))
}

// ReplyBulk replies with a bulk string.
func (c Ctx) ReplyBulk(b []byte) {
	var p *C.char
	if len(b) > 0 {
		p = (*C.char)(unsafe.Pointer(&b[0]))
	}
	C.cshim_reply_bulk(c.p, p, C.size_t(len(b)))
}

// ReplyBulkString replies with a bulk string.
func (c Ctx) ReplyBulkString(s string) {
	C.cshim_reply_bulk(c.p, cstr(s), C.size_t(len(s)))
}

// ReplyNull replies with a null.
func (c Ctx) ReplyNull() { C.cshim_reply_null(c.p) }

// ReplyArray starts an array of n elements; the next n replies fill it.
func (c Ctx) ReplyArray(n int) { C.cshim_reply_array(c.p, C.long(n)) }

// ReplyMap starts a map of n pairs (a flat array of 2n elements under RESP2);
// the next 2n replies fill it, key then value.
func (c Ctx) ReplyMap(n int) { C.cshim_reply_map(c.p, C.long(n)) }

// ReplyInt64s replies with an array of integers in one crossing.
func (c Ctx) ReplyInt64s(vals []int64) {
	if len(vals) == 0 {
		c.ReplyArray(0)
		return
	}
	C.cshim_reply_long_longs(c.p, (*C.int64_t)(unsafe.Pointer(&vals[0])), C.int(len(vals)))
}

// Fields names the members of a fixed-shape integer reply. Its names live in C
// memory for the life of the module; create it once at load.
type Fields struct {
	names **C.char
	n     int
}

// NewFields copies names into C memory.
func NewFields(names ...string) *Fields {
	arr := (**C.char)(C.calloc(C.size_t(len(names)+1), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	s := unsafe.Slice(arr, len(names))
	for i, n := range names {
		s[i] = C.CString(n)
	}
	return &Fields{names: arr, n: len(names)}
}

// Len is the number of fields.
func (f *Fields) Len() int { return f.n }

// ReplyIntFields replies with vals named by f: a map under RESP3, an array of the
// values in order under RESP2. len(vals) must equal f.Len().
func (c Ctx) ReplyIntFields(f *Fields, vals []int64) {
	if len(vals) != f.n || f.n == 0 {
		c.ReplyError("ERR internal error: reply shape mismatch")
		return
	}
	C.cshim_reply_int_fields(c.p, f.names, (*C.int64_t)(unsafe.Pointer(&vals[0])), C.int(f.n))
}

// cstr points at s's bytes for a C call that takes (pointer, length).
func cstr(s string) *C.char { return (*C.char)(unsafe.Pointer(unsafe.StringData(s))) }
