package dist

import (
	"flag"

	"github.com/weftnet/weft/internal/options"
)

// flagSet lists the names of the agent's flags.
func flagSet(o *options.Options) []string {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	o.AddFlags(fs)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}
