// Command mkimage writes a single-layer container image tarball without a
// registry or a container engine, for the end-to-end tests.
//
// The tarball holds two descriptions of the same blobs so that every runtime
// under test can load it: an OCI image layout (oci-layout, index.json,
// blobs/sha256/...) read by `ctr images import`, and a docker-archive
// manifest (manifest.json, repositories) read by `podman load` and
// `docker load`. The layer is uncompressed and every timestamp is zero, so the
// same inputs always give the same image ID.
//
// Usage:
//
//	mkimage -ref zonenet.test/e2e/busybox:1 -o busybox.tar -busybox /bin/busybox -cmd /bin/sh
//	mkimage -ref zonenet.test/e2e/pause:1 -o pause.tar -add ./pause:/pause -entrypoint /pause
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	ref        string
	out        string
	busybox    string
	adds       []string
	entrypoint []string
	cmd        []string
}

func main() {
	var o options
	var adds, entry, cmd listFlag
	flag.StringVar(&o.ref, "ref", "", "image reference NAME:TAG (required)")
	flag.StringVar(&o.out, "o", "", "output tarball (required)")
	flag.StringVar(&o.busybox, "busybox", "", "static busybox binary: installed as /bin/busybox with every applet linked")
	flag.Var(&adds, "add", "SRC:DST file to add (repeatable); keeps the mode bits of SRC")
	flag.Var(&entry, "entrypoint", "entrypoint word (repeatable)")
	flag.Var(&cmd, "cmd", "cmd word (repeatable)")
	flag.Parse()
	o.adds, o.entrypoint, o.cmd = adds, entry, cmd
	if o.ref == "" || o.out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	repo, tag, err := splitRef(o.ref)
	if err != nil {
		return err
	}
	layer, err := buildLayer(o)
	if err != nil {
		return err
	}
	layerDigest := sha256Hex(layer)

	epoch := time.Unix(0, 0).UTC().Format(time.RFC3339)
	imgConfig := map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch,
		"config": map[string]any{
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"WorkingDir": "/",
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerDigest}},
		"history": []map[string]string{{"created": epoch, "created_by": "zonenet test/e2e/tools/mkimage"}},
	}
	cfg := imgConfig["config"].(map[string]any)
	if len(o.entrypoint) > 0 {
		cfg["Entrypoint"] = o.entrypoint
	}
	if len(o.cmd) > 0 {
		cfg["Cmd"] = o.cmd
	}
	configJSON, err := json.Marshal(imgConfig)
	if err != nil {
		return err
	}
	configDigest := sha256Hex(configJSON)

	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{
			"mediaType": "application/vnd.oci.image.config.v1+json",
			"digest":    "sha256:" + configDigest,
			"size":      len(configJSON),
		},
		"layers": []map[string]any{{
			"mediaType": "application/vnd.oci.image.layer.v1.tar",
			"digest":    "sha256:" + layerDigest,
			"size":      len(layer),
		}},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	manifestDigest := sha256Hex(manifestJSON)

	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []map[string]any{{
			"mediaType": "application/vnd.oci.image.manifest.v1+json",
			"digest":    "sha256:" + manifestDigest,
			"size":      len(manifestJSON),
			"platform":  map[string]string{"architecture": runtime.GOARCH, "os": "linux"},
			"annotations": map[string]string{
				// containerd names the imported image after this annotation.
				"io.containerd.image.name":          o.ref,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	dockerManifest, err := json.Marshal([]map[string]any{{
		"Config":   "blobs/sha256/" + configDigest,
		"RepoTags": []string{o.ref},
		"Layers":   []string{"blobs/sha256/" + layerDigest},
	}})
	if err != nil {
		return err
	}
	repositories, err := json.Marshal(map[string]map[string]string{repo: {tag: layerDigest}})
	if err != nil {
		return err
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
	}
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", indexJSON},
		{"manifest.json", dockerManifest},
		{"repositories", repositories},
		{"blobs/sha256/" + layerDigest, layer},
		{"blobs/sha256/" + configDigest, configJSON},
		{"blobs/sha256/" + manifestDigest, manifestJSON},
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, 0o644, f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	tmp := o.out + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, o.out); err != nil {
		return err
	}
	fmt.Printf("%s -> %s (layer %d bytes, config sha256:%s)\n", o.ref, o.out, len(layer), configDigest[:12])
	return nil
}

func splitRef(ref string) (repo, tag string, err error) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") || i == len(ref)-1 {
		return "", "", fmt.Errorf("-ref %q: want NAME:TAG", ref)
	}
	return ref[:i], ref[i+1:], nil
}

// entry is one member of the layer.
type entry struct {
	name   string // without leading slash; directories end in "/"
	mode   int64
	data   []byte
	link   string // symlink target when non-empty
	isDir  bool
	source string // for error messages
}

func buildLayer(o options) ([]byte, error) {
	entries := map[string]entry{}
	addDir := func(p string) {
		for p != "." && p != "/" && p != "" {
			entries[p+"/"] = entry{name: p + "/", mode: 0o755, isDir: true}
			p = path.Dir(p)
		}
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var"} {
		addDir(d)
	}
	entries["tmp/"] = entry{name: "tmp/", mode: 0o1777, isDir: true}

	if o.busybox != "" {
		data, err := os.ReadFile(o.busybox)
		if err != nil {
			return nil, err
		}
		entries["bin/busybox"] = entry{name: "bin/busybox", mode: 0o755, data: data, source: o.busybox}
		applets, err := exec.Command(o.busybox, "--list-full").Output()
		if err != nil {
			return nil, fmt.Errorf("%s --list-full: %w", o.busybox, err)
		}
		for _, a := range strings.Fields(string(applets)) {
			a = strings.TrimPrefix(a, "/")
			if a == "bin/busybox" {
				continue
			}
			addDir(path.Dir(a))
			entries[a] = entry{name: a, mode: 0o777, link: "/bin/busybox"}
		}
		entries["etc/passwd"] = entry{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")}
		entries["etc/group"] = entry{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\n")}
	}
	for _, spec := range o.adds {
		src, dst, ok := strings.Cut(spec, ":")
		if !ok || !strings.HasPrefix(dst, "/") {
			return nil, fmt.Errorf("-add %q: want SRC:/ABSOLUTE/DST", spec)
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("-add %q: %s is not a regular file", spec, src)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(path.Clean(dst), "/")
		addDir(path.Dir(name))
		entries[name] = entry{name: name, mode: int64(st.Mode().Perm()), data: data, source: src}
	}
	if len(entries) == 0 {
		return nil, errors.New("empty image: give -busybox or -add")
	}

	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: time.Unix(0, 0), Uname: "root", Gname: "root", Format: tar.FormatPAX}
		switch {
		case e.isDir:
			h.Typeflag = tar.TypeDir
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", n, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("layer entry %s (%s): %w", n, e.source, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err := io.Copy(tw, bytes.NewReader(data))
	return err
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
