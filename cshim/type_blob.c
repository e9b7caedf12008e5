/* type_blob.c: the data-type callbacks that charon-rl (type_rate.c) and the hold type
 * (type_hold.c) share because both keep a value as one cshim_blob, a single
 * RedisModule_Alloc block. What differs between the types (rdb_load, rdb_save,
 * aof_rewrite, digest: the persisted form) stays in each type's file. Like every
 * callback, these are C and never call Go. */
#include <string.h>

#include "redismodule.h"
#include "cshim.h"

size_t cshim_blob_mem_usage(const void *value) { return RedisModule_MallocSize((void *)value); }

void cshim_blob_free(void *value) { RedisModule_Free(value); }

size_t cshim_blob_free_effort(RedisModuleString *key, const void *value) {
    (void)key;
    (void)value;
    return 1; /* one block */
}

void *cshim_blob_copy(RedisModuleString *fromkey, RedisModuleString *tokey, const void *value) {
    (void)fromkey;
    (void)tokey;
    const cshim_blob *src = value;
    cshim_blob *b = RedisModule_Alloc(sizeof(cshim_blob) + src->len);
    memcpy(b, src, sizeof(cshim_blob) + src->len);
    return b;
}

/* Active defrag (each value is one block): move the block if the allocator would
 * rather have it elsewhere (RedisModule_DefragAlloc returns NULL when it would not).
 * One block, so the work is always done in one call (returns 0). */
int cshim_defrag_block(RedisModuleDefragCtx *ctx, RedisModuleString *key, void **value) {
    (void)key;
    void *moved = RedisModule_DefragAlloc(ctx, *value);
    if (moved != NULL) {
        *value = moved;
        cshim_defrag_moves++;
    }
    return 0;
}
