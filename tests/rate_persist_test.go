//go:build integration

package tests

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/tests/harness"
)

// Persistence, DUMP/RESTORE and corrupt input for the charon-rl type.

// ---------------------------------------------------------------------------
// DUMP payloads.
//
// A module value's DUMP payload is: the RDB type byte 7 (module, v2 serialization),
// the 64-bit module type id as an RDB length (0x81 + 8 bytes big-endian; its low 10
// bits are the encver), then what rdb_save wrote: one string buffer (opcode 5, an RDB
// string), the EOF opcode 0, and finally the 2-byte RDB version and the CRC64 of
// everything before it (little-endian).

const (
	rtRDBTypeModule2 = 7
	rtOpcodeString   = 5
	rtOpcodeEOF      = 0
)

// rtCRC64 is Redis's crc64: Jones polynomial, reflected, init 0, no final xor.
func rtCRC64(p []byte) uint64 {
	const poly = 0x95AC9329AC4BC9B5
	var crc uint64
	for _, b := range p {
		crc ^= uint64(b)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ poly
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// rtRDBLen decodes an RDB length at p[off]: the value, the bytes used, and whether it
// is a special encoding (then the value is the encoding type).
func rtRDBLen(p []byte, off int) (v uint64, n int, special bool, err error) {
	if off >= len(p) {
		return 0, 0, false, errors.New("short length")
	}
	b := p[off]
	switch b >> 6 {
	case 0:
		return uint64(b & 0x3f), 1, false, nil
	case 1:
		if off+1 >= len(p) {
			return 0, 0, false, errors.New("short 14-bit length")
		}
		return uint64(b&0x3f)<<8 | uint64(p[off+1]), 2, false, nil
	case 3:
		return uint64(b & 0x3f), 1, true, nil
	}
	switch b {
	case 0x80:
		if off+5 > len(p) {
			return 0, 0, false, errors.New("short 32-bit length")
		}
		return uint64(binary.BigEndian.Uint32(p[off+1:])), 5, false, nil
	case 0x81:
		if off+9 > len(p) {
			return 0, 0, false, errors.New("short 64-bit length")
		}
		return binary.BigEndian.Uint64(p[off+1:]), 9, false, nil
	}
	return 0, 0, false, fmt.Errorf("bad length byte %#x", b)
}

// rtRDBLenEncode encodes an RDB length the way rdbSaveLen does.
func rtRDBLenEncode(v uint64) []byte {
	switch {
	case v < 1<<6:
		return []byte{byte(v)}
	case v < 1<<14:
		return []byte{0x40 | byte(v>>8), byte(v)}
	case v <= 0xffffffff:
		return binary.BigEndian.AppendUint32([]byte{0x80}, uint32(v))
	}
	return binary.BigEndian.AppendUint64([]byte{0x81}, v)
}

// rtLZF decompresses an LZF block (RDB strings may be compressed).
func rtLZF(in []byte, outLen int) ([]byte, error) {
	out := make([]byte, 0, outLen)
	for i := 0; i < len(in); {
		ctrl := int(in[i])
		i++
		if ctrl < 32 {
			n := ctrl + 1
			if i+n > len(in) {
				return nil, errors.New("lzf: short literal")
			}
			out = append(out, in[i:i+n]...)
			i += n
			continue
		}
		n := ctrl >> 5
		if n == 7 {
			if i >= len(in) {
				return nil, errors.New("lzf: short length")
			}
			n += int(in[i])
			i++
		}
		if i >= len(in) {
			return nil, errors.New("lzf: short reference")
		}
		ref := len(out) - (ctrl&0x1f)<<8 - 1 - int(in[i])
		i++
		if ref < 0 {
			return nil, errors.New("lzf: reference before start")
		}
		for k := 0; k < n+2; k++ {
			out = append(out, out[ref+k])
		}
	}
	if len(out) != outLen {
		return nil, fmt.Errorf("lzf: %d bytes, want %d", len(out), outLen)
	}
	return out, nil
}

// rtDump is a parsed charon-rl DUMP payload.
type rtDump struct {
	id  uint64 // module type id; low 10 bits = encver
	val []byte // the value bytes rdb_save wrote
	ver [2]byte
}

// rtParseDump parses and checks a charon-rl DUMP payload, CRC included.
func rtParseDump(p []byte) (rtDump, error) {
	var d rtDump
	if len(p) < 10+1 {
		return d, errors.New("payload too short")
	}
	body, tail := p[:len(p)-8], p[len(p)-8:]
	if got, want := binary.LittleEndian.Uint64(tail), rtCRC64(body); got != want {
		return d, fmt.Errorf("crc %#x, computed %#x", got, want)
	}
	copy(d.ver[:], body[len(body)-2:])
	body = body[:len(body)-2]
	if body[0] != rtRDBTypeModule2 {
		return d, fmt.Errorf("type byte %d, want %d", body[0], rtRDBTypeModule2)
	}
	off := 1
	id, n, _, err := rtRDBLen(body, off)
	if err != nil {
		return d, fmt.Errorf("module id: %w", err)
	}
	d.id, off = id, off+n
	op, n, _, err := rtRDBLen(body, off)
	if err != nil || op != rtOpcodeString {
		return d, fmt.Errorf("opcode %d (%v), want a string buffer", op, err)
	}
	off += n
	l, n, special, err := rtRDBLen(body, off)
	if err != nil {
		return d, fmt.Errorf("string length: %w", err)
	}
	off += n
	switch {
	case !special:
		if off+int(l) > len(body) {
			return d, errors.New("string runs past the payload")
		}
		d.val, off = body[off:off+int(l)], off+int(l)
	case l == 3: // LZF
		clen, n1, _, err1 := rtRDBLen(body, off)
		ulen, n2, _, err2 := rtRDBLen(body, off+n1)
		if err1 != nil || err2 != nil {
			return d, errors.New("bad LZF header")
		}
		off += n1 + n2
		if off+int(clen) > len(body) {
			return d, errors.New("LZF data runs past the payload")
		}
		if d.val, err = rtLZF(body[off:off+int(clen)], int(ulen)); err != nil {
			return d, err
		}
		off += int(clen)
	default:
		return d, fmt.Errorf("unexpected string encoding %d", l)
	}
	if off+1 != len(body) || body[off] != rtOpcodeEOF {
		return d, errors.New("no EOF opcode where expected")
	}
	return d, nil
}

// rtFrame builds a payload around a body (type byte .. EOF opcode): version + CRC.
func rtFrame(body []byte, ver [2]byte) []byte {
	p := append(append([]byte(nil), body...), ver[:]...)
	return binary.LittleEndian.AppendUint64(p, rtCRC64(p))
}

// rtBody builds the payload body for a module id and a value (uncompressed string).
func rtBody(id uint64, val []byte) []byte {
	b := []byte{rtRDBTypeModule2}
	b = append(b, rtRDBLenEncode(id)...)
	b = append(b, rtOpcodeString)
	b = append(b, rtRDBLenEncode(uint64(len(val)))...)
	b = append(b, val...)
	return append(b, rtOpcodeEOF)
}

func rtBuildDump(id uint64, val []byte, ver [2]byte) []byte { return rtFrame(rtBody(id, val), ver) }

// rtDumpOf DUMPs a charon-rl key and parses the payload.
func rtDumpOf(t testing.TB, c rtConn, key string) ([]byte, rtDump) {
	t.Helper()
	p, err := c.Dump(context.Background(), key).Bytes()
	require.NoError(t, err, "DUMP %s", key)
	d, err := rtParseDump(p)
	require.NoError(t, err, "DUMP %s payload % x", key, p)
	return p, d
}

// rtValueOf returns the stored value bytes of a charon-rl key.
func rtValueOf(t testing.TB, c rtConn, key string) []byte {
	t.Helper()
	_, d := rtDumpOf(t, c, key)
	return d.val
}

// ---------------------------------------------------------------------------
// Snapshots of a dataset, to compare across reloads.

type rtKeyState struct {
	digest string
	expire int64
	mem    int64
}

type rtSnapshot struct {
	digest string
	keys   map[string]rtKeyState
}

func rtSnap(t testing.TB, c *redis.Client) rtSnapshot {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	require.NoError(t, err)
	s := rtSnapshot{digest: rtDigest(t, c), keys: map[string]rtKeyState{}}
	for _, k := range keys {
		mem, err := c.MemoryUsage(ctx, k).Result()
		require.NoError(t, err, "MEMORY USAGE %s", k)
		s.keys[k] = rtKeyState{digest: rtDigestValue(t, c, k), expire: rtPExpireTime(t, c, k), mem: mem}
	}
	return s
}

// rtMemSizeClassSlack is the most a key's MEMORY USAGE may move across a reload for
// reasons of the server's own key allocation: one small allocator size class.
const rtMemSizeClassSlack = 16

// rtMemKeptRoom: a live value keeps its block while it fits (so that a grant calls
// no allocator) and gives it back once more than a quarter is empty, so its MEMORY
// USAGE may exceed what a reload allocates by up to a third; a block of less than 64
// bytes of room is never given back (cshim's oversized), so a small value (a global
// key whose hits left the window) may keep up to an 80-byte allocation class.
func rtMemKeptRoom(reloaded int64) int64 { return max(reloaded/3, 80) }

// rtSameSnap compares datasets; withMem also compares MEMORY USAGE per key (up to
// the server's own allocation slack, rtMemSizeClassSlack).
func rtSameSnap(t testing.TB, want, got rtSnapshot, withMem bool, what string) {
	t.Helper()
	require.Equal(t, want.digest, got.digest, "%s: DEBUG DIGEST", what)
	require.Equal(t, len(want.keys), len(got.keys), "%s: number of keys", what)
	for k, w := range want.keys {
		g, ok := got.keys[k]
		require.True(t, ok, "%s: key %s lost", what, k)
		require.Equal(t, w.digest, g.digest, "%s: %s DIGEST-VALUE", what, k)
		require.Equal(t, w.expire, g.expire, "%s: %s PEXPIRETIME", what, k)
		if withMem {
			// The contract is that the value's own memory (the one allocation
			// mem_usage reports) is unchanged; the digests above prove its bytes are.
			// The server's per-key overhead is not ours: Valkey 8 embeds the key in
			// its dict entry, and a reloaded key may land one allocator size class
			// lower or higher, so only that much difference is allowed.
			// A live value may also hold room kept for growth (rtMemKeptRoom), which a
			// reload gives back; a reload never grows a value.
			require.LessOrEqual(t, g.mem, w.mem+rtMemSizeClassSlack, "%s: %s MEMORY USAGE %d, was %d", what, k, g.mem, w.mem)
			require.LessOrEqual(t, w.mem, g.mem+rtMemKeptRoom(g.mem)+rtMemSizeClassSlack, "%s: %s MEMORY USAGE %d, was %d", what, k, g.mem, w.mem)
		}
	}
}

// rtPopulate sends n random requests (varied shapes: every tier set, random tier
// lists up to 16 tiers, GLOBAL keys, caps and ONCE tokens in a third of them) an hour
// ahead of the real clock, so nothing expires during the test, and returns how many
// keys exist.
func rtPopulate(t testing.TB, c *redis.Client, seed uint64, nKeys, nGlobal, n int) int64 {
	t.Helper()
	ctx := context.Background()
	base := rtNow() + 3_600_000
	g := &rtGen{r: rand.New(rand.NewPCG(seed, 11)), at: base, floor: base, v3: 30}
	for i := range nKeys {
		g.keys = append(g.keys, fmt.Sprintf("rl:{p%d}:d%d", i%17, i))
	}
	for i := range nGlobal {
		g.gkeys = append(g.gkeys, fmt.Sprintf("rl:{p%d}:g", i))
	}
	const batch = 500
	var granted int
	for done := 0; done < n; done += batch {
		pipe := c.Pipeline()
		var cmds []*redis.Cmd
		for range min(batch, n-done) {
			q := g.next()
			cmds = append(cmds, pipe.Do(ctx, q.args...))
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
		for _, cmd := range cmds {
			if rtFields(t, cmd.Val(), 3)[rate.FieldGranted] > 0 {
				granted++
			}
		}
	}
	size := rtDBSize(t, c)
	var v3 int
	for _, k := range c.Keys(ctx, "rl:*").Val() {
		if v := rtValueOf(t, c, k); v[0] == 3 {
			v3++
		}
	}
	t.Logf("populated: %d requests, %d granted, %d keys (%d of version 3)", n, granted, size, v3)
	require.Positive(t, v3, "some keys hold tokens or caps")
	require.Greater(t, size, int64(nKeys/2))
	return size
}

// rtWaitInfo polls INFO section until field has the wanted value.
func rtWaitInfo(t testing.TB, s *harness.Server, section, field, want string) map[string]string {
	t.Helper()
	var m map[string]string
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		m = s.Info(t, section)
		return m[field] == want, fmt.Sprintf("%s=%q, want %q", field, m[field], want)
	})
	return m
}

// rtWaitBgsave waits for the running BGSAVE to finish and requires that it succeeded.
func rtWaitBgsave(t testing.TB, s *harness.Server) {
	t.Helper()
	m := rtWaitInfo(t, s, "persistence", "rdb_bgsave_in_progress", "0")
	require.Equal(t, "ok", m["rdb_last_bgsave_status"], "BGSAVE failed")
}

// TestRatePersistence: a few hundred keys of varied shapes (global keys included)
// survive DEBUG RELOAD (same digest, expiries and MEMORY USAGE), BGSAVE + restart from
// the child's RDB, SHUTDOWN SAVE + restart; COPY gives an equal, independent value.
func TestRatePersistence(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{})
	c := s.Client(t)
	ctx := context.Background()
	rtPopulate(t, c, uint64(rtNow()), 300, 12, 4000)
	want := rtSnap(t, c)

	require.NoError(t, c.Do(ctx, "DEBUG", "RELOAD").Err())
	rtSameSnap(t, want, rtSnap(t, c), true, "DEBUG RELOAD")

	// The RDB written by the BGSAVE child (restart without saving again).
	require.Equal(t, "Background saving started", c.BgSave(ctx).Val())
	rtWaitBgsave(t, s)
	s.Restart(t, harness.NoSave)
	rtSameSnap(t, want, rtSnap(t, c), true, "BGSAVE + restart")

	s.Restart(t, harness.Save)
	rtSameSnap(t, want, rtSnap(t, c), true, "SHUTDOWN SAVE + restart")

	// COPY: equal value and expiry; then the copy and the source are independent.
	for _, src := range []string{"rl:{p0}:d0", "rl:{p1}:d1", "rl:{p0}:g"} {
		if c.Exists(ctx, src).Val() == 0 {
			continue
		}
		dst := src + ":copy"
		require.Equal(t, int64(1), c.Copy(ctx, src, dst, 0, false).Val(), "COPY %s", src)
		srcDigest := rtDigestValue(t, c, src)
		require.Equal(t, srcDigest, rtDigestValue(t, c, dst), "COPY %s: DIGEST-VALUE", src)
		require.Equal(t, rtPExpireTime(t, c, src), rtPExpireTime(t, c, dst))
		require.Equal(t, rtValueOf(t, c, src), rtValueOf(t, c, dst))
		// Write the copy well after its newest entry: it changes, the source does not.
		at := rtInt(t, rtInspect(t, c, dst, 0), "newest") + 600_000
		if strings.HasSuffix(src, ":g") {
			rtRate(t, c, 3, rtCmd("rl:{p0}:writer", at, rtCat([]string{"GLOBAL", dst, "1000"}, rtSimple)...)...)
		} else {
			f := rtRate(t, c, 3, rtCmd(dst, at, rtCat([]string{"MIN", "0", "MAX", "3"}, rtSimple)...)...)
			require.Positive(t, f[rate.FieldGranted])
		}
		require.NotEqual(t, srcDigest, rtDigestValue(t, c, dst), "%s: the copy did not change", dst)
		require.Equal(t, srcDigest, rtDigestValue(t, c, src), "%s: writing the copy changed the source", src)
	}
}

// TestRateAOF: the AOF replays granted requests with their explicit AT, and an AOF
// rewritten without an RDB preamble (CHARON.LOADVALUE + PEXPIREAT) restores the same
// dataset and expiries.
func TestRateAOF(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{AppendOnly: true, Config: []string{"aof-use-rdb-preamble no"}})
	c := s.Client(t)
	ctx := context.Background()
	rtPopulate(t, c, uint64(rtNow()), 200, 8, 2500)
	want := rtSnap(t, c)

	// Replay of the commands the AOF logged.
	s.Restart(t, harness.NoSave)
	rtSameSnap(t, want, rtSnap(t, c), false, "AOF replay")

	require.NoError(t, c.BgRewriteAOF(ctx).Err())
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		m := s.Info(t, "persistence")
		return m["aof_rewrite_in_progress"] == "0" && m["aof_rewrite_scheduled"] == "0",
			fmt.Sprintf("aof_rewrite_in_progress=%s aof_rewrite_scheduled=%s", m["aof_rewrite_in_progress"], m["aof_rewrite_scheduled"])
	})
	require.Equal(t, "ok", s.Info(t, "persistence")["aof_last_bgrewrite_status"])
	bases, err := filepath.Glob(filepath.Join(s.Dir(), "appendonlydir", "*.base.aof"))
	require.NoError(t, err)
	require.Len(t, bases, 1, "one rewritten base AOF without RDB preamble")
	text, err := os.ReadFile(bases[0])
	require.NoError(t, err)
	require.Contains(t, string(text), "CHARON.LOADVALUE", "aof_rewrite emits CHARON.LOADVALUE")
	require.NotContains(t, string(text), "CHARON.RATE")
	require.NotContains(t, string(text), "REDIS00", "no RDB preamble")

	s.Restart(t, harness.NoSave)
	rtSameSnap(t, want, rtSnap(t, c), false, "rewritten AOF")
}

// TestRateBgsaveLoop: 200 consecutive BGSAVEs of 100,000 keys all finish and succeed;
// the fork child never runs Go. The last RDB loads back to the same dataset.
func TestRateBgsaveLoop(t *testing.T) {
	// hz 100: the parent notices a finished child within 10 ms instead of 100 ms.
	s := harness.Start(t, harness.Options{Config: []string{"hz 100"}})
	c := s.Client(t)
	ctx := context.Background()
	const nKeys, nSaves = 100_000, 200

	start := time.Now()
	now := rtNow()
	// An hour-long window: the keys outlive the test.
	tiers := []string{"TIER", "10", "3600000", "3600000", "0"}
	for done := 0; done < nKeys; done += 2000 {
		pipe := c.Pipeline()
		for i := done; i < done+2000; i++ {
			pipe.Do(ctx, rtCmd(fmt.Sprintf("rl:{bg%d}:%d", i%1000, i), now+int64(i%5000), tiers...)...)
		}
		cmds, err := pipe.Exec(ctx)
		require.NoError(t, err)
		for _, cmd := range cmds {
			v, _ := cmd.(*redis.Cmd)
			require.NotNil(t, v)
			require.Equal(t, int64(1), rtFields(t, v.Val(), 3)[rate.FieldGranted])
		}
	}
	require.Equal(t, int64(nKeys), rtDBSize(t, c))
	t.Logf("filled %d keys in %v", nKeys, time.Since(start).Round(time.Millisecond))
	digest := rtDigest(t, c)
	forks0 := s.Info(t, "stats")["total_forks"]

	start = time.Now()
	for i := range nSaves {
		res, err := c.BgSave(ctx).Result()
		require.NoError(t, err, "BGSAVE %d", i)
		require.Equal(t, "Background saving started", res, "BGSAVE %d", i)
		rtWaitBgsave(t, s)
	}
	elapsed := time.Since(start)
	t.Logf("%d BGSAVEs of %d keys: %v (%v each)", nSaves, nKeys, elapsed.Round(time.Millisecond), (elapsed / nSaves).Round(time.Millisecond))
	var f0, f1 int
	_, err := fmt.Sscan(forks0, &f0)
	require.NoError(t, err)
	_, err = fmt.Sscan(s.Info(t, "stats")["total_forks"], &f1)
	require.NoError(t, err)
	require.Equal(t, nSaves, f1-f0, "one fork per BGSAVE")

	// The last child's RDB holds the whole dataset.
	require.NoError(t, c.Do(ctx, "DEBUG", "RELOAD", "NOSAVE").Err())
	require.Equal(t, int64(nKeys), rtDBSize(t, c))
	require.Equal(t, digest, rtDigest(t, c))
}

// ---------------------------------------------------------------------------
// Corrupt input.

// rtMutations are value-level corruptions: every truncation, trailing bytes, and at
// every position a flipped low bit, high bit, all bits, and the byte +1/-1 (which bumps
// counts, lengths, times and flags).
func rtMutations(val []byte) [][]byte {
	var out [][]byte
	for n := range len(val) {
		out = append(out, bytes.Clone(val[:n]))
	}
	out = append(out, append(bytes.Clone(val), 0), append(bytes.Clone(val), 1, 2, 3))
	for i := range val {
		for _, f := range []func(byte) byte{
			func(b byte) byte { return b ^ 0x01 },
			func(b byte) byte { return b ^ 0x80 },
			func(b byte) byte { return ^b },
			func(b byte) byte { return b + 1 },
			func(b byte) byte { return b - 1 },
		} {
			m := bytes.Clone(val)
			m[i] = f(m[i])
			out = append(out, m)
		}
	}
	return out
}

// rtCorruptSamples creates keys of several shapes and returns their names.
func rtCorruptSamples(t testing.TB, c *redis.Client) []string {
	t.Helper()
	base := rtNow() + 3_600_000
	// A penalty key with several events in both tiers and a global key.
	for i, dt := range []int64{0, 1, 130, 200, 17000, 17001} {
		max := []string{"MAX", fmt.Sprint(3 + i), "MIN", "1", "GLOBAL", "rl:{c}", "1000"}
		rtRate(t, c, 3, rtCmd("rl:{c}:pen", base+dt, rtCat(max, rtPenalty)...)...)
	}
	// 16 tiers, one skippable, entered several deep.
	var sixteen []string
	for i := range rate.MaxTiers {
		sixteen = append(sixteen, "TIER", fmt.Sprint(i%3), "1000", fmt.Sprint(100+i), fmt.Sprint(i*10))
		if i == 4 {
			sixteen = append(sixteen, "SKIPPABLE")
		}
	}
	rtRate(t, c, 3, rtCmd("rl:{c}:16", base, rtCat([]string{"MAX", "20", "MIN", "1"}, sixteen)...)...)
	rtRate(t, c, 3, rtCmd("rl:{c}:16", base+300, rtCat([]string{"MAX", "20", "MIN", "1"}, sixteen)...)...)

	// Version 3: ONCE tokens and caps, exact (500 ms, 300 ms) and bucketed (1 min, 1 h),
	// per-domain and global, in the TIER and LIMITS forms; a replay writes nothing.
	for i, dt := range []int64{0, 1, 40, 700, 2500, 9000} {
		once := []string{"MAX", "2", "MIN", "1", "TIER", "50", "60000", "60000", "0", "CAP", "5", "500", "CAP", "100", "60000",
			"ONCE", fmt.Sprintf("tok-%d", i), "GLOBAL", "rl:{c}:gcaps", "1000/1s, 5000/1h, 40/300ms"}
		rtRate(t, c, 3, rtCmd("rl:{c}:once", base+dt, once...)...)
		lim := []string{"MAX", "3", "MIN", "1", "LIMITS", "10/1s, 50/5s/5s/15s; 20/10s, 7/300ms", "ONCE", fmt.Sprintf("lim-%d", i)}
		rtRate(t, c, 3, rtCmd("rl:{c}:lim", base+dt, lim...)...)
	}
	before := rtValueOf(t, c, "rl:{c}:lim")
	rtRate(t, c, 3, rtCmd("rl:{c}:lim", base+9001, "MAX", "3", "MIN", "1", "LIMITS", "10/1s, 50/5s/5s/15s; 20/10s, 7/300ms", "ONCE", "lim-5")...)
	require.Equal(t, before, rtValueOf(t, c, "rl:{c}:lim"), "a replay writes nothing")
	samples := []string{"rl:{c}:pen", "rl:{c}", "rl:{c}:16", "rl:{c}:once", "rl:{c}:gcaps", "rl:{c}:lim"}
	for _, k := range samples[3:] {
		require.Equal(t, byte(3), rtValueOf(t, c, k)[0], "%s holds version 3", k)
	}
	return samples
}

// TestRateCorruptRestore: RESTORE of mutated DUMP payloads (with the CRC recomputed)
// fails cleanly, or succeeds only when the value is still valid by module/rate's
// Validate (the C check on load must agree with it); the server never goes down.
func TestRateCorruptRestore(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{Config: []string{"rdbcompression no"}})
	c := s.Client(t)
	ctx := context.Background()
	samples := rtCorruptSamples(t, c)
	const tmp = "rl:{c}:tmp"
	restore := func(p []byte) error {
		if err := c.Del(ctx, tmp).Err(); err != nil {
			return err
		}
		return c.Restore(ctx, tmp, 0, string(p)).Err()
	}
	// After an accepted RESTORE the value must be usable: INSPECT answers and
	// CHARON.RATE either answers or refuses the kind cleanly.
	usable := func(what string) {
		t.Helper()
		require.NoError(t, c.Do(ctx, "CHARON.INSPECT", tmp).Err(), "%s: INSPECT", what)
		err := c.Do(ctx, rtCmd(tmp, rtNow()+7_200_000, rtCat([]string{"DRYRUN"}, rtPenalty)...)...).Err()
		if err != nil {
			require.True(t, strings.HasPrefix(err.Error(), "WRONGTYPE"), "%s: CHARON.RATE: %v", what, err)
		}
	}
	var accepted, refused, framingAccepted, framingRefused int
	for _, key := range samples {
		payload, d := rtDumpOf(t, c, key)
		require.Equal(t, uint64(rate.EncVer), d.id&1023, "%s: encver in the module id", key)
		require.NoError(t, rate.Validate(d.val), "%s: stored value", key)
		// Our framing and CRC rebuild Redis's payload byte for byte.
		require.Equal(t, payload, rtBuildDump(d.id, d.val, d.ver), "%s: rebuilt payload", key)
		require.NoError(t, restore(payload), "%s: unmutated payload", key)
		require.Equal(t, d.val, rtValueOf(t, c, tmp), "%s: restored value", key)
		// A wrong CRC is refused by Redis before the module sees anything.
		bad := bytes.Clone(payload)
		bad[len(bad)-1] ^= 1
		require.ErrorContains(t, restore(bad), "checksum")

		for i, m := range rtMutations(d.val) {
			err := restore(rtBuildDump(d.id, m, d.ver))
			verr := rate.Validate(m)
			what := fmt.Sprintf("%s mutation %d (% x)", key, i, m)
			if verr != nil {
				require.Error(t, err, "%s: invalid by Validate (%v) but RESTORE accepted it", what, verr)
				require.True(t, strings.HasPrefix(err.Error(), "ERR Bad data format"), "%s: %v", what, err)
				require.Equal(t, int64(0), c.Exists(ctx, tmp).Val(), what)
				refused++
				continue
			}
			require.NoError(t, err, "%s: valid by Validate but RESTORE refused it", what)
			usable(what)
			accepted++
		}

		// Framing damage: the body cut anywhere, the string length claiming more bytes
		// than there are, random damage anywhere (header, module id, opcodes, value).
		// Redis does not require the payload to be consumed exactly, so a damaged frame
		// may still decode into something: then it must be a valid value.
		framed := func(what string, body []byte) {
			t.Helper()
			if restore(rtFrame(body, d.ver)) != nil {
				framingRefused++
				return
			}
			framingAccepted++
			if typ := c.Type(ctx, tmp).Val(); typ == "charon-rl" {
				_, got := rtDumpOf(t, c, tmp)
				require.NoError(t, rate.Validate(got.val), "%s: accepted an invalid value % x", what, got.val)
				usable(what)
			}
		}
		body := rtBody(d.id, d.val)
		for n := 1; n < len(body); n++ {
			framed(fmt.Sprintf("%s body cut at %d", key, n), body[:n])
		}
		for _, extra := range []uint64{1, 2, 100, 1 << 20, 1 << 40} {
			b := []byte{rtRDBTypeModule2}
			b = append(b, rtRDBLenEncode(d.id)...)
			b = append(b, rtOpcodeString)
			b = append(b, rtRDBLenEncode(uint64(len(d.val))+extra)...)
			b = append(append(b, d.val...), rtOpcodeEOF)
			require.Error(t, restore(rtFrame(b, d.ver)), "%s: length +%d", key, extra)
		}
		r := rand.New(rand.NewPCG(uint64(len(body)), 3))
		for range 300 {
			m := bytes.Clone(body)
			for range 1 + r.IntN(3) {
				m[r.IntN(len(m))] ^= byte(1 + r.IntN(255))
			}
			framed(fmt.Sprintf("%s random % x", key, m), m)
		}
	}
	t.Logf("framing damage: %d refused, %d accepted", framingRefused, framingAccepted)
	require.Greater(t, framingRefused, framingAccepted)
	t.Logf("value mutations: %d refused, %d still valid and accepted", refused, accepted)
	require.Positive(t, refused)
	require.NoError(t, c.Ping(ctx).Err(), "the server must survive every payload")
	// Refused payloads are logged as Redis logs its own refused RESTORE payloads:
	// at verbose level, so a fuzzer cannot flood a server at the default level.
	require.False(t, s.LogContains("corrupt charon-rl value"), "refusals must not be logged at loglevel notice")
	require.NoError(t, c.ConfigSet(ctx, "loglevel", "verbose").Err())
	_, d := rtDumpOf(t, c, samples[0])
	require.Error(t, restore(rtBuildDump(d.id, []byte{0xff}, d.ver)))
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		return s.LogContains("corrupt charon-rl value"), "a refusal is logged at loglevel verbose"
	})
}

// TestRateEncodingVersion: a payload whose module id carries an encver newer than the
// module's, or 0, is refused by RESTORE with a clear log line; a version 1 value (the
// previous encoding) still loads and is converted by its first write.
func TestRateEncodingVersion(t *testing.T) {
	t.Parallel()
	// Refused RESTORE payloads are logged at verbose level, as Redis logs its own.
	s := harness.Start(t, harness.Options{Config: []string{"rdbcompression no", "loglevel verbose"}})
	c := s.Client(t)
	ctx := context.Background()
	rtRate(t, c, 3, rtCmd("rl:{e}:a", rtNow()+3_600_000, rtPenalty...)...)
	_, d := rtDumpOf(t, c, "rl:{e}:a")
	require.Equal(t, uint64(rate.EncVer), d.id&1023)
	for _, enc := range []uint64{rate.EncVer + 1, 0, 1023} {
		p := rtBuildDump(d.id&^1023|enc, d.val, d.ver)
		err := c.Restore(ctx, "rl:{e}:new", 0, string(p)).Err()
		require.Error(t, err, "encver %d", enc)
		require.True(t, strings.HasPrefix(err.Error(), "ERR Bad data format"), "encver %d: %v", enc, err)
		require.Equal(t, int64(0), c.Exists(ctx, "rl:{e}:new").Val())
		line := fmt.Sprintf("charon-rl value has encoding version %d", enc)
		harness.Eventually(t, 10*time.Second, func() (bool, string) {
			return s.LogContains(line), "log lacks " + line
		})
	}
	// The current version loads.
	require.NoError(t, c.Restore(ctx, "rl:{e}:new", 0, string(rtBuildDump(d.id, d.val, d.ver))).Err())
	require.NoError(t, c.Ping(ctx).Err())

	// Version 1: newest time at (an hour from now), one tier (L=5 W=100 A=100 C=0)
	// entered then, one hit then. It loads under encver 1 (RESTORE) and through
	// CHARON.LOADVALUE, reads the same, and the first grant rewrites it in the current
	// version.
	at := rtNow() + 3_600_000
	v1 := binary.AppendUvarint([]byte{1, 1}, uint64(at))
	v1 = append(v1, 1, 5, 100, 100, 0, 2, 0, 1, 0, 0)
	ats := func(d int64) string { return strconv.FormatInt(at+d, 10) }
	require.NoError(t, c.Restore(ctx, "rl:{e}:v1", 0, string(rtBuildDump(d.id&^1023|1, v1, d.ver))).Err())
	require.Equal(t, "OK", c.Do(ctx, "CHARON.LOADVALUE", "rl:{e}:v1b", string(v1)).Val())
	for _, k := range []string{"rl:{e}:v1", "rl:{e}:v1b"} {
		require.Equal(t, v1, rtValueOf(t, c, k))
		info := rtInspect(t, c, k, at)
		require.Equal(t, int64(1), rtInt(t, info, "domain_hits"), k)
		// A rejection changes nothing; a grant converts.
		rtRate(t, c, 3, "CHARON.RATE", k, "AT", ats(0), "MAX", "5", "TIER", "5", "100", "100", "0")
		require.Equal(t, v1, rtValueOf(t, c, k))
		r := rtRate(t, c, 3, "CHARON.RATE", k, "AT", ats(1), "MAX", "2", "TIER", "5", "100", "100", "0")
		require.Equal(t, int64(2), r[rate.FieldGranted])
		require.Equal(t, int64(3), r[rate.FieldDomainHits])
		got := rtValueOf(t, c, k)
		// Written in the current version: version 3's layout, which is version 2's
		// bytes when the key holds no ONCE tokens and no caps.
		require.Equal(t, byte(2), got[0], "converted on write")
		require.NoError(t, rate.Validate(got))
		r = rtRate(t, c, 3, "CHARON.RATE", k, "AT", ats(2), "ONCE", "t1", "CAP", "10", "60000", "TIER", "5", "100", "100", "0")
		require.Equal(t, int64(1), r[rate.FieldGranted])
		got = rtValueOf(t, c, k)
		require.Equal(t, byte(rate.EncVer), got[0], "a token and a cap: version 3")
		require.NoError(t, rate.Validate(got))
	}
}

// TestRateLoadValue: CHARON.LOADVALUE refuses anything the format check refuses
// ("ERR payload:", nothing written) and recreates a real value exactly.
func TestRateLoadValue(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{Config: []string{"rdbcompression no"}})
	c := s.Client(t)
	ctx := context.Background()
	samples := rtCorruptSamples(t, c)

	for _, key := range samples {
		val := rtValueOf(t, c, key)
		// Garbage, and every mutation of a real value: accepted exactly when Validate
		// accepts it.
		garbage := [][]byte{{}, []byte("hello"), bytes.Repeat([]byte{0xff}, 64)}
		for _, m := range append(garbage, rtMutations(val)...) {
			digest, size := rtDigest(t, c), rtDBSize(t, c)
			err := c.Do(ctx, "CHARON.LOADVALUE", "rl:{c}:target", string(m)).Err()
			if rate.Validate(m) == nil {
				require.NoError(t, err, "% x is valid", m)
				require.NoError(t, c.Do(ctx, "CHARON.INSPECT", "rl:{c}:target").Err())
				require.NoError(t, c.Del(ctx, "rl:{c}:target").Err())
				continue
			}
			require.Error(t, err, "% x is invalid", m)
			require.True(t, strings.HasPrefix(err.Error(), "ERR payload:"), "%v", err)
			require.Equal(t, digest, rtDigest(t, c), "a refused payload changed the dataset")
			require.Equal(t, size, rtDBSize(t, c))
		}
		// Garbage over an existing value leaves it alone.
		before := rtDigestValue(t, c, key)
		require.Error(t, c.Do(ctx, "CHARON.LOADVALUE", key, "junk").Err())
		require.Equal(t, before, rtDigestValue(t, c, key))

		// The real value recreates an equal key (with the same expiry, which the digest
		// includes).
		dst := key + ":loaded"
		require.Equal(t, "OK", c.Do(ctx, "CHARON.LOADVALUE", dst, string(val)).Val())
		require.Equal(t, int64(-1), rtPExpireTime(t, c, dst), "LOADVALUE sets no expiry (AOF sends PEXPIREAT)")
		require.NoError(t, c.PExpireAt(ctx, dst, time.UnixMilli(rtPExpireTime(t, c, key))).Err())
		require.Equal(t, before, rtDigestValue(t, c, dst), "%s: DIGEST-VALUE", key)
		require.Equal(t, val, rtValueOf(t, c, dst))
		// Overwriting an existing charon-rl key is allowed.
		require.Equal(t, "OK", c.Do(ctx, "CHARON.LOADVALUE", dst, string(val)).Val())
	}
	require.Equal(t, "global", rtStr(t, rtInspect(t, c, "rl:{c}:loaded", rtNow()), "kind"))
	require.NoError(t, c.Ping(ctx).Err())
}
