package main

import (
	"strings"

	"github.com/charon-redis/charon/module/rate"
	"github.com/charon-redis/charon/rm"
)

// INFO counters (INFO charon): events since the server started. To add one, add its
// index below and its section and name to counterDefs; a command whose calls and
// errors are all it needs gets a line in countedCommands. docs/operations-reference.md
// lists every field.
//
// The slots are C memory (cshim/info.c reads them, even in a crash report) and every
// increment is a plain add on Redis's main thread: no lock, no allocation, no crossing.
type counter int

const (
	rateRequests counter = iota
	rateGranted
	rateRejected
	rateRejectedTier
	rateRejectedHard
	rateRejectedGlobal
	rateRejectedClosed
	rateHitsGranted
	rateDryRuns
	rateReplays
	rateErrors

	unreadCountCalls
	unreadCountKeys
	unreadMarkCalls
	unreadReadCalls
	unreadErrors

	reserveCalls
	releaseCalls
	renewCalls
	transferCalls
	seizeCalls
	holdErrors
	reserveWaits
	reserveWaitGrants
	reserveWaitTimeouts
	reserveWaiters

	numCounters
)

var counterDefs = [numCounters]rm.Counter{
	rateRequests:       {Section: "rate", Name: "rate_requests"},
	rateGranted:        {Section: "rate", Name: "rate_granted"},
	rateRejected:       {Section: "rate", Name: "rate_rejected"},
	rateRejectedTier:   {Section: "rate", Name: "rate_rejected_tier"},
	rateRejectedHard:   {Section: "rate", Name: "rate_rejected_hard"},
	rateRejectedGlobal: {Section: "rate", Name: "rate_rejected_global"},
	rateRejectedClosed: {Section: "rate", Name: "rate_rejected_closed"},
	rateHitsGranted:    {Section: "rate", Name: "rate_hits_granted"},
	rateDryRuns:        {Section: "rate", Name: "rate_dryruns"},
	rateReplays:        {Section: "rate", Name: "rate_replays"},
	rateErrors:         {Section: "rate", Name: "rate_errors"},

	unreadCountCalls: {Section: "unread", Name: "unread_count_calls"},
	unreadCountKeys:  {Section: "unread", Name: "unread_count_keys"},
	unreadMarkCalls:  {Section: "unread", Name: "unread_mark_calls"},
	unreadReadCalls:  {Section: "unread", Name: "unread_read_calls"},
	unreadErrors:     {Section: "unread", Name: "unread_errors"},

	reserveCalls:  {Section: "reserve", Name: "reserve_calls"},
	releaseCalls:  {Section: "reserve", Name: "release_calls"},
	renewCalls:    {Section: "reserve", Name: "renew_calls"},
	transferCalls: {Section: "reserve", Name: "transfer_calls"},
	seizeCalls:    {Section: "reserve", Name: "seize_calls"},
	holdErrors:    {Section: "reserve", Name: "reserve_errors"},
	// BLOCK: requests that waited, waits that ended in a grant (or a replay), waits
	// that ended in a rejection (timeout, CLIENT UNBLOCK), and the clients waiting now
	// (a gauge).
	reserveWaits:        {Section: "reserve", Name: "reserve_waits"},
	reserveWaitGrants:   {Section: "reserve", Name: "reserve_wait_grants"},
	reserveWaitTimeouts: {Section: "reserve", Name: "reserve_wait_timeouts"},
	reserveWaiters:      {Section: "reserve", Name: "reserve_waiters"},
}

// stats holds the counters. Until OnLoad points it at the C slots it counts into a
// Go array, so code that runs outside Redis (tests) can call it too.
var stats = &statsFallback

var statsFallback [numCounters]uint64

// registerStats registers every counter with INFO and moves counting to its slots.
func registerStats() error {
	slots, err := rm.RegisterCounters(counterDefs[:])
	if err != nil {
		return err
	}
	stats = (*[numCounters]uint64)(slots)
	return nil
}

// countedCommand says which counters a command's wrapper moves: calls (every call),
// keys (arguments after the name) and errors (calls that replied an error). -1: none.
type countedCommand struct{ calls, keys, errors counter }

var countedCommands = map[string]countedCommand{
	"charon.rate":  {calls: rateRequests, keys: -1, errors: rateErrors},
	"unread.count": {calls: unreadCountCalls, keys: unreadCountKeys, errors: unreadErrors},
	"unread.mark":  {calls: unreadMarkCalls, keys: -1, errors: unreadErrors},
	"unread.read":  {calls: unreadReadCalls, keys: -1, errors: unreadErrors},

	"charon.reserve":  {calls: reserveCalls, keys: -1, errors: holdErrors},
	"charon.release":  {calls: releaseCalls, keys: -1, errors: holdErrors},
	"charon.renew":    {calls: renewCalls, keys: -1, errors: holdErrors},
	"charon.transfer": {calls: transferCalls, keys: -1, errors: holdErrors},
	"charon.seize":    {calls: seizeCalls, keys: -1, errors: holdErrors},
}

// countCommands wraps the handlers of countedCommands with their counters, once at
// load; the wrapper adds one indirect call and a few adds per command.
func countCommands(cmds []rm.Command) {
	for i := range cmds {
		cc, ok := countedCommands[strings.ToLower(cmds[i].Name)]
		if !ok {
			continue
		}
		h := cmds[i].Handler
		cmds[i].Handler = func(c rm.Ctx, args rm.Args) error {
			stats[cc.calls]++
			if cc.keys >= 0 {
				stats[cc.keys] += uint64(args.Len() - 1)
			}
			err := h(c, args)
			if err != nil {
				stats[cc.errors]++
			}
			return err
		}
	}
}

// countRate records a CHARON.RATE decision (errors are counted by the wrapper). A
// rejection is attributed to the first of: CLOSED, HARD, GLOBAL, the tiers. A replay
// of a remembered ONCE token counts as a replay only (the grant was counted).
func countRate(req *rate.Request, res *rate.Result) {
	if res.Replay {
		stats[rateReplays]++
		return
	}
	if req.DryRun {
		stats[rateDryRuns]++
	}
	if res.Granted {
		stats[rateGranted]++
		if res.Write {
			stats[rateHitsGranted] += uint64(res.Fields[rate.FieldGranted])
		}
		return
	}
	stats[rateRejected]++
	switch {
	case req.Closed:
		stats[rateRejectedClosed]++
	case res.Fields[rate.FieldHardLimited] != 0:
		stats[rateRejectedHard]++
	case res.Fields[rate.FieldGlobalLimited] != 0:
		stats[rateRejectedGlobal]++
	default:
		stats[rateRejectedTier]++
	}
}
