package concurrency

import (
	"errors"
	"testing"
)

func TestKeyNames(t *testing.T) {
	k, g := KeyNames("hd", "db", "alice")
	if k != "hd:{db}:d:alice" || g != "hd:{db}" {
		t.Fatalf("%q %q", k, g)
	}
	if gk := GroupKey("hd", "db", "probation"); gk != "hd:{db}:g:probation" {
		t.Fatal(gk)
	}
	k, g = KeyNames("hd", "a}b{", "%x")
	if k != "hd:{a%7Db%7B}:d:%25x" || g != "hd:{a%7Db%7B}" {
		t.Fatalf("escaping: %q %q", k, g)
	}
}

func TestPoolValidate(t *testing.T) {
	for _, p := range []*Pool{nil, {}, {Name: "x"}, {Name: "x", Limit: -1}, {Name: "x", Limit: 1, Lease: -1}} {
		if err := p.validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", p, err)
		}
	}
	if err := (&Pool{Name: "x", Groups: []Group{{Name: "blocked"}}}).validate(); err != nil {
		t.Error(err)
	}
}
