package health

import "testing"

func TestConditionsOverrideReady(t *testing.T) {
	var s Status
	s.SetReady()
	s.SetCondition("peers", "no peer can be programmed")
	if ok, why := s.Ready(); ok || why != "no peer can be programmed" {
		t.Fatalf("with a condition: %v %q", ok, why)
	}
	// Another loop's SetReady does not hide it.
	s.SetReady()
	s.SetCondition("a", "first")
	if ok, why := s.Ready(); ok || why != "first; no peer can be programmed" {
		t.Fatalf("two conditions: %v %q", ok, why)
	}
	s.SetNotReady("store unreachable")
	if ok, why := s.Ready(); ok || why != "store unreachable" {
		t.Fatalf("not ready: %v %q", ok, why)
	}
	s.SetReady()
	s.SetCondition("a", "")
	s.SetCondition("peers", "")
	if ok, why := s.Ready(); !ok || why != "" {
		t.Fatalf("cleared: %v %q", ok, why)
	}
}
