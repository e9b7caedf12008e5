// Package doctest replays the documentation. README.md and docs/*.md show redis-cli
// sessions and Go snippets; tests/docs_test.go checks that every session prints, byte
// for byte, what real `redis-cli --no-raw` prints against a server with the module,
// and that every Go snippet is the body of an Example function in the repository.
//
// The markdown convention:
//
//   - A fence whose info string is exactly `redis-cli` is replayed. Lines starting
//     with Prompt are commands (redis-cli itself splits them, quotes allowed); the lines
//     up to the next prompt or the fence end are that command's expected output.
//   - The blocks of one file run in order on one fresh server. A line
//     `<!-- doctest: new-server -->` before a block starts a fresh server for it (and
//     the blocks after it); `<!-- doctest: resp3 -->` replays the block with
//     `redis-cli -3`. Both may share one comment: `<!-- doctest: new-server resp3 -->`.
//   - `<!-- example: ExampleName -->` right before a ```go fence: the fence body must
//     equal the body of func ExampleName in one of the repository's *_test.go files.
//
// This package parses, replays (through a redis-cli process) and compares; it starts
// no server itself, so its parser is unit-tested without one.
package doctest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Prompt starts every command line in a replayed block.
const Prompt = "127.0.0.1:6379> "

// Step is one command and the output the document says it prints.
type Step struct {
	Line     int    // 1-based line of the command in the file
	Command  string // the text after the prompt
	Expected string // the output lines, joined by "\n" (no trailing newline)
}

// Block is one ```redis-cli fence.
type Block struct {
	Line      int // 1-based line of the opening fence
	indent    string
	NewServer bool
	RESP3     bool
	Steps     []Step
	// outLines[i] is the range [start, end) of Steps[i]'s output lines as 0-based
	// indexes into the file's lines, used by Rewrite.
	outLines [][2]int
}

// ExampleRef is a Go fence that must equal an Example function's body.
type ExampleRef struct {
	Line int // 1-based line of the opening fence
	Name string
	Body string // the fence's content, joined by "\n"
}

// File is a parsed markdown file.
type File struct {
	Name     string
	Blocks   []Block
	Examples []ExampleRef
	lines    []string
}

// Parse reads the replayed blocks and the example references of a markdown file.
func Parse(name string, md []byte) (*File, error) {
	f := &File{Name: name, lines: strings.Split(string(md), "\n")}
	var newServer, resp3 bool
	example := ""
	exampleLine := 0
	for i := 0; i < len(f.lines); i++ {
		line := f.lines[i]
		trimmed := strings.TrimSpace(line)
		if d, ok := comment(trimmed, "doctest:"); ok {
			for _, w := range strings.Fields(d) {
				switch w {
				case "new-server":
					newServer = true
				case "resp3":
					resp3 = true
				default:
					return nil, fmt.Errorf("%s:%d: unknown doctest directive %q (known: new-server, resp3)", name, i+1, w)
				}
			}
			continue
		}
		if e, ok := comment(trimmed, "example:"); ok {
			if example != "" {
				return nil, fmt.Errorf("%s:%d: example %s is not followed by a ```go fence", name, exampleLine, example)
			}
			example, exampleLine = strings.TrimSpace(e), i+1
			if example == "" {
				return nil, fmt.Errorf("%s:%d: <!-- example: --> without a name", name, i+1)
			}
			continue
		}
		if !strings.HasPrefix(trimmed, "```") {
			if example != "" && trimmed != "" {
				return nil, fmt.Errorf("%s:%d: example %s must be right before a ```go fence", name, exampleLine, example)
			}
			continue
		}
		// A fence: find its end (a line that is exactly the same fence marker).
		indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
		info := strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))
		end := -1
		for j := i + 1; j < len(f.lines); j++ {
			if strings.TrimSpace(f.lines[j]) == "```" {
				end = j
				break
			}
		}
		if end < 0 {
			return nil, fmt.Errorf("%s:%d: fence is never closed", name, i+1)
		}
		body := make([]string, 0, end-i-1)
		for _, l := range f.lines[i+1 : end] {
			body = append(body, strings.TrimPrefix(l, indent))
		}
		switch {
		case example != "":
			if info != "go" {
				return nil, fmt.Errorf("%s:%d: example %s is followed by a ```%s fence, want ```go", name, exampleLine, example, info)
			}
			f.Examples = append(f.Examples, ExampleRef{Line: i + 1, Name: example, Body: strings.Join(body, "\n")})
			example = ""
		case info == "redis-cli":
			b, err := parseBlock(name, i, body)
			if err != nil {
				return nil, err
			}
			b.NewServer, b.RESP3, b.indent = newServer, resp3, indent
			f.Blocks = append(f.Blocks, b)
		}
		newServer, resp3 = false, false
		i = end
	}
	if example != "" {
		return nil, fmt.Errorf("%s:%d: example %s is not followed by a ```go fence", name, exampleLine, example)
	}
	return f, nil
}

// comment returns the text of `<!-- key ... -->`.
func comment(line, key string) (string, bool) {
	if !strings.HasPrefix(line, "<!--") || !strings.HasSuffix(line, "-->") {
		return "", false
	}
	inner := strings.TrimSpace(line[4 : len(line)-3])
	if !strings.HasPrefix(inner, key) {
		return "", false
	}
	return strings.TrimSpace(inner[len(key):]), true
}

// parseBlock splits a fence body (starting after file line fence, 0-based) into steps.
func parseBlock(name string, fence int, body []string) (Block, error) {
	b := Block{Line: fence + 1}
	for k, l := range body {
		at := fence + 1 + k // 0-based file line of body[k]
		if strings.HasPrefix(l, Prompt) {
			b.Steps = append(b.Steps, Step{Line: at + 1, Command: strings.TrimPrefix(l, Prompt)})
			b.outLines = append(b.outLines, [2]int{at + 1, at + 1})
			continue
		}
		if len(b.Steps) == 0 {
			return b, fmt.Errorf("%s:%d: a redis-cli block must start with a %q line", name, at+1, Prompt)
		}
		last := len(b.Steps) - 1
		if b.outLines[last][1] > b.outLines[last][0] {
			b.Steps[last].Expected += "\n"
		}
		b.Steps[last].Expected += l
		b.outLines[last][1] = at + 1
	}
	if len(b.Steps) == 0 {
		return b, fmt.Errorf("%s:%d: a redis-cli block without commands", name, fence+1)
	}
	for _, s := range b.Steps {
		if strings.ContainsAny(s.Command, "\r") || strings.TrimSpace(s.Command) == "" {
			return b, fmt.Errorf("%s:%d: empty or malformed command", name, s.Line)
		}
	}
	return b, nil
}

// marker is what the replayer sends after each command to find where its output ends.
func marker(i int) string { return "charon-doctest-marker-" + strconv.Itoa(i) }

// Replay runs the block's commands through one redis-cli process (so a block shares a
// connection, as a session does) against host:port and returns each command's output
// as redis-cli --no-raw prints it. After each command it sends ECHO with a marker and
// splits the output there. MULTI cannot be shown this way (the ECHO would be queued).
func Replay(ctx context.Context, cli, host string, port int, b Block) ([]string, error) {
	var in bytes.Buffer
	for i, s := range b.Steps {
		in.WriteString(s.Command)
		in.WriteString("\nECHO " + marker(i) + "\n")
	}
	args := []string{"-h", host, "-p", strconv.Itoa(port), "--no-raw"}
	if b.RESP3 {
		args = append(args, "-3")
	}
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("redis-cli: %v: %s", err, stderr.String())
	}
	outputs := make([]string, len(b.Steps))
	cur := []string{}
	i := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if i < len(b.Steps) && line == strconv.Quote(marker(i)) {
			outputs[i] = strings.Join(cur, "\n")
			cur = cur[:0]
			i++
			continue
		}
		cur = append(cur, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if i != len(b.Steps) {
		return nil, fmt.Errorf("redis-cli printed %d of %d markers; output:\n%s", i, len(b.Steps), out)
	}
	if len(cur) > 0 {
		return nil, fmt.Errorf("redis-cli printed more after the last marker:\n%s", strings.Join(cur, "\n"))
	}
	return outputs, nil
}

// Mismatch describes a step whose output differs from the document.
type Mismatch struct {
	File     string
	Step     Step
	Actual   string
	Expected string
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%s:%d: %s%s\n--- the document says:\n%s\n--- redis-cli prints:\n%s",
		m.File, m.Step.Line, Prompt, m.Step.Command, m.Expected, m.Actual)
}

// Compare returns the steps whose actual output differs from the expected one.
func Compare(file string, b Block, actual []string) []Mismatch {
	var ms []Mismatch
	for i, s := range b.Steps {
		if i >= len(actual) || actual[i] != s.Expected {
			a := ""
			if i < len(actual) {
				a = actual[i]
			}
			ms = append(ms, Mismatch{File: file, Step: s, Actual: a, Expected: s.Expected})
		}
	}
	return ms
}

// Rewrite returns the file with each block's expected outputs replaced by actual
// (actual[k] holds the outputs of Blocks[k]); everything else is kept byte for byte.
// It is how a writer records real output (CHARON_DOCS_UPDATE=1) instead of typing it.
func (f *File) Rewrite(actual [][]string) []byte {
	type repl struct {
		start, end int // 0-based file lines [start, end) replaced
		lines      []string
	}
	var rs []repl
	for k, b := range f.Blocks {
		if k >= len(actual) {
			break
		}
		for i := range b.Steps {
			if i >= len(actual[k]) {
				break
			}
			r := repl{start: b.outLines[i][0], end: b.outLines[i][1]}
			if actual[k][i] != "" {
				for _, l := range strings.Split(actual[k][i], "\n") {
					r.lines = append(r.lines, b.indent+l)
				}
			}
			rs = append(rs, r)
		}
	}
	var out []string
	next := 0
	for _, r := range rs {
		out = append(out, f.lines[next:r.start]...)
		out = append(out, r.lines...)
		next = r.end
	}
	out = append(out, f.lines[next:]...)
	return []byte(strings.Join(out, "\n"))
}
