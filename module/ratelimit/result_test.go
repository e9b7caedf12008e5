package ratelimit

import (
	"errors"
	"testing"
	"time"

	"github.com/charon-redis/charon/module/rate"
	"github.com/stretchr/testify/require"
)

// canned builds the two shapes of one reply: what go-redis returns for RESP2 (array)
// and RESP3 (map) given these field values in reply order.
func canned(vals ...int64) (resp2 []any, resp3 map[any]any) {
	resp3 = map[any]any{}
	for i, v := range vals {
		resp2 = append(resp2, v)
		resp3[rate.FieldNames[i]] = v
	}
	return resp2, resp3
}

func TestDecodeReplyBothProtocols(t *testing.T) {
	cases := []struct {
		name string
		vals []int64
		want Result
	}{
		{
			name: "granted with burst",
			vals: []int64{3, 2, 50, 7, 12, -1, 1, 0, 0, 0, 15001},
			want: Result{Granted: 3, Tier: 2, TierLimit: 50, TierHits: 7, DomainHits: 12, GlobalHits: -1,
				Burst: true, RetryAfter: 0, ResetAfter: 15001 * time.Millisecond},
		},
		{
			name: "rejected, hard and global limited",
			vals: []int64{0, 1, 5, 5, 10, 1000, 0, 1, 1, 734, 1001},
			want: Result{Granted: 0, Tier: 1, TierLimit: 5, TierHits: 5, DomainHits: 10, GlobalHits: 1000,
				HardLimited: true, GlobalLimited: true, RetryAfter: 734 * time.Millisecond, ResetAfter: 1001 * time.Millisecond},
		},
		{
			name: "never",
			vals: []int64{0, 0, 0, 0, 0, -1, 0, 0, 0, -1, 0},
			want: Result{GlobalHits: -1, RetryAfter: Never},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, m := canned(c.vals...)
			got2, err := decodeReply(a)
			require.NoError(t, err)
			require.Equal(t, c.want, got2)
			got3, err := decodeReply(m)
			require.NoError(t, err)
			require.Equal(t, c.want, got3)
		})
	}
}

func TestDecodeReplyRejectsBadShapes(t *testing.T) {
	good := []int64{1, 1, 5, 1, 1, -1, 0, 0, 0, 0, 1001}
	a, m := canned(good...)
	withArr := func(f func([]any) []any) []any { c := append([]any(nil), a...); return f(c) }
	withMap := func(f func(map[any]any)) map[any]any {
		c := map[any]any{}
		for k, v := range m {
			c[k] = v
		}
		f(c)
		return c
	}
	cases := []struct {
		name  string
		reply any
		want  string
	}{
		{"nil", nil, "<nil>, want an array or a map"},
		{"string", "OK", "string, want an array or a map"},
		{"integer", int64(1), "int64, want"},
		{"short array", withArr(func(x []any) []any { return x[:10] }), "array of 10 elements, want 11"},
		{"long array", withArr(func(x []any) []any { return append(x, int64(0)) }), "array of 12 elements"},
		{"empty array", []any{}, "array of 0 elements"},
		{"string element", withArr(func(x []any) []any { x[3] = "1"; return x }), "element 4 (tier_hits) is string"},
		{"nil element", withArr(func(x []any) []any { x[0] = nil; return x }), "element 1 (granted) is <nil>"},
		{"float element", withArr(func(x []any) []any { x[9] = 1.5; return x }), "element 10 (retry_after) is float64"},
		{"nested array", withArr(func(x []any) []any { x[1] = []any{int64(1)}; return x }), "element 2 (tier) is []interface {}"},
		{"flat name/value array (not our RESP2 shape)", func() []any {
			var x []any
			for i, v := range good {
				x = append(x, rate.FieldNames[i], v)
			}
			return x
		}(), "array of 22 elements"},
		{"map missing a field", withMap(func(x map[any]any) { delete(x, "burst") }), "map of 10 fields"},
		{"map unknown field", withMap(func(x map[any]any) { delete(x, "burst"); x["bursty"] = int64(0) }), `unknown field "bursty"`},
		{"map extra field", withMap(func(x map[any]any) { x["extra"] = int64(0) }), "map of 12 fields"},
		{"map non-string key", withMap(func(x map[any]any) { delete(x, "burst"); x[int64(7)] = int64(0) }), "map key 7 is int64"},
		{"map string value", withMap(func(x map[any]any) { x["granted"] = "1" }), "field granted is string"},
		{"map bool value", withMap(func(x map[any]any) { x["burst"] = true }), "field burst is bool"},
		{"negative granted", withArr(func(x []any) []any { x[0] = int64(-1); return x }), "granted = -1 is outside"},
		{"tier above 16", withArr(func(x []any) []any { x[1] = int64(17); return x }), "tier = 17 is outside"},
		{"burst 2", withArr(func(x []any) []any { x[6] = int64(2); return x }), "burst = 2 is outside [0, 1]"},
		{"retry -2", withArr(func(x []any) []any { x[9] = int64(-2); return x }), "retry_after = -2"},
		{"global -2", withMap(func(x map[any]any) { x["global_hits"] = int64(-2) }), "global_hits = -2"},
		{"reset negative", withArr(func(x []any) []any { x[10] = int64(-1); return x }), "reset_after = -1"},
		{"retry overflows Duration", withArr(func(x []any) []any { x[9] = int64(1 << 62); return x }), "retry_after = 4611686018427387904"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeReply(c.reply)
			require.Error(t, err)
			require.True(t, errors.Is(err, errBadReply), "%v", err)
			require.Contains(t, err.Error(), c.want)
		})
	}
}

// FuzzDecodeReply: any array of integers either decodes to a Result whose fields
// reproduce the integers, or is refused; never a panic.
func FuzzDecodeReply(f *testing.F) {
	f.Add(int64(1), int64(1), int64(5), int64(1), int64(1), int64(-1), int64(0), int64(0), int64(0), int64(0), int64(1001), uint8(0))
	f.Add(int64(0), int64(2), int64(50), int64(50), int64(60), int64(70), int64(1), int64(1), int64(1), int64(-1), int64(0), uint8(1))
	f.Fuzz(func(t *testing.T, a, b, c, d, e, g, h, i, j, k, l int64, shape uint8) {
		vals := []int64{a, b, c, d, e, g, h, i, j, k, l}
		arr, m := canned(vals...)
		var reply any = arr
		if shape%2 == 1 {
			reply = m
		}
		r, err := decodeReply(reply)
		if err != nil {
			return
		}
		retry := int64(r.RetryAfter / time.Millisecond)
		if r.RetryAfter == Never {
			retry = -1
		}
		b2i := func(x bool) int64 {
			if x {
				return 1
			}
			return 0
		}
		back := []int64{r.Granted, int64(r.Tier), r.TierLimit, r.TierHits, r.DomainHits, r.GlobalHits,
			b2i(r.Burst), b2i(r.HardLimited), b2i(r.GlobalLimited), retry, int64(r.ResetAfter / time.Millisecond)}
		if len(back) != len(vals) {
			t.Fatal("length")
		}
		for x := range vals {
			if back[x] != vals[x] {
				t.Fatalf("field %s: %d decoded as %d", rate.FieldNames[x], vals[x], back[x])
			}
		}
	})
}

// What the client can tell about caps over windows the reply does not count (it counts
// the last second only): which kind rejected, which cap when there is one of its kind,
// and Remaining 0 when a cap cut a grant short.
func TestExplainCaps(t *testing.T) {
	tiers := []Tier{{Limit: 10, Window: time.Second, Active: time.Second}}
	hour, day := Cap{Limit: 100, Per: time.Hour}, Cap{Limit: 1000, Per: 24 * time.Hour}
	gday := Cap{Limit: 5000, Per: 24 * time.Hour}
	one := &Resource{Name: "x", Tiers: tiers, Hard: 6, Caps: []Cap{hour}, GlobalCaps: []Cap{gday}}
	two := &Resource{Name: "x", Tiers: tiers, Caps: []Cap{hour, day}, GlobalCaps: []Cap{gday, {Limit: 900, Per: time.Hour}}}
	mixed := &Resource{Name: "x", Tiers: tiers, Hard: 6, Caps: []Cap{hour}, Global: 50, GlobalCaps: []Cap{gday}}
	// A cap over one second in Caps is Hard; in GlobalCaps, Global.
	asCaps := &Resource{Name: "x", Tiers: tiers, Caps: []Cap{{Limit: 6, Per: time.Second}, hour}, GlobalCaps: []Cap{{Limit: 50, Per: time.Second}}}
	cases := []struct {
		name       string
		res        *Resource
		r          Result
		need, max  int64
		remaining  int64
		by         Limit
		rejectedBy Cap
	}{
		{"granted, caps unflagged: Remaining counts what the reply counts", one,
			Result{Granted: 1, TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 40}, 1, 1, 3, LimitNone, Cap{}},
		{"granted, cut short by a cap", one,
			Result{Granted: 2, TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 40, HardLimited: true}, 1, 5, 0, LimitNone, Cap{}},
		{"granted, cut short by a global cap", one,
			Result{Granted: 2, TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 40, GlobalLimited: true}, 1, 5, 0, LimitNone, Cap{}},
		{"hour cap full (Allow)", one,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 40, HardLimited: true, RetryAfter: time.Minute}, 1, 1, 0, LimitCap, hour},
		{"hour cap short of n (AllowN)", one,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 1, GlobalHits: 40, HardLimited: true, RetryAfter: time.Minute}, 4, 4, 3, LimitCap, hour},
		{"global day cap full", one,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 40, GlobalLimited: true, RetryAfter: time.Hour}, 1, 1, 0, LimitGlobalCap, gday},
		{"both kinds full: the global one is named", one,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 40, HardLimited: true, GlobalLimited: true}, 1, 1, 0, LimitGlobalCap, gday},
		{"hard full comes first", one,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 6, GlobalHits: 40, HardLimited: true}, 1, 1, 0, LimitHard, Cap{6, time.Second}},
		{"two caps: the reply does not say which", two,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 40, HardLimited: true}, 1, 1, 0, LimitCap, Cap{}},
		{"two global caps", two,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 40, GlobalLimited: true}, 2, 2, 1, LimitGlobalCap, Cap{}},
		{"min < max, tier had room: the flagged cap was short of min", one,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 40, HardLimited: true}, 2, 5, 1, LimitCap, hour},
		{"min < max, both kinds flagged: which kind is unknown", one,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 40, HardLimited: true, GlobalLimited: true}, 2, 5, 1, LimitGlobalCap, Cap{}},
		{"min < max, both kinds flagged, the per-second Global explains its flag: the caps", mixed,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 0, GlobalHits: 47, HardLimited: true, GlobalLimited: true}, 2, 5, 1, LimitCap, Cap{}},
		{"min < max, tier short of min: the tiers", one,
			Result{TierLimit: 10, TierHits: 9, DomainHits: 3, GlobalHits: 40, HardLimited: true}, 2, 5, 1, LimitTier, Cap{}},
		{"tier full, no cap flagged", one,
			Result{TierLimit: 10, TierHits: 10, DomainHits: 3, GlobalHits: 40}, 1, 1, 0, LimitTier, Cap{}},
		{"per-second caps written as caps: Hard", asCaps,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 6, GlobalHits: 40, HardLimited: true}, 1, 1, 0, LimitHard, Cap{6, time.Second}},
		{"per-second caps written as caps: Global", asCaps,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 50, GlobalLimited: true}, 1, 1, 0, LimitGlobal, Cap{50, time.Second}},
		{"per-second caps written as caps: the hour", asCaps,
			Result{TierLimit: 10, TierHits: 3, DomainHits: 3, GlobalHits: 40, HardLimited: true}, 1, 1, 0, LimitCap, hour},
		{"per-second caps written as caps: Remaining", asCaps,
			Result{Granted: 1, TierLimit: 10, TierHits: 3, DomainHits: 4, GlobalHits: 49}, 1, 1, 1, LimitNone, Cap{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.r
			r.explain(c.res, c.need, c.max)
			require.Equal(t, c.remaining, r.Remaining, "Remaining")
			require.Equal(t, c.by, r.RejectedBy, "RejectedBy")
			require.Equal(t, c.rejectedBy, r.RejectedCap, "RejectedCap")
		})
	}
	require.Equal(t, "cap", LimitCap.String())
	require.Equal(t, "global-cap", LimitGlobalCap.String())
}
