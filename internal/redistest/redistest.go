// Package redistest gives tests a real Redis server: the one named by
// KVSERVE_TEST_REDIS (a redis:// URL), or a redis-server from PATH started
// on a free port in a temporary directory, without persistence, and
// stopped when the test ends. A test skips only when neither exists.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a Redis server for one test.
type Server struct {
	// URL reaches the server, e.g. redis://127.0.0.1:40123/0.
	URL string
	// Addr is host:port.
	Addr string
	cmd  *exec.Cmd
}

// Start returns a server for t: KVSERVE_TEST_REDIS if set, else a new
// redis-server process. It skips t when there is neither.
func Start(t testing.TB) *Server {
	t.Helper()
	if u := os.Getenv("KVSERVE_TEST_REDIS"); u != "" {
		addr := strings.TrimPrefix(strings.TrimPrefix(u, "redis://"), "rediss://")
		if i := strings.IndexAny(addr, "/?"); i >= 0 {
			addr = addr[:i]
		}
		if i := strings.LastIndexByte(addr, '@'); i >= 0 {
			addr = addr[i+1:]
		}
		return &Server{URL: u, Addr: addr}
	}
	return StartOwn(t)
}

// StartOwn starts a redis-server process for t even when
// KVSERVE_TEST_REDIS is set, for tests that stop or pause the server. It
// skips t when redis-server is not on PATH.
func StartOwn(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not on PATH and KVSERVE_TEST_REDIS not set (apt-get install redis-server)")
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	s := &Server{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
	t.Cleanup(s.Stop)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				signalled = true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("redis-server did not become ready within 10s")
	}
	return s
}

// Own reports whether the test started the server (so it may stop or
// pause it).
func (s *Server) Own() bool { return s.cmd != nil }

// Stop kills a server the test started; it does nothing otherwise, or the
// second time.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd.Process = nil
}

// Pause stops the server's process (SIGSTOP): connections stay open and
// every command hangs, as on an overloaded server. Resume undoes it.
func (s *Server) Pause() error { return s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() error { return s.cmd.Process.Signal(syscall.SIGCONT) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
