package ratemodel

import (
	"errors"
	"testing"
)

const T0 = 4102444800000

func checkHold(t *testing.T, name string, got, want HoldReply) {
	t.Helper()
	got.T, got.Write = 0, false
	if got != want {
		t.Fatalf("%s:\n got  %+v\n want %+v", name, got, want)
	}
}

// A pool of 6 shared by domains of at most 4 each, hand-computed from the rules.
func TestHoldSession(t *testing.T) {
	h := NewHolds()
	res := func(key string, max, min, lease int64, at int64, id uint64) HoldReply {
		return h.Do(&HoldRequest{Cmd: Reserve, Key: key, Global: "g", Max: max, Min: min, HasLimit: true, Limit: 4, GlobalLimit: 6, Lease: lease, NewID: id}, at)
	}
	// Rule 3 and 10: granted in full; fence = t * 2^20 on fresh keys.
	checkHold(t, "alice", res("alice", 3, 3, 60000, T0, 1),
		HoldReply{Granted: 3, ID: 1, Held: 3, Limit: 4, GlobalHeld: 3, LimitedBy: "none", Deadline: T0 + 60000, Fence: T0 << 20})
	// The pool cuts MAX 4 to 3.
	checkHold(t, "bob", res("bob", 4, 1, 30000, T0+100, 2),
		HoldReply{Granted: 3, ID: 2, Held: 3, Limit: 4, GlobalHeld: 6, LimitedBy: "global", Deadline: T0 + 30100, Fence: (T0 + 100) << 20})
	// Full: retry when Bob's lease ends (T0+30100), nothing written.
	checkHold(t, "carol", res("carol", 2, 2, 60000, T0+200, 3),
		HoldReply{Limit: 4, GlobalHeld: 6, LimitedBy: "global", RetryAfter: 29900})
	if h.Exists("carol") {
		t.Fatal("a rejection wrote carol's key")
	}
	rel := func(key string, id uint64, copies int64, at int64) HoldReply {
		return h.Do(&HoldRequest{Cmd: Release, Key: key, Global: "g", Hold: id, HasCopies: copies > 0, Copies: copies}, at)
	}
	checkHold(t, "release 1", rel("alice", 1, 1, T0+1000), HoldReply{Copies: 1, Remaining: 2, Deadline: T0 + 60000, Held: 2, Limit: -1, GlobalHeld: -1})
	checkHold(t, "renew", h.Do(&HoldRequest{Cmd: Renew, Key: "alice", Global: "g", Hold: 1, Lease: 60000}, T0+2000),
		HoldReply{Copies: 2, Remaining: 2, Deadline: T0 + 62000, Held: 2, Limit: -1, GlobalHeld: -1})
	checkHold(t, "transfer", h.Do(&HoldRequest{Cmd: Transfer, Key: "alice", Global: "g", Hold: 1, HasCopies: true, Copies: 1, TTL: 5000, NewID: 9}, T0+3000),
		HoldReply{Copies: 1, ID: 9, Deadline: T0 + 8000, Remaining: 1, Held: 2, Limit: -1, GlobalHeld: -1})
	// Seize gets a fresh fence: larger than any stored, at least t * 2^20.
	checkHold(t, "seize", h.Do(&HoldRequest{Cmd: Seize, Key: "alice", Global: "g", Hold: 9, Lease: 20000}, T0+4000),
		HoldReply{Copies: 1, Remaining: 1, Deadline: T0 + 24000, Held: 2, Limit: -1, GlobalHeld: -1, Fence: (T0 + 4000) << 20})
	checkHold(t, "release all", rel("alice", 9, 0, T0+5000), HoldReply{Copies: 1, Held: 1, Limit: -1, GlobalHeld: -1})
	// Releasing again releases nothing and is no error (rule 4).
	r := rel("alice", 9, 0, T0+5000)
	checkHold(t, "release again", r, HoldReply{Held: 1, Limit: -1, GlobalHeld: -1})
	if r.Write {
		t.Fatal("a release of an unknown hold wrote")
	}
	if r := h.Do(&HoldRequest{Cmd: Renew, Key: "alice", Global: "g", Hold: 9, Lease: 1000}, T0+5000); !errors.Is(r.Err, ErrLost) {
		t.Fatalf("renew of a released hold: %+v", r)
	}
	// Bob's copies count until T0+30100 exclusive (rule 1).
	checkHold(t, "carol early", res("carol", 3, 3, 60000, T0+30099, 4),
		HoldReply{Limit: 4, GlobalHeld: 4, LimitedBy: "global", RetryAfter: 1})
	checkHold(t, "carol", res("carol", 3, 3, 60000, T0+30100, 4),
		HoldReply{Granted: 3, ID: 4, Held: 3, Limit: 4, GlobalHeld: 4, LimitedBy: "none", Deadline: T0 + 90100, Fence: (T0 + 30100) << 20})
	// A request from the past runs at the newest stored time (the global key's).
	checkHold(t, "dave", res("dave", 1, 1, 60000, T0-100000, 5),
		HoldReply{Granted: 1, ID: 5, Held: 1, Limit: 4, GlobalHeld: 5, LimitedBy: "none", Deadline: T0 + 90100, Fence: (T0+30100)<<20 + 1})
	if got := h.ExpireAt("g"); got != T0+90101 {
		t.Fatalf("global key expires at %d", got)
	}
}

func TestHoldGroups(t *testing.T) {
	h := NewHolds()
	req := func(key string, max, min int64, groups []string, lims []int64, at int64, id uint64) HoldReply {
		return h.Do(&HoldRequest{Cmd: Reserve, Key: key, Max: max, Min: min, HasLimit: true, Limit: 2, Groups: groups, GroupLimits: lims, Lease: 60000, NewID: id}, at)
	}
	checkHold(t, "new1", req("new1", 2, 2, []string{"probation"}, []int64{3}, T0, 1),
		HoldReply{Granted: 2, ID: 1, Held: 2, Limit: 2, GlobalHeld: -1, LimitedBy: "none", Deadline: T0 + 60000, Fence: T0 << 20})
	checkHold(t, "new2", req("new2", 2, 1, []string{"probation"}, []int64{3}, T0+1, 2),
		HoldReply{Granted: 1, ID: 2, Held: 1, Limit: 2, GlobalHeld: -1, LimitedBy: "group:1", Deadline: T0 + 60001, Fence: (T0 + 1) << 20})
	// A group with limit 0 refuses for good; probation (full) and blocked both have
	// room 0: limited_by names the first on ties.
	checkHold(t, "blocked", req("abuser", 1, 1, []string{"probation", "blocked"}, []int64{3, 0}, T0+2, 3),
		HoldReply{Limit: 2, GlobalHeld: -1, LimitedBy: "group:1", RetryAfter: -1})
	checkHold(t, "blocked alone", req("abuser", 1, 1, []string{"other", "blocked"}, []int64{3, 0}, T0+2, 3),
		HoldReply{Limit: 2, GlobalHeld: -1, LimitedBy: "group:2", RetryAfter: -1})
	// The probation group is full until new1's hold ends at T0+60000.
	checkHold(t, "probation full", req("new3", 1, 1, []string{"probation"}, []int64{3}, T0+2, 3),
		HoldReply{Limit: 2, GlobalHeld: -1, LimitedBy: "group:1", RetryAfter: 60000 - 2})
}

// Rule 12 and the fence's growth in one millisecond.
func TestHoldOnceAndFence(t *testing.T) {
	h := NewHolds()
	r1 := h.Do(&HoldRequest{Cmd: Reserve, Key: "a", Max: 1, Min: 1, HasLimit: true, Limit: 2, Lease: 1000, Once: "tok", NewID: 7}, 100)
	again := h.Do(&HoldRequest{Cmd: Reserve, Key: "a", Max: 1, Min: 1, HasLimit: true, Limit: 2, Lease: 1000, Once: "tok", NewID: 8}, 100)
	if !again.Replay || again.ID != 7 || again.Fence != r1.Fence || again.Deadline != r1.Deadline || h.Live("a", 100) != 1 {
		t.Fatalf("replay %+v after %+v, live %d", again, r1, h.Live("a", 100))
	}
	r2 := h.Do(&HoldRequest{Cmd: Reserve, Key: "a", Max: 1, Min: 1, HasLimit: true, Limit: 2, Lease: 1000, NewID: 8}, 100)
	if r2.Fence != r1.Fence+1 || r2.Granted != 1 {
		t.Fatalf("second grant in the same ms: %+v (first fence %d)", r2, r1.Fence)
	}
	// Transfer with ONCE: the retry answers the same new hold even though the
	// original hold has gone.
	tr := h.Do(&HoldRequest{Cmd: Transfer, Key: "a", Hold: 7, TTL: 500, Once: "x", NewID: 9}, 200)
	tr2 := h.Do(&HoldRequest{Cmd: Transfer, Key: "a", Hold: 7, TTL: 500, Once: "x", NewID: 10}, 300)
	if tr.Err != nil || !tr2.Replay || tr2.ID != 9 || tr2.Copies != 1 {
		t.Fatalf("transfer %+v, retry %+v", tr, tr2)
	}
	if r := h.Do(&HoldRequest{Cmd: Transfer, Key: "a", Hold: 7, TTL: 500, Once: "y", NewID: 11}, 300); !errors.Is(r.Err, ErrLost) {
		t.Fatalf("transfer of a gone hold: %+v", r)
	}
	if r := h.Do(&HoldRequest{Cmd: Transfer, Key: "a", Hold: 8, HasCopies: true, Copies: 2, TTL: 500, NewID: 11}, 300); !errors.Is(r.Err, ErrCopies) {
		t.Fatalf("transfer of too many copies: %+v", r)
	}
	rel := h.Do(&HoldRequest{Cmd: Release, Key: "a", Hold: 9}, 400)
	if rel.Copies != 1 || rel.Held != 1 {
		t.Fatalf("release %+v", rel)
	}
	// The last hold goes, but the key remembers the transfer's token until its t0 + 10,001.
	rel = h.Do(&HoldRequest{Cmd: Release, Key: "a", Hold: 8}, 400)
	if rel.Copies != 1 || rel.Held != 0 || !h.Exists("a") || h.ExpireAt("a") != 200+OnceWindow+1 {
		t.Fatalf("release of the last hold %+v, exists %v until %d", rel, h.Exists("a"), h.ExpireAt("a"))
	}
	// Without tokens: a key released in its grant's millisecond keeps its fence for
	// that millisecond, so the next grant in it gets a larger one; released later, it
	// is deleted by the write.
	r1 = h.Do(&HoldRequest{Cmd: Reserve, Key: "b", Max: 1, Min: 1, HasLimit: true, Limit: 1, Lease: 1000, NewID: 20}, 500)
	h.Do(&HoldRequest{Cmd: Release, Key: "b", Hold: 20}, 500)
	r2 = h.Do(&HoldRequest{Cmd: Reserve, Key: "b", Max: 1, Min: 1, HasLimit: true, Limit: 1, Lease: 1000, NewID: 21}, 500)
	if r2.Fence != r1.Fence+1 {
		t.Fatalf("fence after a same-ms release: %d, first %d", r2.Fence, r1.Fence)
	}
	h.Do(&HoldRequest{Cmd: Release, Key: "b", Hold: 21}, 501)
	if h.Exists("b") {
		t.Fatal("an empty key outlived its fence's millisecond")
	}
	if d := h.Do(&HoldRequest{Cmd: Reserve, Key: "c", Max: 1, Min: 1, HasLimit: true, Limit: 1, DryRun: true}, 600); d.Granted != 1 || d.Fence != 0 {
		t.Fatalf("DRYRUN: %+v", d)
	}
}
