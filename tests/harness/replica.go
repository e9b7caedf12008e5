package harness

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"
)

const syncDeadline = 60 * time.Second

// StartPrimaryReplica starts a primary and a replica of it (replicaof in the
// replica's config, same Options otherwise) and waits until the replica is synced.
func StartPrimaryReplica(t testing.TB, opts Options) (primary, replica *Server) {
	t.Helper()
	primary = Start(t, opts)
	ropts := opts
	ropts.Config = append(append([]string(nil), opts.Config...), fmt.Sprintf("replicaof 127.0.0.1 %d", primary.Port()))
	replica = Start(t, ropts)
	WaitReplicaSync(t, primary, replica)
	return primary, replica
}

// WaitReplicaSync polls until the replica's link to primary is up and its
// replication offset equals the primary's. Call it after the writes stop.
func WaitReplicaSync(t testing.TB, primary, replica *Server) {
	t.Helper()
	Eventually(t, syncDeadline, func() (bool, string) { return replicaSynced(primary, replica) })
}

func replicaSynced(primary, replica *Server) (bool, string) {
	ri, err := replica.info("replication")
	if err != nil {
		return false, err.Error()
	}
	if ri["role"] != "slave" || net.JoinHostPort(ri["master_host"], ri["master_port"]) != primary.Addr() {
		return false, fmt.Sprintf("%s is %s of %s:%s, want replica of %s", replica.Addr(), ri["role"], ri["master_host"], ri["master_port"], primary.Addr())
	}
	if ri["master_link_status"] != "up" || ri["master_sync_in_progress"] != "0" {
		return false, fmt.Sprintf("%s: master_link_status=%s master_sync_in_progress=%s", replica.Addr(), ri["master_link_status"], ri["master_sync_in_progress"])
	}
	pi, err := primary.info("replication")
	if err != nil {
		return false, err.Error()
	}
	po, _ := strconv.ParseInt(pi["master_repl_offset"], 10, 64)
	ro, _ := strconv.ParseInt(ri["master_repl_offset"], 10, 64)
	if po != ro {
		return false, fmt.Sprintf("offsets differ: primary %s=%d replica %s=%d", primary.Addr(), po, replica.Addr(), ro)
	}
	return true, ""
}
