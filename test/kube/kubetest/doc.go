// Package kubetest is the testing wrapper around internal/kubecluster: it
// finds (or, under CI, builds) the binaries, starts the control plane in a
// test's temp dir, stops it when the test ends, and turns errors into test
// failures. The control plane is etcd,
// kube-apiserver (token authentication, Node+RBAC authorization, a
// ServiceAccount signing key so the TokenRequest API works) and
// kube-controller-manager running only node-ipam-controller with
// --allocate-node-cidrs, so Nodes get their podCIDRs exactly as in a
// kubeadm cluster. The binaries are v1.37.2 built from the Go module proxy
// by ../build-tools.sh into a cache outside the clone (see Binaries).
//
// Every process listens on free ports of one address and is killed by the
// pid recorded when it was started; all files live in the test's temp dir.
// By default that address is 127.0.0.1 in the test's own network
// namespace. Agents running in lab namespaces cannot reach the machine's
// loopback, so Options.NetNS starts the control plane inside a given
// namespace (a lab's underlay, say) bound to an address there; the test
// process then talks to it through sockets opened inside that namespace
// (AdminConfig does this), and agents in namespaces routed to that
// address use a kubeconfig from Kubeconfig.
//
//	root netns (test process)          Options.NetNS (e.g. the lab underlay)
//	  admin client ──socket created in──▶ etcd, kube-apiserver, kube-controller-manager
//	                                      on Options.Addr, free ports
//	lab host netns: weft agent ──kubeconfig (ServiceAccount token)──▶ https://Addr:port
//
// Only Linux is supported.
package kubetest
