package rate

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// capHits is a literal rule 10 for a fixed set of caps: every grant kept, each cap
// counted by the rule's own words.
type capHits struct{ ts, n []int64 }

func (h *capHits) count(c Cap, t int64) int64 {
	var s int64
	g := bucketMs(c.Window)
	for i, ts := range h.ts {
		var in bool
		if c.Window <= 1000 {
			in = ts >= t-c.Window
		} else {
			in = floorDiv(ts, g)*g+g-1 >= t-c.Window
		}
		if in {
			s += h.n[i]
		}
	}
	return s
}

// room is what the caps leave at t (huge when none).
func capRoom(caps []Cap, h *capHits, t int64) int64 {
	r := int64(1) << 62
	for _, c := range caps {
		r = min(r, max(c.Limit-h.count(c, t), 0))
	}
	return r
}

func renderCaps(caps []Cap) string {
	var parts []string
	for _, c := range caps {
		parts = append(parts, strconv.FormatInt(c.Limit, 10)+"/"+strconv.FormatInt(c.Window, 10)+"ms")
	}
	return strings.Join(parts, ",")
}

// TestCapsAgainstRule10: random traces on two keys sharing a global key, with
// per-domain caps (TIER form CAP clauses or LIMITS's caps) and global caps, exact and
// bucketed; a tier with a huge limit so that only caps bind. Every reply's granted,
// hard_limited and global_limited equals rule 10's literal count; retry_after is the
// first time the same request is granted; every value written loads.
func TestCapsAgainstRule10(t *testing.T) {
	for seed := uint64(0); seed < 150; seed++ {
		rng := rand.New(rand.NewPCG(seed, 42))
		pick := func() []Cap {
			var caps []Cap
			seen := map[int64]bool{}
			for range 1 + rng.IntN(3) {
				var w int64
				switch rng.IntN(4) {
				case 0:
					w = 1 + rng.Int64N(999)
				case 1:
					w = 1000
				case 2:
					w = 1001 + rng.Int64N(3000)
				default:
					w = 1001 + rng.Int64N(200_000)
				}
				if seen[w] {
					continue
				}
				seen[w] = true
				caps = append(caps, Cap{Limit: rng.Int64N(30), Window: w})
			}
			return caps
		}
		dcaps, gcaps := pick(), pick()
		keys := map[string]*store{"a": {t: t}, "b": {t: t}}
		hits := map[string]*capHits{"a": {}, "b": {}}
		var ghits capHits
		now := int64(1_000_000 + rng.Int64N(1_000_000))
		for step := range 250 {
			switch rng.IntN(5) {
			case 0:
				now += rng.Int64N(5000)
			case 1:
				now += rng.Int64N(200_000)
			default:
				now += rng.Int64N(40)
			}
			k := []string{"a", "b"}[rng.IntN(2)]
			s := keys[k]
			s.gval = keys["a"].gval // the global key is shared
			mx := 1 + rng.Int64N(8)
			mn := rng.Int64N(mx + 1)
			var args string
			if rng.IntN(2) == 0 {
				args = fmt.Sprintf("MAX %d MIN %d LIMITS 1000000/1ms;%s", mx, mn, renderCaps(dcaps))
			} else {
				var b strings.Builder
				for _, c := range dcaps {
					fmt.Fprintf(&b, " CAP %d %d", c.Limit, c.Window)
				}
				args = fmt.Sprintf("MAX %d MIN %d%s TIER 1000000 1 1 0", mx, mn, b.String())
			}
			args += " GLOBAL g " + renderCaps(gcaps)
			r := s.do(now, args)
			for _, kk := range keys {
				kk.gval = s.gval
			}
			t0 := r.T
			droom := capRoom(dcaps, hits[k], t0)
			groom := capRoom(gcaps, &ghits, t0)
			want := min(mx, droom, groom)
			if want < max(mn, 1) {
				want = 0
			}
			ctx := fmt.Sprintf("seed %d step %d key %s t=%d caps %v global %v: %s", seed, step, k, t0, dcaps, gcaps, args)
			if r.Fields[FieldGranted] != want {
				t.Fatalf("%s: granted %d, rule 10 says %d (room %d, global %d)", ctx, r.Fields[FieldGranted], want, droom, groom)
			}
			if (r.Fields[FieldHardLimited] == 1) != (droom < mx) || (r.Fields[FieldGlobalLimited] == 1) != (groom < mx) {
				t.Fatalf("%s: limited flags %v, rooms %d %d", ctx, r.Fields, droom, groom)
			}
			if want > 0 {
				hits[k].ts, hits[k].n = append(hits[k].ts, t0), append(hits[k].n, want)
				ghits.ts, ghits.n = append(ghits.ts, t0), append(ghits.n, want)
				continue
			}
			// retry_after: the first later time at which the caps leave room.
			need := max(mn, 1)
			var wantRA int64 = -1
			never := false
			for _, c := range append(append([]Cap{}, dcaps...), gcaps...) {
				if c.Limit < need {
					never = true
				}
			}
			if !never {
				// Counts only fall when a hit leaves a cap: try those times in order.
				var cands []int64
				leaves := func(caps []Cap, h *capHits) {
					for _, c := range caps {
						g := bucketMs(c.Window)
						for _, ts := range h.ts {
							at := ts + c.Window + 1
							if c.Window > 1000 {
								at = (floorDiv(ts, g)+1)*g + c.Window
							}
							if at > t0 {
								cands = append(cands, at)
							}
						}
					}
				}
				leaves(dcaps, hits[k])
				leaves(gcaps, &ghits)
				slices.Sort(cands)
				for _, at := range cands {
					if min(capRoom(dcaps, hits[k], at), capRoom(gcaps, &ghits, at)) >= need {
						wantRA = at - t0
						break
					}
				}
			}
			if r.Fields[FieldRetryAfter] != wantRA {
				t.Fatalf("%s: retry_after %d, want %d", ctx, r.Fields[FieldRetryAfter], wantRA)
			}
		}
	}
}

// TestCapGrammar: the TIER form and LIMITS give the same request; HARD is the 1000 ms
// cap; GLOBAL takes a number or a caps string.
func TestCapGrammar(t *testing.T) {
	var a, b Request
	if err := ParseRequest(words(`HARD 7 CAP 100 60000 CAP 5 500 GLOBAL g 5000/1s,2000000/1d TIER 10 1000 1000 0`), &a); err != nil {
		t.Fatal(err)
	}
	if err := ParseRequest(words(`GLOBAL g 5000/1s,2000000/1d LIMITS 10/1s;100/1m,5/500ms,7/1s`), &b); err != nil {
		t.Fatal(err)
	}
	b.HasLimits, b.GlobalKeyIdx = false, a.GlobalKeyIdx
	if a != b {
		t.Fatalf("TIER form %+v\nLIMITS form %+v", a, b)
	}
	if !a.HasHard || a.Hard != 7 || a.NCaps != 2 || a.Caps[0] != (Cap{100, 60000}) || a.Caps[1] != (Cap{5, 500}) ||
		!a.HasGlobalLimit || a.GlobalLimit != 5000 || a.NGlobalCaps != 1 || a.GlobalCaps[0] != (Cap{2_000_000, 86_400_000}) {
		t.Fatalf("parsed %+v", a)
	}
	for _, c := range []struct{ args, want string }{
		{"HARD 5 CAP 6 1000 LIMITS 1/1s", "HARD: a second cap over 1000 ms; give each window once (HARD n is the cap n per 1000 ms, GLOBAL gkey n the global one)"},
		{"CAP 1 2 CAP 1 2 LIMITS 1/1s", "CAP 2: a second cap over 2 ms; give each window once (HARD n is the cap n per 1000 ms, GLOBAL gkey n the global one)"},
		{"CAP 1 LIMITS 1/1s", "CAP 1 window-ms: must be an integer between 1 and 315360000000"},
		{"CAP x 5 LIMITS 1/1s", "CAP 1 limit: must be an integer between 0 and 1000000000000"},
		{"CAP 5", "CAP 1: expected limit window-ms"},
		{"GLOBAL g 5/1s,6/1000ms LIMITS 1/1s", "GLOBAL cap 2: a second cap over 1000 ms; give each window once (HARD n is the cap n per 1000 ms, GLOBAL gkey n the global one)"},
		{"GLOBAL g 5/1s,6/2 LIMITS 1/1s", "GLOBAL cap 2 window: 2 has no unit while other durations have one: write 2s or 2ms (a bare number means ms only when no duration has a unit)"},
		{"CAP 1 2 LIMITS 1/1s;3/2ms", "LIMITS cap 1: a second cap over 2 ms; give each window once (HARD n is the cap n per 1000 ms, GLOBAL gkey n the global one)"},
		{"HARD 1 CAP 1 2 CAP 1 3 CAP 1 4 CAP 1 5 CAP 1 6 CAP 1 7 CAP 1 8 CAP 1 9 LIMITS 1/1s", "HARD: at most 8 caps per key (HARD, or GLOBAL's per-second limit, counts as one)"},
		{"LIMITS 1/1s ONCE", "ONCE: missing value"},
		{"ONCE " + strings.Repeat("x", 65) + " LIMITS 1/1s", "ONCE: the token must be 1 to 64 bytes"},
		{"ONCE a ONCE b LIMITS 1/1s", "ONCE: given more than once"},
	} {
		var req Request
		err := ParseRequest(words(c.args), &req)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v, want %q", c.args, err, c.want)
		}
	}
}
