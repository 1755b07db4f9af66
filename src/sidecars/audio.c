/* Sidecar preprocessing for audio: WAV/FLAC/OGG decoding from memory (libsndfile virtual I/O),
 * downmix to mono (channel mean), resampling to 16 kHz (libsamplerate, best sinc).
 *
 * Why from memory: the fuzzer and the file path share one decoder, and libsndfile never sees a
 * file descriptor it could seek past. Moonshine takes the raw waveform (no normalization), so
 * this is the whole of its preprocessing. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef ARB_HAVE_AUDIO
#include <samplerate.h>
#include <sndfile.h>
#endif

#include "sidecars/sc_internal.h"

#define AUDIO_MAX_FRAMES ((int64_t)16000 * 60 * 60 * 4) /* 4 h at 16 kHz (more at higher rates is refused) */

#ifdef ARB_HAVE_AUDIO
typedef struct vmem {
    const unsigned char *p;
    sf_count_t len, pos;
} vmem;

static sf_count_t vm_len(void *u) { return ((vmem *)u)->len; }
static sf_count_t vm_seek(sf_count_t off, int whence, void *u) {
    vmem *m = (vmem *)u;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->len;
    sf_count_t np = base + off;
    if (np < 0 || np > m->len) return -1;
    m->pos = np;
    return np;
}
static sf_count_t vm_read(void *dst, sf_count_t n, void *u) {
    vmem *m = (vmem *)u;
    if (n < 0) return 0;
    sf_count_t left = m->len - m->pos;
    if (n > left) n = left;
    memcpy(dst, m->p + m->pos, (size_t)n);
    m->pos += n;
    return n;
}
static sf_count_t vm_write(const void *src, sf_count_t n, void *u) {
    (void)src, (void)n, (void)u;
    return 0;
}
static sf_count_t vm_tell(void *u) { return ((vmem *)u)->pos; }
#endif

arb_status arb_audio_resample(const float *in, size_t n, int in_rate, int out_rate, float **out, size_t *out_n) {
    if (!in || !out || !out_n || in_rate < 1 || out_rate < 1 || in_rate > 768000 || out_rate > 768000)
        return arb_error(ARB_ERR_INVALID_ARG, "resample: bad arguments (%d Hz -> %d Hz)", in_rate, out_rate);
    *out = NULL;
    *out_n = 0;
    double ratio = (double)out_rate / in_rate;
    if (ratio > 256.0 || ratio < 1.0 / 256) return arb_error(ARB_ERR_UNSUPPORTED, "resample: ratio %d/%d out of range", out_rate, in_rate);
    size_t cap = (size_t)((double)n * ratio) + 16;
    float *o = (float *)arb_alloc(cap * sizeof(float));
    if (!o) return arb_error(ARB_ERR_OOM, "resample: out of memory for %zu samples", cap);
    if (in_rate == out_rate) {
        memcpy(o, in, n * sizeof(float));
        *out = o;
        *out_n = n;
        return ARB_OK;
    }
#ifdef ARB_HAVE_AUDIO
    SRC_DATA d;
    memset(&d, 0, sizeof d);
    d.data_in = in;
    d.input_frames = (long)n;
    d.data_out = o;
    d.output_frames = (long)cap;
    d.src_ratio = ratio;
    int e = src_simple(&d, SRC_SINC_BEST_QUALITY, 1);
    if (e) {
        arb_free(o);
        return arb_error(ARB_ERR_INTERNAL, "resample: %s", src_strerror(e));
    }
    *out = o;
    *out_n = (size_t)d.output_frames_gen;
    return ARB_OK;
#else
    arb_free(o);
    return arb_error(ARB_ERR_UNSUPPORTED, "audio: this build has no libsamplerate (install libsamplerate0-dev and rebuild)");
#endif
}

arb_status arb_audio_decode(const void *buf, size_t len, int rate, float **samples, size_t *n) {
    if (!samples || !n || rate < 1 || rate > 768000) return arb_error(ARB_ERR_INVALID_ARG, "arb_audio_decode: bad arguments");
    if (!buf || len == 0) return arb_error(ARB_ERR_FORMAT, "audio: empty input");
    *samples = NULL;
    *n = 0;
#ifdef ARB_HAVE_AUDIO
    vmem m = {(const unsigned char *)buf, (sf_count_t)len, 0};
    SF_VIRTUAL_IO io = {vm_len, vm_seek, vm_read, vm_write, vm_tell};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_virtual(&io, SFM_READ, &info, &m);
    if (!sf) return arb_error(ARB_ERR_FORMAT, "audio: %s", sf_strerror(NULL));
    int major = info.format & SF_FORMAT_TYPEMASK;
    if (major != SF_FORMAT_WAV && major != SF_FORMAT_WAVEX && major != SF_FORMAT_FLAC && major != SF_FORMAT_OGG &&
        major != SF_FORMAT_RF64) {
        sf_close(sf);
        return arb_error(ARB_ERR_UNSUPPORTED, "audio: container 0x%x is not WAV, FLAC or OGG", (unsigned)major);
    }
    if (info.channels < 1 || info.channels > 64 || info.samplerate < 1000 || info.samplerate > 768000 || info.frames < 0 ||
        info.frames > AUDIO_MAX_FRAMES * 48) {
        sf_close(sf);
        return arb_error(ARB_ERR_FORMAT, "audio: %d channels at %d Hz, %lld frames: out of range", info.channels,
                         info.samplerate, (long long)info.frames);
    }
    /* Read in blocks (frames in the header may lie), downmixing as we go. */
    size_t cap = 1 << 16, got = 0;
    float *mono = (float *)malloc(cap * sizeof(float));
    float *blk = (float *)malloc((size_t)4096 * info.channels * sizeof(float));
    arb_status st = ARB_OK;
    if (!mono || !blk) st = arb_error(ARB_ERR_OOM, "audio: out of memory");
    while (!st) {
        sf_count_t r = sf_readf_float(sf, blk, 4096);
        if (r <= 0) break;
        if (got + (size_t)r > (size_t)AUDIO_MAX_FRAMES * 12) {
            st = arb_error(ARB_ERR_FORMAT, "audio: longer than the 4 h limit");
            break;
        }
        if (got + (size_t)r > cap) {
            while (got + (size_t)r > cap) cap *= 2;
            float *nm = (float *)realloc(mono, cap * sizeof(float));
            if (!nm) {
                st = arb_error(ARB_ERR_OOM, "audio: out of memory");
                break;
            }
            mono = nm;
        }
        for (sf_count_t i = 0; i < r && !st; i++) {
            float s = 0.f;
            for (int c = 0; c < info.channels; c++) s += blk[i * info.channels + c];
            mono[got + (size_t)i] = s / (float)info.channels;
            if (!isfinite(mono[got + (size_t)i]))
                st = arb_error(ARB_ERR_FORMAT, "audio: sample %zu is not a finite number", got + (size_t)i);
        }
        got += (size_t)r;
    }
    if (!st && sf_error(sf) != SF_ERR_NO_ERROR) st = arb_error(ARB_ERR_FORMAT, "audio: %s", sf_strerror(sf));
    sf_close(sf);
    free(blk);
    if (!st && got == 0) st = arb_error(ARB_ERR_FORMAT, "audio: no samples");
    if (!st) st = arb_audio_resample(mono, got, info.samplerate, rate, samples, n);
    free(mono);
    if (!st && *n == 0) {
        arb_free(*samples);
        *samples = NULL;
        return arb_error(ARB_ERR_FORMAT, "audio: %zu frames at %d Hz give no samples at %d Hz", got, info.samplerate, rate);
    }
    return st;
#else
    (void)len;
    return arb_error(ARB_ERR_UNSUPPORTED, "audio: this build has no libsndfile/libsamplerate (install libsndfile1-dev libsamplerate0-dev and rebuild)");
#endif
}

arb_status arb_audio_load(const char *path, int rate, float **samples, size_t *n) {
    if (!path) return arb_error(ARB_ERR_INVALID_ARG, "arb_audio_load: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) return arb_error(ARB_ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = (unsigned char *)malloc(cap);
    while (buf) {
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (len < cap) break;
        if (cap >= ((size_t)1 << 32)) {
            free(buf);
            fclose(f);
            return arb_error(ARB_ERR_FORMAT, "%s: larger than 4 GiB", path);
        }
        unsigned char *nb = (unsigned char *)realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf) return arb_error(ARB_ERR_OOM, "%s: out of memory", path);
    if (err) {
        free(buf);
        return arb_error(ARB_ERR_IO, "%s: read error", path);
    }
    arb_status s = arb_audio_decode(buf, len, rate, samples, n);
    free(buf);
    if (s) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", arb_last_error());
        return arb_error(s, "%s: %s", path, msg);
    }
    return ARB_OK;
}

arb_status sc_audio_write(const char *path, int format, int rate, int channels, const float *data, size_t frames) {
#ifdef ARB_HAVE_AUDIO
    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.samplerate = rate;
    info.channels = channels;
    info.format = format == 0 ? (SF_FORMAT_WAV | SF_FORMAT_PCM_16)
                  : format == 1 ? (SF_FORMAT_FLAC | SF_FORMAT_PCM_16)
                  : format == 2 ? (SF_FORMAT_OGG | SF_FORMAT_VORBIS)
                                : (SF_FORMAT_WAV | SF_FORMAT_FLOAT);
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    if (!sf) return arb_error(ARB_ERR_IO, "%s: %s", path, sf_strerror(NULL));
    sf_count_t w = sf_writef_float(sf, data, (sf_count_t)frames);
    sf_close(sf);
    if (w != (sf_count_t)frames) return arb_error(ARB_ERR_IO, "%s: short write", path);
    return ARB_OK;
#else
    (void)path, (void)format, (void)rate, (void)channels, (void)data, (void)frames;
    return arb_error(ARB_ERR_UNSUPPORTED, "audio: this build has no libsndfile");
#endif
}
