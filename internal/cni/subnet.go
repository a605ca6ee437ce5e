package cni

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/weftnet/weft/internal/subnetenv"
)

// LoadSubnetEnv reads subnet.env for ADD. Its errors are written for the
// person reading `kubectl describe pod`: a missing file says which file and
// that the agent is the one to look at (the most reported flannel problem,
// flannel-io/flannel#2253), and missing keys are named.
func LoadSubnetEnv(path string) (subnetenv.Env, error) {
	env, err := subnetenv.Read(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Prefer the bare "open <path>: ..." of the PathError, which is
			// the text flannel users search for.
			cause := err
			var pe *fs.PathError
			if errors.As(err, &pe) {
				cause = pe
			}
			return env, fmt.Errorf("failed to load flannel 'subnet.env' file: %w. Check that weft (or flanneld) is running on this node and wrote it (--subnet-file).", cause)
		}
		return env, fmt.Errorf("failed to load flannel 'subnet.env' file %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return env, fmt.Errorf("failed to load flannel 'subnet.env' file: %w", err)
	}
	if missing := missingKeys(data); len(missing) > 0 {
		return env, fmt.Errorf("flannel 'subnet.env' file %s is missing %s", path, strings.Join(missing, ", "))
	}
	return env, nil
}

// missingKeys names the required subnet.env keys that do not appear in
// data, with flannel's requirements: a network and a subnet of either
// family, plus MTU and IPMASQ. Only presence is checked; values are
// subnetenv.Read's business. Presence must be checked on the text because
// Env cannot tell FLANNEL_IPMASQ=false from a missing line.
func missingKeys(data []byte) []string {
	present := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, "export ")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// An empty value counts as absent, as subnetenv.Read treats it.
		if k, v, ok := strings.Cut(line, "="); ok && strings.Trim(strings.TrimSpace(v), `"'`) != "" {
			present[strings.TrimSpace(k)] = true
		}
	}
	var missing []string
	need := func(name string, keys ...string) {
		for _, k := range keys {
			if present[k] {
				return
			}
		}
		missing = append(missing, name)
	}
	need("FLANNEL_NETWORK or FLANNEL_IPV6_NETWORK", "FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK")
	need("FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET", "FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET")
	need("FLANNEL_MTU", "FLANNEL_MTU")
	need("FLANNEL_IPMASQ", "FLANNEL_IPMASQ")
	return missing
}
