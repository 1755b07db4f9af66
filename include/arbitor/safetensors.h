/* arbitor/safetensors.h — validated safetensors reader (mmap) and atomic writer.
 *
 * Why validate everything: checkpoints and sidecar weights come from users and the network.
 * The reader checks header length against file size, JSON syntax, dtypes, shape × itemsize =
 * byte span, offsets in range and non-overlapping, duplicate names and size overflow before
 * any tensor is touched; a bad file is ARB_ERR_FORMAT with a one-line reason.
 * The writer never leaves a partial file: temp file in the same directory, fsync, rename.
 *
 *   arb_safetensors *st;
 *   ARB_TRY(arb_safetensors_open(&st, path));
 *   const arb_st_tensor *w = arb_safetensors_find(st, "encoder.conv1.weight");
 *   // w->data points into the mapping; w->dtype, w->ndim, w->shape describe it
 *   arb_safetensors_close(st);
 *
 *   arb_st_writer *wr;
 *   ARB_TRY(arb_st_writer_open(&wr, "ckpt.safetensors"));
 *   arb_st_writer_add(wr, "w", ARB_F32, 2, shape, data);   // data is copied or referenced until commit
 *   arb_st_writer_set_metadata(wr, "config", json_text);
 *   ARB_TRY(arb_st_writer_commit(wr));                      // atomic; frees wr
 *   // on any failure before commit: arb_st_writer_abort(wr) removes the temp file
 */
#ifndef ARBITOR_SAFETENSORS_H
#define ARBITOR_SAFETENSORS_H

#include "arbitor/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct arb_st_tensor {
    const char *name;
    arb_dtype dtype;
    int ndim;
    int64_t shape[ARB_MAX_DIMS];
    const void *data; /* into the read-only mapping; valid until close */
    size_t nbytes;
} arb_st_tensor;

typedef struct arb_safetensors arb_safetensors;

/* Open and validate. Errors: ARB_ERR_IO (missing/unreadable), ARB_ERR_FORMAT (corrupt). */
arb_status arb_safetensors_open(arb_safetensors **out, const char *path);
/* Same checks on a caller's buffer (used by the fuzzer; `buf` must outlive the handle). */
arb_status arb_safetensors_open_memory(arb_safetensors **out, const void *buf, size_t len);
void arb_safetensors_close(arb_safetensors *st);

size_t arb_safetensors_count(const arb_safetensors *st);
const arb_st_tensor *arb_safetensors_at(const arb_safetensors *st, size_t i); /* file order */
const arb_st_tensor *arb_safetensors_find(const arb_safetensors *st, const char *name);
/* __metadata__ values (strings); NULL if absent. */
const char *arb_safetensors_metadata(const arb_safetensors *st, const char *key);
size_t arb_safetensors_metadata_count(const arb_safetensors *st);
const char *arb_safetensors_metadata_key(const arb_safetensors *st, size_t i);

/* Find + check dtype and shape in one call; a precise error names the tensor and both shapes.
 * shape may contain -1 for "any". */
arb_status arb_safetensors_expect(const arb_safetensors *st, const char *name, arb_dtype dtype, int ndim,
                                  const int64_t *shape, const arb_st_tensor **out);
/* Copy a tensor into a new f32 CPU tensor, converting F32/BF16/F16 (other dtypes: ARB_ERR_DTYPE). */
arb_status arb_safetensors_load_f32(const arb_safetensors *st, const char *name, arb_tensor *out);

typedef struct arb_st_writer arb_st_writer;

arb_status arb_st_writer_open(arb_st_writer **out, const char *path);
/* Adds a tensor; the bytes are copied (so the caller may reuse its buffer). */
arb_status arb_st_writer_add(arb_st_writer *w, const char *name, arb_dtype dtype, int ndim, const int64_t *shape,
                             const void *data);
arb_status arb_st_writer_set_metadata(arb_st_writer *w, const char *key, const char *value);
/* Writes temp file, fsyncs, renames over the target, fsyncs the directory; frees w either way. */
arb_status arb_st_writer_commit(arb_st_writer *w);
/* Discards everything; frees w. */
void arb_st_writer_abort(arb_st_writer *w);

#ifdef __cplusplus
}
#endif
#endif /* ARBITOR_SAFETENSORS_H */
