package cni

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadSubnetEnvMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "run", "flannel", "subnet.env")
	_, err := LoadSubnetEnv(p)
	if err == nil {
		t.Fatal("no error for a missing subnet.env")
	}
	want := "failed to load flannel 'subnet.env' file: open " + p +
		": no such file or directory. Check that weft (or flanneld) is running on this node and wrote it (--subnet-file)."
	if err.Error() != want {
		t.Errorf("error text:\n got %s\nwant %s", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not wrap fs.ErrNotExist", err)
	}
}

func TestLoadSubnetEnvMissingKeys(t *testing.T) {
	for _, tc := range []struct {
		text    string
		missing []string
		present []string
	}{
		{
			text:    "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\n",
			missing: []string{"FLANNEL_IPMASQ"},
			present: []string{"FLANNEL_MTU", "FLANNEL_SUBNET"},
		},
		{
			text:    "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=\n",
			missing: []string{"FLANNEL_IPMASQ"},
		},
		{
			text:    "# nothing here\n",
			missing: []string{"FLANNEL_NETWORK or FLANNEL_IPV6_NETWORK", "FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ"},
		},
	} {
		p := filepath.Join(t.TempDir(), "subnet.env")
		if err := os.WriteFile(p, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSubnetEnv(p)
		if err == nil {
			t.Errorf("%q: no error", tc.text)
			continue
		}
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name the file", err)
		}
		for _, k := range tc.missing {
			if !strings.Contains(err.Error(), k) {
				t.Errorf("%q: error %q does not name %s", tc.text, err, k)
			}
		}
		for _, k := range tc.present {
			if strings.Contains(err.Error(), k+",") || strings.HasSuffix(err.Error(), k) {
				t.Errorf("%q: error %q names present key %s", tc.text, err, k)
			}
		}
	}
}

func TestLoadSubnetEnvComplete(t *testing.T) {
	// flannel writes exactly this; also "export" and v6-only forms.
	for _, text := range []string{
		"FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n",
		"export FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nexport FLANNEL_IPV6_SUBNET=2001:cafe:42:2::1/64\nexport FLANNEL_MTU=1450\nexport FLANNEL_IPMASQ=true\n",
	} {
		p := filepath.Join(t.TempDir(), "subnet.env")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadSubnetEnv(p); err != nil {
			t.Errorf("%q: %v", text, err)
		}
	}
}
