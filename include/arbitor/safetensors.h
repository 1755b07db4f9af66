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
 *   arb_st_writer_add(wr, "w", ARB_F32, 2, shape, data);   // copied (add_ref: referenced until commit)
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

/* Files may hold dtypes arbitor does not compute with (F64, I16, U16, U32, U64, BOOL, F8_*, C64,
 * F4, F6_*): they are validated and listed with dtype == ARB_ST_DTYPE_FOREIGN (and dtype_name
 * says which), so a checkpoint with one odd buffer still opens; arb_safetensors_expect and
 * arb_safetensors_load_f32 refuse them with ARB_ERR_DTYPE. An unknown dtype string is ARB_ERR_FORMAT. */
#define ARB_ST_DTYPE_FOREIGN ARB_DTYPE_COUNT

typedef struct arb_st_tensor {
    const char *name;
    arb_dtype dtype;             /* ARB_ST_DTYPE_FOREIGN for a dtype arbitor cannot compute with */
    int ndim;
    int64_t shape[ARB_MAX_DIMS]; /* row-major; ndim 0 is a scalar */
    const void *data;            /* into the read-only mapping; valid until close. Files written by
                                    arbitor or Python keep it itemsize-aligned; others may not, so
                                    copy with memcpy (or use arb_safetensors_load_f32) if unsure */
    size_t nbytes;
    const char *dtype_name;      /* as spelled in the file: "F32", "BF16", "F64", ... */
    uint64_t offset;             /* data_offsets[0]: byte offset within the data region */
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
const char *arb_safetensors_metadata_key(const arb_safetensors *st, size_t i); /* file order */
/* Byte length of the JSON header (padding included); the data region starts at 8 + this. */
size_t arb_safetensors_header_len(const arb_safetensors *st);

/* Find + check dtype and shape in one call; a precise error names the tensor and both shapes.
 * shape may contain -1 for "any". */
arb_status arb_safetensors_expect(const arb_safetensors *st, const char *name, arb_dtype dtype, int ndim,
                                  const int64_t *shape, const arb_st_tensor **out);
/* Copy a tensor into a new f32 CPU tensor, converting F32/BF16/F16 (other dtypes: ARB_ERR_DTYPE). */
arb_status arb_safetensors_load_f32(const arb_safetensors *st, const char *name, arb_tensor *out);

typedef struct arb_st_writer arb_st_writer;

arb_status arb_st_writer_open(arb_st_writer **out, const char *path);
/* Adds a tensor; the bytes are copied (so the caller may reuse its buffer). Names are unique,
 * valid UTF-8 and not "__metadata__"; the header lists tensors in insertion order. */
arb_status arb_st_writer_add(arb_st_writer *w, const char *name, arb_dtype dtype, int ndim, const int64_t *shape,
                             const void *data);
/* Same, without the copy: `data` must stay valid and unchanged until commit or abort. */
arb_status arb_st_writer_add_ref(arb_st_writer *w, const char *name, arb_dtype dtype, int ndim,
                                 const int64_t *shape, const void *data);
/* Sets (or replaces) a __metadata__ entry; keys are written in sorted order, so the same
 * content always gives the same bytes. Store JSON values as their text. */
arb_status arb_st_writer_set_metadata(arb_st_writer *w, const char *key, const char *value);
/* Writes temp file, fsyncs, renames over the target, fsyncs the directory; frees w either way. */
arb_status arb_st_writer_commit(arb_st_writer *w);
/* Discards everything; frees w. */
void arb_st_writer_abort(arb_st_writer *w);

#ifdef __cplusplus
}
#endif
#endif /* ARBITOR_SAFETENSORS_H */
