/* hold_format.c: the C twin of module/hold/format.go and the parts of layout.go that
 * rdb_load needs. Both follow module/hold/FORMAT.md rule for rule. */
#include "hold_format.h"

#include <string.h>

#define HF_MAX_COUNT 1000000000000LL
#define HF_MAX_DURATION 315360000000LL
#define HF_MAX_AT (1ULL << 53)
#define HF_MAX_FENCE 0x7fffffffffffffffULL
#define HF_MAX_HELD (HF_MAX_COUNT * (long long)CHARON_HOLD_MAX_HOLDS)
#define HF_ONCE_WINDOW 10000LL
#define HF_PHDR1 32 /* persisted header, version 1 */
#define HF_PHDR 48  /* persisted header, version 2 */
#define HF_PREC 24
#define HF_TOKW 11 /* token words: hash, t0, kind, reply[8] */
#define HF_PTOK (HF_TOKW * 8)
#define HF_HDR 96
#define HF_REC 40
#define HF_MIN_CAP 4
#define HF_MIN_TOKCAP 4
/* Cmd values of module/hold (request.go) that a token may hold. */
#define HF_KIND_RESERVE 0
#define HF_KIND_TRANSFER 3
/* Limited-by codes (apply.go): none, domain, global, then one per group. */
#define HF_LIMITED_MAX (3 + 32 - 1)

/* header words */
enum { W_VERSION, W_CAP, W_N, W_NEWEST, W_HELD, W_HEAD, W_TAIL, W_LIMIT, W_FENCE, W_TCAP, W_TN, W_THEAD };
/* record words */
enum { F_ID, F_COPIES, F_DEADLINE, F_PREV, F_NEXT };
/* token words */
enum { T_HASH, T_T0, T_KIND, T_REPLY };

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

static int in(long long x, long long lo, long long hi) { return lo <= x && x <= hi; }

/* The bounds of a remembered reply (format.go's tokenReplyValid). t0 <= 2^53. */
static int token_reply_valid(const unsigned char *tk) {
    long long t0 = (long long)ld(tk + 8 * T_T0);
    uint64_t kind = ld(tk + 8 * T_KIND);
    long long r[8];
    for (int i = 0; i < 8; i++) r[i] = (long long)ld(tk + 8 * (T_REPLY + i));
    if (kind == HF_KIND_RESERVE)
        return in(r[0], 1, HF_MAX_COUNT) && r[1] != 0 && in(r[2], 0, HF_MAX_HELD) && in(r[3], -1, HF_MAX_COUNT) &&
               in(r[4], -1, HF_MAX_HELD) && in(r[5], 0, HF_LIMITED_MAX) && in(r[6], t0 + 1, t0 + HF_MAX_DURATION) &&
               in(r[7], 1, (long long)HF_MAX_FENCE);
    if (kind == HF_KIND_TRANSFER)
        return in(r[0], 1, HF_MAX_COUNT) && r[1] != 0 && in(r[2], t0 + 1, t0 + HF_MAX_DURATION) &&
               in(r[3], 0, HF_MAX_COUNT - 1) && in(r[4], 0, HF_MAX_HELD) && r[5] == 0 && r[6] == 0 && r[7] == 0;
    return 0;
}

long charon_hold_check_shape(const unsigned char *p, size_t n, long *ntokens) {
    *ntokens = -1;
    if (p == NULL || n < HF_PHDR1) return -1;
    uint64_t ver = ld(p);
    size_t hdr;
    uint64_t fence = 0, m = 0;
    if (ver == CHARON_HOLD_FORMAT_V1) {
        hdr = HF_PHDR1;
    } else if (ver == CHARON_HOLD_FORMAT_VERSION) {
        if (n < HF_PHDR) return -1;
        hdr = HF_PHDR;
        fence = ld(p + 32);
        m = ld(p + 40);
    } else {
        return -1;
    }
    uint64_t newest = ld(p + 8), lim = ld(p + 16), nh = ld(p + 24);
    if (newest > HF_MAX_AT || lim > (uint64_t)HF_MAX_COUNT + 1 || nh > CHARON_HOLD_MAX_HOLDS ||
        fence > HF_MAX_FENCE || m > CHARON_HOLD_MAX_TOKENS)
        return -1;
    /* nh and m are bounded above, so the length cannot overflow. */
    if ((uint64_t)n != hdr + nh * HF_PREC + m * HF_PTOK) return -1;
    uint64_t prev = 1;
    for (uint64_t i = 0; i < nh; i++) {
        const unsigned char *r = p + hdr + i * HF_PREC;
        uint64_t id = ld(r), c = ld(r + 8), d = ld(r + 16);
        if (id == 0 || c < 1 || c > (uint64_t)HF_MAX_COUNT || d < prev || d > newest + HF_MAX_DURATION) return -1;
        prev = d;
    }
    long long prevt = (long long)newest - HF_ONCE_WINDOW;
    const unsigned char *tp = p + hdr + nh * HF_PREC;
    for (uint64_t i = 0; i < m; i++) {
        const unsigned char *tk = tp + i * HF_PTOK;
        long long t0 = (long long)ld(tk + 8 * T_T0);
        if (t0 < prevt || t0 > (long long)newest || !token_reply_valid(tk)) return -1;
        prevt = t0;
    }
    *ntokens = (long)m;
    return (long)nh;
}

long charon_hold_check(const unsigned char *p, size_t n) {
    long m;
    return charon_hold_check_shape(p, n, &m);
}

size_t charon_hold_mem_size(uint64_t cap, uint64_t tcap) {
    return HF_HDR + cap * HF_REC + 2 * cap * 4 + tcap * HF_PTOK + 2 * tcap * 4;
}

uint64_t charon_hold_cap_for(uint64_t nholds) {
    uint64_t c = HF_MIN_CAP;
    while (c < nholds) c *= 2;
    return c;
}

uint64_t charon_hold_tokcap_for(uint64_t ntokens) {
    if (ntokens == 0) return 0;
    uint64_t c = HF_MIN_TOKCAP;
    while (c < ntokens) c *= 2;
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

int charon_hold_build(const unsigned char *p, long nholds, long ntokens, unsigned char *mem) {
    uint64_t cap = charon_hold_cap_for((uint64_t)nholds), m = 2 * cap;
    uint64_t tcap = charon_hold_tokcap_for((uint64_t)ntokens), tm = 2 * tcap;
    unsigned char *idx = mem + HF_HDR + cap * HF_REC;
    unsigned char *toks = idx + m * 4;
    unsigned char *tidx = toks + tcap * HF_PTOK;
    memset(mem, 0, charon_hold_mem_size(cap, tcap));
    size_t hdr = ld(p) == CHARON_HOLD_FORMAT_V1 ? HF_PHDR1 : HF_PHDR;
    st(HW(mem, W_VERSION), CHARON_HOLD_LAYOUT_VERSION);
    st(HW(mem, W_CAP), cap);
    st(HW(mem, W_N), (uint64_t)nholds);
    st(HW(mem, W_NEWEST), ld(p + 8));
    st(HW(mem, W_LIMIT), ld(p + 16));
    if (hdr == HF_PHDR) st(HW(mem, W_FENCE), ld(p + 32));
    st(HW(mem, W_TCAP), tcap);
    st(HW(mem, W_TN), (uint64_t)ntokens);
    uint64_t held = 0;
    for (long s = 0; s < nholds; s++) {
        const unsigned char *r = p + hdr + (size_t)s * HF_PREC;
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
    const unsigned char *tp = p + hdr + (size_t)nholds * HF_PREC;
    for (long k = 0; k < ntokens; k++) {
        const unsigned char *tk = tp + (size_t)k * HF_PTOK;
        uint64_t h = ld(tk);
        size_t i = hash(h, tm);
        for (uint32_t e; (e = ld32(tidx + i * 4)) != 0; i = (i + 1) & (tm - 1))
            if (ld(toks + (size_t)(e - 1) * HF_PTOK) == h) return 0; /* repeated token */
        st32(tidx + i * 4, (uint32_t)k + 1);
        memcpy(toks + (size_t)k * HF_PTOK, tk, HF_PTOK);
    }
    return 1;
}

size_t charon_hold_persisted_size(const unsigned char *mem) {
    return HF_PHDR + ld(HW(mem, W_N)) * HF_PREC + ld(HW(mem, W_TN)) * HF_PTOK;
}

void charon_hold_serialize(const unsigned char *mem, unsigned char *out) {
    uint64_t n = ld(HW(mem, W_N)), cap = ld(HW(mem, W_CAP));
    uint64_t tn = ld(HW(mem, W_TN)), tcap = ld(HW(mem, W_TCAP)), thead = ld(HW(mem, W_THEAD));
    st(out, CHARON_HOLD_FORMAT_VERSION);
    st(out + 8, ld(HW(mem, W_NEWEST)));
    st(out + 16, ld(HW(mem, W_LIMIT)));
    st(out + 24, n);
    st(out + 32, ld(HW(mem, W_FENCE)));
    st(out + 40, tn);
    unsigned char *o = out + HF_PHDR;
    /* Walk the deadline list; stop after n records whatever the links say. */
    uint64_t s = ld(HW(mem, W_HEAD));
    for (uint64_t i = 0; i < n && s != 0; i++) {
        memcpy(o, RW(mem, s - 1, F_ID), HF_PREC);
        o += HF_PREC;
        s = ld(RW(mem, s - 1, F_NEXT));
    }
    /* The tokens, oldest first (a ring of tcap, a power of two, or none). */
    const unsigned char *toks = mem + HF_HDR + cap * HF_REC + 2 * cap * 4;
    for (uint64_t i = 0; i < tn && tcap > 0; i++) {
        memcpy(o, toks + (size_t)((thead + i) & (tcap - 1)) * HF_PTOK, HF_PTOK);
        o += HF_PTOK;
    }
}
