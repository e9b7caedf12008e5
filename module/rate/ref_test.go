package rate

import (
	"strconv"

	"github.com/charon-redis/charon/module/internal/ratemodel"
)

// The reference model of the rules lives in module/internal/ratemodel, written from
// the contract, not from this engine; this file adapts this package's Request to it.

type refKey = ratemodel.Key

type refGlobal = ratemodel.Global

func newRefKey(int) *refKey { return ratemodel.NewKey() }

// modelRequest is req in the model's terms: HARD n is the per-domain cap n/1000 ms,
// GLOBAL gkey n the global cap n/1000 ms, and the caps (rule 10) and ONCE (rule 11)
// as given.
func modelRequest(req *Request) ratemodel.Request {
	m := ratemodel.Request{
		Max: req.Max, Min: req.Min, Closed: req.Closed, DryRun: req.DryRun,
		Global: req.HasGlobal,
	}
	for _, t := range req.Tiers[:req.NTiers] {
		m.Tiers = append(m.Tiers, ratemodel.Tier{Limit: t.Limit, Window: t.Window, Active: t.Active, Cooldown: t.Cooldown, Skippable: t.Skippable})
	}
	for _, c := range req.Caps[:req.NCaps] {
		m.Caps = append(m.Caps, ratemodel.Cap{N: c.Limit, Window: c.Window})
	}
	if req.HasHard {
		m.Caps = append(m.Caps, ratemodel.Cap{N: req.Hard, Window: 1000})
	}
	if req.HasGlobal {
		if req.HasGlobalLimit {
			m.GlobalCaps = append(m.GlobalCaps, ratemodel.Cap{N: req.GlobalLimit, Window: 1000})
		}
		for _, c := range req.GlobalCaps[:req.NGlobalCaps] {
			m.GlobalCaps = append(m.GlobalCaps, ratemodel.Cap{N: c.Limit, Window: c.Window})
		}
	}
	if req.HasOnce {
		m.Once = strconv.FormatUint(req.Once, 16) // the hash the key remembers stands for the token
	}
	return m
}

type refResult struct {
	fields   [NumFields]int64
	granted  bool
	t        int64
	expireAt int64
}

// refRequest runs one request against the model, mutating it unless rejected or
// DRYRUN. With bruteRetry it computes retry_after; otherwise a rejection's
// retry_after is ratemodel.RetryUnknown.
func refRequest(k *refKey, g *refGlobal, req *Request, now int64, bruteRetry bool) refResult {
	m := modelRequest(req)
	r := ratemodel.Rate(k, g, &m, now, bruteRetry)
	return refResult{fields: r.Fields, granted: r.Granted, t: r.T, expireAt: r.ExpireAt}
}
