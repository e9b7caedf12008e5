package main

import (
	"testing"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/rm"
)

func TestImpliedACLCategories(t *testing.T) {
	for flags, want := range map[string]string{
		"write deny-oom":      "write slow",
		"readonly":            "read slow",
		"readonly fast":       "read fast",
		"write deny-oom fast": "write fast",
		"":                    "slow",
		"admin":               "admin dangerous slow",
	} {
		if got := impliedACLCategories(flags); got != want {
			t.Errorf("impliedACLCategories(%q) = %q, want %q", flags, got, want)
		}
	}
}

func TestCountRate(t *testing.T) {
	*stats = [numCounters]uint64{}
	req := rate.Request{NTiers: 1}
	granted := rate.Result{Granted: true, Write: true}
	granted.Fields[rate.FieldGranted] = 3
	countRate(&req, &granted)
	dry := rate.Request{NTiers: 1, DryRun: true}
	countRate(&dry, &rate.Result{Granted: true}) // a dry run takes no hits
	var hard, global, tier rate.Result
	hard.Fields[rate.FieldHardLimited] = 1
	hard.Fields[rate.FieldGlobalLimited] = 1 // HARD comes first
	global.Fields[rate.FieldGlobalLimited] = 1
	countRate(&req, &hard)
	countRate(&req, &global)
	countRate(&req, &tier)
	countRate(&rate.Request{Closed: true}, &rate.Result{})
	want := map[counter]uint64{
		rateGranted: 2, rateHitsGranted: 3, rateDryRuns: 1, rateRejected: 4,
		rateRejectedHard: 1, rateRejectedGlobal: 1, rateRejectedTier: 1, rateRejectedClosed: 1,
	}
	for c, w := range want {
		if stats[c] != w {
			t.Errorf("%s = %d, want %d", counterDefs[c].Name, stats[c], w)
		}
	}
	if a := testing.AllocsPerRun(100, func() { countRate(&req, &granted) }); a != 0 {
		t.Errorf("countRate allocates %v times per call", a)
	}
}

func TestCounterDefsComplete(t *testing.T) {
	seen := map[string]bool{}
	for i, d := range counterDefs {
		if d.Section == "" || d.Name == "" {
			t.Errorf("counter %d has no section or name", i)
		}
		if seen[d.Name] {
			t.Errorf("counter %s twice", d.Name)
		}
		seen[d.Name] = true
	}
}

// BenchmarkCountingOverhead is what the counters add to one CHARON.RATE call: the
// counting wrapper around the handler plus countRate, against a handler that does
// nothing (compare with the server CPU per CHARON.RATE that make bench prints).
func BenchmarkCountingOverhead(b *testing.B) {
	cmds := []rm.Command{{Name: "charon.rate", Handler: func(rm.Ctx, rm.Args) error { return nil }}}
	bare := cmds[0].Handler
	countCommands(cmds)
	counted := cmds[0].Handler
	req := rate.Request{NTiers: 3}
	var res rate.Result
	res.Granted, res.Write = true, true
	res.Fields[rate.FieldGranted] = 1
	b.Run("bare", func(b *testing.B) {
		for b.Loop() {
			_ = bare(rm.Ctx{}, rm.Args{})
		}
	})
	b.Run("counted", func(b *testing.B) {
		for b.Loop() {
			_ = counted(rm.Ctx{}, rm.Args{})
			countRate(&req, &res)
		}
	})
}
