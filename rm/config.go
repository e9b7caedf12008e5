package rm

// This file holds //export entry points; cgo allows only declarations in the
// preamble of such a file.

/*
#include <stdlib.h>
#include "cshim.h"
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"unsafe"
)

// NumericConfig declares one module config, read and written with CONFIG GET/SET
// <module>.<Name>, set in redis.conf or with MODULE LOADEX ... CONFIG. Redis refuses
// a value outside Min..Max itself ("argument must be between Min and Max inclusive")
// before Set is called; Set may refuse others with an error whose text is the reply.
type NumericConfig struct {
	Name     string
	Default  int64
	Min, Max int64
	Memory   bool // accepts 1gb-style values
	Get      func() int64
	Set      func(int64) error
}

// configs is the table the C callbacks index by slot; filled during OnLoad only.
var configs []NumericConfig

// RegisterNumericConfig registers cfg during OnLoad. rm.Load calls LoadConfigs once
// every config is registered, which sets each one from redis.conf or MODULE LOADEX,
// or to its Default.
func (c Ctx) RegisterNumericConfig(cfg NumericConfig) error {
	if cfg.Name == "" || cfg.Get == nil || cfg.Set == nil || cfg.Min > cfg.Max ||
		cfg.Default < cfg.Min || cfg.Default > cfg.Max {
		return fmt.Errorf("config %q: invalid declaration", cfg.Name)
	}
	slot := len(configs)
	if slot >= C.CSHIM_MAX_CONFIGS {
		return fmt.Errorf("config %s: more than %d configs", cfg.Name, C.CSHIM_MAX_CONFIGS)
	}
	flags := C.int(0)
	if cfg.Memory {
		flags |= C.CSHIM_CONFIG_MEMORY
	}
	configs = append(configs, cfg)
	// Redis keeps its own copy of the name.
	name := C.CString(cfg.Name)
	defer C.free(unsafe.Pointer(name))
	if C.cshim_register_numeric_config(c.p, C.int(slot), name, C.longlong(cfg.Default), flags,
		C.longlong(cfg.Min), C.longlong(cfg.Max)) != 0 {
		configs = configs[:slot]
		return fmt.Errorf("config %s: RedisModule_RegisterNumericConfig failed", cfg.Name)
	}
	return nil
}

// loadConfigs applies every registered config (RedisModule_LoadConfigs).
func (c Ctx) loadConfigs() error {
	if len(configs) == 0 {
		return nil
	}
	if C.cshim_load_configs(c.p) != 0 {
		return fmt.Errorf("RedisModule_LoadConfigs failed (a config value in redis.conf or MODULE LOADEX was refused; see the line above)")
	}
	return nil
}

//export charonGoConfigGet
func charonGoConfigGet(slot C.int) (v C.longlong) {
	defer func() {
		if r := recover(); r != nil {
			v = 0
		}
	}()
	if int(slot) >= len(configs) {
		return 0
	}
	return C.longlong(configs[slot].Get())
}

//export charonGoConfigSet
func charonGoConfigSet(slot C.int, val C.longlong, errbuf *C.char, errlen C.size_t) (rc C.int) {
	fail := func(msg string) C.int {
		buf := unsafe.Slice((*byte)(unsafe.Pointer(errbuf)), int(errlen))
		n := copy(buf[:len(buf)-1], msg)
		buf[n] = 0
		return 1
	}
	defer func() {
		if r := recover(); r != nil {
			rc = fail(fmt.Sprintf("internal error: %v", r))
		}
	}()
	if int(slot) >= len(configs) {
		return fail("unknown config")
	}
	if err := configs[slot].Set(int64(val)); err != nil {
		return fail(err.Error())
	}
	return 0
}

// gcPercentSetting shadows the GC percent this module set (reading it back through
// debug.SetGCPercent would mean setting it); -2 until the first set.
var gcPercentSetting = -2

func gcPercent() int {
	if gcPercentSetting >= -1 {
		return gcPercentSetting
	}
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	gcPercentSetting = p
	return p
}

// memLimit is the Go memory limit in bytes, 0 for none (Go's default, MaxInt64).
func memLimit() int64 {
	v := debug.SetMemoryLimit(-1)
	if v == math.MaxInt64 {
		return 0
	}
	return v
}

// runtimeConfigs are the Go runtime settings as module configs. Their defaults are
// what the old module arguments asked for, else what Go uses now, so loading with
// "gcpercent 50" and without any charon.gcpercent line behaves as before.
func runtimeConfigs(s runtimeSettings) []NumericConfig {
	procs := int64(runtime.GOMAXPROCS(0))
	if s.maxProcs > 0 {
		procs = int64(s.maxProcs)
	}
	procs = min(max(procs, minGoMaxProcs), maxGoMaxProcs)
	gc := int64(gcPercent())
	if s.gcPercent >= -1 {
		gc = int64(s.gcPercent)
	}
	var mem int64
	if s.memLimit > 0 {
		mem = s.memLimit
	}
	return []NumericConfig{
		{
			Name: argGoMaxProcs, Default: procs, Min: minGoMaxProcs, Max: maxGoMaxProcs,
			Get: func() int64 { return int64(runtime.GOMAXPROCS(0)) },
			Set: func(v int64) error { runtime.GOMAXPROCS(int(v)); return nil },
		},
		{
			Name: argGCPercent, Default: gc, Min: minGCPercent, Max: maxGCPercent,
			Get: func() int64 { return int64(gcPercent()) },
			Set: func(v int64) error { debug.SetGCPercent(int(v)); gcPercentSetting = int(v); return nil },
		},
		{
			Name: argMemLimit, Default: mem, Min: 0, Max: math.MaxInt64, Memory: true,
			Get: memLimit,
			Set: func(v int64) error {
				if v == 0 {
					v = math.MaxInt64
				}
				debug.SetMemoryLimit(v)
				return nil
			},
		},
	}
}

// setupRuntime turns the Go runtime settings into module configs (the old module
// arguments become their defaults, with a log line saying they are the old way).
// On a server without module configs the arguments are applied directly.
func (c Ctx) setupRuntime(s runtimeSettings, legacy []string) error {
	for _, name := range legacy {
		c.Log(LogNotice, fmt.Sprintf("charon: module argument %s is the old way to set it; "+
			"use the config charon.%s (redis.conf, CONFIG SET, MODULE LOADEX ... CONFIG)", name, name))
	}
	if !HasAPI("RedisModule_RegisterNumericConfig") || !HasAPI("RedisModule_LoadConfigs") {
		s.apply()
		return nil
	}
	for _, cfg := range runtimeConfigs(s) {
		if err := c.RegisterNumericConfig(cfg); err != nil {
			return err
		}
	}
	return nil
}
