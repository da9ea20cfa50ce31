// Harness: run the real `sluice` binary on loopback for one test.
//
// Goal: every test talks to a real broker process over TCP on 127.0.0.1, as an application
// would, with its own temporary data directory, and can stop it gracefully (SIGTERM), crash it
// (SIGKILL) and start it again on the same data directory and port.
//
// Method: pick free loopback ports, spawn `sluice --listen 127.0.0.1:PORT --data-dir DIR
// --metrics-listen 127.0.0.1:PORT2` with stdout and stderr appended to a log file, then poll
// until the port accepts a connection and answers ApiVersions v0. Start-up and shutdown are
// bounded. When a test fails, the tail of the broker log (panics first) is printed; a broker
// that exits on its own, without the test stopping or killing it, fails the test.
//
// Environment: SLUICE_BIN overrides the binary (default <repo>/target/release/sluice);
// SLUICE_START_TIMEOUT_S (default 30) bounds start-up; SLUICE_LOG (default "info") is passed to
// the broker as RUST_LOG; SLUICE_GO_CLIENT_LOG=debug|info|warn|error logs franz-go to stderr.

package sluicetest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	loopbackHost   = "127.0.0.1"
	stopTimeout    = 15 * time.Second
	logTailLines   = 60
	readyPollEvery = 50 * time.Millisecond
)

// repoRoot is the repository root: the test package lives in <repo>/tests/go.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatalf("resolving the repository root: %v", err)
	}
	return root
}

// sluiceBinary is SLUICE_BIN, or the release build in the repository.
func sluiceBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("SLUICE_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			t.Fatalf("SLUICE_BIN=%q: %v", bin, err)
		}
		return abs
	}
	return filepath.Join(repoRoot(t), "target", "release", "sluice")
}

func startTimeout(t testing.TB) time.Duration {
	t.Helper()
	s := os.Getenv("SLUICE_START_TIMEOUT_S")
	if s == "" {
		return 30 * time.Second
	}
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil || secs <= 0 {
		t.Fatalf("SLUICE_START_TIMEOUT_S=%q is not a positive number of seconds", s)
	}
	return time.Duration(secs * float64(time.Second))
}

// freePorts returns distinct free TCP ports on the loopback address, held open together so
// that they differ.
func freePorts(t testing.TB, count int) []int {
	t.Helper()
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	ports := make([]int, 0, count)
	for range count {
		l, err := net.Listen("tcp", net.JoinHostPort(loopbackHost, "0"))
		if err != nil {
			t.Fatalf("finding a free loopback port: %v", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// Broker is one `sluice` process and its data directory; it restarts on the same data
// directory and port.
type Broker struct {
	t           testing.TB
	bin         string
	dataDir     string
	logPath     string
	port        int
	metricsPort int
	extraPorts  []int    // {PORT2}, {PORT3} in extraArgs
	extraArgs   []string // flags after the defaults, with {PORT}, {PORT2}, {PORT3} filled in

	mu           sync.Mutex
	cmd          *exec.Cmd
	exited       chan struct{} // closed when the running process has been reaped
	exitErr      error
	starts       int
	stoppedByUs  bool // the current process was stopped or killed by the test
	diedOnItsOwn bool // some process exited without the test stopping or killing it
}

// StartBroker starts a broker for the test and stops it when the test ends. A failed test
// prints the broker log tail; a broker that died on its own fails the test.
func StartBroker(t testing.TB) *Broker {
	t.Helper()
	return StartBrokerWith(t)
}

// StartBrokerWith is StartBroker with extra command-line flags. A flag may name the broker's
// port as {PORT} and two more free ports as {PORT2} and {PORT3}; with --listeners among them,
// --listen is left out, and the first listener must be PLAINTEXT on {PORT} (readiness is probed
// there).
func StartBrokerWith(t testing.TB, extraArgs ...string) *Broker {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 4)
	b := &Broker{
		t:           t,
		bin:         sluiceBinary(t),
		dataDir:     filepath.Join(dir, "data"),
		logPath:     filepath.Join(dir, "broker.log"),
		port:        ports[0],
		metricsPort: ports[1],
		extraPorts:  ports[2:],
	}
	for _, arg := range extraArgs {
		arg = strings.ReplaceAll(arg, "{PORT}", strconv.Itoa(b.port))
		arg = strings.ReplaceAll(arg, "{PORT2}", strconv.Itoa(b.extraPorts[0]))
		arg = strings.ReplaceAll(arg, "{PORT3}", strconv.Itoa(b.extraPorts[1]))
		b.extraArgs = append(b.extraArgs, arg)
	}
	if err := os.MkdirAll(b.dataDir, 0o755); err != nil {
		t.Fatalf("creating the data directory: %v", err)
	}
	t.Cleanup(b.cleanup)
	b.Start()
	return b
}

// Addr is the bootstrap address, host:port.
func (b *Broker) Addr() string { return net.JoinHostPort(loopbackHost, strconv.Itoa(b.port)) }

// Port is the Kafka listener port.
func (b *Broker) Port() int { return b.port }

// ExtraAddr is the address of {PORT2} (n = 2) or {PORT3} (n = 3).
func (b *Broker) ExtraAddr(n int) string {
	return net.JoinHostPort(loopbackHost, strconv.Itoa(b.extraPorts[n-2]))
}

func (b *Broker) command() []string {
	var args []string
	listeners := false
	for _, arg := range b.extraArgs {
		listeners = listeners || arg == "--listeners"
	}
	if !listeners {
		args = append(args, "--listen", b.Addr())
	}
	args = append(args,
		"--data-dir", b.dataDir,
		"--metrics-listen", net.JoinHostPort(loopbackHost, strconv.Itoa(b.metricsPort)),
	)
	return append(args, b.extraArgs...)
}

// Start launches the broker and waits until it answers ApiVersions; it fails the test with
// the log tail if the process exits or is not ready in time.
func (b *Broker) Start() {
	b.t.Helper()
	b.mu.Lock()
	if b.cmd != nil && !b.hasExitedLocked() {
		b.mu.Unlock()
		b.t.Fatalf("Start() while broker pid %d is running", b.cmd.Process.Pid)
	}
	b.mu.Unlock()
	if _, err := os.Stat(b.bin); err != nil {
		b.t.Fatalf("sluice binary %s: %v (build it with `cargo build --release --bin sluice` or set SLUICE_BIN)", b.bin, err)
	}

	logFile, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		b.t.Fatalf("opening the broker log: %v", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	b.starts++
	args := b.command()
	fmt.Fprintf(logFile, "\n===== start #%d: %s %s\n", b.starts, b.bin, strings.Join(args, " "))

	cmd := exec.Command(b.bin, args...)
	cmd.Dir = filepath.Dir(b.dataDir)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), "RUST_LOG="+envOr("SLUICE_LOG", "info"), "RUST_BACKTRACE=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("starting %s: %v", b.bin, err)
	}
	exited := make(chan struct{})
	b.mu.Lock()
	b.cmd, b.exited, b.exitErr, b.stoppedByUs = cmd, exited, nil, false
	b.mu.Unlock()
	go func() {
		err := cmd.Wait()
		b.mu.Lock()
		b.exitErr = err
		if !b.stoppedByUs {
			b.diedOnItsOwn = true
		}
		b.mu.Unlock()
		close(exited)
	}()
	b.waitReady(startTimeout(b.t))
}

func (b *Broker) hasExitedLocked() bool {
	select {
	case <-b.exited:
		return true
	default:
		return false
	}
}

// waitReady polls until the listener answers ApiVersions v0 with a non-empty api list.
func (b *Broker) waitReady(timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	problem := "never accepted a connection"
	for time.Now().Before(deadline) {
		select {
		case <-b.exited:
			b.t.Fatalf("sluice exited (%v) before it was ready on %s\n%s", b.exitErr, b.Addr(), b.LogTail())
		default:
		}
		if err := probeApiVersions(b.Addr()); err == nil {
			return
		} else {
			problem = err.Error()
		}
		time.Sleep(readyPollEvery)
	}
	b.Kill()
	b.t.Fatalf("sluice was not ready on %s within %s (%s); killed it\n%s", b.Addr(), timeout, problem, b.LogTail())
}

// probeApiVersions sends ApiVersions v0 over a fresh connection and checks the answer.
func probeApiVersions(addr string) error {
	conn, err := DialRaw(addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 0
	resp, err := conn.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("ApiVersions v0: %w", err)
	}
	av := resp.(*kmsg.ApiVersionsResponse)
	if av.ErrorCode != 0 {
		return fmt.Errorf("ApiVersions v0 answered error code %d", av.ErrorCode)
	}
	if len(av.ApiKeys) == 0 {
		return errors.New("ApiVersions v0 answered an empty api list")
	}
	return nil
}

// Stop sends SIGTERM and waits for the exit; it kills and fails the test if the broker does
// not exit within the stop timeout. Stopping a stopped broker does nothing.
func (b *Broker) Stop() {
	b.t.Helper()
	b.mu.Lock()
	if b.cmd == nil || b.hasExitedLocked() {
		b.mu.Unlock()
		return
	}
	b.stoppedByUs = true
	cmd, exited := b.cmd, b.exited
	b.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		b.t.Fatalf("sluice ignored SIGTERM for %s; killed it\n%s", stopTimeout, b.LogTail())
	}
	if err := b.exitError(); err != nil {
		b.t.Errorf("sluice exited with %v after SIGTERM\n%s", err, b.LogTail())
	}
}

// Kill sends SIGKILL (a crash with no chance to flush) and waits until the process is gone.
// The broker stays down until Start.
func (b *Broker) Kill() {
	b.t.Helper()
	b.mu.Lock()
	if b.cmd == nil || b.hasExitedLocked() {
		b.mu.Unlock()
		b.t.Fatalf("Kill() but the broker is not running\n%s", b.LogTail())
	}
	b.stoppedByUs = true
	cmd, exited := b.cmd, b.exited
	b.mu.Unlock()
	_ = cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		b.t.Fatalf("sluice pid %d survived SIGKILL for %s", cmd.Process.Pid, stopTimeout)
	}
}

// Restart stops the broker gracefully and starts it again on the same data directory and port.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.Start()
}

// Running reports whether the broker process is alive.
func (b *Broker) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cmd != nil && !b.hasExitedLocked()
}

func (b *Broker) exitError() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.exitErr
}

func (b *Broker) cleanup() {
	b.mu.Lock()
	died := b.diedOnItsOwn
	b.mu.Unlock()
	if died {
		b.t.Errorf("sluice exited on its own (%v) during the test\n%s", b.exitError(), b.LogTail())
	}
	b.Stop()
	if b.t.Failed() && !died {
		b.t.Logf("broker %s, log %s\n%s", b.Addr(), b.logPath, b.LogTail())
	}
}

// LogTail returns panic lines first (a backtrace can push them out of the tail), then the last
// lines of the broker log, without backtrace frame locations.
func (b *Broker) LogTail() string {
	f, err := os.Open(b.logPath)
	if err != nil {
		return "(no broker log: " + err.Error() + ")"
	}
	defer f.Close()
	var all, panics []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "at /") || strings.HasPrefix(trimmed, "at ./") {
			continue
		}
		if strings.Contains(line, "panicked at") && len(panics) < 20 {
			panics = append(panics, line)
		}
		all = append(all, line)
	}
	if len(all) > logTailLines {
		all = all[len(all)-logTailLines:]
	}
	var out strings.Builder
	if len(panics) > 0 {
		out.WriteString("----- broker panics -----\n" + strings.Join(panics, "\n") + "\n")
	}
	out.WriteString("----- broker log tail -----\n" + strings.Join(all, "\n"))
	return out.String()
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

// RawConn is one Kafka protocol connection that sends requests at exactly the version they
// carry, one at a time, for request-level checks that a client would otherwise negotiate away.
type RawConn struct {
	conn        net.Conn
	formatter   *kmsg.RequestFormatter
	correlation int32
	timeout     time.Duration
}

// DialRaw opens a raw protocol connection; every round trip is bounded by timeout.
func DialRaw(addr string, timeout time.Duration) (*RawConn, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return &RawConn{
		conn:      conn,
		formatter: kmsg.NewRequestFormatter(kmsg.FormatterClientID("sluice-go-tests")),
		timeout:   timeout,
	}, nil
}

// Close closes the connection.
func (c *RawConn) Close() error { return c.conn.Close() }

// RoundTrip writes req at req.GetVersion() and decodes the response at the same version.
func (c *RawConn) RoundTrip(req kmsg.Request) (kmsg.Response, error) {
	return c.RoundTripAs(req, req.GetVersion())
}

// RoundTripAs writes req at req.GetVersion() and decodes the response at respVersion: an
// ApiVersions request at a version the broker does not serve is answered at v0.
func (c *RawConn) RoundTripAs(req kmsg.Request, respVersion int16) (kmsg.Response, error) {
	c.correlation++
	frame := c.formatter.AppendRequest(nil, req, c.correlation)
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(frame); err != nil {
		return nil, fmt.Errorf("writing the request: %w", err)
	}
	body, err := c.readFrame()
	if err != nil {
		return nil, err
	}
	if len(body) < 4 {
		return nil, fmt.Errorf("response of %d bytes has no correlation id", len(body))
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != c.correlation {
		return nil, fmt.Errorf("correlation id %d, want %d", got, c.correlation)
	}
	body = body[4:]
	resp := req.ResponseKind()
	resp.SetVersion(respVersion)
	// Flexible responses carry a tagged-field section in the header, except ApiVersions,
	// whose response header stays v0 so that any client can read it.
	if resp.IsFlexible() && req.Key() != int16(kmsg.ApiVersions) {
		n, size := binary.Uvarint(body)
		if size <= 0 || n != 0 {
			return nil, fmt.Errorf("unexpected response header tagged fields (count %d)", n)
		}
		body = body[size:]
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decoding %T v%d: %w", resp, respVersion, err)
	}
	return resp, nil
}

func (c *RawConn) readFrame() ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(c.conn, size[:]); err != nil {
		return nil, fmt.Errorf("reading the response size: %w", err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 64<<20 {
		return nil, fmt.Errorf("response size %d is implausible", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.conn, body); err != nil {
		return nil, fmt.Errorf("reading a %d-byte response: %w", n, err)
	}
	return body, nil
}

// testContext returns a context cancelled after d or when the test ends.
func testContext(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
