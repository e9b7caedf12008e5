package rate

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The golden trace pins Apply's observable behaviour byte for byte: a deterministic
// random trace (many configurations, configuration changes, huge and tiny limits,
// windows and time steps, clocks that step back, HARD, GLOBAL, DRYRUN, MAX far above
// the limits) plus every stored FuzzDecode corpus value (version 1 and 2, corrupt
// ones too) is run through Apply and ApplyInPlace, and every result, error text,
// stored byte and INSPECT answer goes into one SHA-256. The hash was recorded with
// the engine before its hot-path optimizations (commit 0b1d867): an optimization that
// changes any reply or any stored byte changes the hash. Version 3 of the value changed
// one line of 124,442, the error text of a corrupt value whose version byte is 3 (it was
// "unknown encoding version 3"); GOLDEN_DUMP=file writes the hashed lines, for a diff.
const goldenTraceSHA256 = "249c2a4034924f6568da625cec2b950b875f9d041e2dd4b2a8531813a2b4f9fa"

// goldenDur draws a duration from one of several scales, so that windows of a few ms
// and of ten years both occur.
func goldenDur(rng *rand.Rand, lo int64) int64 {
	switch rng.IntN(5) {
	case 0:
		return lo + rng.Int64N(20)
	case 1, 2:
		return lo + rng.Int64N(3000)
	case 3:
		return lo + rng.Int64N(200_000)
	}
	return lo + rng.Int64N(MaxDuration-lo+1)
}

func goldenCount(rng *rand.Rand, lo int64) int64 {
	switch rng.IntN(6) {
	case 0, 1, 2:
		return lo + rng.Int64N(12)
	case 3, 4:
		return lo + rng.Int64N(1200)
	}
	return lo + rng.Int64N(MaxCount-lo+1)
}

func goldenConfig(rng *rand.Rand) []Tier {
	n := 1 + rng.IntN(3)
	switch rng.IntN(10) {
	case 0:
		n = 1 + rng.IntN(MaxTiers)
	case 1, 2, 3:
		n = 1 + rng.IntN(6)
	}
	tiers := make([]Tier, n)
	for i := range tiers {
		tiers[i] = Tier{Limit: goldenCount(rng, 0), Window: goldenDur(rng, 1), Active: goldenDur(rng, 1),
			Cooldown: goldenDur(rng, 0), Skippable: rng.IntN(3) == 0}
		if rng.IntN(3) == 0 {
			tiers[i].Cooldown = 0
		}
	}
	return tiers
}

// goldenStep is the time between two requests: mostly the server's common gaps, at
// times the same ms, a step back or a huge jump.
func goldenStep(rng *rand.Rand) int64 {
	switch r := rng.IntN(40); {
	case r < 6:
		return 0
	case r < 16:
		return rng.Int64N(64)
	case r < 30:
		return rng.Int64N(1500)
	case r < 34:
		return rng.Int64N(40_000)
	case r < 36:
		return -rng.Int64N(800)
	case r < 39:
		return rng.Int64N(MaxDuration)
	}
	return rng.Int64N(MaxAt / 4)
}

// goldenApply runs one request both ways, checks they agree and hashes the outcome.
func goldenApply(t *testing.T, h hash.Hash, rng *rand.Rand, cur, gcur []byte, req *Request, now int64) (Result, []byte, []byte, error) {
	t.Helper()
	var out, gout []byte
	switch rng.IntN(3) {
	case 1:
		out, gout = make([]byte, 0, 8), make([]byte, 0, 8)
	case 2:
		out, gout = make([]byte, 0, 4096), make([]byte, 0, 4096)
	}
	curC, gcurC := bytes.Clone(cur), bytes.Clone(gcur)
	res, nv, ngv, err := Apply(cur, gcur, req, now, out, gout)
	if !bytes.Equal(cur, curC) || !bytes.Equal(gcur, gcurC) {
		t.Fatal("Apply modified its input")
	}
	spare := []int{0, 1, 3, 16, 64, 1024}
	ic := append(make([]byte, 0, len(cur)+spare[rng.IntN(len(spare))]), cur...)
	var gc []byte
	if gcur != nil {
		gc = append(make([]byte, 0, len(gcur)+spare[rng.IntN(len(spare))]), gcur...)
	}
	ires, inv, ingv, ierr := ApplyInPlace(ic, gc, req, now, nil, nil)
	if fmt.Sprint(ierr) != fmt.Sprint(err) || ires != res || !bytes.Equal(inv, nv) || !bytes.Equal(ingv, ngv) {
		t.Fatalf("ApplyInPlace differs from Apply: %v / %v\n%x\n%x", ierr, err, inv, nv)
	}
	// Result's fields as %+v printed them before Replay existed (a replay is only
	// possible with ONCE, which the trace does not send).
	fmt.Fprintf(h, "%v|{Fields:%v Granted:%v Write:%v T:%v ExpireAt:%v GlobalExpireAt:%v}|%x|%x|%v\n", err,
		res.Fields, res.Granted, res.Write, res.T, res.ExpireAt, res.GlobalExpireAt, nv, ngv, nv == nil)
	return res, nv, ngv, err
}

func goldenInspect(h hash.Hash, val []byte, at int64) {
	if len(val) == 0 {
		return
	}
	info, err := Inspect(val, at)
	if err != nil {
		fmt.Fprintf(h, "inspect %v\n", err)
		return
	}
	// Printed as before Info had caps and tokens (the trace sends neither); a value
	// that has some prints them after.
	caps, toks := info.Caps, info.Tokens
	info.Caps, info.Tokens = nil, nil
	s := fmt.Sprintf("%+v", *info)
	s = s[:strings.LastIndex(s, " Caps:")] + "}"
	if len(caps) > 0 || len(toks) > 0 {
		s += fmt.Sprintf(" caps %+v tokens %+v", caps, toks)
	}
	fmt.Fprintf(h, "inspect %s\n", s)
}

func goldenTrace(t *testing.T, h hash.Hash, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x601de))
	keys := []string{"a", "b", "c"}
	vals := map[string][]byte{}
	tiers := goldenConfig(rng)
	hard, glimit := int64(-1), int64(-1)
	now := rng.Int64N(MaxAt / 2)
	if rng.IntN(4) == 0 {
		now = rng.Int64N(5000)
	}
	for step := 0; step < steps; step++ {
		if rng.IntN(40) == 0 {
			tiers = goldenConfig(rng)
		}
		if rng.IntN(30) == 0 {
			hard, glimit = -1, -1
			if rng.IntN(2) == 0 {
				hard = goldenCount(rng, 0)
			}
			if rng.IntN(2) == 0 {
				glimit = goldenCount(rng, 0)
			}
		}
		now += goldenStep(rng)
		var req Request
		req.NTiers = copy(req.Tiers[:], tiers)
		req.Max = 1
		switch rng.IntN(6) {
		case 0:
			req.Max = goldenCount(rng, 1)
		case 1:
			req.Max = 1 + rng.Int64N(30)
		}
		req.Min = req.Max
		if rng.IntN(3) == 0 {
			req.Min = rng.Int64N(req.Max + 1)
		}
		req.HasHard, req.Hard = hard >= 0 && rng.IntN(4) > 0, max(hard, 0)
		req.HasGlobal, req.GlobalLimit = glimit >= 0 && rng.IntN(4) > 0, max(glimit, 0)
		req.HasGlobalLimit = req.HasGlobal
		req.DryRun = rng.IntN(12) == 0
		key := keys[rng.IntN(len(keys))]
		cur := vals[key]
		var gcur []byte
		if req.HasGlobal {
			gcur = vals["g"]
		}
		at := now
		if rng.IntN(50) == 0 {
			at = -rng.Int64N(1000) // clamped to 0
		}
		res, nv, ngv, err := goldenApply(t, h, rng, cur, gcur, &req, at)
		if err != nil {
			t.Fatalf("seed %d step %d: %v", seed, step, err)
		}
		if res.Write {
			vals[key] = bytes.Clone(nv)
			if req.HasGlobal {
				vals["g"] = bytes.Clone(ngv)
			}
		}
		if rng.IntN(10) == 0 {
			goldenInspect(h, vals[key], res.T+rng.Int64N(3000))
		}
		if v := vals[key]; len(v) > 0 && rng.IntN(4) == 0 {
			// A damaged copy, mostly in the header at the end: the error texts (or
			// the answers, when the damage still decodes) are pinned too.
			bad := bytes.Clone(v)
			i := len(bad) - 1 - rng.IntN(min(len(bad), 40))
			if rng.IntN(4) == 0 {
				i = rng.IntN(len(bad))
			}
			bad[i] ^= byte(1 + rng.IntN(255))
			goldenApply(t, h, rng, bad, nil, &req, res.T+rng.Int64N(2000))
		}
	}
}

// readCorpus reads the values of a stored fuzz corpus directory.
func readCorpus(t testing.TB, dir string) [][]byte {
	return readCorpusDir(t, filepath.Join("testdata", "fuzz", dir))
}

// readCorpusDir reads the values of the fuzz corpus files in dir.
func readCorpusDir(t testing.TB, dir string) [][]byte {
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: unexpected corpus file", f)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, []byte(s))
	}
	return out
}

func TestGoldenTrace(t *testing.T) {
	var h hash.Hash = sha256.New()
	if f := os.Getenv("GOLDEN_DUMP"); f != "" {
		w, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		h = dumpHash{h, w}
	}
	seeds := 300
	for seed := uint64(0); seed < uint64(seeds); seed++ {
		goldenTrace(t, h, seed, 300)
	}
	// Stored values of every shape the fuzzer found, corrupt ones included (their
	// error texts are replies too).
	rng := rand.New(rand.NewPCG(7, 7))
	corpus := readCorpus(t, "FuzzDecode")
	if len(corpus) == 0 {
		t.Fatal("no FuzzDecode corpus")
	}
	for _, data := range corpus {
		for _, req := range fuzzRequests(t) {
			for _, at := range []int64{0, 1000, 1_000_000, MaxAt} {
				r := *req
				r.HasGlobal = false
				goldenApply(t, h, rng, data, nil, &r, at)
				goldenApply(t, h, rng, nil, data, req, at)
				goldenInspect(h, data, at)
			}
		}
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != goldenTraceSHA256 {
		t.Fatalf("golden trace hash %s, want %s: a reply or a stored byte changed", got, goldenTraceSHA256)
	}
}

type dumpHash struct {
	hash.Hash
	w *os.File
}

func (d dumpHash) Write(p []byte) (int, error) {
	if _, err := d.w.Write(p); err != nil {
		return 0, err
	}
	return d.Hash.Write(p)
}
