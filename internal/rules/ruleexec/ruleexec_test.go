package ruleexec

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestExec(t *testing.T) {
	ctx := context.Background()
	out, err := Exec{}.Run(ctx, []byte("hello\n"), "cat")
	if err != nil || string(out) != "hello\n" {
		t.Errorf("cat: %q, %v", out, err)
	}
	_, err = Exec{}.Run(ctx, nil, "sh", "-c", "echo oops >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "oops") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("failing command: %v", err)
	}
	if _, err := (Exec{}).Run(ctx, nil, "weft-no-such-program"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing program: %v, want ErrNotFound", err)
	}
}

func TestFake(t *testing.T) {
	f := &Fake{Handle: func(c Call) ([]byte, error) {
		if c.Name == "nft" {
			return []byte("ok"), nil
		}
		return nil, NotFound(c.Name)
	}}
	out, err := f.Run(context.Background(), []byte("in"), "nft", "-f", "-")
	if string(out) != "ok" || err != nil {
		t.Errorf("nft: %q %v", out, err)
	}
	if _, err := f.Run(context.Background(), nil, "iptables-save"); !errors.Is(err, ErrNotFound) {
		t.Errorf("iptables-save: %v", err)
	}
	calls := f.Calls()
	if len(calls) != 2 || calls[0].String() != "nft -f -" || calls[0].Stdin != "in" {
		t.Errorf("calls = %+v", calls)
	}
	f.Reset()
	if len(f.Calls()) != 0 {
		t.Error("Reset kept calls")
	}
}
