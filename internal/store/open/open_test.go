package open

import (
	"testing"

	"github.com/weftnet/weft/internal/options"
)

func TestDescribeAndConfigKey(t *testing.T) {
	o := options.Defaults()
	o.EtcdEndpoints = "https://root:s3cret@10.4.7.12:2379, http://10.4.7.21:2379"
	o.EtcdPrefix = "/atomic.io/network/"
	if got, want := Describe(o), "etcd https://root:xxxxx@10.4.7.12:2379,http://10.4.7.21:2379 /atomic.io/network"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	if got, want := ConfigKey(o), "/atomic.io/network/config"; got != want {
		t.Errorf("ConfigKey = %q, want %q", got, want)
	}

	o.KubeSubnetMgr = true
	if got, want := Describe(o), "kubernetes in-cluster (config /etc/kube-flannel/net-conf.json)"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	o.KubeconfigFile, o.NetConfigPath = "/etc/kubernetes/kubelet.conf", "/run/net-conf.json"
	if got, want := Describe(o), "kubernetes from /etc/kubernetes/kubelet.conf (config /run/net-conf.json)"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	if got, want := ConfigKey(o), "/run/net-conf.json"; got != want {
		t.Errorf("ConfigKey = %q, want %q", got, want)
	}
}
