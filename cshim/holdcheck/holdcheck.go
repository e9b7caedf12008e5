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
	if len(p) == 0 {
		return int(C.charon_hold_check(nil, 0))
	}
	return int(C.charon_hold_check((*C.uchar)(unsafe.Pointer(&p[0])), C.size_t(len(p))))
}

// RoundTrip lays p out in memory the way rdb_load does (charon_hold_build) and
// serializes it back the way rdb_save does; ok is false when C refuses p.
func RoundTrip(p []byte) (out []byte, ok bool) {
	n := Check(p)
	if n < 0 {
		return nil, false
	}
	cp := C.CBytes(p)
	defer C.free(cp)
	size := C.charon_hold_mem_size(C.charon_hold_cap_for(C.uint64_t(n)))
	mem := C.malloc(size)
	defer C.free(mem)
	if C.charon_hold_build((*C.uchar)(cp), C.long(n), (*C.uchar)(mem)) == 0 {
		return nil, false
	}
	plen := C.charon_hold_persisted_size((*C.uchar)(mem))
	buf := C.malloc(plen)
	defer C.free(buf)
	C.charon_hold_serialize((*C.uchar)(mem), (*C.uchar)(buf))
	return C.GoBytes(buf, C.int(plen)), true
}

// MemLayout returns the in-memory layout C builds from a valid persisted form p (the
// bytes rdb_load hands to the module), for comparison with Go's Build.
func MemLayout(p []byte) ([]byte, bool) {
	n := Check(p)
	if n < 0 {
		return nil, false
	}
	cp := C.CBytes(p)
	defer C.free(cp)
	size := C.charon_hold_mem_size(C.charon_hold_cap_for(C.uint64_t(n)))
	mem := C.malloc(size)
	defer C.free(mem)
	if C.charon_hold_build((*C.uchar)(cp), C.long(n), (*C.uchar)(mem)) == 0 {
		return nil, false
	}
	return C.GoBytes(mem, C.int(size)), true
}
