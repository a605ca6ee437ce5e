// Package cni is weft's CNI plugin: a drop-in for flannel's plugin
// (flannel-io/cni-plugin), installed as /opt/cni/bin/flannel because existing
// network configs say "type": "flannel".
//
// Like flannel's, the plugin does no networking of its own. On ADD it reads
// the node's subnet from subnet.env (written by weft or flanneld), turns the
// "delegate" object of its config into a complete config for another plugin
// (bridge + host-local by default), saves that config under dataDir keyed by
// container ID, and runs the delegate. DEL replays the saved config, so a
// pod is torn down with exactly the settings it was set up with even if
// subnet.env changed in between.
//
// One thing flannel does not do: when the node's subnet has changed while
// the bridge (cni0) survived, the bridge plugin refuses every new pod with
// `"cni0" already has an IP address different from 10.244.2.1/24`
// (flannel-io/flannel#1850). Before delegating ADD this plugin removes the
// stale address itself if no pod is attached to the bridge any more, and
// otherwise fails with an error that names the pods still holding the old
// subnet. See docs/cni.md and BridgeRepairer.
package cni
