package rate

import (
	"bytes"
	"strconv"
	"testing"
)

// checkWritten is what every written value must pass: the validator (the same rules as
// the C check that rdb_load, RESTORE and CHARON.LOADVALUE run), a decode that encodes
// back to an equal value, and INSPECT.
func checkWritten(t *testing.T, what string, val []byte) {
	t.Helper()
	if err := Validate(val); err != nil {
		t.Fatalf("%s: wrote a value the module refuses: %v\n%x", what, err, val)
	}
	v, err := Decode(val)
	if err != nil {
		t.Fatalf("%s: Decode: %v", what, err)
	}
	enc, err := Encode(nil, v)
	if err != nil {
		t.Fatalf("%s: Encode: %v", what, err)
	}
	if v2, err := Decode(enc); err != nil || !v2.equal(v) {
		t.Fatalf("%s: re-encoding differs: %v", what, err)
	}
	if _, err := Inspect(val, v.Last); err != nil {
		t.Fatalf("%s: Inspect: %v", what, err)
	}
}

// The fuzzers' reproduction: hits merged at one millisecond saturate a count at 2^46
// (here the detached slot, fed 10^12 hits a round by a tier that the next request
// drops), while the second log's running sum kept the uncapped total. After round 71
// the key answered "corrupt value" and a server holding it refused to start. Each
// written value must now load, and the key keep answering.
func TestSaturationKeepsValuesLoadable(t *testing.T) {
	const at = 4102444800000
	var val []byte
	for r := 1; r <= 100; r++ {
		for _, s := range []string{
			"MAX 1000000000000 MIN 1 TIER " + strconv.Itoa(r-1) + " 1000 1000 0 TIER 1000000000000 1000 1000 0",
			"MAX 1 TIER " + strconv.Itoa(r) + " 1000 1000 0",
		} {
			var req Request
			if err := ParseRequest(words(s), &req); err != nil {
				t.Fatal(err)
			}
			res, nv, _, err := Apply(val, nil, &req, at, nil, nil)
			if err != nil {
				t.Fatalf("round %d %q: %v", r, s, err)
			}
			if !res.Granted {
				t.Fatalf("round %d %q: rejected %v", r, s, res.Fields)
			}
			checkWritten(t, "round "+strconv.Itoa(r), nv)
			val = bytes.Clone(nv)
		}
	}
	v, _ := Decode(val)
	if got := v.Events[len(v.Events)-1].Counts[Detached]; got != MaxStoredCount {
		t.Fatalf("the detached count is %d, want it saturated at %d", got, MaxStoredCount)
	}
}

// FuzzSaturate drives grants toward the stored counts' bound: limits and MAX near
// 10^12, most requests at the same millisecond, tier counts and tiers changing from
// one request to the next (which moves hits into the detached slot), GLOBAL shared by
// two keys. Every value written must load (checkWritten) and the keys keep answering.
func FuzzSaturate(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add(bytes.Repeat([]byte{0x00, 0x00, 0x03}, 100))
	f.Add(bytes.Repeat([]byte{0x41, 0x02, 0x80, 0xff, 0x13}, 40))
	f.Add(bytes.Repeat([]byte{0x07, 0x00, 0xfe, 0x31, 0x0c, 0x99}, 60))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzBytes{data}
		vals := map[string][]byte{}
		now := int64(4102444800000)
		big := func() int64 {
			switch c := r.byte(); c % 4 {
			case 0:
				return MaxCount
			case 1:
				return MaxCount - int64(r.u16())
			case 2:
				return int64(c) * 3_900_000_000
			default:
				return int64(r.u16())
			}
		}
		for steps := 0; len(r.b) > 0 && steps < 400; steps++ {
			op := r.byte()
			if op&0x30 == 0x30 {
				now += r.u16() % 1500
			}
			var req Request
			req.Min = 1
			switch op % 8 {
			case 0, 1, 2:
				// Pump: tier 1 gives nothing, tier 2 takes up to 10^12 hits ...
				req.NTiers, req.Max = 2, max(1, big())
				req.Tiers[0] = Tier{Limit: 0, Window: 1000, Active: 1000}
				req.Tiers[1] = Tier{Limit: MaxCount, Window: 1000, Active: 1000}
			case 3, 4:
				// ... and a request without tier 2 moves them to the detached slot.
				req.NTiers, req.Max = 1, 1+int64(op>>6)
				req.Tiers[0] = Tier{Limit: MaxCount, Window: 1000, Active: 1000}
			default:
				req.NTiers = 1 + int(op%4)
				for j := 0; j < req.NTiers; j++ {
					w := 1 + r.u16()%3000
					req.Tiers[j] = Tier{Limit: big(), Window: w, Active: w + r.u16()%100, Cooldown: r.u16() % 50, Skippable: op&0x40 != 0}
				}
				req.Max = max(1, big())
			}
			if op&0x08 != 0 && op%8 > 4 {
				req.HasHard, req.Hard = true, big()
			}
			if op&0x80 != 0 {
				req.HasGlobal, req.GlobalLimit = true, big()
			}
			key := "a"
			if op&0x04 != 0 {
				key = "b"
			}
			gcur := vals["g"]
			if !req.HasGlobal {
				gcur = nil
			}
			res, nv, ngv, err := Apply(vals[key], gcur, &req, now, nil, nil)
			if err != nil {
				t.Fatalf("step %d: %v", steps, err)
			}
			if !res.Write {
				continue
			}
			checkWritten(t, "key "+key, nv)
			vals[key] = bytes.Clone(nv)
			if req.HasGlobal {
				checkWritten(t, "global key", ngv)
				vals["g"] = bytes.Clone(ngv)
			}
		}
	})
}
