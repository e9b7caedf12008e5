package hold

import "encoding/binary"

// A value in memory (a View) is one flat block that both Go and C read (FORMAT.md):
//
//	header  12 words: version, cap, n, newest, held, head, tail, limit+1,
//	        fence, tcap, tn, thead
//	records cap x 5 words: id, copies, deadline, prev, next   (prev/next: slot+1, 0 = none)
//	index   2*cap uint32: slot+1 of the record whose id hashes there (0 = empty)
//	tokens  tcap x 11 words: hash, t0, kind, reply[8]   (a ring, oldest at thead)
//	tindex  2*tcap uint32: position+1 of the token whose hash hashes there
//
// The records form a doubly linked list sorted by deadline (ties: insertion order), so
// expired holds are pruned from the head and a new hold with the latest deadline is
// appended at the tail in O(1). The index is an open-addressing hash table (linear
// probing, backward-shift deletion) from id to slot, so a hold is found in O(1).
// Records 0..n-1 are in use; removing one moves the last record into its slot.
// The tokens (ONCE) are a ring in the order they were remembered, which is the order
// of their times, so they are pruned from the oldest; tcap is 0 (no token area) until
// a key remembers its first token. All words are little-endian uint64.

const (
	hdrWords = 12
	hdrBytes = hdrWords * 8
	recWords = 5
	recBytes = recWords * 8

	wVersion = 0
	wCap     = 1
	wN       = 2
	wNewest  = 3
	wHeld    = 4
	wHead    = 5
	wTail    = 6
	wLimit   = 7
	wFence   = 8
	wTCap    = 9
	wTN      = 10
	wTHead   = 11

	fID       = 0
	fCopies   = 1
	fDeadline = 2
	fPrev     = 3
	fNext     = 4

	// MinCap is the capacity of a new value.
	MinCap = 4

	// TokWords is a remembered token's size in words: hash, t0, kind, 8 reply words.
	TokWords = 3 + TokReplyWords
	// TokReplyWords is the room for a remembered reply.
	TokReplyWords = 8
	tokBytes      = TokWords * 8

	tHash  = 0
	tT0    = 1
	tKind  = 2
	tReply = 3

	// MinTokCap is the token capacity of a key that remembers its first token.
	MinTokCap = 4
)

// LayoutVersion is the first word of an in-memory value.
const LayoutVersion = 2

// View is a value in its in-memory layout. It borrows the caller's bytes (C memory in
// the module) and mutates them in place.
type View []byte

// SizeFor is the byte size of a value with room for c holds and no tokens.
func SizeFor(c int) int { return SizeWith(c, 0) }

// SizeWith is the byte size of a value with room for c holds and tc tokens.
func SizeWith(c, tc int) int { return hdrBytes + c*recBytes + 2*c*4 + tc*tokBytes + 2*tc*4 }

func (v View) word(i int) uint64       { return binary.LittleEndian.Uint64(v[i*8:]) }
func (v View) setWord(i int, x uint64) { binary.LittleEndian.PutUint64(v[i*8:], x) }

func (v View) rec(slot, f int) uint64 {
	return binary.LittleEndian.Uint64(v[hdrBytes+slot*recBytes+f*8:])
}
func (v View) setRec(slot, f int, x uint64) {
	binary.LittleEndian.PutUint64(v[hdrBytes+slot*recBytes+f*8:], x)
}

func (v View) idxOff() int { return hdrBytes + v.Cap()*recBytes }
func (v View) idx(i int) uint32 {
	return binary.LittleEndian.Uint32(v[v.idxOff()+i*4:])
}
func (v View) setIdx(i int, x uint32) { binary.LittleEndian.PutUint32(v[v.idxOff()+i*4:], x) }

// Cap is the number of holds the value has room for.
func (v View) Cap() int { return int(v.word(wCap)) }

// Len is the number of holds stored (live or not yet pruned).
func (v View) Len() int { return int(v.word(wN)) }

// Newest is the newest effective time a request stored in the value.
func (v View) Newest() int64 { return int64(v.word(wNewest)) }

// Held is the sum of the copies of every stored hold.
func (v View) Held() int64 { return int64(v.word(wHeld)) }

// Limit is the limit the last writing request named for this key (-1: none).
func (v View) Limit() int64 { return int64(v.word(wLimit)) - 1 }

// Full reports whether one more hold needs a bigger block.
func (v View) Full() bool { return v.Len() >= v.Cap() }

// Init lays out an empty value with room for c holds (a power of two >= MinCap) and
// no tokens in dst[:SizeFor(c)], which it zeroes.
func Init(dst []byte, c int) View { return InitWith(dst, c, 0) }

// InitWith lays out an empty value with room for c holds and tc tokens (0, or a power
// of two >= MinTokCap) in dst[:SizeWith(c, tc)], which it zeroes.
func InitWith(dst []byte, c, tc int) View {
	v := View(dst[:SizeWith(c, tc)])
	clear(v)
	v.setWord(wVersion, LayoutVersion)
	v.setWord(wCap, uint64(c))
	v.setWord(wTCap, uint64(tc))
	return v
}

// Fence is the largest fencing token a grant or seize recorded in this key (0: none).
func (v View) Fence() int64 { return int64(v.word(wFence)) }

// SetFence records a fencing token.
func (v View) SetFence(f int64) { v.setWord(wFence, uint64(f)) }

// hash maps an id to its home position in an index of size m (a power of two).
func hash(id uint64, m int) int {
	id ^= id >> 33
	id *= 0xff51afd7ed558ccd
	id ^= id >> 33
	return int(id & uint64(m-1))
}

// Find returns the slot of the hold with this id, or -1.
func (v View) Find(id uint64) int {
	m := 2 * v.Cap()
	for i := hash(id, m); ; i = (i + 1) & (m - 1) {
		e := v.idx(i)
		if e == 0 {
			return -1
		}
		if v.rec(int(e-1), fID) == id {
			return int(e - 1)
		}
	}
}

// idxPos returns the index position holding slot s (whose id is id).
func (v View) idxPos(id uint64, s int) int {
	m := 2 * v.Cap()
	for i := hash(id, m); ; i = (i + 1) & (m - 1) {
		if int(v.idx(i)) == s+1 {
			return i
		}
	}
}

func (v View) idxInsert(id uint64, s int) {
	m := 2 * v.Cap()
	i := hash(id, m)
	for v.idx(i) != 0 {
		i = (i + 1) & (m - 1)
	}
	v.setIdx(i, uint32(s+1))
}

// idxDelete empties position i and shifts later entries back (no tombstones).
func (v View) idxDelete(i int) {
	m := 2 * v.Cap()
	j := i
	for {
		j = (j + 1) & (m - 1)
		e := v.idx(j)
		if e == 0 {
			break
		}
		h := hash(v.rec(int(e-1), fID), m)
		// Move e into the hole at i unless its home lies cyclically in (i, j].
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			v.setIdx(i, e)
			i = j
		}
	}
	v.setIdx(i, 0)
}

// Hold reads the hold in slot s.
func (v View) Hold(s int) (id uint64, copies, deadline int64) {
	return v.rec(s, fID), int64(v.rec(s, fCopies)), int64(v.rec(s, fDeadline))
}

// Head is the slot of the hold with the earliest deadline, or -1.
func (v View) Head() int { return int(v.word(wHead)) - 1 }

// Tail is the slot of the hold with the latest deadline, or -1.
func (v View) Tail() int { return int(v.word(wTail)) - 1 }

// Next is the slot after s in deadline order, or -1.
func (v View) Next(s int) int { return int(v.rec(s, fNext)) - 1 }

// Latest is the latest deadline stored, 0 when empty.
func (v View) Latest() int64 {
	if t := v.Tail(); t >= 0 {
		return int64(v.rec(t, fDeadline))
	}
	return 0
}

// link puts slot s into the deadline list: after every hold whose deadline is <= d.
// It searches from both ends at once, so the cost is the distance to the nearer end:
// O(1) when d is the latest (one lease per resource, the common case) or the earliest
// (a short TRANSFER TTL among long leases).
func (v View) link(s int, d int64) {
	v.setRec(s, fDeadline, uint64(d))
	after := v.Tail() // back from the tail: the last hold with deadline <= d
	fwd := v.Head()   // forward from the head: every hold before fwd has deadline <= d
	for after >= 0 && int64(v.rec(after, fDeadline)) > d {
		after = int(v.rec(after, fPrev)) - 1
		if fwd < 0 {
			after = v.Tail()
			break
		}
		if int64(v.rec(fwd, fDeadline)) > d {
			after = int(v.rec(fwd, fPrev)) - 1
			break
		}
		fwd = v.Next(fwd)
	}
	var next int
	if after < 0 {
		next = v.Head()
		v.setWord(wHead, uint64(s+1))
	} else {
		next = int(v.rec(after, fNext)) - 1
		v.setRec(after, fNext, uint64(s+1))
	}
	v.setRec(s, fPrev, uint64(after+1))
	v.setRec(s, fNext, uint64(next+1))
	if next < 0 {
		v.setWord(wTail, uint64(s+1))
	} else {
		v.setRec(next, fPrev, uint64(s+1))
	}
}

func (v View) unlink(s int) {
	prev, next := v.rec(s, fPrev), v.rec(s, fNext)
	if prev == 0 {
		v.setWord(wHead, next)
	} else {
		v.setRec(int(prev-1), fNext, next)
	}
	if next == 0 {
		v.setWord(wTail, prev)
	} else {
		v.setRec(int(next-1), fPrev, prev)
	}
}

// Insert adds a hold; the value must not be Full and id must be new and non-zero.
func (v View) Insert(id uint64, copies, deadline int64) {
	s := v.Len()
	v.setRec(s, fID, id)
	v.setRec(s, fCopies, uint64(copies))
	v.link(s, deadline)
	v.idxInsert(id, s)
	v.setWord(wN, uint64(s+1))
	v.setWord(wHeld, v.word(wHeld)+uint64(copies))
}

// Remove deletes the hold in slot s; the last record moves into s.
func (v View) Remove(s int) {
	id := v.rec(s, fID)
	v.setWord(wHeld, v.word(wHeld)-v.rec(s, fCopies))
	v.unlink(s)
	v.idxDelete(v.idxPos(id, s))
	last := v.Len() - 1
	if s != last {
		lid := v.rec(last, fID)
		v.setIdx(v.idxPos(lid, last), uint32(s+1))
		for f := 0; f < recWords; f++ {
			v.setRec(s, f, v.rec(last, f))
		}
		if p := v.rec(s, fPrev); p == 0 {
			v.setWord(wHead, uint64(s+1))
		} else {
			v.setRec(int(p-1), fNext, uint64(s+1))
		}
		if n := v.rec(s, fNext); n == 0 {
			v.setWord(wTail, uint64(s+1))
		} else {
			v.setRec(int(n-1), fPrev, uint64(s+1))
		}
	}
	for f := 0; f < recWords; f++ {
		v.setRec(last, f, 0)
	}
	v.setWord(wN, uint64(last))
}

// SetCopies changes the copies of the hold in slot s (c >= 1).
func (v View) SetCopies(s int, c int64) {
	v.setWord(wHeld, v.word(wHeld)-v.rec(s, fCopies)+uint64(c))
	v.setRec(s, fCopies, uint64(c))
}

// Move gives the hold in slot s a new deadline and its place in the list.
func (v View) Move(s int, deadline int64) {
	v.unlink(s)
	v.link(s, deadline)
}

// Expired sums the copies of the holds whose deadline is <= t (they count nowhere),
// walking from the head without changing anything.
func (v View) Expired(t int64) (holds int, copies int64) {
	for s := v.Head(); s >= 0 && int64(v.rec(s, fDeadline)) <= t; s = v.Next(s) {
		holds++
		copies += int64(v.rec(s, fCopies))
	}
	return holds, copies
}

// Live is the number of copies that count at time t.
func (v View) Live(t int64) int64 {
	_, exp := v.Expired(t)
	return v.Held() - exp
}

// Prune removes every hold whose deadline is <= t.
func (v View) Prune(t int64) {
	for s := v.Head(); s >= 0 && int64(v.rec(s, fDeadline)) <= t; s = v.Head() {
		v.Remove(s)
	}
}

// Touch records a write at effective time t and the limit the request named
// (-1: none).
func (v View) Touch(t, limit int64) {
	if t > v.Newest() {
		v.setWord(wNewest, uint64(t))
	}
	v.setWord(wLimit, uint64(limit+1))
}

// CapFor is the capacity a value holding n holds is rebuilt with when it must grow.
func CapFor(n int) int {
	c := MinCap
	for c < n {
		c *= 2
	}
	return c
}

// TokCapFor is the token capacity for m tokens: 0 for none, else a power of two >=
// MinTokCap.
func TokCapFor(m int) int {
	if m == 0 {
		return 0
	}
	c := MinTokCap
	for c < m {
		c *= 2
	}
	return c
}

// Rebuild copies v into dst laid out with capacity c (>= v.Len()) and v's token
// capacity; records keep their slots, the index is rebuilt. dst must have
// SizeWith(c, v.TokCap()) bytes.
func (v View) Rebuild(dst []byte, c int) View { return v.RebuildWith(dst, c, v.TokCap()) }

// RebuildWith copies v into dst laid out with room for c holds (>= v.Len()) and tc
// tokens (>= v.TokLen()); records keep their slots, tokens move to positions 0..tn-1,
// both indexes are rebuilt. dst must have SizeWith(c, tc) bytes.
func (v View) RebuildWith(dst []byte, c, tc int) View {
	w := InitWith(dst, c, tc)
	n := v.Len()
	copy(w[8:hdrBytes], v[8:hdrBytes])
	w.setWord(wCap, uint64(c))
	w.setWord(wTCap, uint64(tc))
	w.setWord(wTHead, 0)
	copy(w[hdrBytes:hdrBytes+n*recBytes], v[hdrBytes:hdrBytes+n*recBytes])
	for s := 0; s < n; s++ {
		w.idxInsert(w.rec(s, fID), s)
	}
	for i := 0; i < v.TokLen(); i++ {
		p := v.tokPos(i)
		copy(w[w.tokOff()+i*tokBytes:w.tokOff()+(i+1)*tokBytes], v[v.tokOff()+p*tokBytes:v.tokOff()+(p+1)*tokBytes])
		w.tidxInsert(w.tok(i, tHash), i)
	}
	return w
}

// ---- remembered tokens (ONCE) ----

// TokCap is the number of tokens the value has room for.
func (v View) TokCap() int { return int(v.word(wTCap)) }

// TokLen is the number of tokens remembered (live or not yet pruned).
func (v View) TokLen() int { return int(v.word(wTN)) }

// TokFull reports whether one more token needs a bigger block.
func (v View) TokFull() bool { return v.TokLen() >= v.TokCap() }

func (v View) tokOff() int  { return v.idxOff() + 2*v.Cap()*4 }
func (v View) tidxOff() int { return v.tokOff() + v.TokCap()*tokBytes }

// tokPos is the ring position of the i-th oldest token.
func (v View) tokPos(i int) int { return (int(v.word(wTHead)) + i) & (v.TokCap() - 1) }

func (v View) tok(pos, f int) uint64 {
	return binary.LittleEndian.Uint64(v[v.tokOff()+pos*tokBytes+f*8:])
}
func (v View) setTok(pos, f int, x uint64) {
	binary.LittleEndian.PutUint64(v[v.tokOff()+pos*tokBytes+f*8:], x)
}
func (v View) tidx(i int) uint32 { return binary.LittleEndian.Uint32(v[v.tidxOff()+i*4:]) }
func (v View) setTidx(i int, x uint32) {
	binary.LittleEndian.PutUint32(v[v.tidxOff()+i*4:], x)
}

func (v View) tidxInsert(h uint64, pos int) {
	m := 2 * v.TokCap()
	i := hash(h, m)
	for v.tidx(i) != 0 {
		i = (i + 1) & (m - 1)
	}
	v.setTidx(i, uint32(pos+1))
}

// Token is a remembered request: the hash of its token, its effective time, the
// command, and its reply's words (Result.OnceReply's layout).
type Token struct {
	Hash  uint64
	T0    int64
	Kind  Cmd
	Reply [TokReplyWords]int64
}

// FindToken returns the ring position of the token with hash h, or -1.
func (v View) FindToken(h uint64) int {
	if v.TokCap() == 0 {
		return -1
	}
	m := 2 * v.TokCap()
	for i := hash(h, m); ; i = (i + 1) & (m - 1) {
		e := v.tidx(i)
		if e == 0 {
			return -1
		}
		if v.tok(int(e-1), tHash) == h {
			return int(e - 1)
		}
	}
}

// TokenAt reads the token at ring position pos.
func (v View) TokenAt(pos int, tk *Token) {
	tk.Hash = v.tok(pos, tHash)
	tk.T0 = int64(v.tok(pos, tT0))
	tk.Kind = Cmd(v.tok(pos, tKind))
	for i := range tk.Reply {
		tk.Reply[i] = int64(v.tok(pos, tReply+i))
	}
}

// OldestToken is the ring position of the i-th oldest token (0 <= i < TokLen).
func (v View) OldestToken(i int) int { return v.tokPos(i) }

// InsertToken remembers tk as the newest token; the value must not be TokFull and
// tk.Hash must not be remembered.
func (v View) InsertToken(tk *Token) {
	pos := v.tokPos(v.TokLen())
	v.setTok(pos, tHash, tk.Hash)
	v.setTok(pos, tT0, uint64(tk.T0))
	v.setTok(pos, tKind, uint64(tk.Kind))
	for i, r := range tk.Reply {
		v.setTok(pos, tReply+i, uint64(r))
	}
	v.tidxInsert(tk.Hash, pos)
	v.setWord(wTN, uint64(v.TokLen()+1))
}

// PruneTokens forgets every token remembered at t0 < t - OnceWindow (a replay at
// t0 + OnceWindow is still recognised, one at t0 + OnceWindow + 1 is not).
func (v View) PruneTokens(t int64) {
	for v.TokLen() > 0 {
		pos := v.tokPos(0)
		if int64(v.tok(pos, tT0)) >= t-OnceWindow {
			return
		}
		h := v.tok(pos, tHash)
		m := 2 * v.TokCap()
		i := hash(h, m)
		for int(v.tidx(i)) != pos+1 {
			i = (i + 1) & (m - 1)
		}
		v.tidxDelete(i)
		for f := 0; f < TokWords; f++ {
			v.setTok(pos, f, 0)
		}
		v.setWord(wTHead, uint64((pos+1)&(v.TokCap()-1)))
		v.setWord(wTN, uint64(v.TokLen()-1))
	}
}

// tidxDelete empties token index position i and shifts later entries back.
func (v View) tidxDelete(i int) {
	m := 2 * v.TokCap()
	j := i
	for {
		j = (j + 1) & (m - 1)
		e := v.tidx(j)
		if e == 0 {
			break
		}
		h := hash(v.tok(int(e-1), tHash), m)
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			v.setTidx(i, e)
			i = j
		}
	}
	v.setTidx(i, 0)
}

// LatestToken is the time of the newest remembered token, -1 when none.
func (v View) LatestToken() int64 {
	if v.TokLen() == 0 {
		return -1
	}
	return int64(v.tok(v.tokPos(v.TokLen()-1), tT0))
}
