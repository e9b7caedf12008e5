/* floor.c: a benchmark-only module, not part of Charon. FLOOR.RATE key [GLOBAL gkey] [args...] makes
 * the Redis module API calls a CHARON.RATE grant makes, in the same order, from C,
 * and computes nothing: open the key for writing, read its value (a 64-byte block of
 * its own type), rewrite a byte in place (or create the value), set the absolute
 * expiry, signal the key, raise a keyspace event, replicate the command with AT
 * appended, and reply with 11 integers. Its cost is the floor any module command doing
 * that work pays on the server, whatever language computes the decision; make bench
 * measures it next to INCR and CHARON.RATE. Built by tests/bench_rate_test.go. */
#include <string.h>
#include <strings.h>

#include "redismodule.h"

typedef struct floor_blob {
    uint32_t len, cap;
    unsigned char data[64];
} floor_blob;

static RedisModuleType *floor_type;
static RedisModuleString *at_name;

static void *floor_rdb_load(RedisModuleIO *io, int encver) {
    (void)encver;
    size_t n = 0;
    char *buf = RedisModule_LoadStringBuffer(io, &n);
    floor_blob *b = RedisModule_Calloc(1, sizeof(*b));
    b->len = n < sizeof(b->data) ? (uint32_t)n : (uint32_t)sizeof(b->data);
    if (buf) {
        memcpy(b->data, buf, b->len);
        RedisModule_Free(buf);
    }
    return b;
}

static void floor_rdb_save(RedisModuleIO *io, void *value) {
    floor_blob *b = value;
    RedisModule_SaveStringBuffer(io, (const char *)b->data, b->len);
}

static void floor_free(void *value) { RedisModule_Free(value); }

/* Opens name for writing and rewrites its value as a grant does (a byte in place, or
 * a new value), sets its expiry, signals it and raises its event; NULL on WRONGTYPE. */
static RedisModuleKey *floor_write(RedisModuleCtx *ctx, RedisModuleString *name, long long now) {
    RedisModuleKey *k = RedisModule_OpenKey(ctx, name, REDISMODULE_READ | REDISMODULE_WRITE);
    int t = RedisModule_KeyType(k);
    if (t == REDISMODULE_KEYTYPE_EMPTY) {
        floor_blob *b = RedisModule_Calloc(1, sizeof(*b));
        b->len = b->cap = sizeof(b->data);
        RedisModule_ModuleTypeSetValue(k, floor_type, b);
    } else if (t == REDISMODULE_KEYTYPE_MODULE && RedisModule_ModuleTypeGetType(k) == floor_type) {
        floor_blob *b = RedisModule_ModuleTypeGetValue(k);
        b->data[b->len - 1]++;
    } else {
        RedisModule_CloseKey(k);
        return NULL;
    }
    RedisModule_SetAbsExpire(k, now + 1001);
    RedisModule_SignalModifiedKey(ctx, name);
    RedisModule_NotifyKeyspaceEvent(ctx, REDISMODULE_NOTIFY_MODULE, "floor.rate", name);
    return k;
}

/* FLOOR.RATE key [GLOBAL gkey] [args...]: with GLOBAL, the second key gets the same
 * treatment, as CHARON.RATE's global key does (the two-key floor). */
static int floor_rate(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc < 2) return RedisModule_WrongArity(ctx);
    long long now = RedisModule_Milliseconds();
    RedisModuleKey *k = floor_write(ctx, argv[1], now), *gk = NULL;
    if (k == NULL) return RedisModule_ReplyWithError(ctx, REDISMODULE_ERRORMSG_WRONGTYPE);
    if (argc >= 4) {
        size_t n = 0;
        const char *kw = RedisModule_StringPtrLen(argv[2], &n);
        if (n == 6 && strncasecmp(kw, "GLOBAL", 6) == 0) {
            gk = floor_write(ctx, argv[3], now);
            if (gk == NULL) {
                RedisModule_CloseKey(k);
                return RedisModule_ReplyWithError(ctx, REDISMODULE_ERRORMSG_WRONGTYPE);
            }
        }
    }
    RedisModuleString *v[64];
    int n = 0;
    for (int i = 1; i < argc && n < 62; i++) v[n++] = argv[i];
    RedisModuleString *val = RedisModule_CreateStringFromLongLong(ctx, now);
    v[n++] = at_name;
    v[n++] = val;
    RedisModule_Replicate(ctx, "FLOOR.RATE", "v", v, (size_t)n);
    RedisModule_FreeString(ctx, val);
    RedisModule_ReplyWithArray(ctx, 11);
    for (int i = 0; i < 11; i++) RedisModule_ReplyWithLongLong(ctx, i);
    RedisModule_CloseKey(k);
    if (gk != NULL) RedisModule_CloseKey(gk);
    return REDISMODULE_OK;
}

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    (void)argv;
    (void)argc;
    if (RedisModule_Init(ctx, "benchfloor", 1, REDISMODULE_APIVER_1) == REDISMODULE_ERR) return REDISMODULE_ERR;
    RedisModule_SetModuleOptions(ctx, REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED);
    RedisModuleTypeMethods tm = {
        .version = REDISMODULE_TYPE_METHOD_VERSION,
        .rdb_load = floor_rdb_load,
        .rdb_save = floor_rdb_save,
        .free = floor_free,
    };
    floor_type = RedisModule_CreateDataType(ctx, "floor-blb", 1, &tm);
    if (floor_type == NULL) return REDISMODULE_ERR;
    at_name = RedisModule_CreateString(ctx, "AT", 2);
    return RedisModule_CreateCommand(ctx, "floor.rate", floor_rate, "write deny-oom", 1, 1, 1);
}
