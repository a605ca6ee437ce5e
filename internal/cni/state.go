package cni

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/weftnet/weft/internal/atomicfile"
)

// The saved delegate configs live in dataDir, one file per container, named
// by the container ID, exactly where flannel's plugin keeps them; the
// formats are the same, so pods set up by either plugin can be deleted by
// the other.

// checkContainerID refuses IDs that would escape dataDir or collide with the
// plugin's own dot-files (the CNI spec allows only [A-Za-z0-9][A-Za-z0-9_.-]*).
func checkContainerID(id string) error {
	if id == "" || strings.ContainsAny(id, `/\`) || strings.HasPrefix(id, ".") {
		return fmt.Errorf("invalid container ID %q", id)
	}
	return nil
}

// saveConf writes the delegate config for containerID durably: temp file,
// fsync, rename, fsync of the directory. A crash never leaves a truncated
// file for DEL to choke on. The directory is 0700 and the file 0600 because
// delegate configs may carry secrets of chained plugins.
func saveConf(dataDir, containerID string, conf []byte) error {
	if err := checkContainerID(containerID); err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", dataDir, err)
	}
	if err := atomicfile.Write(filepath.Join(dataDir, containerID), conf, 0o600); err != nil {
		return fmt.Errorf("save delegate config: %w", err)
	}
	return nil
}

// loadConf returns the saved delegate config; an error wrapping
// fs.ErrNotExist when there is none.
func loadConf(dataDir, containerID string) ([]byte, error) {
	if err := checkContainerID(containerID); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, containerID)
	b, err := os.ReadFile(path)
	if errors.Is(err, syscall.ENAMETOOLONG) {
		// No config can be saved under such a name (ADD failed saying
		// so): there is none, and DEL must not fail forever looking for it
		// (found by FuzzCommands).
		return nil, fmt.Errorf("read saved delegate config: %w (%v)", fs.ErrNotExist, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read saved delegate config: %w", err)
	}
	return b, nil
}

// removeConf deletes the saved config; a missing file is not an error.
func removeConf(dataDir, containerID string) error {
	if err := checkContainerID(containerID); err != nil {
		return err
	}
	path := filepath.Join(dataDir, containerID)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove saved delegate config: %w", err)
	}
	return nil
}
