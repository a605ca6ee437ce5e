package agent

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/rules"
)

// specRecorder is a rules.Manager that remembers what it was asked for.
type specRecorder struct {
	mu    sync.Mutex
	specs []rules.Spec
}

func (r *specRecorder) Sync(_ context.Context, s rules.Spec) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.specs = append(r.specs, s)
	return nil
}

func (r *specRecorder) Run(ctx context.Context, _ time.Duration) error { <-ctx.Done(); return nil }
func (r *specRecorder) Cleanup(context.Context) error                  { return nil }

func (r *specRecorder) first(t *testing.T) rules.Spec {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.specs) == 0 {
		t.Fatal("the agent synced no traffic rules")
	}
	return r.specs[0]
}

// The rules manager gets each family this host has a subnet in: the IPv6
// network and subnet only when the config enables IPv6, the IPv4 part as
// before.
func TestRulesSpecFollowsFamilies(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name, config, env   string
		v6Network, v6Subnet netip.Prefix
	}{
		{"ipv4 only", `{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}`,
			"FLANNEL_NETWORK=172.7.0.0/16\nFLANNEL_SUBNET=172.7.21.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n",
			netip.Prefix{}, netip.Prefix{}},
		{"dual stack", `{"Network": "172.7.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "host-gw"}}`,
			"FLANNEL_NETWORK=172.7.0.0/16\nFLANNEL_SUBNET=172.7.21.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:21::1/64\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n",
			p("fd00:10:244::/56"), p("fd00:10:244:21::/64")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &specRecorder{}
			f := startWith(t, "/coreos.com/network", tc.env, func(d *Deps) {
				d.SelectInterface = dualInterface
				d.Rules = func(rules.Mode) (rules.Manager, error) { return rec, nil }
			})
			f.put(t, "/coreos.com/network/config", tc.config)
			f.waitReady(t)
			s := rec.first(t)
			if s.Network != p("172.7.0.0/16") || s.Subnet != p("172.7.21.0/24") {
				t.Errorf("IPv4 part: network %s subnet %s", s.Network, s.Subnet)
			}
			if s.IPv6Network != tc.v6Network || s.IPv6Subnet.Masked() != tc.v6Subnet {
				t.Errorf("IPv6 part: network %s subnet %s, want %s %s", s.IPv6Network, s.IPv6Subnet, tc.v6Network, tc.v6Subnet)
			}
			if !s.KeepSource {
				t.Error("keep-source not asked for")
			}
			if err := s.Validate(); err != nil {
				t.Errorf("the agent's spec is invalid: %v", err)
			}
		})
	}
}
