/* reply_fields.c: a named-field reply whose fields are integers, bulk strings or
 * nulls, in one crossing (a map under RESP3, an array of the values under RESP2). */
#include "redismodule.h"
#include "cshim.h"

int cshim_reply_mixed_fields(RedisModuleCtx *ctx, const char *const *names, const unsigned char *kinds,
                             const int64_t *vals, const char *strs, int n) {
    int resp3 = cshim_is_resp3(ctx);
    if (resp3)
        RedisModule_ReplyWithMap(ctx, n);
    else
        RedisModule_ReplyWithArray(ctx, n);
    for (int i = 0; i < n; i++) {
        if (resp3) RedisModule_ReplyWithSimpleString(ctx, names[i]);
        switch (kinds[i]) {
        case CSHIM_FIELD_BULK: /* vals[i]: offset << 32 | length into strs */
            RedisModule_ReplyWithStringBuffer(ctx, strs + (vals[i] >> 32), (size_t)(vals[i] & 0xffffffff));
            break;
        case CSHIM_FIELD_NULL:
            RedisModule_ReplyWithNull(ctx);
            break;
        default:
            RedisModule_ReplyWithLongLong(ctx, vals[i]);
        }
    }
    return REDISMODULE_OK;
}
