// Package ratelimit is the Go client of CHARON.RATE, Charon's tiered rate limiter in
// Redis: the package a Go server imports to ask Redis for hits.
//
//	import "github.com/charon-redis/charon/module/ratelimit"
//
// (module/rate, next to it, is the engine inside the Redis module; servers never
// import it.) Before touching a protected resource, a server asks how many hits it may
// use on behalf of a domain (a user, a tenant):
//
//	limiter := ratelimit.NewLimiter(rdb, nil) // any go-redis v9 client
//	res, err := limiter.Allow(ctx, ratelimit.PerSecond("api", 10), userID)
//	if err != nil { ... }       // no answer; see below
//	if !res.Allowed() { ... }   // rejected: res.RetryAfter says when to come back
//
// Two styles, one Limiter:
//   - redis_rate's shapes: Allow, AllowN (all or nothing), AllowAtMost (up to n),
//     Reset, and a Result with Remaining, RetryAfter and ResetAfter as durations
//     (RetryAfter 0 on a grant, Never when no wait can help).
//   - Charon's tiers: a Resource carries its tiers (Tier: limit per window, active
//     time, cooldown, skippable), an optional per-domain Hard cap and an optional
//     resource-wide Global cap over a second, and caps over any other window (Caps,
//     GlobalCaps: "1,000 per hour and 10,000 per day", checked and counted with the
//     tiers), validated before anything is sent; Request and RequestWith ask for
//     between Min and Max hits, optionally waiting (MaxWait).
//
// KeyNames is the one key-naming rule: it keeps a resource's keys in one cluster slot
// only when a global limit needs it. Requests carry the tiers and caps in CHARON.RATE's
// compact form (LIMITS "10/1s; 1000/1h", GLOBAL gkey "2000000/1d"), encoded once per
// Resource and cached in it.
//
// How requests travel: requests that goroutines make at the same moment share round
// trips (one go-redis pipeline), and a lone request is sent at once. Every request
// carries ONCE with a random token: when its answer is lost it is sent again with the
// same token, and the server answers the replay without counting it again.
//
// Failure modes are explicit:
//   - Every attempt is bounded by Options.Timeout (DefaultTimeout, 100ms), so a limiter
//     on every request's path never waits for go-redis's own dial retries.
//   - A request whose every attempt lost its answer (Options.Resends) returns an error
//     wrapping ErrOutcomeUnknown: it was counted at most once.
//   - Options.FailOpen grants max(Min, 1) when Redis provably did not get the request
//     (unreachable, pool exhausted, the Timeout ran out before sending, cluster down)
//     and reports it via OnFailOpen, the Observer and Result.Override.
//   - Options.FailLocal keeps limiting instead (degraded mode): the Limiter learns
//     this instance's share of each resource's and domain's traffic from Redis's
//     replies, and while Redis is unreachable decides every request locally under
//     that share of every limit, probing Redis at most every 500ms; Result.Local and
//     the Observer (OutcomeDegraded, OutcomeRecovered, OutcomeLocalGranted,
//     OutcomeLocalRejected) say so.
//   - A server without the module (managed Redis) gets the same rules as server-side
//     scripts (Options.Engine, Limiter.Engine). A cluster reached through a
//     *redis.Client is an error wrapping ErrMisconfigured that names the fix (checked
//     before the first request and after connection trouble), never a fail-open.
//   - Limiter.SetKillSwitch turns rejections into grants, reported in Result.Override.
//
// Options.Observer sees every request's outcome (grant, rejection, kill-switch or
// fail-open grant, local decision, error), resource and latency: the hook for metrics, with no
// dependency. Limiter.Middleware adds limits to a net/http handler with RateLimit,
// RateLimit-Policy and Retry-After header fields; a request without a domain is
// answered 400. docs/go-client.md is the guide.
package ratelimit
