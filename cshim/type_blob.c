/* type_blob.c: the data-type callbacks that charon-rl (type_rate.c) and the hold type
 * (type_hold.c) share because both keep a value as one cshim_blob, a single
 * RedisModule_Alloc block. What differs between the types (rdb_load, rdb_save,
 * aof_rewrite, digest: the persisted form) stays in each type's file. Like every
 * callback, these are C and never call Go. */
#include <string.h>

#include "redismodule.h"
#include "cshim.h"

/* The bytes of value the block can hold: what the allocator gave, less the header. */
static uint32_t usable_cap(const cshim_blob *b) {
    size_t u = RedisModule_MallocSize((void *)b) - sizeof(cshim_blob);
    return (uint32_t)(u > CSHIM_BLOB_MAX ? CSHIM_BLOB_MAX : u);
}

cshim_blob *cshim_blob_alloc(size_t n) {
    cshim_blob *b = RedisModule_Alloc(sizeof(cshim_blob) + n);
    b->len = (uint32_t)n;
    b->cap = usable_cap(b);
    return b;
}

cshim_blob *cshim_blob_resize(cshim_blob *b, size_t n) {
    b = RedisModule_Realloc(b, sizeof(cshim_blob) + n);
    b->len = (uint32_t)n;
    b->cap = usable_cap(b);
    return b;
}

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
    cshim_blob *b = cshim_blob_alloc(src->len);
    memcpy(b->data, src->data, src->len);
    return b;
}

/* Active defrag (each value is one block): move the block if the allocator would
 * rather have it elsewhere (RedisModule_DefragAlloc returns NULL when it would not).
 * One block, so the work is always done in one call (returns 0). */
int cshim_defrag_block(RedisModuleDefragCtx *ctx, RedisModuleString *key, void **value) {
    (void)key;
    cshim_blob *moved = RedisModule_DefragAlloc(ctx, *value);
    if (moved != NULL) {
        /* The new block has the old one's usable size, so cap still holds. */
        *value = moved;
        cshim_defrag_moves++;
    }
    return 0;
}
