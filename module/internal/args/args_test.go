package args

import (
	"errors"
	"testing"
)

func TestParseBounded(t *testing.T) {
	cases := []struct {
		s      string
		lo, hi int64
		v      int64
		ok     bool
	}{
		{"0", 0, 10, 0, true},
		{"0", 1, 10, 0, false},
		{"10", 0, 10, 10, true},
		{"11", 0, 10, 0, false},
		{"-1", -5, 5, -1, true},
		{"-1", 0, 5, 0, false},
		{"-0", -5, 5, 0, false},
		{"01", 0, 5, 0, false},
		{"+1", 0, 5, 0, false},
		{" 1", 0, 5, 0, false},
		{"", 0, 5, 0, false},
		{"9223372036854775807", 0, 1<<63 - 1, 1<<63 - 1, true},
		{"9223372036854775808", 0, 1<<63 - 1, 0, false},
		{"9999999999999999999", 0, 1<<63 - 1, 0, false},
		{"-9223372036854775808", -1 << 63, 0, -1 << 63, true},
		{"-9223372036854775809", -1 << 63, 0, 0, false},
	}
	for _, c := range cases {
		v, ok := ParseBounded([]byte(c.s), c.lo, c.hi)
		if v != c.v || ok != c.ok {
			t.Errorf("ParseBounded(%q, %d, %d) = %d, %v; want %d, %v", c.s, c.lo, c.hi, v, ok, c.v, c.ok)
		}
	}
}

func TestEqFold(t *testing.T) {
	for _, c := range []struct {
		b, kw string
		want  bool
	}{{"max", "MAX", true}, {"MaX", "MAX", true}, {"MAXX", "MAX", false}, {"M@X", "MAX", false}, {"", "", true}} {
		if got := EqFold([]byte(c.b), c.kw); got != c.want {
			t.Errorf("EqFold(%q, %q) = %v", c.b, c.kw, got)
		}
	}
}

func TestValue(t *testing.T) {
	argv := [][]byte{[]byte("MAX"), []byte("5")}
	if b, err := Value(argv, 0, "MAX", false); err != nil || string(b) != "5" {
		t.Fatalf("Value = %q, %v", b, err)
	}
	var e *Error
	if _, err := Value(argv, 0, "MAX", true); !errors.As(err, &e) || err.Error() != "MAX: given more than once" {
		t.Fatalf("seen: %v", err)
	}
	if _, err := Value(argv, 1, "MAX", false); !errors.As(err, &e) || e.Arg != "MAX" || err.Error() != "MAX: missing value" {
		t.Fatalf("missing: %v", err)
	}
}

func TestNoAllocs(t *testing.T) {
	b := []byte("123456")
	kw := []byte("limits")
	if n := testing.AllocsPerRun(100, func() {
		_, _ = ParseBounded(b, 0, 1e12)
		_ = EqFold(kw, "LIMITS")
	}); n != 0 {
		t.Fatalf("allocs = %v", n)
	}
}
