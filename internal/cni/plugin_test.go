package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

// These tests drive the command logic with a fake delegate; the real bridge
// and host-local plugins run in integration_linux_test.go.

type delegateCall struct {
	plugin, command string
	conf            []byte
	savedAtCall     bool // the saved config existed when the delegate ran
}

type fakeExec struct {
	savePath string
	calls    []delegateCall
	out      []byte
	err      error
	missing  map[string]bool // plugins not on CNI_PATH
}

func (f *fakeExec) ExecPlugin(_ context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	cmd := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			cmd = v
		}
	}
	_, statErr := os.Stat(f.savePath)
	f.calls = append(f.calls, delegateCall{plugin: filepath.Base(pluginPath), command: cmd, conf: stdin, savedAtCall: statErr == nil})
	if f.err != nil {
		return nil, f.err
	}
	if cmd == "ADD" {
		return f.out, nil
	}
	return nil, nil
}

func (f *fakeExec) FindInPath(plugin string, paths []string) (string, error) {
	if f.missing[plugin] {
		return "", fmt.Errorf("failed to find plugin %q in path %s", plugin, paths)
	}
	return "/fake/bin/" + plugin, nil
}

func (f *fakeExec) Decode([]byte) (version.PluginInfo, error) { return version.All, nil }

type fakeRepairer struct {
	calls []string
	err   error
}

func (r *fakeRepairer) Repair(bridge string, subnet netip.Prefix, ipamDir string) error {
	r.calls = append(r.calls, bridge+" "+subnet.String()+" "+ipamDir)
	return r.err
}

type fixture struct {
	p          *Plugin
	exec       *fakeExec
	repair     *fakeRepairer
	out        *bytes.Buffer
	subnetFile string
	dataDir    string
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	f := &fixture{
		subnetFile: filepath.Join(dir, "subnet.env"),
		dataDir:    filepath.Join(dir, "flannel"),
		repair:     &fakeRepairer{},
		out:        &bytes.Buffer{},
	}
	f.exec = &fakeExec{
		savePath: filepath.Join(f.dataDir, "ctr1"),
		out:      []byte(`{"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/run/netns/p"}],"ips":[{"version":"4","address":"10.1.17.2/24","gateway":"10.1.17.1","interface":0}]}`),
	}
	f.p = &Plugin{Log: slog.New(slog.DiscardHandler), Exec: f.exec, Bridge: f.repair, Stdout: f.out}
	if err := os.WriteFile(f.subnetFile, []byte(flannelTestEnv), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) args(extra string) *skel.CmdArgs {
	conf := `{"cniVersion":"0.3.1","name":"cbr0","type":"flannel","subnetFile":"` + f.subnetFile +
		`","dataDir":"` + f.dataDir + `","delegate":{"hairpinMode":true}` + extra + `}`
	return &skel.CmdArgs{ContainerID: "ctr1", Netns: "/run/netns/p", IfName: "eth0", StdinData: []byte(conf)}
}

func TestAddSavesThenDelegates(t *testing.T) {
	f := newFixture(t)
	if err := f.p.Add(f.args("")); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if len(f.exec.calls) != 1 {
		t.Fatalf("delegate calls: %d, want 1", len(f.exec.calls))
	}
	c := f.exec.calls[0]
	if c.plugin != "bridge" || c.command != "ADD" {
		t.Errorf("delegate call %s %s, want bridge ADD", c.plugin, c.command)
	}
	if !c.savedAtCall {
		t.Error("the delegate ran before its config was saved: a DEL after a failed ADD could not clean up")
	}
	saved, err := os.ReadFile(filepath.Join(f.dataDir, "ctr1"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved, c.conf) {
		t.Errorf("saved config differs from the delegated one:\nsaved %s\nsent  %s", saved, c.conf)
	}
	want := `{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],"type":"host-local"},"isGateway":true,"mtu":1472,"name":"cbr0","type":"bridge"}`
	if string(saved) != want {
		t.Errorf("delegate config:\n got %s\nwant %s", saved, want)
	}
	var res map[string]any
	if err := json.Unmarshal(f.out.Bytes(), &res); err != nil || res["cniVersion"] != "0.3.1" {
		t.Errorf("printed result %q: %v", f.out, err)
	}
	if !strings.Contains(f.out.String(), "10.1.17.2/24") {
		t.Errorf("printed result lacks the delegate's IP: %s", f.out)
	}
	if len(f.repair.calls) != 1 || f.repair.calls[0] != "cni0 10.1.17.0/24 /var/lib/cni/networks/cbr0" {
		t.Errorf("repair calls: %q", f.repair.calls)
	}
}

func TestAddDelegateFailureKeepsConfForDel(t *testing.T) {
	f := newFixture(t)
	f.exec.err = errors.New("bridge exploded")
	err := f.p.Add(f.args(""))
	if err == nil || !strings.Contains(err.Error(), "bridge exploded") {
		t.Fatalf("Add = %v, want the delegate's error", err)
	}
	if _, err := os.Stat(filepath.Join(f.dataDir, "ctr1")); err != nil {
		t.Errorf("saved config gone after failed ADD: %v", err)
	}
}

func TestAddStopsOnRepairError(t *testing.T) {
	f := newFixture(t)
	f.repair.err = &StaleBridgeError{Bridge: "cni0", Stale: prefixes("10.1.9.1/24"), Subnet: netip.MustParsePrefix("10.1.17.0/24"), Ports: []string{"veth1"}}
	err := f.p.Add(f.args(""))
	var sbe *StaleBridgeError
	if !errors.As(err, &sbe) {
		t.Fatalf("Add = %v, want the StaleBridgeError", err)
	}
	if len(f.exec.calls) != 0 {
		t.Error("delegate ran although the bridge could not be repaired")
	}
	if _, err := os.Stat(filepath.Join(f.dataDir, "ctr1")); !os.IsNotExist(err) {
		t.Errorf("config saved for a refused ADD: %v", err)
	}
}

func TestAddWithoutSubnetEnv(t *testing.T) {
	f := newFixture(t)
	os.Remove(f.subnetFile)
	err := f.p.Add(f.args(""))
	if err == nil || !strings.Contains(err.Error(), "failed to load flannel 'subnet.env' file: open "+f.subnetFile) {
		t.Fatalf("Add = %v", err)
	}
	if len(f.exec.calls) != 0 {
		t.Error("delegate ran without subnet.env")
	}
}

func TestDelReplaysSavedConfAndIsIdempotent(t *testing.T) {
	f := newFixture(t)
	if err := f.p.Add(f.args("")); err != nil {
		t.Fatal(err)
	}
	added := f.exec.calls[0].conf
	// DEL must not need subnet.env: the agent may be down.
	os.Remove(f.subnetFile)
	for i := range 2 {
		if err := f.p.Del(f.args("")); err != nil {
			t.Fatalf("Del #%d: %v", i+1, err)
		}
	}
	if len(f.exec.calls) != 2 {
		t.Fatalf("delegate calls: %d, want ADD and one DEL", len(f.exec.calls))
	}
	del := f.exec.calls[1]
	if del.command != "DEL" || del.plugin != "bridge" || !bytes.Equal(del.conf, added) {
		t.Errorf("DEL call %s %s with %s, want bridge DEL with the saved config", del.plugin, del.command, del.conf)
	}
	if _, err := os.Stat(filepath.Join(f.dataDir, "ctr1")); !os.IsNotExist(err) {
		t.Errorf("saved config still there after DEL: %v", err)
	}
}

func TestDelFailureKeepsConf(t *testing.T) {
	f := newFixture(t)
	if err := f.p.Add(f.args("")); err != nil {
		t.Fatal(err)
	}
	f.exec.err = errors.New("busy")
	if err := f.p.Del(f.args("")); err == nil {
		t.Fatal("Del succeeded although the delegate failed")
	}
	if _, err := os.Stat(filepath.Join(f.dataDir, "ctr1")); err != nil {
		t.Errorf("saved config removed after a failed DEL, the retry cannot clean up: %v", err)
	}
}

func TestCheck(t *testing.T) {
	f := newFixture(t)
	prev := `,"prevResult":{"cniVersion":"0.4.0","ips":[{"address":"10.1.17.2/24","interface":0}],"interfaces":[{"name":"eth0"}]}`
	// Nothing saved: flannel's answer, success without a delegate.
	if err := f.p.Check(f.args(prev)); err != nil {
		t.Fatalf("Check without saved config: %v", err)
	}
	if err := f.p.Add(f.args("")); err != nil {
		t.Fatal(err)
	}
	// No prevResult: nothing to check against.
	if err := f.p.Check(f.args("")); err != nil || len(f.exec.calls) != 1 {
		t.Fatalf("Check without prevResult: %v, %d calls", err, len(f.exec.calls))
	}
	if err := f.p.Check(f.args(prev)); err != nil {
		t.Fatalf("Check: %v", err)
	}
	c := f.exec.calls[len(f.exec.calls)-1]
	if c.command != "CHECK" || c.plugin != "bridge" {
		t.Fatalf("last delegate call %s %s, want bridge CHECK", c.plugin, c.command)
	}
	var sent map[string]json.RawMessage
	if err := json.Unmarshal(c.conf, &sent); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sent["prevResult"]), "10.1.17.2/24") || string(sent["mtu"]) != "1472" {
		t.Errorf("CHECK config lacks the prevResult or the saved settings: %s", c.conf)
	}
}
