package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/weftnet/weft/internal/subnetenv"
)

// DefaultDataDir is where flannel's plugin keeps one rendered delegate
// config per container; weft uses the same place so that a node can switch
// plugins with pods running and DEL still finds their configs.
const DefaultDataDir = "/var/lib/cni/flannel"

// NetConf is the plugin's configuration as the runtime passes it on stdin,
// either a single network config or one entry of a conflist (which libcni
// completes with name, cniVersion, prevResult and runtimeConfig).
//
// Object-valued fields keep the user's JSON untouched (numbers stay
// json.Number) because they are passed on to the delegate plugin, which may
// understand keys this plugin has never heard of.
type NetConf struct {
	CNIVersion string
	Name       string
	Type       string
	SubnetFile string         // defaulted to subnetenv.DefaultPath
	DataDir    string         // defaulted to DefaultDataDir
	Delegate   map[string]any // never nil after ParseNetConf
	IPAM       map[string]any // nil when absent
	// RuntimeConfig is copied into the delegate as is.
	RuntimeConfig map[string]any
	// PrevResult is the raw prevResult, present in chains and on CHECK.
	// ADD ignores it (as flannel does); CHECK hands it to the delegate.
	PrevResult json.RawMessage
}

// rawNetConf mirrors the JSON. Go's case-insensitive key matching is kept on
// purpose: flannel decodes with encoding/json too, and configs rely on it.
type rawNetConf struct {
	CNIVersion    string          `json:"cniVersion"`
	Name          string          `json:"name"`
	Type          string          `json:"type"`
	SubnetFile    string          `json:"subnetFile"`
	DataDir       string          `json:"dataDir"`
	Delegate      map[string]any  `json:"delegate"`
	IPAM          map[string]any  `json:"ipam"`
	RuntimeConfig map[string]any  `json:"runtimeConfig"`
	PrevResult    json.RawMessage `json:"prevResult"`
}

// ParseNetConf decodes and validates the plugin's stdin. The delegate may
// not carry "name" or "ipam" (the plugin sets both), and its "type", when
// given, must be a string: the same rules as flannel's plugin.
func ParseNetConf(stdin []byte) (*NetConf, error) {
	var raw rawNetConf
	dec := json.NewDecoder(bytes.NewReader(stdin))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("parse flannel network config: %w", err)
	}
	nc := &NetConf{
		CNIVersion:    raw.CNIVersion,
		Name:          raw.Name,
		Type:          raw.Type,
		SubnetFile:    raw.SubnetFile,
		DataDir:       raw.DataDir,
		Delegate:      raw.Delegate,
		IPAM:          raw.IPAM,
		RuntimeConfig: raw.RuntimeConfig,
	}
	if len(raw.PrevResult) > 0 && !bytes.Equal(bytes.TrimSpace(raw.PrevResult), []byte("null")) {
		nc.PrevResult = raw.PrevResult
	}
	if nc.SubnetFile == "" {
		nc.SubnetFile = subnetenv.DefaultPath
	}
	if nc.DataDir == "" {
		nc.DataDir = DefaultDataDir
	}
	if nc.Delegate == nil {
		nc.Delegate = map[string]any{}
	}
	if t, ok := nc.Delegate["type"]; ok {
		if _, isString := t.(string); !isString {
			return nil, errors.New(`flannel network config: "delegate" must have a string "type" (e.g. "bridge") or none`)
		}
	}
	if _, ok := nc.Delegate["name"]; ok {
		return nil, errors.New(`flannel network config: "delegate" must not have a "name" field: the plugin sets it to the network's name`)
	}
	if _, ok := nc.Delegate["ipam"]; ok {
		return nil, errors.New(`flannel network config: "delegate" must not have an "ipam" field: the plugin builds it from subnet.env; put IPAM options in the top-level "ipam" object instead`)
	}
	return nc, nil
}
