package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// layout returns the first column of the README's Layout table and the rows.
func layout(t *testing.T) (paths []string, rows map[string]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	table := section(t, string(b), "## Layout")
	rows = map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\| (.+) \\|$").FindAllStringSubmatch(table, -1) {
		p := strings.TrimSuffix(m[1], "/")
		paths = append(paths, p)
		rows[p] = m[2]
	}
	require.NotEmpty(t, paths)
	return paths, rows
}

// TestReadmeLayoutMatchesTheTree: every path of the README's Layout table
// exists, every top-level directory is in it, and so is every command under
// cmd/ and every package under internal/.
func TestReadmeLayoutMatchesTheTree(t *testing.T) {
	paths, _ := layout(t)
	for _, p := range paths {
		_, err := os.Stat(filepath.Join(root, p))
		require.NoError(t, err, "the README's layout lists %s", p)
	}
	top, err := os.ReadDir(root)
	require.NoError(t, err)
	ignored := ignoredDirs(t)
	for _, d := range top {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") || ignored[d.Name()] {
			continue
		}
		if d.Name() == "cmd" || d.Name() == "internal" {
			subs, err := os.ReadDir(filepath.Join(root, d.Name()))
			require.NoError(t, err)
			for _, s := range subs {
				if s.IsDir() {
					require.Contains(t, paths, d.Name()+"/"+s.Name(), "the README's layout has no row for %s/%s", d.Name(), s.Name())
				}
			}
			continue
		}
		require.True(t, slices.ContainsFunc(paths, func(p string) bool { return p == d.Name() || strings.HasPrefix(p, d.Name()+"/") }),
			"the README's layout has no row for %s/", d.Name())
	}
}

// ignoredDirs returns the top-level directories .gitignore keeps out of the
// repository (build output such as dist/), which a clone does not have.
func ignoredDirs(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".gitignore"))
	require.NoError(t, err)
	dirs := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if name, ok := strings.CutSuffix(strings.TrimPrefix(line, "/"), "/"); ok && !strings.Contains(name, "/") {
			dirs[name] = true
		}
	}
	return dirs
}

// TestReadmeLayoutSimCommands: the commands the layout gives cmd/sim are its
// commands.
func TestReadmeLayoutSimCommands(t *testing.T) {
	_, rows := layout(t)
	main, err := os.ReadFile(filepath.Join(root, "cmd", "sim", "main.go"))
	require.NoError(t, err)
	named := regexp.MustCompile("`([a-z]+)`").FindAllStringSubmatch(rows["cmd/sim"], -1)
	require.NotEmpty(t, named)
	for _, m := range named {
		require.Contains(t, string(main), `{"`+m[1]+`", `, "the README's layout says sim has a %q command", m[1])
	}
}
