// Package engine names the engines that can serve the clients' requests (the Charon
// module, or the same rules as server-side scripts) once, for module/ratelimit and
// module/concurrency, which export it under their own names and docs.
package engine

import (
	"fmt"

	"github.com/charon-redis/charon/module/internal/transport"
)

// Engine is an engine, or Auto: let the client find out which the server has.
type Engine uint8

// The engines, in the order of the clients' exported constants.
const (
	Auto Engine = iota
	Module
	Scripts
)

func (e Engine) String() string {
	switch e {
	case Auto:
		return "auto"
	case Module:
		return "module"
	case Scripts:
		return "scripts"
	}
	return fmt.Sprintf("Engine(%d)", uint8(e))
}

// Use is the transport's setting for e.
func Use(e Engine) transport.Use {
	switch e {
	case Module:
		return transport.UseModule
	case Scripts:
		return transport.UseScripts
	}
	return transport.UseAuto
}

// Of is the Engine of the transport's kind in use (Auto before the first check).
func Of(k transport.Kind) Engine {
	switch k {
	case transport.KindModule:
		return Module
	case transport.KindScripts:
		return Scripts
	}
	return Auto
}
