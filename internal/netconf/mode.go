package netconf

import "errors"

// ErrIPv6OnlyNeedsKube is returned by CheckEtcd for an IPv6-only config.
var ErrIPv6OnlyNeedsKube = errors.New(`EnableIPv4 is false (IPv6-only), which needs the Kubernetes store (--kube-subnet-mgr): an etcd lease key always names an IPv4 subnet ("10.5.1.0-24&fd00::-64"), as in flannel; set "EnableIPv4": true with a Network, or run in Kubernetes mode`)

// CheckEtcd says why c cannot be used with the etcd store, or returns nil.
// Parse accepts an IPv6-only config because Kubernetes mode takes subnets
// from the Node's podCIDRs; flannel's etcd key grammar has no IPv6-only
// form, so the etcd store refuses it, naming the field.
func (c *Config) CheckEtcd() error {
	if !c.EnableIPv4 {
		return ErrIPv6OnlyNeedsKube
	}
	return nil
}

// Families names the address families c enables, for logs: "IPv4",
// "IPv6" or "IPv4+IPv6".
func (c *Config) Families() string {
	switch {
	case c.EnableIPv4 && c.EnableIPv6:
		return "IPv4+IPv6"
	case c.EnableIPv6:
		return "IPv6"
	}
	return "IPv4"
}
