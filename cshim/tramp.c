/* tramp.c: command trampolines. Redis calls a plain C function per command; each
 * one here forwards its slot number to cshim_dispatch (frame.c), which runs a frame
 * command's frame or calls the single exported Go dispatcher, which indexes the Go
 * command table filled at load. No Go pointer ever reaches C. */
#include "redismodule.h"
#include "cshim.h"

#define TRAMP(g, k) \
    static int tramp_##g##_##k(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) { \
        return cshim_dispatch((g) * 8 + (k), ctx, argv, argc); \
    }
#define TRAMP8(g) TRAMP(g, 0) TRAMP(g, 1) TRAMP(g, 2) TRAMP(g, 3) TRAMP(g, 4) TRAMP(g, 5) TRAMP(g, 6) TRAMP(g, 7)
#define REF8(g) tramp_##g##_0, tramp_##g##_1, tramp_##g##_2, tramp_##g##_3, \
                tramp_##g##_4, tramp_##g##_5, tramp_##g##_6, tramp_##g##_7

/* 16 groups of 8 trampolines: slot = group * 8 + k. */
TRAMP8(0) TRAMP8(1) TRAMP8(2) TRAMP8(3) TRAMP8(4) TRAMP8(5) TRAMP8(6) TRAMP8(7)
TRAMP8(8) TRAMP8(9) TRAMP8(10) TRAMP8(11) TRAMP8(12) TRAMP8(13) TRAMP8(14) TRAMP8(15)

static RedisModuleCmdFunc const tramps[CSHIM_MAX_COMMANDS] = {
    REF8(0), REF8(1), REF8(2), REF8(3), REF8(4), REF8(5), REF8(6), REF8(7),
    REF8(8), REF8(9), REF8(10), REF8(11), REF8(12), REF8(13), REF8(14), REF8(15),
};

int cshim_create_command(RedisModuleCtx *ctx, int slot, const char *name, const char *flags,
                         int firstkey, int lastkey, int keystep) {
    if (slot < 0 || slot >= CSHIM_MAX_COMMANDS) return REDISMODULE_ERR;
    return RedisModule_CreateCommand(ctx, name, tramps[slot], flags, firstkey, lastkey, keystep);
}
