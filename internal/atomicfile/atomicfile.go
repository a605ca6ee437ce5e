// Package atomicfile replaces files so that a reader (the CNI plugin, docker,
// a concurrent weft command) sees either the old content or the new one,
// never a part, and so that a power cut after Write returns keeps the new
// content: temporary file in the same directory, fsync, rename over the
// target, fsync of the directory.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Write replaces path with data, mode perm (exactly: the umask does not
// apply, because other users' tools read these files). The directory must
// exist. On error the target is unchanged and no temporary file is left
// behind; the error names path.
func Write(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	// A dot name keeps the temporary file out of globs such as *.conflist
	// that other tools match in the same directory.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// CreateTemp makes the file 0600 whatever the umask; Chmod sets perm
	// exactly.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: the new content is in place, but %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable. Filesystems that cannot fsync a
// directory (some network and FUSE ones answer EINVAL or ENOTSUP) order the
// rename themselves or not at all; there is nothing more to do on them.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
