/* config.c: module configs (CONFIG GET/SET charon.<name>, redis.conf, MODULE LOADEX).
 *
 * RedisModule_RegisterNumericConfig and RedisModule_LoadConfigs exist since 7.0. Each
 * config carries its slot number as privdata (an integer, never a Go pointer); the
 * get and set callbacks forward it to rm's exported Go functions. Not a hot path:
 * one crossing per CONFIG GET/SET. */
#include <stdint.h>
#include <string.h>

#include "redismodule.h"
#include "cshim.h"

static long long config_get(const char *name, void *privdata) {
    (void)name;
    return charonGoConfigGet((int)(intptr_t)privdata);
}

static int config_set(const char *name, long long val, void *privdata, RedisModuleString **err) {
    (void)name;
    char reason[256];
    reason[0] = '\0';
    if (charonGoConfigSet((int)(intptr_t)privdata, val, reason, sizeof(reason)) == 0) return REDISMODULE_OK;
    reason[sizeof(reason) - 1] = '\0';
    *err = RedisModule_CreateString(NULL, reason, strlen(reason));
    return REDISMODULE_ERR;
}

int cshim_register_numeric_config(RedisModuleCtx *ctx, int slot, const char *name, long long def,
                                  int flags, long long min, long long max) {
    if (slot < 0 || slot >= CSHIM_MAX_CONFIGS) return REDISMODULE_ERR;
    unsigned int f = REDISMODULE_CONFIG_DEFAULT;
    if (flags & CSHIM_CONFIG_MEMORY) f |= REDISMODULE_CONFIG_MEMORY;
    return RedisModule_RegisterNumericConfig(ctx, name, def, f, min, max, config_get, config_set, NULL,
                                             (void *)(intptr_t)slot);
}

int cshim_load_configs(RedisModuleCtx *ctx) { return RedisModule_LoadConfigs(ctx); }
