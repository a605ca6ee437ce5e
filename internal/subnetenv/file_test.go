package subnetenv

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// seedFile is the subnet.env of the seed deployment, byte for byte.
const seedFile = "FLANNEL_NETWORK=172.7.0.0/16\nFLANNEL_SUBNET=172.7.21.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n"

var seedEnv = Env{Networks: []netip.Prefix{pfx("172.7.0.0/16")}, Subnet: pfx("172.7.21.0/24"), MTU: 1500}

func TestMarshalGolden(t *testing.T) {
	tests := []struct {
		name string
		env  Env
		want string
	}{
		{"seed", seedEnv, seedFile},
		{
			name: "vxlan with masquerade",
			env:  Env{Networks: []netip.Prefix{pfx("10.244.0.0/16")}, Subnet: pfx("10.244.1.0/24"), MTU: 1450, IPMasq: true},
			want: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
		},
		{
			name: "dual stack",
			env: Env{Networks: []netip.Prefix{pfx("10.244.0.0/16")}, Subnet: pfx("10.244.1.0/24"),
				IPv6Network: []netip.Prefix{pfx("2001:cafe:42::/56")}, IPv6Subnet: pfx("2001:cafe:42::/64"), MTU: 1450, IPMasq: true},
			want: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
		},
		{
			name: "IPv6 only",
			env:  Env{IPv6Network: []netip.Prefix{pfx("fd00::/56")}, IPv6Subnet: pfx("fd00:0:0:10::/60"), MTU: 1450},
			want: "FLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_IPV6_SUBNET=fd00:0:0:10::1/60\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
		},
		{
			name: "subnet with host bits is written from its network address",
			env:  Env{Networks: []netip.Prefix{pfx("172.7.0.0/16")}, Subnet: pfx("172.7.21.1/24"), MTU: 1500},
			want: seedFile,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(Marshal(tt.env)); got != tt.want {
				t.Errorf("Marshal\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "flannel", "subnet.env")
	if err := Write(path, seedEnv); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != seedFile {
		t.Errorf("file content\n got %q\nwant %q", got, seedFile)
	}
	for p, want := range map[string]fs.FileMode{path: 0o644, filepath.Dir(path): 0o755 | fs.ModeDir} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("mode of %s = %v, want %v", p, st.Mode(), want)
		}
	}
	back, err := Read(path)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if !reflect.DeepEqual(back, seedEnv) {
		t.Errorf("Read = %+v, want %+v", back, seedEnv)
	}

	// Overwrite leaves exactly one file and no temporaries behind.
	next := seedEnv
	next.Subnet, next.IPMasq = pfx("172.7.22.0/24"), true
	if err := Write(path, next); err != nil {
		t.Fatalf("second Write: %v", err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "subnet.env" {
		t.Errorf("directory holds %v, want only subnet.env", entries)
	}
	if back, err := Read(path); err != nil || !reflect.DeepEqual(back, next) {
		t.Errorf("Read after overwrite = %+v, %v; want %+v", back, err, next)
	}
}

func TestWriteFails(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(blocker, "subnet.env")
	if err := Write(path, seedEnv); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Write under a regular file: err = %v, want one naming %s", err, path)
	}
}

func TestReadMissing(t *testing.T) {
	_, err := Read(filepath.Join(t.TempDir(), "subnet.env"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read of a missing file: err = %v, want fs.ErrNotExist", err)
	}
}

func TestReadTolerant(t *testing.T) {
	content := "# written by hand\n\n" +
		"FLANNEL_NETWORK=10.244.0.0/16, 10.245.0.0/16\r\n" +
		"  FLANNEL_SUBNET = 10.244.1.1/24  \n" +
		"export FLANNEL_MTU=\"1450\"\n" +
		"FLANNEL_IPMASQ=true # masquerade\n" +
		"FLANNEL_IPV6_NETWORK=fc00::/48\n" +
		"FLANNEL_IPV6_SUBNET='fc00:0:0:5::1/64'\n" +
		"SOMETHING_ELSE=whatever\n" +
		"FLANNEL_EMPTY=\n"
	path := filepath.Join(t.TempDir(), "subnet.env")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	want := Env{
		Networks:    []netip.Prefix{pfx("10.244.0.0/16"), pfx("10.245.0.0/16")},
		Subnet:      pfx("10.244.1.0/24"),
		IPv6Network: []netip.Prefix{pfx("fc00::/48")},
		IPv6Subnet:  pfx("fc00:0:0:5::/64"),
		MTU:         1450,
		IPMasq:      true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Read\n got %+v\nwant %+v", got, want)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct{ content, want string }{
		{"FLANNEL_SUBNET=10.244.1.1\n", "FLANNEL_SUBNET"},
		{"FLANNEL_SUBNET=fc00::1/64\n", "FLANNEL_SUBNET"},
		{"FLANNEL_NETWORK=10.244.0.0/16,junk\n", "FLANNEL_NETWORK"},
		{"FLANNEL_IPV6_NETWORK=10.0.0.0/8\n", "FLANNEL_IPV6_NETWORK"},
		{"FLANNEL_IPV6_SUBNET=10.0.0.0/8\n", "FLANNEL_IPV6_SUBNET"},
		{"FLANNEL_MTU=big\n", "FLANNEL_MTU"},
		{"FLANNEL_MTU=0\n", "FLANNEL_MTU"},
		{"FLANNEL_IPMASQ=maybe\n", "FLANNEL_IPMASQ"},
		{"FLANNEL_NETWORK=10.244.0.0/16\njust words\n", "line 2"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "subnet.env")
		if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Read(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("Read(%q) error = %v, want one naming %s and %s", tt.content, err, tt.want, path)
		}
	}
}
