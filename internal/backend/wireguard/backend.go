package wireguard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
)

// Options are the knobs New leaves at their defaults.
type Options struct {
	// ReconcilePeriod is how often Run re-checks the devices, their
	// addresses and routes; 0 means the Config's, then
	// DefaultReconcilePeriod.
	ReconcilePeriod time.Duration
	// Handle configures the devices and routes; nil means a handle in
	// the caller's network namespace. The backend never closes it.
	Handle *netlink.Handle
	// Netns is the namespace Handle works in: the devices and the UDP
	// sockets are created there. It must be set with Handle.
	Netns *vns.NsHandle
	// NoSubscribe makes Run repair on its timer only.
	NoSubscribe bool
	// KeyFile is the private key's file; "" means $WIREGUARD_KEY_FILE,
	// else wgkey in the state directory, else /run/flannel/wgkey.
	KeyFile string
}

// KeyFile is where the private key of a backend configured with stateDir
// lives, as flannel looks for it: $WIREGUARD_KEY_FILE when set, else
// wgkey in the state directory (the directory of subnet.env,
// /run/flannel by default).
func KeyFile(stateDir string) string {
	if f := os.Getenv(KeyFileEnv); f != "" {
		return f
	}
	if stateDir == "" {
		stateDir = "/run/flannel"
	}
	return filepath.Join(stateDir, KeyFileName)
}

// LoadOrCreateKey returns the private key in path, creating the file
// (0400, as flannel does) with a fresh key when it does not exist. The file
// holds the key in base64, as `wg genkey` prints it. A file that exists
// but holds no key is an error naming it: replacing it would change this
// host's identity behind the operator's back.
func LoadOrCreateKey(path string) (k Key, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, err := ParseKey(strings.TrimSpace(string(b)))
		if err != nil {
			return Key{}, false, fmt.Errorf("wireguard private key file %s: %w (delete it to get a new key)", path, err)
		}
		return k, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return Key{}, false, fmt.Errorf("read wireguard private key file: %w", err)
	}
	k, err = NewPrivateKey()
	if err != nil {
		return Key{}, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return Key{}, false, fmt.Errorf("create the directory of wireguard private key file %s: %w", path, err)
	}
	if err := atomicfile.Write(path, []byte(k.String()+"\n"), 0o400); err != nil {
		return Key{}, false, fmt.Errorf("write wireguard private key file: %w", err)
	}
	return k, true, nil
}

// Backend is the wireguard data plane of one host.
type Backend struct {
	ext backend.ExternalInterface
	// network and network6 are the enabled families' networks, each
	// invalid when its family is disabled.
	network, network6 netip.Prefix
	set               Settings
	priv, pub         Key
	keyFile           string
	log               *slog.Logger
	opts              Options
	metrics           *metrics.Metrics
	repairs           atomic.Uint64

	ownLease atomic.Pointer[lease.Lease] // set once Start succeeded

	// amu serialises Apply's bookkeeping.
	amu     sync.Mutex
	ignored map[netip.Prefix]lease.Attrs // leases of another backend type, so each is logged once

	// devs are the mode's devices, flannel-wg first; their indexes are
	// read by the watches without mu.
	devs []*wgDev
	// repair asks Run for a repair: a device stopped on its own, or an
	// IpcSet failed (Run's Extra).
	repair chan string

	// mu guards the fields below and the devices' desired peers and
	// planes, and is held across every change to a device, so that the
	// peers a repair configures are never older than the last Apply's.
	mu      sync.Mutex
	own     lease.Lease
	started bool
	closed  bool
	failing string // the last repair error logged, so a lasting one is logged once
}

// wgDev is one of the host's WireGuard devices and what it should hold.
type wgDev struct {
	DevSpec
	sockPath string       // its UAPI status socket; "" for none
	index    atomic.Int32 // its ifindex, for the watches
	desired  []peer       // the last Apply's peers, sorted by lease; under mu
	plane    plane        // the running device, platform-specific; under mu
}

// New builds the backend with default Options.
func New(cfg backend.Config) (backend.Backend, error) {
	return backend.Built(NewWithOptions(cfg, Options{}))
}

// NewWithOptions builds the backend: it decodes the options and loads the
// private key (creating it when its file is absent), so that LeaseAttrs,
// called before Start, publishes the key the devices will use. It touches
// nothing in the kernel.
func NewWithOptions(cfg backend.Config, o Options) (*Backend, error) {
	if err := supported(); err != nil {
		return nil, err
	}
	var ext backend.ExternalInterface
	var err error
	if cfg.Network != nil && !cfg.Network.EnableIPv4 {
		ext, err = backend.CheckConfigIPv6Only(BackendType, cfg)
	} else {
		ext, err = backend.CheckConfig(BackendType, cfg)
	}
	if err != nil {
		return nil, err
	}
	if !ext.PublicIPv6.IsValid() {
		ext.PublicIPv6 = ext.Addr6
	}
	set, err := ParseSettings(cfg.Network.Backend, ext.MTU)
	if err == nil {
		err = set.CheckFamilies(cfg.Network)
	}
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ext.Name, err)
	}
	if o.Handle != nil && o.Netns == nil {
		return nil, errors.New("wireguard: Options.Handle needs Options.Netns, so that the devices and the sockets are created where Handle configures them")
	}
	if o.KeyFile == "" {
		o.KeyFile = KeyFile(cfg.StateDir)
	}
	log := cfg.Logger(BackendType)
	priv, created, err := LoadOrCreateKey(o.KeyFile)
	if err != nil {
		return nil, err
	}
	pub, err := priv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("wireguard private key file %s: %w", o.KeyFile, err)
	}
	if created {
		log.Info("created a new private key; peers learn its public key from the lease", "file", o.KeyFile, "public_key", pub.String())
	} else {
		log.Info("loaded the private key", "file", o.KeyFile, "public_key", pub.String())
	}
	o.ReconcilePeriod = cfg.Period(o.ReconcilePeriod, DefaultReconcilePeriod)
	if o.Handle == nil {
		o.Handle = &netlink.Handle{}
	}
	network, network6 := enabled(cfg.Network)
	b := &Backend{
		ext:      ext,
		network:  network,
		network6: network6,
		set:      set,
		priv:     priv,
		pub:      pub,
		keyFile:  o.KeyFile,
		log:      log,
		opts:     o,
		metrics:  cfg.Metrics,
		repair:   make(chan string, 1),
	}
	for _, spec := range set.Devices(network, network6) {
		d := &wgDev{DevSpec: spec}
		if cfg.StateDir != "" {
			d.sockPath = filepath.Join(cfg.StateDir, spec.Socket)
		}
		b.devs = append(b.devs, d)
	}
	return b, nil
}

// LeaseAttrs publishes the public key and listen port of the device that
// carries IPv4, as flannel does; nothing in an IPv6-only network.
func (b *Backend) LeaseAttrs() (string, json.RawMessage) {
	if !b.network.IsValid() {
		return BackendType, nil
	}
	return BackendType, leaseData(b.pub, b.set.ListenPort)
}

// LeaseV6Data is the BackendV6Data: the public key (the same: both
// devices use the key file's) and the listen port of the device that
// carries IPv6, flannel-wg-v6's ListenPortV6 in Mode separate and
// flannel-wg's ListenPort in the others; nil without IPv6.
func (b *Backend) LeaseV6Data() json.RawMessage {
	if !b.network6.IsValid() {
		return nil
	}
	port := b.set.ListenPort
	if b.set.Mode == ModeSeparate {
		port = b.set.ListenPortV6
	}
	return leaseData(b.pub, port)
}

// MTU is the devices': the underlay MTU minus WireGuard's overhead.
func (b *Backend) MTU() int { return b.set.MTU - Overhead }

// PublicKey is this host's public key.
func (b *Backend) PublicKey() Key { return b.pub }

// Settings are the decoded options.
func (b *Backend) Settings() Settings { return b.set }

// Repairs counts the changes Run made because the kernel drifted.
func (b *Backend) Repairs() uint64 { return b.repairs.Load() }

// plan is what desire needs of this host, owning own.
func (b *Backend) plan(own lease.Lease) plan {
	return plan{set: b.set, network: b.network, network6: b.network6, own: own,
		ownPublicIP: b.ext.PublicIP, ownPublicIPv6: b.ext.PublicIPv6, ownKey: b.pub}
}

// changed logs one kernel change on device dev, and counts it as a
// repair in counts unless that is nil (Start made it). Callers hold mu.
func (b *Backend) changed(counts backend.Counts, dev, trigger, kind, msg string, args ...any) {
	b.log.Info(msg, append([]any{"device", dev, "trigger", trigger}, args...)...)
	if counts != nil {
		b.repairs.Add(1)
		counts.Add(kind, 1)
	}
}

// logChanges logs one line per peer of dev that changes; past
// backend.BulkChanges of them at debug behind one summary line.
func (b *Backend) logChanges(dev string, changes []peerChange) {
	level := slog.LevelInfo
	if len(changes) > backend.BulkChanges {
		level = slog.LevelDebug
		b.log.Info("peers changed", "device", dev, "count", len(changes))
	}
	for _, c := range changes {
		args := []any{"device", dev, "lease", c.peer.ID, "allowed_ips", c.peer.Allowed, "endpoint", c.peer.Endpoint, "public_key", c.peer.Key.String()}
		if c.kind == "changed" {
			args = append(args, "was_allowed_ips", c.was.Allowed, "was_endpoint", c.was.Endpoint, "was_public_key", c.was.Key.String())
		}
		b.log.Log(context.Background(), level, "peer "+c.kind, args...)
	}
}
