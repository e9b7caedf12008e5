package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// serverErr is an error reply as go-redis surfaces it (anything with RedisError()).
type serverErr string

func (e serverErr) Error() string { return string(e) }
func (serverErr) RedisError()     {}

var _ redis.Error = serverErr("")

func TestClassify(t *testing.T) {
	opErr := func(op string, err error) error {
		return &net.OpError{Op: op, Net: "tcp", Err: err}
	}
	wrap := func(err error) error { return fmt.Errorf("ratelimit: CHARON.RATE k: %w", err) }
	cases := []struct {
		name string
		err  error
		want errClass
	}{
		{"read timeout (written, no answer)", opErr("read", os.ErrDeadlineExceeded), classUnknown},
		{"read reset", opErr("read", syscall.ECONNRESET), classUnknown},
		{"EOF after write", io.EOF, classUnknown},
		{"unexpected EOF", io.ErrUnexpectedEOF, classUnknown},
		{"parse error", errors.New("redis: can't parse reply"), classUnknown},
		{"outcome unknown wrapping a server-looking error", fmt.Errorf("%w: %w", ErrOutcomeUnknown, serverErr("ERR x")), classUnknown},
		{"dial refused", opErr("dial", syscall.ECONNREFUSED), classUnreachable},
		{"dial timeout", opErr("dial", os.ErrDeadlineExceeded), classUnreachable},
		{"dns", &net.DNSError{Err: "no such host", Name: "redis"}, classUnreachable},
		{"write broken pipe (EXEC incomplete)", opErr("write", syscall.EPIPE), classUnreachable},
		{"pool timeout", redis.ErrPoolTimeout, classUnreachable},
		{"pool exhausted", wrap(redis.ErrPoolExhausted), classUnreachable},
		{"dial canceled by caller", opErr("dial", context.Canceled), classGaveUp},
		{"client closed", redis.ErrClosed, classGaveUp},
		{"context canceled before send", wrap(context.Canceled), classGaveUp},
		{"context deadline before send", context.DeadlineExceeded, classGaveUp},
		{"argument error", serverErr("ERR MAX: must be an integer between 1 and 1000000000000"), classServer},
		{"wrongtype", wrap(serverErr("WRONGTYPE Operation against a key holding the wrong kind of value")), classServer},
		{"unknown command", serverErr("ERR unknown command 'CHARON.RATE'"), classServer},
		{"execabort as the command's own error (cluster gave up on ASK)", serverErr("EXECABORT Transaction discarded because of previous errors."), classTransient},
		{"moved that go-redis gave up on", serverErr("MOVED 3999 127.0.0.1:6381"), classTransient},
		{"ask inside MULTI", serverErr("ASK 3999 127.0.0.1:6381"), classTransient},
		{"ask as EXEC's own reply (Valkey 9), wrapped", wrap(serverErr("ASK 7346 127.0.0.1:40357")), classTransient},
		{"not a prefix match", serverErr("ERR ASKING is not allowed here"), classServer},
		{"tryagain", wrap(serverErr("TRYAGAIN Multiple keys request during rehashing of slot")), classTransient},
		{"clusterdown", serverErr("CLUSTERDOWN The cluster is down"), classTransient},
		{"loading", serverErr("LOADING Redis is loading the dataset in memory"), classTransient},
		{"masterdown", serverErr("MASTERDOWN Link with MASTER is down"), classTransient},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, classify(c.err), "%v", c.err)
		})
	}
}
