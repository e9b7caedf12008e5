/* cshim.h: the only header Go preambles include.
 *
 * It declares opaque Redis module types (so Go never sees redismodule.h), the
 * cshim_* wrappers that Go calls, and the Go entry points that C calls. Only
 * integers and C pointers cross this boundary, never Go pointers kept by C. */
#ifndef CHARON_CSHIM_H
#define CHARON_CSHIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct RedisModuleCtx RedisModuleCtx;
typedef struct RedisModuleString RedisModuleString;
typedef struct RedisModuleKey RedisModuleKey;
typedef struct RedisModuleType RedisModuleType;

/* The module's identity, shown by MODULE LIST. The version number comes from the
 * repository's VERSION file: make passes -DCHARON_MODULE_VERSION=MAJOR*10000 +
 * MINOR*100 + PATCH (0.1.0 -> 100). A build without make shows 1. */
#define CHARON_MODULE_NAME "charon"
#ifndef CHARON_MODULE_VERSION
#define CHARON_MODULE_VERSION 1
#endif

/* Status codes of the batch helpers. */
#define CSHIM_OK 0
#define CSHIM_ERR -1
#define CSHIM_WRONGTYPE -2
#define CSHIM_NOAPI -3
#define CSHIM_TOOBIG -4 /* a value above CSHIM_BLOB_MAX */

/* Go entry point exported by rm/dispatch.go. (charonGoOnLoad, exported by the
 * module's main package, is declared in onload.c.) */
int charonGoCommand(int slot, RedisModuleCtx *ctx, RedisModuleString **argv, int argc, int keys_request);

/* ---- frame commands (frame.c) ----
 * A frame command reads and writes up to CSHIM_FRAME_KEYS values of one blob type and
 * replies with integer fields. C does everything around its one C->Go crossing: it
 * opens the keys and hands Go their values, the server clock and views of the
 * arguments; after Go returns it stores the values Go produced (in place when they
 * fit), sets their expiry, signals them, replicates and replies. The common path makes
 * no Go->C call at all (design rule 4). */
#define CSHIM_FRAME_KEYS 2
#define CSHIM_FRAME_FIELDS 16
/* Key states, besides CSHIM_OK (a value of the type) and CSHIM_WRONGTYPE. */
#define CSHIM_FRAME_ABSENT 1 /* no value */
#define CSHIM_FRAME_UNUSED 2 /* no such key in this call, or the same name as key 0 */
/* What C propagates after a successful call. */
#define CSHIM_REPL_NONE 0
#define CSHIM_REPL_VERBATIM 1
#define CSHIM_REPL_OPTIONS 2 /* as cshim_replicate_with_option */

typedef struct cshim_frame_key {
    int argi;            /* argv index, -1 when unused */
    int state;           /* CSHIM_OK, CSHIM_FRAME_ABSENT, CSHIM_WRONGTYPE, CSHIM_FRAME_UNUSED */
    unsigned char *data; /* the stored bytes (CSHIM_OK), writable up to cap */
    size_t len, cap;
    unsigned char *scratch; /* a C buffer for a new value that does not fit in place */
    size_t scratch_cap;
    /* Set by Go: the new value (data, rewritten in place, or scratch); NULL leaves
     * the key alone. expire_at > 0 is the absolute expiry to set with it. */
    const unsigned char *out;
    size_t outlen;
    long long expire_at;
} cshim_frame_key;

typedef struct cshim_frame {
    long long now; /* the server clock, Unix ms */
    int replayed;  /* from a primary's replication stream or the AOF being loaded */
    const char *const *arg_ptrs;
    const size_t *arg_lens;
    cshim_frame_key keys[CSHIM_FRAME_KEYS];
    /* Set by Go. reply = 1: store the keys' new values, replicate (repl), then reply
     * with fields[0:nfields]; reply = 0: Go replied itself (an error) and nothing is
     * written. */
    int reply;
    int64_t fields[CSHIM_FRAME_FIELDS];
    int repl;
    int skip_a, skip_b;
    RedisModuleString *name_a, *name_b;
    long long val_a, val_b;
} cshim_frame;

/* Makes slot a frame command over values of type t: its key 0 is argv[1], its key 1
 * (when keyword is not NULL) the argument after the first keyword argument from
 * argv[2] on (as a Redis keyword key spec finds it). event names the keyspace event
 * of a write; cmd is the name it replicates under; names the nfields reply fields.
 * The strings must live as long as the module. */
int cshim_frame_define(int slot, RedisModuleType *t, const char *event, const char *keyword, const char *cmd,
                       const char *const *names, int nfields);
/* Grows key i's scratch to at least n bytes (a value that outgrew it); returns it, or
 * NULL when n exceeds CSHIM_BLOB_MAX. */
unsigned char *cshim_frame_reserve(cshim_frame *f, int i, size_t n);
/* Every trampoline's target: a getkeys-api request or a plain command goes to Go's
 * dispatcher, a frame command runs its frame. */
int cshim_dispatch(int slot, RedisModuleCtx *ctx, RedisModuleString **argv, int argc);
/* Go's entry point for a frame command (rm/dispatch.go). */
void charonGoFrame(int slot, RedisModuleCtx *ctx, RedisModuleString **argv, int argc, cshim_frame *f);

/* ---- blocked clients and timers (block.c) ---- */
typedef struct RedisModuleBlockedClient RedisModuleBlockedClient;
/* Whether the calling client may block (not in MULTI, a script, a module call, the
 * replication stream or the AOF). */
int cshim_can_block(RedisModuleCtx *ctx);
/* Blocks the caller on keys[0..nkeys) with timeout_ms (0: none) as waiter id (not 0).
 * NULL on failure. */
RedisModuleBlockedClient *cshim_block_on_keys(RedisModuleCtx *ctx, RedisModuleString **keys, int nkeys,
                                              long long timeout_ms, uint64_t id);
/* Ends a wait: the waiter's timeout callback (charonGoBlockTimeout) runs before this
 * returns, unless the client is gone already. */
int cshim_unblock(RedisModuleBlockedClient *bc);
/* A timer that calls charonGoTimer(ctx, id) once, ms from now; returns its id. */
uint64_t cshim_timer_create(RedisModuleCtx *ctx, long long ms, uint64_t id);
int cshim_timer_stop(RedisModuleCtx *ctx, uint64_t timer);
int cshim_select_db(RedisModuleCtx *ctx, int db);
int cshim_selected_db(RedisModuleCtx *ctx);
/* A reference to s that outlives the command (RedisModule_HoldString with no context),
 * released with cshim_release_string. */
RedisModuleString *cshim_hold_string(RedisModuleString *s);
void cshim_release_string(RedisModuleString *s);
/* 1 when this node serves every key now (always outside a cluster); 0 when the slot
 * is migrating with a key gone or is served by another node. */
int cshim_keys_local(RedisModuleCtx *ctx, RedisModuleString **keys, int nkeys);
/* Go entry points (rm/block.go). */
void charonGoBlockTimeout(RedisModuleCtx *ctx, RedisModuleString **argv, int argc, uint64_t id);
void charonGoBlockFree(RedisModuleCtx *ctx, uint64_t id);
void charonGoBlockDisconnect(RedisModuleCtx *ctx, uint64_t id);
void charonGoTimer(RedisModuleCtx *ctx, uint64_t id);

/* ---- registry of module types (blob values) ---- */
/* A blob value is one RedisModule_Alloc block: a length, the bytes usable in place
 * (what the allocator really gave, read once at allocation so that the hot path never
 * asks the allocator), then the bytes. */
typedef struct cshim_blob {
    uint32_t len;
    uint32_t cap; /* len <= cap <= CSHIM_BLOB_MAX */
    unsigned char data[];
} cshim_blob;
#define CSHIM_BLOB_MAX (64u * 1024u * 1024u)
/* A new block holding n bytes (uninitialized), its cap set (type_blob.c). */
cshim_blob *cshim_blob_alloc(size_t n);
/* b resized to hold n bytes (the first min(len, n) kept), its len and cap set; it may move. */
cshim_blob *cshim_blob_resize(cshim_blob *b, size_t n);

typedef int (*cshim_check_fn)(const unsigned char *p, size_t n);
int cshim_type_register(const char *name, RedisModuleType *t, cshim_check_fn check);
int cshim_type_count(void);
RedisModuleType *cshim_type_lookup(const char *name, size_t namelen);
int cshim_type_check(RedisModuleType *t, const unsigned char *p, size_t n);

/* ---- load-time helpers ---- */
#define CSHIM_MAX_COMMANDS 128
int cshim_server_version(void);
int cshim_has_api(const char *name);
int cshim_create_command(RedisModuleCtx *ctx, int slot, const char *name, const char *flags,
                         int firstkey, int lastkey, int keystep);

typedef struct cshim_keyspec {
    uint64_t flags;
    const char *keyword; /* NULL: begin search by index */
    int index;           /* index, or keyword startfrom */
    int lastkey, keystep, limit;
} cshim_keyspec;
int cshim_set_command_info(RedisModuleCtx *ctx, const char *name, const char *summary,
                           const char *complexity, const char *since, int arity,
                           const cshim_keyspec *specs, int nspecs);
int cshim_set_acl_categories(RedisModuleCtx *ctx, const char *name, const char *categories);

/* ---- thin wrappers ---- */
void cshim_log(RedisModuleCtx *ctx, const char *level, const char *msg, size_t len);
long long cshim_milliseconds(void);
/* The server clock in Unix ms for a command a client sent; -1 for one replayed from a
 * primary's replication stream or from the AOF being loaded, whose effects (and so any
 * clock reading) were decided where it first ran. */
long long cshim_client_clock(RedisModuleCtx *ctx);
int cshim_is_resp3(RedisModuleCtx *ctx);
int cshim_context_flags(RedisModuleCtx *ctx);

const char *cshim_string_ptr_len(RedisModuleString *s, size_t *len);
int cshim_string_to_long_long(RedisModuleString *s, long long *out);
void cshim_args_views(RedisModuleString **argv, int argc, const char **ptrs, size_t *lens);
RedisModuleString *cshim_create_string(RedisModuleCtx *ctx, const char *p, size_t len);
RedisModuleString *cshim_create_string_ll(RedisModuleCtx *ctx, long long v);
void cshim_free_string(RedisModuleCtx *ctx, RedisModuleString *s);

int cshim_wrong_arity(RedisModuleCtx *ctx);
int cshim_reply_wrongtype(RedisModuleCtx *ctx);
int cshim_reply_long_long(RedisModuleCtx *ctx, long long v);
int cshim_reply_double(RedisModuleCtx *ctx, double v);
int cshim_reply_simple(RedisModuleCtx *ctx, const char *p, size_t len);
int cshim_reply_error(RedisModuleCtx *ctx, const char *p, size_t len);
int cshim_reply_bulk(RedisModuleCtx *ctx, const char *p, size_t len);
int cshim_reply_null(RedisModuleCtx *ctx);
int cshim_reply_array(RedisModuleCtx *ctx, long n);
int cshim_reply_map(RedisModuleCtx *ctx, long n);
int cshim_reply_long_longs(RedisModuleCtx *ctx, const int64_t *vals, int n);
int cshim_reply_int_fields(RedisModuleCtx *ctx, const char *const *names, const int64_t *vals, int n);
/* cshim_reply_int_fields for a caller that already knows the protocol (resp3 != 0). */
int cshim_reply_int_fields_as(RedisModuleCtx *ctx, int resp3, const char *const *names, const int64_t *vals, int n);
/* reply_fields.c: fields that are integers, bulk strings (vals[i] = offset << 32 | length
 * into strs) or nulls, by kinds[i]. */
#define CSHIM_FIELD_INT 0
#define CSHIM_FIELD_BULK 1
#define CSHIM_FIELD_NULL 2
int cshim_reply_mixed_fields(RedisModuleCtx *ctx, const char *const *names, const unsigned char *kinds,
                             const int64_t *vals, const char *strs, int n);

int cshim_replicate_verbatim(RedisModuleCtx *ctx);
/* Replicates cmd with argv[1..argc) less argv[skip] and argv[skip+1] (skip < 0: none)
 * and less argv[skip2], argv[skip2+1], plus name and the decimal value, then (when
 * name2 is not NULL) name2 and value2: "the same command with OPTION value made
 * explicit". */
int cshim_replicate_with_option(RedisModuleCtx *ctx, const char *cmd, size_t cmdlen, RedisModuleString **argv,
                                int argc, int skip, RedisModuleString *name, long long value, int skip2,
                                RedisModuleString *name2, long long value2);
int cshim_replicate_v(RedisModuleCtx *ctx, const char *cmd, size_t cmdlen, RedisModuleString **argv, size_t argc);

/* Reports n key positions (with REDISMODULE_CMD_KEY_* flags) for a getkeys-api request. */
void cshim_key_positions(RedisModuleCtx *ctx, const int *pos, const int *flags, int n);

/* ---- keys ---- */
#define CSHIM_READ 1
#define CSHIM_WRITE 2
RedisModuleKey *cshim_open_key(RedisModuleCtx *ctx, RedisModuleString *name, int mode);
void cshim_close_key(RedisModuleKey *k);
int cshim_key_type(RedisModuleKey *k);
/* 1 when name holds a hash whose field starts with prefix (plen bytes): how the
 * module tells a key of the Go client's script engine on its WRONGTYPE path. */
int cshim_hash_field_prefix(RedisModuleCtx *ctx, RedisModuleString *name, const char *field, const char *prefix,
                            size_t plen);
size_t cshim_value_length(RedisModuleKey *k);
int cshim_delete_key(RedisModuleKey *k);
int cshim_set_abs_expire(RedisModuleKey *k, long long unixms);
long long cshim_get_abs_expire(RedisModuleKey *k);
/* A real write to the key name: signals it as modified (WATCH, client-side caching)
 * and raises the module keyspace event (class 'd') named event. The module loads with
 * REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED, so nothing else signals a key: a
 * command calls this once per key it changed, and never for a key it left alone. */
void cshim_key_written(RedisModuleCtx *ctx, RedisModuleString *name, const char *event);
/* ZsetIncrby, then cshim_key_written on success: one crossing. */
int cshim_zset_incrby(RedisModuleCtx *ctx, RedisModuleKey *k, RedisModuleString *name, const char *event,
                      RedisModuleString *member, double delta, double *newscore);
int cshim_zset_rem(RedisModuleKey *k, RedisModuleString *member, int *deleted);

/* Open + type-check + get the blob, one crossing. Returns CSHIM_OK (found: *data,*len set,
 * *cap the bytes usable in place from data, for cshim_set_blob with p == data),
 * 1 when the key is empty, CSHIM_WRONGTYPE for another type. *key is always set (may be
 * NULL for an absent key opened for reading) and must be closed by the caller. */
int cshim_open_blob(RedisModuleCtx *ctx, RedisModuleString *name, int mode, RedisModuleType *t,
                    RedisModuleKey **key, const unsigned char **data, size_t *len, size_t *cap);
/* Get the blob of an open key. Same return codes as cshim_open_blob. */
int cshim_key_blob(RedisModuleKey *k, RedisModuleType *t, const unsigned char **data, size_t *len, size_t *cap);
/* Store a copy of p[0:n] as the key's value (creating or resizing the block; p may be
 * the value's own data, rewritten in place within *cap); CSHIM_TOOBIG when
 * n > CSHIM_BLOB_MAX. */
int cshim_set_blob(RedisModuleKey *k, RedisModuleType *t, const unsigned char *p, size_t n);
/* cshim_set_blob, then the absolute expiry when expire_at > 0, then cshim_key_written
 * (ctx, name, event): the whole write of one key in one crossing. */
int cshim_store_blob(RedisModuleCtx *ctx, RedisModuleKey *k, RedisModuleString *name, const char *event,
                     RedisModuleType *t, const unsigned char *p, size_t n, long long expire_at);
/* ValueLength of argv[0..n) into out; CSHIM_WRONGTYPE (and *bad = index) when a key
 * exists with a type other than want (a REDISMODULE_KEYTYPE_* value). */
int cshim_lengths_of(RedisModuleCtx *ctx, RedisModuleString **argv, int n, int want, int64_t *out, int *bad);

/* ---- operations: INFO, module configs, ACL category (info.c, config.c) ---- */
/* INFO counters live in C memory, so the INFO callback reads them without entering Go
 * (it also runs in crash reports, on whatever thread crashed, and maybe in a fork
 * child). Go registers each counter once at load and increments its slot in place. */
#define CSHIM_MAX_COUNTERS 64
/* Registers a counter shown as <module>_<name> in section <module>_<section>;
 * sections appear in order of first registration. Returns its index, or -1 when full.
 * The strings must live as long as the module. */
int cshim_info_add_counter(const char *section, const char *name);
/* The counter slots, indexed by what cshim_info_add_counter returned. */
uint64_t *cshim_info_counters(void);
/* Registers the INFO callback (RedisModule_RegisterInfoFunc, present since 7.0). */
int cshim_info_register(RedisModuleCtx *ctx);
/* Values moved by active defrag, counted by the types' defrag callbacks. */
extern uint64_t cshim_defrag_moves;
/* The callbacks both data types share (a value is one cshim_blob block), in type_blob.c. */
struct RedisModuleDefragCtx;
int cshim_defrag_block(struct RedisModuleDefragCtx *ctx, RedisModuleString *key, void **value);
size_t cshim_blob_mem_usage(const void *value);
void cshim_blob_free(void *value);
size_t cshim_blob_free_effort(RedisModuleString *key, const void *value);
void *cshim_blob_copy(RedisModuleString *fromkey, RedisModuleString *tokey, const void *value);

/* The Go runtime's figures for INFO, filled by rm's charonGoRuntimeStats. */
typedef struct cshim_runtime_stats {
    char go_version[32];
    long long gomaxprocs, gcpercent, memlimit;
    unsigned long long heap_inuse, heap_objects, heap_allocs, gc_cycles, gc_last_pause_ns, gc_pause_total_ns;
    long long goroutines;
} cshim_runtime_stats;
void charonGoRuntimeStats(cshim_runtime_stats *out);

/* Module configs (RedisModule_RegisterNumericConfig + LoadConfigs, 7.0): each one's
 * get/set go to rm's charonGoConfigGet/Set with its slot number. */
#define CSHIM_MAX_CONFIGS 16
#define CSHIM_CONFIG_MEMORY 1
int cshim_register_numeric_config(RedisModuleCtx *ctx, int slot, const char *name, long long def,
                                  int flags, long long min, long long max);
int cshim_load_configs(RedisModuleCtx *ctx);
long long charonGoConfigGet(int slot);
/* Returns 0 on success; else writes a NUL-terminated reason into err[0:errlen). */
int charonGoConfigSet(int slot, long long val, char *err, size_t errlen);

/* RedisModule_AddACLCategory (Redis 7.4+): CSHIM_NOAPI when the server lacks it. */
int cshim_add_acl_category(RedisModuleCtx *ctx, const char *name);

#endif
