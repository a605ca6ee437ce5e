package agent

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/internal/lease"
)

// HostIDFileName is the file in the state directory (--state-dir) that
// holds this host's identity. It lives beside the vxlan VTEP MAC file
// because it has to survive what that survives (restarts, reboots) and go
// where that goes (a copied image).
const HostIDFileName = "weft-host-id.json"

// DefaultMachineIDPath is systemd's machine ID.
const DefaultMachineIDPath = "/etc/machine-id"

// hostIDRecord is the host ID file. MachineID is the machine ID the ID was
// generated under, so that a state directory copied onto a machine with
// another machine ID (an image cloned and then given a fresh machine ID,
// as systemd, cloud-init and virt-sysprep do on first boot) is told apart
// from the host it was copied from.
//
// What this cannot tell apart is a clone that carries both the state
// directory and the machine ID: both then publish one host ID. Such
// clones are caught by what they publish instead: a clone with its own
// PublicIP publishes the original's VTEP MAC, which the agent replaces on
// seeing it (identity_watch.go), and a clone with the same PublicIP and
// the same ID is indistinguishable from the original restarting, as with
// flannel. The boot ID and the network namespace are deliberately not
// recorded: they change on every reboot, and a host whose ID changed on
// reboot would find its own live lease held by "another host".
type hostIDRecord struct {
	HostID    string
	MachineID string `json:",omitempty"`
	Created   time.Time
}

// settleHostID decides this host's ID from the file's content (raw, or
// readErr when it could not be read) and the machine ID ("" when unknown),
// using gen for a new one. It returns the record to use, whether it must
// be written, and a note for the log saying what happened. Pure.
func settleHostID(raw []byte, readErr error, machineID string, now time.Time, gen func() string) (rec hostIDRecord, write bool, note string) {
	fresh := hostIDRecord{HostID: gen(), MachineID: machineID, Created: now.UTC()}
	switch {
	case errors.Is(readErr, fs.ErrNotExist):
		return fresh, true, "generated a host ID for this host"
	case readErr != nil:
		return fresh, true, fmt.Sprintf("the host ID file could not be read (%v); generated a new host ID", readErr)
	}
	var r hostIDRecord
	if err := json.Unmarshal(raw, &r); err != nil || !lease.ValidHostID(r.HostID) {
		why := "it holds no valid HostID"
		if err != nil {
			why = err.Error()
		}
		return fresh, true, fmt.Sprintf("the host ID file is damaged (%s); generated a new host ID", why)
	}
	if r.MachineID != "" && machineID != "" && r.MachineID != machineID {
		return fresh, true, fmt.Sprintf("the state directory was made on another machine (machine ID %s, this one is %s): a copied image; generated a new host ID instead of sharing %s",
			r.MachineID, machineID, r.HostID)
	}
	if r.MachineID == "" && machineID != "" {
		// Record it now, so that a later copy is recognised.
		r.MachineID = machineID
		return r, true, ""
	}
	return r, false, ""
}

// newHostID is 16 random bytes in hex.
func newHostID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// loadHostID settles and persists this host's ID in stateDir. A note worth
// a warning (a damaged file, a copied state directory) comes back as warn.
func loadHostID(stateDir, machineIDPath string, now time.Time) (id, info, warn string, err error) {
	path := filepath.Join(stateDir, HostIDFileName)
	raw, readErr := os.ReadFile(path)
	machineID := ""
	if b, err := os.ReadFile(machineIDPath); err == nil {
		machineID = strings.TrimSpace(string(b))
	}
	rec, write, note := settleHostID(raw, readErr, machineID, now, newHostID)
	if write {
		out, err := json.Marshal(rec)
		if err != nil {
			return "", "", "", fmt.Errorf("encode %s: %w", path, err)
		}
		if err := os.MkdirAll(stateDir, 0o755); err != nil {
			return "", "", "", fmt.Errorf("create the state directory %s for the host ID: %w", stateDir, err)
		}
		if err := atomicfile.Write(path, append(out, '\n'), 0o644); err != nil {
			return "", "", "", fmt.Errorf("persist the host ID: %w", err)
		}
	}
	switch {
	case errors.Is(readErr, fs.ErrNotExist):
		info = note
	default:
		warn = note
	}
	return rec.HostID, info, warn, nil
}
