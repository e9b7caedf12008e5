/* type_rate.c: the charon-rl data type's callbacks and their methods table.
 *
 * A value is one cshim_blob (RedisModule_Alloc memory, so INFO memory, MEMORY USAGE
 * and maxmemory see it) holding the encoding that module/rate defines (FORMAT.md).
 * Every callback is C and never calls Go: rdb_save and aof_rewrite run in the fork
 * child of BGSAVE / BGREWRITEAOF / full sync, where the Go runtime cannot run. */
#include <string.h>

#include "redismodule.h"
#include "cshim.h"
#include "rate_format.h"
#include "type_rate.h"

/* The level at which a refused value is logged, as Redis logs its own refused
 * payloads (rdb.c rdbReportError): verbose for a RESTORE (the client gets the
 * error; a fuzzer must not flood the log), warning while loading an RDB file or a
 * full sync, where the server then stops and the reason must be seen. */
static const char *refused_level(RedisModuleIO *io) {
    RedisModuleCtx *ctx = RedisModule_GetContextFromIO ? RedisModule_GetContextFromIO(io) : NULL;
    if (ctx == NULL) return "warning";
    int flags = RedisModule_GetContextFlags(ctx);
    return (flags & (REDISMODULE_CTX_FLAGS_LOADING | REDISMODULE_CTX_FLAGS_ASYNC_LOADING)) ? "warning" : "verbose";
}

static void *rate_rdb_load(RedisModuleIO *io, int encver) {
    if (encver < CHARON_RATE_ENC_V1 || encver > CHARON_RATE_ENC_CURRENT) {
        RedisModule_LogIOError(io, refused_level(io), "charon: %s value has encoding version %d; this module reads 1..%d",
                               CHARON_RATE_TYPE_NAME, encver, CHARON_RATE_ENC_CURRENT);
        return NULL;
    }
    size_t len = 0;
    char *buf = RedisModule_LoadStringBuffer(io, &len);
    if (RedisModule_IsIOError(io) || buf == NULL) {
        if (buf) RedisModule_Free(buf);
        return NULL;
    }
    /* Treat the payload as hostile (RESTORE): bound the length, then validate
     * every count and length inside it before accepting it. */
    if (len > CSHIM_BLOB_MAX || !charon_rate_check((const unsigned char *)buf, len)) {
        RedisModule_LogIOError(io, refused_level(io), "charon: corrupt %s value (%zu bytes) refused", CHARON_RATE_TYPE_NAME, len);
        RedisModule_Free(buf);
        return NULL;
    }
    cshim_blob *b = cshim_blob_alloc(len);
    if (len) memcpy(b->data, buf, len);
    RedisModule_Free(buf);
    return b;
}

static void rate_rdb_save(RedisModuleIO *io, void *value) {
    const cshim_blob *b = value;
    RedisModule_SaveStringBuffer(io, (const char *)b->data, b->len);
}

static void rate_aof_rewrite(RedisModuleIO *aof, RedisModuleString *key, void *value) {
    const cshim_blob *b = value;
    RedisModule_EmitAOF(aof, CHARON_RATE_LOAD_COMMAND, "sb", key, (const char *)b->data, (size_t)b->len);
}

static void rate_digest(RedisModuleDigest *md, void *value) {
    const cshim_blob *b = value;
    RedisModule_DigestAddStringBuffer(md, (const char *)b->data, b->len);
    RedisModule_DigestEndSequence(md);
}

int cshim_rate_type_create(RedisModuleCtx *ctx) {
    RedisModuleTypeMethods methods = {
        .version = REDISMODULE_TYPE_METHOD_VERSION,
        .rdb_load = rate_rdb_load,
        .rdb_save = rate_rdb_save,
        .aof_rewrite = rate_aof_rewrite,
        .mem_usage = cshim_blob_mem_usage,
        .free = cshim_blob_free,
        .digest = rate_digest,
        .free_effort = cshim_blob_free_effort,
        .copy = cshim_blob_copy,
        /* RedisModule_DefragAlloc is present since 6.2; without it, no defrag. */
        .defrag = RedisModule_DefragAlloc ? cshim_defrag_block : NULL,
    };
    RedisModuleType *t = RedisModule_CreateDataType(ctx, CHARON_RATE_TYPE_NAME, CHARON_RATE_ENC_CURRENT, &methods);
    if (t == NULL) return REDISMODULE_ERR;
    return cshim_type_register(CHARON_RATE_TYPE_NAME, t, charon_rate_check);
}
