// Package kube holds weft's Kubernetes-mode tests against a real control
// plane (kubetest, on internal/kubecluster): the deploy/kube-weft.yml
// manifest is applied object by object, and the kube store runs with a
// token of the manifest's ServiceAccount, so the manifest's RBAC is what is
// tested.
//
// The lab tests (lab_linux_test.go) run the whole thing on the data path:
// a `weft lab --store kube` with the control plane in the lab's underlay
// namespace, real agents with --kube-subnet-mgr on three hosts, pods
// through the CNI plugin, over host-gw and vxlan; and `weft lab demo
// --store kube` as a user runs it.
//
// The control plane's binaries are built once by build-tools.sh (about 8
// minutes on two cores) into a cache outside the clone; without them the
// tests skip, except under CI or WEFT_REQUIRE_ROOT=1, where they are built.
//
//	make test-kube     # or: go test -count=1 ./test/kube/...
package kube
