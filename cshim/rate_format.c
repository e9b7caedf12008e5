/* rate_format.c: the C twin of Go's rate.Validate (module/rate/format.go). Both follow
 * module/rate/FORMAT.md rule for rule; a test drives both with the same inputs. */
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

/* Reads a cursor: offset from the log start, time (tier cursors: after first; the
 * second log's: back from last), sum. A cursor past the newest event has 0, 0. */
static int rd_cursor(const unsigned char *p, size_t lim, size_t *off, size_t start, size_t end, uint64_t first,
                     uint64_t last, int from_first, rf_cursor *c) {
    uint64_t rel, x, sum;
    if (!rd(p, lim, off, &rel) || !rd(p, lim, off, &x) || !rd(p, lim, off, &sum)) return 0;
    if (rel > end - start || x > last - first || sum > RF_SUM_CAP) return 0;
    c->off = start + (size_t)rel;
    c->ts = from_first ? first + x : last - x;
    c->sum = sum;
    if (c->off == end) return x == 0 && sum == 0;
    return 1;
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

static int check_v2(const unsigned char *p, size_t n) {
    rf_cursor cur[RF_MAX_TIERS + 1]; /* tiers, then the second log */
    uint64_t last, start, back, nl, v, ntiers = 0;
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

    /* Walk the live log: times, slots, the newest event, and every cursor's sum. */
    uint64_t total[RF_SLOTS + 1] = {0}, pre[RF_MAX_TIERS + 1] = {0};
    int seen[RF_MAX_TIERS + 1] = {0};
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
        for (uint64_t i = 0; i <= ntiers; i++) {
            if (cur[i].off != at) continue;
            if (cur[i].ts != ts) return 0;
            seen[i] = 1;
            pre[i] = i == ntiers ? total[RF_SLOTS] : total[i];
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
    for (uint64_t i = 0; i <= ntiers; i++) {
        if (cur[i].off == end) continue;
        uint64_t t = i == ntiers ? total[RF_SLOTS] : total[i];
        if (!seen[i] || t >= RF_SUM_CAP || cur[i].sum != t - pre[i]) return 0;
    }
    return 1;
}

int charon_rate_check(const unsigned char *p, size_t n) {
    if (p == NULL || n < 1) return 0;
    switch (p[0]) {
    case CHARON_RATE_FORMAT_V1:
        return check_v1(p, n);
    case CHARON_RATE_FORMAT_V2:
        return check_v2(p, n);
    }
    return 0;
}
