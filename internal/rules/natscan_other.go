//go:build !linux

package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

var errNotLinux = fmt.Errorf("netfilter: %w", errors.ErrUnsupported)

// scanNAT cannot look anywhere but on Linux; the Manager then keeps pod
// sources safe by installing the keep-source chains.
func scanNAT(string) (natFound, error) { return natFound{}, errNotLinux }

// watchNFT has no notifications to offer; Run resyncs on its timer.
func watchNFT(context.Context, string, *slog.Logger) (<-chan struct{}, error) {
	return nil, errNotLinux
}

// legacyTables cannot look; iptables then reads its tables all at once.
func legacyTables(string) ([2][]string, error) { return [2][]string{}, errNotLinux }
