package certs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// KeyFiles are the private keys Generate writes.
var KeyFiles = []string{CAKeyFile, ServerKeyFile, AgentKeyFile, ClientKeyFile}

// UnignoredKeys lists the private keys in dir that `git add .` would commit:
// dir is inside a git work tree that does not ignore them. It returns the work tree's root with them, and nothing when git is
// not installed or dir is in no work tree.
func UnignoredKeys(ctx context.Context, dir string) (root string, keys []string, err error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return "", nil, nil
	}
	out, err := exec.CommandContext(ctx, git, "-C", dir, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", nil, nil // not in a work tree
	}
	root = strings.TrimSpace(string(out))
	for _, k := range KeyFiles {
		if _, err := os.Stat(filepath.Join(dir, k)); err != nil {
			continue
		}
		err := exec.CommandContext(ctx, git, "-C", dir, "check-ignore", "-q", "--", k).Run()
		var ee *exec.ExitError
		switch {
		case err == nil: // ignored
		case errors.As(err, &ee) && ee.ExitCode() == 1:
			keys = append(keys, filepath.Join(dir, k))
		default:
			return root, nil, fmt.Errorf("git check-ignore %s: %w", filepath.Join(dir, k), err)
		}
	}
	return root, keys, nil
}

// GitWarning is the warning for the user when dir holds private keys that a
// `git add .` would commit, with the .gitignore line that prevents it; empty
// when there is nothing to warn about.
func GitWarning(ctx context.Context, dir string) string {
	root, keys, err := UnignoredKeys(ctx, dir)
	if err != nil || len(keys) == 0 {
		return ""
	}
	line := dir
	if abs, err := filepath.Abs(dir); err == nil {
		if r, err := filepath.EvalSymlinks(abs); err == nil {
			abs = r
		}
		if rel, err := filepath.Rel(root, abs); err == nil && !strings.HasPrefix(rel, "..") {
			line = "/" + filepath.ToSlash(rel) + "/"
		}
	}
	return fmt.Sprintf("warning: %s: private keys inside the git work tree %s that it does not ignore; `git add .` would commit them.\n"+
		"         Add this line to %s: %s\n",
		strings.Join(keys, ", "), root, filepath.Join(root, ".gitignore"), line)
}
