/* rate_format.c: the C twin of Go's rate.Validate (module/rate/format.go, format_v3.go,
 * format_v1.go). Both follow module/rate/FORMAT.md rule for rule; tests drive both
 * with the same inputs (TestRateCorruptRestore, TestRateLoadValue, TestRateV3FormatCheck). */
#include "rate_format.h"

#include <stdint.h>

#define RF_KIND_DOMAIN 1
#define RF_KIND_GLOBAL 2
#define RF_MAX_TIERS 16
#define RF_DETACHED 16 /* the second-log-only slot */
#define RF_SLOTS 17
#define RF_MAX_COUNT 1000000000000ULL       /* tier limit bound */
#define RF_MAX_DURATION 315360000000ULL     /* 10 years of 365 days, ms */
#define RF_MAX_AT (1ULL << 53)              /* newest time bound */
#define RF_MAX_STORED (1ULL << 46)          /* one stored count */
#define RF_FLAG_SKIP 1
#define RF_FLAG_ENTERED 2
#define RF_SUM_CAP (1ULL << 62)             /* running sums, exclusive */
#define RF_FORM_ONE 0
#define RF_FORM_SINGLE 1
#define RF_FORM_MULTI 2

/* Reads a minimal LEB128 varint of at most 9 bytes (values < 2^63) at p[*off]. */
static int rd(const unsigned char *p, size_t n, size_t *off, uint64_t *v) {
    uint64_t x = 0;
    unsigned shift = 0;
    for (size_t i = 0; i < 9; i++) {
        if (*off >= n || i >= n - *off) return 0;
        unsigned char c = p[*off + i];
        x |= (uint64_t)(c & 0x7f) << shift;
        if (c < 0x80) {
            if (c == 0 && i > 0) return 0; /* overlong */
            *off += i + 1;
            *v = x;
            return 1;
        }
        shift += 7;
    }
    return 0;
}

/* A slot may hold hits when it is the detached slot or one of the value's tiers. */
static int slot_ok(uint64_t j, uint64_t ntiers) {
    return j == RF_DETACHED || j < ntiers;
}

static int check_v1(const unsigned char *p, size_t n) {
    size_t off = 2;
    uint64_t last, ntiers = 0, nev, v, prev = 0;

    if (p == NULL || n < 2) return 0;
    if (p[0] != CHARON_RATE_FORMAT_V1) return 0;
    if (p[1] != RF_KIND_DOMAIN && p[1] != RF_KIND_GLOBAL) return 0;
    if (!rd(p, n, &off, &last) || last > RF_MAX_AT) return 0;

    if (p[1] == RF_KIND_DOMAIN) {
        if (off >= n || p[off] == 0 || p[off] > RF_MAX_TIERS) return 0;
        ntiers = p[off++];
        for (uint64_t t = 0; t < ntiers; t++) {
            uint64_t f[4];
            for (int i = 0; i < 4; i++)
                if (!rd(p, n, &off, &f[i])) return 0;
            if (f[0] > RF_MAX_COUNT) return 0;
            if (f[1] < 1 || f[1] > RF_MAX_DURATION) return 0;
            if (f[2] < 1 || f[2] > RF_MAX_DURATION) return 0;
            if (f[3] > RF_MAX_DURATION) return 0;
            if (off >= n || p[off] > (RF_FLAG_SKIP | RF_FLAG_ENTERED)) return 0;
            if (p[off++] & RF_FLAG_ENTERED) {
                if (!rd(p, n, &off, &v) || v > last) return 0; /* entry = last - v */
            }
        }
    }

    if (!rd(p, n, &off, &nev) || nev == 0 || nev > n) return 0;
    for (uint64_t e = 0; e < nev; e++) {
        uint64_t ts, h, lo;
        if (!rd(p, n, &off, &v)) return 0;
        if (e == 0) {
            if (v > last) return 0;
            ts = last - v; /* the first event counts back from the newest time */
        } else {
            if (v == 0 || v > last - prev) return 0;
            ts = prev + v; /* later events step forward, strictly */
        }
        prev = ts;
        if (!rd(p, n, &off, &h)) return 0;
        lo = (h >> 1) & 31;
        if ((h & 1) == 0) {
            /* single slot: count - 1 above the slot number */
            if (!slot_ok(lo, ntiers) || (h >> 6) + 1 > RF_MAX_STORED) return 0;
        } else {
            /* k = (h >> 6) + 2 consecutive slots from lo, first and last non-zero */
            uint64_t k = (h >> 6) + 2;
            if ((h >> 6) > RF_SLOTS - 2 || lo + k > RF_SLOTS) return 0;
            for (uint64_t i = 0; i < k; i++) {
                uint64_t c;
                if (!rd(p, n, &off, &c) || c > RF_MAX_STORED) return 0;
                if (c != 0 && !slot_ok(lo + i, ntiers)) return 0;
                if (c == 0 && (i == 0 || i == k - 1)) return 0;
            }
        }
    }
    return prev == last && off == n;
}

/* ---- version 2: log first, header at the end (FORMAT.md) ---- */

typedef struct {
    size_t off; /* == end: past the newest event */
    uint64_t ts, sum;
} rf_cursor;

/* Sets a cursor from its fields: offset from the log start, time (tier cursors:
 * after first; the second log's and exact caps': back from last), sum. A cursor past
 * the newest event has 0, 0. */
static int set_cursor(uint64_t rel, uint64_t x, uint64_t sum, size_t start, size_t end, uint64_t first, uint64_t last,
                      int from_first, rf_cursor *c) {
    if (rel > end - start || x > last - first || sum > RF_SUM_CAP) return 0;
    c->off = start + (size_t)rel;
    c->ts = from_first ? first + x : last - x;
    c->sum = sum;
    if (c->off == end) return x == 0 && sum == 0;
    return 1;
}

/* Reads a cursor's three varints and sets it (set_cursor). */
static int rd_cursor(const unsigned char *p, size_t lim, size_t *off, size_t start, size_t end, uint64_t first,
                     uint64_t last, int from_first, rf_cursor *c) {
    uint64_t rel, x, sum;
    if (!rd(p, lim, off, &rel) || !rd(p, lim, off, &x) || !rd(p, lim, off, &sum)) return 0;
    return set_cursor(rel, x, sum, start, end, first, last, from_first, c);
}

/* Reads one event (FORMAT.md, "event"): its step into *d and its counts into
 * c[RF_SLOTS] (zeroed first). */
static int rd_event(const unsigned char *p, size_t end, size_t *off, uint64_t *d, uint64_t c[RF_SLOTS]) {
    uint64_t h;
    for (int j = 0; j < RF_SLOTS; j++) c[j] = 0;
    if (*off >= end) return 0;
    unsigned char b = p[(*off)++];
    if (b < 0x40) { /* one hit in slot 0, short step */
        *d = b;
        c[0] = 1;
        return 1;
    }
    if (b >= 0x80) { /* one hit in slot 0, two-byte step */
        if (*off >= end) return 0;
        *d = ((uint64_t)(b & 0x7f) << 8) | p[(*off)++];
        c[0] = 1;
        return 1;
    }
    *d = b & 15;
    if (*d == 15) {
        uint64_t x;
        if (!rd(p, end, off, &x)) return 0;
        *d += x;
    }
    switch ((b >> 4) & 3) {
    case RF_FORM_ONE:
        c[0] = 1;
        return 1;
    case RF_FORM_SINGLE: {
        if (!rd(p, end, off, &h)) return 0;
        uint64_t slot = h & 31, cnt = (h >> 5) + 1;
        if (slot > RF_DETACHED || cnt > RF_MAX_STORED) return 0;
        c[slot] = cnt;
        return 1;
    }
    case RF_FORM_MULTI: {
        if (!rd(p, end, off, &h)) return 0;
        uint64_t lo = h & 31, kk = h >> 5;
        if (kk > RF_SLOTS - 2 || lo + kk + 2 > RF_SLOTS) return 0;
        uint64_t k = kk + 2;
        for (uint64_t i = 0; i < k; i++) {
            uint64_t x;
            if (!rd(p, end, off, &x) || x > RF_MAX_STORED) return 0;
            if (x == 0 && (i == 0 || i == k - 1)) return 0;
            c[lo + i] = x;
        }
        return 1;
    }
    }
    return 0;
}

/* ---- version 3: a token table and the caps' bucket logs before the log, and a
 * header extension (FORMAT.md, "Version 3") ---- */

#define RF_MAX_TOKENS (1ULL << 19) /* token slots, a power of two */
#define RF_TOKEN_BYTES 64          /* one slot: 8 little-endian u64 words */
#define RF_TOKEN_WORDS 8
#define RF_T0_MASK ((1ULL << 53) - 1) /* word 1: bits 0-52 t0 */
#define RF_TIER_SHIFT 53              /* word 1: bits 53-57 tier */
#define RF_TIER_MASK 31ULL
#define RF_WORD1_ZERO_SHIFT 61 /* word 1: bits 61-63 are zero */
#define RF_MAX_CAPS 8
#define RF_SECOND_MS 1000 /* the second log's window: the cap window never stored */
/* A token lies at most this many slots past its home (FORMAT.md, "token"), so a
 * lookup, and the duplicate check below, read at most that many slots per token. */
#define RF_MAX_PROBE 64

static uint64_t le64(const unsigned char *p) {
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = x << 8 | p[i];
    return x;
}

/* A token slot's word w (slot i of the table at p + 1). */
static uint64_t tok_word(const unsigned char *p, size_t i, int w) {
    return le64(p + 1 + i * RF_TOKEN_BYTES + (size_t)w * 8);
}


/* The token table (FORMAT.md, "token"): ntok slots at p + 1, all within the value
 * (the caller checked 1 + 64 * ntok <= the log's start). */
static int check_tokens(const unsigned char *p, uint64_t ntok, uint64_t occ, uint64_t tnew, uint64_t last) {
    size_t nt = (size_t)ntok, mask = nt - 1, empty = nt, filled = 0;
    uint64_t newest = 0;
    for (size_t i = 0; i < nt; i++) {
        uint64_t w[RF_TOKEN_WORDS], any = 0;
        for (int k = 0; k < RF_TOKEN_WORDS; k++) {
            w[k] = tok_word(p, i, k);
            any |= w[k];
        }
        if (any == 0) { /* an empty slot: 64 zero bytes */
            empty = i;
            continue;
        }
        uint64_t t0 = w[1] & RF_T0_MASK;
        if (w[0] == 0) return 0; /* h: 0 becomes 1 */
        if (t0 > last || ((w[1] >> RF_TIER_SHIFT) & RF_TIER_MASK) > RF_DETACHED || (w[1] >> RF_WORD1_ZERO_SHIFT) != 0)
            return 0;
        if (w[2] < 1 || w[2] > RF_MAX_COUNT || w[3] > RF_MAX_COUNT) return 0; /* granted, tier_limit */
        if (w[4] >= RF_SUM_CAP || w[5] >= RF_SUM_CAP || w[6] >= RF_SUM_CAP) return 0; /* hits */
        if (w[7] > RF_MAX_AT) return 0;                                                /* reset_after */
        if (t0 > newest) newest = t0;
        filled++;
    }
    if (filled != occ || newest != last - tnew) return 0;

    /* Reachability: a slot at probe distance d from its home (h & mask) is reached
     * without passing an empty slot when the d slots before it are all non-empty.
     * Walk once around from an empty slot, counting the run of non-empty slots. In
     * a full table every slot is reachable. No token lies more than RF_MAX_PROBE
     * slots past its home. */
    size_t run = 0;
    for (size_t k = 1; k <= nt; k++) {
        size_t i = (empty + k) & mask; /* empty == nt (full table): from slot 0 */
        uint64_t h = tok_word(p, i, 0);
        if (h == 0) {
            run = 0;
            continue;
        }
        size_t d = (i - (size_t)(h & mask)) & mask;
        if (d > RF_MAX_PROBE || (empty < nt && d > run)) return 0;
        run++;
    }

    /* No two non-empty slots hold the same h: two such slots share a home and both
     * lie on the chain from it, at most RF_MAX_PROBE slots long. */
    for (size_t i = 0; i < nt; i++) {
        uint64_t h = tok_word(p, i, 0);
        if (h == 0) continue;
        for (size_t j = (size_t)(h & mask); j != i; j = (j + 1) & mask)
            if (tok_word(p, j, 0) == h) return 0;
    }
    return 1;
}

/* A bucketed cap as its header entry describes it. */
typedef struct {
    uint64_t window, len, spare, dead, span, sum;
    size_t at; /* the region's offset in the value */
} rf_bcap;

/* Version 3's header extension, read before version 2's fields; what depends on
 * those (tnew, the regions' place, the exact caps' cursors) is checked after them. */
typedef struct {
    uint64_t ntok, occ, tnew, tbuilt, ncaps, nexact, nb;
    uint64_t exact[RF_MAX_CAPS][3]; /* the exact caps' cursors: off, time, sum */
    rf_bcap b[RF_MAX_CAPS];
} rf_ext;

static int rd_ext(const unsigned char *p, size_t lim, size_t *off, rf_ext *x) {
    uint64_t windows[RF_MAX_CAPS];
    x->occ = x->tnew = x->tbuilt = x->nexact = x->nb = 0;
    if (!rd(p, lim, off, &x->ntok) || x->ntok > RF_MAX_TOKENS || (x->ntok & (x->ntok - 1)) != 0) return 0;
    if (x->ntok > 0) {
        if (!rd(p, lim, off, &x->occ) || x->occ < 1 || x->occ > x->ntok) return 0;
        /* tnew and tbuilt count back from last: <= last, checked once last is read */
        if (!rd(p, lim, off, &x->tnew) || x->tnew > RF_MAX_AT) return 0;
        if (!rd(p, lim, off, &x->tbuilt) || x->tbuilt > RF_MAX_AT) return 0;
    }
    if (*off >= lim || p[*off] > RF_MAX_CAPS) return 0;
    x->ncaps = p[(*off)++];
    for (uint64_t i = 0; i < x->ncaps; i++) {
        uint64_t limit, w;
        if (!rd(p, lim, off, &limit) || limit > RF_MAX_COUNT) return 0;
        if (!rd(p, lim, off, &w) || w < 1 || w > RF_MAX_DURATION || w == RF_SECOND_MS) return 0;
        for (uint64_t j = 0; j < i; j++)
            if (windows[j] == w) return 0;
        windows[i] = w;
        if (w < RF_SECOND_MS) { /* exact: a cursor like the second log's */
            uint64_t *cu = x->exact[x->nexact++];
            for (int k = 0; k < 3; k++)
                if (!rd(p, lim, off, &cu[k])) return 0;
            continue;
        }
        rf_bcap *c = &x->b[x->nb++];
        uint64_t g = (w + RF_SECOND_MS - 1) / RF_SECOND_MS;
        c->window = w;
        if (!rd(p, lim, off, &c->len) || c->len < 2 || c->len > lim) return 0;
        /* spare: zero bytes after the used ones, at most 64 + len */
        if (!rd(p, lim, off, &c->spare) || c->spare > 64 + c->len) return 0;
        if (!rd(p, lim, off, &c->dead) || c->dead >= c->len) return 0;
        if (!rd(p, lim, off, &c->span) || c->span > w / g + 1) return 0;
        if (!rd(p, lim, off, &c->sum) || c->sum >= RF_SUM_CAP) return 0;
    }
    return 1;
}

/* floor(a / b) for b > 0, a of either sign. */
static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if (a % b != 0 && a < 0) q--;
    return q;
}

/* Reads a bucket log entry at p[*off] (before end): a step >= 1 and a count
 * 1..2^62-1. Every entry has this form, dead or live (Go's readEntry). */
static int rd_entry(const unsigned char *p, size_t end, size_t *off, uint64_t *step, uint64_t *cnt) {
    return rd(p, end, off, step) && rd(p, end, off, cnt) && *step >= 1 && *cnt >= 1 && *cnt < RF_SUM_CAP;
}

/* A bucket log (FORMAT.md, "cap"): whole entries in the dead front up to dead
 * exactly, then the live entries to the region's end exactly. The newest bucket is
 * floor(last / g), the first live one newest - span and not older than
 * floor((last - window) / g); the steps after the first live entry add up to span
 * (the first one's is not read, but is >= 1 like every step); the live counts add
 * up to sum. */
static int check_bucket_log(const unsigned char *p, const rf_bcap *c, uint64_t last) {
    uint64_t g = (c->window + RF_SECOND_MS - 1) / RF_SECOND_MS; /* window > 1000: g >= 2 */
    int64_t newest = (int64_t)(last / g);                      /* last <= 2^53 */
    if (newest - (int64_t)c->span < floor_div((int64_t)last - (int64_t)c->window, (int64_t)g)) return 0;
    size_t off = c->at, live = c->at + (size_t)c->dead, end = c->at + (size_t)c->len;
    uint64_t step, cnt, steps = 0, sum = 0;
    while (off < live)
        if (!rd_entry(p, end, &off, &step, &cnt) || off > live) return 0;
    for (int firstent = 1; off < end; firstent = 0) {
        if (!rd_entry(p, end, &off, &step, &cnt)) return 0;
        if (!firstent) {
            if (step > c->span - steps) return 0;
            steps += step;
        }
        if (cnt > c->sum - sum) return 0; /* sum < 2^62 */
        sum += cnt;
    }
    for (size_t i = 0; i < (size_t)c->spare; i++)
        if (p[end + i] != 0) return 0;
    return steps == c->span && sum == c->sum;
}

/* Versions 2 and 3: the log (after version 3's token table and cap regions), the
 * header at the end, the trailer. */
static int check_v23(const unsigned char *p, size_t n) {
    /* tiers, then the second log, then version 3's exact caps */
    rf_cursor cur[RF_MAX_TIERS + 1 + RF_MAX_CAPS];
    rf_ext x;
    uint64_t last, start, back, nl, v, ntiers = 0, ncur;
    size_t lim, hl;
    if (n < 4) return 0;
    if (p[n - 1] != 0xff) { /* trailer: the header length, one byte below 0xff ... */
        lim = n - 1;
        hl = p[n - 1];
    } else { /* ... or a u16 of at least 0xff, then 0xff */
        lim = n - 3;
        hl = (size_t)p[n - 3] | ((size_t)p[n - 2] << 8);
        if (hl < 0xff) return 0;
    }
    if (hl < 1 || hl > lim || lim - hl < 2) return 0;
    size_t end = lim - hl, off = end;
    /* Version 3: the extension comes first in the header. */
    if (p[0] == CHARON_RATE_FORMAT_V3) {
        if (!rd_ext(p, lim, &off, &x)) return 0;
    } else {
        x.ntok = x.occ = x.tnew = x.tbuilt = x.ncaps = x.nexact = x.nb = 0;
    }
    if (off >= lim) return 0;
    unsigned kind = p[off++];
    if (kind != RF_KIND_DOMAIN && kind != RF_KIND_GLOBAL) return 0;
    if (!rd(p, lim, &off, &last) || last > RF_MAX_AT) return 0;
    if (!rd(p, lim, &off, &start) || start < 1 || start >= end) return 0;
    if (!rd(p, lim, &off, &back) || back > last) return 0;
    uint64_t first = last - back;
    if (!rd(p, lim, &off, &nl) || nl < 1 || nl > end - start) return 0;
    size_t newest = end - (size_t)nl;
    rf_cursor sec;
    if (!rd_cursor(p, lim, &off, (size_t)start, end, first, last, 0, &sec)) return 0;
    if (kind == RF_KIND_DOMAIN) {
        if (!rd(p, lim, &off, &v) || v > last + 1) return 0; /* newest tier-1 hit */
        if (off >= lim || p[off] == 0 || p[off] > RF_MAX_TIERS) return 0;
        ntiers = p[off++];
        for (uint64_t t = 0; t < ntiers; t++) {
            uint64_t f[4];
            for (int i = 0; i < 4; i++)
                if (!rd(p, lim, &off, &f[i])) return 0;
            if (f[0] > RF_MAX_COUNT) return 0;
            if (f[1] < 1 || f[1] > RF_MAX_DURATION) return 0;
            if (f[2] < 1 || f[2] > RF_MAX_DURATION) return 0;
            if (f[3] > RF_MAX_DURATION) return 0;
            if (off >= lim || p[off] > (RF_FLAG_SKIP | RF_FLAG_ENTERED)) return 0;
            if (p[off++] & RF_FLAG_ENTERED) {
                if (!rd(p, lim, &off, &v) || v > last) return 0;
            }
            if (!rd_cursor(p, lim, &off, (size_t)start, end, first, last, 1, &cur[t])) return 0;
        }
    }
    if (off != lim) return 0;
    cur[ntiers] = sec;
    ncur = ntiers + 1;

    /* What of the extension depends on version 2's fields. The regions lie in
     * [1, logBase), logBase <= start: the token table, then each bucketed cap's. */
    if (x.tnew > last || x.tbuilt > last) return 0;
    uint64_t logbase = 1 + RF_TOKEN_BYTES * x.ntok; /* <= 1 + 2^25 */
    if (logbase > start) return 0;
    for (uint64_t i = 0; i < x.nb; i++) {
        if (x.b[i].len > start - logbase || x.b[i].spare > start - logbase - x.b[i].len) return 0;
        x.b[i].at = (size_t)logbase;
        logbase += x.b[i].len + x.b[i].spare; /* <= start */
    }
    for (uint64_t i = 0; i < x.nexact; i++) {
        const uint64_t *f = x.exact[i];
        if (!set_cursor(f[0], f[1], f[2], (size_t)start, end, first, last, 0, &cur[ncur++])) return 0;
    }

    /* Walk the live log: times, slots, the newest event, and every cursor's sum. */
    uint64_t total[RF_SLOTS + 1] = {0}, pre[RF_MAX_TIERS + 1 + RF_MAX_CAPS] = {0};
    int seen[RF_MAX_TIERS + 1 + RF_MAX_CAPS] = {0};
    uint64_t ts = first, c[RF_SLOTS], d;
    size_t e = (size_t)start;
    for (int firstev = 1;; firstev = 0) {
        size_t at = e;
        if (!rd_event(p, end, &e, &d, c)) return 0;
        if (!firstev) {
            if (d == 0 || d > last - ts) return 0;
            ts += d;
        }
        if (ts > last) return 0;
        for (uint64_t i = 0; i < ncur; i++) {
            if (cur[i].off != at) continue;
            if (cur[i].ts != ts) return 0;
            seen[i] = 1;
            pre[i] = i >= ntiers ? total[RF_SLOTS] : total[i];
        }
        uint64_t sum = 0;
        for (int j = 0; j < RF_SLOTS; j++) {
            if (c[j] && kind == RF_KIND_GLOBAL && j != RF_DETACHED) return 0;
            /* saturating at RF_SUM_CAP, as Go's satAdd */
            total[j] = total[j] > RF_SUM_CAP - c[j] ? RF_SUM_CAP : total[j] + c[j];
            sum += c[j]; /* 17 counts <= 2^46 each */
        }
        total[RF_SLOTS] = total[RF_SLOTS] > RF_SUM_CAP - sum ? RF_SUM_CAP : total[RF_SLOTS] + sum;
        if (e >= end) {
            if (e != end || at != newest || ts != last) return 0;
            for (uint64_t j = ntiers; j < RF_DETACHED; j++)
                if (c[j]) return 0; /* the newest event holds no dropped tier's hits */
            break;
        }
    }
    for (uint64_t i = 0; i < ncur; i++) {
        if (cur[i].off == end) continue;
        uint64_t t = i >= ntiers ? total[RF_SLOTS] : total[i];
        if (!seen[i] || t >= RF_SUM_CAP || cur[i].sum != t - pre[i]) return 0;
    }

    if (x.ntok > 0 && !check_tokens(p, x.ntok, x.occ, x.tnew, last)) return 0;
    for (uint64_t i = 0; i < x.nb; i++)
        if (!check_bucket_log(p, &x.b[i], last)) return 0;
    return 1;
}

int charon_rate_check(const unsigned char *p, size_t n) {
    if (p == NULL || n < 1) return 0;
    switch (p[0]) {
    case CHARON_RATE_FORMAT_V1:
        return check_v1(p, n);
    case CHARON_RATE_FORMAT_V2:
    case CHARON_RATE_FORMAT_V3:
        return check_v23(p, n);
    }
    return 0;
}
