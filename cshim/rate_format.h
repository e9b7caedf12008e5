/* rate_format.h: structural check of a CHARON.RATE value (module/rate/FORMAT.md).
 * Pure C, standard headers only; no allocation. */
#ifndef CHARON_RATE_FORMAT_H
#define CHARON_RATE_FORMAT_H

#include <stddef.h>

/* The encoding version the check understands (rate.EncVer on the Go side). */
#define CHARON_RATE_FORMAT_VERSION 1

/* Returns 1 when p[0..n) is a complete, canonical value of the current encoding (the
 * same rules as Go's rate.Validate), 0 otherwise. Every read is bounds-checked, so any
 * bytes at all (RESTORE payloads included) are safe to pass. */
int charon_rate_check(const unsigned char *p, size_t n);

#endif
