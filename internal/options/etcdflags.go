package options

import (
	"flag"
	"os"
)

// AddEtcdFlags registers only the etcd connection flags (endpoints, prefix,
// TLS files, basic auth) on fs, bound to o, with the same names and
// defaults as the agent's, for commands that talk to the store without
// running an agent (weft config). ApplyEnv then fills them from
// FLANNELD_* variables.
func (o *Options) AddEtcdFlags(fs *flag.FlagSet) {
	o.addSome(fs, EtcdFlagNames)
}

// AddStoreFlags registers the flags that choose and reach the store: the
// etcd ones of AddEtcdFlags and those of Kubernetes mode.
func (o *Options) AddStoreFlags(fs *flag.FlagSet) {
	o.addSome(fs, append(append([]string(nil), EtcdFlagNames...), KubeFlagNames...))
}

func (o *Options) addSome(fs *flag.FlagSet, names []string) {
	all := flag.NewFlagSet("", flag.ContinueOnError)
	o.AddFlags(all)
	for _, name := range names {
		f := all.Lookup(name)
		fs.Var(f.Value, f.Name, f.Usage)
	}
}

// EtcdFlagNames are the flags AddEtcdFlags registers.
var EtcdFlagNames = []string{
	"etcd-endpoints", "etcd-prefix",
	"etcd-keyfile", "etcd-certfile", "etcd-cafile",
	"etcd-username", "etcd-password", "etcd-password-file",
}

// KubeFlagNames are the Kubernetes-mode flags AddStoreFlags adds.
var KubeFlagNames = []string{
	"kube-subnet-mgr", "kube-api-url", "kubeconfig-file",
	"kube-annotation-prefix", "net-config-path",
}

// ApplyEnv sets each of the agent's flags in fs that the command line did
// not set from its FLANNELD_* variable (see EnvName), as Parse does for the
// agent; call it after fs.Parse. The flags of fs that the agent does not
// have (a command's own, such as weft status's -o) read nothing from the
// environment.
func ApplyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	agent := flag.NewFlagSet("", flag.ContinueOnError)
	scratch := Defaults()
	scratch.AddFlags(agent)
	vars := map[string]bool{}
	agent.VisitAll(func(f *flag.Flag) { vars[EnvName(f.Name)] = true })
	return applyEnv(fs, func(k string) string {
		if !vars[k] {
			return ""
		}
		return getenv(k)
	})
}
