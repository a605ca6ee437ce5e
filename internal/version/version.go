// Package version carries the build's version string, set at link time:
//
//	go build -ldflags "-X github.com/weftnet/weft/internal/version.Version=v0.1.0"
package version

// Version is the weft release; "dev" for untagged builds.
var Version = "dev"
