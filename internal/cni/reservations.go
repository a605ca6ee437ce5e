package cni

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Reservation is one address host-local has handed out: host-local keeps
// a file per allocated IP in <dataDir>/<network>/, named by the IP and
// holding "<containerID>\r\n<ifname>" (older versions: the ID alone).
type Reservation struct {
	IP          netip.Addr
	ContainerID string
	IfName      string // "" when the file predates host-local recording it
}

// ReadReservations lists the reservations in one host-local network
// directory, sorted by IP. A missing directory means no reservations.
// Files that are not named by an IP (host-local's "lock" and
// "last_reserved_ip.N") are skipped.
func ReadReservations(dir string) ([]Reservation, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list host-local reservations in %s: %w", dir, err)
	}
	var out []Reservation
	for _, e := range ents {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // released while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("read host-local reservation %s: %w", filepath.Join(dir, e.Name()), err)
		}
		id, ifname, _ := strings.Cut(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
		out = append(out, Reservation{IP: ip, ContainerID: strings.TrimSpace(id), IfName: strings.TrimSpace(ifname)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out, nil
}
