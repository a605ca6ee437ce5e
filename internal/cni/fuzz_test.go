package cni

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/weftnet/weft/internal/subnetenv"
)

// FuzzCommands drives what the runtime hands the plugin: the network config
// on stdin and the CNI_CONTAINERID, CNI_IFNAME and CNI_ARGS variables
// (skel passes CNI_ARGS through the environment untouched; the delegate is
// the one that parses it, and it must never change the plugin's files or
// the delegate's config). The properties:
//
//   - the config parses, or the error says it is the flannel network
//     config;
//   - RenderDelegate leaves its input alone and renders a delegate that
//     encodes, names the network, carries the node's subnet and a type
//     DEL can read back;
//   - when the config points into the test's directories (the @DATA@ and
//     @SUBNET@ placeholders, so that the fuzzer never writes elsewhere):
//     an invalid container ID is refused with nothing saved; ADD saves
//     exactly the config the delegate received, inside dataDir, and it is
//     the rendered one whatever CNI_ARGS, the ID and ifname say; DEL after
//     it, whether ADD succeeded or not, succeeds and forgets the config,
//     and so does a second DEL.
func FuzzCommands(f *testing.F) {
	const conf = `{"cniVersion":"0.3.1","name":"cbr0","type":"flannel","subnetFile":"@SUBNET@","dataDir":"@DATA@","delegate":{"hairpinMode":true,"isDefaultGateway":true}}`
	f.Add(conf, "ctr1", "eth0", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0")
	f.Add(`{"cniVersion":"1.0.0","name":"n","type":"flannel","subnetFile":"@SUBNET@","dataDir":"@DATA@","ipam":{"type":"host-local","routes":[{"dst":"0.0.0.0/0"}]},"runtimeConfig":{"portMappings":[]}}`, "abc.def-1", "net1", "")
	f.Add(`{"name":"n","subnetFile":"@SUBNET@","dataDir":"@DATA@","delegate":{"type":"ipvlan","master":"eth0"},"prevResult":{"cniVersion":"0.3.1"}}`, "../escape", "eth0", "K8S_POD_NAME=a;b")
	f.Add(`{"name":"n","subnetFile":"@SUBNET@","dataDir":"@DATA@","delegate":{"name":"x"}}`, ".hidden", "eth0", "")
	f.Add(`{"name":"n","ipam":{"routes":"nope"}}`, "c", "eth0", "")
	f.Add(`{"delegate":{"type":7}}`, "c", "eth0", "")

	// flannelTestEnv, as the plugin reads it.
	envText := flannelTestEnv
	env := subnetenv.Env{
		Networks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		Subnet:   netip.MustParsePrefix("10.1.17.0/24"),
		MTU:      1472,
		IPMasq:   true,
	}
	f.Fuzz(func(t *testing.T, stdin, containerID, ifname, cniArgs string) {
		// The CNI_* values come from environment variables, which cannot
		// hold a NUL.
		if strings.ContainsRune(containerID+ifname+cniArgs, 0) {
			return
		}
		var dataDir, subnetFile string
		live := strings.Contains(stdin, "@DATA@") && strings.Contains(stdin, "@SUBNET@")
		if live {
			dir := t.TempDir()
			dataDir, subnetFile = filepath.Join(dir, "flannel"), filepath.Join(dir, "subnet.env")
			if err := os.WriteFile(subnetFile, []byte(envText), 0o644); err != nil {
				t.Fatal(err)
			}
			stdin = strings.ReplaceAll(strings.ReplaceAll(stdin, "@DATA@", dataDir), "@SUBNET@", subnetFile)
		}

		nc, err := ParseNetConf([]byte(stdin))
		if err != nil {
			if !strings.Contains(err.Error(), "flannel network config") {
				t.Fatalf("error %q does not say it is the flannel network config", err)
			}
			return
		}
		before, err := json.Marshal(nc)
		if err != nil {
			t.Fatalf("parsed config does not encode: %v", err)
		}
		d, err := RenderDelegate(nc, env)
		if after, _ := json.Marshal(nc); !bytes.Equal(before, after) {
			t.Fatalf("RenderDelegate changed its input: %s -> %s", before, after)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "flannel network config") {
				t.Fatalf("error %q does not say it is the flannel network config", err)
			}
			return
		}
		rendered, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("rendered delegate does not encode: %v", err)
		}
		var back struct {
			Name string
			Type string
			IPAM struct {
				Ranges [][]struct{ Subnet string }
			}
		}
		if err := json.Unmarshal(rendered, &back); err != nil {
			t.Fatalf("rendered delegate %s does not decode: %v", rendered, err)
		}
		if d["name"] != nc.Name || len(back.IPAM.Ranges) == 0 || back.IPAM.Ranges[0][0].Subnet != "10.1.17.0/24" {
			t.Fatalf("rendered delegate %s: want name %q and the node's subnet 10.1.17.0/24", rendered, nc.Name)
		}
		if typ, err := delegateType(rendered); typ != d["type"] && !(err != nil && d["type"] == "") {
			t.Fatalf("DEL would read type %q (%v) from %s, ADD ran %q", typ, err, rendered, d["type"])
		}
		bridgeTarget(d)

		if !live || nc.DataDir != dataDir || nc.SubnetFile != subnetFile {
			return
		}
		fx := &fakeExec{
			savePath: filepath.Join(dataDir, containerID),
			out:      []byte(`{"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/run/netns/p"}],"ips":[{"version":"4","address":"10.1.17.2/24","gateway":"10.1.17.1","interface":0}]}`),
		}
		p := &Plugin{Log: slog.New(slog.DiscardHandler), Exec: fx, Stdout: &bytes.Buffer{}, Notes: &bytes.Buffer{}}
		args := &skel.CmdArgs{ContainerID: containerID, Netns: "/run/netns/p", IfName: ifname, Args: cniArgs, StdinData: []byte(stdin)}
		addErr := p.Add(args)
		if checkContainerID(containerID) != nil {
			if addErr == nil || !strings.Contains(addErr.Error(), "invalid container ID") {
				t.Fatalf("ADD with container ID %q: %v, want it refused", containerID, addErr)
			}
			if ents, _ := os.ReadDir(dataDir); len(ents) != 0 {
				t.Fatalf("refused ADD left %v in dataDir", ents)
			}
			return
		}
		saved, readErr := os.ReadFile(filepath.Join(dataDir, containerID))
		if addErr == nil {
			if readErr != nil {
				t.Fatalf("ADD succeeded without saving the config: %v", readErr)
			}
			if len(fx.calls) != 1 || fx.calls[0].command != "ADD" || !bytes.Equal(fx.calls[0].conf, saved) {
				t.Fatalf("delegate calls %+v; want one ADD with the saved config %s", fx.calls, saved)
			}
			// Only stdin and subnet.env shape the delegate's config: not
			// CNI_ARGS, the container ID or the interface name.
			if !bytes.Equal(saved, rendered) {
				t.Fatalf("saved config %s differs from the rendered %s", saved, rendered)
			}
		}
		for i := range 2 {
			if err := p.Del(args); err != nil {
				t.Fatalf("DEL #%d after ADD (%v): %v", i+1, addErr, err)
			}
		}
		if _, err := os.Stat(filepath.Join(dataDir, containerID)); err == nil {
			t.Fatal("saved config still there after DEL")
		}
	})
}
