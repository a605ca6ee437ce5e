package main

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// dockerfile is what the Dockerfile installs in its final image, read from
// its instructions.
type dockerfile struct {
	files      map[string]string // image path -> build (buildOf) written there
	links      map[string]string // symlink -> target
	packages   []string          // apt-get install arguments
	entrypoint []string
	cmd        []string
}

// instructions joins continuation lines and drops comments.
func instructions(t *testing.T, text string) [][2]string {
	t.Helper()
	var out [][2]string
	var cur strings.Builder
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if trimmed := strings.TrimSpace(line); cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		kw, rest, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, [2]string{strings.ToUpper(kw), strings.TrimSpace(rest)})
		cur.Reset()
	}
	return out
}

func parseDockerfile(t *testing.T, file string) dockerfile {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{files: map[string]string{}, links: map[string]string{}}
	built := map[string]string{} // build stage output path -> buildOf
	stage := 0
	for _, in := range instructions(t, string(b)) {
		kw, rest := in[0], in[1]
		switch kw {
		case "FROM":
			stage++
		case "RUN":
			for cmd := range strings.SplitSeq(rest, "&&") {
				f := strings.Fields(cmd)
				if i := slices.Index(f, "build"); i > 0 && strings.HasSuffix(f[i-1], "go") {
					o := slices.Index(f, "-o")
					if o < 0 || o+1 >= len(f) {
						t.Fatalf("%s: go build without -o: %s", file, cmd)
					}
					out := f[o+1]
					tags := ""
					if i := slices.Index(f, "-tags"); i > 0 && i+1 < len(f) {
						tags = f[i+1]
					}
					var pkgs []string
					for _, a := range f[o+2:] {
						if strings.HasPrefix(a, "./cmd/") {
							pkgs = append(pkgs, a)
						}
					}
					for _, p := range pkgs {
						if strings.HasSuffix(out, "/") {
							built[out+path.Base(p)] = buildOf(p, tags)
						} else if len(pkgs) == 1 {
							built[out] = buildOf(p, tags)
						} else {
							t.Fatalf("%s: go build -o %s of several packages", file, out)
						}
					}
					if !strings.Contains(cmd, "CGO_ENABLED=0") || !slices.Contains(f, "-trimpath") {
						t.Errorf("%s: %q is not a static (CGO_ENABLED=0) -trimpath build as make image's", file, strings.TrimSpace(cmd))
					}
				}
				if i := slices.Index(f, "ln"); i >= 0 && stage > 1 {
					if len(f) != i+4 || f[i+1] != "-s" {
						t.Fatalf("%s: ln other than \"ln -s TARGET LINK\": %s", file, cmd)
					}
					d.links[f[i+3]] = f[i+2]
				}
				if i := slices.Index(f, "install"); i > 0 && f[i-1] == "apt-get" && stage > 1 {
					for _, a := range f[i+1:] {
						if !strings.HasPrefix(a, "-") {
							d.packages = append(d.packages, a)
						}
					}
				}
			}
		case "COPY":
			if stage < 2 {
				continue
			}
			f := strings.Fields(rest)
			if len(f) < 3 || f[0] != "--from=build" {
				t.Fatalf("%s: COPY %s: only COPY --from=build into the final image is understood here", file, rest)
			}
			srcs, dest := f[1:len(f)-1], f[len(f)-1]
			for _, s := range srcs {
				p, ok := built[s]
				if !ok {
					t.Fatalf("%s: COPY of %s, which no go build of ./cmd/... wrote", file, s)
				}
				to := dest
				if strings.HasSuffix(dest, "/") {
					to = dest + path.Base(s)
				} else if len(srcs) > 1 {
					t.Fatalf("%s: COPY of several files to %s, not a directory", file, dest)
				}
				d.files[to] = p
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("%s: ENTRYPOINT %s: want the JSON form: %v", file, rest, err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(rest), &d.cmd); err != nil {
				t.Fatalf("%s: CMD %s: want the JSON form: %v", file, rest, err)
			}
		}
	}
	return d
}

// buildOf names a go build of one package with its -tags.
func buildOf(pkg, tags string) string {
	if tags == "" {
		return pkg
	}
	return pkg + " -tags " + tags
}

// TestDockerfileInstallsTheSameFiles: the Dockerfile, for users who build
// with Docker, and make image put the same programs, built with the same
// tags, at the same paths,
// the same links, the same entry point and command, and the Dockerfile's
// Debian packages are among the image's.
func TestDockerfileInstallsTheSameFiles(t *testing.T) {
	top, err := gitTop()
	if err != nil {
		t.Fatal(err)
	}
	d := parseDockerfile(t, filepath.Join(top, "Dockerfile"))

	want := map[string]string{}
	for _, f := range weftFiles {
		want[f.dest] = buildOf(f.pkg, f.tags)
	}
	if !mapsEqual(d.files, want) {
		t.Errorf("the Dockerfile installs %v, make image %v (path -> package and tags)", d.files, want)
	}
	wantLinks := map[string]string{}
	for _, l := range weftLinks {
		wantLinks[l.link] = l.target
	}
	if !mapsEqual(d.links, wantLinks) {
		t.Errorf("the Dockerfile links %v, make image %v (link -> target)", d.links, wantLinks)
	}
	if !slices.Equal(d.entrypoint, entrypoint) || !slices.Equal(d.cmd, defaultCmd) {
		t.Errorf("the Dockerfile's ENTRYPOINT %q CMD %q, make image's %q %q", d.entrypoint, d.cmd, entrypoint, defaultCmd)
	}
	if len(d.packages) == 0 {
		t.Errorf("found no apt-get install in the Dockerfile's final stage")
	}
	for _, p := range d.packages {
		if !slices.Contains(rootPackages, p) {
			t.Errorf("the Dockerfile installs Debian package %s, make image does not (rootPackages %v)", p, rootPackages)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
