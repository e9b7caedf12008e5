package rm

/*
#cgo noescape cshim_open_blob
#cgo nocallback cshim_open_blob
#cgo noescape cshim_key_blob
#cgo nocallback cshim_key_blob
#cgo noescape cshim_store_blob
#cgo nocallback cshim_store_blob
#cgo noescape cshim_lengths_of
#cgo nocallback cshim_lengths_of
#cgo noescape cshim_zset_incrby
#cgo nocallback cshim_zset_incrby
#cgo noescape cshim_zset_rem
#cgo nocallback cshim_zset_rem
#cgo nocallback cshim_open_key
#cgo nocallback cshim_close_key
#cgo nocallback cshim_set_abs_expire
#cgo nocallback cshim_key_written
#include <stdlib.h>
#include "cshim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// KeyType is the type of the value a key holds (REDISMODULE_KEYTYPE_*).
type KeyType int

// Key types, with the values of redismodule.h.
const (
	KeyEmpty KeyType = iota
	KeyString
	KeyList
	KeyHash
	KeySet
	KeyZset
	KeyModule
	KeyStream
)

// Type is a module data type created by cshim at load. Its values are blobs: one
// RedisModule_Alloc block of bytes whose layout the module defines.
type Type struct {
	p    *C.RedisModuleType
	name string
}

// LookupType returns the data type that cshim created under name.
func LookupType(name string) (*Type, error) {
	p := C.cshim_type_lookup(cstr(name), C.size_t(len(name)))
	if p == nil {
		return nil, fmt.Errorf("rm: no data type named %q was created at load", name)
	}
	return &Type{p: p, name: name}, nil
}

// Name is the type's 9-character name.
func (t *Type) Name() string { return t.name }

// Check runs the type's C validator over b, the same check rdb_load applies.
func (t *Type) Check(b []byte) bool {
	var p *C.uchar
	if len(b) > 0 {
		p = (*C.uchar)(unsafe.Pointer(&b[0]))
	}
	return C.cshim_type_check(t.p, p, C.size_t(len(b))) != 0
}

// ReadKey is a key opened for reading. Close it when done.
type ReadKey struct{ k *C.RedisModuleKey }

// WriteKey is a key opened for writing. Close it when done.
//
// Opening a key for writing changes nothing by itself: the module loads with
// REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED, so a key is signalled as modified
// (aborting other clients' WATCH, invalidating client-side caches) and a keyspace
// event raised only by the methods that write and take an *Event, or by Written.
type WriteKey struct {
	ReadKey
	ctx  *C.RedisModuleCtx
	name *C.RedisModuleString
}

// Event is the name of a module keyspace event (class 'd' of
// notify-keyspace-events), such as the command that wrote the key. Create events
// once, at load.
type Event struct{ p *C.char }

// NewEvent makes a keyspace event name. Its C copy lives as long as the module.
func NewEvent(name string) *Event { return &Event{C.CString(name)} }

// Written reports a real write of the key: it signals the key as modified and raises
// the module keyspace event ev. Call it once per key written, after the write, and
// never for a request that changed nothing.
func (k WriteKey) Written(ev *Event) { C.cshim_key_written(k.ctx, k.name, ev.p) }

// MaxBlob is the largest value a blob type's key may hold (CSHIM_BLOB_MAX, 64 MiB),
// the bound rdb_load also applies.
const MaxBlob = C.CSHIM_BLOB_MAX

// BlobTooBig is the error for a value of n bytes above MaxBlob, naming the argument
// it came from and the cap.
func BlobTooBig(arg string, t *Type, n int) error {
	return fmt.Errorf("%s: a %s value of %d bytes exceeds the %d MiB cap on a value; nothing was written",
		arg, t.name, n, MaxBlob>>20)
}

// OpenRead opens a key for reading.
func (c Ctx) OpenRead(name String) ReadKey {
	return ReadKey{C.cshim_open_key(c.p, name.p, C.CSHIM_READ)}
}

// HashFieldHasPrefix reports whether name holds a hash whose field starts with
// prefix. It is for error paths (it allocates).
func (c Ctx) HashFieldHasPrefix(name String, field, prefix string) bool {
	cf, cp := C.CString(field), C.CString(prefix)
	defer C.free(unsafe.Pointer(cf))
	defer C.free(unsafe.Pointer(cp))
	return C.cshim_hash_field_prefix(c.p, name.p, cf, cp, C.size_t(len(prefix))) == 1
}

// OpenWrite opens a key for reading and writing.
func (c Ctx) OpenWrite(name String) WriteKey {
	return WriteKey{ReadKey{C.cshim_open_key(c.p, name.p, C.CSHIM_WRITE)}, c.p, name.p}
}

// Close releases the key.
func (k ReadKey) Close() { C.cshim_close_key(k.k) }

// Type reports the type of the key's value (KeyEmpty when absent).
func (k ReadKey) Type() KeyType { return KeyType(C.cshim_key_type(k.k)) }

// Len is the length of the value (elements of a collection, bytes of a string).
func (k ReadKey) Len() int64 { return int64(C.cshim_value_length(k.k)) }

// AbsExpire is the key's absolute expiry in Unix ms, or -1 when it has none.
func (k ReadKey) AbsExpire() int64 { return int64(C.cshim_get_abs_expire(k.k)) }

// Blob returns a borrowed view of the key's value of type t. found is false for an
// empty key; the error is ErrWrongType when the key holds another type.
func (k ReadKey) Blob(t *Type) (val []byte, found bool, err error) {
	var data *C.uchar
	var n, cp C.size_t
	return blobResult(C.cshim_key_blob(k.k, t.p, &data, &n, &cp), data, n, n)
}

// blobResult views n bytes at data; with cp > n the slice's capacity reaches cp (the
// block's usable size) so that a writer may rewrite the value in place.
func blobResult(rc C.int, data *C.uchar, n, cp C.size_t) ([]byte, bool, error) {
	switch rc {
	case C.CSHIM_OK:
		return unsafe.Slice((*byte)(unsafe.Pointer(data)), int(max(cp, n)))[:int(n)], true, nil
	case C.CSHIM_WRONGTYPE:
		return nil, false, ErrWrongType
	default:
		return nil, false, nil
	}
}

// OpenBlobWrite opens name for writing and returns its value of type t, in one
// crossing. The value's capacity is the block's usable size: bytes up to it may be
// written, and StoreBlob of a slice starting at the value's first byte then keeps
// them in place instead of copying. On error (ErrWrongType) the key is already closed; otherwise the caller
// closes it.
func (c Ctx) OpenBlobWrite(name String, t *Type) (k WriteKey, val []byte, found bool, err error) {
	k.k, val, found, err = c.openBlob(name, t, C.CSHIM_WRITE)
	k.ctx, k.name = c.p, name.p
	return k, val, found, err
}

// OpenBlobRead is OpenBlobWrite for reading.
func (c Ctx) OpenBlobRead(name String, t *Type) (k ReadKey, val []byte, found bool, err error) {
	k.k, val, found, err = c.openBlob(name, t, C.CSHIM_READ)
	return k, val, found, err
}

func (c Ctx) openBlob(name String, t *Type, mode C.int) (*C.RedisModuleKey, []byte, bool, error) {
	var k *C.RedisModuleKey
	var data *C.uchar
	var n, cp C.size_t
	rc := C.cshim_open_blob(c.p, name.p, mode, t.p, &k, &data, &n, &cp)
	if mode != C.CSHIM_WRITE {
		cp = n
	}
	val, found, err := blobResult(rc, data, n, cp)
	if err != nil {
		C.cshim_close_key(k)
		return nil, nil, false, err
	}
	return k, val, found, nil
}

// errWriteFailed reports an API call that Redis refused.
var errWriteFailed = errors.New("the server refused the write")

// SetBlob stores a copy of data as the key's value of type t and reports the write
// (Written(ev)).
func (k WriteKey) SetBlob(t *Type, data []byte, ev *Event) error {
	return k.StoreBlob(t, data, 0, ev)
}

// StoreBlob stores a copy of data as the key's value of type t, sets the key's
// absolute expiry (Unix ms) when expireAt is positive, and reports the write
// (Written(ev)), in one crossing. A value above the cap is an error naming the cap,
// and nothing is written.
func (k WriteKey) StoreBlob(t *Type, data []byte, expireAt int64, ev *Event) error {
	var p *C.uchar
	if len(data) > 0 {
		p = (*C.uchar)(unsafe.Pointer(&data[0]))
	}
	switch C.cshim_store_blob(k.ctx, k.k, k.name, ev.p, t.p, p, C.size_t(len(data)), C.longlong(expireAt)) {
	case C.CSHIM_OK:
		return nil
	case C.CSHIM_WRONGTYPE:
		return ErrWrongType
	case C.CSHIM_TOOBIG:
		return BlobTooBig("value", t, len(data))
	default:
		return fmt.Errorf("rm: storing a %s value: %w", t.name, errWriteFailed)
	}
}

// SetAbsExpire sets the key's absolute expiry in Unix milliseconds.
func (k WriteKey) SetAbsExpire(unixMs int64) error {
	if C.cshim_set_abs_expire(k.k, C.longlong(unixMs)) != 0 {
		return fmt.Errorf("rm: setting expiry: %w", errWriteFailed)
	}
	return nil
}

// Delete removes the key.
func (k WriteKey) Delete() error {
	if C.cshim_delete_key(k.k) != 0 {
		return fmt.Errorf("rm: deleting key: %w", errWriteFailed)
	}
	return nil
}

// ZsetIncrBy adds delta to member's score in the sorted set (created if absent),
// reports the write (Written(ev)) and returns the new score, in one crossing.
func (k WriteKey) ZsetIncrBy(member String, delta float64, ev *Event) (float64, error) {
	var score C.double
	switch C.cshim_zset_incrby(k.ctx, k.k, k.name, ev.p, member.p, C.double(delta), &score) {
	case C.CSHIM_OK:
		return float64(score), nil
	case C.CSHIM_WRONGTYPE:
		return 0, ErrWrongType
	default:
		return 0, fmt.Errorf("rm: ZINCRBY: %w", errWriteFailed)
	}
}

// ZsetRem removes member from the sorted set; removed reports whether it was there.
// It does not report the write: call Written once after the last removal.
func (k WriteKey) ZsetRem(member String) (removed bool, err error) {
	var deleted C.int
	switch C.cshim_zset_rem(k.k, member.p, &deleted) {
	case C.CSHIM_OK:
		return deleted != 0, nil
	case C.CSHIM_WRONGTYPE:
		return false, ErrWrongType
	default:
		return false, fmt.Errorf("rm: ZREM: %w", errWriteFailed)
	}
}

// LengthsOf stores in out the value length of each key args[first:] (0 for a missing
// key), in one crossing. It returns ErrWrongType if a key exists with a type other
// than want; out must hold at least args.Len()-first elements.
func (c Ctx) LengthsOf(args Args, first int, want KeyType, out []int64) error {
	n := args.Len() - first
	if n <= 0 {
		return nil
	}
	if len(out) < n {
		return fmt.Errorf("rm: LengthsOf needs room for %d values, got %d", n, len(out))
	}
	keys := args.From(first)
	var bad C.int
	if C.cshim_lengths_of(c.p, keys.argv, C.int(n), C.int(want), (*C.int64_t)(unsafe.Pointer(&out[0])), &bad) != C.CSHIM_OK {
		return ErrWrongType
	}
	return nil
}
