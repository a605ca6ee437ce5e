// Package lab builds a virtual cluster on one Linux machine out of network
// namespaces and real weft processes, proves that pods on different hosts
// reach each other by their own addresses, and tears it all down again.
//
// The layout mirrors a classic flannel-on-etcd deployment (underlay
// 10.4.7.0/24, etcd on 10.4.7.12, hosts from 10.4.7.21, cluster network
// 172.7.0.0/16), shown here for `--hosts 3 --pods 2` and prefix "weft":
//
//	                 weft-ul  (the underlay: a switch and etcd)
//	+------------------------------------------------------------+
//	|  sw0 (bridge) 10.4.7.12/24       etcd http://10.4.7.12:2379|
//	+----ve-h1-----------------ve-h2-----------------ve-h3-------+
//	       | veth                | veth                | veth
//	+------eth0------+   +------eth0------+   +------eth0------+
//	| weft-h1        |   | weft-h2        |   | weft-h3        |
//	| 10.4.7.21/24   |   | 10.4.7.22/24   |   | 10.4.7.23/24   |
//	| weft agent     |   | weft agent     |   | weft agent     |
//	| cni0 172.7.a.1 |   | cni0 172.7.b.1 |   | cni0 172.7.c.1 |
//	+---+--------+---+   +---+--------+---+   +---+--------+---+
//	    | veth   | veth      |        |           |        |
//	 weft-h1p1 weft-h1p2  weft-h2p1 weft-h2p2  weft-h3p1 weft-h3p2
//	 eth0 172.7.a.x       eth0 172.7.b.x       eth0 172.7.c.x
//
// With --segments N (Spec.Segments) the hosts are spread in blocks over N
// L2 segments, each its own switch in the underlay namespace and its own
// /24 (segment k is 10.4.(6+k).0/24 on sw(k-1); host hN keeps .20+N on
// whichever segment it is). A router namespace, <prefix>-rt, has one leg
// (.1) on every segment and forwards between them; hosts and the underlay
// namespace take it as their default gateway, so etcd, still on segment 1,
// answers everyone. Shown for `--hosts 4 --segments 2`:
//
//	          weft-ul: two separate switches in one namespace
//	+----------------------------------+  +---------------------------+
//	| sw0 10.4.7.12/24 (etcd)          |  | sw1 (no address)          |
//	| default via 10.4.7.1             |  |                           |
//	+--ve-h1------ve-h2-------rt-s1----+  +--rt-s2-----ve-h3-----ve-h4+
//	     |          |           |             |          |          |
//	     |          |     +-----seg1----------seg2-----+ |          |
//	     |          |     | weft-rt  10.4.7.1 10.4.8.1 | |          |
//	     |          |     |          ip_forward=1      | |          |
//	     |          |     +----------------------------+ |          |
//	  weft-h1    weft-h2                              weft-h3    weft-h4
//	  10.4.7.21  10.4.7.22                            10.4.8.23  10.4.8.24
//	  default via 10.4.7.1                            default via 10.4.8.1
//
// That is the cluster seed 000 advises against: host-gw cannot route to a
// peer behind the router (its next hop must be directly connected), so
// Plan refuses host-gw with more than one segment, while vxlan with
// "DirectRouting": true (the command line's default there) routes
// same-segment peers directly and the rest through flannel.1. The result
// table's PATH column says which way each pair went, read from the source
// host's own route to the destination (see pathName).
//
// Nothing is created in the machine's root network namespace: the veth
// pairs are created inside the underlay namespace with their peer placed
// directly into the host namespace, and every process runs under
// `ip netns exec`. All files live in the state directory
// /run/weft-lab/<prefix>/, so labs with different prefixes coexist.
//
// The pieces are real: etcd is embedded in a detached `weft lab _etcd`
// process, each host runs `weft agent` with flanneld's flags, and pods get
// their interfaces from the flannel CNI plugin through libcni with a
// kube-flannel style conflist, exactly as a container runtime would.
// Processes are detached (own session) so that `weft lab up` can exit and
// leave the lab running; their pids and start times are recorded so that
// `weft lab down` kills only what the lab started.
//
// Files: plan.go (the pure topology: names, addresses, segments, command
// lines, conflist), lab.go and lab_linux.go (up, down, demo),
// build_linux.go (namespaces, switches, the router and links),
// proc_linux.go (spawning and stopping processes), etcd.go and
// etcd_linux.go (the etcd process and reaching it from here), cni_linux.go
// (pods through libcni), probe_linux.go (the checks and the path lookup),
// report.go (verdicts, paths and the result table), running_linux.go
// (check, status and exec on a running lab), main.go (the command line),
// kube.go and kube_linux.go (--store kube: a Kubernetes control plane from
// internal/kubecluster on the underlay instead of etcd, Nodes for the
// hosts, agents with --kube-subnet-mgr and a ServiceAccount token),
// neigh.go and neigh_linux.go (what the lab needs of the kernel's shared
// neighbour table, raising it and restoring it when the last lab goes).
package lab
