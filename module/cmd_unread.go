package main

import (
	"errors"

	"github.com/charon-redis/charon/module/unread/wire"
	"github.com/charon-redis/charon/rm"
)

// The UNREAD.* commands own the data model of module/unread/wire: per user a sorted
// set of conversations with unread messages, scored by their number of unread
// messages. Every key is declared (first/last/step and key specs), so Redis Cluster
// refuses cross-slot requests with CROSSSLOT and ACL key patterns see each key.
func unreadCommands() []rm.Command {
	return []rm.Command{
		{
			Name:       "unread.count",
			Flags:      "readonly fast",
			Arity:      -2,
			FirstKey:   1,
			LastKey:    -1,
			Step:       1,
			Summary:    "Returns, for each key, the number of conversations with unread messages (0 for a missing key).",
			Complexity: "O(N) where N is the number of keys.",
			Since:      version,
			KeySpecs:   []rm.KeySpec{{Flags: rm.KeyRO, Index: 1, LastKey: -1, KeyStep: 1}},
			Handler:    unreadCount,
		},
		{
			Name:       "unread.mark",
			Flags:      "write deny-oom fast",
			Arity:      -3,
			FirstKey:   1,
			LastKey:    1,
			Step:       1,
			Summary:    "Adds count (default 1) unread messages to a conversation; returns the conversation's number of unread messages.",
			Complexity: "O(log(N)) where N is the number of conversations with unread messages.",
			Since:      version,
			// Like ZINCRBY: reads the score it returns and updates the set.
			KeySpecs: []rm.KeySpec{{Flags: rm.KeyRW | rm.KeyAccess | rm.KeyUpdate, Index: 1, LastKey: 0, KeyStep: 1}},
			Handler:  unreadMark,
		},
		{
			Name: "unread.read",
			// Not deny-oom: it only removes, and refusing that under maxmemory would
			// keep the memory it could free.
			Flags:      "write fast",
			Arity:      -3,
			FirstKey:   1,
			LastKey:    1,
			Step:       1,
			Summary:    "Marks conversations as read (removes them); returns the number of conversations still unread.",
			Complexity: "O(M*log(N)) where M is the number of conversations given and N the number with unread messages.",
			Since:      version,
			KeySpecs:   []rm.KeySpec{{Flags: rm.KeyRW | rm.KeyDelete, Index: 1, LastKey: 0, KeyStep: 1}},
			Handler:    unreadRead,
		},
	}
}

// Module keyspace events (class 'd' of notify-keyspace-events) raised once per key
// that UNREAD.MARK or UNREAD.READ really changed; a request that changes nothing
// raises none. Named after the command, like Redis's own "zincr" and "zrem".
var (
	evUnreadMark = rm.NewEvent("unread.mark")
	evUnreadRead = rm.NewEvent("unread.read")
)

// countScratch receives UNREAD.COUNT's lengths without allocating per call. Redis
// runs commands on its main thread only, so one buffer serves every call.
var countScratch []int64

// maxKeptScratch bounds the buffer kept between calls; a larger request allocates
// its own, so one huge call does not pin its memory forever.
const maxKeptScratch = 4096

// UNREAD.COUNT key [key ...]: one crossing to read every length, one to reply.
func unreadCount(c rm.Ctx, args rm.Args) error {
	n := args.Len() - 1
	var out []int64
	switch {
	case n <= cap(countScratch):
		out = countScratch[:n]
	case n <= maxKeptScratch:
		countScratch = make([]int64, n)
		out = countScratch
	default:
		out = make([]int64, n)
	}
	if err := c.LengthsOf(args, 1, rm.KeyZset, out); err != nil {
		return err
	}
	c.ReplyInt64s(out)
	return nil
}

// UNREAD.MARK key conversation [count]
func unreadMark(c rm.Ctx, args rm.Args) error {
	var views [4][]byte
	req, err := wire.ParseMark(args.Views(views[:0]))
	if err != nil {
		return unreadErr(err)
	}
	k := c.OpenWrite(args.At(1))
	defer k.Close()
	if t := k.Type(); t != rm.KeyEmpty && t != rm.KeyZset {
		return rm.ErrWrongType
	}
	score, err := k.ZsetIncrBy(args.At(2), float64(req.Count), evUnreadMark)
	if err != nil {
		return err
	}
	c.ReplicateVerbatim()
	c.ReplyInt64(wire.ScoreToCount(score))
	return nil
}

// UNREAD.READ key conversation [conversation ...]
func unreadRead(c rm.Ctx, args rm.Args) error {
	k := c.OpenWrite(args.At(1))
	defer k.Close()
	switch k.Type() {
	case rm.KeyEmpty:
		c.ReplyInt64(0) // nothing unread, nothing written, nothing to replicate
		return nil
	case rm.KeyZset:
	default:
		return rm.ErrWrongType
	}
	removed := false
	for i := 2; i < args.Len(); i++ {
		// The type was checked above, so ZsetRem has no reason left to fail.
		ok, err := k.ZsetRem(args.At(i))
		if err != nil {
			return err
		}
		removed = removed || ok
	}
	if removed {
		k.Written(evUnreadRead)
		c.ReplicateVerbatim()
	}
	// An emptied set is deleted by Redis, and its length reads 0.
	c.ReplyInt64(k.Len())
	return nil
}

// unreadErr maps wire's errors to rm's: arity to Redis's own reply; an argument
// error keeps its "<arg>: <reason>" text, to which the dispatcher adds "ERR".
func unreadErr(err error) error {
	if errors.Is(err, wire.ErrWrongArity) {
		return rm.ErrWrongArity
	}
	return err
}
