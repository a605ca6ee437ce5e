// Package faults is `weft lab faults`: a fault suite that builds labs
// (package lab), keeps pods on different hosts pinging each other every
// 10 ms, breaks one thing at a time with real parts and measures, per
// fault, the pings lost, the time to repair and the agent log line that
// named the cause, against the goal of issue 16: no loss the fault does
// not force, repair within 1 s, a log line naming the cause.
// docs/reliability.md holds the table and what each row does.
//
// Files: row.go (a row, its verdict, the terminal and markdown tables,
// splicing the doc), gaps.go (the known gaps: rows that fail until a fix
// on another branch lands), options.go and main.go (the command line),
// suite_linux.go (labs and the per-row harness: pings, log offsets,
// healing between rows), harness_linux.go (synthetic leases, kernel and
// log helpers), ping_linux.go (ping -D per pod pair, read with
// bench.ParsePing), rows_linux.go (the faults and the labs they run in),
// race_linux.go (two agents racing for the last subnet), cluster_linux.go
// (a 3-member etcd losing a follower and the leader).
package faults
