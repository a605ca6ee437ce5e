package cni

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestReadReservations(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"lock":               "",
		"last_reserved_ip.0": "10.1.17.9",
		"10.1.17.9":          "ctr-b\r\neth0",
		"10.1.17.10":         "ctr-c\r\nnet1",
		"10.1.17.2":          "ctr-a", // written by host-local before it recorded ifname
		"2001:cafe::5":       "ctr-a\r\neth0",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadReservations(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Reservation{
		{IP: netip.MustParseAddr("10.1.17.2"), ContainerID: "ctr-a"},
		{IP: netip.MustParseAddr("10.1.17.9"), ContainerID: "ctr-b", IfName: "eth0"},
		{IP: netip.MustParseAddr("10.1.17.10"), ContainerID: "ctr-c", IfName: "net1"},
		{IP: netip.MustParseAddr("2001:cafe::5"), ContainerID: "ctr-a", IfName: "eth0"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	none, err := ReadReservations(filepath.Join(dir, "absent"))
	if err != nil || len(none) != 0 {
		t.Errorf("missing dir: %v, %v; want none, nil", none, err)
	}
}
