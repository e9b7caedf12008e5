/* hold_format.c: the C twin of module/hold/format.go and the parts of layout.go that
 * rdb_load needs. Both follow module/hold/FORMAT.md rule for rule. */
#include "hold_format.h"

#include <string.h>

#define HF_MAX_COUNT 1000000000000ULL
#define HF_MAX_DURATION 315360000000ULL
#define HF_MAX_AT (1ULL << 53)
#define HF_PHDR 32
#define HF_PREC 24
#define HF_HDR 64
#define HF_REC 40
#define HF_MIN_CAP 4

/* header words */
enum { W_VERSION, W_CAP, W_N, W_NEWEST, W_HELD, W_HEAD, W_TAIL, W_LIMIT };
/* record words */
enum { F_ID, F_COPIES, F_DEADLINE, F_PREV, F_NEXT };

static uint64_t ld(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void st(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint32_t ld32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void st32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

long charon_hold_check(const unsigned char *p, size_t n) {
    if (p == NULL || n < HF_PHDR || (n - HF_PHDR) % HF_PREC != 0) return -1;
    if (ld(p) != CHARON_HOLD_FORMAT_VERSION) return -1;
    uint64_t newest = ld(p + 8), lim = ld(p + 16), nh = ld(p + 24);
    if (newest > HF_MAX_AT || lim > HF_MAX_COUNT + 1 || nh > CHARON_HOLD_MAX_HOLDS) return -1;
    if (nh != (n - HF_PHDR) / HF_PREC) return -1;
    uint64_t prev = 1;
    for (uint64_t i = 0; i < nh; i++) {
        const unsigned char *r = p + HF_PHDR + i * HF_PREC;
        uint64_t id = ld(r), c = ld(r + 8), d = ld(r + 16);
        if (id == 0 || c < 1 || c > HF_MAX_COUNT || d < prev || d > newest + HF_MAX_DURATION) return -1;
        prev = d;
    }
    return (long)nh;
}

size_t charon_hold_mem_size(uint64_t cap) { return HF_HDR + cap * HF_REC + 2 * cap * 4; }

uint64_t charon_hold_cap_for(uint64_t nholds) {
    uint64_t c = HF_MIN_CAP;
    while (c < nholds) c *= 2;
    return c;
}

static size_t hash(uint64_t id, uint64_t m) {
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)(id & (m - 1));
}

#define HW(mem, i) ((mem) + (size_t)(i) * 8)
#define RW(mem, s, f) ((mem) + HF_HDR + (size_t)(s) * HF_REC + (size_t)(f) * 8)

int charon_hold_build(const unsigned char *p, long nholds, unsigned char *mem) {
    uint64_t cap = charon_hold_cap_for((uint64_t)nholds), m = 2 * cap;
    unsigned char *idx = mem + HF_HDR + cap * HF_REC;
    memset(mem, 0, charon_hold_mem_size(cap));
    st(HW(mem, W_VERSION), 1);
    st(HW(mem, W_CAP), cap);
    st(HW(mem, W_N), (uint64_t)nholds);
    st(HW(mem, W_NEWEST), ld(p + 8));
    st(HW(mem, W_LIMIT), ld(p + 16));
    uint64_t held = 0;
    for (long s = 0; s < nholds; s++) {
        const unsigned char *r = p + HF_PHDR + (size_t)s * HF_PREC;
        uint64_t id = ld(r), c = ld(r + 8);
        size_t i = hash(id, m);
        for (uint32_t e; (e = ld32(idx + i * 4)) != 0; i = (i + 1) & (m - 1))
            if (ld(RW(mem, e - 1, F_ID)) == id) return 0; /* repeated id */
        st32(idx + i * 4, (uint32_t)s + 1);
        st(RW(mem, s, F_ID), id);
        st(RW(mem, s, F_COPIES), c);
        st(RW(mem, s, F_DEADLINE), ld(r + 16));
        st(RW(mem, s, F_PREV), (uint64_t)s); /* slot s-1, plus one */
        st(RW(mem, s, F_NEXT), s + 1 < nholds ? (uint64_t)s + 2 : 0);
        held += c;
    }
    st(HW(mem, W_HELD), held);
    st(HW(mem, W_HEAD), nholds > 0 ? 1 : 0);
    st(HW(mem, W_TAIL), (uint64_t)nholds);
    return 1;
}

size_t charon_hold_persisted_size(const unsigned char *mem) { return HF_PHDR + ld(HW(mem, W_N)) * HF_PREC; }

void charon_hold_serialize(const unsigned char *mem, unsigned char *out) {
    uint64_t n = ld(HW(mem, W_N));
    st(out, CHARON_HOLD_FORMAT_VERSION);
    st(out + 8, ld(HW(mem, W_NEWEST)));
    st(out + 16, ld(HW(mem, W_LIMIT)));
    st(out + 24, n);
    unsigned char *o = out + HF_PHDR;
    /* Walk the deadline list; stop after n records whatever the links say. */
    uint64_t s = ld(HW(mem, W_HEAD));
    for (uint64_t i = 0; i < n && s != 0; i++) {
        memcpy(o, RW(mem, s - 1, F_ID), HF_PREC);
        o += HF_PREC;
        s = ld(RW(mem, s - 1, F_NEXT));
    }
}
