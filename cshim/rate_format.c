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

int charon_rate_check(const unsigned char *p, size_t n) {
    size_t off = 2;
    uint64_t last, ntiers = 0, nev, v, prev = 0;

    if (p == NULL || n < 2) return 0;
    if (p[0] != CHARON_RATE_FORMAT_VERSION) return 0;
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
