// The "through the client" benchmark's load driver (make bench), a Go module of its
// own so that the project's go.mod does not depend on what it compares against
// (go-redis/redis_rate). It builds against this repository's clients (replace below).
module github.com/charon-redis/charon/tests/clientbench

go 1.24.0

require (
	github.com/charon-redis/charon v0.0.0
	github.com/go-redis/redis_rate/v10 v10.0.1
	github.com/redis/go-redis/v9 v9.16.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/dgryski/go-rendezvous v0.0.0-20200823014737-9f7001d12a5f // indirect
)

replace github.com/charon-redis/charon => ../..
