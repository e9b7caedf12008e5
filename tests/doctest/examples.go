package doctest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ExampleBodies returns, for every Example function in the *_test.go files under root
// (build/ and hidden or testdata directories left out), the bodies found under that
// name: the text between the braces with one level of indentation removed.
func ExampleBodies(root string) (map[string][]string, error) {
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "build" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, path, src, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("doctest: %v", err)
		}
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || fn.Body == nil || !strings.HasPrefix(fn.Name.Name, "Example") {
				continue
			}
			lb := fset.Position(fn.Body.Lbrace).Offset
			rb := fset.Position(fn.Body.Rbrace).Offset
			out[fn.Name.Name] = append(out[fn.Name.Name], dedent(string(src[lb+1:rb])))
		}
		return nil
	})
	return out, err
}

// dedent drops the newline after "{", one leading tab per line and the trailing
// newline before "}".
func dedent(body string) string {
	body = strings.TrimPrefix(body, "\n")
	body = strings.TrimRight(body, "\n\t ")
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "\t")
	}
	return strings.Join(lines, "\n")
}

// CheckExamples returns one message per example reference of f that names no Example
// function, or whose fence differs from every function of that name.
func CheckExamples(f *File, bodies map[string][]string) []string {
	var msgs []string
	for _, e := range f.Examples {
		found := bodies[e.Name]
		if len(found) == 0 {
			msgs = append(msgs, fmt.Sprintf("%s:%d: no func %s in any *_test.go file", f.Name, e.Line, e.Name))
			continue
		}
		ok := false
		for _, b := range found {
			if b == e.Body {
				ok = true
				break
			}
		}
		if !ok {
			msgs = append(msgs, fmt.Sprintf("%s:%d: the ```go fence differs from the body of %s\n--- the document says:\n%s\n--- the function's body is:\n%s",
				f.Name, e.Line, e.Name, e.Body, found[0]))
		}
	}
	return msgs
}
