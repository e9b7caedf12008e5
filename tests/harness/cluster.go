package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Cluster sizes and deadlines.
const (
	ClusterPrimaries   = 3
	clusterSize        = 2 * ClusterPrimaries // one replica per primary
	clusterDeadline    = 90 * time.Second
	migrateTimeoutMs   = "10000"
	migrateBatch       = 100
	clusterCLIDeadline = 5 * time.Minute
)

// Cluster is a running Redis Cluster of 3 primaries with one replica each.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts 6 cluster-enabled servers with opts, joins them with
// `redis-cli --cluster create --cluster-replicas 1`, and waits until every node
// reports cluster_state:ok, all nodes agree on CLUSTER SLOTS, and replicas are synced.
func StartCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	opts.cluster = true
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for range clusterSize {
		s := Start(t, opts)
		c.nodes = append(c.nodes, s)
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := c.cli(t, args...).CombinedOutput(); err != nil {
		t.Fatalf("harness: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.WaitHealthy(t)
	return c
}

// cli prepares a redis-cli command bounded by a deadline.
func (c *Cluster) cli(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterCLIDeadline)
	t.Cleanup(cancel)
	return exec.CommandContext(ctx, RedisCLIPath(t), args...)
}

// Nodes returns all six servers in creation order (roles change on failover; see
// Primaries and Replicas).
func (c *Cluster) Nodes() []*Server { return slices.Clone(c.nodes) }

// Primaries returns the running nodes whose current role is primary (ROLE).
func (c *Cluster) Primaries(t testing.TB) []*Server {
	t.Helper()
	return c.byRole(t, "master")
}

// Replicas returns the running nodes whose current role is replica (ROLE).
func (c *Cluster) Replicas(t testing.TB) []*Server {
	t.Helper()
	return c.byRole(t, "slave")
}

func (c *Cluster) byRole(t testing.TB, role string) []*Server {
	t.Helper()
	var out []*Server
	for _, s := range c.nodes {
		if !s.running() {
			continue
		}
		r, err := s.role()
		if err != nil {
			t.Fatalf("harness: %v", err)
		}
		if r == role {
			out = append(out, s)
		}
	}
	return out
}

func (s *Server) role() (string, error) {
	v, err := s.ctl.Do(context.Background(), "ROLE").Slice()
	if err != nil || len(v) == 0 {
		return "", fmt.Errorf("ROLE on %s: %v %v", s.Addr(), v, err)
	}
	r, _ := v[0].(string)
	return r, nil
}

// NodeID returns the server's cluster node id (CLUSTER MYID).
func (s *Server) NodeID(t testing.TB) string {
	t.Helper()
	id, err := s.ctl.Do(context.Background(), "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatalf("harness: CLUSTER MYID on %s: %v", s.Addr(), err)
	}
	return id
}

// Node returns the cluster's server listening on addr, or nil.
func (c *Cluster) Node(addr string) *Server {
	for _, s := range c.nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// NodeForSlot returns the primary that owns slot, as the first running node's
// CLUSTER SLOTS tells it.
func (c *Cluster) NodeForSlot(t testing.TB, slot int) *Server {
	t.Helper()
	for _, s := range c.nodes {
		if !s.running() {
			continue
		}
		slots, err := s.ctl.ClusterSlots(context.Background()).Result()
		if err != nil {
			t.Fatalf("harness: CLUSTER SLOTS on %s: %v", s.Addr(), err)
		}
		for _, r := range slots {
			if slot >= r.Start && slot <= r.End && len(r.Nodes) > 0 {
				if n := c.Node(r.Nodes[0].Addr); n != nil {
					return n
				}
				t.Fatalf("harness: slot %d owned by unknown node %s", slot, r.Nodes[0].Addr)
			}
		}
		t.Fatalf("harness: slot %d is not assigned", slot)
	}
	t.Fatalf("harness: no cluster node is running")
	return nil
}

// ClusterClient returns a go-redis cluster client seeded with every node, closed
// when the test ends. Defaults to RESP3; set o.Protocol = 2 for RESP2.
func (c *Cluster) ClusterClient(t testing.TB, opts ...func(*redis.ClusterOptions)) *redis.ClusterClient {
	t.Helper()
	o := &redis.ClusterOptions{
		Protocol:                 3,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		ReadTimeout:              10 * time.Second,
		WriteTimeout:             10 * time.Second,
	}
	for _, s := range c.nodes {
		o.Addrs = append(o.Addrs, s.Addr())
	}
	for _, f := range opts {
		f(o)
	}
	cc := redis.NewClusterClient(o)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// WaitHealthy polls until every running node reports cluster_state:ok, all of
// them return the same CLUSTER SLOTS covering all 16384 slots, and every running
// replica's offset equals its primary's.
func (c *Cluster) WaitHealthy(t testing.TB) {
	t.Helper()
	Eventually(t, clusterDeadline, c.healthy)
}

func (c *Cluster) healthy() (bool, string) {
	var want string
	for _, s := range c.nodes {
		if !s.running() {
			continue
		}
		ci, err := s.ctl.ClusterInfo(context.Background()).Result()
		if err != nil {
			return false, fmt.Sprintf("CLUSTER INFO on %s: %v", s.Addr(), err)
		}
		if !strings.Contains(ci, "cluster_state:ok") {
			return false, s.Addr() + " cluster_state is not ok"
		}
		got, covered, err := s.slotsView()
		if err != nil {
			return false, err.Error()
		}
		if covered != 16384 {
			return false, fmt.Sprintf("%s sees %d of 16384 slots assigned", s.Addr(), covered)
		}
		if want == "" {
			want = got
		} else if got != want {
			return false, fmt.Sprintf("CLUSTER SLOTS differ:\n%s\n%s", want, got)
		}
		r, err := s.role()
		if err != nil {
			return false, err.Error()
		}
		if r != "slave" {
			continue
		}
		ri, err := s.info("replication")
		if err != nil {
			return false, err.Error()
		}
		p := c.Node(net.JoinHostPort(ri["master_host"], ri["master_port"]))
		if p == nil || !p.running() {
			return false, fmt.Sprintf("replica %s follows %s:%s, which is not a running node", s.Addr(), ri["master_host"], ri["master_port"])
		}
		if ok, why := replicaSynced(p, s); !ok {
			return false, why
		}
	}
	if want == "" {
		return false, "no cluster node is running"
	}
	return true, ""
}

// slotsView renders a node's CLUSTER SLOTS canonically (ranges sorted, replica ids
// sorted, since their order is not defined) and counts the covered slots.
func (s *Server) slotsView() (string, int, error) {
	slots, err := s.ctl.ClusterSlots(context.Background()).Result()
	if err != nil {
		return "", 0, fmt.Errorf("CLUSTER SLOTS on %s: %w", s.Addr(), err)
	}
	var lines []string
	covered := 0
	for _, r := range slots {
		covered += r.End - r.Start + 1
		var ids []string
		for _, n := range r.Nodes {
			ids = append(ids, n.ID+"@"+n.Addr)
		}
		if len(ids) > 1 {
			slices.Sort(ids[1:])
		}
		lines = append(lines, fmt.Sprintf("%05d-%05d %s", r.Start, r.End, strings.Join(ids, " ")))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n"), covered, nil
}

// Resharding is a running `redis-cli --cluster reshard`.
type Resharding struct {
	c   *Cluster
	Cmd *exec.Cmd
	out bytes.Buffer
}

// StartReshard starts moving n slots from one primary to another with redis-cli
// and returns without waiting, so a test can run traffic meanwhile. Call Wait.
func (c *Cluster) StartReshard(t testing.TB, from, to *Server, n int) *Resharding {
	t.Helper()
	r := &Resharding{c: c}
	r.Cmd = c.cli(t, "--cluster", "reshard", from.Addr(),
		"--cluster-from", from.NodeID(t), "--cluster-to", to.NodeID(t),
		"--cluster-slots", strconv.Itoa(n), "--cluster-yes")
	r.Cmd.Stdout, r.Cmd.Stderr = &r.out, &r.out
	if err := r.Cmd.Start(); err != nil {
		t.Fatalf("harness: start redis-cli reshard: %v", err)
	}
	return r
}

// Wait waits for the resharding to finish, fails the test if redis-cli failed,
// and then waits until the cluster is healthy again.
func (r *Resharding) Wait(t testing.TB) {
	t.Helper()
	if err := r.Cmd.Wait(); err != nil {
		t.Fatalf("harness: redis-cli reshard: %v\n%s", err, r.out.String())
	}
	r.c.WaitHealthy(t)
}

// Output is redis-cli's combined output; read it only after Wait.
func (r *Resharding) Output() string { return r.out.String() }

// Reshard moves n slots from one primary to another with redis-cli and waits for
// the cluster to be healthy again.
func (c *Cluster) Reshard(t testing.TB, from, to *Server, n int) {
	t.Helper()
	c.StartReshard(t, from, to, n).Wait(t)
}

// SlotMigration is one slot being moved by hand, step by step, so tests can hold
// it half-migrated (MIGRATING on the source, IMPORTING on the target) to provoke
// ASK and TRYAGAIN redirections.
type SlotMigration struct {
	c        *Cluster
	Slot     int
	From, To *Server
	fromID   string
	toID     string
}

// BeginSlotMigration marks slot IMPORTING on to and MIGRATING on from; no key
// moves yet.
func (c *Cluster) BeginSlotMigration(t testing.TB, slot int, from, to *Server) *SlotMigration {
	t.Helper()
	m := &SlotMigration{c: c, Slot: slot, From: from, To: to, fromID: from.NodeID(t), toID: to.NodeID(t)}
	ctx := context.Background()
	s := strconv.Itoa(slot)
	if err := to.ctl.Do(ctx, "CLUSTER", "SETSLOT", s, "IMPORTING", m.fromID).Err(); err != nil {
		t.Fatalf("harness: SETSLOT %d IMPORTING on %s: %v", slot, to.Addr(), err)
	}
	if err := from.ctl.Do(ctx, "CLUSTER", "SETSLOT", s, "MIGRATING", m.toID).Err(); err != nil {
		t.Fatalf("harness: SETSLOT %d MIGRATING on %s: %v", slot, from.Addr(), err)
	}
	return m
}

// MoveKeys migrates the given keys (which must hash to the slot) with MIGRATE.
func (m *SlotMigration) MoveKeys(t testing.TB, keys ...string) {
	t.Helper()
	if len(keys) == 0 {
		return
	}
	args := []any{"MIGRATE", "127.0.0.1", m.To.Port(), "", 0, migrateTimeoutMs, "KEYS"}
	for _, k := range keys {
		args = append(args, k)
	}
	if err := m.From.ctl.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("harness: MIGRATE %d keys of slot %d from %s to %s: %v", len(keys), m.Slot, m.From.Addr(), m.To.Addr(), err)
	}
}

// MoveAll migrates every key still in the slot on the source and returns how many
// keys it moved.
func (m *SlotMigration) MoveAll(t testing.TB) int {
	t.Helper()
	moved := 0
	for {
		keys, err := m.From.ctl.ClusterGetKeysInSlot(context.Background(), m.Slot, migrateBatch).Result()
		if err != nil {
			t.Fatalf("harness: CLUSTER GETKEYSINSLOT %d on %s: %v", m.Slot, m.From.Addr(), err)
		}
		if len(keys) == 0 {
			return moved
		}
		m.MoveKeys(t, keys...)
		moved += len(keys)
	}
}

// Finish moves the remaining keys, assigns the slot to the target on the target,
// the source and every other primary (in that order, as the cluster tutorial
// says), and waits until the cluster is healthy.
func (m *SlotMigration) Finish(t testing.TB) {
	t.Helper()
	m.MoveAll(t)
	order := []*Server{m.To, m.From}
	for _, p := range m.c.Primaries(t) {
		if p != m.To && p != m.From {
			order = append(order, p)
		}
	}
	s := strconv.Itoa(m.Slot)
	for _, n := range order {
		if err := n.ctl.Do(context.Background(), "CLUSTER", "SETSLOT", s, "NODE", m.toID).Err(); err != nil {
			t.Fatalf("harness: SETSLOT %d NODE on %s: %v", m.Slot, n.Addr(), err)
		}
	}
	m.c.WaitHealthy(t)
}

// MigrateSlot moves one slot and all its keys from one primary to another by hand
// (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE).
func (c *Cluster) MigrateSlot(t testing.TB, slot int, from, to *Server) {
	t.Helper()
	c.BeginSlotMigration(t, slot, from, to).Finish(t)
}

// OtherPrimary returns a primary other than p (a target for moving p's slots).
func (c *Cluster) OtherPrimary(t testing.TB, p *Server) *Server {
	t.Helper()
	for _, q := range c.Primaries(t) {
		if q != p {
			return q
		}
	}
	t.Fatalf("harness: no primary other than %s", p.Addr())
	return nil
}

// HasAtomicSlotMigration reports whether the cluster's servers have Valkey 9's
// atomic slot migration (CLUSTER MIGRATESLOTS).
func (c *Cluster) HasAtomicSlotMigration(t testing.TB) bool {
	t.Helper()
	v, err := c.nodes[0].ctl.Do(context.Background(), "COMMAND", "INFO", "cluster|migrateslots").Slice()
	if err != nil {
		t.Fatalf("harness: COMMAND INFO cluster|migrateslots: %v", err)
	}
	return len(v) == 1 && v[0] != nil
}

// MigrateSlotAtomic moves one slot with atomic slot migration: CLUSTER MIGRATESLOTS
// on the source, then polls the source's CLUSTER GETSLOTMIGRATIONS until the export
// job of that slot succeeds, and waits until the cluster is healthy with the target
// owning the slot. A refused command is returned; a failed job fails the test.
func (c *Cluster) MigrateSlotAtomic(t testing.TB, slot int, from, to *Server) error {
	t.Helper()
	ctx := context.Background()
	s := strconv.Itoa(slot)
	if err := from.ctl.Do(ctx, "CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", s, s, "NODE", to.NodeID(t)).Err(); err != nil {
		return err
	}
	Eventually(t, clusterDeadline, func() (bool, string) {
		jobs, err := from.ctl.Do(ctx, "CLUSTER", "GETSLOTMIGRATIONS").Slice()
		if err != nil {
			return false, err.Error()
		}
		for _, j := range jobs {
			m, err := ReplyMap(j)
			if err != nil {
				t.Fatalf("harness: CLUSTER GETSLOTMIGRATIONS entry: %v", err)
			}
			if m["operation"] != "EXPORT" || !slotRangesHold(fmt.Sprint(m["slot_ranges"]), slot) {
				continue
			}
			switch m["state"] {
			case "success":
				return true, ""
			case "failed", "cancelled":
				t.Fatalf("harness: atomic migration of slot %d %s: %v", slot, m["state"], m["message"])
			}
			return false, fmt.Sprintf("slot %d migration state %v", slot, m["state"])
		}
		return false, fmt.Sprintf("no export job for slot %d on %s yet", slot, from.Addr())
	})
	Eventually(t, clusterDeadline, func() (bool, string) {
		owner := c.NodeForSlot(t, slot)
		return owner == to, fmt.Sprintf("slot %d still owned by %s", slot, owner.Addr())
	})
	c.WaitHealthy(t)
	return nil
}

// slotRangesHold reports whether a GETSLOTMIGRATIONS slot_ranges text ("1-5 9")
// holds slot.
func slotRangesHold(ranges string, slot int) bool {
	for _, r := range strings.Fields(ranges) {
		lo, hi, found := strings.Cut(r, "-")
		if !found {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil && a <= slot && slot <= b {
			return true
		}
	}
	return false
}
