// Package concurrency is the Go client of Charon's copy-limited resources
// (CHARON.RESERVE, RELEASE, RENEW, TRANSFER, SEIZE) over go-redis v9: counting
// semaphores with per-domain, resource-wide and per-group limits, whose holds are
// leases that the server forgets at their deadline unless renewed.
//
// A Semaphore sends the commands; a Pool describes one resource and its limits;
// Reserve returns a *Hold to Release, Renew or Transfer; Do runs a function while
// holding copies, renews the lease in the background and cancels the function's
// context if the hold is lost. Fail-open and the kill switch behave as in package
// ratelimit and are reported by Hold.Override; Options.Timeout bounds each attempt,
// Options.Observer sees every command.
//
// There is no degraded mode like ratelimit's FailLocal: a hold lives until it is
// released or its lease ends, carries a fence that only Redis can issue, and is
// renewed and transferred through Redis, so a hold granted locally during an outage
// would be invisible to the rest of the fleet for up to its lease after Redis came
// back. While Redis is unreachable, Reserve returns the error (or, with FailOpen,
// grants), as documented.
//
// Commands that goroutines send at the same moment share round trips. RESERVE and
// TRANSFER carry ONCE with a random token, so one whose answer was lost is sent again
// and granted at most once (the same hold comes back); RELEASE of a whole hold, RENEW
// and SEIZE are sent again as they are. docs/go-client.md is the guide.
package concurrency
