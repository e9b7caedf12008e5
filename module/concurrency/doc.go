// Package concurrency is the Go client of Charon's copy-limited resources
// (CHARON.RESERVE, RELEASE, RENEW, TRANSFER, SEIZE) over go-redis v9: counting
// semaphores with per-domain, resource-wide and per-group limits, whose holds are
// leases that the server forgets at their deadline unless renewed.
//
// A Semaphore sends the commands; a Pool describes one resource and its limits;
// Reserve returns a *Hold to Release, Renew or Transfer; Do runs a function while
// holding copies, renews the lease in the background and cancels the function's
// context if the hold is lost. Fail-open and the kill switch behave as in package
// ratelimit and are reported by Hold.Override.
package concurrency
