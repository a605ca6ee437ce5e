package options

import "flag"

// AddEtcdFlags registers only the etcd connection flags (endpoints, prefix,
// TLS files, basic auth) on fs, bound to o, with the same names and
// defaults as the agent's, for commands that talk to the store without
// running an agent (weft config). ApplyEnv then fills them from
// FLANNELD_* variables.
func (o *Options) AddEtcdFlags(fs *flag.FlagSet) {
	all := flag.NewFlagSet("", flag.ContinueOnError)
	o.AddFlags(all)
	for _, name := range EtcdFlagNames {
		f := all.Lookup(name)
		fs.Var(f.Value, f.Name, f.Usage)
	}
}

// EtcdFlagNames are the flags AddEtcdFlags registers.
var EtcdFlagNames = []string{
	"etcd-endpoints", "etcd-prefix",
	"etcd-keyfile", "etcd-certfile", "etcd-cafile",
	"etcd-username", "etcd-password",
}

// ApplyEnv sets each flag of fs that the command line did not set from its
// FLANNELD_* variable (see EnvName), as Parse does for the agent; call it
// after fs.Parse.
func ApplyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	return applyEnv(fs, getenv)
}
