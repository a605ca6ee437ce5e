package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestChildEnvDropsWhatWouldRedirectTheAgents(t *testing.T) {
	in := []string{"PATH=/usr/bin", "FLANNELD_IFACE=eth9", "FLANNELD_IP_MASQ=true", "NOTIFY_SOCKET=/run/systemd/notify",
		"LISTEN_FDS=2", "LISTEN_PID=1", "HOME=/root", "WEFT_CNI_BIN_DIR=/x"}
	got := childEnv(in)
	want := []string{"PATH=/usr/bin", "HOME=/root", "WEFT_CNI_BIN_DIR=/x"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv = %q, want %q", got, want)
	}
	if len(in) != 8 {
		t.Error("childEnv modified its input")
	}
}

func TestPIDFileRecognisesOnlyTheSameProcess(t *testing.T) {
	dir := t.TempDir()
	self := os.Getpid()
	start, err := procStartTime(self)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content string
		ok      bool
		wantErr bool
	}{
		{"same pid and start time", fmt.Sprintf("%d %d\n", self, start), true, false},
		{"pid reused by another process", fmt.Sprintf("%d %d\n", self, start+1), false, false},
		{"garbage", "not a pid\n", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(f, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, ok, err := readPIDFile(f)
			if ok != tc.ok || (err != nil) != tc.wantErr {
				t.Errorf("readPIDFile(%q) ok=%v err=%v; want ok=%v err=%v", tc.content, ok, err, tc.ok, tc.wantErr)
			}
		})
	}
	if pid, ok, err := readPIDFile(filepath.Join(dir, "missing")); pid != 0 || ok || err != nil {
		t.Errorf("missing pid file: %d %v %v; want 0 false nil", pid, ok, err)
	}
}

func TestMainRejectsBadInvocationsBeforeTouchingAnything(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{}, "no lab command"},
		{[]string{"launch"}, "unknown lab command"},
		{[]string{"demo", "extra"}, "unexpected arguments"},
		{[]string{"up", "--network", "bogus"}, "--network"},
		{[]string{"up", "--prefix", "Bad"}, "prefix"},
		{[]string{"demo", "--hosts", "1"}, "at least 2 hosts"},
		{[]string{"demo", "--pods", "0"}, "1 pod per host"},
		{[]string{"down", "--prefix", "a-b"}, "prefix"},
		{[]string{"exec", "h1"}, "needs a namespace and a command"},
		{[]string{"exec", "root", "--", "true"}, "not a lab namespace"},
		{[]string{"status", "--state-dir", t.TempDir()}, "not up"},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		err := Main(context.Background(), tc.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Main(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
}
