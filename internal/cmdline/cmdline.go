// Package cmdline holds the manners every weft command shares on its
// command line, so that they cannot drift apart between commands:
//
//   - -h, -help and --help print the command's help on stdout and exit 0;
//   - a usage mistake (unknown flag, bad flag value, missing or extra
//     arguments, unknown subcommand) prints one line naming it, then the
//     usage once, both on stderr, and exits 2;
//   - any other failure prints "<command>: <error>" on stderr and exits 1.
//
// The flag package alone prints the usage itself on every parse error, to
// the flag set's output, which is what made commands print it twice or on
// the wrong stream; Parse silences it and prints it once, where it belongs.
package cmdline

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// UsageError is a mistake in how a command was invoked: exit status 2.
type UsageError struct {
	Err error
	// Reported is set once the error line and the usage are on stderr, so
	// that Exit does not print them again.
	Reported bool
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a usage error that has not been printed yet; Exit prints
// its one line.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Parse parses args with fs. fs.Usage, when set, must write to fs.Output().
// On -h it prints the usage on stdout and returns flag.ErrHelp; on a
// mistake it reports it with Fail and returns the UsageError.
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	return Check(fs, fs.Parse(args), stdout, stderr)
}

// Check reports the outcome of parsing fs as Parse does, for callers that
// parse through a helper of their own (which must have silenced fs).
func Check(fs *flag.FlagSet, err error, stdout, stderr io.Writer) error {
	switch {
	case err == nil:
		fs.SetOutput(stderr)
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(stderr)
		return flag.ErrHelp
	default:
		return Fail(fs, stderr, err)
	}
}

// Fail reports a usage mistake found with or after parsing: one line
// naming it, then fs's usage, both on stderr. It returns the reported
// UsageError.
func Fail(fs *flag.FlagSet, stderr io.Writer, err error) error {
	fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
	fs.SetOutput(stderr)
	fs.Usage()
	return &UsageError{Err: err, Reported: true}
}

// Exit is the exit status for a command's outcome: 0 for success and for
// help, 2 for a usage error, 1 for anything else. What has not been printed
// yet is printed on stderr as "name: error".
func Exit(name string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		if !ue.Reported {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
		}
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}

// NoArgs is a usage error when fs left positional arguments over.
func NoArgs(fs *flag.FlagSet, stderr io.Writer) error {
	if fs.NArg() == 0 {
		return nil
	}
	return Fail(fs, stderr, fmt.Errorf("unexpected arguments: %q", fs.Args()))
}
