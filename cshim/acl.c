/* acl.c: the module's own ACL category (ACL CAT charon, +@charon / -@charon).
 *
 * RedisModule_AddACLCategory arrived in Redis 7.4 and is absent from the pinned 7.0
 * header, so it is looked up by name; on older servers the module loads without it.
 * It may only be called during OnLoad, before the commands that use the category set
 * their categories. */
#include "redismodule.h"
#include "cshim.h"

int cshim_add_acl_category(RedisModuleCtx *ctx, const char *name) {
    int (*add)(RedisModuleCtx *, const char *) = NULL;
    if (RedisModule_GetApi("RedisModule_AddACLCategory", (void **)&add) != REDISMODULE_OK || add == NULL)
        return CSHIM_NOAPI;
    return add(ctx, name);
}
