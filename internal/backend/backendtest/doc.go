// Package backendtest builds the virtual hosts the backends' root tests run
// on, so that hostgw, vxlan and udp are tested on the same topology. It
// builds on internal/nstest: every namespace has a unique name and is
// deleted when the test ends, pass or fail.
//
// Hosts(t, 3, Options{}) makes three hosts on one L2 segment:
//
//	h1                     h2                     h3
//	cni0 10.244.1.1/24     cni0 10.244.2.1/24     cni0 10.244.3.1/24
//	eth0 192.168.70.1/24   eth0 192.168.70.2/24   eth0 192.168.70.3/24
//	  |                      |                      |
//	  +---- p1 -------- [ sw: br0 ] -------- p3 ----+
//	                         |
//	                         p2
//
// Host i (from 1) leases 10.244.i.0/24 of Network; cni0, a bridge without
// ports standing in for the pod bridge (the test kernel has no dummy
// driver), holds 10.244.i.1, the address pods would use. Every host
// forwards IPv4.
//
// Options.Segments spreads the hosts over several segments joined by a
// router; Hosts(t, 3, Options{Segments: []int{2, 1}}) makes:
//
//	h1                     h2                     h3
//	eth0 192.168.70.1      eth0 192.168.70.2      eth0 192.168.71.3
//	  |                      |                      |
//	[ sw0: br0  192.168.70.0/24 ]               [ sw1: br0  192.168.71.0/24 ]
//	             |                                      |
//	             +---- rt: .254 on both, forwarding ----+
//
// with a default route via its segment's .254 on every host.
//
// The code is Linux-only; on other systems the package is empty.
package backendtest
