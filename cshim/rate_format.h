/* rate_format.h: structural check of a CHARON.RATE value (module/rate/FORMAT.md).
 * Pure C, standard headers only, no allocation. */
#ifndef CHARON_RATE_FORMAT_H
#define CHARON_RATE_FORMAT_H

#include <stddef.h>

/* The encodings the check understands: the first byte of a value. Version 3 is
 * written when a value holds ONCE tokens or windowed caps, version 2 otherwise;
 * version 1 is still read. */
#define CHARON_RATE_FORMAT_V1 1
#define CHARON_RATE_FORMAT_V2 2
#define CHARON_RATE_FORMAT_V3 3
#define CHARON_RATE_FORMAT_VERSION CHARON_RATE_FORMAT_V3

/* Returns 1 when p[0..n) is a complete, valid value of a known encoding (the same
 * rules as Go's rate.Validate), 0 otherwise. Every read is bounds-checked, so any
 * bytes at all (RESTORE payloads included) are safe to pass. */
int charon_rate_check(const unsigned char *p, size_t n);

#endif
