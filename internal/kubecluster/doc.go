// Package kubecluster runs a real Kubernetes control plane as local
// processes: etcd, kube-apiserver (token authentication, Node+RBAC
// authorization, a ServiceAccount signing key so that the TokenRequest API
// works, optionally an audit log of nodes/status patches) and
// kube-controller-manager running only node-ipam-controller with
// --allocate-node-cidrs, so Nodes get their podCIDRs exactly as in a
// kubeadm cluster (seed 001). The binaries are v1.37.2 built from the Go
// module proxy by test/kube/build-tools.sh into a cache outside the clone
// (see CacheDir and Locate).
//
// Two users: the Kubernetes-mode tests (through test/kube/kubetest, which
// adds testing.TB conveniences) and `weft lab --store kube`, which runs
// the control plane in the lab's underlay namespace and leaves it running
// after `weft lab up` exits (Options.Detach).
//
// Every process is started by this package, recorded with its pid (and a
// pid file in the cluster directory) and stopped by that pid, never by
// name. All files live in Options.Dir: the PKI, etcd's data, one log per
// process, kubeconfigs and the audit log.
//
//	this process                         Options.NetNS (or its own namespace)
//	  AdminConfig ──socket created in──▶ etcd, kube-apiserver, kube-controller-manager
//	                                     on Options.Addr
//	agents elsewhere ──kubeconfig (WriteKubeconfig, ServiceAccount token)──▶ https://Addr:port
package kubecluster
