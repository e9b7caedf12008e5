package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
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

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Deadlines for process management. Generous because the machine is shared; they
// bound waits, they are never asserted.
const (
	startDeadline    = 30 * time.Second
	shutdownDeadline = 30 * time.Second
	logTailLines     = 60
)

// Options configure one redis-server.
type Options struct {
	// NoModule starts the server without loading charon.so.
	NoModule bool
	// ModuleArgs follow the module path on the loadmodule line.
	ModuleArgs []string
	// AppendOnly turns on the AOF (appendonly yes).
	AppendOnly bool
	// Config holds extra config lines ("name value ..."), written after the
	// harness defaults so they override them. A "save ..." line replaces the
	// default `save ""`.
	Config []string

	// DefaultAtAhead leaves the module config charon.max-at-ahead at its default (AT
	// at most 1 hour ahead of the server clock). Otherwise the harness sets it to 0
	// (no bound), as the documentation's replayed sessions need: tests drive time with
	// AT, often in the year 2100. A Config line for it wins either way.
	DefaultAtAhead bool

	// Pre70 leaves out the directives a server older than 7.0 rejects
	// (enable-debug-command, enable-module-command); used to show the module's
	// refusal on an old server.
	Pre70 bool

	cluster bool // cluster-enabled yes, ports with a free bus port
}

// ShutdownMode says whether Restart saves an RDB before stopping.
type ShutdownMode int

// Shutdown modes for Restart.
const (
	NoSave ShutdownMode = iota // SHUTDOWN NOSAVE: reload from whatever is on disk (AOF)
	Save                       // SHUTDOWN SAVE: write an RDB, then reload it
)

// Server is one redis-server process owned by a test.
type Server struct {
	port int
	dir  string
	opts Options

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	exitErr error         // the process's exit status, valid after done

	ctl *redis.Client // RESP2 control connection used by the harness itself
}

var errPortBusy = errors.New("port already in use")

// atAheadConfig bounds how far ahead of the server clock a client's AT may be.
const atAheadConfig = "charon.max-at-ahead"

// Start runs a redis-server and waits until it answers PING. The server is shut
// down when the test ends; if the test failed, the tail of its log is printed and
// its directory (under build/test-runs) is kept.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := newServer(t, opts)
	// Another process may take a probed port before the server binds it: retry.
	for attempt := 1; ; attempt++ {
		err := s.launchOnFreePort(t)
		if err == nil {
			break
		}
		if errors.Is(err, errPortBusy) && attempt < 5 {
			t.Logf("harness: port %d taken, retrying: %v", s.port, err)
			continue
		}
		t.Fatalf("harness: start redis-server: %v", err) // cleanup prints the log tail
	}
	s.ctl = redis.NewClient(s.clientOptions(2))
	return s
}

// StartFailure runs a redis-server that is expected to exit during startup (for
// example because the module refuses its arguments) and returns its log. It fails
// the test if the server comes up instead.
func StartFailure(t testing.TB, opts Options) string {
	t.Helper()
	s := newServer(t, opts)
	err := s.launchOnFreePort(t)
	if err == nil {
		t.Fatalf("harness: redis-server started on %s, want a startup failure", s.Addr())
	}
	if errors.Is(err, errPortBusy) {
		t.Fatalf("harness: redis-server lost its port, cannot judge the startup failure: %v", err)
	}
	return s.Log(t)
}

// newServer makes a Server with its own directory, cleaned up when the test ends.
func newServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{dir: runDir(t), opts: opts}
	t.Cleanup(func() { s.cleanup(t) })
	return s
}

// launchOnFreePort picks a free port, writes the config for it and launches.
func (s *Server) launchOnFreePort(t testing.TB) error {
	t.Helper()
	port, err := freePort(s.opts.cluster)
	if err != nil {
		t.Fatalf("%v", err)
	}
	s.port = port
	s.writeConfig(t)
	return s.launch(t)
}

// writeConfig writes redis.conf into the server's directory. Restart reuses it.
func (s *Server) writeConfig(t testing.TB) {
	t.Helper()
	lines := []string{
		"port " + strconv.Itoa(s.port),
		"bind 127.0.0.1",
		"daemonize no",
		"dir " + quote(s.dir),
		"logfile " + quote(filepath.Join(s.dir, "redis.log")),
		"appendonly " + yesNo(s.opts.AppendOnly),
		// The 7.0 default waits 5s before a diskless full sync starts.
		"repl-diskless-sync-delay 0",
	}
	if !s.opts.Pre70 {
		lines = append(lines, "enable-debug-command yes", "enable-module-command yes")
	}
	if !hasDirective(s.opts.Config, "save") {
		lines = append(lines, `save ""`)
	}
	if !s.opts.NoModule {
		l := "loadmodule " + quote(ModulePath(t))
		for _, a := range s.opts.ModuleArgs {
			l += " " + quote(a)
		}
		lines = append(lines, l)
		if !s.opts.DefaultAtAhead && !s.opts.Pre70 && !hasDirective(s.opts.Config, atAheadConfig) {
			lines = append(lines, atAheadConfig+" 0")
		}
	}
	if s.opts.cluster {
		lines = append(lines,
			"cluster-enabled yes",
			"cluster-config-file nodes.conf",
			"cluster-node-timeout 5000",
		)
	}
	lines = append(lines, s.opts.Config...)
	conf := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(s.confPath(), []byte(conf), 0o644); err != nil {
		t.Fatalf("harness: write config: %v", err)
	}
}

func (s *Server) confPath() string { return filepath.Join(s.dir, "redis.conf") }

// launch starts the process and waits until it answers PING, it exits, or the
// start deadline passes.
func (s *Server) launch(t testing.TB) error {
	t.Helper()
	out, err := os.OpenFile(filepath.Join(s.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open stdout.log: %w", err)
	}
	defer out.Close() // the child has its own copy of the descriptor
	// Only this run's part of redis.log tells why this run failed (Restart appends).
	logPath := filepath.Join(s.dir, "redis.log")
	var logStart int64
	if fi, err := os.Stat(logPath); err == nil {
		logStart = fi.Size()
	}
	cmd := exec.Command(RedisServerPath(t), s.confPath())
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec redis-server: %w", err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done, s.exitErr = cmd, done, nil
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.exitErr = err
		s.mu.Unlock()
		close(done)
	}()

	err = poll(startDeadline, func() (bool, string) {
		select {
		case <-done:
			return true, ""
		default:
		}
		// While loading, PING answers -LOADING; only +PONG means ready.
		reply, err := rawCommand(s.Addr(), time.Second, "PING")
		if err == nil && reply == "+PONG" {
			return true, ""
		}
		return false, fmt.Sprintf("PING: %q %v", reply, err)
	})
	select {
	case <-done:
		log, _ := os.ReadFile(logPath)
		if int64(len(log)) >= logStart {
			log = log[logStart:]
		}
		if bytes.Contains(log, []byte("Address already in use")) || bytes.Contains(log, []byte("Failed listening on port")) {
			return fmt.Errorf("%w: %d: %v", errPortBusy, s.port, s.exitError())
		}
		return fmt.Errorf("redis-server on port %d exited during startup: %v", s.port, s.exitError())
	default:
	}
	if err != nil {
		s.kill()
		return fmt.Errorf("redis-server on port %d not ready: %w", s.port, err)
	}
	return nil
}

func (s *Server) exitError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exitErr
}

// running reports whether the current process is alive.
func (s *Server) running() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// stop shuts the server down with the given SHUTDOWN arguments and waits for the
// process; after the deadline it is killed.
func (s *Server) stop(args ...string) error {
	if !s.running() {
		return nil
	}
	reply, err := rawCommand(s.Addr(), shutdownDeadline, append([]string{"SHUTDOWN"}, args...)...)
	// A successful SHUTDOWN closes the connection without a reply; an error reply
	// means the server stays up, so there is nothing to wait for.
	if err == nil && strings.HasPrefix(reply, "-") {
		s.kill()
		return fmt.Errorf("SHUTDOWN %s on %s: %s (killed it)", strings.Join(args, " "), s.Addr(), reply)
	}
	if s.waitExit(shutdownDeadline) {
		return nil
	}
	s.kill()
	return fmt.Errorf("redis-server on port %d ignored SHUTDOWN for %v and was killed", s.port, shutdownDeadline)
}

func (s *Server) waitExit(d time.Duration) bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (s *Server) kill() {
	if !s.running() {
		return
	}
	s.mu.Lock()
	p := s.cmd.Process
	s.mu.Unlock()
	_ = p.Signal(syscall.SIGKILL)
	s.waitExit(time.Minute)
}

func (s *Server) cleanup(t testing.TB) {
	if s.ctl != nil {
		_ = s.ctl.Close()
	}
	// FORCE: a replica still writing its initial AOF refuses a plain SHUTDOWN
	// ("Writing initial AOF, can't exit", seen on Valkey 8.1); at teardown that is
	// no reason to fail the test.
	args := []string{"NOSAVE", "NOW", "FORCE"}
	if s.opts.Pre70 {
		args = args[:1] // NOW and FORCE are 7.0's
	}
	if err := s.stop(args...); err != nil {
		t.Errorf("harness: %v", err)
	}
	s.mu.Lock()
	launched := s.done != nil
	s.mu.Unlock()
	if t.Failed() && launched {
		t.Logf("harness: server %s kept its directory %s\n%s", s.Addr(), s.dir, s.tails())
		return
	}
	_ = os.RemoveAll(s.dir)
}

// Restart stops the server gracefully (SHUTDOWN SAVE or SHUTDOWN NOSAVE) and starts
// it again with the same directory, port and config, so it reloads its RDB or AOF.
// It returns once the server answers PING, i.e. after loading finished.
func (s *Server) Restart(t testing.TB, mode ShutdownMode) {
	t.Helper()
	arg := "NOSAVE"
	if mode == Save {
		arg = "SAVE"
	}
	if err := s.stop(arg); err != nil {
		t.Fatalf("harness: restart: %v", err)
	}
	s.Start(t)
}

// Kill sends SIGKILL (no save, no AOF flush) and waits for the process to exit.
// Start brings it back.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.kill()
}

// Start starts a stopped (killed) server again with its directory, port and config.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if s.running() {
		t.Fatalf("harness: server %s is already running", s.Addr())
	}
	if err := s.launch(t); err != nil {
		t.Fatalf("harness: start %s again: %v", s.Addr(), err)
	}
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// Dir is the server's working directory (RDB, AOF, logs, nodes.conf).
func (s *Server) Dir() string { return s.dir }

// PID is the process id of the running server, or 0 when it is stopped.
func (s *Server) PID() int {
	if !s.running() {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Client returns a go-redis client for the server, closed when the test ends.
// The default protocol is RESP3 (go-redis's default); pass Protocol(2) for RESP2.
func (s *Server) Client(t testing.TB, opts ...func(*redis.Options)) *redis.Client {
	t.Helper()
	o := s.clientOptions(3)
	for _, f := range opts {
		f(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Protocol is a Client option selecting RESP2 or RESP3.
func Protocol(n int) func(*redis.Options) {
	return func(o *redis.Options) { o.Protocol = n }
}

func (s *Server) clientOptions(protocol int) *redis.Options {
	return &redis.Options{
		Addr:     s.Addr(),
		Protocol: protocol,
		// Redis 7.0 has neither CLIENT SETINFO nor CLIENT MAINT_NOTIFICATIONS; the
		// failed attempts would only add noise to errorstats and stderr.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		ReadTimeout:              10 * time.Second,
		WriteTimeout:             10 * time.Second,
	}
}

// Info returns the fields of INFO <section> as a map.
func (s *Server) Info(t testing.TB, section string) map[string]string {
	t.Helper()
	m, err := s.info(section)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return m
}

func (s *Server) info(section string) (map[string]string, error) {
	txt, err := s.ctl.Info(context.Background(), section).Result()
	if err != nil {
		return nil, fmt.Errorf("INFO %s on %s: %w", section, s.Addr(), err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(txt, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			m[k] = v
		}
	}
	return m, nil
}

// Log returns the whole server log (redis.log plus anything written to stdout/stderr).
func (s *Server) Log(t testing.TB) string {
	t.Helper()
	return s.logText()
}

// LogContains reports whether the server log contains sub.
func (s *Server) LogContains(sub string) bool { return strings.Contains(s.logText(), sub) }

// LogTail returns the last n lines of the server log.
func (s *Server) LogTail(n int) string { return tail(s.logText(), n) }

func (s *Server) logText() string {
	var b strings.Builder
	for _, name := range []string{"stdout.log", "redis.log"} {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if err == nil {
			b.Write(data)
		}
	}
	return b.String()
}

// tails formats the last lines of both log files for a failure message.
func (s *Server) tails() string {
	var b strings.Builder
	for _, name := range []string{"stdout.log", "redis.log"} {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil || len(data) == 0 {
			continue
		}
		fmt.Fprintf(&b, "--- %s %s (last %d lines) ---\n%s\n", s.Addr(), name, logTailLines, tail(string(data), logTailLines))
	}
	return b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// rawCommand sends one command over a fresh connection and returns the first line
// of the reply ("+PONG", "-ERR ..."). The harness uses it where a pooled client
// would get in the way: readiness polls (go-redis backs off after repeated dial
// errors) and SHUTDOWN (the reply is a closed connection).
func rawCommand(addr string, timeout time.Duration, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// quote renders a config argument for redis.conf (sdssplitargs syntax).
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\r\n\"'\\") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// hasDirective reports whether lines set the config directive name.
func hasDirective(lines []string, name string) bool {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && strings.EqualFold(f[0], name) {
			return true
		}
	}
	return false
}
