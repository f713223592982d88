package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCertsWarnsWhenGitWouldCommitTheKeys(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not found (apt-get install git): the git-ignore warning test needs it")
	}
	repo := t.TempDir()
	require.NoError(t, exec.Command(git, "init", "-q", repo).Run())
	conf := filepath.Join(repo, "conf")

	out, err := runOut(t, "certs", "-out", conf)
	require.NoError(t, err)
	require.Contains(t, out, "warning: ")
	require.Contains(t, out, filepath.Join(conf, "client.key"))
	require.Contains(t, out, filepath.Join(conf, "ca.key"))
	require.Contains(t, out, "Add this line to "+filepath.Join(repo, ".gitignore")+": /conf/")

	require.NoError(t, os.WriteFile(filepath.Join(repo, ".gitignore"), []byte("/conf/\n"), 0o644))
	out, err = runOut(t, "certs", "-out", conf)
	require.NoError(t, err)
	require.NotContains(t, out, "warning")

	// Outside any work tree: nothing to warn about.
	out, err = runOut(t, "certs", "-out", filepath.Join(t.TempDir(), "conf"))
	require.NoError(t, err)
	require.NotContains(t, out, "warning")
}

// TestRepoIgnoresGeneratedKeys: the repository's own .gitignore covers every
// directory the tools write keys or data to by default.
func TestRepoIgnoresGeneratedKeys(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not found (apt-get install git): the .gitignore test needs it")
	}
	root, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skip("not in a git work tree")
	}
	for _, p := range []string{".sim/certs/ca.key", ".sim/data/termagent.db", "conf/client.key", "conf/ca.key", "data/termagent.db", "bin/sim"} {
		cmd := exec.Command(git, "check-ignore", "-q", "--no-index", p)
		cmd.Dir = string(root[:len(root)-1])
		require.NoError(t, cmd.Run(), "%s is not ignored by .gitignore", p)
	}
}
