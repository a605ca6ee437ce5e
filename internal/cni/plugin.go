package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
)

// Plugin runs the CNI commands. Its fields are its side effects, so that
// unit tests can replace them; New sets the real ones.
type Plugin struct {
	Log *slog.Logger // required
	// Exec runs delegate plugins; nil runs the binaries found on CNI_PATH.
	Exec invoke.Exec
	// Bridge repairs a bridge left on an old subnet before ADD; nil skips
	// the repair (flannel's behaviour).
	Bridge BridgeRepairer
	// Stdout receives ADD's result; nil means os.Stdout, as CNI requires.
	Stdout io.Writer
	// Notes receives what a DEL had to skip (see delWithoutDelegate); nil
	// means os.Stderr, which the runtime logs.
	Notes io.Writer
}

// New returns the plugin as the binary runs it.
func New(log *slog.Logger) *Plugin {
	return &Plugin{Log: log, Bridge: NewBridgeRepairer(log)}
}

// Add renders the delegate config, repairs the bridge if the node's subnet
// changed, saves the config for DEL and runs the delegate's ADD, printing
// its result. The config is saved before delegating so that the DEL a
// runtime sends after a failed ADD can release whatever the delegate
// managed to allocate.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	nc, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := checkContainerID(args.ContainerID); err != nil {
		return err
	}
	env, err := LoadSubnetEnv(nc.SubnetFile)
	if err != nil {
		return err
	}
	d, err := RenderDelegate(nc, env)
	if err != nil {
		return err
	}
	conf, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode delegate config: %w", err)
	}
	if err := p.repairBridge(nc, d, env.Subnet); err != nil {
		return err
	}
	if err := saveConf(nc.DataDir, args.ContainerID, conf); err != nil {
		return err
	}
	typ := d["type"].(string) // ParseNetConf checked it is a string; default "bridge"
	log := p.Log.With("container", args.ContainerID, "delegate", typ)
	res, err := invoke.DelegateAdd(context.Background(), typ, conf, p.Exec)
	if err != nil {
		log.Debug("delegate ADD failed", "err", err)
		return fmt.Errorf("delegate ADD to %q: %w", typ, err)
	}
	out := p.Stdout
	if out == nil {
		out = os.Stdout
	}
	return res.PrintTo(out)
}

// repairBridge runs the BridgeRepairer when the delegate is the bridge
// plugin putting a gateway address on a host bridge. An flock in dataDir
// makes look-and-remove atomic among concurrent ADDs: without it, an ADD
// that saw the stale address could then see the veth of a sibling ADD that
// had already repaired the bridge, and refuse a healthy node.
func (p *Plugin) repairBridge(nc *NetConf, d map[string]any, subnet netip.Prefix) error {
	bridge, ipamDir, ok := bridgeTarget(d)
	if !ok || !subnet.IsValid() || p.Bridge == nil {
		return nil
	}
	if err := os.MkdirAll(nc.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", nc.DataDir, err)
	}
	unlock, err := lockFile(filepath.Join(nc.DataDir, ".bridge-"+bridge+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	return p.Bridge.Repair(bridge, subnet.Masked(), ipamDir)
}

// Del replays the saved delegate config through the delegate's DEL and then
// forgets it. Without a saved config there is nothing of ours to undo
// (never added, or already deleted), which the CNI spec says is success.
// A delegate that cannot be found is released around (delWithoutDelegate)
// instead of failing every retry. subnet.env is not needed: DEL must work
// while the agent is down.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	nc, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	conf, err := loadConf(nc.DataDir, args.ContainerID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	typ, err := delegateType(conf)
	if err != nil {
		return fmt.Errorf("saved delegate config %s: %w", filepath.Join(nc.DataDir, args.ContainerID), err)
	}
	if err := p.findPlugin(typ); err != nil {
		return p.delWithoutDelegate(nc, args, typ, conf, err)
	}
	if err := invoke.DelegateDel(context.Background(), typ, conf, p.Exec); err != nil {
		// Keep the saved config: the runtime retries DEL.
		return fmt.Errorf("delegate DEL to %q: %w", typ, err)
	}
	return removeConf(nc.DataDir, args.ContainerID)
}

// Check differs from flannel's plugin, whose CHECK always succeeds: when
// this plugin set the container up (a saved config exists) and the runtime
// passes the ADD result, the delegate's CHECK runs on the saved config
// with that result, so the bridge and host-local plugins verify the
// interface, addresses, routes and reservation. Without either, CHECK
// succeeds as flannel's does.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	nc, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if nc.PrevResult == nil {
		return nil
	}
	conf, err := loadConf(nc.DataDir, args.ContainerID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var d map[string]any
	dec := json.NewDecoder(bytes.NewReader(conf))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("parse saved delegate config %s: %w", filepath.Join(nc.DataDir, args.ContainerID), err)
	}
	typ, _ := d["type"].(string)
	if typ == "" {
		return fmt.Errorf("saved delegate config %s has no type", filepath.Join(nc.DataDir, args.ContainerID))
	}
	d["prevResult"] = nc.PrevResult
	conf, err = json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode delegate config: %w", err)
	}
	if err := invoke.DelegateCheck(context.Background(), typ, conf, p.Exec); err != nil {
		return fmt.Errorf("delegate CHECK to %q: %w", typ, err)
	}
	return nil
}

func delegateType(conf []byte) (string, error) {
	var t struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(conf, &t); err != nil {
		return "", err
	}
	if t.Type == "" {
		return "", errors.New("no delegate type")
	}
	return t.Type, nil
}
