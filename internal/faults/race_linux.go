package faults

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/subnetenv"
)

// raceLastSubnet leaves one free subnet in the pool (SubnetMin..SubnetMax
// holding h1's and one more) and starts h2's and h3's agents at once,
// their old leases gone: exactly one may get it, the other must say why
// it has none.
func raceLastSubnet() fault {
	return fault{
		id:     "race-last-subnet",
		noHeal: true,
		text:   "h2's and h3's agents started at once for the one free subnet of the pool: one wins, the other names the cause within 2 s",
		build: func(ctx context.Context, e *env, p *probe) error {
			h1, h2, h3 := e.host(0), e.host(1), e.host(2)
			for _, h := range []string{h2.Name, h3.Name} {
				if err := e.l.StopAgent(h, syscall.SIGTERM); err != nil {
					return err
				}
			}
			for _, i := range []int{1, 2} {
				key := e.topo.Spec.EtcdPrefix + "/subnets/" + lease.KeyName(e.subnet(i), netip.Prefix{})
				if _, err := e.cli.Delete(ctx, key); err != nil {
					return fmt.Errorf("delete lease %s: %w", key, err)
				}
				_ = os.Remove(e.host(i).SubnetFile)
			}
			own := e.subnet(0)
			a := own.Addr().As4()
			lo, hi := own, own
			if a[2] < 255 {
				a[2]++
				hi = netip.PrefixFrom(netip.AddrFrom4(a), 24)
			} else {
				a[2]--
				lo = netip.PrefixFrom(netip.AddrFrom4(a), 24)
			}
			free := hi
			if free == own {
				free = lo
			}
			conf := fmt.Sprintf(`{"Network": %q, "SubnetMin": %q, "SubnetMax": %q, "Backend": {"Type": %q}}`,
				e.topo.Spec.Network, lo.Addr(), hi.Addr(), e.backend)
			if _, err := e.cli.Put(ctx, e.topo.Etcd.ConfigKey, conf); err != nil {
				return err
			}
			p.cause, p.causeWithin = warnOrError("subnet", "free", "exhaust", "full"), 2*time.Second
			p.inject()
			for _, h := range []string{h2.Name, h3.Name} {
				if err := e.l.SpawnAgent(h); err != nil {
					return err
				}
			}
			if err := sleepCtx(ctx, 3*time.Second); err != nil {
				return err
			}
			var winners, losers []string
			for _, h := range []string{h2.Name, h3.Name} {
				hh, _ := e.topo.Host(h)
				env, err := subnetenv.Read(hh.SubnetFile)
				switch {
				case err == nil && env.Subnet == free:
					winners = append(winners, h)
				case err == nil:
					p.row.Problems = append(p.row.Problems, fmt.Sprintf("%s took %s, outside the pool's free %s", h, env.Subnet, free))
				default:
					losers = append(losers, h)
				}
			}
			p.causeHosts = losers
			if len(winners) != 1 {
				p.row.Problems = append(p.row.Problems, fmt.Sprintf("%d agents wrote %s as their subnet (want exactly 1): %s", len(winners), free, strings.Join(winners, ", ")))
			}
			resp, err := e.cli.Get(ctx, e.topo.Spec.EtcdPrefix+"/subnets/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
			if err != nil {
				return err
			}
			var keys []string
			for _, kv := range resp.Kvs {
				keys = append(keys, path.Base(string(kv.Key)))
			}
			if len(keys) != 2 {
				p.row.Problems = append(p.row.Problems, fmt.Sprintf("leases after the race: %s (want %s's and one more)", strings.Join(keys, ", "), h1.Name))
			}
			return nil
		},
	}
}
