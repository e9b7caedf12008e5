//go:build integration

package script_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charon-redis/charon/module/internal/ratemodel"
	"github.com/charon-redis/charon/module/internal/script"
	"github.com/charon-redis/charon/tests/harness"
	"github.com/redis/go-redis/v9"
)

// redirects counts the redirections and refusals the cluster's nodes answered.
type redirects struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *redirects) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *redirects) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (r *redirects) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil {
			for _, p := range []string{"MOVED", "ASK", "TRYAGAIN", "NOSCRIPT", "CLUSTERDOWN"} {
				if strings.HasPrefix(err.Error(), p) {
					r.mu.Lock()
					r.n[p]++
					r.mu.Unlock()
				}
			}
		}
		return err
	}
}

func (r *redirects) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for k, v := range r.n {
		m[k] = v
	}
	return m
}

// transient: an error that proves the script did not run (the cluster client gave up
// redirecting, or the slot was half-moved). Anything else fails the test.
func transient(err error) bool {
	for _, p := range []string{"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "LOADING"} {
		if strings.HasPrefix(err.Error(), p) {
			return true
		}
	}
	return false
}

// On a 3-primary cluster whose servers cannot call TIME, rate requests and
// reservations run through the script engine while redis-cli moves 3000 slots between
// primaries. Every answer is compared with the reference model: 0 wrong answers.
// Each request carries a ONCE token, so a request retried after an error is counted
// once whatever happened to the first attempt.
func TestScriptsClusterReshard(t *testing.T) {
	cl := harness.StartCluster(t, harness.Options{NoModule: true, Config: []string{noTime}})
	cc := cl.ClusterClient(t)
	red := &redirects{n: map[string]int{}}
	cc.OnNewNode(func(rdb *redis.Client) { rdb.AddHook(red) })
	ctx := context.Background()
	if err := script.Load(ctx, cc); err != nil {
		t.Fatal(err)
	}

	const resources = 60
	type res struct {
		keys   [2]*ratemodel.Key
		global *ratemodel.Global
		holds  *ratemodel.Holds
	}
	rs := make([]*res, resources)
	for i := range rs {
		rs[i] = &res{keys: [2]*ratemodel.Key{ratemodel.NewKey(), ratemodel.NewKey()}, global: ratemodel.NewGlobal(), holds: ratemodel.NewHolds()}
	}
	tiers := []ratemodel.Tier{{Limit: 3, Window: 200, Active: 200}, {Limit: 5, Window: 1000, Active: 1000, Cooldown: 2000}}
	stiers := []script.Tier{{Limit: 3, Window: 200, Active: 200}, {Limit: 5, Window: 1000, Active: 1000, Cooldown: 2000}}
	rng := rand.New(rand.NewPCG(7, 7))
	now := int64(T0)

	prims := cl.Primaries(t)
	from, to := prims[0], prims[1]
	r := cl.StartReshard(t, from, to, 3000)
	done := make(chan error, 1)
	go func() { done <- r.Cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Minute)
	var calls, retries, grants int
	run := func(c *script.Call) any {
		for {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			v, err := c.Run(cctx, cc).Result()
			cancel()
			if err == nil {
				return v
			}
			if !transient(err) {
				t.Fatalf("call %d: %v", calls, err)
			}
			retries++
			if time.Now().After(deadline) {
				t.Fatalf("call %d: still failing at the deadline: %v", calls, err)
			}
		}
	}
loop:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("redis-cli reshard: %v\n%s", err, r.Output())
			}
			break loop
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("resharding did not finish within the deadline; %d calls so far", calls)
		}
		now += rng.Int64N(30)
		i := rng.IntN(resources)
		tag := fmt.Sprintf("{r%d}", i)
		calls++
		tok := fmt.Sprintf("c%d", calls)
		if rng.IntN(4) > 0 {
			d := rng.IntN(2)
			mreq := ratemodel.Request{Max: 1 + rng.Int64N(3), Tiers: tiers, Global: true, GlobalCaps: []ratemodel.Cap{{N: 6, Window: 1000}, {N: 40, Window: 60000}}, Once: tok}
			mreq.Min = mreq.Max
			want := ratemodel.Rate(rs[i].keys[d], rs[i].global, &mreq, now, true)
			sreq := script.Rate{Key: fmt.Sprintf("rl:%s:%d", tag, d), Max: mreq.Max, Min: mreq.Min, Tiers: stiers,
				GlobalKey: "rl:" + tag, GlobalCaps: []script.Cap{{N: 6, Window: 1000}, {N: 40, Window: 60000}}, Once: tok, At: now}
			got, err := script.DecodeRate(run(sreq.Call()))
			if err != nil {
				t.Fatal(err)
			}
			if got != want.Fields {
				t.Fatalf("call %d (%s) during resharding: script %v, model %v", calls, sreq.Key, got, want.Fields)
			}
			if want.Granted {
				grants++
			}
			continue
		}
		h := script.Hold{Op: script.Reserve, Key: "hd:" + tag + ":d", GlobalKey: "hd:" + tag, Max: 2, Min: 1,
			HasLimit: true, Limit: 3, GlobalLimit: 4, Lease: 50 + rng.Int64N(400), Once: tok, At: now}
		c := h.Call()
		mreq := modelHold(&h, h.NewID)
		want := rs[i].holds.Do(&mreq, now)
		got, err := script.DecodeHold(script.Reserve, run(c))
		if err != nil {
			t.Fatal(err)
		}
		if !sameReply(script.Reserve, got, want, true) {
			t.Fatalf("call %d (%s) during resharding: script %+v, model %+v", calls, h.Key, got, want)
		}
	}
	cl.WaitHealthy(t)
	rd := red.snapshot()
	t.Logf("resharding 3000 slots: %d requests (%d rate grants), 0 wrong answers, %d retried after a transient error; nodes answered %v", calls, grants, retries, rd)
	if rd["MOVED"]+rd["ASK"]+rd["TRYAGAIN"] == 0 {
		t.Fatal("the traffic never met a moving slot, so it proved nothing")
	}
}
