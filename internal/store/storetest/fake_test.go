package storetest

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/internal/lease"
)

func TestFakeConformance(t *testing.T) {
	f := New(nil)
	Conformance(t, Harness{
		Store:     f,
		SetConfig: f.SetConfig,
		Delete:    func(sn netip.Prefix) error { f.Delete(sn); return nil },
	})
}

func TestFakeDualStackConformance(t *testing.T) {
	f := New(nil)
	DualStackConformance(t, Harness{
		Store:     f,
		SetConfig: f.SetConfig,
		Delete:    func(sn netip.Prefix) error { f.Delete(sn); return nil },
	})
}

func TestFakeInjectsFailuresAndCountsCalls(t *testing.T) {
	ctx := context.Background()
	f := New(nil)
	if err := f.SetConfig(`{"Network": "10.5.0.0/16"`); err == nil {
		t.Fatal("SetConfig took invalid JSON")
	}
	if err := f.SetConfig(`{"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}`); err != nil {
		t.Fatal(err)
	}
	for _, op := range []Op{OpConfig, OpRenew, OpWatch} {
		f.Fail(op, ErrInjected)
	}
	if _, err := f.Config(ctx); !errors.Is(err, ErrInjected) {
		t.Errorf("Config: %v, want the injected failure", err)
	}
	l := lease.Lease{Subnet: netip.MustParsePrefix("10.5.1.0/24")}
	if _, err := f.Renew(ctx, l); !errors.Is(err, ErrInjected) {
		t.Errorf("Renew: %v, want the injected failure", err)
	}
	if err := f.Watch(ctx, func([]lease.Lease) { t.Error("a failing Watch delivered a snapshot") }); !errors.Is(err, ErrInjected) {
		t.Errorf("Watch: %v, want the injected failure", err)
	}
	f.Fail(OpConfig, nil)
	if _, err := f.Config(ctx); err != nil {
		t.Errorf("Config after the failure was cleared: %v", err)
	}
	if got := f.Calls(OpConfig); got != 2 {
		t.Errorf("Calls(config) = %d, want 2 (failed ones count)", got)
	}
}
