//go:build integration

package tests

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/tests/harness"
)

// TestModuleVersionFromVersionFile: the VERSION file is the one place the release is
// written; MODULE LIST shows it as MAJOR*10000+MINOR*100+PATCH and COMMAND DOCS shows
// it as every command's "since".
func TestModuleVersionFromVersionFile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "VERSION"))
	require.NoError(t, err)
	version := strings.TrimSpace(string(raw))
	parts := strings.Split(version, ".")
	require.Len(t, parts, 3, "VERSION %q is not MAJOR.MINOR.PATCH", version)
	want := int64(0)
	for _, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		require.NoError(t, err, "VERSION %q", version)
		want = want*100 + n
	}

	s := harness.Start(t, harness.Options{})
	require.Equal(t, want, s.Modules(t)["charon"], "MODULE LIST ver for VERSION %s", version)

	ctx := context.Background()
	names, err := s.Client(t).Do(ctx, "COMMAND", "LIST", "FILTERBY", "MODULE", "charon").StringSlice()
	require.NoError(t, err)
	require.Contains(t, names, "charon.rate")
	args := []any{"COMMAND", "DOCS"}
	for _, n := range names {
		args = append(args, n)
	}
	docs, err := s.Client(t).Do(ctx, args...).Result()
	require.NoError(t, err)
	m, err := harness.ReplyMap(docs)
	require.NoError(t, err)
	require.Len(t, m, len(names))
	for name, d := range m {
		dm, err := harness.ReplyMap(d)
		require.NoError(t, err, name)
		require.Equal(t, version, dm["since"], "COMMAND DOCS %s since", name)
	}
}
