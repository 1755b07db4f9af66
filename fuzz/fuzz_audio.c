/* libFuzzer target for the sidecar audio entry point: any byte string must decode (WAV/FLAC/OGG
 * via libsndfile, downmix, resample to 16 kHz) to readable samples, or fail with a one-line
 * ARB_ERR_FORMAT/UNSUPPORTED/OOM. A crash, a sanitizer report or another status is a bug. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arbitor/sidecars.h"
#include "fuzz_common.h"

/* libvorbis (under libsndfile) leaks its vorbis_info on some malformed OGG streams; that is a
 * third-party leak on an error path, not ours, so LeakSanitizer is told to skip it. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libvorbis\nleak:vorbis_info_init\n"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    arb_fuzz_quiet();
    float *x = NULL;
    size_t n = 0;
    arb_status s = arb_audio_decode(data, size, 16000, &x, &n);
    if (s != ARB_OK) {
        if ((s != ARB_ERR_FORMAT && s != ARB_ERR_UNSUPPORTED && s != ARB_ERR_OOM) || !arb_last_error()[0] ||
            strchr(arb_last_error(), '\n'))
            abort();
        return 0;
    }
    if (!x || n == 0) abort();
    volatile float acc = 0;
    for (size_t i = 0; i < n; i += 97) acc += x[i];
    acc += x[n - 1];
    (void)acc;
    arb_free(x);
    return 0;
}
