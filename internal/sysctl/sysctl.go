// Package sysctl reads and writes kernel parameters under /proc/sys by
// their dotted names ("net.ipv4.neigh.default.gc_thresh3").
//
// A FS is rooted at a directory so that tests can point it at a fake tree
// instead of changing host-wide values while other tests run. Parameters
// under net.* belong to the network namespace of the thread that opens the
// file; callers that need another namespace run the call inside netns.Do.
package sysctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultRoot is where the kernel exposes its parameters.
const DefaultRoot = "/proc/sys"

// ErrMissing reports a parameter this kernel (or this container's view of
// /proc) does not have; callers usually warn once and carry on.
var ErrMissing = errors.New("no such sysctl")

// FS reads and writes parameters below Root.
type FS struct {
	// Root is the directory that stands for /proc/sys; "" means DefaultRoot.
	Root string
}

// Host is the running kernel's /proc/sys.
var Host = FS{}

// Path is the file that holds the named parameter. A name that contains a
// slash is taken as a path below the root as it is, which is how a
// parameter of an interface with a dot in its name is spelt
// ("net/ipv4/conf/flannel.1/rp_filter"), as sysctl(8) does.
func (f FS) Path(name string) string {
	root := f.Root
	if root == "" {
		root = DefaultRoot
	}
	if !strings.Contains(name, "/") {
		name = strings.ReplaceAll(name, ".", "/")
	}
	return filepath.Join(root, name)
}

// Get returns the parameter's value with surrounding white space removed.
func (f FS) Get(name string) (string, error) {
	b, err := os.ReadFile(f.Path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read sysctl %s: %w", name, ErrMissing)
	}
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// GetInt returns the parameter as a whole number.
func (f FS) GetInt(name string) (int64, error) {
	s, err := f.Get(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read sysctl %s: value %q is not a whole number: %w", name, s, err)
	}
	return n, nil
}

// Set writes value to the parameter. It never creates a parameter that
// does not exist.
func (f FS) Set(name, value string) error {
	file, err := os.OpenFile(f.Path(name), os.O_WRONLY|os.O_TRUNC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("set sysctl %s=%s: %w", name, value, ErrMissing)
	}
	if err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", name, value, err)
	}
	_, werr := file.WriteString(value)
	cerr := file.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// SetInt writes a whole number to the parameter.
func (f FS) SetInt(name string, v int64) error {
	return f.Set(name, strconv.FormatInt(v, 10))
}
