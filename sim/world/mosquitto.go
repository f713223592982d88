package world

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/internal/syncbuf"
)

// Mosquitto is a real Mosquitto broker run for the simulator (fleet mode, tests):
// TLS on a loopback port with the simulated PPaaS's server certificate, so
// devices trusting the development CA connect to it; anonymous access (the
// embedded broker is the one that checks device JWTs).
type Mosquitto struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
	out  *syncbuf.Buffer
}

// StartMosquitto starts `mosquitto` on a free loopback port with a
// configuration written to dir, using the certificates in certsDir (see
// package certs), and returns once it listens.
func StartMosquitto(ctx context.Context, dir, certsDir string) (*Mosquitto, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start mosquitto: pick a port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return nil, fmt.Errorf("start mosquitto: %w", err)
	}
	return StartMosquittoOn(ctx, dir, certsDir, port)
}

// StartMosquittoOn is StartMosquitto on a given port (a broker restarted
// where its clients expect it).
func StartMosquittoOn(ctx context.Context, dir, certsDir string, port int) (*Mosquitto, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			return nil, fmt.Errorf("start mosquitto: %w (apt-get install mosquitto)", err)
		}
		bin = "/usr/sbin/mosquitto"
	}
	conf := fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nallow_anonymous true\npersistence false\nlog_type error\nmax_queued_messages 10000\n",
		port, filepath.Join(certsDir, certs.CAFile), filepath.Join(certsDir, certs.ServerCertFile), filepath.Join(certsDir, certs.ServerKeyFile))
	if os.Geteuid() == 0 {
		conf += "user root\n" // keep access to the 0600 server key
	}
	path := filepath.Join(dir, fmt.Sprintf("mosquitto-%d.conf", port))
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("start mosquitto: %w", err)
	}
	m := &Mosquitto{port: port, cmd: exec.Command(bin, "-c", path), done: make(chan struct{}), out: &syncbuf.Buffer{Max: 64 << 10}}
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mosquitto: %w", err)
	}
	go func() { // owned: Close kills the process and waits for this
		_ = m.cmd.Wait()
		close(m.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", m.Addr())
		if err == nil {
			c.Close()
			return m, nil
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("start mosquitto: exited: %s", m.out.String())
		case <-ctx.Done():
			m.Close()
			return nil, fmt.Errorf("start mosquitto: not listening on %s: %w; output: %s", m.Addr(), ctx.Err(), m.out.String())
		case <-tick.C:
		}
	}
}

// Addr is the broker's host:port.
func (m *Mosquitto) Addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }

// Port is the broker's loopback port.
func (m *Mosquitto) Port() int { return m.port }

// URL is the broker's URL for devices and the simulator, ssl://127.0.0.1:port.
func (m *Mosquitto) URL() string { return "ssl://" + m.Addr() }

// Close stops the broker and waits for it to exit.
func (m *Mosquitto) Close() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Kill()
	}
	<-m.done
}
