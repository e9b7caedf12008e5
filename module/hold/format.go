package hold

import (
	"encoding/binary"
	"errors"
)

// The persisted form (RDB, DUMP/RESTORE, the AOF's CHARON.LOADHOLD, DEBUG DIGEST) is
// canonical: it does not depend on slots or capacities (FORMAT.md).
//
//	word 0  EncVer (2)
//	word 1  newest
//	word 2  limit+1 (0: none)
//	word 3  n: holds
//	word 4  fence
//	word 5  m: remembered tokens
//	n x     id, copies, deadline               in list order (deadline non-decreasing)
//	m x     hash, t0, kind, reply[8]           oldest first (t0 non-decreasing)
//
// Little-endian uint64 words; length exactly 48 + 24n + 88m. Version 1 (written before
// fences and tokens) is words 0..3 then the holds, 32 + 24n bytes: it still loads,
// with fence 0 and no tokens.

// EncVer is the persisted form's version (cshim/type_hold.h's CHARON_HOLD_ENC_CURRENT).
const EncVer = 2

// EncVer1 is the version written before fences and tokens.
const EncVer1 = 1

const (
	persistHdr1 = 32
	persistHdr  = 48
	persistRec  = 24
	persistTok  = TokWords * 8
)

// ErrCorrupt reports a persisted value that breaks a rule of FORMAT.md.
var ErrCorrupt = errors.New("corrupt charon-hd value")

// PersistedSize is the length of v's persisted form.
func (v View) PersistedSize() int {
	return persistHdr + v.Len()*persistRec + v.TokLen()*persistTok
}

// Serialize appends v's persisted form to dst.
func (v View) Serialize(dst []byte) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, EncVer)
	dst = le.AppendUint64(dst, v.word(wNewest))
	dst = le.AppendUint64(dst, v.word(wLimit))
	dst = le.AppendUint64(dst, uint64(v.Len()))
	dst = le.AppendUint64(dst, v.word(wFence))
	dst = le.AppendUint64(dst, uint64(v.TokLen()))
	for s := v.Head(); s >= 0; s = v.Next(s) {
		dst = le.AppendUint64(dst, v.rec(s, fID))
		dst = le.AppendUint64(dst, v.rec(s, fCopies))
		dst = le.AppendUint64(dst, v.rec(s, fDeadline))
	}
	for i := 0; i < v.TokLen(); i++ {
		p := v.tokPos(i)
		for f := 0; f < TokWords; f++ {
			dst = le.AppendUint64(dst, v.tok(p, f))
		}
	}
	return dst
}

// Shape is what Validate found in a persisted form.
type Shape struct {
	Ver    int // EncVer1 or EncVer
	Holds  int
	Tokens int
}

// Size is the byte size of the in-memory layout Build makes of the form.
func (s Shape) Size() int { return SizeWith(CapFor(s.Holds), TokCapFor(s.Tokens)) }

// Validate checks a persisted form: every rule but the uniqueness of ids and token
// hashes, which Build checks. It returns the number of holds.
func Validate(p []byte) (int, error) {
	s, err := Inspect(p)
	return s.Holds, err
}

// Inspect is Validate returning the form's whole shape.
func Inspect(p []byte) (Shape, error) {
	le := binary.LittleEndian
	if len(p) < persistHdr1 {
		return Shape{}, ErrCorrupt
	}
	s := Shape{Ver: int(le.Uint64(p))}
	hdr := persistHdr
	switch s.Ver {
	case EncVer1:
		hdr = persistHdr1
	case EncVer:
		if len(p) < persistHdr {
			return Shape{}, ErrCorrupt
		}
	default:
		return Shape{}, ErrCorrupt
	}
	newest, lim, n := le.Uint64(p[8:]), le.Uint64(p[16:]), le.Uint64(p[24:])
	var fence, m uint64
	if s.Ver == EncVer {
		fence, m = le.Uint64(p[32:]), le.Uint64(p[40:])
	}
	if newest > MaxAt || lim > MaxCount+1 || n > MaxHolds || fence > MaxFence || m > MaxTokens {
		return Shape{}, ErrCorrupt
	}
	if uint64(len(p)) != uint64(hdr)+n*persistRec+m*persistTok {
		return Shape{}, ErrCorrupt
	}
	prev := uint64(1) // deadlines are at least 1
	for i := 0; i < int(n); i++ {
		r := p[hdr+i*persistRec:]
		id, c, d := le.Uint64(r), le.Uint64(r[8:]), le.Uint64(r[16:])
		if id == 0 || c < 1 || c > MaxCount || d < prev || d > newest+MaxDuration {
			return Shape{}, ErrCorrupt
		}
		prev = d
	}
	tp := hdr + int(n)*persistRec
	prevT := int64(newest) - OnceWindow // a write prunes the tokens older than this
	for i := 0; i < int(m); i++ {
		var tk Token
		readToken(p[tp+i*persistTok:], &tk)
		if tk.T0 < prevT || tk.T0 > int64(newest) || !tokenReplyValid(&tk) {
			return Shape{}, ErrCorrupt
		}
		prevT = tk.T0
	}
	s.Holds, s.Tokens = int(n), int(m)
	return s, nil
}

func readToken(r []byte, tk *Token) {
	le := binary.LittleEndian
	tk.Hash = le.Uint64(r)
	tk.T0 = int64(le.Uint64(r[8:]))
	tk.Kind = Cmd(le.Uint64(r[16:]))
	for i := range tk.Reply {
		tk.Reply[i] = int64(le.Uint64(r[24+8*i:]))
	}
}

// maxHeld bounds a remembered held count: MaxHolds holds of MaxCount copies.
const maxHeld = MaxHolds * MaxCount

// tokenReplyValid checks a remembered reply against the bounds of the reply it is
// (FORMAT.md). t0 is already known to be in 0..2^53.
func tokenReplyValid(tk *Token) bool {
	r := &tk.Reply
	in := func(x, lo, hi int64) bool { return lo <= x && x <= hi }
	switch tk.Kind {
	case Reserve:
		return in(r[0], 1, MaxCount) && r[1] != 0 && in(r[2], 0, maxHeld) && in(r[3], -1, MaxCount) &&
			in(r[4], -1, maxHeld) && in(r[5], LimitedNone, LimitedGroup+MaxGroups-1) &&
			in(r[6], tk.T0+1, tk.T0+MaxDuration) && in(r[7], 1, MaxFence)
	case Transfer:
		return in(r[0], 1, MaxCount) && r[1] != 0 && in(r[2], tk.T0+1, tk.T0+MaxDuration) &&
			in(r[3], 0, MaxCount-1) && in(r[4], 0, maxHeld) && r[5] == 0 && r[6] == 0 && r[7] == 0
	}
	return false
}

// Build lays out the persisted form p in dst (which needs Inspect(p)'s Size() bytes).
// It fails on a corrupt form, a repeated id or a repeated token hash.
func Build(p []byte, dst []byte) (View, error) {
	s, err := Inspect(p)
	if err != nil {
		return nil, err
	}
	c, tc := CapFor(s.Holds), TokCapFor(s.Tokens)
	if len(dst) < SizeWith(c, tc) {
		return nil, errors.New("hold: Build needs a larger buffer")
	}
	v := InitWith(dst, c, tc)
	le := binary.LittleEndian
	v.setWord(wNewest, le.Uint64(p[8:]))
	v.setWord(wLimit, le.Uint64(p[16:]))
	hdr := persistHdr1
	if s.Ver == EncVer {
		hdr = persistHdr
		v.setWord(wFence, le.Uint64(p[32:]))
	}
	for i := 0; i < s.Holds; i++ {
		r := p[hdr+i*persistRec:]
		id := le.Uint64(r)
		if v.Find(id) >= 0 {
			return nil, ErrCorrupt
		}
		v.Insert(id, int64(le.Uint64(r[8:])), int64(le.Uint64(r[16:])))
	}
	tp := hdr + s.Holds*persistRec
	for i := 0; i < s.Tokens; i++ {
		var tk Token
		readToken(p[tp+i*persistTok:], &tk)
		if v.FindToken(tk.Hash) >= 0 {
			return nil, ErrCorrupt
		}
		v.InsertToken(&tk)
	}
	return v, nil
}
