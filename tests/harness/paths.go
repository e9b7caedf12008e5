// Package harness starts real redis-server processes for the integration tests:
// single servers, a primary with a replica, and a 3-primary cluster with replicas,
// each on free loopback ports with its own directory, torn down through t.Cleanup.
// It follows redismodule-rs tests/utils.rs: a missing binary or module fails the
// test (never a skip), and every wait is a poll with a deadline.
package harness

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Environment variables that relocate the binaries the harness runs.
const (
	EnvRedisBin = "CHARON_REDIS_BIN" // directory holding redis-server and redis-cli
	EnvModule   = "CHARON_MODULE"    // path of charon.so
)

const buildHint = "run `make build redis` in the repository root"

// RepoRoot returns the directory holding go.mod, searching upward from the working
// directory (go test runs each package in its own directory).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("harness: working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}

// RedisServerPath returns the redis-server binary, failing the test if it is missing.
func RedisServerPath(t testing.TB) string {
	t.Helper()
	return requireFile(t, filepath.Join(redisBinDir(t), "redis-server"), true)
}

// RedisCLIPath returns the redis-cli binary, failing the test if it is missing.
func RedisCLIPath(t testing.TB) string {
	t.Helper()
	return requireFile(t, filepath.Join(redisBinDir(t), "redis-cli"), true)
}

// ModulePath returns the absolute path of charon.so, failing the test if it is
// missing. Redis refuses a module file without the execute bit, so that is checked too.
func ModulePath(t testing.TB) string {
	t.Helper()
	p := os.Getenv(EnvModule)
	if p == "" {
		p = filepath.Join(RepoRoot(t), "build", "charon.so")
	}
	return requireFile(t, p, true)
}

func redisBinDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(EnvRedisBin); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(t), "build", "redis", "bin")
}

func requireFile(t testing.TB, p string, exec bool) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatalf("harness: %s: %v", p, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		t.Fatalf("harness: %s does not exist; %s (or set %s / %s)", abs, buildHint, EnvRedisBin, EnvModule)
	case err != nil:
		t.Fatalf("harness: %s: %v", abs, err)
	case fi.IsDir():
		t.Fatalf("harness: %s is a directory, want a file", abs)
	case exec && fi.Mode().Perm()&0o111 == 0:
		t.Fatalf("harness: %s is not executable; %s", abs, buildHint)
	}
	return abs
}

// runDir creates a fresh directory for one server under <repo>/build/test-runs.
// It is not t.TempDir because a failed test keeps it for inspection.
func runDir(t testing.TB) string {
	t.Helper()
	base := filepath.Join(RepoRoot(t), "build", "test-runs")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatalf("harness: %v", err)
	}
	dir, err := os.MkdirTemp(base, sanitize(t.Name())+"-")
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return dir
}

// sanitize turns a test name into something safe for a directory name.
func sanitize(name string) string {
	b := []byte(name)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) > 80 {
		b = b[:80]
	}
	return string(b)
}
