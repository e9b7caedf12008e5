package hold

import (
	"encoding/binary"
	"errors"
)

// The persisted form (RDB, DUMP/RESTORE, the AOF's CHARON.LOADHOLD, DEBUG DIGEST) is
// canonical: it does not depend on slots or capacity (FORMAT.md).
//
//	word 0  EncVer (1)
//	word 1  newest
//	word 2  limit+1 (0: none)
//	word 3  n
//	n x     id, copies, deadline      in list order (deadline non-decreasing)
//
// Little-endian uint64 words; length exactly 32 + 24n.

// EncVer is the persisted form's version (cshim/type_hold.h's CHARON_HOLD_ENC_CURRENT).
const EncVer = 1

const persistHdr = 32
const persistRec = 24

// ErrCorrupt reports a persisted value that breaks a rule of FORMAT.md.
var ErrCorrupt = errors.New("corrupt charon-hd value")

// PersistedSize is the length of v's persisted form.
func (v View) PersistedSize() int { return persistHdr + v.Len()*persistRec }

// Serialize appends v's persisted form to dst.
func (v View) Serialize(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, EncVer)
	dst = binary.LittleEndian.AppendUint64(dst, v.word(wNewest))
	dst = binary.LittleEndian.AppendUint64(dst, v.word(wLimit))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(v.Len()))
	for s := v.Head(); s >= 0; s = v.Next(s) {
		dst = binary.LittleEndian.AppendUint64(dst, v.rec(s, fID))
		dst = binary.LittleEndian.AppendUint64(dst, v.rec(s, fCopies))
		dst = binary.LittleEndian.AppendUint64(dst, v.rec(s, fDeadline))
	}
	return dst
}

// Validate checks a persisted form: every rule but id uniqueness, which Build checks.
// It returns the number of holds.
func Validate(p []byte) (int, error) {
	if len(p) < persistHdr || (len(p)-persistHdr)%persistRec != 0 {
		return 0, ErrCorrupt
	}
	le := binary.LittleEndian
	if le.Uint64(p) != EncVer {
		return 0, ErrCorrupt
	}
	newest, lim, n := le.Uint64(p[8:]), le.Uint64(p[16:]), le.Uint64(p[24:])
	if newest > MaxAt || lim > MaxCount+1 || n > MaxHolds || n != uint64((len(p)-persistHdr)/persistRec) {
		return 0, ErrCorrupt
	}
	prev := uint64(1) // deadlines are at least 1
	for i := 0; i < int(n); i++ {
		r := p[persistHdr+i*persistRec:]
		id, c, d := le.Uint64(r), le.Uint64(r[8:]), le.Uint64(r[16:])
		if id == 0 || c < 1 || c > MaxCount || d < prev || d > newest+MaxDuration {
			return 0, ErrCorrupt
		}
		prev = d
	}
	return int(n), nil
}

// Build lays out the persisted form p in dst (which needs SizeFor(CapFor(n)) bytes).
// It fails on a corrupt form or a repeated id.
func Build(p []byte, dst []byte) (View, error) {
	n, err := Validate(p)
	if err != nil {
		return nil, err
	}
	c := CapFor(n)
	if len(dst) < SizeFor(c) {
		return nil, errors.New("hold: Build needs a larger buffer")
	}
	v := Init(dst, c)
	le := binary.LittleEndian
	v.setWord(wNewest, le.Uint64(p[8:]))
	v.setWord(wLimit, le.Uint64(p[16:]))
	for i := 0; i < n; i++ {
		r := p[persistHdr+i*persistRec:]
		id := le.Uint64(r)
		if v.Find(id) >= 0 {
			return nil, ErrCorrupt
		}
		v.Insert(id, int64(le.Uint64(r[8:])), int64(le.Uint64(r[16:])))
	}
	return v, nil
}
