// Package kube holds weft's Kubernetes-mode tests against a real control
// plane (kubetest): the deploy/kube-weft.yml manifest is applied object by
// object, and the kube store runs with a token of the manifest's
// ServiceAccount, so the manifest's RBAC is what is tested.
//
// The control plane's binaries are built once by build-tools.sh (about 8
// minutes on two cores) into a cache outside the clone; without them the
// tests skip, except under CI or WEFT_REQUIRE_ROOT=1, where they are built.
//
//	make test-kube     # or: go test -count=1 ./test/kube/...
package kube
