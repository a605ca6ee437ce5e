// Command testpod is the one program in the real-node test's pod image
// (make test-cluster; tools/image builds it into weft.invalid/testpod):
//
//	testpod pause          the pod sandbox's process (containerd's sandbox
//	                       image): waits for a signal, reaps children
//	testpod echo -port P   the test workload: on TCP port P answers every
//	                       connection with one line, "<client address it
//	                       saw> <its host name>" (the pod's name); on P+1 an
//	                       HTTP server whose /dial?addr=IP:P connects to
//	                       another pod's echo port (or a Service's) and
//	                       returns that line, and whose /ping?addr=IP sends
//	                       it one ICMP echo request, so a test that can reach
//	                       one pod proves pod-to-pod TCP, ICMP and source
//	                       addresses; /pinger/start?addr=IP&interval=D
//	                       pings IP every D until /pinger/stop, which
//	                       answers "<sent> <received>" (loss during a
//	                       rolling update of weft).
//
// Static, no files, no shell: the image holds this binary only.
package main

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testpod pause | testpod echo [-port P]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "pause":
		pause()
	case "echo":
		port := 8080
		if len(os.Args) == 4 && os.Args[2] == "-port" {
			p, err := strconv.Atoi(os.Args[3])
			if err != nil || p <= 0 || p >= 65535 {
				log.Fatalf("testpod echo: -port %q: want a number 1..65534", os.Args[3])
			}
			port = p
		}
		if err := echo(port); err != nil {
			log.Fatalf("testpod echo: %v", err)
		}
	default:
		fmt.Fprintf(os.Stderr, "testpod: unknown mode %q: want pause or echo\n", os.Args[1])
		os.Exit(2)
	}
}

// pause is what a sandbox's infra container does: nothing, until the
// runtime stops it. As PID 1 it reaps whatever ends up its child.
func pause() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

func echo(port int) error {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return fmt.Errorf("listen on the echo port: %w", err)
	}
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("host name: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				log.Printf("accept: %v", err)
				continue
			}
			// The address the kernel gives us is what the client's packets
			// carried after every NAT on the way: the test's whole point.
			peer, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s\n", peer, host)
			c.Close()
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		addr := r.URL.Query().Get("addr")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			http.Error(w, fmt.Sprintf("addr %q: want IP:PORT: %v", addr, err), http.StatusBadRequest)
			return
		}
		seen, err := dial(r.Context(), addr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, seen)
	})
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) {
		dst, err := netip.ParseAddr(r.URL.Query().Get("addr"))
		if err != nil || !dst.Is4() {
			http.Error(w, fmt.Sprintf("addr %q: want an IPv4 address", r.URL.Query().Get("addr")), http.StatusBadRequest)
			return
		}
		rtt, err := ping(dst)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, rtt)
	})
	var pg pinger
	mux.HandleFunc("/pinger/start", pg.start)
	mux.HandleFunc("/pinger/stop", pg.stop)
	log.Printf("testpod echo: TCP %d, HTTP %d", port, port+1)
	return http.ListenAndServe(":"+strconv.Itoa(port+1), mux)
}

// dial connects to another pod's echo port and returns the address it saw.
func dial(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return strings.TrimSpace(line), nil
}

// ping sends one ICMP echo request to dst on a raw socket (the pod has
// CAP_NET_RAW, as every container by default) and waits up to 2 s for
// the reply from dst with our identifier.
func ping(dst netip.Addr) (time.Duration, error) {
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return 0, fmt.Errorf("open an ICMP socket: %w", err)
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("weft")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return 0, fmt.Errorf("send an echo request to %s: %w", dst, err)
	}
	c.SetReadDeadline(start.Add(2 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return 0, fmt.Errorf("no echo reply from %s: %w", dst, err)
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && from.String() == dst.String() {
			return time.Since(start), nil
		}
	}
}

// pinger pings one address at a fixed interval in the background and
// counts requests sent and replies received.
type pinger struct {
	mu             sync.Mutex
	conn           *icmp.PacketConn
	done           chan struct{}
	sent, received atomic.Int64
	wg             sync.WaitGroup
}

func (p *pinger) start(w http.ResponseWriter, r *http.Request) {
	dst, err := netip.ParseAddr(r.URL.Query().Get("addr"))
	if err != nil || !dst.Is4() {
		http.Error(w, fmt.Sprintf("addr %q: want an IPv4 address", r.URL.Query().Get("addr")), http.StatusBadRequest)
		return
	}
	every, err := time.ParseDuration(r.URL.Query().Get("interval"))
	if err != nil || every < time.Millisecond {
		http.Error(w, fmt.Sprintf("interval %q: want a duration of 1ms or more", r.URL.Query().Get("interval")), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		http.Error(w, "a pinger is already running", http.StatusConflict)
		return
	}
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		http.Error(w, fmt.Sprintf("open an ICMP socket: %v", err), http.StatusInternalServerError)
		return
	}
	p.conn, p.done = c, make(chan struct{})
	p.sent.Store(0)
	p.received.Store(0)
	// An identifier of its own, so that /ping's replies are not counted.
	const id = 0x7766
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply || from.String() != dst.String() {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id {
				p.received.Add(1)
			}
		}
	}()
	go func(done chan struct{}) {
		defer p.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for seq := 1; ; seq++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			b, _ := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq & 0xffff, Data: []byte("weft")}}).Marshal(nil)
			if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err == nil {
				p.sent.Add(1)
			}
		}
	}(p.done)
	fmt.Fprintln(w, "started")
}

// stop stops sending, waits a second for the last replies and answers
// "<sent> <received>".
func (p *pinger) stop(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		http.Error(w, "no pinger is running", http.StatusConflict)
		return
	}
	close(p.done)
	time.Sleep(time.Second)
	p.conn.Close()
	p.wg.Wait()
	p.conn = nil
	fmt.Fprintf(w, "%d %d\n", p.sent.Load(), p.received.Load())
}
