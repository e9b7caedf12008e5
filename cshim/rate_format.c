/* PLACEHOLDER written by the lead so cshim compiles; the rate helper replaces this file. */
#include "rate_format.h"
int charon_rate_check(const unsigned char *p, size_t n) { (void)p; return n > 0; }
