/* libFuzzer target for the safetensors reader: any byte string must either open (and then every
 * tensor byte and metadata string it exposes must be readable) or fail with ARB_ERR_FORMAT.
 * A crash, a sanitizer report or another status is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arbitor/safetensors.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    arb_fuzz_quiet();
    arb_safetensors *st;
    arb_status s = arb_safetensors_open_memory(&st, data, size);
    if (s != ARB_OK) {
        if (s != ARB_ERR_FORMAT || !arb_last_error()[0]) abort();
        return 0;
    }
    volatile unsigned acc = 0;
    for (size_t i = 0; i < arb_safetensors_count(st); i++) {
        const arb_st_tensor *t = arb_safetensors_at(st, i);
        if (arb_safetensors_find(st, t->name) != t) abort(); /* names are unique */
        const uint8_t *p = t->data;
        for (size_t k = 0; k < t->nbytes; k++) acc += p[k];
        acc += (unsigned)strlen(t->dtype_name);
        if (t->dtype != ARB_ST_DTYPE_FOREIGN) {
            const arb_st_tensor *e;
            if (arb_safetensors_expect(st, t->name, t->dtype, t->ndim, t->shape, &e) != ARB_OK || e != t) abort();
        }
        if (t->dtype == ARB_F32 || t->dtype == ARB_BF16 || t->dtype == ARB_F16) {
            arb_tensor f;
            if (t->nbytes <= ((size_t)1 << 20)) {
                if (arb_safetensors_load_f32(st, t->name, &f) != ARB_OK) abort();
                arb_tensor_free(&f);
            }
        }
    }
    for (size_t i = 0; i < arb_safetensors_metadata_count(st); i++) {
        const char *k = arb_safetensors_metadata_key(st, i);
        const char *v = arb_safetensors_metadata(st, k);
        if (!v) abort();
        acc += (unsigned)strlen(k) + (unsigned)strlen(v);
    }
    arb_safetensors_close(st);
    (void)acc;
    return 0;
}
