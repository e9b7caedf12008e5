// Package cshim is the C side of Charon's boundary with Redis: the pinned
// redismodule.h, RedisModule_OnLoad, command trampolines, thin wrappers for the
// module API's function pointers, and the data types' callbacks. It has no Go API;
// package rm calls the functions declared in cshim.h, and importing cshim links them.
package cshim

// #cgo CFLAGS: -std=gnu11 -O2 -Wall -Wextra -Werror -fvisibility=default
// #include "cshim.h"
import "C"
