package local

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/charon-redis/charon/module/rate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// server is Redis in the simulation: module/rate's Apply on values in a map, the
// same rules the module applies.
type server struct {
	vals map[string][]byte
}

func (s *server) rate(lim *Limits, domain string, now int64) Reply {
	var q rate.Request
	build(&q, lim, partDomain|partGlobal, 1, 1, 1, 1, false)
	res, nv, ngv, err := rate.Apply(s.vals[domain], s.vals["{global}"], &q, now, nil, nil)
	if err != nil {
		panic(err)
	}
	if res.Write {
		s.vals[domain] = nv
		if ngv != nil {
			s.vals["{global}"] = ngv
		}
	}
	f := &res.Fields
	return Reply{Granted: f[rate.FieldGranted], DomainHits: f[rate.FieldDomainHits], GlobalHits: f[rate.FieldGlobalHits]}
}

// mode is what an instance does while the server is unreachable.
type mode int

const (
	modeShare    mode = iota // this package: its learned share
	modeNaive                // the full limit locally (each instance for itself)
	modeFailOpen             // everything
)

func (m mode) String() string { return [...]string{"share", "naive local", "fail-open"}[m] }

// scenario is a simulated run: instances behind a balancer, domains asking at a
// known rate, the server unreachable from outageAt for outageMs.
type scenario struct {
	instances int
	domains   int
	rps       int                // requests per second, all domains together
	sticky    bool               // the balancer pins domain d to instance d % instances
	weights   []int              // requests per domain relative to each other (nil: even)
	lim       *Limits            // the resource
	mode      mode               // during the outage
	outageAt  int64              // ms after the start
	outageMs  int64              // how long
	endMs     int64              // length of the run
	seed      uint64             // traffic's seed
	cfg       Config             // the instances' tables
	admitted  map[[2]int64]int64 // (second, domain) -> hits admitted; domain -1: all

	// The instances' shares of the domains when the outage began: the least, the
	// most, and the largest sum over the instances for one domain.
	shareLo, shareHi, shareSum float64
}

// run drives the scenario and fills s.admitted.
func (s *scenario) run(t *testing.T) {
	srv := &server{vals: map[string][]byte{}}
	tables := make([]*Table, s.instances)
	rng := rand.New(rand.NewPCG(s.seed, 1))
	var cum []int
	for d := range s.domains {
		w := 1
		if s.weights != nil {
			w = s.weights[d]
		}
		cum = append(cum, w+sum(cum))
	}
	s.admitted = map[[2]int64]int64{}
	s.shareLo, s.shareHi, s.shareSum = 1, 0, 0
	noteShares := func() {
		for d := range s.domains {
			var tot float64
			for _, tb := range tables {
				sd, _, _ := tb.Shares("api", fmt.Sprint("d", d))
				s.shareLo, s.shareHi = min(s.shareLo, sd), max(s.shareHi, sd)
				tot += sd
			}
			s.shareSum = max(s.shareSum, tot)
		}
	}
	rr := 0
	down := false
	// The instances find Redis back one after the other, as their probes (every
	// 500 ms) succeed: instance i at the outage's end + 120*i ms.
	const probeEvery = 500
	left := make([]bool, s.instances)
	cfg := s.cfg
	cfg.Margin = probeEvery
	for i := range tables {
		tables[i] = New(cfg)
	}
	step := 1000.0 / float64(s.rps)
	for i := 0; ; i++ {
		off := int64(float64(i) * step)
		if off >= s.endMs {
			break
		}
		now := base + off
		d, _ := slices.BinarySearch(cum, rng.IntN(cum[len(cum)-1])+1)
		inst := rr % s.instances
		rr++
		if s.sticky {
			inst = d % s.instances
		}
		tb := tables[inst]
		dom := fmt.Sprint("d", d)
		outage := off >= s.outageAt && off < s.outageAt+s.outageMs
		if outage != down {
			down = outage
			if down && s.mode == modeShare {
				noteShares()
				for _, tb := range tables {
					tb.Enter()
				}
			}
		}
		back := s.outageAt + s.outageMs + int64(inst)*120
		if !outage && off >= s.outageAt && off < back {
			outage = true // this instance's probe has not found Redis yet
		} else if !outage && off >= back && !left[inst] && s.mode == modeShare && off >= s.outageAt {
			left[inst] = true
			tb.Leave(now)
		}
		var granted int64
		switch {
		case outage && s.mode == modeFailOpen:
			granted = 1
		case outage:
			// modeNaive: the instance never learned (no Observe), so its share is the
			// prior, 1: the full limits.
			dd, err := tb.Decide("api", dom, s.lim, 1, 1, false, now)
			require.NoError(t, err)
			granted = dd.Granted
		default:
			if s.mode == modeShare {
				ad, active, err := tb.Admit("api", dom, s.lim, 1, 1, false, now)
				require.NoError(t, err)
				if active && ad.Granted == 0 {
					break
				}
			}
			r := srv.rate(s.lim, dom, now)
			if s.mode == modeShare {
				tb.Observe("api", dom, r, now)
			}
			granted = r.Granted
		}
		sec := off / 1000
		s.admitted[[2]int64{sec, int64(d)}] += granted
		s.admitted[[2]int64{sec, -1}] += granted
	}
}

func sum(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	return xs[len(xs)-1]
}

// windows returns the admitted hits of seconds [from, to) for domain d (-1: all).
func (s *scenario) windows(from, to, d int64) []float64 {
	var out []float64
	for sec := from; sec < to; sec++ {
		out = append(out, float64(s.admitted[[2]int64{sec, d}]))
	}
	return out
}

// p95 is the 95th percentile (nearest rank) of xs.
func p95(xs []float64) float64 {
	ys := slices.Clone(xs)
	slices.Sort(ys)
	if len(ys) == 0 {
		return 0
	}
	i := (95*len(ys)+99)/100 - 1
	return ys[max(i, 0)]
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// report checks and prints one run: per one-second window, the hits admitted across
// the instances, for the resource and per domain, before, during and after the outage.
type report struct {
	before, during, after             float64 // mean admitted per second (all domains)
	p95During, maxDuring, maxAfter    float64 // the resource, per second
	p95DomDuring, maxDomAfter, minDom float64 // the worst domain
}

func (s *scenario) report() report {
	out0, out1 := s.outageAt/1000, (s.outageAt+s.outageMs)/1000
	var r report
	r.before = mean(s.windows(out0-5, out0, -1))
	dur := s.windows(out0, out1, -1)
	r.during, r.p95During, r.maxDuring = mean(dur), p95(dur), slices.Max(dur)
	aft := s.windows(out1, out1+5, -1)
	r.after, r.maxAfter = mean(aft), slices.Max(aft)
	r.minDom = 1e18
	for d := range int64(s.domains) {
		r.p95DomDuring = max(r.p95DomDuring, p95(s.windows(out0, out1, d)))
		r.maxDomAfter = max(r.maxDomAfter, slices.Max(s.windows(out1, out1+5, d)))
		r.minDom = min(r.minDom, mean(s.windows(out0, out1, d)))
	}
	return r
}

func (r report) String() string {
	return fmt.Sprintf("per second: before %.1f, during %.1f (p95 %.0f, max %.0f), after %.1f (max %.0f); worst domain: p95 during %.0f, max after %.0f, least mean during %.1f",
		r.before, r.during, r.p95During, r.maxDuring, r.after, r.maxAfter, r.p95DomDuring, r.maxDomAfter, r.minDom)
}

// acceptance is the scenario of tests/degraded_test.go: 4 instances, round robin, 20 hot domains at 5x
// their 10/1s limit, GLOBAL 100/1s, 10 s without Redis.
func acceptance(m mode) *scenario {
	return &scenario{
		instances: 4, domains: 20, rps: 1000, mode: m,
		lim:      perSecond(),
		outageAt: 20_000, outageMs: 10_000, endMs: 40_000, seed: 7,
	}
}

func TestSimulationAcceptance(t *testing.T) {
	const domainLimit, global = 10, 100
	s := acceptance(modeShare)
	s.run(t)
	r := s.report()
	t.Logf("share:       %v", r)
	t.Logf("shares of a domain: %.3f to %.3f, summed over the instances at most %.3f", s.shareLo, s.shareHi, s.shareSum)
	assert.InDelta(t, 0.25, s.shareLo, 0.03)
	assert.InDelta(t, 0.25, s.shareHi, 0.03)
	assert.InDelta(t, 1, s.shareSum, 0.05)
	assert.InDelta(t, global, r.before, 2, "the server's GLOBAL binds before the outage")
	assert.LessOrEqual(t, r.p95During, 1.25*global)
	assert.GreaterOrEqual(t, r.during, 0.6*r.before)
	assert.LessOrEqual(t, r.p95DomDuring, 1.25*domainLimit)
	assert.LessOrEqual(t, r.maxAfter, 1.25*global, "no burst when the server is back")
	assert.LessOrEqual(t, r.maxDomAfter, 1.25*domainLimit)
	assert.Positive(t, r.minDom, "every domain gets some")

	// The comparisons, through the same traffic: they break the limits, which shows
	// that the checks above can fail.
	for _, m := range []mode{modeNaive, modeFailOpen} {
		s := acceptance(m)
		s.run(t)
		r := s.report()
		t.Logf("%-12s %v", m.String()+":", r)
		assert.Greater(t, r.p95During, 1.25*global, m)
	}
}

func TestSimulationShapes(t *testing.T) {
	// Other balancers and traffic: the limits hold, and the fleet still gets a fair
	// part of them.
	for _, c := range []struct {
		name string
		s    scenario
	}{
		{"sticky: each domain on one instance", scenario{instances: 4, domains: 20, rps: 1000, sticky: true}},
		{"skewed: 2 domains carry most traffic", scenario{instances: 4, domains: 20, rps: 1000,
			weights: []int{40, 20, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}}},
		{"8 instances, 1/8 of 10 per second", scenario{instances: 8, domains: 20, rps: 1000}},
		{"3 instances, few requests", scenario{instances: 3, domains: 5, rps: 40}},
		{"no GLOBAL: the domains' limits bind", scenario{instances: 4, domains: 20, rps: 1000,
			lim: &Limits{Tiers: perSecond().Tiers}}},
		{"HARD and a burst tier", scenario{instances: 4, domains: 20, rps: 1000, lim: &Limits{
			Tiers:      []rate.Tier{{Limit: 4, Window: 1000, Active: 1000}, {Limit: 30, Window: 5000, Active: 5000, Cooldown: 5000}},
			Caps:       []rate.Cap{{Limit: 10, Window: 1000}},
			GlobalCaps: []rate.Cap{{Limit: 100, Window: 1000}},
		}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.s
			if s.lim == nil {
				s.lim = perSecond()
			}
			s.outageAt, s.outageMs, s.endMs, s.seed = 20_000, 10_000, 40_000, 11
			s.run(t)
			r := s.report()
			t.Logf("%v", r)
			global := float64(s.domains * 10)
			if len(s.lim.GlobalCaps) > 0 {
				global = 100
			}
			assert.LessOrEqual(t, r.p95During, 1.25*global)
			assert.GreaterOrEqual(t, r.during, 0.6*r.before)
			assert.LessOrEqual(t, r.p95DomDuring, 1.25*10)
			assert.LessOrEqual(t, r.maxAfter, 1.25*global)
			assert.LessOrEqual(t, r.maxDomAfter, 1.25*10)
		})
	}
}
