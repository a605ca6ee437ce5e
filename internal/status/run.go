package status

import (
	"context"
	"time"

	"github.com/weftnet/weft/internal/extiface"
	"github.com/weftnet/weft/internal/kernel/hostfacts"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

// Source is where status reads the cluster's state: the network config and
// every lease with its expiration. The etcd store is one.
type Source interface {
	Config(ctx context.Context) (*netconf.Config, error)
	List(ctx context.Context) ([]lease.Lease, error)
}

// Options configure Run.
type Options struct {
	Source Source
	// Store names the source in the report's header, e.g. "etcd
	// http://10.4.7.12:2379 /coreos.com/network".
	Store string
	// SubnetFile is the agent's --subnet-file.
	SubnetFile string
	// Iface are the agent's interface-selection flags, so that status
	// finds the interface and PublicIP the agent uses.
	Iface extiface.Options
	// RenewMargin is the agent's --subnet-lease-renew-margin.
	RenewMargin time.Duration
	// Kubernetes is the agent's --kube-subnet-mgr: Source's leases are
	// Nodes, shown as such rather than as reservations, and --check also
	// looks at what Kubernetes needs of the bridge (br_netfilter).
	Kubernetes bool
	// Check sends the probes of --check, and reads the kernel settings
	// the agent watches (hostkernel.go).
	Check bool
	// Facts reads those kernel settings; nil reads /proc.
	Facts *hostfacts.Reader
	// Prober sends them; nil means a NetProber in this process's network
	// namespace.
	Prober Prober
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}
