package rate

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: ParseRequest never panics; errors are *ArgError with a one-line reply
// text; accepted requests respect every bound and point at the right arguments.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"MAX 3 MIN 1 TIER 5 1000 1000 0",
		"max 10 hard 5 global {api} 100 at 12345 dryrun TIER 5 1000 1000 0 TIER 50 5000 5000 15000 SKIPPABLE",
		"TIER 1 1 1 0 SKIPPABLE SKIPPABLE",
		"MIN 5 MAX 4",
		"AT 9007199254740993",
		"GLOBAL",
		"FOO\r\nBAR",
		"MAX 3 CLOSED",
		"CLOSED TIER 1 1 1 0",
		"GLOBAL g 5 LIMITS 10/1s,50/5s/5s/15s?",
		"LIMITS 10/1s TIER 1 1 1 0",
		"AT 5 CLOCK 9 LIMITS 1/1d/1h/10m",
		"CAP 5 500 CAP 100 60000 HARD 3 LIMITS 10/1s",
		"LIMITS 10/1s,50/5s/5s/15s;1000/1h,10000/1d GLOBAL g 5000/1s,2000000/1d",
		"ONCE abc GLOBAL g 1/1s,2/1ms LIMITS 1/1s;3/2s",
		"CAP 1 1000 HARD 1 LIMITS 1/1s",
		"ONCE ONCE LIMITS 1/1s",
		"GLOBAL g 5/1s,6/1 LIMITS 1/1s",
	} {
		f.Add([]byte(strings.ReplaceAll(s, " ", "\x00")))
	}
	var p Parser
	f.Fuzz(func(t *testing.T, data []byte) {
		args := bytes.Split(data, []byte{0})
		var req, cached Request
		err := ParseRequest(args, &req)
		// The LIMITS cache never changes an answer.
		if cerr := p.Parse(args, &cached); (err == nil) != (cerr == nil) || err != nil && err.Error() != cerr.Error() || err == nil && req != cached {
			t.Fatalf("Parser: %+v %v; ParseRequest: %+v %v", cached, cerr, req, err)
		}
		if err != nil {
			var ae *ArgError
			if !errors.As(err, &ae) {
				t.Fatalf("error of type %T", err)
			}
			msg := err.Error()
			if msg != ae.Arg+": "+ae.Reason || ae.Arg == "" || strings.ContainsAny(msg, "\r\n") || len(msg) > 200 {
				t.Fatalf("bad reply text %q", msg)
			}
			return
		}
		if req.Max < 1 || req.Max > MaxMax || req.Min < 0 || req.Min > req.Max || req.NTiers < 0 || req.NTiers > MaxTiers {
			t.Fatalf("bounds %+v", req)
		}
		// Caps: in bounds, no window twice, no 1000 ms window stored (it is HARD or
		// GLOBAL's limit), at most 8 per key with HARD (GLOBAL's limit) counted.
		capsOK := func(caps []Cap, one bool) bool {
			seen := map[int64]bool{}
			for _, c := range caps {
				if c.Limit < 0 || c.Limit > MaxCount || c.Window < 1 || c.Window > MaxDuration || c.Window == 1000 || seen[c.Window] {
					return false
				}
				seen[c.Window] = true
			}
			n := len(caps)
			if one {
				n++
			}
			return n <= MaxCaps
		}
		if !capsOK(req.Caps[:req.NCaps], req.HasHard) || !capsOK(req.GlobalCaps[:req.NGlobalCaps], req.HasGlobalLimit) ||
			!req.HasGlobal && (req.HasGlobalLimit || req.NGlobalCaps > 0) || req.HasGlobal && !req.HasGlobalLimit && req.NGlobalCaps == 0 {
			t.Fatalf("caps %+v", req)
		}
		if req.HasHard && (req.Hard < 0 || req.Hard > MaxCount) || req.HasGlobal && (req.GlobalLimit < 0 || req.GlobalLimit > MaxCount) {
			t.Fatalf("caps %+v", req)
		}
		for _, tc := range req.Tiers[:req.NTiers] {
			if tc.Limit < 0 || tc.Limit > MaxCount || tc.Window < 1 || tc.Window > MaxDuration || tc.Active < 1 ||
				tc.Active > MaxDuration || tc.Cooldown < 0 || tc.Cooldown > MaxDuration {
				t.Fatalf("tier %+v", tc)
			}
		}
		if req.HasAt != (req.AtIdx >= 0) || req.HasAt && (!eqFold(args[req.AtIdx], "AT") || req.At < 0 || req.At > MaxAt) {
			t.Fatalf("AT %+v", req)
		}
		if req.HasGlobal != (req.GlobalKeyIdx >= 1) || req.HasGlobal && !eqFold(args[req.GlobalKeyIdx-1], "GLOBAL") {
			t.Fatalf("GLOBAL %+v", req)
		}
		if req.HasClock != (req.ClockIdx >= 0) || req.HasClock && !eqFold(args[req.ClockIdx], "CLOCK") {
			t.Fatalf("CLOCK %+v", req)
		}
		// Rule 9: tiers, or CLOSED, never both, never neither.
		if req.Closed == (req.NTiers > 0) {
			t.Fatalf("CLOSED %v with %d tiers", req.Closed, req.NTiers)
		}
	})
}

// fuzzRequests are the requests FuzzDecode runs against any value it accepts.
func fuzzRequests(t *testing.T) []*Request {
	var out []*Request
	for _, s := range []string{
		"MAX 1 TIER 5 1000 1000 0",
		"MAX 7 MIN 0 HARD 20 TIER 5 1000 1000 0 TIER 50 5000 5000 15000 SKIPPABLE TIER 1 15000 15000 0",
		"MAX 3 GLOBAL g 10 TIER 0 1 1 0 TIER 2 100 100 100",
		"MAX 1000000000000 MIN 0 TIER 1000000000000 315360000000 315360000000 315360000000 TIER 1000000000000 1 1 0",
		"MAX 1 CLOSED",
	} {
		var req Request
		if err := ParseRequest(words(s), &req); err != nil {
			t.Fatal(err)
		}
		out = append(out, &req)
	}
	return out
}

// FuzzDecode: Validate, Decode, Inspect and Apply never panic on any bytes; a value
// Validate accepts is canonical (it re-encodes to itself) and Apply on it works and
// writes valid values.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{1, 1, 0xe8, 0x07, 1, 5, 100, 100, 0, 2, 0, 1, 0, 0})
	f.Add([]byte{1, 2, 0xe8, 0x07, 1, 0, 16 << 1})
	f.Add([]byte{1, 1, 0xe8, 0x07, 3, 5, 100, 100, 0, 2, 0, 0, 100, 100, 0, 0, 50, 100, 100, 9, 3, 10, 2, 0, 2<<1 | 1, 1, 0, 3})
	// Version 3 values (ONCE tokens, exact and bucketed caps, a global key with caps)
	// and two damaged ones. They are seeds here rather than in the FuzzDecode corpus,
	// which the golden trace hashes.
	for _, v := range readCorpusDir(f, filepath.Join("testdata", "fuzz-v3")) {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		verr := Validate(data)
		v, derr := Decode(data)
		if (verr == nil) != (derr == nil) {
			t.Fatalf("Validate %v, Decode %v", verr, derr)
		}
		reqs := fuzzRequests(t)
		if verr != nil {
			if !errors.Is(verr, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", verr)
			}
			if len(data) > 0 {
				// Values reach Apply only through the C check, which refuses what
				// Validate refuses (rdb_load, RESTORE, CHARON.LOADVALUE); Apply reads
				// O(T + C) of a value, not all of it, so it need not find every damage:
				// it must not panic, and an error it returns says what is wrong (a
				// damaged value whose header names the other kind may report that).
				if _, _, _, err := Apply(data, nil, reqs[0], 0, nil, nil); err != nil && !(errors.Is(err, ErrCorrupt) || errors.Is(err, ErrWrongKind)) {
					t.Fatalf("Apply on a corrupt value: %v", err)
				}
			}
			if _, err := Inspect(data, 0); err == nil {
				t.Fatal("Inspect accepted a corrupt value")
			}
			return
		}
		enc, err := Encode(nil, v)
		if err != nil {
			t.Fatalf("does not re-encode: %v\n%x", err, data)
		}
		if v2, err := Decode(enc); err != nil || !v2.equal(v) {
			t.Fatalf("re-encoding differs: %v\n%x\n%x", err, data, enc)
		}
		for _, at := range []int64{0, v.Last, v.Last + 1, v.Last + 999, v.Last + 1001, v.Last + 70000, MaxAt} {
			if _, err := Inspect(data, at); err != nil {
				t.Fatal(err)
			}
			for _, req := range reqs {
				cur, gcur := data, []byte(nil)
				if v.Kind == KindGlobal {
					if !req.HasGlobal {
						continue
					}
					cur, gcur = nil, data
				}
				before := bytes.Clone(data)
				res, nv, ngv, err := Apply(cur, gcur, req, at, nil, nil)
				if err != nil {
					t.Fatalf("Apply at %d: %v", at, err)
				}
				if !bytes.Equal(before, data) {
					t.Fatal("Apply modified its input")
				}
				if res.T < v.Last {
					t.Fatalf("time went back: %d < %d", res.T, v.Last)
				}
				if res.Write {
					if err := Validate(nv); err != nil {
						t.Fatalf("Apply wrote an invalid value: %v", err)
					}
					if ngv != nil {
						if err := Validate(ngv); err != nil {
							t.Fatalf("Apply wrote an invalid global value: %v", err)
						}
					}
				}
			}
		}
	})
}

// fuzzBytes reads a fuzz input as numbers, yielding zeros once it runs out.
type fuzzBytes struct{ b []byte }

func (r *fuzzBytes) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fuzzBytes) u16() int64 { return int64(r.byte())<<8 | int64(r.byte()) }

// FuzzApply drives random request sequences on two keys sharing a global key and
// checks the invariants: a grant is within [max(MIN,1), MAX]; no tier ever holds more
// than L hits in its window; HARD and GLOBAL hold over every 1000 ms; rejections and
// DRYRUN change nothing; the effective time never goes back; retry_after is exact; and
// every reply equals the reference model's.
func FuzzApply(f *testing.F) {
	f.Add([]byte{2, 5, 0x03, 0xe8, 0x03, 0xe8, 0, 0, 0, 50, 0x13, 0x88, 0x13, 0x88, 0x3a, 0x98, 0, 0, 0,
		0, 0, 10, 5, 0, 0, 0, 0, 10, 5, 0, 0, 0, 1, 1, 1, 0, 0, 4, 0, 200, 1, 1, 0})
	f.Add([]byte{1, 1, 0, 1, 0, 1, 0, 0, 0, 3, 9, 4, 20, 0, 1, 3, 3, 1, 0, 0, 0, 3, 3, 1, 0, 2, 0, 0, 2, 3, 4, 5})
	f.Add([]byte{3, 5, 0x03, 0xe8, 0x03, 0xe8, 0, 1, 1, 0x13, 0x88, 0x00, 0x10, 0x3a, 0x98, 1, 1, 0x3a, 0x98, 0x3a, 0x98, 0, 0, 0, 7, 12,
		1, 0, 10, 6, 0, 1, 0, 0, 10, 3, 0, 1, 0x80, 0x01, 1, 2, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzBytes{data}
		n := 1 + int(r.byte()%4)
		tiers := make([]Tier, n)
		var sumL int64
		for i := range tiers {
			tiers[i] = Tier{Limit: int64(r.byte() % 12), Window: 1 + r.u16()%4000, Active: 1 + r.u16()%4000,
				Cooldown: r.u16() % 4000, Skippable: r.byte()&1 == 1}
			sumL += tiers[i].Limit
		}
		hard, glimit := int64(-1), int64(-1)
		if c := r.byte(); c&1 == 1 {
			hard = int64(c>>1) % (sumL + 3)
		}
		if c := r.byte(); c&1 == 1 {
			glimit = int64(c>>1) % (2*sumL + 3)
		}
		// Caps (rule 10) from a menu, exact and bucketed; a request may leave some out
		// (dropping them from the key) and name them again later.
		domainMenu := []Cap{{3, 200}, {5, 2000}, {8, 7000}}
		globalMenu := []Cap{{4, 300}, {9, 5000}}
		capBits := r.byte()
		ref := map[string]*refKey{"a": newRefKey(n), "b": newRefKey(n)}
		g := &refGlobal{}
		vals := map[string][]byte{}
		lastT := map[string]int64{}
		now := int64(1_000_000)
		var out, gout []byte
		for steps := 0; len(r.b) > 0 && steps < 200; steps++ {
			op := r.byte()
			dt := r.u16() % 5000
			if op&1 == 1 {
				now -= dt / 4 // a clock that steps back
			} else {
				now += dt
			}
			var req Request
			req.Max = 1 + int64(r.byte())%(sumL+2)
			req.Min = int64(r.byte()) % (req.Max + 1)
			req.DryRun = op&2 != 0
			req.HasHard, req.Hard = hard >= 0, hard
			req.HasGlobal, req.HasGlobalLimit, req.GlobalLimit = glimit >= 0, glimit >= 0, glimit
			req.NTiers = n
			copy(req.Tiers[:], tiers)
			bits := capBits
			if op&8 != 0 {
				bits &= r.byte() // this request names fewer caps
			}
			for i, c := range domainMenu {
				if bits&(1<<i) != 0 && (!req.HasHard || req.NCaps < MaxCaps-1) {
					req.Caps[req.NCaps] = c
					req.NCaps++
				}
			}
			if req.HasGlobal {
				for i, c := range globalMenu {
					if bits&(1<<(4+i)) != 0 {
						req.GlobalCaps[req.NGlobalCaps] = c
						req.NGlobalCaps++
					}
				}
			}
			if op&16 != 0 {
				// ONCE with a token from a small pool, so that replays happen.
				req.HasOnce, req.Once = true, OnceHash([]byte{'t', r.byte() % 4})
			}
			key := "a"
			if op&4 != 0 {
				key = "b"
			}
			cur, gcur := vals[key], vals["g"]
			if !req.HasGlobal {
				gcur = nil
			}
			curC, gcurC := bytes.Clone(cur), bytes.Clone(gcur)
			res, nv, ngv, err := Apply(cur, gcur, &req, now, out, gout)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(cur, curC) || !bytes.Equal(gcur, gcurC) {
				t.Fatal("input modified")
			}
			want := refRequest(ref[key], g, &req, now, false)
			want.fields[FieldRetryAfter] = res.Fields[FieldRetryAfter]
			if res.Fields != want.fields || res.Granted != want.granted || res.T != want.t {
				t.Fatalf("step %d: got %v %v T=%d, model %v %v T=%d", steps, res.Fields, res.Granted, res.T, want.fields, want.granted, want.t)
			}
			if res.T < lastT[key] || req.HasGlobal && res.T < lastT["g"] {
				t.Fatalf("time went back: %d", res.T)
			}
			// A replay answers with the remembered reply, made for the first request.
			if got := res.Fields[FieldGranted]; !res.Replay && (res.Granted && (got < max(req.Min, 1) || got > req.Max) || !res.Granted && got != 0) {
				t.Fatalf("granted %d outside [max(%d,1), %d]", got, req.Min, req.Max)
			}
			if ra := res.Fields[FieldRetryAfter]; !res.Granted && ra > 0 {
				probe := req
				probe.DryRun = true
				for _, d := range []int64{ra, ra - 1} {
					if d > 0 {
						pr, _, _, _ := Apply(cur, gcur, &probe, res.T+d, nil, nil)
						if pr.Granted != (d == ra) {
							t.Fatalf("retry_after %d wrong at +%d", ra, d)
						}
					}
				}
			}
			if !res.Write {
				if nv != nil || ngv != nil || (res.Granted && !req.DryRun && !res.Replay) {
					t.Fatal("rejection or DRYRUN returned values")
				}
				continue
			}
			lastT[key] = res.T
			vals[key] = bytes.Clone(nv)
			if req.HasGlobal {
				lastT["g"] = res.T
				vals["g"] = bytes.Clone(ngv)
			}
			out, gout = nv, ngv
			checkLimits(t, vals[key], vals["g"], tiers, hard, glimit, res.T)
		}
	})
}

// checkLimits reads a stored value back and checks that no tier holds more than its
// limit in its window and that the per-second caps hold.
func checkLimits(t *testing.T, val, gval []byte, tiers []Tier, hard, glimit int64, at int64) {
	t.Helper()
	v, err := Decode(val)
	if err != nil {
		t.Fatal(err)
	}
	var second int64
	for j, tc := range tiers {
		var hits int64
		st := v.Tiers[j]
		for _, e := range v.Events {
			if e.At >= at-tc.Window && (j == 0 || e.At >= st.EnteredAt) {
				hits += e.Counts[j]
			}
		}
		if hits > tc.Limit {
			t.Fatalf("tier %d holds %d hits in its window, limit %d", j+1, hits, tc.Limit)
		}
	}
	for _, e := range v.Events {
		if e.At >= at-1000 {
			second += e.Total()
		}
	}
	if hard >= 0 && second > hard {
		t.Fatalf("%d hits in the last second, HARD %d", second, hard)
	}
	if glimit >= 0 && gval != nil {
		gv, err := Decode(gval)
		if err != nil {
			t.Fatal(err)
		}
		var gs int64
		for _, e := range gv.Events {
			if e.At >= at-1000 {
				gs += e.Total()
			}
		}
		if gs > glimit {
			t.Fatalf("%d global hits in the last second, GLOBAL %d", gs, glimit)
		}
	}
}
