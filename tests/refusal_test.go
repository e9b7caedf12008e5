//go:build integration && matrix

package tests

// Run by `make test-matrix` (build tag `matrix`) against a server older than the
// module supports, named by CHARON_OLD_REDIS_BIN; unset or missing, the test fails.

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/tests/harness"
)

// refusalLine is what the module logs when the server is too old.
const refusalLine = "charon: refusing to load: needs Redis >= 7.0.0"

// crashMarks are what a Redis or Valkey crash report writes to the log.
var crashMarks = []string{"crashed by signal", "STACK TRACE", "BUG REPORT", "Segmentation fault"}

func requireNoCrash(t *testing.T, log string) {
	t.Helper()
	for _, m := range crashMarks {
		require.NotContains(t, log, m, "the server's log shows a crash")
	}
}

// TestOldServerRefusesLoad: on a server older than 7.0, charon.so refuses to load
// with its log line and the server does not crash: at startup (loadmodule) the server
// exits with its ordinary "module not loaded" handling; at run time MODULE LOAD
// answers an error and the server keeps serving.
func TestOldServerRefusesLoad(t *testing.T) {
	bin := os.Getenv("CHARON_OLD_REDIS_BIN")
	require.NotEmpty(t, bin, "CHARON_OLD_REDIS_BIN must name the bin directory of a server older than 7.0 (make test-matrix sets it)")
	t.Setenv(harness.EnvRedisBin, bin)
	version := oldServerVersion(t)

	t.Run("loadmodule", func(t *testing.T) {
		log := harness.StartFailure(t, harness.Options{Pre70: true})
		require.Contains(t, log, refusalLine+", server is "+version)
		require.Contains(t, log, "Module", "the server's own failed-load line")
		requireNoCrash(t, log)
	})

	t.Run("MODULE LOAD", func(t *testing.T) {
		s := harness.Start(t, harness.Options{Pre70: true, NoModule: true})
		c := s.Client(t, harness.Protocol(2))
		ctx := context.Background()
		require.NoError(t, c.Set(ctx, "before", "1", 0).Err())
		err := c.Do(ctx, "MODULE", "LOAD", harness.ModulePath(t)).Err()
		require.Error(t, err, "MODULE LOAD of charon.so on %s", version)
		harness.Eventually(t, 10*time.Second, func() (bool, string) {
			return s.LogContains(refusalLine), "no refusal line in the log:\n" + s.LogTail(20)
		})
		// Still serving, data intact, no module loaded.
		require.Equal(t, "PONG", c.Ping(ctx).Val())
		require.Equal(t, "1", c.Get(ctx, "before").Val())
		mods, err := c.Do(ctx, "MODULE", "LIST").Slice()
		require.NoError(t, err)
		require.Empty(t, mods)
		requireNoCrash(t, s.Log(t))
	})
}

// oldServerVersion runs redis-server --version and returns its version, which must
// be below 7.0.
func oldServerVersion(t *testing.T) string {
	t.Helper()
	raw, err := exec.Command(harness.RedisServerPath(t), "--version").Output()
	require.NoError(t, err)
	out := string(raw)
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			require.True(t, v < "7.", "%s is not older than 7.0", v)
			return v
		}
	}
	t.Fatalf("no v=<version> in %q", out)
	return ""
}
