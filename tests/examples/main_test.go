//go:build integration

package examples_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/charon-redis/charon/tests/harness"
)

// The examples' servers, started once by TestMain: addr is a single node with the
// module, clusterAddrs the primaries and replicas of a 3-primary cluster, managedAddr
// a single node without the module that refuses TIME (as a managed service may).
var (
	addr         string
	clusterAddrs []string
	managedAddr  string
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
		managedAddr = harness.Start(tb, harness.Options{NoModule: true, Config: []string{`rename-command TIME ""`}}).Addr()
		for _, s := range harness.StartCluster(tb, harness.Options{}).Nodes() {
			clusterAddrs = append(clusterAddrs, s.Addr())
		}
		// go-redis logs to stderr. The examples configure their clients so that it has
		// nothing to say about them on Redis 7.0 (no CLIENT MAINT_NOTIFICATIONS
		// handshake to fail): a "maintnotifications" line fails the run.
		redis.SetLogger(logs)
		code = m.Run()
		if line := logs.find("maintnotifications"); line != "" {
			fmt.Fprintf(os.Stderr, "examples: go-redis logged %q; the docs' clients must not\n", line)
			code = 1
		}
		return code
	}()
	tb.cleanup()
	if tb.Failed() && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// logs keeps what go-redis logs during the examples and passes it on to stderr.
var logs = &logRecorder{}

type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Printf(_ context.Context, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	fmt.Fprintln(os.Stderr, "go-redis:", line)
}

// find returns the first line containing s, or "".
func (l *logRecorder) find(s string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

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
