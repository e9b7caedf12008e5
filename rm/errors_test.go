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
