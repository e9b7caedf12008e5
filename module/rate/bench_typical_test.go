package rate

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// The server's common case (redis-benchmark against CHARON.RATE rl:<random of 100k>
// with three tiers): every key is hit about every 0.7 s, so it holds 1-3 earlier hits
// in its windows; the request is parsed by the glue's Parser and applied with
// ApplyInPlace into the stored block, which has spare capacity.
const (
	typicalLimits = "10/1s,50/5s/5s/15s,1000/1m/1m/10m"
	typicalTiers  = "MAX 1 TIER 10 1000 1000 0 TIER 50 5000 5000 15000 TIER 1000 60000 60000 600000"
	typicalKeys   = 1024 // a working set well beyond the L1 cache, as on the server
	typicalSched  = 4096 // length of the precomputed key/gap schedule (power of 2)
	typicalBlock  = 128  // bytes per stored block (an allocator size class)
	typicalT0     = 1_700_000_000_000
)

// typicalStore holds the keys' values in fixed blocks and a schedule of which key is
// hit next and how long after its previous hit (200-1200 ms, 0.7 s on average).
type typicalStore struct {
	blocks [typicalKeys][]byte // cap typicalBlock, len the value's
	vals   [typicalKeys][]byte
	now    [typicalKeys]int64
	key    [typicalSched]int
	gap    [typicalSched]int64
	out    []byte
}

func newTypicalStore() *typicalStore {
	s := &typicalStore{out: make([]byte, 0, 4096)}
	rng := rand.New(rand.NewPCG(1, 2))
	for k := range s.blocks {
		s.blocks[k] = make([]byte, 0, typicalBlock)
		s.now[k] = typicalT0 + rng.Int64N(1000)
	}
	// Random order, every key equally often.
	for i := range s.key {
		s.key[i] = i % typicalKeys
		s.gap[i] = 200 + rng.Int64N(1001)
	}
	rng.Shuffle(len(s.key), func(a, b int) { s.key[a], s.key[b] = s.key[b], s.key[a] })
	return s
}

// hit runs step i of the schedule: the request at the key's next time, stored as the
// glue stores it (in place when it fits, else copied into the key's block).
func (s *typicalStore) hit(tb testing.TB, i int, req *Request) Result {
	k := s.key[i&(typicalSched-1)]
	s.now[k] += s.gap[i&(typicalSched-1)]
	res, nv, _, err := ApplyInPlace(s.vals[k], nil, req, s.now[k], s.out[:0], nil)
	if err != nil {
		tb.Fatal(err)
	}
	if res.Write {
		if len(nv) > typicalBlock {
			tb.Fatalf("value of %d bytes outgrew its block", len(nv))
		}
		if len(nv) == 0 || &nv[0] != &s.blocks[k][:1][0] {
			nv = append(s.blocks[k][:0], nv...)
		}
		s.vals[k] = nv
	}
	return res
}

// liveHits is the average number of hits the keys hold in their 1 s window.
func (s *typicalStore) liveHits(tb testing.TB) float64 {
	var n int
	for k := range s.vals {
		v, err := Decode(s.vals[k])
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range v.Events {
			if e.At >= v.Last-1000 {
				n++
			}
		}
	}
	return float64(n) / typicalKeys
}

func typicalArgs(form string) [][]byte {
	if form == "limits" {
		return [][]byte{[]byte("LIMITS"), []byte(typicalLimits)}
	}
	return words(typicalTiers)
}

// BenchmarkApplyTypical: parse and apply of the server's common request. grant: keys
// hit about every 0.7 s (tier 1 only, 1-3 hits in its window); dryrun: the same
// without writing; reject: a key flooded past all three tiers.
func BenchmarkApplyTypical(b *testing.B) {
	for _, form := range []string{"limits", "tier"} {
		b.Run(form+"/grant", func(b *testing.B) { benchTypicalGrant(b, typicalArgs(form)) })
	}
	b.Run("limits/dryrun", func(b *testing.B) {
		benchTypicalGrant(b, append(typicalArgs("limits"), []byte("DRYRUN")))
	})
	b.Run("limits/reject", func(b *testing.B) { benchTypicalReject(b, typicalArgs("limits")) })
}

func benchTypicalGrant(b *testing.B, args [][]byte) {
	var p Parser
	var req Request
	s := newTypicalStore()
	// Warm up without DRYRUN so that every key holds its steady-state hits.
	var warm Request
	if err := p.Parse(typicalArgs("limits"), &warm); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 16*typicalKeys; i++ {
		s.hit(b, i, &warm)
	}
	live := s.liveHits(b)
	granted := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Parse(args, &req); err != nil {
			b.Fatal(err)
		}
		if s.hit(b, i, &req).Granted {
			granted++
		}
	}
	b.StopTimer()
	if granted != b.N {
		b.Fatalf("%d of %d granted", granted, b.N)
	}
	b.ReportMetric(live, "hits/key")
}

func benchTypicalReject(b *testing.B, args [][]byte) {
	var p Parser
	var req Request
	if err := p.Parse(args, &req); err != nil {
		b.Fatal(err)
	}
	// One hit per ms until all three tiers are full (10 + 50 + 1000 hits).
	val := make([]byte, 0, 8192)
	t := int64(typicalT0)
	for ; ; t++ {
		res, nv, _, err := ApplyInPlace(val, nil, &req, t, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		if !res.Granted {
			break
		}
		val = nv
	}
	keep := bytes.Clone(val)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Parse(args, &req); err != nil {
			b.Fatal(err)
		}
		res, nv, _, err := ApplyInPlace(val, nil, &req, t+int64(i&63), nil, nil)
		if err != nil || res.Granted || nv != nil {
			b.Fatalf("granted %v: %v", res.Granted, err)
		}
	}
	b.StopTimer()
	if !bytes.Equal(val, keep) {
		b.Fatal("a rejection changed the value")
	}
}
