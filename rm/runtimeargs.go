package rm

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// ModuleArg is one "name value" pair of module arguments (loadmodule path name value ...).
type ModuleArg struct{ Name, Value string }

// Go sees an empty environment inside redis-server (set-proc-title rewrites it), so
// GOMAXPROCS, GOGC and GOMEMLIMIT come as module arguments instead.
const (
	argGoMaxProcs = "gomaxprocs"
	argGCPercent  = "gcpercent"
	argMemLimit   = "memlimit"

	minGoMaxProcs = 1
	maxGoMaxProcs = 1024
	minGCPercent  = -1 // -1 turns the GC off
	maxGCPercent  = 100000
)

// parseModuleArgs splits raw module arguments into name/value pairs.
func parseModuleArgs(raw []string) ([]ModuleArg, error) {
	if len(raw)%2 != 0 {
		return nil, fmt.Errorf("module arguments come in name value pairs; %q has no value", raw[len(raw)-1])
	}
	out := make([]ModuleArg, 0, len(raw)/2)
	for i := 0; i < len(raw); i += 2 {
		out = append(out, ModuleArg{Name: strings.ToLower(raw[i]), Value: raw[i+1]})
	}
	return out, nil
}

// runtimeSettings are the Go runtime arguments after parsing; -1 means "leave as is".
type runtimeSettings struct {
	maxProcs  int
	gcPercent int
	memLimit  int64
}

// splitRuntimeArgs takes the Go runtime arguments out of args, validated, and
// returns the rest for the module.
func splitRuntimeArgs(args []ModuleArg) (runtimeSettings, []ModuleArg, error) {
	s := runtimeSettings{maxProcs: -1, gcPercent: -2, memLimit: -1}
	var rest []ModuleArg
	for _, a := range args {
		switch a.Name {
		case argGoMaxProcs:
			n, err := strconv.Atoi(a.Value)
			if err != nil || n < minGoMaxProcs || n > maxGoMaxProcs {
				return s, nil, fmt.Errorf("module argument %s: %q is not an integer in 1..1024", a.Name, a.Value)
			}
			s.maxProcs = n
		case argGCPercent:
			n, err := strconv.Atoi(a.Value)
			if err != nil || n < minGCPercent || n > maxGCPercent {
				return s, nil, fmt.Errorf("module argument %s: %q is not an integer in -1..100000 (-1 turns the GC off)", a.Name, a.Value)
			}
			s.gcPercent = n
		case argMemLimit:
			n, err := strconv.ParseInt(a.Value, 10, 64)
			if err != nil || n < 1 {
				return s, nil, fmt.Errorf("module argument %s: %q is not a positive number of bytes", a.Name, a.Value)
			}
			s.memLimit = n
		default:
			rest = append(rest, a)
		}
	}
	return s, rest, nil
}

// parseRuntimeArgs parses raw module arguments and takes the Go runtime ones out,
// validated: it returns them, the names given (for the "old way" log line) and the
// other arguments, for the module.
func parseRuntimeArgs(raw []string) (runtimeSettings, []string, []ModuleArg, error) {
	args, err := parseModuleArgs(raw)
	if err != nil {
		return runtimeSettings{}, nil, nil, err
	}
	s, rest, err := splitRuntimeArgs(args)
	if err != nil {
		return s, nil, nil, err
	}
	var given []string
	for _, a := range args {
		switch a.Name {
		case argGoMaxProcs, argGCPercent, argMemLimit:
			given = append(given, a.Name)
		}
	}
	return s, given, rest, nil
}

// apply sets the Go runtime as s asks (servers without module configs).
func (s runtimeSettings) apply() {
	if s.maxProcs > 0 {
		runtime.GOMAXPROCS(s.maxProcs)
	}
	if s.gcPercent >= -1 {
		debug.SetGCPercent(s.gcPercent)
		gcPercentSetting = s.gcPercent
	}
	if s.memLimit > 0 {
		debug.SetMemoryLimit(s.memLimit)
	}
}

// RuntimeInfo describes the Go runtime inside the server.
type RuntimeInfo struct {
	GoMaxProcs int
	GCPercent  int
	MemLimit   int64
	NumGC      uint32
	Goroutines int
	GoVersion  string
}

// ReadRuntimeInfo reports the settings applied from module arguments and GC activity.
func ReadRuntimeInfo() RuntimeInfo {
	gc := gcPercent()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return RuntimeInfo{
		GoMaxProcs: runtime.GOMAXPROCS(0),
		GCPercent:  gc,
		MemLimit:   debug.SetMemoryLimit(-1),
		NumGC:      ms.NumGC,
		Goroutines: runtime.NumGoroutine(),
		GoVersion:  runtime.Version(),
	}
}

// isErr is errors.Is, named for the dispatcher's switch.
func isErr(err, target error) bool { return errors.Is(err, target) }
