package configcmd

import (
	"flag"
	"io"
)

type flagSet struct{ *flag.FlagSet }

func newTestFlags(a *string) *flagSet {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(a, "a", "", "")
	return &flagSet{fs}
}
