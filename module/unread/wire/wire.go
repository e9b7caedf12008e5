// Package wire is the contract of the UNREAD.* commands, shared by the module (which
// parses requests with it) and the Go client (which builds requests and decodes
// replies with it). It is pure: no cgo, no rm, no go-redis, no clock.
//
// Data model: the key of a user is a sorted set whose members are the IDs of the
// conversations with unread messages and whose scores are the number of unread
// messages in each conversation. A conversation leaves the set when it is read, and an
// empty set does not exist (Redis deletes it).
//
// Commands and reply shapes (identical under RESP2 and RESP3):
//
//	UNREAD.COUNT key [key ...]                       -> array of integers, one per key in
//	                                                    request order: ZCARD, 0 when missing
//	UNREAD.MARK key conversation [count]             -> integer: the conversation's new
//	                                                    number of unread messages
//	UNREAD.READ key conversation [conversation ...]  -> integer: the user's new number of
//	                                                    conversations with unread messages
//
// A key holding another type is a WRONGTYPE error. Argument errors read
// "ERR <arg>: <reason>".
package wire

import (
	"errors"
	"fmt"
	"strconv"
)

// Command names, as sent by the client and registered by the module.
const (
	CmdCount = "UNREAD.COUNT"
	CmdMark  = "UNREAD.MARK"
	CmdRead  = "UNREAD.READ"
)

// Bounds of UNREAD.MARK's count argument.
const (
	DefaultMarkCount = 1
	// MaxMarkCount keeps every score an exactly representable integer: scores are
	// doubles, and 2^53-1 is the largest integer below which every integer is exact.
	MaxMarkCount = 1<<53 - 1
)

// ErrWrongArity reports an argument count the command does not accept. The module
// maps it to Redis's own wrong-arity reply.
var ErrWrongArity = errors.New("wrong number of arguments")

// ArgError names the argument that is wrong and why. Its text is "<arg>: <reason>";
// the module's dispatcher prefixes the "ERR" code.
type ArgError struct {
	Arg    string
	Reason string
}

func (e *ArgError) Error() string { return e.Arg + ": " + e.Reason }

// Mark is a parsed UNREAD.MARK request. Key and Conversation borrow the argv views.
type Mark struct {
	Key          []byte
	Conversation []byte
	Count        int64
}

// ParseMark parses argv (argv[0] is the command name) of
// UNREAD.MARK key conversation [count].
func ParseMark(argv [][]byte) (Mark, error) {
	if len(argv) < 3 || len(argv) > 4 {
		return Mark{}, ErrWrongArity
	}
	m := Mark{Key: argv[1], Conversation: argv[2], Count: DefaultMarkCount}
	if len(argv) == 4 {
		n, err := ParseCount(argv[3])
		if err != nil {
			return Mark{}, err
		}
		m.Count = n
	}
	return m, nil
}

// ParseCount parses UNREAD.MARK's count: a decimal integer in [1, MaxMarkCount],
// digits only (no sign, no spaces, no leading zeros). It does not allocate.
func ParseCount(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, &ArgError{Arg: "count", Reason: "must be a positive integer"}
	}
	if b[0] == '0' && len(b) > 1 {
		return 0, &ArgError{Arg: "count", Reason: "must be a positive integer"}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, &ArgError{Arg: "count", Reason: "must be a positive integer"}
		}
		n = n*10 + int64(c-'0')
		if n > MaxMarkCount {
			return 0, &ArgError{Arg: "count", Reason: "must be at most 9007199254740991"}
		}
	}
	if n == 0 {
		return 0, &ArgError{Arg: "count", Reason: "must be a positive integer"}
	}
	return n, nil
}

// ScoreToCount turns a sorted-set score into a reply integer. Scores written through
// UNREAD.MARK are positive integers; anything else (written by other commands) is
// truncated toward zero and saturated to the int64 range, never wrapped.
func ScoreToCount(score float64) int64 {
	switch {
	case score != score: // NaN cannot be stored by Redis; be defensive anyway.
		return 0
	case score >= 9223372036854775807:
		return 9223372036854775807
	case score <= -9223372036854775808:
		return -9223372036854775808
	default:
		return int64(score)
	}
}

// DecodeCounts decodes an UNREAD.COUNT reply for want keys, as go-redis delivers it
// under RESP2 or RESP3 (an []any of int64). Any other shape, a wrong length or a
// negative count is an error, never a guessed number.
func DecodeCounts(reply any, want int) ([]int64, error) {
	items, ok := reply.([]any)
	if !ok {
		return nil, fmt.Errorf("%s reply: want an array, got %T", CmdCount, reply)
	}
	if len(items) != want {
		return nil, fmt.Errorf("%s reply: want %d counts, got %d", CmdCount, want, len(items))
	}
	out := make([]int64, len(items))
	for i, it := range items {
		n, err := DecodeCount(it)
		if err != nil {
			return nil, fmt.Errorf("%s reply: element %d: %w", CmdCount, i, err)
		}
		out[i] = n
	}
	return out, nil
}

// DecodeCount decodes one non-negative integer reply (an UNREAD.* integer or ZCARD).
func DecodeCount(reply any) (int64, error) {
	n, ok := reply.(int64)
	if !ok {
		return 0, fmt.Errorf("want an integer, got %T", reply)
	}
	if n < 0 {
		return 0, fmt.Errorf("want a count >= 0, got %d", n)
	}
	return n, nil
}

// DecodeScore decodes a sorted-set score reply (ZINCRBY): a RESP3 double, or a RESP2
// bulk string holding a number ("inf" and "-inf" included).
func DecodeScore(reply any) (float64, error) {
	switch v := reply.(type) {
	case float64:
		return v, nil
	case string:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("want a score, got %q", v)
		}
		return f, nil
	case int64:
		return float64(v), nil
	}
	return 0, fmt.Errorf("want a score, got %T", reply)
}
