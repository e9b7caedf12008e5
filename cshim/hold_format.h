/* hold_format.h: the charon-hd value's two forms (module/hold/FORMAT.md): the
 * in-memory layout Go mutates in place, and the canonical persisted form of RDB,
 * RESTORE, AOF and DEBUG DIGEST. Pure C, standard headers only. */
#ifndef CHARON_HOLD_FORMAT_H
#define CHARON_HOLD_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* The persisted form's versions (hold.EncVer, hold.EncVer1 on the Go side): 1 before
 * fences and ONCE tokens, 2 with them. Both load; 2 is written. */
#define CHARON_HOLD_FORMAT_V1 1
#define CHARON_HOLD_FORMAT_VERSION 2
/* The in-memory layout's version (hold.LayoutVersion). */
#define CHARON_HOLD_LAYOUT_VERSION 2
#define CHARON_HOLD_MAX_HOLDS (1u << 20)
#define CHARON_HOLD_MAX_TOKENS (1u << 16)

/* Returns the number of holds when p[0..n) is a valid persisted form (every rule of
 * Go's hold.Validate: ids and token hashes are checked for uniqueness by
 * charon_hold_build), -1 otherwise; charon_hold_check_shape also sets *ntokens. Every
 * read is bounds-checked: any bytes at all are safe to pass. */
long charon_hold_check(const unsigned char *p, size_t n);
long charon_hold_check_shape(const unsigned char *p, size_t n, long *ntokens);

/* Byte size of the in-memory layout with room for cap holds and tcap tokens; the
 * capacities used for nholds holds and ntokens tokens. */
size_t charon_hold_mem_size(uint64_t cap, uint64_t tcap);
uint64_t charon_hold_cap_for(uint64_t nholds);
uint64_t charon_hold_tokcap_for(uint64_t ntokens);

/* Lays out the checked persisted form p (nholds holds, ntokens tokens) into mem, which
 * has charon_hold_mem_size(charon_hold_cap_for(nholds), charon_hold_tokcap_for(ntokens))
 * bytes. Returns 0 on a repeated id or token hash. */
int charon_hold_build(const unsigned char *p, long nholds, long ntokens, unsigned char *mem);

/* Length of mem's persisted form (always the current version), and writing it into
 * out (that many bytes). */
size_t charon_hold_persisted_size(const unsigned char *mem);
void charon_hold_serialize(const unsigned char *mem, unsigned char *out);

#endif
