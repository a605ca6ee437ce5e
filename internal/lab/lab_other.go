//go:build !linux

package lab

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

// errUnsupported: the lab is made of Linux network namespaces.
var errUnsupported = errors.New("weft lab needs Linux network namespaces")

// Lab is a running lab; on this platform there never is one.
type Lab struct{ topo Topology }

// Topology returns the lab's plan.
func (l *Lab) Topology() Topology { return l.topo }

func Up(context.Context, Options) (*Lab, error)                          { return nil, errUnsupported }
func Down(context.Context, Spec, *slog.Logger) error                     { return errUnsupported }
func DownTo(context.Context, Spec, *slog.Logger, io.Writer) error        { return errUnsupported }
func Demo(context.Context, Options) (Result, error)                      { return Result{}, errUnsupported }
func CheckRunning(context.Context, Spec, io.Writer) error                { return errUnsupported }
func Status(Spec, io.Writer) error                                       { return errUnsupported }
func Exec(context.Context, string, []string, io.Writer, io.Writer) error { return errUnsupported }

func printUsage(io.Writer, Topology) {}
