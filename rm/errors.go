package rm

import (
	"errors"
	"strings"
)

// Errors with a fixed meaning in the reply. Handlers return them (possibly wrapped);
// the dispatcher maps them in one place.
var (
	// ErrWrongArity replies with Redis's own wrong-number-of-arguments error.
	ErrWrongArity = errors.New("wrong number of arguments")
	// ErrWrongType replies with Redis's WRONGTYPE error.
	ErrWrongType = errors.New("WRONGTYPE Operation against a key holding the wrong kind of value")
	// ErrNotInteger is returned by String.Int64 for text that is not a base-10 integer.
	ErrNotInteger = errors.New("value is not an integer or out of range")
)

// errorReplyText is the text of the error reply for err: its message, prefixed
// with "ERR " unless it already starts with an error code (an uppercase word).
func errorReplyText(err error) string {
	msg := err.Error()
	if hasErrorCode(msg) {
		return msg
	}
	return "ERR " + msg
}

// hasErrorCode reports whether msg starts with an all-uppercase word followed by a
// space, the form Redis clients read as an error code ("ERR", "WRONGTYPE", ...).
func hasErrorCode(msg string) bool {
	word, _, found := strings.Cut(msg, " ")
	if !found || word == "" {
		return false
	}
	for _, r := range word {
		if (r < 'A' || r > 'Z') && r != '_' && (r < '0' || r > '9') {
			return false
		}
	}
	return word[0] >= 'A' && word[0] <= 'Z'
}
