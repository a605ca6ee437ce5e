package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// dropped says which packaged files the image leaves out: documentation,
// manual pages, translations and lintian data, which nothing in a
// container reads, and glibc's iconv modules (gconv, 8 MB), since nothing
// in the image converts between character sets (glibc's built-in UTF-8,
// ASCII and Latin-1 need no module). Each package's copyright file stays
// (the licences of what the image redistributes).
func dropped(p string) bool {
	for _, d := range []string{"usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "usr/share/bug", "usr/share/menu", "usr/lib/x86_64-linux-gnu/gconv", "usr/lib/aarch64-linux-gnu/gconv"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	if rest, ok := strings.CutPrefix(p, "usr/share/doc/"); ok {
		_, file, nested := strings.Cut(rest, "/")
		return nested && file != "copyright"
	}
	return false
}

// alternatives are the links iptables' postinst makes with
// update-alternatives, each pointing at the highest-priority choice, the
// nf_tables one (Debian's default): link -> /etc/alternatives/name ->
// target.
var alternatives = []struct{ link, name, target string }{
	{"/usr/sbin/iptables", "iptables", "/usr/sbin/iptables-nft"},
	{"/usr/sbin/iptables-restore", "iptables-restore", "/usr/sbin/iptables-nft-restore"},
	{"/usr/sbin/iptables-save", "iptables-save", "/usr/sbin/iptables-nft-save"},
	{"/usr/sbin/ip6tables", "ip6tables", "/usr/sbin/ip6tables-nft"},
	{"/usr/sbin/ip6tables-restore", "ip6tables-restore", "/usr/sbin/ip6tables-nft-restore"},
	{"/usr/sbin/ip6tables-save", "ip6tables-save", "/usr/sbin/ip6tables-nft-save"},
	{"/usr/sbin/arptables", "arptables", "/usr/sbin/arptables-nft"},
	{"/usr/sbin/arptables-restore", "arptables-restore", "/usr/sbin/arptables-nft-restore"},
	{"/usr/sbin/arptables-save", "arptables-save", "/usr/sbin/arptables-nft-save"},
	{"/usr/sbin/ebtables", "ebtables", "/usr/sbin/ebtables-nft"},
	{"/usr/sbin/ebtables-restore", "ebtables-restore", "/usr/sbin/ebtables-nft-restore"},
	{"/usr/sbin/ebtables-save", "ebtables-save", "/usr/sbin/ebtables-nft-save"},
}

// baseTree unpacks the packages (dpkg-deb reads each one's data archive,
// whatever its compression) and then does what their maintainer scripts
// and base-files/base-passwd would have: the alternatives links, root's
// passwd and group entries, /tmp, and a dpkg status file so that image
// scanners see which package versions the image holds.
func baseTree(ctx context.Context, dir string, debs []deb) (tree, error) {
	t := tree{}
	var status bytes.Buffer
	for _, d := range debs {
		path := filepath.Join(dir, d.File)
		from := "package " + d.Name
		cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", path, err)
		}
		addErr := t.addTar(out, from, func(p string) bool { return !dropped(p) })
		if err := cmd.Wait(); err != nil {
			return nil, fmt.Errorf("unpack %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
		}
		if addErr != nil {
			return nil, addErr
		}
		control, err := run(ctx, "", "dpkg-deb", "--field", path)
		if err != nil {
			return nil, fmt.Errorf("read the control fields of %s: %w", path, err)
		}
		status.Write(statusEntry(control))
	}

	for _, a := range alternatives {
		if n, ok := t[cleanPath(a.target)]; !ok || n.typ == tar.TypeDir {
			return nil, fmt.Errorf("alternative %s: %s is not in the packages", a.name, a.target)
		}
		if err := t.add(a.link, &node{typ: tar.TypeSymlink, mode: 0o777, linkname: "/etc/alternatives/" + a.name, from: "update-alternatives"}); err != nil {
			return nil, err
		}
		if err := t.add("/etc/alternatives/"+a.name, &node{typ: tar.TypeSymlink, mode: 0o777, linkname: a.target, from: "update-alternatives"}); err != nil {
			return nil, err
		}
	}
	for p, n := range map[string]*node{
		"/etc/passwd":            {typ: tar.TypeReg, mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\n")},
		"/etc/group":             {typ: tar.TypeReg, mode: 0o644, data: []byte("root:x:0:\n")},
		"/root":                  {typ: tar.TypeDir, mode: 0o700},
		"/tmp":                   {typ: tar.TypeDir, mode: 0o1777},
		"/run":                   {typ: tar.TypeDir, mode: 0o755},
		"/var/lib/dpkg/status":   {typ: tar.TypeReg, mode: 0o644, data: status.Bytes()},
		"/var/lib/dpkg/info":     {typ: tar.TypeDir, mode: 0o755},
		"/var/lib/dpkg/updates":  {typ: tar.TypeDir, mode: 0o755},
		"/var/lib/dpkg/triggers": {typ: tar.TypeDir, mode: 0o755},
	} {
		n.from = "the image builder"
		if err := t.add(p, n); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// statusEntry turns a package's control fields into its /var/lib/dpkg/status
// stanza: the same fields with "Status: install ok installed" after Package.
func statusEntry(control []byte) []byte {
	var b bytes.Buffer
	for line := range strings.Lines(strings.TrimRight(string(control), "\n") + "\n") {
		b.WriteString(line)
		if strings.HasPrefix(line, "Package:") {
			b.WriteString("Status: install ok installed\n")
		}
	}
	b.WriteString("\n")
	return b.Bytes()
}
