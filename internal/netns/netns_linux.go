package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
)

// Create makes a named namespace (ip netns add NAME) with its loopback up.
func Create(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("create netns %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	h, err := Handle(name)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("netns %s: find lo: %w", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("netns %s: set lo up: %w", name, err)
	}
	return nil
}

// Delete removes a named namespace (ip netns del NAME). Deleting one that
// does not exist is not an error, so cleanup paths can call it blindly.
func Delete(name string) error {
	if !Exists(name) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("delete netns %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Exists reports whether the named namespace is mounted.
func Exists(name string) bool {
	_, err := os.Stat(Path(name))
	return err == nil
}

// List returns the names of all named namespaces.
func List() ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", Dir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// Handle returns a netlink handle that works inside the named namespace
// from any goroutine. The caller closes it.
func Handle(name string) (*netlink.Handle, error) {
	ns, err := vns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in netns %s: %w", name, err)
	}
	return h, nil
}

// Do runs fn on a locked OS thread that has entered the named namespace.
// Sockets fn creates belong to that namespace for their whole life, which is
// how the lab dials and listens "inside" a pod without a subprocess. If the
// thread cannot be moved back, it stays locked so the runtime discards it
// instead of reusing a thread in the wrong namespace. An empty name runs fn
// where the caller is, for code that works in a named namespace or, by
// default, in its own.
func Do(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	target, err := vns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer target.Close()
	return doIn(target, name, fn)
}

// DoHandle is Do for a namespace the caller holds open; nil means the
// caller's own namespace, where fn simply runs. fn runs on a goroutine of
// its own, so that a thread that cannot be moved back dies with it and the
// caller's goroutine is never left locked in ns. The caller keeps ns open
// until DoHandle returns, and closes it.
func DoHandle(ns *vns.NsHandle, fn func() error) error {
	if ns == nil {
		return fn()
	}
	errc := make(chan error, 1)
	go func() { errc <- doIn(*ns, ns.String(), fn) }()
	return <-errc
}

// doIn runs fn on the caller's goroutine, locked to a thread moved into
// target; name says which namespace in errors.
func doIn(target vns.NsHandle, name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := vns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current netns: %w", err)
	}
	defer orig.Close()
	if err := vns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", name, err)
	}
	fnErr := fn()
	if err := vns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return errors.Join(fnErr, fmt.Errorf("return from netns %s: %w", name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}
