package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
)

// findPlugin is how invoke finds a delegate on CNI_PATH, through p.Exec
// when set so that unit tests decide which plugins exist.
func (p *Plugin) findPlugin(name string) error {
	paths := filepath.SplitList(os.Getenv("CNI_PATH"))
	var err error
	if p.Exec != nil {
		_, err = p.Exec.FindInPath(name, paths)
	} else {
		_, err = invoke.FindInPath(name, paths)
	}
	return err
}

func (p *Plugin) notes() io.Writer {
	if p.Notes != nil {
		return p.Notes
	}
	return os.Stderr
}

// delWithoutDelegate is DEL when the saved delegate cannot be run at all
// (its binary is not on CNI_PATH: a typo in "type", or the plugin was
// uninstalled after ADD). The CNI spec wants DEL to release what it can
// and succeed when the rest is gone; failing would make the runtime retry
// a DEL that can never work, forever. What a missing delegate could have
// set up: the address its IPAM reserved (released here, through the IPAM
// plugin when it exists, else from host-local's store directly) and the
// interface in the container's namespace (which goes with the namespace).
// The saved config is then forgotten; what was skipped goes to stderr,
// which the runtime logs.
func (p *Plugin) delWithoutDelegate(nc *NetConf, args *skel.CmdArgs, typ string, conf []byte, why error) error {
	var d map[string]any
	dec := json.NewDecoder(bytes.NewReader(conf))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("parse saved delegate config %s: %w", filepath.Join(nc.DataDir, args.ContainerID), err)
	}
	ipam, _ := d["ipam"].(map[string]any) // RenderDelegate's key
	ipamType, _ := lookupFold(ipam, "type").(string)

	var released string
	switch {
	case ipamType == "":
		released = "its config has no IPAM plugin, so no address to release"
	case p.findPlugin(ipamType) == nil:
		// The IPAM plugin reads the same config (name, ipam) and the same
		// CNI_CONTAINERID and CNI_IFNAME as the delegate would have passed.
		if err := invoke.DelegateDel(context.Background(), ipamType, conf, p.Exec); err != nil {
			return fmt.Errorf("delegate %q cannot be run (%v); its IPAM plugin's DEL to %q: %w", typ, why, ipamType, err)
		}
		released = fmt.Sprintf("released its addresses through the IPAM plugin %q", ipamType)
	case ipamType == defaultIPAMType:
		dir := hostLocalDir(d)
		ips, err := releaseHostLocal(dir, args.ContainerID, args.IfName)
		if err != nil {
			return fmt.Errorf("delegate %q and IPAM plugin %q cannot be run (%v); release the reservations in %s: %w", typ, ipamType, why, dir, err)
		}
		released = fmt.Sprintf("IPAM plugin %q not found either: removed its reservations in %s directly (%s)", ipamType, dir, ipList(ips))
	default:
		released = fmt.Sprintf("IPAM plugin %q not found either: whatever it reserved is left", ipamType)
	}
	if masq, _ := lookupFold(d, "ipMasq").(bool); masq {
		// Only the delegate knows the rules it added (the bridge plugin's
		// per-container chain); say so rather than guess.
		released += "; its ipMasq rules for the container, if it added any, are left"
	}
	if err := removeConf(nc.DataDir, args.ContainerID); err != nil {
		return err
	}
	fmt.Fprintf(p.notes(), "weft-cni: DEL %s: delegate %q cannot be run (%v): skipped its DEL (interface %s in %s is left to the namespace's removal); %s; forgot the saved config\n",
		args.ContainerID, typ, why, args.IfName, orNone(args.Netns), released)
	p.Log.Warn("DEL without the delegate", "container", args.ContainerID, "delegate", typ, "why", why.Error(), "released", released)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no namespace"
	}
	return s
}

func ipList(ips []string) string {
	if len(ips) == 0 {
		return "none"
	}
	return strings.Join(ips, ", ")
}

// releaseHostLocal removes containerID's reservations for ifname from one
// host-local network directory, as host-local's own DEL does: the files
// holding "<id>\r\n<ifname>", or, when there are none, the files of older
// versions holding the ID alone. It holds host-local's lock (an flock on
// <dir>/lock) meanwhile, so that no concurrent ADD sees a half-released
// store. A missing directory holds nothing to release.
func releaseHostLocal(dir, containerID, ifname string) ([]string, error) {
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return nil, nil
	}
	unlock, err := lockFile(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	rs, err := ReadReservations(dir)
	if err != nil {
		return nil, err
	}
	match := func(withIf bool) []Reservation {
		var out []Reservation
		for _, r := range rs {
			if r.ContainerID != containerID {
				continue
			}
			if (withIf && r.IfName == ifname && ifname != "") || (!withIf && r.IfName == "") {
				out = append(out, r)
			}
		}
		return out
	}
	mine := match(true)
	if len(mine) == 0 {
		mine = match(false)
	}
	var released []string
	for _, r := range mine {
		path := filepath.Join(dir, r.IP.String())
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return released, fmt.Errorf("remove host-local reservation %s: %w", path, err)
		}
		released = append(released, r.IP.String())
	}
	return released, nil
}
