package main

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// readOCIArchive opens the one image of an OCI archive written by
// writeOCIArchive, unpacking the layout into tmp, and returns it with its
// index descriptor (digest and annotations).
func readOCIArchive(archive, tmp string) (v1.Image, v1.Descriptor, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	defer f.Close()
	if err := extractTar(f, tmp); err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("unpack the OCI layout of %s: %w", archive, err)
	}
	p, err := layout.FromPath(tmp)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", archive, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", archive, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", archive, err)
	}
	if len(im.Manifests) != 1 {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: %d images in the index, want 1", archive, len(im.Manifests))
	}
	img, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", archive, err)
	}
	return img, im.Manifests[0], nil
}

// unpackImage writes the image's flattened file system (go-containerregistry
// applies the layers in order) into dir.
func unpackImage(img v1.Image, dir string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	return extractTar(rc, dir)
}

// extractTar writes a tar stream into dir: directories, regular files,
// symbolic and hard links, nothing outside dir.
func extractTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(h.Mode & 0o777)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, mode); err != nil {
				return err
			}
			// MkdirAll leaves an existing directory's mode and applies the
			// umask: set it as the archive says (sticky /tmp included).
			if err := os.Chmod(p, mode|fileModeBits(h.Mode)); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", name, err)
			}
			if err := os.Chmod(p, mode|fileModeBits(h.Mode)); err != nil {
				return err
			}
		case tar.TypeSymlink:
			os.Remove(p)
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			target := filepath.Join(dir, filepath.Clean("/"+h.Linkname))
			if !strings.HasPrefix(target, filepath.Clean(dir)+string(filepath.Separator)) {
				return fmt.Errorf("%s: hard link outside the tree to %s", name, h.Linkname)
			}
			os.Remove(p)
			if err := os.Link(target, p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: tar entry type %q not supported", name, h.Typeflag)
		}
	}
}

func fileModeBits(m int64) os.FileMode {
	var fm os.FileMode
	if m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
