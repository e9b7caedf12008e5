//go:build integration

package tests

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// faultProxy is a TCP proxy between clients and a real server that loses answers the
// way networks do. Each time the server writes (the replies to what it read: one
// reply for a lone request, a batch's replies for a pipeline), the proxy
//   - with probability drop, loses that write and everything after it on the
//     connection (the client waits for an answer that never comes, as behind a dead
//     link, and gives up on the connection);
//   - with probability reset, resets the connection (RST both ways) instead.
//
// Each time the client writes, it resets the connection with probability reset too
// (the request may or may not have reached the server). A TCP stream cannot lose one
// reply and go on, so a lost reply always takes its connection with it.
type faultProxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	drop   float64
	reset  float64

	mu  sync.Mutex
	rnd *rand.Rand

	writes, drops, resets atomic.Int64
	wg                    sync.WaitGroup
}

func startFaultProxy(t testing.TB, target string, drop, reset float64, seed uint64) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fault proxy: %v", err)
	}
	p := &faultProxy{t: t, ln: ln, target: target, drop: drop, reset: reset, rnd: rand.New(rand.NewPCG(seed, 1))}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

func (p *faultProxy) roll() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rnd.Float64()
}

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		conn := &proxiedConn{c: c.(*net.TCPConn), s: s.(*net.TCPConn)}
		p.wg.Add(2)
		go p.pump(conn, conn.c, conn.s, false)
		go p.pump(conn, conn.s, conn.c, true)
	}
}

// proxiedConn is one client connection and its server connection.
type proxiedConn struct {
	c, s   *net.TCPConn
	once   sync.Once
	silent atomic.Bool // the server's writes are lost from now on
}

// kill closes both sides; with rst, as a reset.
func (pc *proxiedConn) kill(rst bool) {
	pc.once.Do(func() {
		if rst {
			_ = pc.c.SetLinger(0)
			_ = pc.s.SetLinger(0)
		}
		_ = pc.c.Close()
		_ = pc.s.Close()
	})
}

// pump copies from src to dst; fromServer says which direction.
func (p *faultProxy) pump(pc *proxiedConn, src, dst *net.TCPConn, fromServer bool) {
	defer p.wg.Done()
	defer pc.kill(false)
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromServer {
				p.writes.Add(1)
			}
			switch r := p.roll(); {
			case pc.silent.Load() && fromServer:
				continue // lost, like everything after the first lost write
			case r < p.reset:
				p.resets.Add(1)
				pc.kill(true)
				return
			case fromServer && r < p.reset+p.drop:
				p.drops.Add(1)
				pc.silent.Store(true)
				continue
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				_ = err // a reset or a closed side: the other pump ends too
			}
			return
		}
	}
}

// stats says what the proxy did.
func (p *faultProxy) stats() (writes, drops, resets int64) {
	return p.writes.Load(), p.drops.Load(), p.resets.Load()
}
