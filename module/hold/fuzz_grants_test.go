package hold

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/charon-redis/charon/cshim/holdcheck"
)

// What the module writes, it loads: FuzzGrants drives requests toward the bounds
// (counts near 10^12, times near 2^53, leases near 10 years, many holds) through
// Parse, Plan and Commit as the glue runs them, and checks every value written: its
// persisted form passes Go's Validate and C's charon_hold_check (the rdb_load and
// RESTORE rules), Build and C's build lay it out byte for byte alike, and both
// serialize it back to the same bytes.

// fuzzCounts are the counts the fuzzer picks from (then nudged by a byte).
var fuzzCounts = [...]int64{1, 2, 3, 5, 1000, MaxCount / 2, MaxCount - 1, MaxCount}

// fuzzTimes are the time steps it picks from.
var fuzzTimes = [...]int64{0, 1, 999, 60_000, MaxDuration - 1, MaxDuration, MaxAt / 2, MaxAt - 1, MaxAt}

type fuzzDriver struct {
	t    *testing.T
	st   *store
	data []byte
	now  int64
	ids  []uint64 // holds granted so far (some released or expired)
	// once models what each key remembers: key|token -> the grant's reply and time.
	onces map[string]onceRecord
}

type onceRecord struct {
	cmd Cmd
	res Result
}

func (d *fuzzDriver) byte() byte {
	if len(d.data) == 0 {
		return 0
	}
	b := d.data[0]
	d.data = d.data[1:]
	return b
}

func (d *fuzzDriver) count() int64 {
	b := d.byte()
	c := fuzzCounts[int(b)%len(fuzzCounts)]
	if b&0x80 != 0 && c > 1 {
		c -= int64(d.byte() % 3)
	}
	return c
}

func (d *fuzzDriver) duration() int64 {
	b := d.byte()
	switch b % 4 {
	case 0:
		return 1 + int64(d.byte())
	case 1:
		return DefaultLease
	case 2:
		return MaxDuration - int64(d.byte())
	default:
		return MaxDuration
	}
}

func (d *fuzzDriver) hold() string {
	if len(d.ids) == 0 || d.byte()%8 == 0 {
		return "00000000000000ff"
	}
	return hex(d.ids[int(d.byte())%len(d.ids)])
}

// once returns a ONCE clause with one of a few tokens (so that replays happen), or "".
func (d *fuzzDriver) once() string {
	b := d.byte()
	if b&4 == 0 {
		return ""
	}
	return " ONCE k" + strconv.Itoa(int(b>>3)%4)
}

// clauses returns the key clauses (GLOBAL, GROUP) of a request; withLimits for RESERVE.
func (d *fuzzDriver) clauses(withLimits bool) (opts, group string) {
	b := d.byte()
	if b&1 != 0 {
		opts = " GLOBAL g"
		if withLimits {
			opts += " " + strconv.FormatInt(d.count(), 10)
		}
	}
	if b&2 != 0 {
		group = " GROUP p"
		if withLimits {
			group += " " + strconv.FormatInt(d.count(), 10)
		}
	}
	return opts, group
}

// step runs one request chosen by the next bytes.
func (d *fuzzDriver) step() {
	op := d.byte()
	switch op % 8 {
	case 0: // the clock moves
		d.now = min(d.now+fuzzTimes[int(d.byte())%len(fuzzTimes)], MaxAt)
		return
	case 1: // a burst of small grants: many holds (checked once, at its end)
		n := 1 + int(d.byte())*4
		for i := 0; i < n; i++ {
			d.run("RESERVE d MAX 1 LIMIT "+strconv.Itoa(MaxHolds)+" LEASE "+strconv.FormatInt(1+int64(i%7)*1000, 10), false)
		}
		if v := d.st.keys["d"]; v != nil {
			checkWritten(d.t, "a burst of grants", v)
		}
		return
	}
	key := "d"
	if d.byte()%4 == 0 {
		key = "e"
	}
	var line string
	switch op % 8 {
	case 2, 3:
		opts, group := d.clauses(true)
		mx := d.count()
		line = "RESERVE " + key + " MAX " + strconv.FormatInt(mx, 10) + " MIN " + strconv.FormatInt(min(mx, d.count()), 10)
		if lb := d.byte(); lb%3 != 0 || opts+group == "" {
			line += " LIMIT " + strconv.FormatInt(d.count(), 10)
		}
		line += " LEASE " + strconv.FormatInt(d.duration(), 10) + d.once() + opts + group
	case 4:
		opts, group := d.clauses(false)
		line = "RELEASE " + key + " " + d.hold()
		if d.byte()&1 != 0 {
			line += " COPIES " + strconv.FormatInt(d.count(), 10)
		}
		line += opts + group
	case 5:
		opts, group := d.clauses(false)
		line = "RENEW " + key + " " + d.hold() + " LEASE " + strconv.FormatInt(d.duration(), 10) + opts + group
	case 6:
		opts, group := d.clauses(false)
		line = "TRANSFER " + key + " " + d.hold() + " TTL " + strconv.FormatInt(d.duration(), 10)
		if d.byte()&1 != 0 {
			line += " COPIES " + strconv.FormatInt(d.count(), 10)
		}
		line += d.once() + opts + group
	case 7:
		opts, group := d.clauses(false)
		line = "SEIZE " + key + " " + d.hold() + " LEASE " + strconv.FormatInt(d.duration(), 10) + opts + group
	}
	d.run(line, true)
}

// run runs one request at the driver's time and, with check, checks every key it
// wrote, the fences (they only grow per key; a grant's or seize's is above every fence
// its keys held) and the replays (a remembered token returns the remembered reply).
func (d *fuzzDriver) run(line string, check bool) {
	fences := map[string]int64{}
	for k, v := range d.st.keys {
		fences[k] = v.Fence()
	}
	r, err := d.st.do(d.t, line+" AT "+strconv.FormatInt(d.now, 10), d.now)
	if err != nil {
		return // refused: the store wrote nothing
	}
	req := &d.st.req
	dom := d.st.last[0]
	if req.Once {
		key := dom + "|" + strconv.FormatUint(req.OnceHash, 16)
		rec, ok := d.onces[key]
		inWindow := ok && r.T-rec.res.T <= OnceWindow
		switch {
		case inWindow && !r.Replay:
			d.t.Fatalf("%s: a token remembered at %d was not replayed at %d", line, rec.res.T, r.T)
		case !inWindow && r.Replay:
			d.t.Fatalf("%s: replayed a token nobody remembers at %d", line, r.T)
		case r.Replay:
			want := rec.res
			if rec.cmd != req.Cmd || r.ID != want.ID || r.Fence != want.Fence || r.Deadline != want.Deadline ||
				r.Held != want.Held || r.Granted != want.Granted || r.Copies != want.Copies || r.Remaining != want.Remaining ||
				r.Limit != want.Limit || r.GlobalHeld != want.GlobalHeld || r.LimitedBy != want.LimitedBy {
				d.t.Fatalf("%s: replay %+v, remembered %+v", line, *r, want)
			}
		case r.Write:
			d.onces[key] = onceRecord{cmd: req.Cmd, res: *r}
		}
	}
	if r.Replay && r.Write {
		d.t.Fatalf("%s: a replay writes", line)
	}
	if !r.Write {
		return
	}
	if r.ID != 0 {
		d.ids = append(d.ids, r.ID)
	}
	if r.Fence != 0 {
		for _, k := range d.st.last {
			if r.Fence <= fences[k] && fences[k] < MaxFence {
				d.t.Fatalf("%s: fence %d, key %s held %d", line, r.Fence, k, fences[k])
			}
		}
	}
	for _, k := range d.st.last {
		v := d.st.keys[k]
		if v == nil {
			continue
		}
		if v.Fence() < fences[k] {
			d.t.Fatalf("%s: key %s's fence went back from %d to %d", line, k, fences[k], v.Fence())
		}
		if check {
			checkWritten(d.t, line, v)
		}
	}
}

// checkWritten holds one written value to the persisted-format rules of Go and C.
func checkWritten(t *testing.T, line string, v View) {
	t.Helper()
	p := v.Serialize(nil)
	n, err := Validate(p)
	if err != nil {
		t.Fatalf("%s: wrote a value Validate refuses: %v\n%s", line, err, describe(p))
	}
	if cn := holdcheck.Check(p); cn != n {
		t.Fatalf("%s: C's charon_hold_check says %d holds, Go's Validate %d\n%s", line, cn, n, describe(p))
	}
	shape, _ := Inspect(p)
	if ch, ct := holdcheck.Shape(p); ch != shape.Holds || ct != shape.Tokens {
		t.Fatalf("%s: C's shape (%d holds, %d tokens) differs from Go's %+v", line, ch, ct, shape)
	}
	w, err := Build(p, make([]byte, shape.Size()))
	if err != nil {
		t.Fatalf("%s: Build refuses a written value: %v", line, err)
	}
	mem, ok := holdcheck.MemLayout(p)
	if !ok || !bytes.Equal(mem, w) {
		t.Fatalf("%s: C's layout of the value differs from Go's Build (ok %v)", line, ok)
	}
	if q := w.Serialize(nil); !bytes.Equal(q, p) {
		t.Fatalf("%s: Build + Serialize changed the value", line)
	}
	if q, ok := holdcheck.RoundTrip(p); !ok || !bytes.Equal(q, p) {
		t.Fatalf("%s: C build + serialize changed the value (ok %v)", line, ok)
	}
	if w.Held() != v.Held() || w.Len() != v.Len() || w.Newest() != v.Newest() || w.Limit() != v.Limit() ||
		w.Fence() != v.Fence() || w.TokLen() != v.TokLen() {
		t.Fatalf("%s: the reloaded value's totals differ", line)
	}
}

func describe(p []byte) string {
	var b strings.Builder
	for i := 0; i+8 <= len(p) && i < 8*40; i += 8 {
		b.WriteString(strconv.FormatUint(binary.LittleEndian.Uint64(p[i:]), 10))
		b.WriteByte(' ')
	}
	return b.String()
}

func FuzzGrants(f *testing.F) {
	f.Add([]byte{2, 0, 7, 7, 7, 1, 1, 3, 4, 0, 8, 5})
	f.Add([]byte{0, 8, 2, 1, 3, 7, 7, 7, 2, 0, 6, 0, 1, 0, 7, 0, 0, 5, 1})
	f.Add([]byte{1, 200, 0, 4, 1, 255, 4, 1, 1, 6, 0, 1, 3, 0, 0, 2})
	f.Add([]byte{0, 7, 2, 0, 3, 7, 6, 7, 3, 3, 3, 0, 6, 1, 2, 2, 5, 0, 1, 1, 7, 0, 2, 2})
	f.Add(bytes.Repeat([]byte{2, 1, 7, 7, 3, 1, 3, 6, 0, 3}, 20))
	f.Add(bytes.Repeat([]byte{2, 1, 7, 7, 3, 1, 3, 6, 12, 0, 3, 0, 1, 6, 1, 0, 3, 1, 2, 12, 1}, 10))
	f.Add(bytes.Repeat([]byte{3, 0, 2, 2, 3, 7, 0, 12, 0, 2, 5, 7, 2, 1, 2, 2, 0, 3, 0, 0, 6, 1}, 10))
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 40; i++ {
		b := make([]byte, 400)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &fuzzDriver{t: t, st: newStore(), data: data, now: 1, onces: map[string]onceRecord{}}
		for steps := 0; len(d.data) > 0 && steps < 100; steps++ {
			d.step()
		}
	})
}

// A key at the most holds it may store, every hold at the largest count and the
// latest deadline, is valid for Go and C and fits the 64 MiB cap on a value in both
// forms.
func TestMaxHoldsValue(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 48 MiB value")
	}
	c := CapFor(MaxHolds)
	v := Init(make([]byte, SizeFor(c)), c)
	v.Touch(MaxAt, MaxCount)
	for i := 0; i < MaxHolds; i++ {
		v.Insert(uint64(i)+1, MaxCount, MaxAt+MaxDuration)
	}
	if !v.Full() || SizeFor(c) > 64<<20 || v.PersistedSize() > 64<<20 {
		t.Fatalf("full %v, %d bytes in memory, %d persisted", v.Full(), SizeFor(c), v.PersistedSize())
	}
	checkWritten(t, "MaxHolds holds", v)
}
