package cni

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// addWithMissing runs an ADD whose delegate config names the plugin typ,
// which is not on CNI_PATH, then makes the plugins in missing disappear.
// Returns the fixture with the ADD's saved config in place.
func addWithMissing(t *testing.T, extra string, missing ...string) *fixture {
	t.Helper()
	f := newFixture(t)
	var notes bytes.Buffer
	f.p.Notes = &notes
	if err := f.p.Add(f.args(extra)); err != nil {
		t.Fatalf("Add: %v", err)
	}
	f.exec.calls = nil
	f.exec.missing = map[string]bool{}
	for _, m := range missing {
		f.exec.missing[m] = true
	}
	return f
}

func notes(f *fixture) string { return f.p.Notes.(*bytes.Buffer).String() }

func savedGone(t *testing.T, f *fixture) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(f.dataDir, "ctr1")); !os.IsNotExist(err) {
		t.Errorf("saved delegate config still there after DEL: %v", err)
	}
}

// A delegate with a bad "type": ADD fails before anything is set up, and
// every DEL after it succeeds (it used to fail forever).
func TestDelAfterAddWithBadDelegateType(t *testing.T) {
	f := newFixture(t)
	var nb bytes.Buffer
	f.p.Notes = &nb
	f.exec.missing = map[string]bool{"brigde": true}
	args := f.args("")
	args.StdinData = bytes.Replace(args.StdinData, []byte(`"delegate":{`), []byte(`"delegate":{"type":"brigde",`), 1)
	if err := f.p.Add(args); err == nil || !strings.Contains(err.Error(), `"brigde"`) {
		t.Fatalf("Add = %v, want an error naming the missing delegate", err)
	}
	for i := range 2 {
		if err := f.p.Del(args); err != nil {
			t.Fatalf("Del #%d = %v, want success: nothing of the delegate's exists", i+1, err)
		}
	}
	savedGone(t, f)
	// host-local exists (in the fake): its DEL releases whatever is there.
	if len(f.exec.calls) != 1 || f.exec.calls[0].plugin != "host-local" || f.exec.calls[0].command != "DEL" {
		t.Errorf("calls %+v, want one host-local DEL", f.exec.calls)
	}
	if n := nb.String(); strings.Count(n, "\n") != 1 || !strings.Contains(n, `delegate "brigde" cannot be run`) ||
		!strings.Contains(n, "failed to find plugin") || !strings.Contains(n, `IPAM plugin "host-local"`) {
		t.Errorf("stderr = %q, want one line naming the delegate, why, and what was released", n)
	}
}

// The delegate was uninstalled after ADD: its IPAM plugin's DEL releases the
// address, with the saved config (network name, ipam) it would have had.
func TestDelWithoutDelegateReleasesThroughIPAM(t *testing.T) {
	f := addWithMissing(t, "", "bridge")
	saved, err := os.ReadFile(filepath.Join(f.dataDir, "ctr1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.p.Del(f.args("")); err != nil {
		t.Fatalf("Del: %v", err)
	}
	if len(f.exec.calls) != 1 {
		t.Fatalf("calls %+v, want one", f.exec.calls)
	}
	c := f.exec.calls[0]
	if c.plugin != "host-local" || c.command != "DEL" || !bytes.Equal(c.conf, saved) {
		t.Errorf("call %s %s with %s, want host-local DEL with the saved config", c.plugin, c.command, c.conf)
	}
	savedGone(t, f)
}

// A failing IPAM DEL keeps the saved config for the runtime's retry.
func TestDelWithoutDelegateIPAMFailureKeepsConf(t *testing.T) {
	f := addWithMissing(t, "", "bridge")
	f.exec.err = os.ErrPermission
	err := f.p.Del(f.args(""))
	if err == nil || !strings.Contains(err.Error(), `"bridge" cannot be run`) || !strings.Contains(err.Error(), `"host-local"`) {
		t.Fatalf("Del = %v, want an error naming the delegate and the IPAM plugin", err)
	}
	if _, err := os.Stat(filepath.Join(f.dataDir, "ctr1")); err != nil {
		t.Errorf("saved config removed after a failed DEL: %v", err)
	}
}

// Neither the delegate nor host-local can be run: the container's
// reservations are removed from host-local's store directly, exactly those
// host-local's DEL would remove.
func TestDelWithoutDelegateOrHostLocalRemovesReservations(t *testing.T) {
	ipamDir := t.TempDir()
	f := addWithMissing(t, `,"ipam":{"dataDir":"`+ipamDir+`"}`, "bridge", "host-local")
	store := filepath.Join(ipamDir, "cbr0")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"10.1.17.2":          "ctr1\r\neth0", // ours
		"10.1.17.3":          "ctr2\r\neth0", // another pod
		"10.1.17.4":          "ctr1\r\nnet1", // ours, another interface
		"10.1.17.5":          "ctr1",         // an older host-local's: kept, since a current one matched
		"fd00::2":            "ctr1\r\neth0", // ours, IPv6
		"last_reserved_ip.0": "10.1.17.3",    // host-local's bookkeeping
		"lock":               "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(store, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	saved, err := os.ReadFile(filepath.Join(f.dataDir, "ctr1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.p.Del(f.args("")); err != nil {
		t.Fatalf("Del: %v", err)
	}
	if len(f.exec.calls) != 0 {
		t.Errorf("calls %+v, want none: no plugin can run", f.exec.calls)
	}
	var left []string
	ents, _ := os.ReadDir(store)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if want := []string{"10.1.17.3", "10.1.17.4", "10.1.17.5", "last_reserved_ip.0", "lock"}; !slices.Equal(left, want) {
		t.Errorf("left in host-local's store: %v, want %v", left, want)
	}
	savedGone(t, f)
	if n := notes(f); !strings.Contains(n, "10.1.17.2, fd00::2") || !strings.Contains(n, store) {
		t.Errorf("stderr = %q, want the released addresses and the store", n)
	}

	// Files of an older host-local hold the ID alone: released when no
	// current one matches.
	if err := os.WriteFile(filepath.Join(f.dataDir, "ctr1"), saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Del(f.args("")); err != nil {
		t.Fatalf("second Del: %v", err)
	}
	if _, err := os.Stat(filepath.Join(store, "10.1.17.5")); !os.IsNotExist(err) {
		t.Errorf("old-format reservation 10.1.17.5 kept: %v", err)
	}
}

// An IPAM plugin weft does not know, missing too: nothing to release
// from here; DEL still succeeds and says what is left.
func TestDelWithoutDelegateOrUnknownIPAM(t *testing.T) {
	f := addWithMissing(t, `,"ipam":{"type":"whereabouts"}`, "bridge", "whereabouts")
	if err := f.p.Del(f.args("")); err != nil {
		t.Fatalf("Del: %v", err)
	}
	savedGone(t, f)
	// flannelTestEnv has FLANNEL_IPMASQ=true, so the delegate has ipMasq
	// false: no rules to mention.
	if n := notes(f); !strings.Contains(n, `IPAM plugin "whereabouts" not found either: whatever it reserved is left`) || strings.Contains(n, "ipMasq") {
		t.Errorf("stderr = %q", n)
	}
}

// A delegate that masqueraded (FLANNEL_IPMASQ=false) may have left rules
// only it knows: the note says so.
func TestDelWithoutDelegateNamesMasqueradeRules(t *testing.T) {
	f := newFixture(t)
	if err := os.WriteFile(f.subnetFile, []byte(strings.Replace(flannelTestEnv, "FLANNEL_IPMASQ=true", "FLANNEL_IPMASQ=false", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	var nb bytes.Buffer
	f.p.Notes = &nb
	if err := f.p.Add(f.args("")); err != nil {
		t.Fatal(err)
	}
	f.exec.missing = map[string]bool{"bridge": true}
	if err := f.p.Del(f.args("")); err != nil {
		t.Fatalf("Del: %v", err)
	}
	if n := nb.String(); !strings.Contains(n, "ipMasq rules for the container, if it added any, are left") {
		t.Errorf("stderr = %q, want the masquerade rules named", n)
	}
}
