// Package bench is `weft lab bench`: benchmarks that write numbers, run on
// one machine in labs built by package lab. They never assert speed; the
// numbers go into a table and JSON and from there into docs/benchmarks.md.
//
// Four sections, each selectable with --only:
//
//   - datapath: pod→pod across two hosts for the no-agent baseline (a
//     host-gw lab whose agents are stopped, weft's rules flushed and the
//     routes put back by hand) and a second one like it (baseline-2, an
//     A/A control: how far noise alone moves a ratio), host-gw, host-gw
//     with --ip-masq
//     (host-gw+masq: what masquerading and its connection tracking cost),
//     vxlan, udp, and a VXLAN device made by hand (no agent; the
//     reference for vxlan), wireguard, and the same WireGuard tunnels
//     run by standalone wireguard-go processes (wireguard-go, no agent;
//     the reference for wireguard, when a wireguard-go binary is on PATH
//     or beside weft). iperf3 TCP with 1
//     and 4 streams, iperf3 UDP with 1400-byte datagrams (packets per
//     second received), ping RTT p50/p99, and the agents' CPU seconds and
//     RSS. All labs stay up together and the measurements interleave: each
//     round runs every test on every backend, in an order rotated per
//     round, so the machine's drift hits all backends alike; the report
//     gives medians over rounds and ratios to the baseline.
//   - join: in a 3-host lab with real agents, a synthetic lease for a new
//     host is written to etcd and the time until its route (and, for vxlan,
//     its neighbour and FDB entry) is in the kernel of every host is taken
//     from netlink notifications subscribed in each host's namespace.
//   - scale: one real agent is started facing N synthetic leases written
//     straight into etcd, each with its own etcd lease as flannel hosts
//     have; measured: start to every entry programmed, start to /readyz,
//     the agent's RSS and CPU. Then churn: adds and deletes at a fixed rate,
//     lag from each etcd write to the kernel change, and at the end a
//     comparison of kernel and etcd (lost and stale entries).
//   - restart: packets lost by `ping -i 0.01` pod→pod while the agents are
//     restarted after SIGTERM and after SIGKILL.
//
// Files: stats.go (medians, percentiles), result.go (the JSON shape),
// report.go (the tables), parse.go (iperf3, ping and /proc output),
// options.go and main.go (the command line), run_linux.go (the sections),
// datapath_linux.go, join_linux.go, scale_linux.go, restart_linux.go,
// kwatch_linux.go (timestamped netlink notifications from a namespace),
// synth_linux.go (synthetic leases in etcd).
package bench
