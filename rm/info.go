package rm

// This file holds an //export entry point; cgo allows only declarations in the
// preamble of such a file.

/*
#include "cshim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Counter names one INFO field that counts events since the server started. It is
// shown as <module>_<Name> in the section <module>_<Section>.
type Counter struct{ Section, Name string }

// RegisterCounters registers counters for INFO, during OnLoad, and returns their
// slots, indexed like defs. The slots are C memory, so the INFO callback reads them
// without entering Go (it also runs in crash reports); the module increments them in
// place, which is a plain memory write on Redis's main thread.
func RegisterCounters(defs []Counter) ([]uint64, error) {
	first := -1
	for i, d := range defs {
		// Read by the INFO callback for the life of the module: never freed.
		idx := int(C.cshim_info_add_counter(C.CString(d.Section), C.CString(d.Name)))
		if idx < 0 {
			return nil, fmt.Errorf("INFO counter %s_%s: more than %d counters", d.Section, d.Name, C.CSHIM_MAX_COUNTERS)
		}
		if first < 0 {
			first = idx
		}
		if idx != first+i {
			return nil, fmt.Errorf("INFO counter %s_%s: slots not contiguous", d.Section, d.Name)
		}
	}
	if first < 0 {
		return nil, nil
	}
	all := unsafe.Slice((*uint64)(unsafe.Pointer(C.cshim_info_counters())), int(C.CSHIM_MAX_COUNTERS))
	return all[first : first+len(defs) : first+len(defs)], nil
}

// registerInfo installs the module's INFO callback (cshim/info.c).
func (c Ctx) registerInfo() error {
	if C.cshim_info_register(c.p) != 0 {
		return fmt.Errorf("RedisModule_RegisterInfoFunc failed")
	}
	return nil
}

// memStats is reused by every INFO: Redis calls the callback on its main thread.
var memStats runtime.MemStats

// charonGoRuntimeStats fills the runtime section of INFO. cshim/info.c calls it only
// for a normal INFO in the process that loaded the module (never in a crash report or
// a fork child). ReadMemStats stops the world briefly; the module runs no goroutines,
// so there is nothing to stop.
//
//export charonGoRuntimeStats
func charonGoRuntimeStats(out *C.cshim_runtime_stats) {
	defer func() { _ = recover() }() // INFO must never take the server down
	runtime.ReadMemStats(&memStats)
	v := runtime.Version()
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&out.go_version[0])), len(out.go_version))
	n := copy(buf[:len(buf)-1], v)
	buf[n] = 0
	out.gomaxprocs = C.longlong(runtime.GOMAXPROCS(0))
	out.gcpercent = C.longlong(gcPercent())
	out.memlimit = C.longlong(memLimit())
	out.heap_inuse = C.ulonglong(memStats.HeapInuse)
	out.heap_objects = C.ulonglong(memStats.HeapObjects)
	out.heap_allocs = C.ulonglong(memStats.Mallocs)
	out.gc_cycles = C.ulonglong(memStats.NumGC)
	if memStats.NumGC > 0 {
		out.gc_last_pause_ns = C.ulonglong(memStats.PauseNs[(memStats.NumGC+255)%256])
	}
	out.gc_pause_total_ns = C.ulonglong(memStats.PauseTotalNs)
	out.goroutines = C.longlong(runtime.NumGoroutine())
}
