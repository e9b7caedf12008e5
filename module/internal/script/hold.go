package script

import (
	crand "crypto/rand"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/charon-redis/charon/module/hold"
)

// Op is a hold command.
type Op int

// The hold commands.
const (
	Reserve Op = iota
	Release
	Renew
	Transfer
	Seize
)

var opNames = [...]string{"reserve", "release", "renew", "transfer", "seize"}

// Hold is one request of a hold command for the script engine.
type Hold struct {
	Op Op
	// Key is the domain key, GlobalKey the global key ("": none), Groups the group keys.
	Key       string
	GlobalKey string
	Groups    []string
	// Reserve: Max, Min (taken as given), the domain limit (HasLimit), the global
	// limit and one limit per group key.
	Max, Min    int64
	HasLimit    bool
	Limit       int64
	GlobalLimit int64
	GroupLimits []int64
	// ID is the hold a RELEASE, RENEW, TRANSFER or SEIZE names.
	ID uint64
	// NewID is the id of the hold a RESERVE or TRANSFER creates; 0 draws one (64
	// random bits, never 0), as the module does on the primary.
	NewID uint64
	// Copies for RELEASE and TRANSFER (0: all); Lease for RESERVE, RENEW, SEIZE; TTL
	// for TRANSFER (ms).
	Copies int64
	Lease  int64
	TTL    int64
	DryRun bool
	// Once is the ONCE token of a RESERVE or TRANSFER ("": none).
	Once string
	// At is the request time in Unix ms.
	At int64
}

// FormatID writes a hold id as the module prints it: 16 lower-case hex digits.
func FormatID(id uint64) string {
	var b [16]byte
	hold.FormatID(&b, id)
	return string(b[:])
}

// NewID draws a hold id: 64 random bits, not 0.
func NewID() uint64 {
	var b [8]byte
	for {
		_, _ = crand.Read(b[:]) // never fails (crypto/rand, Go 1.24)
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// Call builds the script call. A RESERVE or TRANSFER without NewID gets a fresh one
// (h.NewID is set to it).
func (h *Hold) Call() *Call {
	keys := []string{h.Key}
	g := "0"
	if h.GlobalKey != "" {
		keys = append(keys, h.GlobalKey)
		g = "1"
	}
	keys = append(keys, h.Groups...)
	if (h.Op == Reserve || h.Op == Transfer) && h.NewID == 0 {
		h.NewID = NewID()
	}
	args := []any{opNames[h.Op], itoa(h.At), g}
	switch h.Op {
	case Reserve:
		limit := int64(-1)
		if h.HasLimit {
			limit = h.Limit
		}
		dry := "0"
		if h.DryRun {
			dry = "1"
		}
		args = append(args, itoa(h.Max), itoa(h.Min), itoa(limit), itoa(h.GlobalLimit), itoa(h.Lease), dry, FormatID(h.NewID), h.Once)
		for _, l := range h.GroupLimits {
			args = append(args, itoa(l))
		}
	case Release:
		args = append(args, FormatID(h.ID), itoa(h.Copies))
	case Renew, Seize:
		args = append(args, FormatID(h.ID), itoa(h.Lease))
	case Transfer:
		args = append(args, FormatID(h.ID), itoa(h.Copies), itoa(h.TTL), FormatID(h.NewID), h.Once)
	}
	return &Call{script: holdScript, Keys: keys, Args: args}
}

// ParseHold reads the arguments a client sends the module's hold command op after
// the key with the module's parser (errors are its *hold.ArgError). now is the
// client's clock in Unix ms, used when args carries no AT.
func ParseHold(op Op, key string, args []string, now int64) (*Hold, error) {
	views := make([][]byte, len(args))
	for i, a := range args {
		views[i] = []byte(a)
	}
	var req hold.Request
	if err := hold.Parse(hold.Cmd(op), views, &req); err != nil {
		return nil, err
	}
	if err := req.CheckKeys([]byte(key), views); err != nil {
		return nil, err
	}
	if req.HasID || req.Lag != 0 {
		return nil, &hold.ArgError{Arg: "ID", Reason: "set only by the primary (replication stream, AOF)"}
	}
	h := &Hold{Op: op, Key: key, ID: req.Hold, Max: req.Max, Min: req.Min, HasLimit: req.HasLimit, Limit: req.Limit,
		GlobalLimit: req.GlobalLimit, Lease: req.Lease, TTL: req.TTL, DryRun: req.DryRun, At: now}
	if req.HasAt {
		h.At = req.At
	}
	if req.Once {
		// The parser keeps the token's hash; the script remembers the token itself.
		for i := 0; i+1 < len(args); i++ {
			if strings.EqualFold(args[i], "ONCE") && hold.TokenHash(views[i+1]) == req.OnceHash {
				h.Once = args[i+1]
				break
			}
		}
	}
	if req.HasCopies {
		h.Copies = req.Copies
	}
	if req.HasGlobal {
		h.GlobalKey = args[req.GlobalIdx]
	}
	for g := 0; g < req.NGroups; g++ {
		h.Groups = append(h.Groups, args[req.GroupIdx[g]])
		if op == Reserve {
			h.GroupLimits = append(h.GroupLimits, req.GroupLimit[g])
		}
	}
	return h, nil
}

// HoldReply is a hold command's reply, the script's or the module's. Fields a command
// does not answer are zero.
type HoldReply struct {
	// RESERVE.
	Granted    int64
	ID         uint64 // the new hold (RESERVE, TRANSFER); 0: null
	Held       int64
	Limit      int64
	GlobalHeld int64
	LimitedBy  string
	Deadline   int64
	RetryAfter int64
	// Fence: RESERVE (0 on a rejection) and SEIZE; HasFence when the reply carried it
	// (a module without fences does not).
	Fence    int64
	HasFence bool
	// RELEASE, RENEW, SEIZE, TRANSFER.
	Copies    int64
	Remaining int64
}

// Reply field names by command, in reply order (the module's RESP3 map keys).
var (
	ReserveFields  = []string{"granted", "hold", "held", "limit", "global_held", "limited_by", "deadline", "retry_after", "fence"}
	ReleaseFields  = []string{"copies", "remaining", "deadline", "held"}
	SeizeFields    = []string{"copies", "remaining", "deadline", "held", "fence"}
	TransferFields = []string{"copies", "hold", "deadline", "remaining", "held"}
)

func fieldsOf(op Op) []string {
	switch op {
	case Reserve:
		return ReserveFields
	case Transfer:
		return TransferFields
	case Seize:
		return SeizeFields
	}
	return ReleaseFields
}

// DecodeHold reads the reply of op (a RESP2 array or RESP3 map). The last field (fence)
// may be missing, for a module that predates fences.
func DecodeHold(op Op, v any) (HoldReply, error) {
	var r HoldReply
	names := fieldsOf(op)
	vals := make(map[string]any, len(names))
	switch x := v.(type) {
	case []any:
		if len(x) != len(names) && !(names[len(names)-1] == "fence" && len(x) == len(names)-1) {
			return r, replyErr("%d elements, want %d", len(x), len(names))
		}
		for i, e := range x {
			vals[names[i]] = e
		}
	case map[any]any:
		for k, e := range x {
			s, ok := k.(string)
			if !ok {
				return r, replyErr("map key %T", k)
			}
			vals[s] = e
		}
	case map[string]any:
		vals = x
	default:
		return r, replyErr("%T", v)
	}
	for _, n := range names {
		e, ok := vals[n]
		if !ok {
			if n == "fence" {
				continue
			}
			return r, replyErr("no field %s", n)
		}
		switch n {
		case "hold":
			if e == nil {
				continue
			}
			s, ok := e.(string)
			if !ok {
				return r, replyErr("hold is %T", e)
			}
			id, ok := hold.ParseID([]byte(s))
			if !ok {
				return r, replyErr("hold %q", s)
			}
			r.ID = id
			continue
		case "limited_by":
			s, ok := e.(string)
			if !ok {
				return r, replyErr("limited_by is %T", e)
			}
			r.LimitedBy = s
			continue
		}
		iv, ok := asInt(e)
		if !ok {
			return r, replyErr("%s is %T", n, e)
		}
		switch n {
		case "granted":
			r.Granted = iv
		case "held":
			r.Held = iv
		case "limit":
			r.Limit = iv
		case "global_held":
			r.GlobalHeld = iv
		case "deadline":
			r.Deadline = iv
		case "retry_after":
			r.RetryAfter = iv
		case "fence":
			r.Fence, r.HasFence = iv, true
		case "copies":
			r.Copies = iv
		case "remaining":
			r.Remaining = iv
		}
	}
	return r, nil
}

// Command is the module command of op ("CHARON.RESERVE", ...).
func (op Op) Command() string { return hold.Cmd(op).Name() }

// String is the command's script name.
func (op Op) String() string {
	if op < 0 || int(op) >= len(opNames) {
		return "Op(" + strconv.Itoa(int(op)) + ")"
	}
	return opNames[op]
}
