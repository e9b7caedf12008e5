/* type_rate.h: the CHARON.RATE data type (C side only; Go reaches it by name). */
#ifndef CHARON_TYPE_RATE_H
#define CHARON_TYPE_RATE_H

#include "redismodule.h"

/* Exactly 9 characters, as Redis requires for module type names. */
#define CHARON_RATE_TYPE_NAME "charon-rl"

/* Encoding versions: one named constant per format step (rebloom.c's discipline).
 * rdb_load reads every version up to CHARON_RATE_ENC_CURRENT and refuses newer. */
#define CHARON_RATE_ENC_V1 1 /* one flat string, header first */
#define CHARON_RATE_ENC_V2 2 /* log first, header with cursors and sums at the end */
#define CHARON_RATE_ENC_V3 3 /* ONCE token table and cap bucket logs before the log */
#define CHARON_RATE_ENC_CURRENT CHARON_RATE_ENC_V3

/* The command that aof_rewrite emits to recreate a value. */
#define CHARON_RATE_LOAD_COMMAND "CHARON.LOADVALUE"

int cshim_rate_type_create(RedisModuleCtx *ctx);

#endif
