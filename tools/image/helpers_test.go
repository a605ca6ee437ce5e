package main

import (
	"fmt"
	"os/exec"
	"strings"
)

// gitTop is the source tree the tests read and build: this module's ../..
func gitTop() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("find weft's source tree: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
