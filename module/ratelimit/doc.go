// Package ratelimit is the Go client of CHARON.RATE, Charon's tiered rate limiter in
// Redis. Servers ask it, before touching a protected resource, how many hits they may
// use on behalf of a domain (a user, a tenant):
//
//	limiter := ratelimit.NewLimiter(rdb, nil) // any go-redis v9 client
//	api := ratelimit.PerSecond("api", 5)
//	res, err := limiter.Allow(ctx, &api, userID)
//	if err != nil { ... }          // no answer; see below
//	if res.Granted == 0 { ... }    // rejected: res.RetryAfter says when to come back
//
// A Resource carries its tiers (Tier: limit per window, active time, cooldown,
// skippable), an optional per-domain Hard cap and an optional resource-wide Global
// cap, all validated before anything is sent. KeyNames is the one key-naming rule: it
// keeps a resource's keys in one cluster slot only when Global needs it.
//
// Failure modes are explicit:
//   - Every request travels inside MULTI/EXEC, so go-redis never sends it twice; a
//     request whose fate is unknown (a timeout after it was written) returns an error
//     wrapping ErrOutcomeUnknown and is never retried.
//   - Options.FailOpen grants max(Min, 1) when Redis provably did not get the request
//     (unreachable, pool exhausted, cluster down) and reports it via OnFailOpen and
//     Result.Override.
//   - Limiter.SetKillSwitch turns rejections into grants, reported in Result.Override.
//
// RequestArgs.MaxWait lets a request wait for a rejection to clear: it is repeated
// after the server's RetryAfter with exponential backoff and ±25% jitter, never
// sleeping past the deadline. Limiter.Middleware adds limits to a net/http handler
// with RateLimit, RateLimit-Policy and Retry-After header fields.
package ratelimit
