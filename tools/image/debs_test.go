package main

import (
	"strings"
	"testing"
)

const printURIs = `'http://deb.debian.org/debian/pool/main/a/attr/libattr1_2.5.1-4_amd64.deb' libattr1_1%3a2.5.1-4_amd64.deb 22164 MD5Sum:52fea1b13209029d52405624225a473e
'http://deb.debian.org/debian-security/pool/updates/main/p/pcre2/libpcre2-8-0_10.42-1%2bdeb12u2_amd64.deb' libpcre2-8-0_10.42-1+deb12u2_amd64.deb 261628 
'http://deb.debian.org/debian/pool/main/d/dash/dash_0.5.12-2_amd64.deb' dash_0.5.12-2_amd64.deb 91848 MD5Sum:4f19daace3f998b7e719575ff5e5b316
`

// TestParsePrintURIs: apt's --print-uris lines give each package's name,
// its version with the epoch's colon unescaped, and the file apt-get
// download writes; the list is sorted by name.
func TestParsePrintURIs(t *testing.T) {
	debs, err := parsePrintURIs([]byte("Reading package lists...\n" + printURIs))
	if err != nil {
		t.Fatal(err)
	}
	want := []deb{
		{"dash", "0.5.12-2", "dash_0.5.12-2_amd64.deb"},
		{"libattr1", "1:2.5.1-4", "libattr1_1%3a2.5.1-4_amd64.deb"},
		{"libpcre2-8-0", "10.42-1+deb12u2", "libpcre2-8-0_10.42-1+deb12u2_amd64.deb"},
	}
	if len(debs) != len(want) {
		t.Fatalf("got %v, want %v", debs, want)
	}
	for i := range want {
		if debs[i] != want[i] {
			t.Errorf("deb %d = %+v, want %+v", i, debs[i], want[i])
		}
	}
	_, err = parsePrintURIs([]byte("'http://x/y.deb' not-a-deb-name.deb 1 x\n"))
	if err == nil || !strings.Contains(err.Error(), "line 1") || !strings.Contains(err.Error(), "name_version_arch.deb") {
		t.Errorf("err = %v, want one naming line 1 and the expected form", err)
	}
}

// FuzzParsePrintURIs: whatever apt prints, the parser returns an error or
// packages each with a name, a version and a .deb file; it never panics.
func FuzzParsePrintURIs(f *testing.F) {
	f.Add([]byte(printURIs))
	f.Add([]byte("'x' a_1_all.deb\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		debs, err := parsePrintURIs(b)
		if err != nil {
			return
		}
		for _, d := range debs {
			if d.Name == "" || d.Version == "" || !strings.HasSuffix(d.File, ".deb") || strings.Contains(d.File, "/") {
				t.Errorf("parsed %+v from %q", d, b)
			}
		}
	})
}

// TestDebsKeyCoversTheInputs: the cache directory changes with the
// release and the architecture.
func TestDebsKeyCoversTheInputs(t *testing.T) {
	a, b, c := debsKey("bookworm", "amd64"), debsKey("trixie", "amd64"), debsKey("bookworm", "arm64")
	if a == b || a == c || !strings.HasPrefix(a, "bookworm-amd64-") {
		t.Errorf("keys %s %s %s: want distinct, named by release and arch", a, b, c)
	}
}
