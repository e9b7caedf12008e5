package rm

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorReplyText(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{errors.New("MAX: must be positive"), "ERR MAX: must be positive"},
		{errors.New("ERR MAX: must be positive"), "ERR MAX: must be positive"},
		{errors.New("WRONGTYPE Operation"), "WRONGTYPE Operation"},
		{errors.New("CROSSSLOT keys"), "CROSSSLOT keys"},
		{errors.New("Oops it failed"), "ERR Oops it failed"},
		{errors.New("nospace"), "ERR nospace"},
		{fmt.Errorf("wrapped: %w", errors.New("x")), "ERR wrapped: x"},
	}
	for _, c := range cases {
		if got := errorReplyText(c.err); got != c.want {
			t.Errorf("errorReplyText(%q) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestSplitRuntimeArgs(t *testing.T) {
	args, err := parseModuleArgs([]string{"GOMAXPROCS", "2", "gcpercent", "-1", "memlimit", "1048576", "debug", "yes"})
	if err != nil {
		t.Fatal(err)
	}
	s, rest, err := splitRuntimeArgs(args)
	if err != nil {
		t.Fatal(err)
	}
	if s.maxProcs != 2 || s.gcPercent != -1 || s.memLimit != 1048576 {
		t.Errorf("settings = %+v", s)
	}
	if len(rest) != 1 || rest[0] != (ModuleArg{"debug", "yes"}) {
		t.Errorf("rest = %+v", rest)
	}

	for _, bad := range [][]string{
		{"gomaxprocs"},
		{"gomaxprocs", "zero"},
		{"gomaxprocs", "0"},
		{"gcpercent", "-2"},
		{"memlimit", "0"},
		{"memlimit", "lots"},
	} {
		args, err := parseModuleArgs(bad)
		if err == nil {
			_, _, err = splitRuntimeArgs(args)
		}
		if err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestKeySpecPositions(t *testing.T) {
	argv := func(s ...string) [][]byte {
		out := make([][]byte, len(s))
		for i := range s {
			out[i] = []byte(s[i])
		}
		return out
	}
	global := KeySpec{Keyword: "GLOBAL", StartFrom: 2, KeyStep: 1}
	cases := []struct {
		name              string
		ks                KeySpec
		argv              [][]byte
		first, last, step int
	}{
		{"index", KeySpec{Index: 1, KeyStep: 1}, argv("CMD", "k", "x"), 1, 1, 1},
		{"to end", KeySpec{Index: 1, LastKey: -1, KeyStep: 1}, argv("CMD", "a", "b", "c"), 1, 3, 1},
		{"keyword", global, argv("CMD", "k", "MAX", "1", "global", "g", "5"), 5, 5, 1},
		{"keyword absent", global, argv("CMD", "k", "MAX", "1"), 1, 0, 1},
		{"keyword as key name is skipped", global, argv("CMD", "GLOBAL", "GLOBAL", "g", "5"), 3, 3, 1},
		{"keyword last", global, argv("CMD", "k", "GLOBAL"), 3, 2, 1},
	}
	for _, c := range cases {
		f, l, s := c.ks.positions(c.argv)
		if f != c.first || l != c.last || s != c.step {
			t.Errorf("%s: got %d..%d/%d, want %d..%d/%d", c.name, f, l, s, c.first, c.last, c.step)
		}
	}
}
