/* info.c: the module's INFO sections (INFO charon, INFO everything).
 *
 * Redis calls the callback for INFO on its main thread, but also from its crash report
 * (for_crash_report = 1), which runs in a signal handler on whatever thread crashed,
 * possibly in a fork child. So the counters live here in C memory: Go increments them
 * in place and this file reads them without entering Go. The Go runtime's figures need
 * one call into Go, made only for a normal INFO in the process that loaded the module
 * (never in a crash report, never in a fork child, where Go cannot run). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "redismodule.h"
#include "cshim.h"

static uint64_t counters[CSHIM_MAX_COUNTERS];
static struct {
    const char *section;
    const char *name;
} counter_names[CSHIM_MAX_COUNTERS];
static int ncounters;
static pid_t load_pid;

uint64_t cshim_defrag_moves;

int cshim_info_add_counter(const char *section, const char *name) {
    if (ncounters == CSHIM_MAX_COUNTERS || section == NULL || name == NULL) return -1;
    counter_names[ncounters].section = section;
    counter_names[ncounters].name = name;
    return ncounters++;
}

uint64_t *cshim_info_counters(void) { return counters; }

/* Optional APIs newer than 7.0 that the module uses when present. */
static const struct {
    const char *field;
    const char *api;
} features[] = {
    {"acl_categories", "RedisModule_SetCommandACLCategories"}, /* 7.2 */
    {"acl_category_charon", "RedisModule_AddACLCategory"},     /* 7.4 */
};

/* The newest server API level whose optional APIs are all present. */
static const char *api_level(void) {
    if (cshim_has_api("RedisModule_AddACLCategory")) return "7.4";
    if (cshim_has_api("RedisModule_SetCommandACLCategories")) return "7.2";
    return "7.0";
}

static void add_module_section(RedisModuleInfoCtx *ctx) {
    char buf[32];
    if (RedisModule_InfoAddSection(ctx, "module") != REDISMODULE_OK) return;
    snprintf(buf, sizeof(buf), "%d.%d.%d", CHARON_MODULE_VERSION / 10000, CHARON_MODULE_VERSION / 100 % 100,
             CHARON_MODULE_VERSION % 100);
    RedisModule_InfoAddFieldCString(ctx, "version", buf);
    RedisModule_InfoAddFieldLongLong(ctx, "ver", CHARON_MODULE_VERSION);
    int v = cshim_server_version();
    snprintf(buf, sizeof(buf), "%d.%d.%d", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
    RedisModule_InfoAddFieldCString(ctx, "server_version", buf);
    RedisModule_InfoAddFieldCString(ctx, "api_level", api_level());
    for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++)
        RedisModule_InfoAddFieldLongLong(ctx, features[i].field, cshim_has_api(features[i].api));
    RedisModule_InfoAddFieldULongLong(ctx, "defrag_moves", cshim_defrag_moves);
}

static void add_counter_sections(RedisModuleInfoCtx *ctx) {
    /* Sections in order of first registration; a section's counters need not be
     * contiguous in the table. */
    for (int i = 0; i < ncounters; i++) {
        int first = 1;
        for (int j = 0; j < i; j++)
            if (strcmp(counter_names[j].section, counter_names[i].section) == 0) first = 0;
        if (!first) continue;
        if (RedisModule_InfoAddSection(ctx, counter_names[i].section) != REDISMODULE_OK) continue;
        for (int j = i; j < ncounters; j++)
            if (strcmp(counter_names[j].section, counter_names[i].section) == 0)
                RedisModule_InfoAddFieldULongLong(ctx, counter_names[j].name, counters[j]);
    }
}

static void add_runtime_section(RedisModuleInfoCtx *ctx) {
    if (RedisModule_InfoAddSection(ctx, "runtime") != REDISMODULE_OK) return;
    cshim_runtime_stats rt;
    memset(&rt, 0, sizeof(rt));
    charonGoRuntimeStats(&rt);
    rt.go_version[sizeof(rt.go_version) - 1] = '\0';
    RedisModule_InfoAddFieldCString(ctx, "go_version", rt.go_version);
    RedisModule_InfoAddFieldLongLong(ctx, "gomaxprocs", rt.gomaxprocs);
    RedisModule_InfoAddFieldLongLong(ctx, "gcpercent", rt.gcpercent);
    RedisModule_InfoAddFieldLongLong(ctx, "memlimit", rt.memlimit);
    RedisModule_InfoAddFieldULongLong(ctx, "heap_inuse", rt.heap_inuse);
    RedisModule_InfoAddFieldULongLong(ctx, "heap_objects", rt.heap_objects);
    RedisModule_InfoAddFieldULongLong(ctx, "heap_allocs", rt.heap_allocs);
    RedisModule_InfoAddFieldULongLong(ctx, "gc_cycles", rt.gc_cycles);
    RedisModule_InfoAddFieldULongLong(ctx, "gc_last_pause_ns", rt.gc_last_pause_ns);
    RedisModule_InfoAddFieldULongLong(ctx, "gc_pause_total_ns", rt.gc_pause_total_ns);
    RedisModule_InfoAddFieldLongLong(ctx, "goroutines", rt.goroutines);
}

static void info_cb(RedisModuleInfoCtx *ctx, int for_crash_report) {
    add_module_section(ctx);
    add_counter_sections(ctx);
    /* No Go in a crash report (any thread, inside a signal handler) or in a fork
     * child (the Go runtime does not survive fork). */
    if (!for_crash_report && getpid() == load_pid) add_runtime_section(ctx);
}

int cshim_info_register(RedisModuleCtx *ctx) {
    load_pid = getpid();
    return RedisModule_RegisterInfoFunc(ctx, info_cb);
}
