package cmdline

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
)

func newFS() *flag.FlagSet {
	fs := flag.NewFlagSet("weft thing", flag.ContinueOnError)
	fs.Bool("x", false, "an option")
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "Usage: weft thing [-x]") }
	return fs
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args              []string
		wantOut, wantErr  string // "" means nothing on the stream
		wantCode          int
		wantUsageOnStderr bool
		wantUsageOnStdout bool
	}{
		{args: []string{"-x"}, wantCode: 0},
		{args: []string{"-h"}, wantCode: 0, wantUsageOnStdout: true},
		{args: []string{"--help"}, wantCode: 0, wantUsageOnStdout: true},
		{args: []string{"--bogus"}, wantCode: 2, wantErr: "weft thing: flag provided but not defined: -bogus", wantUsageOnStderr: true},
		{args: []string{"-x=maybe"}, wantCode: 2, wantErr: "weft thing: invalid boolean value", wantUsageOnStderr: true},
	} {
		var out, errOut strings.Builder
		fs := newFS()
		err := Parse(fs, tc.args, &out, &errOut)
		if code := Exit(fs.Name(), err, &errOut); code != tc.wantCode {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.wantCode)
		}
		if got := strings.Count(out.String(), "Usage:"); got != b2i(tc.wantUsageOnStdout) {
			t.Errorf("%q: usage %d times on stdout: %q", tc.args, got, out.String())
		}
		if got := strings.Count(errOut.String(), "Usage:"); got != b2i(tc.wantUsageOnStderr) {
			t.Errorf("%q: usage %d times on stderr: %q", tc.args, got, errOut.String())
		}
		first, _, _ := strings.Cut(errOut.String(), "\n")
		if tc.wantErr == "" && errOut.Len() > 0 || !strings.HasPrefix(first, tc.wantErr) {
			t.Errorf("%q: stderr %q, want a first line starting %q", tc.args, errOut.String(), tc.wantErr)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Exit prints what nobody printed yet, and only that: a reported usage
// error is not repeated, an unreported one gets its line, a failure gets
// "name: error" and status 1.
func TestExit(t *testing.T) {
	var errOut strings.Builder
	fs := newFS()
	if err := Parse(fs, []string{"a"}, &errOut, &errOut); err != nil {
		t.Fatal(err)
	}
	reported := NoArgs(fs, &errOut)
	before := errOut.String()
	if code := Exit("weft thing", fmt.Errorf("wrapped: %w", reported), &errOut); code != 2 || errOut.String() != before {
		t.Errorf("reported usage error: exit %d, printed again %q", code, strings.TrimPrefix(errOut.String(), before))
	}
	errOut.Reset()
	if code := Exit("weft thing", Usagef("need %d names", 2), &errOut); code != 2 || errOut.String() != "weft thing: need 2 names\n" {
		t.Errorf("unreported usage error: exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := Exit("weft thing", errors.New("etcd unreachable"), &errOut); code != 1 || errOut.String() != "weft thing: etcd unreachable\n" {
		t.Errorf("failure: exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := Exit("weft thing", flag.ErrHelp, &errOut); code != 0 || errOut.Len() != 0 {
		t.Errorf("help: exit %d, stderr %q", code, errOut.String())
	}
}
