// Package examples holds the runnable examples of the Go clients (module/ratelimit and
// module/unread) that docs/go-client.md copies. They run against real servers started
// by tests/harness and only with the build tag:
//
//	go test -tags integration ./tests/examples/
//
// Without the tag this package is empty, so `go test ./...` stays fast.
package examples
