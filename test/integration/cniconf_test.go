package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/nstest"
)

// Real agents, given a CNI config directory where another network's
// conflist sorts before weft's (--cni-conf-dir), log an error naming the
// file and what to do once they are up (internal/agent's unit test
// covers the repeat and the all-clear).
func TestAgentNamesAForeignCNIConfig(t *testing.T) {
	bad := t.TempDir()
	flannel := `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}`
	for _, f := range []struct{ dir, name, data string }{
		{bad, "10-flannel.conflist", flannel},
		{bad, "05-other.conflist", `{"name":"other","cniVersion":"0.3.1","plugins":[{"type":"bridge","bridge":"other0"}]}`},
	} {
		if err := os.WriteFile(filepath.Join(f.dir, f.name), []byte(f.data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := upLabSpec(t, lab.Spec{Hosts: 2, Pods: 1, Backend: "host-gw", AgentArgs: []string{"--cni-conf-dir=" + bad}})
	want := []string{"level=ERROR", filepath.Join(bad, "05-other.conflist"), "sorts before weft's 10-flannel.conflist", "remove it"}
	nstest.Eventually(t, 30*time.Second, func() error {
		for _, line := range strings.Split(l.AgentLog("h1"), "\n") {
			all := true
			for _, w := range want {
				all = all && strings.Contains(line, w)
			}
			if all {
				return nil
			}
		}
		return fmt.Errorf("h1's agent log has no line with %q", want)
	})
}
