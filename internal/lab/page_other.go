//go:build !linux

package lab

import (
	"context"
	"log/slog"
)

func runPage(context.Context, Spec, string, *slog.Logger) error { return errUnsupported }
