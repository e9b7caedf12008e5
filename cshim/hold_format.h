/* hold_format.h: the charon-hd value's two forms (module/hold/FORMAT.md): the
 * in-memory layout Go mutates in place, and the canonical persisted form of RDB,
 * RESTORE, AOF and DEBUG DIGEST. Pure C, standard headers only. */
#ifndef CHARON_HOLD_FORMAT_H
#define CHARON_HOLD_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* The persisted form's version (hold.EncVer on the Go side). */
#define CHARON_HOLD_FORMAT_VERSION 1
#define CHARON_HOLD_MAX_HOLDS (1u << 20)

/* Returns the number of holds when p[0..n) is a valid persisted form (every rule of
 * Go's hold.Validate: ids are checked for uniqueness by charon_hold_build), -1
 * otherwise. Every read is bounds-checked: any bytes at all are safe to pass. */
long charon_hold_check(const unsigned char *p, size_t n);

/* Byte size of the in-memory layout with room for cap holds; the capacity used for
 * nholds holds. */
size_t charon_hold_mem_size(uint64_t cap);
uint64_t charon_hold_cap_for(uint64_t nholds);

/* Lays out the checked persisted form p (nholds holds) into mem, which has
 * charon_hold_mem_size(charon_hold_cap_for(nholds)) bytes. Returns 0 on a repeated id. */
int charon_hold_build(const unsigned char *p, long nholds, unsigned char *mem);

/* Length of mem's persisted form, and writing it into out (that many bytes). */
size_t charon_hold_persisted_size(const unsigned char *mem);
void charon_hold_serialize(const unsigned char *mem, unsigned char *out);

#endif
