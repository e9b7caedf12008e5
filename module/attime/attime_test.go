package attime

import (
	"errors"
	"strings"
	"testing"

	"github.com/charon-redis/charon/module/internal/args"
)

func TestCheck(t *testing.T) {
	const now = 1_700_000_000_000 // 2023-11-14
	for _, c := range []struct {
		at, ahead int64
		want      string // "" = accepted; else a part of the reason
	}{
		{now, DefaultMaxAhead, ""},
		{now - 10*SecondsWindow, DefaultMaxAhead, ""}, // the past is fine
		{0, DefaultMaxAhead, ""},                      // simulations from 0
		{5, DefaultMaxAhead, ""},
		{now / 1000, DefaultMaxAhead, "multiply it by 1000"},
		{now/1000 + 9*365*24*3600, DefaultMaxAhead, "multiply it by 1000"},
		{SecondsBelow - 1, 0, ""}, // as seconds the year 5138: not seconds
		{now * 1000, 0, "microseconds"},
		{now * 1_000_000 / 1000, 0, "microseconds"},
		{MicrosFrom, 0, "microseconds"},
		{MicrosFrom - 1, 0, ""},
		{now + DefaultMaxAhead, DefaultMaxAhead, ""},
		{now + DefaultMaxAhead + 1, DefaultMaxAhead, ConfigName},
		{4102444800000, DefaultMaxAhead, ConfigName},
		{4102444800000, 0, ""},
	} {
		err := Check(c.at, now, c.ahead)
		if c.want == "" {
			if err != nil {
				t.Errorf("Check(%d, ahead %d) = %v, want nil", c.at, c.ahead, err)
			}
			continue
		}
		var ae *args.Error
		if !errors.As(err, &ae) || ae.Arg != "AT" || !strings.Contains(ae.Reason, c.want) {
			t.Errorf("Check(%d, ahead %d) = %v, want an AT error containing %q", c.at, c.ahead, err, c.want)
		}
	}
}
