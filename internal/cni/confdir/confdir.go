// Package confdir reads a CNI configuration directory (/etc/cni/net.d) the
// way container runtimes choose from it, to find a network config that
// silently takes the node's pods away from weft's.
//
// containerd's CRI (max_conf_num = 1 by default) and CRI-O use the first
// config file in name order, among *.conf, *.conflist and *.json, as the
// pod network. A config left behind by another network plugin whose name
// sorts before weft's 10-flannel.conflist (05-cilium.conflist,
// 00-calico.conflist, ...) therefore wins on every new pod, with no error
// anywhere: the pods come up on the other plugin's network, or fail in it.
//
// A separate package from the CNI plugin (internal/cni) so that the agent,
// which checks the directory, does not link the plugin's code.
package confdir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// OwnType is the plugin type of weft's (and flannel's) network config.
const OwnType = "flannel"

// Extensions are the file name extensions runtimes read as CNI configs
// (libcni's ConfFiles with those of the runtimes).
var Extensions = []string{".conf", ".conflist", ".json"}

// Check is what a directory holds, as a runtime sees it.
type Check struct {
	Dir string
	// First is the file a runtime uses: the first config file by name.
	First string
	// FirstType is First's plugin type (its first plugin's, for a
	// conflist), or "" when it cannot be read as a CNI config.
	FirstType string
	// FirstErr says why First cannot be read as a CNI config (a runtime
	// then fails every pod's network setup).
	FirstErr error
	// Own is the first file whose plugin is weft's ("flannel"), or "".
	Own string
}

// Conflict says whether a runtime uses another config than weft's while
// weft's is there. Without a config of weft's in the directory there is
// no conflict to report: the node is not (yet) weft's, or uses another
// directory.
func (c Check) Conflict() bool {
	return c.Own != "" && c.First != c.Own
}

// Problem is the operator's sentence for a conflict, "" without one.
func (c Check) Problem() string {
	if !c.Conflict() {
		return ""
	}
	what := fmt.Sprintf("of plugin type %q", c.FirstType)
	if c.FirstErr != nil {
		what = fmt.Sprintf("which is not a valid CNI config (%v)", c.FirstErr)
	}
	return fmt.Sprintf("CNI config %s, %s, sorts before weft's %s in %s: containerd and CRI-O use the first file by name, so new pods on this node do not get weft's network; remove it (left by another network plugin?) or rename it to sort after %s",
		filepath.Join(c.Dir, c.First), what, c.Own, c.Dir, c.Own)
}

// Read lists dir as a runtime does. A missing directory is no error: it
// has nothing to use.
func Read(dir string) (Check, error) {
	c := Check{Dir: dir}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read the CNI config directory: %w", err)
	}
	// os.ReadDir sorts by name, as the runtimes do.
	for _, e := range ents {
		if e.IsDir() || !slices.Contains(Extensions, filepath.Ext(e.Name())) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		var typ string
		if err == nil {
			typ, err = PluginType(b)
		}
		if c.First == "" {
			c.First, c.FirstType, c.FirstErr = e.Name(), typ, err
		}
		if err == nil && typ == OwnType {
			c.Own = e.Name()
			break
		}
	}
	return c, nil
}

// PluginType is the plugin type a CNI config (a .conf) or config list (a
// .conflist) runs first.
func PluginType(b []byte) (string, error) {
	var v struct {
		Type    string `json:"type"`
		Plugins []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return "", fmt.Errorf("parse: %w", err)
	}
	if len(v.Plugins) > 0 {
		v.Type = v.Plugins[0].Type
	}
	if strings.TrimSpace(v.Type) == "" {
		return "", errors.New("no plugin type")
	}
	return v.Type, nil
}
