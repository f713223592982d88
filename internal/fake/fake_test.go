package fake_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/fake"
	"github.com/termagent/termagent/qr"
)

var _ qr.EventLog = (*fake.EventLog)(nil)

func TestEventLogSeesEachIDOnce(t *testing.T) {
	var l fake.EventLog
	for _, c := range []struct {
		id   string
		seen bool
	}{{"ev-1", false}, {"ev-2", false}, {"ev-1", true}, {"ev-2", true}, {"ev-3", false}} {
		seen, err := l.SeenEvent(t.Context(), c.id)
		require.NoError(t, err)
		require.Equal(t, c.seen, seen, c.id)
		require.NoError(t, l.MarkEvent(t.Context(), c.id))
	}
}

// TestFakesStayOutOfTheBinaries: the fakes are linked into no binary, and no
// package the agent ships declares a type "for tests" (test doubles live here or
// in _test.go files).
func TestFakesStayOutOfTheBinaries(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command")
	}
	list := func(args ...string) string {
		cmd := exec.Command(goTool, append([]string{"list"}, args...)...)
		cmd.Dir = "../.."
		out, err := cmd.Output()
		require.NoError(t, err, "go list %v", args)
		return string(out)
	}
	const module = "github.com/termagent/termagent/"
	deps := strings.Fields(list("-deps", "./cmd/agent", "./cmd/sim"))
	require.NotContains(t, deps, module+"internal/fake")

	dirs := strings.Fields(list("-deps", "-f", "{{if not .Standard}}{{.ImportPath}}={{.Dir}}{{end}}", "./cmd/agent"))
	checked := 0
	for _, d := range dirs {
		path, dir, _ := strings.Cut(d, "=")
		if !strings.HasPrefix(path, module) {
			continue
		}
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ParseComments|parser.SkipObjectResolution)
			require.NoError(t, err)
			for _, decl := range file.Decls {
				g, ok := decl.(*ast.GenDecl)
				if !ok || g.Tok != token.TYPE {
					continue
				}
				for _, spec := range g.Specs {
					ts := spec.(*ast.TypeSpec)
					doc := g.Doc.Text() + ts.Doc.Text()
					require.NotContains(t, doc, "for tests", "%s: type %s is a test double shipped in the agent", f, ts.Name.Name)
				}
			}
			checked++
		}
	}
	require.Greater(t, checked, 50, "the agent's own source files were read")
}
