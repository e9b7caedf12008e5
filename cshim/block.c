/* block.c: blocked clients and timers for CHARON.RESERVE ... BLOCK.
 *
 * A waiting RESERVE is blocked with RedisModule_BlockClientOnKeys on every key of its
 * request, so that Redis keeps the client's timeout, CLIENT UNBLOCK, disconnects and
 * cluster redirection (a slot that moves away) for us. The module decides itself when
 * a waiter is served (first come, first served per key, which Redis's per-key order
 * cannot express across keys): it calls RedisModule_UnblockClient, which runs the
 * timeout callback in the waiter's own context (at once on Redis 7.0 and Valkey, in
 * the next event-loop turn on Redis 7.2 and later), where the grant is made and
 * replied. The reply callback that key readiness triggers therefore always declines.
 *
 * Each waiter is a non-zero integer id (the privdata), never a Go pointer. Timers carry
 * an id the same way. Every callback forwards to one Go entry point in rm. */
#include <stdint.h>

#include "redismodule.h"
#include "cshim.h"

static int block_reply(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    (void)ctx;
    (void)argv;
    (void)argc;
    return REDISMODULE_ERR; /* served only through block_timeout (see above) */
}

static int block_timeout(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    uint64_t id = (uint64_t)(uintptr_t)RedisModule_GetBlockedClientPrivateData(ctx);
    charonGoBlockTimeout(ctx, argv, argc, id);
    return REDISMODULE_OK;
}

static void block_free(RedisModuleCtx *ctx, void *privdata) { charonGoBlockFree(ctx, (uint64_t)(uintptr_t)privdata); }

static void block_disconnect(RedisModuleCtx *ctx, RedisModuleBlockedClient *bc) {
    (void)bc;
    charonGoBlockDisconnect(ctx, (uint64_t)(uintptr_t)RedisModule_GetBlockedClientPrivateData(ctx));
}

int cshim_can_block(RedisModuleCtx *ctx) {
    int f = RedisModule_GetContextFlags(ctx);
    return !(f & (REDISMODULE_CTX_FLAGS_MULTI | REDISMODULE_CTX_FLAGS_LUA | REDISMODULE_CTX_FLAGS_DENY_BLOCKING |
                  REDISMODULE_CTX_FLAGS_REPLICATED | REDISMODULE_CTX_FLAGS_LOADING));
}

RedisModuleBlockedClient *cshim_block_on_keys(RedisModuleCtx *ctx, RedisModuleString **keys, int nkeys,
                                              long long timeout_ms, uint64_t id) {
    if (id == 0) return NULL; /* privdata must not be NULL: it is freed through block_free */
    RedisModuleBlockedClient *bc = RedisModule_BlockClientOnKeys(ctx, block_reply, block_timeout, block_free,
                                                                timeout_ms, keys, nkeys, (void *)(uintptr_t)id);
    if (bc) RedisModule_SetDisconnectCallback(bc, block_disconnect);
    return bc;
}

int cshim_unblock(RedisModuleBlockedClient *bc) { return RedisModule_UnblockClient(bc, NULL); }

static void timer_fired(RedisModuleCtx *ctx, void *data) { charonGoTimer(ctx, (uint64_t)(uintptr_t)data); }

uint64_t cshim_timer_create(RedisModuleCtx *ctx, long long ms, uint64_t id) {
    return RedisModule_CreateTimer(ctx, ms, timer_fired, (void *)(uintptr_t)id);
}

int cshim_timer_stop(RedisModuleCtx *ctx, uint64_t timer) { return RedisModule_StopTimer(ctx, timer, NULL); }

int cshim_select_db(RedisModuleCtx *ctx, int db) { return RedisModule_SelectDb(ctx, db); }

int cshim_selected_db(RedisModuleCtx *ctx) { return RedisModule_GetSelectedDb(ctx); }

RedisModuleString *cshim_hold_string(RedisModuleString *s) { return RedisModule_HoldString(NULL, s); }

void cshim_release_string(RedisModuleString *s) { RedisModule_FreeString(NULL, s); }

int cshim_keys_local(RedisModuleCtx *ctx, RedisModuleString **keys, int nkeys) {
    if (!(RedisModule_GetContextFlags(ctx) & REDISMODULE_CTX_FLAGS_CLUSTER)) return 1;
    /* RedisModule_Call applies the cluster check of a client command (getNodeByQuery):
     * it fails when a key of the slot is missing while the slot migrates, or when the
     * slot is served elsewhere. */
    RedisModuleCallReply *r = RedisModule_Call(ctx, "EXISTS", "v", keys, (size_t)nkeys);
    if (r == NULL) return 0;
    int ok = RedisModule_CallReplyType(r) != REDISMODULE_REPLY_ERROR;
    RedisModule_FreeCallReply(r);
    return ok;
}
