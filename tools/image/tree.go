package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
)

// node is one entry of an image layer: a directory, a regular file, a
// symbolic link or a hard link. Owner is always root (uid/gid 0) and the
// modification time is the build's epoch, so that the layer's bytes depend
// only on its contents.
type node struct {
	typ      byte // tar.TypeDir, TypeReg, TypeSymlink, TypeLink
	mode     int64
	data     []byte
	linkname string
	from     string // which package or step put it there, for error messages
}

// tree is a layer's file system, keyed by the path without a leading "/".
type tree map[string]*node

func cleanPath(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	return p
}

// add puts n at p, creating missing parent directories. Directories met
// twice merge (the first mode wins, as dpkg keeps an existing directory);
// anything else met twice is an error unless both are identical, because
// two packages shipping one path means the image would depend on the
// order they were unpacked in.
func (t tree) add(p string, n *node) error {
	p = cleanPath(p)
	if p == "" {
		return nil
	}
	if err := t.mkdirAll(path.Dir(p), n.from); err != nil {
		return err
	}
	old, ok := t[p]
	if !ok {
		t[p] = n
		return nil
	}
	if old.typ == tar.TypeDir && n.typ == tar.TypeDir {
		return nil
	}
	if old.typ == n.typ && old.mode == n.mode && old.linkname == n.linkname && bytes.Equal(old.data, n.data) {
		return nil
	}
	return fmt.Errorf("/%s: put there by %s and again, differently, by %s", p, old.from, n.from)
}

func (t tree) mkdirAll(p, from string) error {
	p = cleanPath(p)
	if p == "" || p == "." {
		return nil
	}
	if old, ok := t[p]; ok {
		if old.typ != tar.TypeDir {
			return fmt.Errorf("/%s: %s needs a directory there, but %s put a non-directory", p, from, old.from)
		}
		return nil
	}
	if err := t.mkdirAll(path.Dir(p), from); err != nil {
		return err
	}
	t[p] = &node{typ: tar.TypeDir, mode: 0o755, from: from}
	return nil
}

// writeTar writes the tree as an uncompressed tar stream: entries sorted
// by path (a directory before what it holds), uid/gid 0 without names,
// every time the epoch.
func (t tree) writeTar(w io.Writer, epoch time.Time) error {
	if err := t.orderHardLinks(); err != nil {
		return err
	}
	paths := make([]string, 0, len(t))
	for p := range t {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		n := t[p]
		h := &tar.Header{
			Typeflag: n.typ,
			Name:     p,
			Linkname: n.linkname,
			Mode:     n.mode,
			ModTime:  epoch,
			Format:   tar.FormatPAX,
		}
		switch n.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(n.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write tar header of /%s: %w", p, err)
		}
		if n.typ == tar.TypeReg {
			if _, err := tw.Write(n.data); err != nil {
				return fmt.Errorf("write /%s into the layer: %w", p, err)
			}
		}
	}
	return tw.Close()
}

// addTar adds every entry of a tar stream (a Debian package's data.tar)
// for which keep returns true.
func (t tree) addTar(r io.Reader, from string, keep func(p string) bool) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the files of %s: %w", from, err)
		}
		p := cleanPath(h.Name)
		if p == "" || !keep(p) {
			continue
		}
		n := &node{typ: h.Typeflag, mode: h.Mode & 0o7777, from: from}
		switch h.Typeflag {
		case tar.TypeDir:
		case tar.TypeReg:
			if n.data, err = io.ReadAll(tr); err != nil {
				return fmt.Errorf("read /%s of %s: %w", p, from, err)
			}
		case tar.TypeSymlink:
			n.linkname = h.Linkname
		case tar.TypeLink:
			n.linkname = cleanPath(h.Linkname)
		default:
			return fmt.Errorf("/%s of %s: tar entry type %q is not one an image layer here holds", p, from, h.Typeflag)
		}
		if err := t.add(p, n); err != nil {
			return err
		}
	}
}

// orderHardLinks makes, in each group of hard-linked paths, the one that
// sorts first the regular file and the others links to it: a tar reader
// can only link to an entry it has already seen, and entries are written
// in path order.
func (t tree) orderHardLinks() error {
	groups := map[string][]string{} // regular file -> paths linked to it
	for p, n := range t {
		if n.typ != tar.TypeLink {
			continue
		}
		target, ok := t[n.linkname]
		if !ok || target.typ != tar.TypeReg {
			return fmt.Errorf("/%s of %s: hard link to /%s, which is not a regular file here", p, n.from, n.linkname)
		}
		groups[n.linkname] = append(groups[n.linkname], p)
	}
	for reg, links := range groups {
		first := slices.Min(append(links, reg))
		if first == reg {
			continue
		}
		file := t[reg]
		t[first] = &node{typ: tar.TypeReg, mode: file.mode, data: file.data, from: file.from}
		for _, p := range append(links, reg) {
			if p != first {
				t[p] = &node{typ: tar.TypeLink, mode: file.mode, linkname: first, from: file.from}
			}
		}
	}
	return nil
}
