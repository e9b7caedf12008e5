package local

import "math"

// The estimator: what share of a domain's (a resource's) traffic does this instance
// carry? Every reply Redis sends says how many hits the whole fleet was granted over
// the last second (domain_hits, global_hits); the instance knows how many of those
// were its own (a ring of its grants over the last second). Both are sampled just
// before the request's own grant (the reply's count minus the request's grant), so a
// sample is what the window held when the request arrived, not a window that always
// includes one hit of ours: at low rates the latter would overstate the share (an
// instance that asks once a second would always find itself in the window).
//
// A resource's share is a ratio of sums:
//
//	share = (Σ mine + P·prior) / (Σ total + P)
//
// The sums decay with a half-life (Config.HalfLife) so that a share follows a fleet
// that grows or shrinks; a ratio of sums (not an average of ratios) keeps samples of
// nearly empty windows from weighing as much as full ones. prior is what is assumed
// without evidence (Config.Prior), and P (priorHits) how much evidence it is worth.
//
// A domain's share leans on its resource's. Behind a fair balancer every domain's
// share is the resource's, but the grants of one domain are few (10 a second at a
// limit of 10/s) and which instance gets each is chance, so a domain's own ratio
// wanders: over 70 grants, an instance with a true share of 1/4 sees 0.19 to 0.34. A
// share too high by that much would grant a hit more per window on some instances.
// So a domain's own ratio is used only when it differs from the resource's by more
// than chance explains: with n grants of the domain in the estimator's horizon, the
// instance's count is binomial (n, s), and the ratio's z-score against the resource's
// share decides: below 2, the resource's share; above 4, the domain's own; linear in
// between. A domain that a sticky balancer sends to this instance only (a ratio of 1)
// or never (0) stands out after a handful of grants.

// priorHits is the weight of the prior, in hits of evidence.
const priorHits = 4

// ratio is a pair of exponentially decayed sums, mine over total, and the decayed
// number of samples.
type ratio struct {
	num, den float64
	cnt      float64 // samples
	at       int64   // time (ms) of the last sample
	first    int64   // time of the first sample
}

// add decays the sums to now and adds one sample: m of our hits among d.
func (r *ratio) add(m, d float64, now, halfLife int64) {
	if r.cnt == 0 {
		r.first, r.at = now, now
	}
	if now > r.at {
		f := math.Exp2(-float64(now-r.at) / float64(halfLife))
		r.num *= f
		r.den *= f
		r.cnt *= f
		r.at = now
	}
	r.num += m
	r.den += d
	r.cnt++
}

// share is the estimate, leaning on prior while the evidence is thin, in [0, 1].
func (r *ratio) share(prior float64) float64 {
	s := (r.num + priorHits*prior) / (r.den + priorHits)
	return min(max(s, 0), 1)
}

// hits estimates the number of distinct hits the samples saw (each sample counts the
// hits of the second before it, so a hit is seen by as many samples as the instance
// makes in a second): den over the sampling rate, cnt samples over the decayed time
// they span.
func (r *ratio) hits(halfLife int64) float64 {
	if r.cnt == 0 {
		return 0
	}
	tau := float64(halfLife) / math.Ln2 // mean life, ms
	span := tau * -math.Expm1(-float64(r.at-r.first+1000)/tau)
	perSecond := r.cnt / span * 1000
	return r.den / max(perSecond, 1)
}

// leaning returns a domain's share given its resource's, sr (see above).
func (r *ratio) leaning(sr float64, halfLife int64) float64 {
	if r.den <= 0 {
		return sr
	}
	own := min(r.num/r.den, 1)
	n := r.hits(halfLife)
	sigma := math.Sqrt(sr * (1 - sr) / max(n, 1))
	w := 1.0
	if sigma > 0 {
		w = min(max((math.Abs(own-sr)/sigma-2)/2, 0), 1)
	}
	return sr + w*(own-sr)
}

// ring counts this instance's grants over the last second, in buckets of bucketMs.
type ring struct {
	head int64 // bucket number of the newest bucket; buckets older than ringLen are gone
	n    [ringLen]uint32
}

const (
	bucketMs = 50
	// ringLen buckets cover a second and the bucket that straddles its start.
	ringLen = 1000/bucketMs + 1
)

func bucketOf(t int64) int64 {
	q := t / bucketMs
	if t%bucketMs != 0 && t < 0 {
		q--
	}
	return q
}

func slot(k int64) int {
	s := k % ringLen
	if s < 0 {
		s += ringLen
	}
	return int(s)
}

// add records n hits at t. A time more than a second behind the newest is dropped (a
// clock that stepped back by that much has nothing useful to say about the last second).
func (g *ring) add(t, n int64) {
	k := bucketOf(t)
	switch {
	case k > g.head:
		for j := max(g.head+1, k-ringLen+1); j <= k; j++ {
			g.n[slot(j)] = 0
		}
		g.head = k
	case k <= g.head-ringLen:
		return
	}
	s := &g.n[slot(k)]
	*s = uint32(min(int64(*s)+n, math.MaxUint32))
}

// last is the number of hits in [now-1000, now], the oldest bucket weighted by the
// part of it inside (hits are taken as spread evenly over a bucket).
func (g *ring) last(now int64) float64 {
	lo := now - 1000
	k0, kt := bucketOf(lo), bucketOf(now)
	var s float64
	for k := max(k0, g.head-ringLen+1); k <= min(kt, g.head); k++ {
		c := float64(g.n[slot(k)])
		if k == k0 {
			c *= float64(k0*bucketMs+bucketMs-lo) / bucketMs
		}
		s += c
	}
	return s
}

// each calls f(t, n) for the buckets with hits that end after since and lie within
// the second before now, oldest first, t being the bucket's last millisecond (capped
// at now): the conservative time to replay them at.
func (g *ring) each(since, now int64, f func(t, n int64)) {
	for k := max(bucketOf(now-1000), g.head-ringLen+1); k <= min(bucketOf(now), g.head); k++ {
		n := g.n[slot(k)]
		end := min(k*bucketMs+bucketMs-1, now)
		if n == 0 || end <= since {
			continue
		}
		f(end, int64(n))
	}
}
