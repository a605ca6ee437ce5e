// Command weft-cni is weft's CNI plugin. It is installed as
// /opt/cni/bin/flannel, because existing network configs (kube-flannel's
// 10-flannel.conflist among them) say "type": "flannel", and it accepts
// flannel's plugin configuration unchanged. See internal/cni.
package main

import (
	"log/slog"

	"github.com/containernetworking/cni/pkg/skel"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/weftnet/weft/internal/cni"
	"github.com/weftnet/weft/internal/version"
)

func main() {
	// A CNI plugin's stdout carries the result and its stderr lands in the
	// runtime's log unasked, so the plugin stays silent.
	p := cni.New(slog.New(slog.DiscardHandler))
	skel.PluginMainFuncs(skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check},
		cniversion.All, "weft CNI plugin (flannel-compatible) "+version.Version)
}
