package doctest

import (
	"strings"
	"testing"
)

const sample = "# Title\n\n```redis-cli\n127.0.0.1:6379> SET k v\nOK\n127.0.0.1:6379> LPUSH l a b\n(integer) 2\n127.0.0.1:6379> LRANGE l 0 -1\n1) \"b\"\n2) \"a\"\n```\n\n" +
	"<!-- doctest: new-server resp3 -->\n```redis-cli\n127.0.0.1:6379> GET missing\n(nil)\n```\n\n" +
	"<!-- example: ExampleFoo -->\n```go\nfmt.Println(1)\n// Output: 1\n```\n\n```sh\n127.0.0.1:6379> not replayed\n```\n"

func TestParse(t *testing.T) {
	f, err := Parse("sample.md", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Blocks) != 2 || len(f.Examples) != 1 {
		t.Fatalf("blocks %d examples %d, want 2 and 1", len(f.Blocks), len(f.Examples))
	}
	b := f.Blocks[0]
	if b.NewServer || b.RESP3 || len(b.Steps) != 3 {
		t.Fatalf("first block: %+v", b)
	}
	if s := b.Steps[2]; s.Line != 8 || s.Command != "LRANGE l 0 -1" || s.Expected != "1) \"b\"\n2) \"a\"" {
		t.Fatalf("third step: %+v", s)
	}
	if b := f.Blocks[1]; !b.NewServer || !b.RESP3 || b.Steps[0].Expected != "(nil)" {
		t.Fatalf("second block: %+v", b)
	}
	if e := f.Examples[0]; e.Name != "ExampleFoo" || e.Body != "fmt.Println(1)\n// Output: 1" {
		t.Fatalf("example: %+v", e)
	}
}

func TestParseErrors(t *testing.T) {
	for name, md := range map[string]string{
		"no prompt first":   "```redis-cli\nOK\n```\n",
		"unclosed":          "```redis-cli\n127.0.0.1:6379> PING\n",
		"example not go":    "<!-- example: ExampleX -->\n```sh\nx\n```\n",
		"example far":       "<!-- example: ExampleX -->\ntext\n```go\nx\n```\n",
		"unknown directive": "<!-- doctest: sometimes -->\n```redis-cli\n127.0.0.1:6379> PING\nPONG\n```\n",
	} {
		if _, err := Parse(name, []byte(md)); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

func TestCompareAndRewrite(t *testing.T) {
	f, err := Parse("sample.md", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	same := [][]string{{"OK", "(integer) 2", "1) \"b\"\n2) \"a\""}, {"(nil)"}}
	if ms := Compare("sample.md", f.Blocks[0], same[0]); len(ms) != 0 {
		t.Fatalf("equal output reported: %v", ms)
	}
	if got := string(f.Rewrite(same)); got != sample {
		t.Fatalf("rewrite with the same output changed the file:\n%s", got)
	}
	changed := [][]string{{"OK", "(integer) 3", "1) \"c\""}, {""}}
	ms := Compare("sample.md", f.Blocks[0], changed[0])
	if len(ms) != 2 || ms[0].Step.Line != 6 || ms[1].Step.Line != 8 {
		t.Fatalf("mismatches: %v", ms)
	}
	want := strings.NewReplacer("(integer) 2", "(integer) 3", "1) \"b\"\n2) \"a\"", "1) \"c\"", "GET missing\n(nil)\n", "GET missing\n").Replace(sample)
	if got := string(f.Rewrite(changed)); got != want {
		t.Fatalf("rewrite:\n%s\nwant:\n%s", got, want)
	}
}

func TestDedent(t *testing.T) {
	if got := dedent("\n\tx := 1\n\tif x > 0 {\n\t\tfmt.Println(x)\n\t}\n"); got != "x := 1\nif x > 0 {\n\tfmt.Println(x)\n}" {
		t.Fatalf("dedent: %q", got)
	}
}
