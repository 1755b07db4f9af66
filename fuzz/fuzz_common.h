/* fuzz/fuzz_common.h — what every libFuzzer target here starts with: the entry point's
 * prototype and a log callback that keeps expected error messages off the fuzzer's output. */
#ifndef ARB_FUZZ_COMMON_H
#define ARB_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "arbitor/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void arb_fuzz_quiet_log(arb_log_level level, const char *msg, void *user) {
    (void)level, (void)msg, (void)user;
}

/* Silences the library's log once per process. */
static inline void arb_fuzz_quiet(void) {
    static int done;
    if (!done) {
        arb_log_set(arb_fuzz_quiet_log, NULL);
        done = 1;
    }
}

#endif
