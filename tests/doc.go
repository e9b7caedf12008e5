// Package tests holds the integration tests. They start real redis-server
// processes through tests/harness and run only with the build tag:
//
//	go test -tags integration ./tests/...
//
// Without the tag this package is empty, so `go test ./...` stays fast.
package tests
