package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/backend/wireguard"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/subnetenv"
)

// wireguardGoBinary finds a standalone wireguard-go: on PATH, else beside
// the weft binary (`go build -o bin/ golang.zx2c4.com/wireguard` puts it
// there as bin/wireguard). "" when there is none.
func wireguardGoBinary(weft string) string {
	if p, err := exec.LookPath("wireguard-go"); err == nil {
		return p
	}
	if weft == "" {
		weft, _ = os.Executable()
	}
	for _, name := range []string{"wireguard-go", "wireguard"} {
		p := filepath.Join(filepath.Dir(weft), name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// handWireGuardGo replaces the agents' in-process WireGuard with what an
// operator would run without weft: one standalone wireguard-go process per
// host, configured through its UAPI socket as `wg set` would, with the
// same keys, port, MTU and routes as the wireguard backend gives:
//
//	setsid wireguard-go -f wgbN
//	wg set wgbN private-key <key> listen-port 51820 peer <pub> endpoint <peer eth0>:51820 allowed-ips <peer subnet>
//	ip link set wgbN mtu 1420 up; ip addr add <own subnet>.0/32 dev wgbN
//	ip route replace <peer subnet> dev wgbN
//
// The processes are returned so the caller ends them with the lab.
func handWireGuardGo(ctx context.Context, l *lab.Lab, bin string) ([]*exec.Cmd, error) {
	hosts := l.Topology().Hosts
	type hostKey struct {
		priv, pub wireguard.Key
	}
	keys := make([]hostKey, len(hosts))
	for i := range hosts {
		priv, err := wireguard.NewPrivateKey()
		if err != nil {
			return nil, err
		}
		pub, err := priv.PublicKey()
		if err != nil {
			return nil, err
		}
		keys[i] = hostKey{priv, pub}
	}
	var procs []*exec.Cmd
	fail := func(err error) ([]*exec.Cmd, error) {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
		return nil, err
	}
	for i, h := range hosts {
		name := fmt.Sprintf("wgb%d", i+1)
		env, err := subnetenv.Read(h.SubnetFile)
		if err != nil {
			return fail(err)
		}
		sub, ok := l.Subnet(h.Name)
		if !ok {
			return fail(fmt.Errorf("no subnet for %s", h.Name))
		}
		if err := flushRules(ctx, h.NS); err != nil {
			return fail(err)
		}
		for _, c := range [][]string{{"ip", "link", "del", wireguard.DeviceName}, {"ip", "route", "flush", "proto", "87"}} {
			if _, err := inNS(ctx, h.NS, c...); err != nil {
				return fail(err)
			}
		}
		cmd := exec.Command("ip", "netns", "exec", h.NS, bin, "-f", name)
		cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error")
		// A session of its own, as the lab gives each agent: with the
		// kernel's autogroup scheduling (sched_autogroup_enabled) each
		// session is one group in the CPU's fair share, so a process left
		// in the bench's session would share iperf3's group and be
		// scheduled differently from the agent it is compared with.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return fail(fmt.Errorf("start %s in %s: %w", bin, h.NS, err))
		}
		procs = append(procs, cmd)
		sock := "/var/run/wireguard/" + name + ".sock"
		var cfg strings.Builder
		fmt.Fprintf(&cfg, "private_key=%x\nlisten_port=%d\n", keys[i].priv[:], wireguard.DefaultListenPort)
		var routes [][]string
		for j, g := range hosts {
			if j == i {
				continue
			}
			gs, ok := l.Subnet(g.Name)
			if !ok {
				return fail(fmt.Errorf("no subnet for %s", g.Name))
			}
			fmt.Fprintf(&cfg, "public_key=%x\nendpoint=%s:%d\nallowed_ip=%s\n", keys[j].pub[:], g.Addr.Addr(), wireguard.DefaultListenPort, gs)
			routes = append(routes, []string{"ip", "route", "replace", gs.String(), "dev", name})
		}
		// The socket appears once the process has made its device.
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := wireguard.SetSocket(sock, cfg.String(), 5*time.Second)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fail(fmt.Errorf("configure %s through %s: %w", name, sock, err))
			}
			time.Sleep(50 * time.Millisecond)
		}
		cmds := append([][]string{
			{"ip", "link", "set", name, "mtu", strconv.Itoa(env.MTU), "up"},
			{"ip", "addr", "add", sub.Addr().String() + "/32", "dev", name},
		}, routes...)
		for _, c := range cmds {
			if _, err := inNS(ctx, h.NS, c...); err != nil {
				return fail(err)
			}
		}
	}
	return procs, nil
}
