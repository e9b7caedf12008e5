/* type_hold.c: the charon-hd data type's callbacks and their methods table.
 *
 * A value is one cshim_blob (RedisModule_Alloc memory) holding the in-memory layout
 * that module/hold defines (FORMAT.md) and Go mutates in place. RDB, RESTORE, the AOF
 * and DEBUG DIGEST see the canonical persisted form instead, so they do not depend on
 * slots or capacity. Every callback is C and never calls Go: rdb_save and aof_rewrite
 * run in the fork child of BGSAVE / BGREWRITEAOF / full sync. */
#include <string.h>

#include "redismodule.h"
#include "cshim.h"
#include "hold_format.h"
#include "type_hold.h"

static void *hold_rdb_load(RedisModuleIO *io, int encver) {
    if (encver < CHARON_HOLD_ENC_V1 || encver > CHARON_HOLD_ENC_CURRENT) {
        RedisModule_LogIOError(io, "warning", "charon: %s value has encoding version %d; this module reads 1..%d",
                               CHARON_HOLD_TYPE_NAME, encver, CHARON_HOLD_ENC_CURRENT);
        return NULL;
    }
    size_t len = 0;
    char *buf = RedisModule_LoadStringBuffer(io, &len);
    if (RedisModule_IsIOError(io) || buf == NULL) {
        if (buf) RedisModule_Free(buf);
        return NULL;
    }
    /* Hostile bytes (RESTORE): check every field, then build; a repeated id or token
     * hash fails. The form's own version word must be the one the type says. */
    long m = -1;
    long n = len > CSHIM_BLOB_MAX ? -1 : charon_hold_check_shape((const unsigned char *)buf, len, &m);
    if (n >= 0 && (unsigned char)buf[0] != (unsigned char)encver) n = -1;
    cshim_blob *b = NULL;
    if (n >= 0) {
        size_t size = charon_hold_mem_size(charon_hold_cap_for((uint64_t)n), charon_hold_tokcap_for((uint64_t)m));
        if (size <= CSHIM_BLOB_MAX) b = cshim_blob_alloc(size);
        if (b != NULL && !charon_hold_build((const unsigned char *)buf, n, m, b->data)) {
            RedisModule_Free(b);
            b = NULL;
        }
    }
    if (b == NULL)
        RedisModule_LogIOError(io, "warning", "charon: corrupt %s value (%zu bytes) refused", CHARON_HOLD_TYPE_NAME, len);
    RedisModule_Free(buf);
    return b;
}

/* persisted returns the value's persisted form in a RedisModule_Alloc buffer. */
static unsigned char *persisted(const cshim_blob *b, size_t *len) {
    *len = charon_hold_persisted_size(b->data);
    unsigned char *out = RedisModule_Alloc(*len);
    charon_hold_serialize(b->data, out);
    return out;
}

static void hold_rdb_save(RedisModuleIO *io, void *value) {
    size_t len;
    unsigned char *p = persisted(value, &len);
    RedisModule_SaveStringBuffer(io, (const char *)p, len);
    RedisModule_Free(p);
}

static void hold_aof_rewrite(RedisModuleIO *aof, RedisModuleString *key, void *value) {
    size_t len;
    unsigned char *p = persisted(value, &len);
    RedisModule_EmitAOF(aof, CHARON_HOLD_LOAD_COMMAND, "sb", key, (const char *)p, len);
    RedisModule_Free(p);
}

static void hold_digest(RedisModuleDigest *md, void *value) {
    size_t len;
    unsigned char *p = persisted(value, &len);
    RedisModule_DigestAddStringBuffer(md, (const char *)p, len);
    RedisModule_DigestEndSequence(md);
    RedisModule_Free(p);
}

/* The registry's check is the persisted form's (CHARON.LOADHOLD validates with it). */
static int hold_check(const unsigned char *p, size_t n) { return charon_hold_check(p, n) >= 0; }

int cshim_hold_type_create(RedisModuleCtx *ctx) {
    RedisModuleTypeMethods methods = {
        .version = REDISMODULE_TYPE_METHOD_VERSION,
        .rdb_load = hold_rdb_load,
        .rdb_save = hold_rdb_save,
        .aof_rewrite = hold_aof_rewrite,
        .mem_usage = cshim_blob_mem_usage,
        .free = cshim_blob_free,
        .digest = hold_digest,
        .free_effort = cshim_blob_free_effort,
        .copy = cshim_blob_copy,
        /* RedisModule_DefragAlloc is present since 6.2; without it, no defrag. */
        .defrag = RedisModule_DefragAlloc ? cshim_defrag_block : NULL,
    };
    RedisModuleType *t = RedisModule_CreateDataType(ctx, CHARON_HOLD_TYPE_NAME, CHARON_HOLD_ENC_CURRENT, &methods);
    if (t == NULL) return REDISMODULE_ERR;
    return cshim_type_register(CHARON_HOLD_TYPE_NAME, t, hold_check);
}
