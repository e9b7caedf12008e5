/* onload.c: the module's entry points and its registry of data types.
 *
 * Order (as RedisBloom does it): Init, server version and every API pointer we use,
 * module options, the data types, then exactly one call into Go, which registers the
 * commands. Any failure logs what failed and refuses the load. */
#include <string.h>

#include "redismodule.h"
#include "cshim.h"
#include "type_rate.h"
#include "type_hold.h"

#define MIN_SERVER_VERSION 0x00070000 /* 7.0.0 */

/* Exported by module/main.go. Weak, so that Go test binaries which link cshim
 * without the module's main package still link; OnLoad never runs in them. */
extern int charonGoOnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) __attribute__((weak));

/* Every API the module calls. A missing one refuses the load here rather than
 * crashing later on a NULL function pointer. Newer APIs that are used only when
 * present (e.g. SetCommandACLCategories) are checked where they are used. */
static const char *const required_apis[] = {
    "RedisModule_Alloc", "RedisModule_Realloc", "RedisModule_Free", "RedisModule_CreateCommand",
    "RedisModule_GetCommand", "RedisModule_SetCommandInfo", "RedisModule_WrongArity",
    "RedisModule_ReplyWithLongLong", "RedisModule_ReplyWithError", "RedisModule_ReplyWithSimpleString",
    "RedisModule_ReplyWithStringBuffer", "RedisModule_ReplyWithNull", "RedisModule_ReplyWithArray",
    "RedisModule_ReplyWithMap", "RedisModule_ReplyWithDouble", "RedisModule_OpenKey",
    "RedisModule_CloseKey", "RedisModule_KeyType", "RedisModule_ValueLength", "RedisModule_DeleteKey",
    "RedisModule_SetAbsExpire", "RedisModule_GetAbsExpire", "RedisModule_ZsetIncrby", "RedisModule_ZsetRem",
    "RedisModule_StringPtrLen", "RedisModule_StringToLongLong", "RedisModule_CreateString",
    "RedisModule_CreateStringFromLongLong", "RedisModule_FreeString", "RedisModule_Replicate",
    "RedisModule_ReplicateVerbatim", "RedisModule_Milliseconds", "RedisModule_GetContextFlags",
    "RedisModule_Log", "RedisModule_LogIOError", "RedisModule_CreateDataType",
    "RedisModule_ModuleTypeSetValue", "RedisModule_ModuleTypeReplaceValue", "RedisModule_ModuleTypeGetType",
    "RedisModule_ModuleTypeGetValue", "RedisModule_IsIOError", "RedisModule_SetModuleOptions",
    "RedisModule_SaveStringBuffer", "RedisModule_LoadStringBuffer", "RedisModule_EmitAOF",
    "RedisModule_DigestAddStringBuffer", "RedisModule_DigestEndSequence", "RedisModule_MallocSize",
    "RedisModule_GetServerVersion", "RedisModule_IsKeysPositionRequest", "RedisModule_KeyAtPosWithFlags",
    "RedisModule_SignalModifiedKey", "RedisModule_NotifyKeyspaceEvent",
    /* CHARON.RESERVE ... BLOCK (block.c) */
    "RedisModule_BlockClientOnKeys", "RedisModule_UnblockClient", "RedisModule_SetDisconnectCallback",
    "RedisModule_GetBlockedClientPrivateData", "RedisModule_CreateTimer", "RedisModule_StopTimer",
    "RedisModule_SelectDb", "RedisModule_GetSelectedDb", "RedisModule_HoldString", "RedisModule_Call",
    "RedisModule_CallReplyType", "RedisModule_FreeCallReply",
};

/* Valkey 9's atomic slot migration (CLUSTER MIGRATESLOTS) runs only when every loaded
 * module sets VALKEYMODULE_OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION (1 << 5), declaring that
 * it copes with keys of a slot being loaded on the target before the slot is owned
 * there. Charon keeps no state outside its keys and observes no keyspace or server
 * events, so such keys are simply keys; the slot's snapshot reaches the target through
 * the type's aof_rewrite (CHARON.LOADVALUE). The bit is set only where the server says
 * it knows it: a Valkey server (its API names carry the ValkeyModule_ prefix) whose
 * GetModuleOptionsAll mask holds it. Redis gives the same bit no such meaning, and 7.0
 * has no GetModuleOptionsAll, so there the option is 0. */
#define VALKEY_OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION (1 << 5)

static int atomic_slot_migration_option(void) {
    int (*options_all)(void) = NULL;
    if (!cshim_has_api("ValkeyModule_GetModuleOptionsAll")) return 0;
    if (RedisModule_GetApi("ValkeyModule_GetModuleOptionsAll", (void *)&options_all) != REDISMODULE_OK || !options_all)
        return 0;
    return options_all() & VALKEY_OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION;
}

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (RedisModule_Init(ctx, CHARON_MODULE_NAME, CHARON_MODULE_VERSION, REDISMODULE_APIVER_1) == REDISMODULE_ERR) {
        /* Init fails silently when the name is taken: say why. */
        if (RedisModule_IsModuleNameBusy && RedisModule_IsModuleNameBusy(CHARON_MODULE_NAME))
            RedisModule_Log(ctx, "warning",
                            "charon: refusing to load: a module named '%s' is already loaded; a server runs one copy "
                            "(one Go runtime, which cannot be unloaded): restart the server to load another",
                            CHARON_MODULE_NAME);
        else
            RedisModule_Log(ctx, "warning", "charon: refusing to load: RedisModule_Init failed");
        return REDISMODULE_ERR;
    }

    int ver = cshim_server_version();
    if (ver < MIN_SERVER_VERSION) {
        RedisModule_Log(ctx, "warning", "charon: refusing to load: needs Redis >= 7.0.0, server is %d.%d.%d",
                        (ver >> 16) & 0xff, (ver >> 8) & 0xff, ver & 0xff);
        return REDISMODULE_ERR;
    }
    for (size_t i = 0; i < sizeof(required_apis) / sizeof(required_apis[0]); i++) {
        if (!cshim_has_api(required_apis[i])) {
            RedisModule_Log(ctx, "warning", "charon: refusing to load: the server lacks %s", required_apis[i]);
            return REDISMODULE_ERR;
        }
    }

    /* NO_IMPLICIT_SIGNAL_MODIFIED (Redis >= 6.2, kept by every newer server and Valkey):
     * closing a key opened for writing no longer counts as a change. Without it every
     * rejected, DRYRUN or failed request would abort other clients' WATCH and send
     * client-side-caching invalidations. Each command signals, and notifies, only the
     * keys it really wrote (cshim_key_written). */
    RedisModule_SetModuleOptions(ctx, REDISMODULE_OPTIONS_HANDLE_IO_ERRORS | REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED |
                                         atomic_slot_migration_option());

    if (cshim_rate_type_create(ctx) != REDISMODULE_OK) {
        RedisModule_Log(ctx, "warning", "charon: refusing to load: cannot create data type %s", CHARON_RATE_TYPE_NAME);
        return REDISMODULE_ERR;
    }
    if (cshim_hold_type_create(ctx) != REDISMODULE_OK) {
        RedisModule_Log(ctx, "warning", "charon: refusing to load: cannot create data type %s", CHARON_HOLD_TYPE_NAME);
        return REDISMODULE_ERR;
    }

    if (charonGoOnLoad == NULL) return REDISMODULE_ERR;
    return charonGoOnLoad(ctx, argv, argc) == 0 ? REDISMODULE_OK : REDISMODULE_ERR;
}

/* The Go runtime cannot be unloaded, so MODULE UNLOAD is refused. */
int RedisModule_OnUnload(RedisModuleCtx *ctx) {
    RedisModule_Log(ctx, "warning", "charon: MODULE UNLOAD refused: a Go runtime cannot be unloaded; restart the server instead");
    return REDISMODULE_ERR;
}

/* ---- registry of data types created above ---- */

#define MAX_TYPES 4
static struct {
    const char *name;
    RedisModuleType *type;
    cshim_check_fn check;
} types[MAX_TYPES];
static int ntypes;

int cshim_type_register(const char *name, RedisModuleType *t, cshim_check_fn check) {
    if (ntypes == MAX_TYPES || t == NULL) return REDISMODULE_ERR;
    types[ntypes].name = name;
    types[ntypes].type = t;
    types[ntypes].check = check;
    ntypes++;
    return REDISMODULE_OK;
}

int cshim_type_count(void) { return ntypes; }

RedisModuleType *cshim_type_lookup(const char *name, size_t namelen) {
    for (int i = 0; i < ntypes; i++)
        if (strlen(types[i].name) == namelen && memcmp(types[i].name, name, namelen) == 0) return types[i].type;
    return NULL;
}

int cshim_type_check(RedisModuleType *t, const unsigned char *p, size_t n) {
    if (n > CSHIM_BLOB_MAX) return 0;
    for (int i = 0; i < ntypes; i++)
        if (types[i].type == t) return types[i].check(p, n);
    return 0;
}
