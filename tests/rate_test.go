//go:build integration

package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/tests/harness"
)

// Integration tests of CHARON.RATE, CHARON.INSPECT and CHARON.LOADVALUE on real
// servers. Helpers are prefixed rt (rate test) to stay apart from other files' names.
// Time is always driven with AT. Keys get an absolute expiry computed from AT, so
// every base time is the real clock (plus an offset where keys must outlive the test).

// Charon's four patterns (spec vocabulary) as TIER clauses.
var (
	// 5 hits per second.
	rtSimple = []string{"TIER", "5", "1000", "1000", "0"}
	// 5 per second, then 50 per 5 s usable for 5 s and closed for 15 s afterwards.
	rtPenalty = []string{"TIER", "5", "1000", "1000", "0", "TIER", "50", "5000", "5000", "15000"}
	// 5 per second, then a prison tier of 1 per 15 s, active for 15 s.
	rtPunishment = []string{"TIER", "5", "1000", "1000", "0", "TIER", "1", "15000", "15000", "0"}
	// 50 per 60 s window, then closed for 3540 s: one batch an hour.
	rtBatch = []string{"TIER", "50", "60000", "60000", "3540000"}
)

// rtF is a CHARON.RATE reply in reply order:
// granted, tier, tier_limit, tier_hits, domain_hits, global_hits, burst,
// hard_limited, global_limited, retry_after, reset_after.
type rtF = [rate.NumFields]int64

// rtConn is what the helpers need of a client: *redis.Client or *redis.ClusterClient.
type rtConn interface {
	redis.Cmdable
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// rtNow is the real clock in ms, the base of AT values.
func rtNow() int64 { return time.Now().UnixMilli() }

// rtCmd builds CHARON.RATE key AT at <rest...>.
func rtCmd(key string, at int64, rest ...string) []any {
	args := []any{"CHARON.RATE", key, "AT", at}
	for _, r := range rest {
		args = append(args, r)
	}
	return args
}

// rtCat concatenates argument lists.
func rtCat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// rtAny converts an argument list for Do.
func rtAny(args []string) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = a
	}
	return out
}

// rtFields decodes a CHARON.RATE reply and checks its shape for the protocol: under
// RESP3 a map holding exactly the 11 names, under RESP2 an array of 11 integers in
// reply order.
func rtFields(t testing.TB, v any, proto int) rtF {
	t.Helper()
	var f rtF
	switch proto {
	case 3:
		m, ok := v.(map[any]any)
		require.True(t, ok, "RESP3 reply is %T (%v), want a map", v, v)
		require.Len(t, m, rate.NumFields, "RESP3 reply %v", m)
		for i, name := range rate.FieldNames {
			x, ok := m[name].(int64)
			require.True(t, ok, "RESP3 field %q is %#v, want an integer", name, m[name])
			f[i] = x
		}
	case 2:
		a, ok := v.([]any)
		require.True(t, ok, "RESP2 reply is %T (%v), want an array", v, v)
		require.Len(t, a, rate.NumFields, "RESP2 reply %v", a)
		for i := range a {
			x, ok := a[i].(int64)
			require.True(t, ok, "RESP2 element %d (%s) is %#v, want an integer", i, rate.FieldNames[i], a[i])
			f[i] = x
		}
	default:
		t.Fatalf("protocol %d", proto)
	}
	return f
}

// rtRate runs one CHARON.RATE and decodes its reply.
func rtRate(t testing.TB, c *redis.Client, proto int, args ...any) rtF {
	t.Helper()
	v, err := c.Do(context.Background(), args...).Result()
	require.NoError(t, err, "%v", args)
	return rtFields(t, v, proto)
}

// rtErr runs a command that must fail and returns the error text.
func rtErr(t testing.TB, c rtConn, args ...any) string {
	t.Helper()
	err := c.Do(context.Background(), args...).Err()
	require.Error(t, err, "%v must fail", args)
	var rerr redis.Error
	require.True(t, errors.As(err, &rerr), "%v: want an error reply, got %v", args, err)
	return err.Error()
}

// rtDigest is DEBUG DIGEST (the whole dataset).
func rtDigest(t testing.TB, c rtConn) string {
	t.Helper()
	d, err := c.Do(context.Background(), "DEBUG", "DIGEST").Text()
	require.NoError(t, err)
	return d
}

// rtDigestValue is DEBUG DIGEST-VALUE of one key (all zeros for a missing key).
func rtDigestValue(t testing.TB, c rtConn, key string) string {
	t.Helper()
	v, err := c.Do(context.Background(), "DEBUG", "DIGEST-VALUE", key).Slice()
	require.NoError(t, err)
	require.Len(t, v, 1)
	s, ok := v[0].(string)
	require.True(t, ok, "DIGEST-VALUE %#v", v[0])
	return s
}

// rtPExpireTime is PEXPIRETIME: -2 for a missing key, -1 without expiry.
func rtPExpireTime(t testing.TB, c rtConn, key string) int64 {
	t.Helper()
	v, err := c.Do(context.Background(), "PEXPIRETIME", key).Int64()
	require.NoError(t, err)
	return v
}

func rtDBSize(t testing.TB, c rtConn) int64 {
	t.Helper()
	n, err := c.DBSize(context.Background()).Result()
	require.NoError(t, err)
	return n
}

// rtInspect runs CHARON.INSPECT key AT at and returns its fields (map or flat array).
func rtInspect(t testing.TB, c rtConn, key string, at int64) map[string]any {
	t.Helper()
	v, err := c.Do(context.Background(), "CHARON.INSPECT", key, "AT", at).Result()
	require.NoError(t, err, "CHARON.INSPECT %s", key)
	m, err := harness.ReplyMap(v)
	require.NoError(t, err, "CHARON.INSPECT %s reply shape", key)
	return m
}

// rtInspectShape checks INSPECT's reply shape for the protocol: maps under RESP3 (top
// level and each tier), flat name/value arrays under RESP2.
func rtInspectShape(t testing.TB, c rtConn, proto int, key string, at int64) {
	t.Helper()
	v, err := c.Do(context.Background(), "CHARON.INSPECT", key, "AT", at).Result()
	require.NoError(t, err)
	var tiers any
	if proto == 3 {
		m, ok := v.(map[any]any)
		require.True(t, ok, "RESP3 INSPECT is %T", v)
		tiers = m["tiers"]
	} else {
		a, ok := v.([]any)
		require.True(t, ok, "RESP2 INSPECT is %T", v)
		m, err := harness.ReplyMap(a)
		require.NoError(t, err)
		tiers = m["tiers"]
	}
	list, ok := tiers.([]any)
	require.True(t, ok, "tiers is %T", tiers)
	for _, e := range list {
		if proto == 3 {
			_, ok = e.(map[any]any)
		} else {
			_, ok = e.([]any)
		}
		require.True(t, ok, "RESP%d tier entry is %T", proto, e)
	}
}

func rtInt(t testing.TB, m map[string]any, name string) int64 {
	t.Helper()
	v, ok := m[name].(int64)
	require.True(t, ok, "field %q is %#v, want an integer", name, m[name])
	return v
}

func rtStr(t testing.TB, m map[string]any, name string) string {
	t.Helper()
	v, ok := m[name].(string)
	require.True(t, ok, "field %q is %#v, want a string", name, m[name])
	return v
}

// rtTierInfo returns INSPECT's tiers as maps.
func rtTierInfo(t testing.TB, m map[string]any) []map[string]any {
	t.Helper()
	list, ok := m["tiers"].([]any)
	require.True(t, ok, "tiers is %#v", m["tiers"])
	out := make([]map[string]any, len(list))
	for i, e := range list {
		tm, err := harness.ReplyMap(e)
		require.NoError(t, err, "tier %d", i+1)
		out[i] = tm
	}
	return out
}

// rtSecondLog returns INSPECT's second_log as (at, hits) pairs.
func rtSecondLog(t testing.TB, m map[string]any) [][2]int64 {
	t.Helper()
	list, ok := m["second_log"].([]any)
	require.True(t, ok, "second_log is %#v", m["second_log"])
	out := make([][2]int64, len(list))
	for i, e := range list {
		p, ok := e.([]any)
		require.True(t, ok && len(p) == 2, "second_log entry %#v", e)
		a, ok1 := p[0].(int64)
		h, ok2 := p[1].(int64)
		require.True(t, ok1 && ok2, "second_log entry %#v", e)
		out[i] = [2]int64{a, h}
	}
	return out
}

// rtStep is one request of a scripted sequence: AT offset from the base, options,
// tiers of the pattern, and the expected reply.
type rtStep struct {
	dt   int64
	opts []string
	want rtF
}

// rtRunSteps runs a scripted sequence on key and checks, after every step: the reply,
// the key's absolute expiry (PEXPIRETIME = t + reset_after, rule "key's absolute
// expiry is X"), and that CHARON.INSPECT at the same time tells the same story.
func rtRunSteps(t *testing.T, c *redis.Client, proto int, key string, base int64, tiers []string, steps []rtStep) {
	t.Helper()
	written := false
	tmax := int64(0) // the effective time is at most the newest AT so far (rule 8)
	var lastExp int64
	for i, st := range steps {
		at := base + st.dt
		tmax = max(tmax, at)
		got := rtRate(t, c, proto, rtCmd(key, at, rtCat(st.opts, tiers)...)...)
		require.Equal(t, st.want, got, "RESP%d %s step %d (dt %d, %v): granted tier limit hits domain global burst hard glim retry reset", proto, key, i+1, st.dt, st.opts)
		written = written || got[rate.FieldGranted] > 0
		if !written {
			require.Equal(t, int64(-2), rtPExpireTime(t, c, key), "step %d: a rejection must not create the key", i+1)
			continue
		}
		// PEXPIRETIME is t + reset_after, on the server's clock when t lay behind it.
		// A rejection leaves the expiry the last grant set.
		exp := rtPExpireTime(t, c, key)
		if got[rate.FieldGranted] > 0 {
			rtRequireExpiry(t, [2]int64{at + got[rate.FieldResetAfter], max(tmax, rtNow()) + got[rate.FieldResetAfter]}, exp,
				"step %d: PEXPIRETIME must be max(t, server clock) + reset_after", i+1)
			lastExp = exp
		} else {
			require.Equal(t, lastExp, exp, "step %d: a rejection must not move the expiry", i+1)
		}
		info := rtInspect(t, c, key, at)
		require.Equal(t, "domain", rtStr(t, info, "kind"))
		require.Equal(t, at, rtInt(t, info, "time"))
		require.Equal(t, got[rate.FieldTier], rtInt(t, info, "tier"), "step %d: INSPECT tier", i+1)
		require.Equal(t, got[rate.FieldDomainHits], rtInt(t, info, "domain_hits"), "step %d: INSPECT domain_hits", i+1)
		require.Equal(t, got[rate.FieldResetAfter], rtInt(t, info, "reset_after"), "step %d: INSPECT reset_after", i+1)
		require.Equal(t, at+got[rate.FieldResetAfter], rtInt(t, info, "expire_at"), "step %d: INSPECT expire_at", i+1)
		require.Equal(t, exp, rtInt(t, info, "key_expire_at"), "step %d: INSPECT key_expire_at", i+1)
		var logSum int64
		for _, e := range rtSecondLog(t, info) {
			require.GreaterOrEqual(t, e[0], at-1000)
			logSum += e[1]
		}
		require.Equal(t, got[rate.FieldDomainHits], logSum, "step %d: second_log sums to domain_hits", i+1)
		if cur := got[rate.FieldTier]; cur > 0 {
			ti := rtTierInfo(t, info)
			require.Equal(t, "ACTIVE", rtStr(t, ti[cur-1], "state"), "step %d: current tier state", i+1)
			require.Equal(t, got[rate.FieldTierLimit], rtInt(t, ti[cur-1], "limit"))
			require.Equal(t, got[rate.FieldTierHits], rtInt(t, ti[cur-1], "hits"))
			for j := cur; j < int64(len(ti)); j++ {
				require.NotEqual(t, "ACTIVE", rtStr(t, ti[j], "state"), "step %d: tier %d above the current one", i+1, j+1)
			}
		}
	}
}

// TestRatePatterns drives Charon's four patterns through scripted sequences and checks
// every reply field, under RESP3 (by name) and RESP2 (by position), with the same
// expected values; plus the key's absolute expiry and INSPECT after every step.
func TestRatePatterns(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	cases := []struct {
		name  string
		tiers []string
		steps []rtStep
	}{
		{"simple", rtSimple, []rtStep{
			// granted tier limit hits domain global burst hard glim retry reset
			{0, nil, rtF{1, 1, 5, 1, 1, -1, 0, 0, 0, 0, 1001}},
			{100, nil, rtF{1, 1, 5, 2, 2, -1, 0, 0, 0, 0, 1001}},
			{200, nil, rtF{1, 1, 5, 3, 3, -1, 0, 0, 0, 0, 1001}},
			{300, nil, rtF{1, 1, 5, 4, 4, -1, 0, 0, 0, 0, 1001}},
			{400, nil, rtF{1, 1, 5, 5, 5, -1, 0, 0, 0, 0, 1001}},
			// Full: the hit at +0 leaves the window at +1001.
			{500, nil, rtF{0, 1, 5, 5, 5, -1, 0, 0, 0, 501, 901}},
			// MIN 0: granted 0 is a rejection too.
			{500, []string{"MAX", "3", "MIN", "0"}, rtF{0, 1, 5, 5, 5, -1, 0, 0, 0, 501, 901}},
			// Tier 1 went INACTIVE at +1001 but keeps its hits; it is entered again.
			{1001, nil, rtF{1, 1, 5, 5, 5, -1, 0, 0, 0, 0, 1001}},
			{1050, []string{"MAX", "3", "MIN", "1"}, rtF{0, 1, 5, 5, 5, -1, 0, 0, 0, 51, 952}},
			{2500, []string{"MAX", "10", "MIN", "1"}, rtF{5, 1, 5, 5, 5, -1, 0, 0, 0, 0, 1001}},
		}},
		{"penalty", rtPenalty, []rtStep{
			{0, []string{"MAX", "5"}, rtF{5, 1, 5, 5, 5, -1, 0, 0, 0, 0, 1001}},
			// Burst into tier 2 (entered at +100, closed from +5101 to +20100).
			{100, nil, rtF{1, 2, 50, 1, 6, -1, 1, 0, 0, 0, 20001}},
			{200, []string{"MAX", "10"}, rtF{10, 2, 50, 11, 16, -1, 0, 0, 0, 0, 19901}},
			// 50 at once only once both tiers are fresh again, after the cooldown.
			{300, []string{"MAX", "50"}, rtF{0, 2, 50, 11, 16, -1, 0, 0, 0, 19801, 19801}},
			// Tier 2 in COOLDOWN: back to tier 1, which cannot burst.
			{5101, nil, rtF{1, 1, 5, 1, 1, -1, 0, 0, 0, 0, 15000}},
			{5200, []string{"MAX", "5", "MIN", "1"}, rtF{4, 1, 5, 5, 5, -1, 0, 0, 0, 0, 14901}},
			{5300, nil, rtF{0, 1, 5, 5, 5, -1, 0, 0, 0, 802, 14801}},
			// Cooldown over: tier 2 is entered afresh, its old hits forgotten.
			{20101, []string{"MAX", "10", "MIN", "1"}, rtF{10, 2, 50, 5, 10, -1, 1, 0, 0, 0, 20001}},
		}},
		{"punishment", rtPunishment, []rtStep{
			{0, []string{"MAX", "5"}, rtF{5, 1, 5, 5, 5, -1, 0, 0, 0, 0, 1001}},
			// Over the limit: into prison.
			{100, nil, rtF{1, 2, 1, 1, 6, -1, 1, 0, 0, 0, 15001}},
			// In prison tier 1's allowance is out of reach.
			{2000, nil, rtF{0, 2, 1, 1, 0, -1, 0, 0, 0, 13101, 13101}},
			{15100, nil, rtF{0, 2, 1, 1, 0, -1, 0, 0, 0, 1, 1}},
			{15101, nil, rtF{1, 1, 5, 1, 1, -1, 0, 0, 0, 0, 1001}},
		}},
		{"batch", rtBatch, []rtStep{
			{0, []string{"MAX", "50", "MIN", "1"}, rtF{50, 1, 50, 50, 50, -1, 0, 0, 0, 0, 3600001}},
			{30000, nil, rtF{0, 1, 50, 50, 0, -1, 0, 0, 0, 3570001, 3570001}},
			// COOLDOWN: no tier is ACTIVE (tier 0, tier 1's limit reported).
			{60001, nil, rtF{0, 0, 50, 0, 0, -1, 0, 0, 0, 3540000, 3540000}},
			{3600000, nil, rtF{0, 0, 50, 0, 0, -1, 0, 0, 0, 1, 1}},
			{3600001, []string{"MAX", "10", "MIN", "1"}, rtF{10, 1, 50, 10, 10, -1, 0, 0, 0, 0, 3600001}},
		}},
	}
	for _, proto := range []int{3, 2} {
		c := s.Client(t, harness.Protocol(proto))
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/RESP%d", tc.name, proto), func(t *testing.T) {
				rtRunSteps(t, c, proto, fmt.Sprintf("rl:{%s}:resp%d", tc.name, proto), rtNow(), tc.tiers, tc.steps)
				rtInspectShape(t, c, proto, fmt.Sprintf("rl:{%s}:resp%d", tc.name, proto), rtNow())
			})
		}
	}
}

// ---------------------------------------------------------------------------
// Random traffic and a local model built on the pure package.

// rtTierSets are what random traffic picks tier clauses from: the four patterns, a
// three-tier set with a skippable cooldown tier, and a closed resource (CLOSED).
var rtTierSets = [][]string{
	rtSimple, rtPenalty, rtPunishment, rtBatch,
	{"TIER", "2", "1000", "1000", "0", "TIER", "3", "1000", "500", "10000", "SKIPPABLE", "TIER", "10", "2000", "1500", "0"},
	{"CLOSED"},
}

// rtLimitsOf is the compact form of TIER clauses: LIMITS "l/w/a/c[?], ..." in ms.
func rtLimitsOf(tiers []string) []string {
	var parts []string
	for i := 0; i < len(tiers); i += 5 {
		p := strings.Join(tiers[i+1:i+5], "/")
		if i+5 < len(tiers) && strings.EqualFold(tiers[i+5], "SKIPPABLE") {
			p += "?"
			i++
		}
		parts = append(parts, p)
	}
	return []string{"LIMITS", strings.Join(parts, ", ")}
}

// rtGen produces random CHARON.RATE requests: random keys, options in random order
// and case, MIN/MAX/HARD/GLOBAL/DRYRUN, and an AT clock that mostly moves forward in
// small steps but also jumps and steps back.
type rtGen struct {
	r     *rand.Rand
	at    int64 // the traffic's clock
	floor int64 // the clock never goes below this
	keys  []string
	gkeys []string
	noAt  int  // percent of requests without AT (server clock)
	real  bool // AT follows the real clock with jitter, instead of its own walk
	// v3 is the percent of requests with windowed caps (CAP clauses, GLOBAL caps
	// strings) and ONCE tokens: what the value's version 3 stores.
	v3 int
}

// rtGenReq is one generated request.
type rtGenReq struct {
	args []any    // the whole command
	opts []string // the arguments after the key
	key  string
	gkey string // "" without GLOBAL
	dry  bool
	at   int64 // -1 without AT
}

func (g *rtGen) kw(s string) string {
	if g.r.IntN(4) == 0 {
		return strings.ToLower(s)
	}
	return s
}

func (g *rtGen) tick() {
	if g.real {
		// Near now: mostly just behind, sometimes seconds behind (keys written already
		// expired, clocks stepping back), sometimes ahead.
		now := rtNow()
		switch p := g.r.IntN(100); {
		case p < 60:
			g.at = now - g.r.Int64N(250) + 50
		case p < 85:
			g.at = now - 200 - g.r.Int64N(1300)
		case p < 95:
			g.at = now + 50 + g.r.Int64N(3000)
		default:
			g.at = now - 1500 - g.r.Int64N(4500)
		}
		return
	}
	switch p := g.r.IntN(100); {
	case p < 45:
		g.at += g.r.Int64N(20)
	case p < 75:
		g.at += 20 + g.r.Int64N(400)
	case p < 88:
		g.at += 400 + g.r.Int64N(2600)
	case p < 95:
		g.at -= g.r.Int64N(2000) // a clock stepping back
	case p < 99:
		g.at += 5000 + g.r.Int64N(20000)
	default:
		g.at += 3_600_000 // past the batch pattern's cooldown
	}
	g.at = max(g.at, g.floor)
}

// randomTiers is a random list of 1..16 tier clauses.
func (g *rtGen) randomTiers() []string {
	var out []string
	for range 1 + g.r.IntN(rate.MaxTiers) {
		out = append(out, g.kw("TIER"),
			strconv.Itoa(g.r.IntN(12)), strconv.Itoa(1+g.r.IntN(4000)),
			strconv.Itoa(1+g.r.IntN(4000)), strconv.Itoa(g.r.IntN(3)*g.r.IntN(8000)))
		if g.r.IntN(3) == 0 {
			out = append(out, g.kw("SKIPPABLE"))
		}
	}
	return out
}

func (g *rtGen) next() rtGenReq {
	g.tick()
	ki := g.r.IntN(len(g.keys))
	q := rtGenReq{key: g.keys[ki], at: -1}
	var tiers []string
	switch p := g.r.IntN(100); {
	case p < 85: // the key's own pattern
		tiers = rtTierSets[ki%(len(rtTierSets)-1)]
	case p < 97:
		tiers = rtTierSets[g.r.IntN(len(rtTierSets))]
	default:
		tiers = g.randomTiers()
	}
	var groups [][]string
	maxv := 1 + g.r.Int64N(5)
	switch p := g.r.IntN(100); {
	case p < 20:
		maxv = 6 + g.r.Int64N(55)
	case p < 23:
		maxv = 61 + g.r.Int64N(2000)
	}
	if maxv > 1 || g.r.IntN(2) == 0 {
		groups = append(groups, []string{g.kw("MAX"), strconv.FormatInt(maxv, 10)})
	}
	switch p := g.r.IntN(100); {
	case p < 20:
		groups = append(groups, []string{g.kw("MIN"), "0"})
	case p < 60:
		groups = append(groups, []string{g.kw("MIN"), strconv.FormatInt(g.r.Int64N(maxv+1), 10)})
	}
	if g.r.IntN(100) < 15 {
		groups = append(groups, []string{g.kw("HARD"), strconv.Itoa(g.r.IntN(31))})
	}
	v3 := g.r.IntN(100) < g.v3
	if v3 {
		// Up to two caps, exact and bucketed windows (none of 1000 ms: HARD's), and a
		// token from a small pool, so that some requests are replays.
		ws := []int{250, 700, 5000, 60_000, 3_600_000}
		g.r.Shuffle(len(ws), func(i, j int) { ws[i], ws[j] = ws[j], ws[i] })
		for _, w := range ws[:g.r.IntN(3)] {
			groups = append(groups, []string{g.kw("CAP"), strconv.Itoa(g.r.IntN(60)), strconv.Itoa(w)})
		}
		if g.r.IntN(2) == 0 {
			groups = append(groups, []string{g.kw("ONCE"), fmt.Sprintf("tok-%d", g.r.IntN(30))})
		}
	}
	if len(g.gkeys) > 0 && g.r.IntN(100) < 25 {
		q.gkey = g.gkeys[g.r.IntN(len(g.gkeys))]
		limit := strconv.Itoa(g.r.IntN(201))
		if v3 && g.r.IntN(2) == 0 {
			limit = fmt.Sprintf("%d/1s, %d/1h, %d/300ms", g.r.IntN(201), g.r.IntN(5000), g.r.IntN(100))
		}
		groups = append(groups, []string{g.kw("GLOBAL"), q.gkey, limit})
	}
	if g.r.IntN(100) < 10 {
		q.dry = true
		groups = append(groups, []string{g.kw("DRYRUN")})
	}
	if g.r.IntN(100) >= g.noAt {
		q.at = g.at
		groups = append(groups, []string{g.kw("AT"), strconv.FormatInt(g.at, 10)})
	}
	g.r.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
	// TIER clauses keep their order but may sit anywhere among the options.
	var tierGroups [][]string
	if len(tiers) > 0 && tiers[0] != "CLOSED" && g.r.IntN(3) == 0 {
		tierGroups = append(tierGroups, rtLimitsOf(tiers)) // the compact form
		tiers = nil
	}
	for i := 0; i < len(tiers); {
		n := 5
		if tiers[i] == "CLOSED" {
			n = 1
		}
		if i+5 < len(tiers) && strings.EqualFold(tiers[i+5], "SKIPPABLE") {
			n = 6
		}
		grp := append([]string(nil), tiers[i:i+n]...)
		grp[0] = g.kw(grp[0])
		tierGroups = append(tierGroups, grp)
		i += n
	}
	for len(groups) > 0 || len(tierGroups) > 0 {
		if len(tierGroups) == 0 || (len(groups) > 0 && g.r.IntN(2) == 0) {
			q.opts = append(q.opts, groups[0]...)
			groups = groups[1:]
		} else {
			q.opts = append(q.opts, tierGroups[0]...)
			tierGroups = tierGroups[1:]
		}
	}
	q.args = []any{"CHARON.RATE", q.key}
	for _, o := range q.opts {
		q.args = append(q.args, o)
	}
	return q
}

// rtModel replays requests on the pure package: the values the server should hold,
// their absolute expiries, and the replies it should send.
type rtModel struct {
	vals map[string][]byte
	exp  map[string][2]int64 // the bounds of the absolute expiry
}

func newRTModel() *rtModel { return &rtModel{vals: map[string][]byte{}, exp: map[string][2]int64{}} }

// rtRequireExpiry checks an absolute expiry against the model's bounds.
func rtRequireExpiry(t testing.TB, bounds [2]int64, got int64, msg string, args ...any) {
	t.Helper()
	require.GreaterOrEqual(t, got, bounds[0], msg, args)
	require.LessOrEqual(t, got, bounds[1], msg, args)
}

func (m *rtModel) apply(t testing.TB, q rtGenReq) rtF {
	t.Helper()
	require.GreaterOrEqual(t, q.at, int64(0), "the model needs AT")
	bargs := make([][]byte, len(q.opts))
	for i, o := range q.opts {
		bargs[i] = []byte(o)
	}
	var req rate.Request
	require.NoError(t, rate.ParseRequest(bargs, &req), "%v", q.opts)
	var gcur []byte
	if req.HasGlobal {
		gcur = m.vals[q.gkey]
	}
	res, nv, ngv, err := rate.Apply(m.vals[q.key], gcur, &req, req.At, nil, nil)
	require.NoError(t, err)
	require.Equal(t, !q.dry && res.Granted, res.Write)
	if res.Write {
		// The server measured the expiry on its clock, read during the request: X
		// moved forward by how far t lay behind it, which is at most how far t lies
		// behind the clock now (rate.ExpireAt).
		now := rtNow()
		m.vals[q.key] = bytes.Clone(nv)
		m.exp[q.key] = [2]int64{res.ExpireAt, rate.ExpireAt(res.ExpireAt, res.T, now)}
		if req.HasGlobal {
			require.NotNil(t, ngv)
			m.vals[q.gkey] = bytes.Clone(ngv)
			m.exp[q.gkey] = [2]int64{res.GlobalExpireAt, rate.ExpireAt(res.GlobalExpireAt, res.T, now)}
		}
	}
	return res.Fields
}

// TestRateMatchesPurePackage sends a few thousand random requests and compares every
// reply (all 11 fields, alternating RESP3 and RESP2) with module/rate's Apply run on a
// local copy of the state at the same AT; then the stored bytes (from DUMP) and the
// absolute expiries of every key.
func TestRateMatchesPurePackage(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{Config: []string{"rdbcompression no"}})
	ctx := context.Background()
	clients := map[int]*redis.Client{3: s.Client(t, harness.Protocol(3)), 2: s.Client(t, harness.Protocol(2))}

	seed := uint64(rtNow())
	t.Logf("seed %d", seed)
	// An hour ahead, so that no key expires on the real clock during the test (the
	// model knows nothing of the server's clock).
	base := rtNow() + 3_600_000
	g := &rtGen{r: rand.New(rand.NewPCG(seed, 7)), at: base, floor: base,
		keys:  []string{"rl:{x}:d0", "rl:{x}:d1", "rl:{x}:d2", "rl:{x}:d3", "rl:{x}:d4", "rl:{x}:d5", "rl:{x}:d6"},
		gkeys: []string{"rl:{x}:g0", "rl:{x}:g1"}}
	m := newRTModel()

	const total, batch = 4000, 200
	var granted, rejected, dry int
	for done := 0; done < total; done += batch {
		var qs []rtGenReq
		cmds := map[int][]*redis.Cmd{}
		pipes := map[int]redis.Pipeliner{3: clients[3].Pipeline(), 2: clients[2].Pipeline()}
		// One protocol per batch keeps the order of requests (one pipeline at a time).
		proto := 3 - (done/batch)%2
		for range batch {
			q := g.next()
			qs = append(qs, q)
			cmds[proto] = append(cmds[proto], pipes[proto].Do(ctx, q.args...))
		}
		_, err := pipes[proto].Exec(ctx)
		require.NoError(t, err)
		for i, q := range qs {
			want := m.apply(t, q)
			got := rtFields(t, cmds[proto][i].Val(), proto)
			require.Equal(t, want, got, "request %d: %v", done+i, q.args)
			switch {
			case q.dry:
				dry++
			case got[rate.FieldGranted] > 0:
				granted++
			default:
				rejected++
			}
		}
	}
	t.Logf("%d requests: %d granted, %d rejected, %d DRYRUN", total, granted, rejected, dry)
	require.Positive(t, granted)
	require.Positive(t, rejected)

	c := clients[3]
	for _, k := range append(append([]string(nil), g.keys...), g.gkeys...) {
		want, ok := m.vals[k]
		if !ok {
			require.Equal(t, int64(-2), rtPExpireTime(t, c, k), "%s must not exist", k)
			continue
		}
		got := rtValueOf(t, c, k)
		require.Equal(t, want, got, "%s: stored bytes differ from the pure package's", k)
		rtRequireExpiry(t, m.exp[k], rtPExpireTime(t, c, k), "%s: absolute expiry", k)
	}
}

// ---------------------------------------------------------------------------
// Errors.

// TestRateErrors runs a table of bad argument lists: each must name the offending
// argument, and none may change the dataset (DEBUG DIGEST, DBSIZE) or create a key.
func TestRateErrors(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t)
	ctx := context.Background()
	now := rtNow() + 600_000
	at := strconv.FormatInt(now, 10)

	// State to damage: a domain key, a global key and a string.
	rtRate(t, c, 3, rtCmd("rl:{api}:a", now, rtCat([]string{"MAX", "3", "GLOBAL", "rl:{api}", "100"}, rtPenalty)...)...)
	rtRate(t, c, 3, rtCmd("rl:{api}:b", now, rtSimple...)...)
	require.NoError(t, c.Set(ctx, "str", "x", 0).Err())
	require.NoError(t, c.RPush(ctx, "list", "x").Err())

	tier := rtSimple
	tooMany := []string{}
	for range rate.MaxTiers + 1 {
		tooMany = append(tooMany, tier...)
	}
	long := strings.Repeat("x", 100)
	cases := []struct {
		args []string // after CHARON.RATE
		want string   // error prefix
	}{
		{[]string{}, "ERR wrong number of arguments for 'charon.rate' command"},
		{rtCat([]string{"rl:{api}:a", "MAX", "0"}, tier), "ERR MAX:"},
		{rtCat([]string{"rl:{api}:a", "MAX", "-1"}, tier), "ERR MAX:"},
		{rtCat([]string{"rl:{api}:a", "MAX", "1000000000001"}, tier), "ERR MAX:"},
		{rtCat([]string{"rl:{api}:a", "MAX", "abc"}, tier), "ERR MAX:"},
		{rtCat([]string{"rl:{api}:a", "MAX", "01"}, tier), "ERR MAX:"},
		{rtCat([]string{"rl:{api}:a", "MAX", " 1"}, tier), "ERR MAX:"},
		{rtCat([]string{"rl:{api}:a", "MAX", "1.5"}, tier), "ERR MAX:"},
		{rtCat([]string{"rl:{api}:a", "MAX", "99999999999999999999999"}, tier), "ERR MAX:"},
		{rtCat([]string{"rl:{api}:a", "MAX", "1", "max", "2"}, tier), "ERR MAX:"},
		{rtCat([]string{"rl:{api}:a"}, tier, []string{"MAX"}), "ERR MAX:"},
		{rtCat([]string{"rl:{api}:a", "MIN", "-1"}, tier), "ERR MIN:"},
		{rtCat([]string{"rl:{api}:a", "MIN", "2"}, tier), "ERR MIN:"}, // above the default MAX 1
		{rtCat([]string{"rl:{api}:a", "MAX", "2", "MIN", "3"}, tier), "ERR MIN:"},
		{rtCat([]string{"rl:{api}:a", "MIN", "1000000000001", "MAX", "5"}, tier), "ERR MIN:"},
		{rtCat([]string{"rl:{api}:a", "MIN", "0", "MIN", "0"}, tier), "ERR MIN:"},
		{rtCat([]string{"rl:{api}:a", "HARD", "-1"}, tier), "ERR HARD:"},
		{rtCat([]string{"rl:{api}:a", "HARD", "x"}, tier), "ERR HARD:"},
		{rtCat([]string{"rl:{api}:a", "HARD", "1", "HARD", "2"}, tier), "ERR HARD:"},
		{rtCat([]string{"rl:{api}:a"}, tier, []string{"HARD"}), "ERR HARD:"},
		{rtCat([]string{"rl:{api}:a", "GLOBAL", "rl:{api}"}, tier), "ERR GLOBAL:"}, // the limit is "TIER"
		{rtCat([]string{"rl:{api}:a"}, tier, []string{"GLOBAL", "rl:{api}"}), "ERR GLOBAL:"},
		{rtCat([]string{"rl:{api}:a", "GLOBAL", "rl:{api}", "-5"}, tier), "ERR GLOBAL:"},
		{rtCat([]string{"rl:{api}:a", "GLOBAL", "rl:{api}", "1000000000001"}, tier), "ERR GLOBAL:"},
		{rtCat([]string{"rl:{api}:a", "GLOBAL", "rl:{api}", "5", "GLOBAL", "rl:{api}", "5"}, tier), "ERR GLOBAL:"},
		{rtCat([]string{"rl:{api}:a", "GLOBAL", "rl:{api}:a", "5"}, tier), "ERR GLOBAL:"}, // the key itself
		{rtCat([]string{"rl:{api}:new", "GLOBAL", "rl:{api}:new", "5"}, tier), "ERR GLOBAL:"},
		{rtCat([]string{"rl:{api}:a", "AT", "-1"}, tier), "ERR AT:"},
		{rtCat([]string{"rl:{api}:a", "AT", "9007199254740993"}, tier), "ERR AT:"},
		{rtCat([]string{"rl:{api}:a", "AT", "1.5"}, tier), "ERR AT:"},
		{rtCat([]string{"rl:{api}:a", "AT", at, "AT", at}, tier), "ERR AT:"},
		{rtCat([]string{"rl:{api}:a"}, tier, []string{"AT"}), "ERR AT:"},
		{rtCat([]string{"rl:{api}:a", "DRYRUN", "dryrun"}, tier), "ERR DRYRUN:"},
		{[]string{"rl:{api}:a", "TIER", "5", "1000", "1000"}, "ERR TIER 1:"},
		{[]string{"rl:{api}:a", "TIER"}, "ERR TIER 1:"},
		{[]string{"rl:{api}:a", "TIER", "-1", "1000", "1000", "0"}, "ERR TIER 1 limit:"},
		{[]string{"rl:{api}:a", "TIER", "1000000000001", "1000", "1000", "0"}, "ERR TIER 1 limit:"},
		{[]string{"rl:{api}:a", "TIER", "5", "315360000001", "1000", "0"}, "ERR TIER 1 window-ms:"},
		{rtCat([]string{"rl:{api}:a"}, tier, []string{"TIER", "5", "0", "1000", "0"}), "ERR TIER 2 window-ms:"},
		{rtCat([]string{"rl:{api}:a"}, tier, []string{"TIER", "5", "1000", "0", "0"}), "ERR TIER 2 active-ms:"},
		{rtCat([]string{"rl:{api}:a"}, tier, []string{"TIER", "5", "1000", "315360000001", "0"}), "ERR TIER 2 active-ms:"},
		{rtCat([]string{"rl:{api}:a"}, tier, []string{"TIER", "5", "1000", "1000", "-1"}), "ERR TIER 2 cooldown-ms:"},
		{rtCat([]string{"rl:{api}:a"}, tier, tier, []string{"tier", "5", "1000", "1000", "315360000001"}), "ERR TIER 3 cooldown-ms:"},
		{rtCat([]string{"rl:{api}:a"}, tooMany), "ERR TIER 17:"},
		{rtCat([]string{"rl:{api}:a", "SKIPPABLE"}, tier), "ERR SKIPPABLE:"},
		{rtCat([]string{"rl:{api}:a"}, tier, []string{"SKIPPABLE", "SKIPPABLE"}), "ERR SKIPPABLE:"},
		{rtCat([]string{"rl:{api}:a", "FOO"}, tier), "ERR syntax:"},
		{rtCat([]string{"rl:{api}:a"}, tier, []string{"7"}), "ERR syntax:"},
		{rtCat([]string{"rl:{api}:a", "\r\nfoo"}, tier), "ERR syntax:"},
		{rtCat([]string{"rl:{api}:a", long}, tier), "ERR syntax:"},
		{rtCat([]string{"rl:{api}:new", "MAX", "0"}, tier), "ERR MAX:"},
		// A parse error wins over a wrong type: nothing is opened before validation.
		{rtCat([]string{"str", "MAX", "0"}, tier), "ERR MAX:"},
	}
	for _, tc := range cases {
		digest, size := rtDigest(t, c), rtDBSize(t, c)
		args := []any{"CHARON.RATE"}
		for _, a := range tc.args {
			args = append(args, a)
		}
		msg := rtErr(t, c, args...)
		require.True(t, strings.HasPrefix(msg, tc.want), "%q: got %q, want prefix %q", tc.args, msg, tc.want)
		require.NotContains(t, msg, "\n", "error text must stay on one line")
		require.Equal(t, digest, rtDigest(t, c), "%q changed the dataset", tc.args)
		require.Equal(t, size, rtDBSize(t, c), "%q changed DBSIZE", tc.args)
	}
	require.Equal(t, int64(0), c.Exists(ctx, "rl:{api}:new").Val())

	// WRONGTYPE: a foreign type, or a charon-rl value of the other kind, as either key.
	wrongType := [][]string{
		rtCat([]string{"str"}, tier),
		rtCat([]string{"list"}, tier),
		rtCat([]string{"rl:{api}:a", "GLOBAL", "str", "5"}, tier),
		rtCat([]string{"rl:{api}:new", "GLOBAL", "list", "5"}, tier),
		rtCat([]string{"rl:{api}:a", "GLOBAL", "rl:{api}:b", "5"}, tier), // a domain key as GLOBAL
		rtCat([]string{"rl:{api}"}, tier),                                // a global key as the key
		rtCat([]string{"rl:{api}", "DRYRUN"}, tier),
		rtCat([]string{"str", "GLOBAL", "rl:{api}", "5"}, tier),
	}
	for _, a := range wrongType {
		digest, size := rtDigest(t, c), rtDBSize(t, c)
		args := []any{"CHARON.RATE"}
		for _, x := range a {
			args = append(args, x)
		}
		args = append(args, "AT", now+10)
		msg := rtErr(t, c, args...)
		require.True(t, strings.HasPrefix(msg, "WRONGTYPE"), "%q: got %q", a, msg)
		require.Equal(t, digest, rtDigest(t, c), "%q changed the dataset", a)
		require.Equal(t, size, rtDBSize(t, c), "%q changed DBSIZE", a)
	}
	require.Equal(t, "x", c.Get(ctx, "str").Val())

	// CHARON.INSPECT and CHARON.LOADVALUE argument errors.
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"CHARON.INSPECT"}, "ERR wrong number of arguments for 'charon.inspect' command"},
		{[]any{"CHARON.INSPECT", "rl:{api}:a", "AT", "-1"}, "ERR AT:"},
		{[]any{"CHARON.INSPECT", "rl:{api}:a", "AT"}, "ERR AT:"},
		{[]any{"CHARON.INSPECT", "rl:{api}:a", "AT", "5", "x"}, "ERR syntax:"},
		{[]any{"CHARON.INSPECT", "rl:{api}:a", "FOO"}, "ERR syntax:"},
		{[]any{"CHARON.INSPECT", "str"}, "WRONGTYPE"},
		{[]any{"CHARON.LOADVALUE", "k"}, "ERR wrong number of arguments for 'charon.loadvalue' command"},
		{[]any{"CHARON.LOADVALUE", "k", "a", "b"}, "ERR wrong number of arguments for 'charon.loadvalue' command"},
		{[]any{"CHARON.LOADVALUE", "k", "garbage"}, "ERR payload:"},
		{[]any{"CHARON.LOADVALUE", "str", rtValueOf(t, c, "rl:{api}:a")}, "WRONGTYPE"},
	} {
		digest, size := rtDigest(t, c), rtDBSize(t, c)
		msg := rtErr(t, c, tc.args...)
		require.True(t, strings.HasPrefix(msg, tc.want), "%v: got %q, want prefix %q", tc.args, msg, tc.want)
		require.Equal(t, digest, rtDigest(t, c), "%v changed the dataset", tc.args)
		require.Equal(t, size, rtDBSize(t, c), "%v changed DBSIZE", tc.args)
	}
	require.NoError(t, c.Ping(ctx).Err())
}

// ---------------------------------------------------------------------------
// DRYRUN, HARD, GLOBAL, SKIPPABLE, MIN 0, zero tiers.

// TestRateDryRun: a DRYRUN answers what the real request then answers, changes no
// value or expiry, creates no key, and is not propagated (the replica runs only the
// real grants).
func TestRateDryRun(t *testing.T) {
	t.Parallel()
	primary, replica := harness.StartPrimaryReplica(t, harness.Options{})
	c := primary.Client(t)
	ctx := context.Background()
	base := rtNow()

	type req struct {
		key  string
		dt   int64
		opts []string
	}
	reqs := []req{
		{"rl:{d}:a", 0, []string{"MAX", "3"}},
		{"rl:{d}:a", 10, []string{"MAX", "3"}},   // bursts into tier 2
		{"rl:{d}:a", 20, []string{"MAX", "100"}}, // rejected
		{"rl:{d}:a", 30, []string{"MAX", "100", "MIN", "1", "GLOBAL", "rl:{d}", "20"}},
		{"rl:{d}:b", 30, []string{"MAX", "100", "MIN", "0", "GLOBAL", "rl:{d}", "20"}}, // nothing left globally
		{"rl:{d}:b", 1100, []string{"MAX", "4", "GLOBAL", "rl:{d}", "20"}},
		{"rl:{d}:a", 6000, []string{"MAX", "2"}}, // tier 2 in cooldown
	}
	grants := 0
	for i, r := range reqs {
		cmd := rtCmd(r.key, base+r.dt, rtCat(r.opts, rtPenalty)...)
		dry := append(append([]any(nil), cmd...), "DRYRUN")
		before := map[string]string{}
		exp := map[string]int64{}
		for _, k := range []string{r.key, "rl:{d}"} {
			before[k], exp[k] = rtDigestValue(t, c, k), rtPExpireTime(t, c, k)
		}
		size := rtDBSize(t, c)
		got := rtRate(t, c, 3, dry...)
		for _, k := range []string{r.key, "rl:{d}"} {
			require.Equal(t, before[k], rtDigestValue(t, c, k), "request %d: DRYRUN changed %s", i, k)
			require.Equal(t, exp[k], rtPExpireTime(t, c, k), "request %d: DRYRUN changed %s's expiry", i, k)
		}
		require.Equal(t, size, rtDBSize(t, c), "request %d: DRYRUN created a key", i)
		real := rtRate(t, c, 3, cmd...)
		require.Equal(t, real, got, "request %d: DRYRUN must answer as the real request", i)
		if real[rate.FieldGranted] > 0 {
			grants++
		}
	}
	require.Equal(t, 5, grants, "the script expects five grants")
	require.NoError(t, c.Set(ctx, "fence", "1", 0).Err())
	harness.WaitReplicaSync(t, primary, replica)
	stats := replica.Info(t, "commandstats")
	require.Contains(t, stats["cmdstat_charon.rate"], fmt.Sprintf("calls=%d,", grants), "only real grants are propagated")
	require.Equal(t, rtDigest(t, c), rtDigest(t, replica.Client(t)))
}

// TestRateOptions covers HARD, GLOBAL (two domains sharing a global key), SKIPPABLE,
// MIN 0 and zero tiers, with the absolute expiries of domain and global keys.
func TestRateOptions(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t)
	ctx := context.Background()

	t.Run("HARD", func(t *testing.T) {
		tiers := []string{"TIER", "100", "1000", "1000", "0"}
		rtRunSteps(t, c, 3, "rl:{h}:a", rtNow(), tiers, []rtStep{
			// granted tier limit hits domain global burst hard glim retry reset
			{0, []string{"MAX", "5", "MIN", "1", "HARD", "3"}, rtF{3, 1, 100, 3, 3, -1, 0, 1, 0, 0, 1001}},
			{10, []string{"HARD", "3"}, rtF{0, 1, 100, 3, 3, -1, 0, 1, 0, 991, 991}},
			{20, []string{"MAX", "2", "HARD", "10"}, rtF{2, 1, 100, 5, 5, -1, 0, 0, 0, 0, 1001}},
			// HARD 0 can never give anything: retry_after -1.
			{30, []string{"MAX", "5", "HARD", "0"}, rtF{0, 1, 100, 5, 5, -1, 0, 1, 0, -1, 991}},
		})
	})

	t.Run("GLOBAL", func(t *testing.T) {
		tiers := []string{"TIER", "100", "1000", "1000", "0"}
		base := rtNow() + 60_000 // ahead of the server clock: expiries are exactly X
		g := []string{"GLOBAL", "rl:{g}", "8"}
		do := func(key string, dt int64, opts ...string) rtF {
			return rtRate(t, c, 3, rtCmd(key, base+dt, rtCat(opts, tiers)...)...)
		}
		// granted tier limit hits domain global burst hard glim retry reset
		require.Equal(t, rtF{5, 1, 100, 5, 5, 5, 0, 0, 0, 0, 1001}, do("rl:{g}:alice", 0, rtCat([]string{"MAX", "5"}, g)...))
		require.Equal(t, base+1001, rtPExpireTime(t, c, "rl:{g}"))
		require.Equal(t, rtF{3, 1, 100, 3, 3, 8, 0, 0, 1, 0, 1001}, do("rl:{g}:bob", 10, rtCat([]string{"MAX", "5", "MIN", "1"}, g)...))
		require.Equal(t, base+10+1001, rtPExpireTime(t, c, "rl:{g}"), "global key expires at its newest entry + 1001")
		gd := rtDigestValue(t, c, "rl:{g}")
		require.Equal(t, rtF{0, 1, 100, 5, 5, 8, 0, 0, 1, 981, 981}, do("rl:{g}:alice", 20, g...))
		require.Equal(t, gd, rtDigestValue(t, c, "rl:{g}"), "a rejection must not touch the global key")
		require.Equal(t, base+10+1001, rtPExpireTime(t, c, "rl:{g}"))
		// Rule 8 through the global key: carol asks at +0, but the global log already
		// holds +10, so her effective time is +10.
		require.Equal(t, rtF{1, 1, 100, 1, 1, 9, 0, 0, 0, 0, 1001}, do("rl:{g}:carol", 0, "GLOBAL", "rl:{g}", "9"))
		require.Equal(t, base+10+1001, rtPExpireTime(t, c, "rl:{g}:carol"), "carol's key lives on the effective time")
		require.Equal(t, base+10+1001, rtPExpireTime(t, c, "rl:{g}"))
		// At +1005 only the +10 entries (3+1) remain in the global window.
		require.Equal(t, rtF{4, 1, 100, 7, 7, 8, 0, 0, 1, 0, 1001}, do("rl:{g}:bob", 1005, rtCat([]string{"MAX", "8", "MIN", "1"}, g)...))
		require.Equal(t, base+1005+1001, rtPExpireTime(t, c, "rl:{g}"))
		require.Equal(t, base+1005+1001, rtPExpireTime(t, c, "rl:{g}:bob"))

		info := rtInspect(t, c, "rl:{g}", base+1005)
		require.Equal(t, "global", rtStr(t, info, "kind"))
		require.Equal(t, int64(8), rtInt(t, info, "global_hits"))
		require.Equal(t, [][2]int64{{base + 10, 4}, {base + 1005, 4}}, rtSecondLog(t, info))
		require.Equal(t, base+1005+1001, rtInt(t, info, "key_expire_at"))
		require.Empty(t, rtTierInfo(t, info))
	})

	t.Run("SKIPPABLE", func(t *testing.T) {
		base := rtNow() + 60_000
		tiers := func(skip bool) []string {
			t2 := []string{"TIER", "3", "1000", "500", "10000"}
			if skip {
				t2 = append(t2, "SKIPPABLE")
			}
			return rtCat([]string{"TIER", "2", "1000", "1000", "0"}, t2, []string{"TIER", "10", "1000", "1000", "0"})
		}
		first := []rtStep{
			// granted tier limit hits domain global burst hard glim retry reset
			{0, []string{"MAX", "2"}, rtF{2, 1, 2, 2, 2, -1, 0, 0, 0, 0, 1001}},
			{1, []string{"MAX", "3"}, rtF{3, 2, 3, 3, 5, -1, 1, 0, 0, 0, 10501}},
		}
		// Tier 2 is in COOLDOWN at +600: skipped into tier 3, or the climb stops there.
		rtRunSteps(t, c, 3, "rl:{s}:skip", base, tiers(true), append(first,
			rtStep{600, []string{"MAX", "4"}, rtF{4, 3, 10, 4, 9, -1, 1, 0, 0, 0, 9902}}))
		rtRunSteps(t, c, 3, "rl:{s}:stop", base, tiers(false), append(first,
			rtStep{600, []string{"MAX", "4"}, rtF{0, 1, 2, 2, 5, -1, 0, 0, 0, 9902, 9902}}))
		ti := rtTierInfo(t, rtInspect(t, c, "rl:{s}:skip", base+600))
		require.Len(t, ti, 3)
		for i, want := range []struct {
			state     string
			skippable int64
		}{{"ACTIVE", 0}, {"COOLDOWN", 1}, {"ACTIVE", 0}} {
			require.Equal(t, want.state, rtStr(t, ti[i], "state"), "tier %d", i+1)
			require.Equal(t, want.skippable, rtInt(t, ti[i], "skippable"), "tier %d", i+1)
		}
		require.Equal(t, base+1, rtInt(t, ti[1], "entered_at"))
		require.Equal(t, base+1+500+10000+1, rtInt(t, ti[1], "next_change_at"))
		require.Equal(t, "INACTIVE", rtStr(t, ti[1], "next_state"))
	})

	t.Run("MIN0", func(t *testing.T) {
		base := rtNow() + 60_000
		// A tier with limit 0: MIN 0 grants 0, which is a rejection; nothing is created.
		got := rtRate(t, c, 3, rtCmd("rl:{m}:zero", base, "MAX", "3", "MIN", "0", "TIER", "0", "1000", "1000", "0")...)
		require.Equal(t, rtF{0, 0, 0, 0, 0, -1, 0, 0, 0, -1, 0}, got)
		require.Equal(t, int64(0), c.Exists(ctx, "rl:{m}:zero").Val())
		// A full key: MIN 0 grants 0 and writes nothing.
		rtRate(t, c, 3, rtCmd("rl:{m}:full", base, rtCat([]string{"MAX", "5"}, rtSimple)...)...)
		d, exp := rtDigestValue(t, c, "rl:{m}:full"), rtPExpireTime(t, c, "rl:{m}:full")
		got = rtRate(t, c, 3, rtCmd("rl:{m}:full", base+1, rtCat([]string{"MAX", "3", "MIN", "0", "GLOBAL", "rl:{m}", "10"}, rtSimple)...)...)
		require.Equal(t, rtF{0, 1, 5, 5, 5, 0, 0, 0, 0, 1000, 1000}, got)
		require.Equal(t, d, rtDigestValue(t, c, "rl:{m}:full"))
		require.Equal(t, exp, rtPExpireTime(t, c, "rl:{m}:full"))
		require.Equal(t, int64(0), c.Exists(ctx, "rl:{m}").Val(), "a rejection must not create the global key")
	})

	t.Run("ZeroTiers", func(t *testing.T) {
		base := rtNow() + 60_000
		// Rule 9: forgetting the limits is an error naming TIER, and writes nothing.
		err := c.Do(ctx, rtCmd("rl:{z}:new", base, "MAX", "5")...).Err()
		require.EqualError(t, err, "ERR TIER: no limits given: add TIER clauses or LIMITS, or say CLOSED to reject every request")
		// A closed resource says CLOSED: rejected, retry_after -1, nothing created.
		got := rtRate(t, c, 3, rtCmd("rl:{z}:new", base, "MAX", "1", "GLOBAL", "rl:{z}", "10", "CLOSED")...)
		require.Equal(t, rtF{0, 0, 0, 0, 0, 0, 0, 0, 0, -1, 0}, got)
		require.Equal(t, int64(0), c.Exists(ctx, "rl:{z}:new", "rl:{z}").Val())
		// On an existing key: rejected, the key is untouched.
		rtRate(t, c, 3, rtCmd("rl:{z}:old", base, rtCat([]string{"MAX", "2"}, rtPenalty)...)...)
		d, exp := rtDigestValue(t, c, "rl:{z}:old"), rtPExpireTime(t, c, "rl:{z}:old")
		got = rtRate(t, c, 3, rtCmd("rl:{z}:old", base+5, "MAX", "1", "MIN", "0", "closed")...)
		require.Equal(t, int64(0), got[rate.FieldGranted])
		require.Equal(t, int64(-1), got[rate.FieldRetryAfter])
		require.Equal(t, int64(2), got[rate.FieldDomainHits])
		require.Equal(t, d, rtDigestValue(t, c, "rl:{z}:old"))
		require.Equal(t, exp, rtPExpireTime(t, c, "rl:{z}:old"))
		// The stored configuration still has its two tiers.
		require.Len(t, rtTierInfo(t, rtInspect(t, c, "rl:{z}:old", base+5)), 2)
	})

	t.Run("NoAT", func(t *testing.T) {
		// Without AT the server's clock is the request time: the key's expiry is the
		// real clock + reset_after (bounded by the clock readings around the call).
		before := rtNow()
		got := rtRate(t, c, 3, rtAny(rtCat([]string{"CHARON.RATE", "rl:{n}:a"}, rtSimple))...)
		after := rtNow()
		require.Equal(t, rtF{1, 1, 5, 1, 1, -1, 0, 0, 0, 0, 1001}, got)
		exp := rtPExpireTime(t, c, "rl:{n}:a")
		require.GreaterOrEqual(t, exp, before+1001)
		require.LessOrEqual(t, exp, after+1001)
	})
}

// TestRateInspect: null for a missing key, the same story under both protocols, AT
// moves the inspection time, and INSPECT is read-only.
func TestRateInspect(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	ctx := context.Background()
	base := rtNow() + 60_000
	c3, c2 := s.Client(t, harness.Protocol(3)), s.Client(t, harness.Protocol(2))
	for _, c := range []*redis.Client{c2, c3} {
		require.ErrorIs(t, c.Do(ctx, "CHARON.INSPECT", "rl:{i}:missing").Err(), redis.Nil)
		require.ErrorIs(t, c.Do(ctx, "CHARON.INSPECT", "rl:{i}:missing", "AT", base).Err(), redis.Nil)
	}
	rtRate(t, c3, 3, rtCmd("rl:{i}:a", base, rtCat([]string{"MAX", "5"}, rtPenalty)...)...)
	last := rtRate(t, c3, 3, rtCmd("rl:{i}:a", base+100, rtCat([]string{"MAX", "7", "GLOBAL", "rl:{i}", "100"}, rtPenalty)...)...)
	// The global log only holds what was asked with GLOBAL.
	require.Equal(t, rtF{7, 2, 50, 7, 12, 7, 1, 0, 0, 0, 20001}, last)

	digest := rtDigest(t, c3)
	m3 := rtInspect(t, c3, "rl:{i}:a", base+100)
	m2 := rtInspect(t, c2, "rl:{i}:a", base+100)
	rtInspectShape(t, c3, 3, "rl:{i}:a", base+100)
	rtInspectShape(t, c2, 2, "rl:{i}:a", base+100)
	for name, m := range map[string]map[string]any{"RESP3": m3, "RESP2": m2} {
		require.Equal(t, "domain", rtStr(t, m, "kind"), name)
		require.Equal(t, last[rate.FieldTier], rtInt(t, m, "tier"), name)
		require.Equal(t, last[rate.FieldDomainHits], rtInt(t, m, "domain_hits"), name)
		require.Equal(t, last[rate.FieldResetAfter], rtInt(t, m, "reset_after"), name)
		require.Equal(t, base+100, rtInt(t, m, "newest"), name)
		require.Equal(t, [][2]int64{{base, 5}, {base + 100, 7}}, rtSecondLog(t, m), name)
		require.NotEmpty(t, rtStr(t, m, "summary"), name)
		ti := rtTierInfo(t, m)
		require.Len(t, ti, 2, name)
		require.Equal(t, "ACTIVE", rtStr(t, ti[0], "state"), name)
		require.Equal(t, "ACTIVE", rtStr(t, ti[1], "state"), name)
		require.Equal(t, int64(5), rtInt(t, ti[0], "hits"), name)
		require.Equal(t, int64(7), rtInt(t, ti[1], "hits"), name)
		require.Equal(t, base+100, rtInt(t, ti[1], "entered_at"), name)
		require.Equal(t, int64(43), rtInt(t, ti[1], "room"), name)
	}
	// Later: tier 2 is in COOLDOWN, nothing ACTIVE, and the second log is empty.
	later := rtInspect(t, c2, "rl:{i}:a", base+6000)
	require.Equal(t, int64(0), rtInt(t, later, "tier"))
	require.Equal(t, int64(0), rtInt(t, later, "domain_hits"))
	require.Empty(t, rtSecondLog(t, later))
	ti := rtTierInfo(t, later)
	require.Equal(t, "INACTIVE", rtStr(t, ti[0], "state"))
	require.Equal(t, "COOLDOWN", rtStr(t, ti[1], "state"))
	require.Equal(t, int64(100+20001-6000), rtInt(t, later, "reset_after"))
	// Before the newest entry, time is the newest entry (rule 8).
	require.Equal(t, base+100, rtInt(t, rtInspect(t, c3, "rl:{i}:a", base), "time"))
	// Without AT: the server's clock, no earlier than the newest entry.
	v, err := c3.Do(ctx, "CHARON.INSPECT", "rl:{i}:a").Result()
	require.NoError(t, err)
	m, err := harness.ReplyMap(v)
	require.NoError(t, err)
	require.GreaterOrEqual(t, rtInt(t, m, "time"), base+100)
	require.Equal(t, digest, rtDigest(t, c3), "INSPECT must not change anything")
	require.Equal(t, base+100+20001, rtPExpireTime(t, c3, "rl:{i}:a"))
}

// TestRateMemory: MEMORY USAGE of a one-tier key stays small: 100 hits at 100
// distinct milliseconds <= 450 bytes, 1000 hits <= 3000 bytes.
func TestRateMemory(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t)
	ctx := context.Background()
	tier := []string{"TIER", "100", "60000", "60000", "0"}
	fill := func(key string, n int, step int64, limit string) int64 {
		t.Helper()
		base := rtNow()
		tiers := append([]string(nil), tier...)
		tiers[1] = limit
		pipe := c.Pipeline()
		var cmds []*redis.Cmd
		for i := range n {
			cmds = append(cmds, pipe.Do(ctx, rtCmd(key, base+int64(i)*step, tiers...)...))
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
		for i, cmd := range cmds {
			require.Equal(t, int64(1), rtFields(t, cmd.Val(), 3)[rate.FieldGranted], "hit %d", i)
		}
		info := rtInspect(t, c, key, base+int64(n-1)*step)
		require.Equal(t, int64(n), rtInt(t, info, "events"), "one event per distinct millisecond")
		require.Equal(t, int64(n), rtInt(t, rtTierInfo(t, info)[0], "hits"), "all hits in the window")
		mem, err := c.MemoryUsage(ctx, key).Result()
		require.NoError(t, err)
		t.Logf("%s: %d hits %d ms apart: %d bytes encoded, MEMORY USAGE %d", key, n, step, rtInt(t, info, "bytes"), mem)
		return mem
	}
	// L=100, W=60000: 100 hits spread over the window.
	require.LessOrEqual(t, fill("rl:{mem}:100", 100, 590, "100"), int64(450))
	// 1000 hits need a limit of at least 1000 to all be granted within the window.
	require.LessOrEqual(t, fill("rl:{mem}:1000", 1000, 59, "1000"), int64(3000))
	require.LessOrEqual(t, fill("rl:{mem}:1000dense", 1000, 1, "1000"), int64(3000))
	// That value is repetitive, so DUMP compresses it (LZF): the parser must undo it.
	payload, d := rtDumpOf(t, c, "rl:{mem}:1000dense")
	require.Less(t, len(payload), len(d.val), "DUMP compressed the value")
	require.NoError(t, rate.Validate(d.val))
	require.Equal(t, rtInt(t, rtInspect(t, c, "rl:{mem}:1000dense", 0), "bytes"), int64(len(d.val)))
	// Hits at the same millisecond are merged: memory does not grow with hits.
	at := rtNow()
	for range 1000 {
		rtRate(t, c, 3, rtCmd("rl:{mem}:same", at, "TIER", "1000000", "60000", "60000", "0")...)
	}
	info := rtInspect(t, c, "rl:{mem}:same", at)
	require.Equal(t, int64(1), rtInt(t, info, "events"))
	require.Equal(t, int64(1000), rtInt(t, info, "domain_hits"))
	mem, err := c.MemoryUsage(ctx, "rl:{mem}:same").Result()
	require.NoError(t, err)
	t.Logf("rl:{mem}:same: 1000 hits at one millisecond: %d bytes encoded, MEMORY USAGE %d", rtInt(t, info, "bytes"), mem)
	require.LessOrEqual(t, mem, int64(120))
}

// TestRateACL: ACL key patterns apply to both keys, with the GLOBAL key needing write
// access too.
func TestRateACL(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	admin := s.Client(t)
	ctx := context.Background()
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "+@all", "~rl:{api}:*").Err())
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "ro", "on", ">pw", "+@all", "~rl:{api}:*", "%R~rl:{api}").Err())
	app := s.Client(t, func(o *redis.Options) { o.Username, o.Password = "app", "pw" })
	ro := s.Client(t, func(o *redis.Options) { o.Username, o.Password = "ro", "pw" })
	now := rtNow()
	// Create the global key as admin so read permissions have something to read.
	rtRate(t, admin, 3, rtCmd("rl:{api}:seed", now, rtCat([]string{"GLOBAL", "rl:{api}", "100"}, rtSimple)...)...)

	noperm := func(c *redis.Client, args ...any) {
		t.Helper()
		digest := rtDigest(t, admin)
		msg := rtErr(t, c, args...)
		require.True(t, strings.HasPrefix(msg, "NOPERM"), "%v: %s", args, msg)
		require.Equal(t, digest, rtDigest(t, admin), "%v: a refused command changed the dataset", args)
	}
	ok := func(c *redis.Client, args ...any) {
		t.Helper()
		require.NoError(t, c.Do(ctx, args...).Err(), "%v", args)
	}
	ok(app, rtCmd("rl:{api}:alice", now, rtSimple...)...)
	ok(app, rtCmd("rl:{api}:alice", now, rtCat([]string{"GLOBAL", "rl:{api}:all", "10"}, rtSimple)...)...)
	noperm(app, rtCmd("rl:{api}:alice", now, rtCat([]string{"GLOBAL", "rl:{api}", "10"}, rtSimple)...)...)
	noperm(app, rtCmd("rl:{api}:alice", now, rtCat(rtSimple, []string{"global", "rl:{api}", "10"})...)...)
	noperm(app, rtCmd("rl:{api}:alice", now, rtCat([]string{"DRYRUN", "GLOBAL", "other", "10"}, rtSimple)...)...)
	noperm(app, rtCmd("other:alice", now, rtSimple...)...)
	noperm(app, "CHARON.INSPECT", "rl:{api}")
	ok(app, "CHARON.INSPECT", "rl:{api}:alice")
	// Read-only access to the global key: INSPECT yes, CHARON.RATE (which writes it) no.
	ok(ro, "CHARON.INSPECT", "rl:{api}")
	noperm(ro, rtCmd("rl:{api}:bob", now, rtCat([]string{"GLOBAL", "rl:{api}", "10"}, rtSimple)...)...)
	ok(ro, rtCmd("rl:{api}:bob", now, rtSimple...)...)
}
