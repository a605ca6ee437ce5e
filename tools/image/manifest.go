package main

import (
	"fmt"
	"regexp"
	"strings"
)

// imagePlaceholder is the image deploy/kube-weft.yml names: the
// repository with the tag VERSION, which `make image` replaces with the
// tag it built (bin/kube-weft.yml). A manifest applied without rendering
// fails on the node with an image named VERSION, not with some other
// build's image.
const imagePlaceholder = "ghcr.io/weftnet/weft:VERSION"

var imageLine = regexp.MustCompile(`(?m)^(\s*-?\s*image:\s*)(\S+)\s*$`)

// renderManifest returns the manifest with every image: naming ref. Each
// image: line of the source must name the placeholder; anything else means
// the manifest and the build have drifted apart.
func renderManifest(src []byte, file, ref string) ([]byte, error) {
	lines := imageLine.FindAllSubmatchIndex(src, -1)
	if len(lines) == 0 {
		return nil, fmt.Errorf("%s: no image: line to render", file)
	}
	for _, m := range lines {
		if got := string(src[m[4]:m[5]]); got != imagePlaceholder {
			line := strings.Count(string(src[:m[0]]), "\n") + 1
			return nil, fmt.Errorf("%s:%d: image %s, want %s (make image puts the tag it builds there)", file, line, got, imagePlaceholder)
		}
	}
	return imageLine.ReplaceAll(src, []byte("${1}"+ref)), nil
}
