//go:build integration

package examples_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/charon-redis/charon/tests/harness"
)

// The examples' servers, started once by TestMain: addr is a single node with the
// module, clusterAddrs the primaries and replicas of a 3-primary cluster.
var (
	addr         string
	clusterAddrs []string
)

func TestMain(m *testing.M) {
	tb := &mainTB{}
	code := func() (code int) {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(mainTBFailed); !ok {
					panic(r)
				}
				code = 1
			}
		}()
		addr = harness.Start(tb, harness.Options{}).Addr()
		for _, s := range harness.StartCluster(tb, harness.Options{}).Nodes() {
			clusterAddrs = append(clusterAddrs, s.Addr())
		}
		// go-redis logs failed optional handshakes (CLIENT MAINT_NOTIFICATIONS on 7.0)
		// to stderr; the examples' output is stdout, so keep stderr readable.
		redis.SetLogger(quietLogger{})
		return m.Run()
	}()
	tb.cleanup()
	if tb.Failed() && code == 0 {
		code = 1
	}
	os.Exit(code)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// mainTB is the testing.TB the harness needs outside a test: TestMain has none.
// It implements what the harness calls (Helper, Name, Logf, Errorf, Fatalf, Failed,
// Cleanup); the embedded nil TB is never reached.
type mainTB struct {
	testing.TB
	mu       sync.Mutex
	failed   bool
	cleanups []func()
}

type mainTBFailed struct{}

func (*mainTB) Helper()      {}
func (*mainTB) Name() string { return "examples" }

func (*mainTB) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func (t *mainTB) Errorf(format string, args ...any) {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func (t *mainTB) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	panic(mainTBFailed{})
}

func (t *mainTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *mainTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// cleanup runs the cleanups last-registered first, as testing does.
func (t *mainTB) cleanup() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
