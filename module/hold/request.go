// Package hold implements the pure logic of Charon's copy-limited resources
// (CHARON.RESERVE, RELEASE, RENEW, TRANSFER, SEIZE): argument parsing, the rules of
// spec/charon-hold.md, and the flat layout of a key's value (FORMAT.md). It knows
// nothing of Redis: time and hold ids are arguments, values are byte slices the
// caller owns, errors are typed values that the glue turns into replies.
package hold

import (
	"bytes"
	"strconv"

	"github.com/charon-redis/charon/module/attime"
	"github.com/charon-redis/charon/module/internal/args"
)

// Bounds from the contract (the same as CHARON.RATE's).
const (
	// MaxCount bounds limits, MAX, MIN and COPIES.
	MaxCount = 1_000_000_000_000
	// MaxDuration bounds LEASE, TTL and LAG: 10 years of 365 days, in ms.
	MaxDuration = 10 * 365 * 24 * 3600 * 1000
	// MaxAt bounds AT (2^53).
	MaxAt = 1 << 53
	// MaxGroups is the most group keys one request may name.
	MaxGroups = 32
	// MaxHolds is the most holds one key may store at once.
	MaxHolds = 1 << 20
	// DefaultLease is LEASE when a request gives none, in ms.
	DefaultLease = 60_000

	// OnceWindow is how long a key remembers a ONCE token after the grant's effective
	// time t0, in ms: a replay at t0 + OnceWindow is recognised, one at t0 +
	// OnceWindow + 1 is not.
	OnceWindow = 10_000
	// MaxTokenLen bounds a ONCE token's length in bytes.
	MaxTokenLen = 64
	// MaxTokens is the most tokens one key remembers at once (the grants of its last
	// OnceWindow ms).
	MaxTokens = 1 << 16

	// FenceShift: a fence is at least t << FenceShift (t in ms), so fences outgrow
	// anything issued before a failover as long as one resource gets fewer than 2^20
	// grants in one millisecond.
	FenceShift = 20
	// MaxFenceTime is the largest t whose t << FenceShift fits in an int64 (the year
	// 2248); later times count as it.
	MaxFenceTime = 1<<(63-FenceShift) - 1
	// MaxFence is the largest fence; fences saturate there.
	MaxFence = 1<<63 - 1
)

// TokenHash is the 64-bit hash a key remembers a ONCE token by: FNV-1a, then
// MurmurHash3's 64-bit finalizer. It is part of the persisted format: never change it.
func TokenHash(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Cmd is one of the five commands.
type Cmd int

// The commands.
const (
	Reserve Cmd = iota
	Release
	Renew
	Transfer
	Seize
)

var cmdNames = [...]string{"CHARON.RESERVE", "CHARON.RELEASE", "CHARON.RENEW", "CHARON.TRANSFER", "CHARON.SEIZE"}

// Name is the command's name as replicated.
func (c Cmd) Name() string { return cmdNames[c] }

// Request is a parsed argument list (everything after the key). It is caller-owned
// and reusable: Parse overwrites every field. Indices are into the args given to
// Parse (the command's argv index is the index + 2).
type Request struct {
	Cmd Cmd
	// Hold is the hold id (all commands but Reserve).
	Hold uint64

	Max, Min int64
	HasLimit bool
	Limit    int64
	// HasGlobal: a GLOBAL clause; GlobalIdx is the index of the global key.
	HasGlobal   bool
	GlobalIdx   int
	GlobalLimit int64
	// GroupsIdx is the index of the GROUP keyword (-1: none); NGroups group keys
	// follow it, GroupIdx[i] their indices, GroupLimit[i] their limits (Reserve).
	GroupsIdx  int
	NGroups    int
	GroupIdx   [MaxGroups]int
	GroupLimit [MaxGroups]int64

	Lease     int64
	TTL       int64
	HasCopies bool
	Copies    int64
	HasAt     bool
	At        int64
	// HasID: an explicit id for the hold a Reserve or Transfer creates (replication).
	HasID bool
	ID    uint64
	// Lag is how far the primary's clock was ahead of AT (replication): keys expire
	// Lag ms after their latest deadline + 1.
	Lag    int64
	DryRun bool
	// Once: a ONCE token (Reserve, Transfer), remembered by its hash.
	Once     bool
	OnceHash uint64
	// HasBlock: BLOCK ms (Reserve): wait up to Block ms (0: without a timeout) for
	// copies when the request cannot be granted at once.
	HasBlock bool
	Block    int64
	// Queued is set by the caller before Plan (never parsed): bit k means an earlier
	// waiter is held back by key k (it has less room than that waiter needs), so this
	// request may take nothing from key k (first come, first served per key).
	Queued uint64
	// Skip lists the indices of the AT, ID, LAG and BLOCK keywords (each followed by its
	// value), which the glue leaves out when it replicates (with the explicit AT, ID and
	// LAG; a grant replicates as a plain RESERVE, never as a wait).
	Skip  [4]int
	NSkip int
}

// ArgError names the offending argument. The glue replies "ERR <Arg>: <Reason>". It is
// the one argument error of the module's parsers (module/rate's ArgError is the same type).
type ArgError = args.Error

// Short local names for the shared primitives (functions, so that they inline).
func argErr(arg, reason string) error { return args.Err(arg, reason) }
func eqFold(b []byte, kw string) bool { return args.EqFold(b, kw) }

func rangeErr(arg string, lo, hi int64) error {
	return argErr(arg, "must be an integer in "+strconv.FormatInt(lo, 10)+".."+strconv.FormatInt(hi, 10))
}

// parseInt parses a decimal integer in [lo, hi] the way Redis's string2ll does: no
// '+', no spaces, no leading zeros.
func parseInt(b []byte, lo, hi int64) (int64, bool) { return args.ParseBounded(b, lo, hi) }

// ParseID parses a hold id: exactly 16 hex digits, not all zero.
func ParseID(b []byte) (uint64, bool) {
	if len(b) != 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, v != 0
}

// FormatID writes id as 16 lower-case hex digits into dst.
func FormatID(dst *[16]byte, id uint64) {
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		dst[i] = hex[id&15]
		id >>= 4
	}
}

func quoteArg(b []byte) string {
	if len(b) > 32 {
		b = b[:32]
	}
	return "'" + string(b) + "'"
}

func value(argv [][]byte, i int, name string, seen bool, lo, hi int64) (int64, error) {
	b, err := args.Value(argv, i, name, seen)
	if err != nil {
		return 0, err
	}
	v, ok := parseInt(b, lo, hi)
	if !ok {
		return 0, rangeErr(name, lo, hi)
	}
	return v, nil
}

// Parse parses the arguments of cmd that follow the key. For every command but
// Reserve, args[0] is the hold id. keys are the command's whole argv views (for the
// distinct-keys check); pass nil to skip it. Errors are *ArgError.
func Parse(cmd Cmd, args [][]byte, req *Request) error {
	*req = Request{Cmd: cmd, Max: 1, Min: -1, Lease: DefaultLease, GlobalIdx: -1, GroupsIdx: -1}
	i := 0
	if cmd != Reserve {
		if len(args) == 0 {
			return argErr("hold", "missing hold id")
		}
		id, ok := ParseID(args[0])
		if !ok {
			return argErr("hold", "must be 16 hex digits (not all zero), got "+quoteArg(args[0]))
		}
		req.Hold = id
		i = 1
	}
	var seenMax, seenMin, seenLease, seenTTL bool
	for ; i < len(args); i++ {
		a := args[i]
		var err error
		switch {
		case cmd == Reserve && eqFold(a, "MAX"):
			req.Max, err = value(args, i, "MAX", seenMax, 1, MaxCount)
			seenMax = true
			i++
		case cmd == Reserve && eqFold(a, "MIN"):
			req.Min, err = value(args, i, "MIN", seenMin, 0, MaxCount)
			seenMin = true
			i++
		case cmd == Reserve && eqFold(a, "LIMIT"):
			req.Limit, err = value(args, i, "LIMIT", req.HasLimit, 0, MaxCount)
			req.HasLimit = true
			i++
		case (cmd == Reserve || cmd == Renew || cmd == Seize) && eqFold(a, "LEASE"):
			req.Lease, err = value(args, i, "LEASE", seenLease, 1, MaxDuration)
			seenLease = true
			i++
		case cmd == Transfer && eqFold(a, "TTL"):
			req.TTL, err = value(args, i, "TTL", seenTTL, 1, MaxDuration)
			seenTTL = true
			i++
		case (cmd == Release || cmd == Transfer) && eqFold(a, "COPIES"):
			req.Copies, err = value(args, i, "COPIES", req.HasCopies, 1, MaxCount)
			req.HasCopies = true
			i++
		case eqFold(a, "AT"):
			req.At, err = value(args, i, "AT", req.HasAt, 0, MaxAt)
			if err != nil && !req.HasAt && i+1 < len(args) {
				err = attime.Refine(args[i+1], err)
			}
			req.HasAt = true
			req.skip(i)
			i++
		case eqFold(a, "LAG"):
			req.Lag, err = value(args, i, "LAG", req.Lag != 0, 0, MaxDuration)
			req.skip(i)
			i++
		case (cmd == Reserve || cmd == Transfer) && eqFold(a, "ID"):
			switch {
			case req.HasID:
				err = argErr("ID", "given more than once")
			case i+1 >= len(args):
				err = argErr("ID", "missing value")
			default:
				var ok bool
				if req.ID, ok = ParseID(args[i+1]); !ok {
					err = argErr("ID", "must be 16 hex digits (not all zero)")
				}
			}
			req.HasID = true
			req.skip(i)
			i++
		case cmd == Reserve && eqFold(a, "DRYRUN"):
			req.DryRun = true
		case cmd == Reserve && eqFold(a, "BLOCK"):
			req.Block, err = value(args, i, "BLOCK", req.HasBlock, 0, MaxDuration)
			req.HasBlock = true
			req.skip(i)
			i++
		case (cmd == Reserve || cmd == Transfer) && eqFold(a, "ONCE"):
			switch {
			case req.Once:
				err = argErr("ONCE", "given more than once")
			case i+1 >= len(args):
				err = argErr("ONCE", "missing token")
			case len(args[i+1]) < 1 || len(args[i+1]) > MaxTokenLen:
				err = argErr("ONCE", "the token must be 1 to 64 bytes, got "+strconv.Itoa(len(args[i+1])))
			default:
				req.Once, req.OnceHash = true, TokenHash(args[i+1])
			}
			i++
		case eqFold(a, "GLOBAL"):
			if req.HasGlobal {
				return argErr("GLOBAL", "given more than once")
			}
			if i+1 >= len(args) {
				return argErr("GLOBAL", "missing key")
			}
			req.HasGlobal, req.GlobalIdx = true, i+1
			i++
			if cmd == Reserve {
				req.GlobalLimit, err = value(args, i, "GLOBAL", false, 0, MaxCount)
				i++
			}
		case eqFold(a, "GROUP"):
			err = req.parseGroups(args, i)
			i = len(args)
		default:
			return argErr("syntax", "unknown option "+quoteArg(a))
		}
		if err != nil {
			return err
		}
	}
	if !seenMin {
		req.Min = req.Max
	}
	if cmd == Reserve {
		if req.HasBlock && req.DryRun {
			return argErr("BLOCK", "a DRYRUN does not wait: give one or the other")
		}
		if req.Min > req.Max {
			return argErr("MIN", "must not exceed MAX ("+strconv.FormatInt(req.Max, 10)+")")
		}
		if !req.HasLimit && !req.HasGlobal && req.NGroups == 0 {
			return argErr("LIMIT", "no limit named: give LIMIT, GLOBAL or GROUP")
		}
	}
	if cmd == Transfer && !seenTTL {
		return argErr("TTL", "required: how long the new hold lives before it is seized")
	}
	return nil
}

func (req *Request) skip(i int) {
	if req.NSkip < len(req.Skip) {
		req.Skip[req.NSkip] = i
		req.NSkip++
	}
}

// parseGroups parses "GROUP key [n] [key [n] ...]" to the end of args (Reserve
// takes a limit after each key).
func (req *Request) parseGroups(args [][]byte, i int) error {
	req.GroupsIdx = i
	step := 1
	if req.Cmd == Reserve {
		step = 2
	}
	// Everything after GROUP is group keys (and limits): a key spelled like an option
	// is an option given too late, never a key (GROUP g 3 LIMIT 2 must not create a key
	// named LIMIT and drop the domain limit).
	for _, a := range args[i+1:] {
		if isOption(a) {
			return argErr("GROUP", "GROUP comes last: "+quoteArg(a)+" after it would be read as a group key; give the options before GROUP")
		}
	}
	rest := len(args) - i - 1
	if rest == 0 || rest%step != 0 {
		if step == 2 {
			return argErr("GROUP", "takes key limit pairs to the end of the command")
		}
		return argErr("GROUP", "missing key")
	}
	if rest/step > MaxGroups {
		return argErr("GROUP", "at most "+strconv.Itoa(MaxGroups)+" group keys")
	}
	for j := i + 1; j < len(args); j += step {
		req.GroupIdx[req.NGroups] = j
		if step == 2 {
			v, ok := parseInt(args[j+1], 0, MaxCount)
			if !ok {
				return argErr("GROUP", "the limit of group key "+quoteArg(args[j])+" must be an integer in 0..1000000000000 (GROUP key limit pairs run to the end of the command)")
			}
			req.GroupLimit[req.NGroups] = v
		}
		req.NGroups++
	}
	return nil
}

// options are the keywords of the five commands. None of them can be a group key.
var options = [...]string{"MAX", "MIN", "LIMIT", "GLOBAL", "GROUP", "LEASE", "TTL", "COPIES", "AT", "ID", "LAG", "DRYRUN", "BLOCK", "ONCE"}

func isOption(a []byte) bool {
	for _, o := range options {
		if eqFold(a, o) {
			return true
		}
	}
	return false
}

// CheckKeys reports a key named twice: key is the domain key, args the views given to
// Parse. A hold must be recorded once per key.
func (req *Request) CheckKeys(key []byte, args [][]byte) error {
	if req.HasGlobal && bytes.Equal(args[req.GlobalIdx], key) {
		return argErr("GLOBAL", "the global key must differ from the key")
	}
	for g := 0; g < req.NGroups; g++ {
		k := args[req.GroupIdx[g]]
		if bytes.Equal(k, key) || (req.HasGlobal && bytes.Equal(k, args[req.GlobalIdx])) {
			return argErr("GROUP", "group key "+quoteArg(k)+" is also the key or the global key")
		}
		for h := 0; h < g; h++ {
			if bytes.Equal(k, args[req.GroupIdx[h]]) {
				return argErr("GROUP", "group key "+quoteArg(k)+" named twice")
			}
		}
	}
	return nil
}

// LimitOf is the limit the request names for its key k (0: the domain key, then the
// global key if any, then the group keys); -1 when it names none.
func (req *Request) LimitOf(k int) int64 { return req.limitOf(k) }

// Need is the fewest copies a Reserve accepts: MIN, at least 1.
func (req *Request) Need() int64 { return max(req.Min, 1) }

// NKeys is the number of keys the request names (domain, global, groups).
func (req *Request) NKeys() int {
	n := 1 + req.NGroups
	if req.HasGlobal {
		n++
	}
	return n
}
