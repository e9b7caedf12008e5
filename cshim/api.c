/* api.c: one thin wrapper per Redis module API pointer that Go uses (cgo can call
 * neither function pointers nor variadic functions), plus a few batch helpers for
 * hot paths so that one Go->C crossing does the work of several API calls. */
#include <string.h>

#include "redismodule.h"
#include "cshim.h"

/* Copies of Go strings are made NUL-terminated on the stack when they are short,
 * on the heap otherwise: the API wants C strings for these. */
#define CSHIM_STACK_STR 256

int cshim_server_version(void) {
    return RedisModule_GetServerVersion ? RedisModule_GetServerVersion() : 0;
}

int cshim_has_api(const char *name) {
    void *p = NULL;
    if (RedisModule_GetApi == NULL) return 0;
    return RedisModule_GetApi(name, &p) == REDISMODULE_OK && p != NULL;
}

void cshim_log(RedisModuleCtx *ctx, const char *level, const char *msg, size_t len) {
    if (len > 8192) len = 8192;
    RedisModule_Log(ctx, level, "%.*s", (int)len, msg);
}

long long cshim_milliseconds(void) { return RedisModule_Milliseconds(); }

long long cshim_client_clock(RedisModuleCtx *ctx) {
    if (RedisModule_GetContextFlags(ctx) & (REDISMODULE_CTX_FLAGS_REPLICATED | REDISMODULE_CTX_FLAGS_LOADING)) return -1;
    return RedisModule_Milliseconds();
}

int cshim_context_flags(RedisModuleCtx *ctx) { return RedisModule_GetContextFlags(ctx); }

int cshim_is_resp3(RedisModuleCtx *ctx) {
    return (RedisModule_GetContextFlags(ctx) & REDISMODULE_CTX_FLAGS_RESP3) != 0;
}

/* ---- strings ---- */

const char *cshim_string_ptr_len(RedisModuleString *s, size_t *len) {
    return RedisModule_StringPtrLen(s, len);
}

int cshim_string_to_long_long(RedisModuleString *s, long long *out) {
    return RedisModule_StringToLongLong(s, out);
}

void cshim_args_views(RedisModuleString **argv, int argc, const char **ptrs, size_t *lens) {
    for (int i = 0; i < argc; i++) ptrs[i] = RedisModule_StringPtrLen(argv[i], &lens[i]);
}

RedisModuleString *cshim_create_string(RedisModuleCtx *ctx, const char *p, size_t len) {
    return RedisModule_CreateString(ctx, p, len);
}

RedisModuleString *cshim_create_string_ll(RedisModuleCtx *ctx, long long v) {
    return RedisModule_CreateStringFromLongLong(ctx, v);
}

void cshim_free_string(RedisModuleCtx *ctx, RedisModuleString *s) { RedisModule_FreeString(ctx, s); }

/* ---- replies ---- */

int cshim_wrong_arity(RedisModuleCtx *ctx) { return RedisModule_WrongArity(ctx); }

int cshim_reply_wrongtype(RedisModuleCtx *ctx) {
    return RedisModule_ReplyWithError(ctx, REDISMODULE_ERRORMSG_WRONGTYPE);
}

int cshim_reply_long_long(RedisModuleCtx *ctx, long long v) { return RedisModule_ReplyWithLongLong(ctx, v); }

int cshim_reply_double(RedisModuleCtx *ctx, double v) { return RedisModule_ReplyWithDouble(ctx, v); }

typedef int (*cshim_cstr_reply_fn)(RedisModuleCtx *ctx, const char *s);

/* Calls fn with a NUL-terminated copy of p[0:len]; newlines would break the
 * protocol of simple strings and errors, so they become spaces. */
static int reply_cstr(RedisModuleCtx *ctx, cshim_cstr_reply_fn fn, const char *p, size_t len) {
    char stackbuf[CSHIM_STACK_STR];
    char *buf = len < sizeof(stackbuf) ? stackbuf : RedisModule_Alloc(len + 1);
    for (size_t i = 0; i < len; i++) buf[i] = (p[i] == '\r' || p[i] == '\n') ? ' ' : p[i];
    buf[len] = '\0';
    int rc = fn(ctx, buf);
    if (buf != stackbuf) RedisModule_Free(buf);
    return rc;
}

int cshim_reply_simple(RedisModuleCtx *ctx, const char *p, size_t len) {
    return reply_cstr(ctx, RedisModule_ReplyWithSimpleString, p, len);
}

int cshim_reply_error(RedisModuleCtx *ctx, const char *p, size_t len) {
    return reply_cstr(ctx, RedisModule_ReplyWithError, p, len);
}

int cshim_reply_bulk(RedisModuleCtx *ctx, const char *p, size_t len) {
    return RedisModule_ReplyWithStringBuffer(ctx, p ? p : "", len);
}

int cshim_reply_null(RedisModuleCtx *ctx) { return RedisModule_ReplyWithNull(ctx); }

int cshim_reply_array(RedisModuleCtx *ctx, long n) { return RedisModule_ReplyWithArray(ctx, n); }

/* A map under RESP3; under RESP2 Redis itself emits a flat array of 2n elements. */
int cshim_reply_map(RedisModuleCtx *ctx, long n) { return RedisModule_ReplyWithMap(ctx, n); }

int cshim_reply_long_longs(RedisModuleCtx *ctx, const int64_t *vals, int n) {
    RedisModule_ReplyWithArray(ctx, n);
    for (int i = 0; i < n; i++) RedisModule_ReplyWithLongLong(ctx, vals[i]);
    return REDISMODULE_OK;
}

int cshim_reply_int_fields(RedisModuleCtx *ctx, const char *const *names, const int64_t *vals, int n) {
    return cshim_reply_int_fields_as(ctx, cshim_is_resp3(ctx), names, vals, n);
}

int cshim_reply_int_fields_as(RedisModuleCtx *ctx, int resp3, const char *const *names, const int64_t *vals, int n) {
    if (resp3) {
        RedisModule_ReplyWithMap(ctx, n);
        for (int i = 0; i < n; i++) {
            RedisModule_ReplyWithSimpleString(ctx, names[i]);
            RedisModule_ReplyWithLongLong(ctx, vals[i]);
        }
        return REDISMODULE_OK;
    }
    return cshim_reply_long_longs(ctx, vals, n);
}

/* ---- replication ---- */

int cshim_replicate_verbatim(RedisModuleCtx *ctx) { return RedisModule_ReplicateVerbatim(ctx); }

int cshim_replicate_v(RedisModuleCtx *ctx, const char *cmd, size_t cmdlen, RedisModuleString **argv, size_t argc) {
    char name[64];
    if (cmdlen >= sizeof(name)) return REDISMODULE_ERR;
    memcpy(name, cmd, cmdlen);
    name[cmdlen] = '\0';
    return RedisModule_Replicate(ctx, name, "v", argv, argc);
}

void cshim_key_positions(RedisModuleCtx *ctx, const int *pos, const int *flags, int n) {
    for (int i = 0; i < n; i++) RedisModule_KeyAtPosWithFlags(ctx, pos[i], flags[i]);
}

/* ---- keys ---- */

RedisModuleKey *cshim_open_key(RedisModuleCtx *ctx, RedisModuleString *name, int mode) {
    int m = REDISMODULE_READ | (mode == CSHIM_WRITE ? REDISMODULE_WRITE : 0);
    return RedisModule_OpenKey(ctx, name, m);
}

void cshim_close_key(RedisModuleKey *k) {
    if (k) RedisModule_CloseKey(k);
}

int cshim_key_type(RedisModuleKey *k) { return k ? RedisModule_KeyType(k) : REDISMODULE_KEYTYPE_EMPTY; }

size_t cshim_value_length(RedisModuleKey *k) { return k ? RedisModule_ValueLength(k) : 0; }

int cshim_hash_field_prefix(RedisModuleCtx *ctx, RedisModuleString *name, const char *field, const char *prefix,
                            size_t plen) {
    RedisModuleKey *k = RedisModule_OpenKey(ctx, name, REDISMODULE_READ);
    int found = 0;
    if (k != NULL && RedisModule_KeyType(k) == REDISMODULE_KEYTYPE_HASH) {
        RedisModuleString *v = NULL;
        if (RedisModule_HashGet(k, REDISMODULE_HASH_CFIELDS, field, &v, NULL) == REDISMODULE_OK && v != NULL) {
            size_t n = 0;
            const char *p = RedisModule_StringPtrLen(v, &n);
            found = n >= plen && memcmp(p, prefix, plen) == 0;
            RedisModule_FreeString(ctx, v);
        }
    }
    if (k != NULL) RedisModule_CloseKey(k);
    return found;
}

int cshim_delete_key(RedisModuleKey *k) { return RedisModule_DeleteKey(k); }

int cshim_set_abs_expire(RedisModuleKey *k, long long unixms) { return RedisModule_SetAbsExpire(k, unixms); }

long long cshim_get_abs_expire(RedisModuleKey *k) { return k ? RedisModule_GetAbsExpire(k) : REDISMODULE_NO_EXPIRE; }

void cshim_key_written(RedisModuleCtx *ctx, RedisModuleString *name, const char *event) {
    RedisModule_SignalModifiedKey(ctx, name);
    RedisModule_NotifyKeyspaceEvent(ctx, REDISMODULE_NOTIFY_MODULE, event, name);
}

int cshim_zset_incrby(RedisModuleCtx *ctx, RedisModuleKey *k, RedisModuleString *name, const char *event,
                      RedisModuleString *member, double delta, double *newscore) {
    if (RedisModule_KeyType(k) != REDISMODULE_KEYTYPE_EMPTY && RedisModule_KeyType(k) != REDISMODULE_KEYTYPE_ZSET)
        return CSHIM_WRONGTYPE;
    int flags = 0;
    if (RedisModule_ZsetIncrby(k, delta, member, &flags, newscore) != REDISMODULE_OK) return CSHIM_ERR;
    cshim_key_written(ctx, name, event);
    return CSHIM_OK;
}

int cshim_zset_rem(RedisModuleKey *k, RedisModuleString *member, int *deleted) {
    *deleted = 0;
    int t = RedisModule_KeyType(k);
    if (t == REDISMODULE_KEYTYPE_EMPTY) return CSHIM_OK;
    if (t != REDISMODULE_KEYTYPE_ZSET) return CSHIM_WRONGTYPE;
    return RedisModule_ZsetRem(k, member, deleted) == REDISMODULE_OK ? CSHIM_OK : CSHIM_ERR;
}

int cshim_key_blob(RedisModuleKey *k, RedisModuleType *t, const unsigned char **data, size_t *len, size_t *cap) {
    *data = NULL;
    *len = 0;
    *cap = 0;
    int kt = cshim_key_type(k);
    if (kt == REDISMODULE_KEYTYPE_EMPTY) return 1;
    if (kt != REDISMODULE_KEYTYPE_MODULE || RedisModule_ModuleTypeGetType(k) != t) return CSHIM_WRONGTYPE;
    cshim_blob *b = RedisModule_ModuleTypeGetValue(k);
    *data = b->data;
    *len = b->len;
    /* A value may be rewritten in place up to the block's cap (cshim_set_blob with
     * p == data). */
    *cap = b->cap;
    return CSHIM_OK;
}

int cshim_open_blob(RedisModuleCtx *ctx, RedisModuleString *name, int mode, RedisModuleType *t,
                    RedisModuleKey **key, const unsigned char **data, size_t *len, size_t *cap) {
    *key = cshim_open_key(ctx, name, mode);
    return cshim_key_blob(*key, t, data, len, cap);
}

/* A value keeps its block while it fits, so that a grant that appends a few bytes
 * calls no allocator; a block more than a quarter empty is given back (MEMORY USAGE
 * of a live key is then at most 4/3 of what a reload would allocate). */
static int oversized(size_t n, size_t cap) { return cap >= 64 && n < cap - cap / 4; }

int cshim_set_blob(RedisModuleKey *k, RedisModuleType *t, const unsigned char *p, size_t n) {
    if (n > CSHIM_BLOB_MAX) return CSHIM_TOOBIG;
    int kt = RedisModule_KeyType(k);
    if (kt == REDISMODULE_KEYTYPE_MODULE && RedisModule_ModuleTypeGetType(k) == t) {
        cshim_blob *old = RedisModule_ModuleTypeGetValue(k);
        /* p == old->data: the caller rewrote the value in place, within cap. */
        int inplace = p == old->data;
        if (n <= old->cap && !oversized(n, old->cap)) {
            /* The common case: no allocator call at all. */
            if (n && !inplace) memmove(old->data, p, n);
            old->len = (uint32_t)n;
            return CSHIM_OK;
        }
        /* Grow, or give back most of the block. realloc keeps the first bytes, so a
         * value rewritten in place (then only shrinking) survives it. */
        cshim_blob *b = cshim_blob_resize(old, n);
        if (n && !inplace) memcpy(b->data, p, n);
        if (b != old) {
            /* Swap the pointer without the free callback running on the old block. */
            void *prev = NULL;
            if (RedisModule_ModuleTypeReplaceValue(k, t, b, &prev) != REDISMODULE_OK) return CSHIM_ERR;
        }
        return CSHIM_OK;
    }
    if (kt != REDISMODULE_KEYTYPE_EMPTY) return CSHIM_WRONGTYPE;
    cshim_blob *b = cshim_blob_alloc(n);
    if (n) memcpy(b->data, p, n);
    if (RedisModule_ModuleTypeSetValue(k, t, b) != REDISMODULE_OK) {
        RedisModule_Free(b);
        return CSHIM_ERR;
    }
    return CSHIM_OK;
}

int cshim_lengths_of(RedisModuleCtx *ctx, RedisModuleString **argv, int n, int want, int64_t *out, int *bad) {
    for (int i = 0; i < n; i++) {
        RedisModuleKey *k = RedisModule_OpenKey(ctx, argv[i], REDISMODULE_READ);
        int kt = cshim_key_type(k);
        if (kt != REDISMODULE_KEYTYPE_EMPTY && kt != want) {
            cshim_close_key(k);
            *bad = i;
            return CSHIM_WRONGTYPE;
        }
        out[i] = (int64_t)cshim_value_length(k);
        cshim_close_key(k);
    }
    return CSHIM_OK;
}

/* ---- command info ---- */

int cshim_set_command_info(RedisModuleCtx *ctx, const char *name, const char *summary,
                           const char *complexity, const char *since, int arity,
                           const cshim_keyspec *specs, int nspecs) {
    RedisModuleCommand *cmd = RedisModule_GetCommand(ctx, name);
    if (cmd == NULL) return REDISMODULE_ERR;
    /* Redis copies what it keeps, but the table is small and lives as long as the
     * module, so it is simply never freed. */
    RedisModuleCommandKeySpec *ks = RedisModule_Calloc((size_t)nspecs + 1, sizeof(*ks));
    for (int i = 0; i < nspecs; i++) {
        ks[i].flags = specs[i].flags;
        if (specs[i].keyword) {
            ks[i].begin_search_type = REDISMODULE_KSPEC_BS_KEYWORD;
            ks[i].bs.keyword.keyword = specs[i].keyword;
            ks[i].bs.keyword.startfrom = specs[i].index;
        } else {
            ks[i].begin_search_type = REDISMODULE_KSPEC_BS_INDEX;
            ks[i].bs.index.pos = specs[i].index;
        }
        ks[i].find_keys_type = REDISMODULE_KSPEC_FK_RANGE;
        ks[i].fk.range.lastkey = specs[i].lastkey;
        ks[i].fk.range.keystep = specs[i].keystep;
        ks[i].fk.range.limit = specs[i].limit;
    }
    RedisModuleCommandInfo info = {
        .version = REDISMODULE_COMMAND_INFO_VERSION,
        .summary = summary,
        .complexity = complexity,
        .since = since,
        .arity = arity,
        .key_specs = nspecs ? ks : NULL,
    };
    return RedisModule_SetCommandInfo(cmd, &info);
}

int cshim_set_acl_categories(RedisModuleCtx *ctx, const char *name, const char *categories) {
    /* RedisModule_SetCommandACLCategories arrived in Redis 7.2. */
    int (*set)(RedisModuleCommand *, const char *) = NULL;
    if (RedisModule_GetApi("RedisModule_SetCommandACLCategories", (void **)&set) != REDISMODULE_OK || set == NULL)
        return CSHIM_NOAPI;
    RedisModuleCommand *cmd = RedisModule_GetCommand(ctx, name);
    if (cmd == NULL) return REDISMODULE_ERR;
    return set(cmd, categories);
}

/* ---- hot-path batches ---- */

int cshim_store_blob(RedisModuleCtx *ctx, RedisModuleKey *k, RedisModuleString *name, const char *event,
                     RedisModuleType *t, const unsigned char *p, size_t n, long long expire_at) {
    int rc = cshim_set_blob(k, t, p, n);
    if (rc != CSHIM_OK) return rc;
    /* The value is stored: whatever happens to the expiry, the key was written. */
    cshim_key_written(ctx, name, event);
    if (expire_at > 0 && RedisModule_SetAbsExpire(k, expire_at) != REDISMODULE_OK) return CSHIM_ERR;
    return CSHIM_OK;
}

int cshim_replicate_with_option(RedisModuleCtx *ctx, const char *cmd, size_t cmdlen, RedisModuleString **argv,
                                int argc, int skip, RedisModuleString *name, long long value, int skip2,
                                RedisModuleString *name2, long long value2) {
    RedisModuleString *stackv[64];
    RedisModuleString **v = argc + 4 <= 64 ? stackv : RedisModule_Alloc(sizeof(*v) * ((size_t)argc + 4));
    int n = 0;
    for (int i = 1; i < argc; i++)
        if (i != skip && i != skip + 1 && i != skip2 && i != skip2 + 1) v[n++] = argv[i];
    RedisModuleString *val = RedisModule_CreateStringFromLongLong(ctx, value);
    RedisModuleString *val2 = NULL;
    v[n++] = name;
    v[n++] = val;
    if (name2 != NULL) {
        val2 = RedisModule_CreateStringFromLongLong(ctx, value2);
        v[n++] = name2;
        v[n++] = val2;
    }
    /* Replicate takes its own references, so the values can go right away. */
    int rc = cshim_replicate_v(ctx, cmd, cmdlen, v, (size_t)n);
    RedisModule_FreeString(ctx, val);
    if (val2) RedisModule_FreeString(ctx, val2);
    if (v != stackv) RedisModule_Free(v);
    return rc;
}
