package confdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	flannelConflist = `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}`
	otherConflist   = `{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{"type":"calico"},{"type":"portmap"}]}`
	otherConf       = `{"name":"mynet","cniVersion":"0.3.1","type":"bridge","bridge":"cni1"}`
)

func dir(t *testing.T, files map[string]string) string {
	t.Helper()
	d := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestReadFindsTheConfigThatWins(t *testing.T) {
	for _, c := range []struct {
		name     string
		files    map[string]string
		conflict bool
		first    string
		want     string // in Problem
	}{
		{name: "weft's alone", files: map[string]string{"10-flannel.conflist": flannelConflist}, first: "10-flannel.conflist"},
		{name: "another after weft's", files: map[string]string{"10-flannel.conflist": flannelConflist, "87-podman.conflist": otherConflist}, first: "10-flannel.conflist"},
		{name: "no config of weft's", files: map[string]string{"05-other.conflist": otherConflist}, first: "05-other.conflist"},
		{name: "missing directory", first: ""},
		{name: "a conflist before weft's", files: map[string]string{"10-flannel.conflist": flannelConflist, "05-other.conflist": otherConflist},
			conflict: true, first: "05-other.conflist", want: `05-other.conflist, of plugin type "calico", sorts before weft's 10-flannel.conflist`},
		{name: "a .conf before weft's", files: map[string]string{"10-flannel.conflist": flannelConflist, "00-mynet.conf": otherConf},
			conflict: true, first: "00-mynet.conf", want: `of plugin type "bridge"`},
		{name: "a broken file before weft's", files: map[string]string{"10-flannel.conflist": flannelConflist, "01-broken.json": "{"},
			conflict: true, first: "01-broken.json", want: "which is not a valid CNI config"},
		{name: "other extensions and directories do not count", files: map[string]string{"10-flannel.conflist": flannelConflist, "00-notes.txt": "x", "05-other.conflist.bak": otherConflist}, first: "10-flannel.conflist"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "missing")
			if c.files != nil {
				d = dir(t, c.files)
			}
			got, err := Read(d)
			if err != nil {
				t.Fatal(err)
			}
			if got.First != c.first || got.Conflict() != c.conflict {
				t.Fatalf("Read: first %q conflict %v, want %q %v (%+v)", got.First, got.Conflict(), c.first, c.conflict, got)
			}
			p := got.Problem()
			if (p != "") != c.conflict || !strings.Contains(p, c.want) {
				t.Fatalf("Problem() = %q, want it to contain %q", p, c.want)
			}
			if c.conflict && (!strings.Contains(p, filepath.Join(d, c.first)) || !strings.Contains(p, "remove it")) {
				t.Errorf("Problem() does not name the file and what to do: %q", p)
			}
		})
	}
}

func FuzzPluginType(f *testing.F) {
	for _, s := range []string{flannelConflist, otherConflist, otherConf, "{", `{"plugins":[]}`, `{"plugins":[{"type":""}],"type":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, err := PluginType(b)
		if (err == nil) == (strings.TrimSpace(typ) == "") {
			t.Fatalf("PluginType(%q) = %q, %v: a type or an error, never both or neither", b, typ, err)
		}
	})
}
