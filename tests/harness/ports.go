package harness

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// The cluster bus listens on port+10000, so cluster ports must stay below this.
const maxClusterPort = 65535 - 10000

// handedOut remembers ports given to servers of this test process, so parallel
// tests cannot be handed the same port between "close the probe" and "server binds".
// Other processes can still race us; Start retries on "Address already in use".
var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{}
)

// freePort returns a loopback port nobody listens on right now. With cluster set,
// port+10000 (the cluster bus) is free as well.
func freePort(cluster bool) (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		port, err := probe(0)
		if err != nil {
			return 0, err
		}
		if handedOut[port] {
			continue
		}
		if cluster {
			if port > maxClusterPort || handedOut[port+10000] {
				continue
			}
			if _, err := probe(port + 10000); err != nil {
				continue
			}
		}
		handedOut[port] = true
		if cluster {
			handedOut[port+10000] = true
		}
		return port, nil
	}
	return 0, fmt.Errorf("harness: no free loopback port found")
}

// probe binds 127.0.0.1:port (0 = kernel's choice), closes it and returns the port.
func probe(port int) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return 0, fmt.Errorf("harness: probe port %d: %w", port, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
