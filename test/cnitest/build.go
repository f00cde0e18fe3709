//go:build linux

// Package cnitest helps tests drive the zonenet binaries the way a container
// runtime does: it builds them once per test binary, makes throw-away network
// namespaces (one playing the host, others the containers), execs a plugin
// inside the host namespace with the CNI environment, and reads back what the
// kernel holds (links, addresses, routes, firewall rules) so tests can assert
// on the kernel rather than on the plugin's own report.
//
// Every helper that creates something registers its removal with t.Cleanup,
// so a failing test leaves nothing behind on the machine.
package cnitest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Bins are the built binaries of the module.
type Bins struct {
	Dir     string // directory holding the binaries; put it first in CNI_PATH
	Zonenet string // the CNI plugin
	Ctl     string // zonenetctl; empty when it is not part of the build
}

var (
	buildOnce sync.Once
	buildBins Bins
	buildErr  error
	buildDir  string
)

// Build returns the module's binaries, building them the first time it is
// called in this test binary. ZONENET_BIN, when set, names a prebuilt plugin
// binary, or a directory holding zonenet and zonenetctl, to use instead;
// ZONENETCTL_BIN names the CLI.
func Build(t testing.TB) Bins {
	t.Helper()
	buildOnce.Do(func() { buildBins, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("build zonenet: %v", buildErr)
	}
	return buildBins
}

func build() (Bins, error) {
	if bin := os.Getenv("ZONENET_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return Bins{}, err
		}
		st, err := os.Stat(abs)
		if err != nil {
			return Bins{}, fmt.Errorf("ZONENET_BIN: %w", err)
		}
		if st.IsDir() {
			// A directory of built binaries, as `make build` leaves them.
			b := Bins{Dir: abs, Zonenet: filepath.Join(abs, "zonenet")}
			if _, err := os.Stat(filepath.Join(abs, "zonenetctl")); err == nil {
				b.Ctl = filepath.Join(abs, "zonenetctl")
			}
			return b, nil
		}
		b := Bins{Dir: filepath.Dir(abs), Zonenet: abs, Ctl: os.Getenv("ZONENETCTL_BIN")}
		if filepath.Base(abs) != "zonenet" {
			// CNI finds a plugin by its type, so the directory on CNI_PATH
			// must hold it under the name "zonenet".
			dir, err := os.MkdirTemp("", "zonenet-bin-")
			if err != nil {
				return Bins{}, err
			}
			buildDir = dir
			if err := os.Symlink(abs, filepath.Join(dir, "zonenet")); err != nil {
				return Bins{}, err
			}
			b.Dir, b.Zonenet = dir, filepath.Join(dir, "zonenet")
		}
		return b, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return Bins{}, err
	}
	dir, err := os.MkdirTemp("", "zonenet-bin-")
	if err != nil {
		return Bins{}, err
	}
	buildDir = dir
	b := Bins{Dir: dir, Zonenet: filepath.Join(dir, "zonenet")}
	if err := goBuild(root, b.Zonenet, "./cmd/zonenet"); err != nil {
		return Bins{}, err
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "zonenetctl")); err == nil {
		ctl := filepath.Join(dir, "zonenetctl")
		if goBuild(root, ctl, "./cmd/zonenetctl") == nil {
			b.Ctl = ctl
		}
	}
	return b, nil
}

func goBuild(root, out, pkg string) error {
	cmd := exec.Command(goTool(), "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// ModuleRoot is the directory of the module's go.mod.
func ModuleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the cnitest source file")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", file)
		}
		dir = parent
	}
}

// Main runs the tests of a package and then removes the binaries Build made.
// Use it from TestMain: func TestMain(m *testing.M) { os.Exit(cnitest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	return code
}
