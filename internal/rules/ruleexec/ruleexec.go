// Package ruleexec is the seam between weft's rule managers and the
// iptables and nft programs: a Runner runs one command, Exec runs it for
// real (optionally inside a named network namespace, which is how the
// integration tests point a manager at a virtual host), and Fake answers
// from a script for unit tests.
package ruleexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs one program to completion. stdin may be nil. It returns the
// program's standard output; a failure to start or a non-zero exit is an
// error that carries the command line and its standard error. Runners must
// be safe for concurrent use.
type Runner interface {
	Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// Exec runs programs on this host. With Netns set it runs them inside that
// named namespace (ip netns exec NAME ...); empty means the caller's own
// namespace, which is what the agent uses.
type Exec struct {
	Netns string
}

// ErrNotFound is wrapped by Exec errors when the program is not installed,
// so callers can tell "no iptables-legacy here" from a failing command.
var ErrNotFound = errors.New("program not found")

// Run implements Runner.
func (e Exec) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", name, ErrNotFound)
	}
	argv := append([]string{path}, args...)
	if e.Netns != "" {
		argv = append([]string{"ip", "netns", "exec", e.Netns}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("run %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
