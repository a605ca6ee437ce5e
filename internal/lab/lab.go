package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/atomicfile"
)

// Options configure building, checking and tearing down a lab.
type Options struct {
	Spec

	// WeftBinary runs etcd (`weft lab _etcd`) and the agents; default: the
	// running executable.
	WeftBinary string
	// CNIBinDir holds the flannel, bridge and host-local plugins; default:
	// $WEFT_CNI_BIN_DIR, else the "cni" directory beside WeftBinary (where
	// the Makefile puts them).
	CNIBinDir string
	// KubeBinDir holds etcd, kube-apiserver and kube-controller-manager
	// for a Kubernetes lab (Spec.Store "kube"); default: the build cache
	// of the weft repository (kubecluster.Locate).
	KubeBinDir string
	// KubeManifest is applied to a Kubernetes lab's apiserver before the
	// agents start, whose ServiceAccount they run as; default:
	// deploy/kube-weft.yml of the weft repository.
	KubeManifest string
	// PageAddr is where the lab page (every host's row, the N×N matrix)
	// listens, in the root namespace; empty: no page.
	PageAddr string
	// Keep leaves the lab running after Demo's checks.
	Keep bool
	// KeepNeighThresholds leaves the kernel's neighbour-table thresholds
	// alone. By default a lab raises them to fit its size (they are shared
	// by every namespace of the machine, see PlanNeighNeed) and restores
	// them when the last lab goes down.
	KeepNeighThresholds bool
	// ReadyTimeout bounds each wait of the build (etcd, agents, routes);
	// default 60 s.
	ReadyTimeout time.Duration

	// Out receives the progress lines and the result table; nil discards.
	Out io.Writer
	// Log receives diagnostics; nil discards.
	Log *slog.Logger
}

// teardownTimeout bounds a teardown, which runs on a fresh context so that
// the Ctrl-C that interrupted a build does not also interrupt its cleanup.
const teardownTimeout = 2 * time.Minute

// ErrExists is returned by Up when namespaces or the state directory of a
// lab with the same prefix are already there. Nothing was touched.
var ErrExists = errors.New("lab already exists")

// resolve fills defaults and plans the topology.
func (o Options) resolve() (Options, Topology, error) {
	topo, err := Plan(o.Spec)
	if err != nil {
		return o, Topology{}, err
	}
	o.Spec = topo.Spec
	if o.WeftBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, Topology{}, fmt.Errorf("find the weft binary: %w", err)
		}
		o.WeftBinary = exe
	}
	if abs, err := filepath.Abs(o.WeftBinary); err == nil {
		o.WeftBinary = abs
	}
	if o.CNIBinDir == "" {
		o.CNIBinDir = os.Getenv("WEFT_CNI_BIN_DIR")
	}
	if o.CNIBinDir == "" {
		o.CNIBinDir = filepath.Join(filepath.Dir(o.WeftBinary), "cni")
	}
	if abs, err := filepath.Abs(o.CNIBinDir); err == nil {
		o.CNIBinDir = abs
	}
	if o, err = o.resolveKube(); err != nil {
		return o, Topology{}, err
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o, topo, nil
}

// state is what a running lab records in <state dir>/lab.json, so that
// `weft lab down|exec|status|check` in a later process know what was built.
type state struct {
	Spec       Spec
	WeftBinary string
	CNIBinDir  string
	Created    time.Time
	Subnets    map[string]netip.Prefix `json:",omitempty"` // by host name
	PodIPs     map[string]netip.Addr   `json:",omitempty"` // by pod name
	// Subnets6 and PodIPv6s are the IPv6 ones, in a dual or IPv6 lab.
	Subnets6 map[string]netip.Prefix `json:",omitempty"`
	PodIPv6s map[string]netip.Addr   `json:",omitempty"`
}

// recordedSpec is the spec a running lab was built with, as its state
// file has it, under the prefix and state root it was found by.
func recordedSpec(spec Spec, st state) Spec {
	s := st.Spec
	s.Prefix, s.StateRoot = spec.Prefix, spec.StateRoot
	return s
}

// layoutNote describes the segments and DirectRouting for the demo's
// first line; empty for the classic one-segment lab.
func layoutNote(s Spec) string {
	var note string
	if s.Segments > 1 {
		note += fmt.Sprintf(", %d segments joined by a router", s.Segments)
	}
	if s.DirectRouting {
		note += ", DirectRouting"
	}
	if s.WireGuardMode != "" {
		note += ", WireGuard Mode " + s.WireGuardMode
	}
	switch s.IPFamily {
	case FamilyDual:
		note += ", dual-stack (IPv6 network " + s.IPv6Network.String() + ")"
	case FamilyIPv6:
		note += ", IPv6-only (IPv6 network " + s.IPv6Network.String() + ")"
	}
	return note + kubeNote(s)
}

func stateFile(stateDir string) string { return filepath.Join(stateDir, "lab.json") }

func writeState(stateDir string, s state) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	return writeFileAtomic(stateFile(stateDir), append(b, '\n'))
}

// readState reads lab.json; a missing file yields an error wrapping
// fs.ErrNotExist.
func readState(stateDir string) (state, error) {
	var s state
	b, err := os.ReadFile(stateFile(stateDir))
	if err != nil {
		return s, fmt.Errorf("read lab state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("parse %s: %w", stateFile(stateDir), err)
	}
	return s, nil
}

// printer writes progress lines; agents report concurrently.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// writeFileAtomic writes via a temporary file and rename, so a reader (a
// concurrent `weft lab down`) never sees half a file.
func writeFileAtomic(path string, data []byte) error {
	return atomicfile.Write(path, data, 0o644)
}
