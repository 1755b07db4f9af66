/* Private helpers shared by the safetensors reader and writer (src/formats/safetensors*.c). */
#ifndef ARB_ST_INTERNAL_H
#define ARB_ST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The format's hard limits (the reference implementation's, so files cross both ways). */
#define ARB_ST_MAX_HEADER ((uint64_t)100000000) /* bytes of JSON header */
#define ARB_ST_MAX_DIM ((uint64_t)1 << 48)      /* one shape entry */

/* True if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF). */
bool arb_st_utf8_valid(const unsigned char *s, size_t n);

/* A printable, bounded copy of a file-controlled name for error messages: control bytes become
 * '?', long names are cut with "...". Returns buf. */
const char *arb_st_quote(const char *s, char *buf, size_t cap);

/* Dtypes the format defines, arbitor's and the foreign ones, with their size in bits. */
typedef struct arb_st_dtype_info {
    const char *name;
    unsigned bits;
    int arb; /* arb_dtype, or ARB_ST_DTYPE_FOREIGN */
} arb_st_dtype_info;
const arb_st_dtype_info *arb_st_dtype_lookup(const char *name);

#endif
