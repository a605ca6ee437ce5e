package ruleexec

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Call is one command a Fake ran.
type Call struct {
	Name  string
	Args  []string
	Stdin string
}

// String renders the call as a command line, e.g. "iptables-nft-save -t nat".
func (c Call) String() string { return strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " ")) }

// Fake is a Runner for unit tests. Handle decides each command's output;
// a nil Handle answers every command with empty output. Every call is
// recorded in order.
type Fake struct {
	Handle func(c Call) ([]byte, error)

	mu    sync.Mutex // guards calls
	calls []Call
}

// Run implements Runner.
func (f *Fake) Run(_ context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	c := Call{Name: name, Args: append([]string(nil), args...), Stdin: string(stdin)}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	if f.Handle == nil {
		return nil, nil
	}
	return f.Handle(c)
}

// Calls returns the commands run so far.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Reset forgets the recorded calls.
func (f *Fake) Reset() {
	f.mu.Lock()
	f.calls = nil
	f.mu.Unlock()
}

// NotFound is the error a Handle returns for a program that is not
// installed; it wraps ErrNotFound like Exec's.
func NotFound(name string) error { return fmt.Errorf("run %s: %w", name, ErrNotFound) }
