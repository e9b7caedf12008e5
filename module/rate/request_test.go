package rate

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	var req Request
	args := words("max 10 MIN 2 hard 50 global {api} 100 at 1234 dryrun tier 5 1000 1000 0 TIER 50 5000 5000 15000 skippable TiEr 0 1 1 0")
	if err := ParseRequest(args, &req); err != nil {
		t.Fatal(err)
	}
	want := Request{
		Max: 10, Min: 2, HasHard: true, Hard: 50, HasGlobal: true, HasGlobalLimit: true, GlobalLimit: 100, GlobalKeyIdx: 7,
		HasAt: true, At: 1234, AtIdx: 9, DryRun: true, NTiers: 3, ClockIdx: -1,
	}
	want.Tiers[0] = Tier{5, 1000, 1000, 0, false}
	want.Tiers[1] = Tier{50, 5000, 5000, 15000, true}
	want.Tiers[2] = Tier{0, 1, 1, 0, false}
	if req != want {
		t.Fatalf("got  %+v\nwant %+v", req, want)
	}
	if string(args[req.GlobalKeyIdx]) != "{api}" || string(args[req.AtIdx]) != "at" {
		t.Fatal("indexes")
	}

	// Defaults: MAX 1, MIN = MAX, CLOSED means no tiers (rule 9), and a reused Request is reset.
	if err := ParseRequest(words("CLOSED"), &req); err != nil {
		t.Fatal(err)
	}
	if req.Max != 1 || req.Min != 1 || req.NTiers != 0 || !req.Closed || req.HasGlobal || req.GlobalKeyIdx != -1 || req.AtIdx != -1 || req.DryRun {
		t.Fatalf("defaults %+v", req)
	}
	if err := ParseRequest(words("MAX 7 CLOSED"), &req); err != nil || req.Min != 7 {
		t.Fatalf("MIN defaults to MAX: %+v %v", req, err)
	}
	if err := ParseRequest(words("MIN 0 MAX 1000000000000 AT 9007199254740992 TIER 1000000000000 315360000000 315360000000 315360000000"), &req); err != nil {
		t.Fatalf("upper bounds: %v", err)
	}
}

func TestParseRequestErrors(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"MAX 0", "MAX: must be an integer between 1 and 1000000000000"},
		{"MAX 1000000000001", "MAX: must be an integer between 1 and 1000000000000"},
		{"MAX abc", "MAX: must be an integer between 1 and 1000000000000"},
		{"MAX 05", "MAX: must be an integer between 1 and 1000000000000"},
		{"MAX +5", "MAX: must be an integer between 1 and 1000000000000"},
		{"MAX 99999999999999999999", "MAX: must be an integer between 1 and 1000000000000"},
		{"MAX", "MAX: missing value"},
		{"MAX 1 MAX 2", "MAX: given more than once"},
		{"MIN -1", "MIN: must be an integer between 0 and 1000000000000"},
		{"MIN 3 MAX 2", "MIN: must not be greater than MAX"},
		{"MIN 2", "MIN: must not be greater than MAX"},
		{"HARD -5", "HARD: must be an integer between 0 and 1000000000000"},
		{"GLOBAL g", `GLOBAL: takes a key and a limit, or a key and caps: GLOBAL gkey n, GLOBAL gkey "5000/1s, 2000000/1d"`},
		{"GLOBAL g x", `GLOBAL: takes a key and a limit, or a key and caps: GLOBAL gkey n, GLOBAL gkey "5000/1s, 2000000/1d"`},
		{"GLOBAL rl:g TIER 5 1000 1000 0", `GLOBAL: takes a key and a limit, or a key and caps: GLOBAL gkey n, GLOBAL gkey "5000/1s, 2000000/1d"`},
		{"GLOBAL 100 TIER 5 1000 1000 0", `GLOBAL: takes a key and a limit, or a key and caps: GLOBAL gkey n, GLOBAL gkey "5000/1s, 2000000/1d"`},
		{"GLOBAL g -1 TIER 5 1000 1000 0", "GLOBAL: takes a key and a limit; the limit must be an integer between 0 and 1000000000000"},
		{"MAX 5", "TIER: no limits given: add TIER clauses or LIMITS, or say CLOSED to reject every request"},
		{"", "TIER: no limits given: add TIER clauses or LIMITS, or say CLOSED to reject every request"},
		{"CLOSED TIER 5 1000 1000 0", "CLOSED: a closed resource takes no TIER or LIMITS"},
		{"LIMITS 5/1s CLOSED", "CLOSED: a closed resource takes no TIER or LIMITS"},
		{"CLOSED CLOSED", "CLOSED: given more than once"},
		{"LIMITS 5/1s TIER 5 1000 1000 0", "LIMITS: use either LIMITS or TIER clauses, not both"},
		{"TIER 5 1000 1000 0 LIMITS 5/1s", "LIMITS: use either LIMITS or TIER clauses, not both"},
		{"LIMITS 5/1s LIMITS 5/1s", "LIMITS: given more than once"},
		{"LIMITS", "LIMITS: missing value, e.g. LIMITS \"10/1s, 50/5s/5s/15s\""},
		{"CLOCK 5 CLOCK 6 CLOSED", "CLOCK: given more than once"},
		{"AT -1", "AT: must be an integer between 0 and 9007199254740992"},
		{"AT 9007199254740993", "AT: must be Unix time in milliseconds; 9007199254740993 is 10^13 or more (after the year 2286), so microseconds or nanoseconds: divide it by 1000 or 1000000"},
		{"AT 99999999999999999999", "AT: must be an integer between 0 and 9007199254740992"},
		{"DRYRUN DRYRUN", "DRYRUN: given more than once"},
		{"TIER 1 1 1", "TIER 1: expected limit window-ms active-ms cooldown-ms"},
		{"TIER 1 1000 1000 0 TIER -1 1 1 0", "TIER 2 limit: must be an integer between 0 and 1000000000000"},
		{"TIER 1 0 1 0", "TIER 1 window-ms: must be an integer between 1 and 315360000000"},
		{"TIER 1 1 315360000001 0", "TIER 1 active-ms: must be an integer between 1 and 315360000000"},
		{"TIER 1 1 1 -1", "TIER 1 cooldown-ms: must be an integer between 0 and 315360000000"},
		{"TIER 1 1 MAX 0", "TIER 1 active-ms: must be an integer between 1 and 315360000000"},
		{strings.Repeat("TIER 1 1 1 0 ", 17), "TIER 17: at most 16 tiers are allowed"},
		{"SKIPPABLE", "SKIPPABLE: must follow the four numbers of a TIER clause"},
		{"TIER 1 1 1 0 SKIPPABLE SKIPPABLE", "SKIPPABLE: must follow the four numbers of a TIER clause"},
		{"FOO", "syntax: unknown option 'FOO'"},
		{"MAX 1 " + strings.Repeat("x", 40), "syntax: unknown option '" + strings.Repeat("x", 32) + "...'"},
	} {
		var req Request
		err := ParseRequest(words(c.args), &req)
		var ae *ArgError
		if !errors.As(err, &ae) || err.Error() != c.want {
			t.Errorf("%q: got %v, want %q", c.args, err, c.want)
		}
	}
	// Control characters never reach the reply.
	var req Request
	err := ParseRequest([][]byte{[]byte("A\r\nB")}, &req)
	if err == nil || strings.ContainsAny(err.Error(), "\r\n") || err.Error() != "syntax: unknown option 'A??B'" {
		t.Fatalf("%q", err)
	}
}

func TestParseInspect(t *testing.T) {
	if at, has, err := ParseInspect(nil); err != nil || has || at != 0 {
		t.Fatal(at, has, err)
	}
	if at, has, err := ParseInspect(words("at 42")); err != nil || !has || at != 42 {
		t.Fatal(at, has, err)
	}
	for _, c := range []struct{ args, want string }{
		{"AT", "AT: missing value"},
		{"AT x", "AT: must be an integer between 0 and 9007199254740992"},
		{"AT 1 2", "syntax: unexpected argument '2'"},
		{"NOW", "syntax: unknown option 'NOW'"},
	} {
		if _, _, err := ParseInspect(words(c.args)); err == nil || err.Error() != c.want {
			t.Errorf("%q: %v", c.args, err)
		}
	}
}

func TestParseInt(t *testing.T) {
	for _, c := range []struct {
		s  string
		v  int64
		ok bool
	}{
		{"0", 0, true}, {"-0", 0, false}, {"00", 0, false}, {"-", 0, false}, {"", 0, false},
		{"9223372036854775807", 1<<63 - 1, true}, {"9223372036854775808", 0, false},
		{"-9223372036854775808", -1 << 63, true}, {"-9223372036854775809", 0, false},
		{"12a", 0, false}, {" 1", 0, false}, {"1 ", 0, false}, {"-12", -12, true},
	} {
		v, ok := parseInt([]byte(c.s))
		if v != c.v || ok != c.ok {
			t.Errorf("%q: %d %v", c.s, v, ok)
		}
	}
}
