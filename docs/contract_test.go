// Tests that docs/ says what the code does, and that no document of the
// repository points outside it.
package docs_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/ppaas"
)

const root = ".."

func contract(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("contract.md")
	require.NoError(t, err)
	return string(b)
}

// section is a markdown section's text, up to the next heading of any level.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	require.GreaterOrEqual(t, i, 0, "no section %q", heading)
	body := doc[i+len(heading)+2:]
	if j := strings.Index(body, "\n#"); j >= 0 {
		body = body[:j]
	}
	return body
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocumentsStayInTheRepository: every relative link of every markdown file
// resolves to a file of the repository (a clone has nothing beside it), and
// none names the design notes' folder outside it.
func TestDocumentsStayInTheRepository(t *testing.T) {
	abs, err := filepath.Abs(root)
	require.NoError(t, err)
	checked := 0
	err = filepath.WalkDir(abs, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != abs || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".md") {
			return nil
		}
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		rel, _ := filepath.Rel(abs, path)
		require.NotContains(t, string(b), "../shared", "%s points outside the repository", rel)
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			dest := filepath.Clean(filepath.Join(filepath.Dir(path), target))
			require.True(t, strings.HasPrefix(dest, abs+string(filepath.Separator)) || dest == abs, "%s links %s, outside the repository", rel, m[1])
			_, err := os.Stat(dest)
			require.NoError(t, err, "%s links %s", rel, m[1])
		}
		checked++
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, checked, 3)
}

func TestContractMQTTTopic(t *testing.T) {
	require.Contains(t, contract(t), "**`"+ppaas.EventTopic("{serial}")+"`**")
}

// TestContractStatuses: the statuses the contract lists are exactly the PPaaS
// statuses the agent decodes as themselves (any other spelling is pending).
func TestContractStatuses(t *testing.T) {
	table := section(t, contract(t), "### PPaaS statuses")
	var listed []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(table, -1) {
		listed = append(listed, m[1])
	}
	require.NotEmpty(t, listed)
	for _, s := range listed {
		b, err := json.Marshal(map[string]string{"transactionId": "qr-1", "status": s})
		require.NoError(t, err)
		tx, err := ppaas.DecodeTransaction(b)
		require.NoError(t, err)
		require.Equal(t, s, string(tx.Status), "the contract lists %q as a PPaaS status", s)
	}
	var declared []string
	for _, v := range constants(t, "State", "qr", "ppaas") {
		if v != "unknown" { // the agent's own: an outcome it could not learn
			declared = append(declared, v)
		}
	}
	slices.Sort(listed)
	slices.Sort(declared)
	require.Equal(t, declared, listed, "docs/contract.md lists every PPaaS status the code declares")
}

// TestContractCategories: the Nexo categories the contract lists are the
// message categories the code declares.
func TestContractCategories(t *testing.T) {
	doc := section(t, contract(t), "## Nexo Retailer POI server (`nexo/`)")
	i := strings.Index(doc, "Categories:")
	require.GreaterOrEqual(t, i, 0)
	para, _, _ := strings.Cut(doc[i:], "\n\n")
	var listed []string
	for _, m := range regexp.MustCompile(`(?s)\*\*(.+?)\*\*`).FindAllStringSubmatch(para, -1) {
		for _, c := range strings.Split(m[1], ",") {
			listed = append(listed, strings.Join(strings.Fields(c), " "))
		}
	}
	declared := constants(t, "MessageCategory", "nexo")
	slices.Sort(listed)
	slices.Sort(declared)
	require.Equal(t, declared, listed)
}

// TestContractEndpoints: every endpoint of the device API table is a route the
// code names (the simulator serves it, or the agent calls it).
func TestContractEndpoints(t *testing.T) {
	table := section(t, contract(t), "## PPaaS device API (`qr/`, `agent/`)")
	rows := regexp.MustCompile("(?m)^\\| `(GET|POST) (/[^`]+)` \\|").FindAllStringSubmatch(table, -1)
	require.GreaterOrEqual(t, len(rows), 6)
	src := sources(t)
	param := regexp.MustCompile(`\{[a-zA-Z]+\}`) // {id}, {transactionId}: any name
	for _, r := range rows {
		path := param.ReplaceAllString(r[2], "{}")
		found := false
		for _, lit := range src {
			if strings.Contains(param.ReplaceAllString(lit, "{}"), path) {
				found = true
				break
			}
		}
		require.True(t, found, "%s %s: no route or call names it", r[1], r[2])
	}
}

// sources returns the string literals of the module's non-test Go files.
func sources(t *testing.T) []string {
	t.Helper()
	var lits []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && d.Name() != "." && d.Name() != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			if b, ok := n.(*ast.BasicLit); ok && b.Kind == token.STRING {
				if s, err := strconv.Unquote(b.Value); err == nil {
					lits = append(lits, s)
				}
			}
			return true
		})
		return nil
	})
	require.NoError(t, err)
	return lits
}

// constants returns the string values of the constants of the named type
// declared in the non-test files of the given package directories (those that
// exist).
func constants(t *testing.T, typ string, dirs ...string) []string {
	t.Helper()
	var out []string
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		require.NoError(t, err)
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			require.NoError(t, err)
			for _, decl := range f.Decls {
				g, ok := decl.(*ast.GenDecl)
				if !ok || g.Tok != token.CONST {
					continue
				}
				for _, spec := range g.Specs {
					vs := spec.(*ast.ValueSpec)
					if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != typ {
						continue
					}
					for _, v := range vs.Values {
						if b, ok := v.(*ast.BasicLit); ok && b.Kind == token.STRING {
							s, err := strconv.Unquote(b.Value)
							require.NoError(t, err)
							out = append(out, s)
						}
					}
				}
			}
		}
	}
	require.NotEmpty(t, out, "no constant of type %s in %v", typ, dirs)
	return out
}

// TestContractDisplayFields: the display JSON fields the contract lists are
// display.Screen's.
func TestContractDisplayFields(t *testing.T) {
	doc := section(t, contract(t), "## Terminal display (`display/`)")
	var listed []string
	for _, m := range regexp.MustCompile("(?m)^\\| (`.+?`) \\|").FindAllStringSubmatch(doc, -1) {
		for _, f := range strings.Split(m[1], ", ") {
			listed = append(listed, strings.Trim(f, "`"))
		}
	}
	var fields []string
	typ := reflect.TypeFor[display.Screen]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name != "-" {
			fields = append(fields, name)
		}
	}
	slices.Sort(listed)
	slices.Sort(fields)
	require.Equal(t, fields, listed)
}
