// Package holdcheck runs cshim's C rules for charon-hd values (cshim/hold_format.c,
// the code behind rdb_load, RESTORE and CHARON.LOADHOLD) from Go, so that the pure
// package's tests and fuzzers can hold the Go and the C side of the persisted format
// to the same rules. hold_format.c and .h here are symbolic links to cshim's, so the
// go command rebuilds this package whenever they change. It is for tests: the module
// links package cshim, and a binary linking both would have the symbols twice.
package holdcheck

// #cgo CFLAGS: -std=gnu11 -O2 -Wall -Wextra -Werror
// #include <stdlib.h>
// #include "hold_format.h"
import "C"

import "unsafe"

// Check is charon_hold_check: the number of holds of a valid persisted form, -1 for
// anything else.
func Check(p []byte) int {
	n, _ := Shape(p)
	return n
}

// Shape is charon_hold_check_shape: the numbers of holds and tokens, -1 when invalid.
func Shape(p []byte) (holds, tokens int) {
	var m C.long
	if len(p) == 0 {
		return int(C.charon_hold_check_shape(nil, 0, &m)), int(m)
	}
	n := C.charon_hold_check_shape((*C.uchar)(unsafe.Pointer(&p[0])), C.size_t(len(p)), &m)
	return int(n), int(m)
}

// build lays p out the way rdb_load does; the caller frees the result.
func build(p []byte) (mem unsafe.Pointer, size C.size_t, ok bool) {
	n, m := Shape(p)
	if n < 0 {
		return nil, 0, false
	}
	cp := C.CBytes(p)
	defer C.free(cp)
	size = C.charon_hold_mem_size(C.charon_hold_cap_for(C.uint64_t(n)), C.charon_hold_tokcap_for(C.uint64_t(m)))
	mem = C.malloc(size)
	if C.charon_hold_build((*C.uchar)(cp), C.long(n), C.long(m), (*C.uchar)(mem)) == 0 {
		C.free(mem)
		return nil, 0, false
	}
	return mem, size, true
}

// RoundTrip lays p out in memory the way rdb_load does (charon_hold_build) and
// serializes it back the way rdb_save does; ok is false when C refuses p.
func RoundTrip(p []byte) (out []byte, ok bool) {
	mem, _, ok := build(p)
	if !ok {
		return nil, false
	}
	defer C.free(mem)
	plen := C.charon_hold_persisted_size((*C.uchar)(mem))
	buf := C.malloc(plen)
	defer C.free(buf)
	C.charon_hold_serialize((*C.uchar)(mem), (*C.uchar)(buf))
	return C.GoBytes(buf, C.int(plen)), true
}

// MemLayout returns the in-memory layout C builds from a valid persisted form p (the
// bytes rdb_load hands to the module), for comparison with Go's Build.
func MemLayout(p []byte) ([]byte, bool) {
	mem, size, ok := build(p)
	if !ok {
		return nil, false
	}
	defer C.free(mem)
	return C.GoBytes(mem, C.int(size)), true
}
