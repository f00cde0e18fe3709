package netns

import (
	"fmt"
	"io"
	"os"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
}

func TestCreateDialDelete(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("zn-nstest-%d", os.Getpid())
	path, err := Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Delete(name) })
	if err := Check(path); err != nil {
		t.Fatalf("Check(%s): %v", path, err)
	}
	if same, err := IsCurrent(path); err != nil || same {
		t.Fatalf("IsCurrent(new ns) = %v, %v; want false", same, err)
	}
	if same, err := Same(path, path); err != nil || !same {
		t.Fatalf("Same(p, p) = %v, %v", same, err)
	}
	if _, err := Create(name); err == nil {
		t.Fatal("Create of an existing name succeeded")
	}
	l, err := ListenTCP(path, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = io.WriteString(c, "hi")
			c.Close()
		}
	}()
	c, err := Dial(path, "tcp", l.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatalf("dial inside ns: %v", err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "hi" {
		t.Fatalf("got %q", b)
	}
	// The same port in the host namespace must not be reachable: the
	// listener lives in the test namespace only.
	if c, err := Dial("/proc/self/ns/net", "tcp", l.Addr().String(), 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("listener in the test namespace was reachable from the host namespace")
	}
	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if err := Delete(name); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if err := Check(path); err == nil {
		t.Fatal("Check succeeded on a deleted namespace")
	}
}

func TestCheckRejectsNonNetns(t *testing.T) {
	for _, p := range []string{"/nonexistent/ns", "/etc/hostname", "/proc/self/ns/mnt"} {
		if err := Check(p); err == nil {
			t.Errorf("Check(%s) = nil, want error", p)
		}
	}
}
