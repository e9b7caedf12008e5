package outcome

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

// ClassifyCtx against a caller's context: a deadline of the client's own (a dial or
// attempt timeout) is unreachability, the caller's end is giving up; a handshake's
// bare network error proves nothing was sent; a plain command's failed write may have
// sent it whole.
func TestClassifyCtx(t *testing.T) {
	alive := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	op := func(o string, err error) error { return &net.OpError{Op: o, Net: "tcp", Err: err} }
	cases := []struct {
		name string
		ctx  context.Context
		err  error
		tx   bool
		want Class
	}{
		{"dial timeout, caller alive", alive, op("dial", os.ErrDeadlineExceeded), false, Unreachable},
		{"dial cut by our deadline", alive, op("dial", context.DeadlineExceeded), false, Unreachable},
		{"dial, caller gone", done, op("dial", context.Canceled), false, GaveUp},
		{"handshake timeout (bare)", alive, os.ErrDeadlineExceeded, false, Unreachable},
		{"handshake reset (bare)", alive, &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}, false, Unreachable},
		{"our attempt deadline before sending", alive, context.DeadlineExceeded, false, Unreachable},
		{"caller's deadline before sending", done, context.DeadlineExceeded, false, GaveUp},
		{"write of a plain command", alive, op("write", syscall.EPIPE), false, Unknown},
		{"write inside MULTI/EXEC", alive, op("write", syscall.EPIPE), true, Unreachable},
		{"read", alive, op("read", os.ErrDeadlineExceeded), false, Unknown},
		{"EOF", alive, io.EOF, false, Unknown},
		{"something else", alive, errors.New("x"), false, Unknown},
	}
	for _, c := range cases {
		if got := ClassifyCtx(c.ctx, c.err, c.tx); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if got := Classify(context.DeadlineExceeded); got != GaveUp {
		t.Errorf("Classify without a context: a bare context error is GaveUp, got %v", got)
	}
}
