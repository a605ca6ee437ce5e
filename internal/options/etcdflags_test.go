package options

import (
	"flag"
	"io"
	"testing"
)

func TestAddEtcdFlags(t *testing.T) {
	o := Defaults()
	fs := flag.NewFlagSet("weft config", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.AddEtcdFlags(fs)

	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if len(names) != len(EtcdFlagNames) {
		t.Errorf("registered %q, want exactly %q", names, EtcdFlagNames)
	}
	if err := fs.Parse([]string{"--etcd-prefix=/atomic.io/network", "--etcd-cafile", "/ca.pem"}); err != nil {
		t.Fatal(err)
	}
	if fs.Lookup("ip-masq") != nil {
		t.Error("agent-only flag --ip-masq registered")
	}
	env := map[string]string{
		"FLANNELD_ETCD_ENDPOINTS": "https://10.4.7.12:2379",
		"FLANNELD_ETCD_PREFIX":    "/from/env",
		"FLANNELD_ETCD_PASSWORD":  "s3cret",
	}
	if err := ApplyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if o.EtcdPrefix != "/atomic.io/network" {
		t.Errorf("EtcdPrefix = %q: the command line must win over FLANNELD_ETCD_PREFIX", o.EtcdPrefix)
	}
	if o.EtcdEndpoints != "https://10.4.7.12:2379" || o.EtcdPassword != "s3cret" || o.EtcdCAFile != "/ca.pem" {
		t.Errorf("options not bound to the flags and environment: %+v", o)
	}
	if o.SubnetFile != Defaults().SubnetFile {
		t.Errorf("SubnetFile changed to %q", o.SubnetFile)
	}
}
