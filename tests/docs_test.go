//go:build integration

package tests

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/charon-redis/charon/tests/doctest"
	"github.com/charon-redis/charon/tests/harness"
)

// envDocsUpdate=1 makes TestDocs write the real output into the documents instead of
// failing: how a writer records a session rather than typing it. Review the diff.
const envDocsUpdate = "CHARON_DOCS_UPDATE"

// docFiles are README.md and docs/*.md, relative to the repository root.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{"README.md"}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	sort.Strings(more)
	for _, m := range more {
		rel, err := filepath.Rel(root, m)
		require.NoError(t, err)
		files = append(files, rel)
	}
	return files
}

// TestDocs replays every redis-cli session of the documentation against a real server
// with the module and checks every Go snippet against its Example function.
func TestDocs(t *testing.T) {
	root := harness.RepoRoot(t)
	bodies, err := doctest.ExampleBodies(root)
	require.NoError(t, err)
	update := os.Getenv(envDocsUpdate) == "1"
	for _, rel := range docFiles(t, root) {
		t.Run(strings.ReplaceAll(rel, "/", "_"), func(t *testing.T) {
			path := filepath.Join(root, rel)
			md, err := os.ReadFile(path)
			require.NoError(t, err)
			f, err := doctest.Parse(rel, md)
			require.NoError(t, err)
			for _, msg := range doctest.CheckExamples(f, bodies) {
				t.Error(msg)
			}
			actual, mismatches := replayDoc(t, f)
			if update {
				if len(mismatches) > 0 {
					require.NoError(t, os.WriteFile(path, f.Rewrite(actual), 0o644))
					t.Logf("%s: wrote the real output of %d commands", rel, len(mismatches))
				}
				return
			}
			for _, m := range mismatches {
				t.Error(m.String())
			}
		})
	}
}

// replayDoc runs the file's blocks in order on one fresh server (a new one where a
// block asks for it) and returns every output and every mismatch.
func replayDoc(t *testing.T, f *doctest.File) ([][]string, []doctest.Mismatch) {
	t.Helper()
	cli := harness.RedisCLIPath(t)
	var srv *harness.Server
	var actual [][]string
	var mismatches []doctest.Mismatch
	for _, b := range f.Blocks {
		if srv == nil || b.NewServer {
			srv = harness.Start(t, harness.Options{})
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := doctest.Replay(ctx, cli, "127.0.0.1", srv.Port(), b)
		cancel()
		require.NoError(t, err, "%s:%d", f.Name, b.Line)
		actual = append(actual, out)
		mismatches = append(mismatches, doctest.Compare(f.Name, b, out)...)
	}
	return actual, mismatches
}

// TestDocsReplayerCatchesEdits proves the doc test can fail: a copy of README.md with
// one character of one expected output changed is reported at exactly that command,
// and a copy with one Go snippet changed is reported too, while the copies as they
// are pass.
func TestDocsReplayerCatchesEdits(t *testing.T) {
	root := harness.RepoRoot(t)
	md, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	f, err := doctest.Parse("README.md", md)
	require.NoError(t, err)
	require.NotEmpty(t, f.Blocks, "README.md has no redis-cli block")
	require.NotEmpty(t, f.Examples, "README.md has no Go example")

	_, clean := replayDoc(t, f)
	require.Empty(t, clean, "README.md as it is must replay cleanly")

	// Change the last character of the first non-empty expected output.
	lines := strings.Split(string(md), "\n")
	edited := -1
	for _, b := range f.Blocks {
		for _, s := range b.Steps {
			if s.Expected != "" {
				edited = s.Line // the output starts on the line after the command (1-based s.Line)
				break
			}
		}
		if edited >= 0 {
			break
		}
	}
	require.GreaterOrEqual(t, edited, 0, "README.md has no command with output")
	l := lines[edited]
	last := l[len(l)-1]
	repl := byte('7')
	if last == '7' {
		repl = '8'
	}
	lines[edited] = l[:len(l)-1] + string(repl)
	doctored, err := doctest.Parse("README.md (doctored)", []byte(strings.Join(lines, "\n")))
	require.NoError(t, err)
	_, ms := replayDoc(t, doctored)
	require.Len(t, ms, 1, "one edited output line must give exactly one mismatch")
	require.Equal(t, edited, ms[0].Step.Line, "the mismatch names the edited command's line")
	require.NotEqual(t, ms[0].Expected, ms[0].Actual)

	// The same for a Go snippet: one changed character in the fence.
	bodies, err := doctest.ExampleBodies(root)
	require.NoError(t, err)
	require.Empty(t, doctest.CheckExamples(f, bodies))
	ex := f.Examples[0]
	lines = strings.Split(string(md), "\n")
	lines[ex.Line] += " // edited"
	doctored, err = doctest.Parse("README.md (doctored)", []byte(strings.Join(lines, "\n")))
	require.NoError(t, err)
	msgs := doctest.CheckExamples(doctored, bodies)
	require.Len(t, msgs, 1)
	require.Contains(t, msgs[0], ex.Name)
}
