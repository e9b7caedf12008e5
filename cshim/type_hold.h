/* type_hold.h: the data type of CHARON.RESERVE and friends (C side; Go reaches it by name). */
#ifndef CHARON_TYPE_HOLD_H
#define CHARON_TYPE_HOLD_H

#include "redismodule.h"

/* Exactly 9 characters, as Redis requires for module type names. */
#define CHARON_HOLD_TYPE_NAME "charon-hd"

/* Encoding versions: one named constant per format step (rebloom.c's discipline).
 * rdb_load reads every version up to CHARON_HOLD_ENC_CURRENT and refuses newer. */
#define CHARON_HOLD_ENC_V1 1
/* Version 2: every key records the largest fence it issued and the ONCE tokens of the
 * last 10 s with their replies (module/hold/FORMAT.md). */
#define CHARON_HOLD_ENC_FENCE_ONCE 2
#define CHARON_HOLD_ENC_CURRENT CHARON_HOLD_ENC_FENCE_ONCE

/* The command that aof_rewrite emits to recreate a value from its persisted form. */
#define CHARON_HOLD_LOAD_COMMAND "CHARON.LOADHOLD"

int cshim_hold_type_create(RedisModuleCtx *ctx);

#endif
