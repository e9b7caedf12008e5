package main

import (
	"fmt"
	"strings"

	"github.com/charon-redis/charon/module/attime"
	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/rm"
)

// CHARON.INSPECT key [AT unix-ms]: explains a CHARON.RATE key in words and numbers,
// so that debugging a limiter never needs reading raw data. Not on the hot path.
// Reply: a map (a flat name/value array under RESP2); null for a missing key.
func (h *rateHandler) inspect(c rm.Ctx, args rm.Args) error {
	if holdInspect != nil {
		if handled, err := holdInspect(c, args); handled {
			return err
		}
	}
	h.views = args.Views(h.views)
	at, hasAt, err := rate.ParseInspect(h.views[2:])
	if err != nil {
		return rateErr(err)
	}
	if hasAt {
		// The unit rules apply; the bound ahead does not (INSPECT writes nothing, so it
		// cannot hold a key's clock ahead).
		if err := attime.Check(at, rm.Milliseconds(), 0); err != nil {
			return rateErr(err)
		}
	}
	key, cur, found, err := c.OpenBlobRead(args.At(1), h.typ)
	if err != nil {
		return err
	}
	defer key.Close()
	if !found {
		c.ReplyNull()
		return nil
	}
	if !hasAt {
		at = rm.Milliseconds()
	}
	info, err := rate.Inspect(cur, at)
	if err != nil {
		return rateErr(err)
	}
	replyInspect(c, info, key.AbsExpire())
	return nil
}

func replyInspect(c rm.Ctx, info *rate.Info, keyExpireAt int64) {
	hitsName := "domain_hits"
	if info.Kind == rate.KindGlobal {
		hitsName = "global_hits"
	}
	n := 13
	if len(info.Caps) > 0 {
		n++
	}
	if len(info.Tokens) > 0 {
		n++
	}
	c.ReplyMap(n)
	bulkPair(c, "kind", info.Kind.String())
	bulkPair(c, "summary", inspectSummary(info))
	intPair(c, "time", info.T)
	intPair(c, "newest", info.Last)
	intPair(c, "tier", int64(info.CurrentTier))
	intPair(c, hitsName, info.WindowHits)
	intPair(c, "expire_at", info.ExpireAt)
	intPair(c, "reset_after", info.ResetAfter)
	intPair(c, "key_expire_at", keyExpireAt)
	intPair(c, "events", int64(info.Events))
	intPair(c, "bytes", int64(info.Bytes))

	c.ReplyBulkString("tiers")
	c.ReplyArray(len(info.Tiers))
	for i := range info.Tiers {
		replyTier(c, i+1, &info.Tiers[i])
	}

	c.ReplyBulkString("second_log")
	c.ReplyArray(len(info.SecondLog))
	for _, e := range info.SecondLog {
		c.ReplyInt64s([]int64{e.At, e.Hits})
	}

	// Caps and remembered ONCE tokens, only when the key holds some.
	if len(info.Caps) > 0 {
		c.ReplyBulkString("caps")
		c.ReplyArray(len(info.Caps))
		for i := range info.Caps {
			ci := &info.Caps[i]
			c.ReplyMap(7)
			bulkPair(c, "summary", capSummary(ci))
			intPair(c, "limit", ci.Limit)
			intPair(c, "window_ms", ci.Window)
			intPair(c, "bucket_ms", ci.BucketMs)
			intPair(c, "hits", ci.Hits)
			intPair(c, "room", ci.Room)
			intPair(c, "next_leave_at", ci.NextLeave)
		}
	}
	if len(info.Tokens) > 0 {
		c.ReplyBulkString("tokens")
		c.ReplyArray(len(info.Tokens))
		for i := range info.Tokens {
			tk := &info.Tokens[i]
			c.ReplyMap(4)
			bulkPair(c, "hash", fmt.Sprintf("%016x", tk.Hash))
			intPair(c, "at", tk.At)
			intPair(c, "granted", tk.Granted)
			intPair(c, "forgotten_at", tk.ExpiresAt)
		}
	}
}

// capSummary explains one cap in a line.
func capSummary(ci *rate.CapInfo) string {
	how := "counted exactly"
	if ci.BucketMs > 1 {
		how = fmt.Sprintf("counted in buckets of %d ms", ci.BucketMs)
	}
	return fmt.Sprintf("%d/%d hits in a %d ms window, %s", ci.Hits, ci.Limit, ci.Window, how)
}

func replyTier(c rm.Ctx, n int, t *rate.TierInfo) {
	skippable := int64(0)
	if t.Skippable {
		skippable = 1
	}
	next := "none"
	if t.NextChange >= 0 {
		next = t.NextState.String()
	}
	c.ReplyMap(15)
	intPair(c, "tier", int64(n))
	bulkPair(c, "state", t.State.String())
	bulkPair(c, "summary", tierSummary(n, t))
	intPair(c, "limit", t.Limit)
	intPair(c, "window_ms", t.Window)
	intPair(c, "active_ms", t.Active)
	intPair(c, "cooldown_ms", t.Cooldown)
	intPair(c, "skippable", skippable)
	intPair(c, "entered_at", t.EnteredAt)
	intPair(c, "hits", t.Hits)
	intPair(c, "active_until", t.ActiveUntil)
	intPair(c, "cooldown_until", t.CooldownUntil)
	intPair(c, "next_change_at", t.NextChange)
	bulkPair(c, "next_state", next)
	intPair(c, "room", max(t.Limit-t.Hits, 0))
}

func intPair(c rm.Ctx, name string, v int64) {
	c.ReplyBulkString(name)
	c.ReplyInt64(v)
}

func bulkPair(c rm.Ctx, name, v string) {
	c.ReplyBulkString(name)
	c.ReplyBulkString(v)
}

// inspectSummary says in one line what the key means right now.
func inspectSummary(info *rate.Info) string {
	if info.Kind == rate.KindGlobal {
		return fmt.Sprintf("global log: %d hits in the last 1000 ms; stops mattering in %d ms", info.WindowHits, info.ResetAfter)
	}
	var b strings.Builder
	if info.CurrentTier == 0 {
		b.WriteString("no tier is ACTIVE (requests start at tier 1)")
	} else {
		fmt.Fprintf(&b, "current tier %d", info.CurrentTier)
	}
	fmt.Fprintf(&b, "; %d hits in the last 1000 ms; stops mattering in %d ms", info.WindowHits, info.ResetAfter)
	return b.String()
}

// tierSummary explains one tier: its limit, state and what happens next.
func tierSummary(n int, t *rate.TierInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tier %d: %d/%d hits in a %d ms window; %s", n, t.Hits, t.Limit, t.Window, t.State)
	switch {
	case !t.Entered:
		b.WriteString(", never entered")
	default:
		fmt.Fprintf(&b, " (entered at %d)", t.EnteredAt)
	}
	if t.NextChange >= 0 {
		fmt.Fprintf(&b, "; %s at %d", t.NextState, t.NextChange)
	}
	if t.Skippable {
		b.WriteString("; skippable during cooldown")
	}
	return b.String()
}
