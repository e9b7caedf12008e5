/* frame.c: the C half of frame commands (see cshim.h). Around the one C->Go crossing
 * of such a command, C opens its keys and gives Go their values, the clock and the
 * arguments; afterwards it stores what Go computed, sets the expiry, signals the
 * keys, replicates and replies. Go computes, and on the common path calls no API. */
#include <string.h>
#include <strings.h>

#include "redismodule.h"
#include "cshim.h"

typedef struct frame_def {
    RedisModuleType *type; /* NULL: not a frame command */
    const char *event;
    const char *keyword; /* key 1 follows it; NULL: one key */
    size_t keywordlen;
    const char *cmd;
    size_t cmdlen;
    const char *const *names;
    int nfields;
} frame_def;

static frame_def defs[CSHIM_MAX_COMMANDS];

/* Commands run on Redis's main thread only, one at a time: one set of buffers (grown
 * when a call needs more, never shrunk) serves them all. */
static const char **arg_ptrs;
static size_t *arg_lens;
static int arg_cap;
static unsigned char *scratch[CSHIM_FRAME_KEYS];
#define CSHIM_FRAME_SCRATCH_KEEP (1u << 20)
static size_t scratch_cap[CSHIM_FRAME_KEYS];

int cshim_frame_define(int slot, RedisModuleType *t, const char *event, const char *keyword, const char *cmd,
                       const char *const *names, int nfields) {
    if (slot < 0 || slot >= CSHIM_MAX_COMMANDS || t == NULL || event == NULL || cmd == NULL || nfields < 1 ||
        nfields > CSHIM_FRAME_FIELDS)
        return REDISMODULE_ERR;
    defs[slot] = (frame_def){t, event, keyword, keyword ? strlen(keyword) : 0, cmd, strlen(cmd), names, nfields};
    return REDISMODULE_OK;
}

unsigned char *cshim_frame_reserve(cshim_frame *f, int i, size_t n) {
    if (i < 0 || i >= CSHIM_FRAME_KEYS || n > CSHIM_BLOB_MAX) return NULL;
    if (scratch_cap[i] < n) {
        size_t c = scratch_cap[i] ? scratch_cap[i] : 256;
        while (c < n) c *= 2;
        scratch[i] = RedisModule_Realloc(scratch[i], c);
        scratch_cap[i] = c;
    }
    f->keys[i].scratch = scratch[i];
    f->keys[i].scratch_cap = scratch_cap[i];
    return scratch[i];
}

static void grow_args(int argc) {
    if (argc <= arg_cap) return;
    int n = argc < 64 ? 64 : argc;
    arg_ptrs = RedisModule_Realloc(arg_ptrs, sizeof(*arg_ptrs) * (size_t)n);
    arg_lens = RedisModule_Realloc(arg_lens, sizeof(*arg_lens) * (size_t)n);
    arg_cap = n;
}

/* The argv index of key 1: the argument after the first one (from argv[2]) equal to
 * the keyword, ignoring case, as Redis's keyword key spec search finds it; -1. */
static int keyword_key(const frame_def *d, int argc) {
    if (d->keyword == NULL) return -1;
    for (int i = 2; i + 1 < argc; i++)
        if (arg_lens[i] == d->keywordlen && strncasecmp(arg_ptrs[i], d->keyword, d->keywordlen) == 0) return i + 1;
    return -1;
}

static void open_key(RedisModuleCtx *ctx, RedisModuleString **argv, const frame_def *d, RedisModuleKey **key,
                     cshim_frame_key *fk) {
    const unsigned char *data = NULL;
    *key = cshim_open_key(ctx, argv[fk->argi], CSHIM_WRITE);
    fk->state = cshim_key_blob(*key, d->type, &data, &fk->len, &fk->cap);
    fk->data = (unsigned char *)data;
}

static int frame_run(int slot, RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    const frame_def *d = &defs[slot];
    grow_args(argc);
    for (int i = 0; i < argc; i++) arg_ptrs[i] = RedisModule_StringPtrLen(argv[i], &arg_lens[i]);

    cshim_frame f;
    memset(&f, 0, sizeof(f));
    int flags = RedisModule_GetContextFlags(ctx);
    f.replayed = (flags & (REDISMODULE_CTX_FLAGS_REPLICATED | REDISMODULE_CTX_FLAGS_LOADING)) != 0;
    f.now = RedisModule_Milliseconds();
    f.arg_ptrs = arg_ptrs;
    f.arg_lens = arg_lens;

    RedisModuleKey *keys[CSHIM_FRAME_KEYS] = {NULL, NULL};
    f.keys[0].argi = 1;
    f.keys[1].argi = keyword_key(d, argc);
    for (int i = 0; i < CSHIM_FRAME_KEYS; i++) {
        cshim_frame_key *fk = &f.keys[i];
        fk->scratch = scratch[i];
        fk->scratch_cap = scratch_cap[i];
        int same = i > 0 && fk->argi > 0 && arg_lens[fk->argi] == arg_lens[1] &&
                   memcmp(arg_ptrs[fk->argi], arg_ptrs[1], arg_lens[1]) == 0;
        if (fk->argi < 0 || same)
            fk->state = CSHIM_FRAME_UNUSED; /* Go refuses a repeated key by name */
        else
            open_key(ctx, argv, d, &keys[i], fk);
    }

    charonGoFrame(slot, ctx, argv, argc, &f);

    if (f.reply) {
        for (int i = 0; i < CSHIM_FRAME_KEYS; i++) {
            cshim_frame_key *fk = &f.keys[i];
            if (fk->out == NULL || keys[i] == NULL) continue;
            int rc = cshim_store_blob(ctx, keys[i], argv[fk->argi], d->event, d->type, fk->out, fk->outlen,
                                      fk->expire_at);
            if (rc != CSHIM_OK) {
                RedisModule_ReplyWithError(ctx, rc == CSHIM_TOOBIG ? "ERR value exceeds the 64 MiB cap; nothing was written"
                                                                   : "ERR the server refused the write");
                goto done;
            }
        }
        if (f.repl == CSHIM_REPL_VERBATIM)
            RedisModule_ReplicateVerbatim(ctx);
        else if (f.repl == CSHIM_REPL_OPTIONS)
            cshim_replicate_with_option(ctx, d->cmd, d->cmdlen, argv, argc, f.skip_a, f.name_a, f.val_a, f.skip_b,
                                        f.name_b, f.val_b);
        cshim_reply_int_fields_as(ctx, (flags & REDISMODULE_CTX_FLAGS_RESP3) != 0, d->names, f.fields, d->nfields);
    }
done:
    for (int i = 0; i < CSHIM_FRAME_KEYS; i++) {
        cshim_close_key(keys[i]);
        /* A scratch buffer grown for one huge value is not kept: it would sit in
         * used_memory for good. */
        if (scratch_cap[i] > CSHIM_FRAME_SCRATCH_KEEP) {
            RedisModule_Free(scratch[i]);
            scratch[i] = NULL;
            scratch_cap[i] = 0;
        }
    }
    return REDISMODULE_OK;
}

int cshim_dispatch(int slot, RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (RedisModule_IsKeysPositionRequest(ctx)) return charonGoCommand(slot, ctx, argv, argc, 1);
    if (defs[slot].type != NULL) return frame_run(slot, ctx, argv, argc);
    return charonGoCommand(slot, ctx, argv, argc, 0);
}
