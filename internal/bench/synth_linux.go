package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/lease"
)

// synthTTL is the TTL of a synthetic lease's etcd lease: flanneld's 24 h,
// so that each one costs the agent the same TimeToLive lookup a real
// host's lease does.
const synthTTL = int64(24 * time.Hour / time.Second)

// synth is a lease of a host that does not exist, written straight into
// etcd in flannel's format.
type synth struct {
	Subnet   netip.Prefix
	PublicIP netip.Addr
	MAC      kernel.MAC // vxlan's VtepMAC
	backend  string
	key      string
	id       clientv3.LeaseID
}

// newSynth describes synthetic host number i (unique per run) for the
// given backend and etcd prefix.
func newSynth(i int, subnet netip.Prefix, publicIP netip.Addr, backend, etcdPrefix string) synth {
	return synth{
		Subnet:   subnet,
		PublicIP: publicIP,
		// Locally administered unicast, and distinct per host: vxlan
		// refuses two peers with one VtepMAC.
		MAC:     kernel.MAC{0x0e, 0x77, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)},
		backend: backend,
		key:     etcdPrefix + "/subnets/" + lease.KeyName(subnet, netip.Prefix{}),
	}
}

// value is the lease's JSON, as a flannel or weft host of that backend
// publishes it.
func (s synth) value() (string, error) {
	a := lease.Attrs{PublicIP: s.PublicIP, BackendType: s.backend}
	if s.backend == "vxlan" {
		d, err := json.Marshal(struct {
			VNI     int
			VtepMAC string
		}{1, s.MAC.String()})
		if err != nil {
			return "", err
		}
		a.BackendData = d
	}
	b, err := json.Marshal(a)
	if err != nil {
		return "", fmt.Errorf("encode synthetic lease %s: %w", s.Subnet, err)
	}
	return string(b), nil
}

// entries are the kernel entries an agent programs for this peer.
func (s synth) entries() []entry {
	es := []entry{{kindRoute, s.Subnet.String()}}
	if s.backend == "vxlan" {
		es = append(es, entry{kindNeigh, s.Subnet.Addr().String()}, entry{kindFDB, s.MAC.String()})
	}
	return es
}

// grant gives s its own etcd lease, as a host's Acquire does.
func (s *synth) grant(ctx context.Context, cli *clientv3.Client) error {
	resp, err := cli.Grant(ctx, synthTTL)
	if err != nil {
		return fmt.Errorf("grant etcd lease for synthetic %s: %w", s.Subnet, err)
	}
	s.id = resp.ID
	return nil
}

// put writes s under its etcd lease (granting one first if it has none).
func (s *synth) put(ctx context.Context, cli *clientv3.Client) error {
	if s.id == clientv3.NoLease {
		if err := s.grant(ctx, cli); err != nil {
			return err
		}
	}
	v, err := s.value()
	if err != nil {
		return err
	}
	if _, err := cli.Put(ctx, s.key, v, clientv3.WithLease(s.id)); err != nil {
		return fmt.Errorf("write synthetic lease %s: %w", s.key, err)
	}
	return nil
}

// remove deletes s's key, as an administrator or an expiry would.
func (s *synth) remove(ctx context.Context, cli *clientv3.Client) error {
	if _, err := cli.Delete(ctx, s.key); err != nil {
		return fmt.Errorf("delete synthetic lease %s: %w", s.key, err)
	}
	return nil
}

// putAll writes many synthetic leases with a few writers in parallel.
func putAll(ctx context.Context, cli *clientv3.Client, ss []synth) error {
	const writers = 32
	work := make(chan int)
	errc := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for i := range work {
				if err := ss[i].put(ctx, cli); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		})
	}
	for i := range ss {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
