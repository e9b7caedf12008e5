package rm

/*
#cgo noescape cshim_key_positions
#cgo nocallback cshim_key_positions
#include "cshim.h"
*/
import "C"

import "strings"

// Redis 7.0's cluster routing (getNodeByQuery) finds a module command's keys from
// first/last/step or from getkeys-api, never from key specs. A command whose keys
// cannot be described by first/last/step (a key introduced by a keyword) is therefore
// registered with getkeys-api, and rm answers the key-position requests by evaluating
// the same declared key specs, so ACLs, COMMAND GETKEYS and CROSSSLOT agree.

// needsGetKeysAPI reports whether cmd's key specs go beyond its first/last/step.
func (cmd *Command) needsGetKeysAPI() bool {
	for _, ks := range cmd.KeySpecs {
		if ks.Keyword != "" {
			return true
		}
	}
	return false
}

// registrationFlags are the flags passed to RedisModule_CreateCommand.
func (cmd *Command) registrationFlags() string {
	if cmd.needsGetKeysAPI() && !strings.Contains(cmd.Flags, "getkeys-api") {
		return strings.TrimSpace(cmd.Flags + " getkeys-api")
	}
	return cmd.Flags
}

// keyScratch receives key positions between the spec walk and the one C call.
var keyScratch struct {
	views      [][]byte
	pos, flags []C.int
}

// reportKeys answers a getkeys-api request from cmd's key specs.
func (c Ctx) reportKeys(cmd *Command, args Args) {
	keyScratch.views = args.Views(keyScratch.views)
	keyScratch.pos, keyScratch.flags = keyScratch.pos[:0], keyScratch.flags[:0]
	for _, ks := range cmd.KeySpecs {
		first, last, step := ks.positions(keyScratch.views)
		for p := first; p <= last && p > 0 && p < len(keyScratch.views); p += step {
			keyScratch.pos = append(keyScratch.pos, C.int(p))
			keyScratch.flags = append(keyScratch.flags, C.int(ks.Flags))
		}
	}
	if n := len(keyScratch.pos); n > 0 {
		C.cshim_key_positions(c.p, &keyScratch.pos[0], &keyScratch.flags[0], C.int(n))
	}
}
