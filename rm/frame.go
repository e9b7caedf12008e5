package rm

/*
#cgo noescape cshim_frame_reserve
#cgo nocallback cshim_frame_reserve
#include "cshim.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"unsafe"
)

// FrameSpec makes a command a frame command (cshim/frame.c): one that reads and
// writes up to two values of one blob type and replies with integer fields. C opens
// the keys before the handler runs and does the writes, the expiry, the keyspace
// signals, the replication and the reply after it returns, so the whole command is
// one C->Go crossing and the handler calls no API on its common path. The handler
// reaches the frame through Ctx.Frame. Key 0 is argument 1; key 1, if any, is the
// one the command's keyword key spec finds, so the frame opens exactly the keys that
// cluster slot checks and ACLs see.
type FrameSpec struct {
	Type   *Type
	Event  *Event  // raised once per key written
	Fields *Fields // the reply's fields, at most FrameMaxFields
}

// FrameMaxFields is the most integer fields a frame command replies with.
const FrameMaxFields = C.CSHIM_FRAME_FIELDS

// define registers cmd's frame for slot with C.
func (spec *FrameSpec) define(slot int, cmd *Command) error {
	name := cmd.Name
	if spec.Type == nil || spec.Event == nil || spec.Fields == nil || spec.Fields.n > FrameMaxFields {
		return fmt.Errorf("command %s: a frame needs a type, an event and at most %d fields", name, FrameMaxFields)
	}
	var kw *C.char
	for _, ks := range cmd.KeySpecs {
		if ks.Keyword == "" {
			continue
		}
		// cshim/frame.c searches for the keyword from argument 2, one key after it.
		if ks.StartFrom != 2 || ks.LastKey != 0 || kw != nil {
			return fmt.Errorf("command %s: a frame takes one keyword key, searched from argument 2", name)
		}
		kw = C.CString(ks.Keyword) // lives as long as the module
	}
	// The name it replicates under, as clients write it.
	if C.cshim_frame_define(C.int(slot), spec.Type.p, spec.Event.p, kw, C.CString(strings.ToUpper(name)),
		spec.Fields.names, C.int(spec.Fields.n)) != 0 {
		return fmt.Errorf("command %s: frame refused", name)
	}
	return nil
}

// Frame is a frame command's view of what C prepared (see FrameSpec). Its values
// borrow C memory and are valid only during the call.
type Frame struct{ p *C.cshim_frame }

// Frame returns the frame around the current call; ok is false when the command is
// not a frame command.
func (c Ctx) Frame() (f Frame, ok bool) { return Frame{c.f}, c.f != nil }

// Clock is the server clock in Unix ms and whether the command is replayed from a
// primary's replication stream or the AOF (whose effects were decided where it
// first ran).
func (f Frame) Clock() (ms int64, replayed bool) {
	return int64(f.p.now), f.p.replayed != 0
}

// KeyArg is the argument index of key i, or -1 when the call has no such key. A key
// 1 with key 0's name has its index but is not opened (Value reports it absent).
func (f Frame) KeyArg(i int) int { return int(f.p.keys[i].argi) }

// Value is key i's stored value: found is false for an absent key (or an unused
// one); the error is ErrWrongType when the key holds another type. The slice's
// capacity reaches the bytes writable in place: a value rewritten there and passed
// to Store is kept without a copy.
func (f Frame) Value(i int) (val []byte, found bool, err error) {
	k := &f.p.keys[i]
	switch k.state {
	case C.CSHIM_OK:
		return unsafe.Slice((*byte)(unsafe.Pointer(k.data)), int(max(k.cap, k.len)))[:int(k.len)], true, nil
	case C.CSHIM_WRONGTYPE:
		return nil, false, ErrWrongType
	}
	return nil, false, nil
}

// Scratch is a C buffer (length 0) in which to build key i's new value when it does
// not fit in place; Store copies a value built elsewhere into it.
func (f Frame) Scratch(i int) []byte {
	k := &f.p.keys[i]
	if k.scratch == nil {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(k.scratch)), int(k.scratch_cap))[:0]
}

// Store has C store val as key i's value after the handler returns, with the
// absolute expiry expireAt (Unix ms; none when <= 0), and signal the key and raise
// the frame's event. val should start at Value's or Scratch's first byte; any other
// slice (Go memory, which C must never keep) is copied into a grown scratch first.
// A value above MaxBlob is refused naming the cap, and nothing is written.
func (f Frame) Store(i int, val []byte, expireAt int64) error {
	if len(val) == 0 {
		return fmt.Errorf("rm: a frame stores no empty value")
	}
	if len(val) > MaxBlob {
		return fmt.Errorf("key: a value of %d bytes exceeds the %d MiB cap on a value; nothing was written", len(val), MaxBlob>>20)
	}
	k := &f.p.keys[i]
	p := (*C.uchar)(unsafe.Pointer(unsafe.SliceData(val)))
	if p != k.data && p != k.scratch {
		// Rare: the value outgrew both the block and the scratch buffer.
		buf := C.cshim_frame_reserve(f.p, C.int(i), C.size_t(len(val)))
		if buf == nil {
			return fmt.Errorf("rm: no room for a value of %d bytes", len(val))
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(buf)), len(val)), val)
		p = buf
	}
	k.out, k.outlen, k.expire_at = p, C.size_t(len(val)), C.longlong(expireAt)
	return nil
}

// ReplicateVerbatim has C propagate the command as the client sent it.
func (f Frame) ReplicateVerbatim() { f.p.repl = C.CSHIM_REPL_VERBATIM }

// ReplicateWithOptions has C propagate the command with options a and b made
// explicit, as Ctx.ReplicateWithOptions does.
func (f Frame) ReplicateWithOptions(a, b Explicit) {
	f.p.repl = C.CSHIM_REPL_OPTIONS
	f.p.skip_a, f.p.name_a, f.p.val_a = C.int(a.Skip), a.Name.p, C.longlong(a.Value)
	f.p.skip_b, f.p.name_b, f.p.val_b = C.int(b.Skip), b.Name.p, C.longlong(b.Value)
}

// Reply has C store the values, replicate and reply with vals (one per field of the
// FrameSpec, in order) after the handler returns nil.
func (f Frame) Reply(vals []int64) {
	copy(unsafe.Slice((*int64)(unsafe.Pointer(&f.p.fields[0])), FrameMaxFields), vals)
	f.p.reply = 1
}
