/* libFuzzer target for the sidecar image entry point: any byte string must decode (PNG/JPEG) to
 * a readable RGB buffer that the DINOv2 preprocessing accepts, or fail with a one-line
 * ARB_ERR_FORMAT/UNSUPPORTED/OOM. A crash, a sanitizer report or another status is a bug.
 * Images are capped by the decoder (side ≤ 32768, ≤ 128 Mpx); the fuzzer's own -rss_limit_mb
 * catches anything that slips by. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arbitor/sidecars.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    arb_fuzz_quiet();
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    arb_status s = arb_image_decode(data, size, &rgb, &w, &h);
    if (s != ARB_OK) {
        if ((s != ARB_ERR_FORMAT && s != ARB_ERR_UNSUPPORTED && s != ARB_ERR_OOM) || !arb_last_error()[0] ||
            strchr(arb_last_error(), '\n'))
            abort();
        return 0;
    }
    if (!rgb || w < 1 || h < 1) abort();
    volatile unsigned acc = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i += 61) acc += rgb[i];
    acc += rgb[(size_t)w * h * 3 - 1];
    (void)acc;
    if ((size_t)w * h <= 4096 * 4096) { /* the processor on what came out */
        arb_tensor pv;
        s = arb_image_preprocess_dinov2(rgb, w, h, &pv);
        if (s == ARB_OK) arb_tensor_free(&pv);
        else if (s != ARB_ERR_SHAPE && s != ARB_ERR_OOM) abort();
    }
    arb_free(rgb);
    return 0;
}
