package dockeropts

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/internal/atomicfile"
)

// RouteCheck lists, described for an operator, the routes via a gateway
// whose destination is exactly subnet. HostRouteCheck is the real one.
type RouteCheck func(subnet netip.Prefix) ([]string, error)

// Run does what the script does: read o.SubnetFile, write o.OutputFile,
// then check the routing table with check (nil skips the check). environ is
// the process environment as os.Environ returns it. A route conflict is
// returned, after the file has been written, as an error wrapping
// ErrRouteConflict. When the routes cannot be read at all the check is
// skipped with a warning, as the script's grep finds nothing then.
func Run(o Options, environ []string, check RouteCheck, log *slog.Logger) error {
	data, err := os.ReadFile(o.SubnetFile)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read subnet file %s: it does not exist; weft writes it once it holds a subnet lease (is the agent running with --subnet-file=%s?)", o.SubnetFile, o.SubnetFile)
	}
	if err != nil {
		return fmt.Errorf("read subnet file: %w", err)
	}
	file, err := ParseEnvFile(data)
	if err != nil {
		return fmt.Errorf("read subnet file %s: %w", o.SubnetFile, err)
	}
	res, err := Render(Overlay(environ, file), o)
	if err != nil {
		return fmt.Errorf("docker options from %s: %w", o.SubnetFile, err)
	}
	if !res.Subnet.IsValid() {
		log.Warn("the subnet file has no FLANNEL_SUBNET; docker gets no --bip and keeps its default bridge", "file", o.SubnetFile)
	}
	if err := writeAtomic(o.OutputFile, res.File); err != nil {
		return err
	}
	if check == nil || !res.Subnet.IsValid() {
		return nil
	}
	routes, err := check(res.Subnet)
	if err != nil {
		log.Warn("could not check the routing table for a route to this host's subnet", "subnet", res.Subnet, "err", err.Error())
		return nil
	}
	if len(routes) > 0 {
		return fmt.Errorf("wrote %s, but %s is this host's subnet and the main routing table sends it to another host: %s; delete that route (ip route del %s) and restart docker: %w",
			o.OutputFile, res.Subnet, strings.Join(routes, "; "), res.Subnet, ErrRouteConflict)
	}
	return nil
}

// writeAtomic replaces path with data (mode 0644) through a temp file in
// the same directory, so docker never reads half a file.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: create directory: %w", path, err)
	}
	// docker's unit and sysvinit scripts may read it as another user; the
	// script's shell redirection leaves it 0644 under the usual umask.
	return atomicfile.Write(path, data, 0o644)
}

// Main is `weft docker-opts`: it returns the exit status, 0 on success, 1
// when the file could not be produced or the routing check failed (as the
// script), 2 for bad arguments (the script says 1).
func Main(args, environ []string, stdout, stderr io.Writer) int {
	o, err := ParseArgs(args, func(k string) string { return Overlay(environ, nil)[k] })
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, Usage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "weft docker-opts: %v\n\n%s", err, Usage)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := Run(o, environ, HostRouteCheck, log); err != nil {
		fmt.Fprintf(stderr, "weft docker-opts: %v\n", err)
		return 1
	}
	return 0
}
