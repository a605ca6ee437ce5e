package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/options"
)

// The page and /status.json carry no credential the agent was started
// with, in etcd mode and in Kubernetes mode, whatever the report holds.
func TestPageHasNoSecrets(t *testing.T) {
	secrets := []string{"s3cr3t-pw", "url-pw", "etcd-admin", "client-key.pem", "kube-token"}
	// Paths are not secrets, but nothing of a credential file belongs on the page.
	etcd := options.Defaults()
	etcd.EtcdEndpoints = "https://etcd-admin:url-pw@10.0.0.5:2379,https://10.0.0.6:2379"
	etcd.EtcdUsername = "etcd-admin"
	etcd.EtcdPassword = "s3cr3t-pw"
	etcd.EtcdKeyfile = "/etc/weft/client-key.pem"
	etcd.EtcdCertfile = "/etc/weft/client.pem"
	etcd.EtcdCAFile = "/etc/weft/ca.pem"
	etcd.SubnetFile = t.TempDir() + "/subnet.env"
	kube := etcd
	kube.KubeSubnetMgr = true
	kube.KubeAPIURL = "https://kube-token:url-pw@10.0.0.1:6443"
	kube.KubeconfigFile = "/root/.kube/config"

	cfg, err := netconf.Parse([]byte(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]options.Options{"etcd": etcd, "kubernetes": kube} {
		t.Run(name, func(t *testing.T) {
			a := New(opts, Deps{})
			a.page.setConfig(cfg)
			a.page.setLeases([]lease.Lease{{
				Subnet:     netip.MustParsePrefix("10.244.2.0/24"),
				Attrs:      lease.Attrs{PublicIP: netip.MustParseAddr("192.0.2.2"), BackendType: "host-gw"},
				Expiration: time.Now().Add(time.Hour),
			}})
			h := a.pageHandler(time.Now())
			for _, path := range []string{"/status.json", "/"} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				b, _ := io.ReadAll(rec.Result().Body)
				body := string(b)
				if rec.Code != http.StatusOK {
					t.Fatalf("%s: status %d\n%s", path, rec.Code, body)
				}
				if !strings.Contains(body, "10.244.2.0/24") {
					t.Fatalf("%s does not show the report (nothing to check for secrets):\n%s", path, body)
				}
				for _, s := range secrets {
					if strings.Contains(body, s) {
						t.Errorf("%s shows %q:\n%s", path, s, body)
					}
				}
			}
		})
	}
}

// Whatever the operator wrote as endpoints, the store's name on the page
// keeps no user name or password of a URL.
func FuzzWithoutUserinfo(f *testing.F) {
	f.Add("etcd https://admin:pw@10.0.0.5:2379,http://u@h:1 /coreos.com/network")
	f.Add("kubernetes https://tok:en@10.0.0.1:6443 (config /etc/kube-flannel/net-conf.json)")
	f.Add("etcd %zz://a:b@c, ,:://@")
	f.Add("etcd http://admin:SECRET@10.0.0.5:2379/%zz")
	f.Fuzz(func(t *testing.T, s string) {
		out := withoutUserinfo(s)
		for _, w := range strings.Fields(out) {
			for _, u := range strings.Split(w, ",") {
				if p, err := url.Parse(u); err == nil && p.User != nil {
					t.Fatalf("withoutUserinfo(%q) = %q keeps user info in %q", s, out, u)
				}
				// Also where the URL does not parse: no "@" in the authority.
				if scheme, rest, ok := strings.Cut(u, "://"); ok && scheme != "" && !strings.ContainsAny(scheme, "/?#@") {
					if i := strings.IndexAny(rest, "/?#"); i >= 0 {
						rest = rest[:i]
					}
					if strings.Contains(rest, "@") {
						t.Fatalf("withoutUserinfo(%q) = %q keeps user info in %q", s, out, u)
					}
				}
			}
		}
	})
}
