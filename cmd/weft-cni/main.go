// Command weft-cni is weft's CNI plugin. It is installed as
// /opt/cni/bin/flannel, because existing network configs (kube-flannel's
// 10-flannel.conflist among them) say "type": "flannel", and it accepts
// flannel's plugin configuration unchanged. See internal/cni.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/weftnet/weft/internal/cni"
	"github.com/weftnet/weft/internal/version"
)

var about = "weft CNI plugin (flannel-compatible) " + version.Version

const help = `Usage: a container runtime runs this plugin, with CNI_COMMAND and the other
CNI_* variables in the environment and the network config on stdin; it takes
no arguments. Run by hand:

  flannel --version          print the version
  CNI_COMMAND=VERSION flannel  print the CNI versions it speaks, as JSON
`

func main() {
	if len(os.Args) > 1 {
		os.Exit(byHand(os.Args[1:], os.Stdout, os.Stderr))
	}
	// A CNI plugin's stdout carries the result and its stderr lands in the
	// runtime's log unasked, so the plugin stays silent.
	p := cni.New(slog.New(slog.DiscardHandler))
	skel.PluginMainFuncs(skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check},
		cniversion.All, about)
}

// byHand answers a person: runtimes never pass arguments, so any argument
// means someone typed the command.
func byHand(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
		fmt.Fprintf(stdout, "%s\n\n%s", about, help)
		return 0
	case len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version"):
		fmt.Fprintln(stdout, about)
		return 0
	default:
		fmt.Fprintf(stderr, "weft-cni: unexpected arguments %q: a CNI plugin takes its input from CNI_* variables and stdin\n\n%s", args, help)
		return 2
	}
}
