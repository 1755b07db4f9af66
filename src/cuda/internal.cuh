/* src/cuda/internal.cuh — what every .cu of the CUDA backend shares: the checked-call macros
 * (errors carry file:line), the current stream, device checks of arb_ternary arguments.
 * Why macros: a failing launch must name the place it failed, and the library never aborts. */
#ifndef ARB_CUDA_INTERNAL_CUH
#define ARB_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>

#include "arbitor/core.h"
#include "arbitor/cuda.h"
#include "arbitor/ternary.h"

/* Returns ARB_ERR_CUDA "file:line: call: reason" from the enclosing function on failure. */
#define ARB_CU(call)                                                                                   \
    do {                                                                                               \
        cudaError_t arb_cu_e_ = (call);                                                                \
        if (arb_cu_e_ != cudaSuccess)                                                                  \
            return arb_error(ARB_ERR_CUDA, "%s:%d: %s: %s", __FILE__, __LINE__, #call,                 \
                             cudaGetErrorString(arb_cu_e_));                                           \
    } while (0)

/* After every launch: launch-configuration errors (and, with ARB_CUDA_SYNC_CHECK=1 in the
 * environment, execution errors of the kernel itself, at the cost of a synchronize). */
#define ARB_CU_LAUNCH(what)                                                                            \
    do {                                                                                               \
        cudaError_t arb_cu_e_ = cudaGetLastError();                                                    \
        if (arb_cu_e_ == cudaSuccess && arb_cuda_sync_check())                                         \
            arb_cu_e_ = cudaStreamSynchronize(arb_cuda_cur_stream());                                  \
        if (arb_cu_e_ != cudaSuccess)                                                                  \
            return arb_error(ARB_ERR_CUDA, "%s:%d: launch of %s: %s", __FILE__, __LINE__, what,        \
                             cudaGetErrorString(arb_cu_e_));                                           \
    } while (0)

cudaStream_t arb_cuda_cur_stream(void);
/* The deferred-check flag of this thread (see arb_cuda_checks_defer), or NULL when checks are
 * immediate. */
int *arb_cuda_deferred_flag(void);
bool arb_cuda_sync_check(void);
/* ARB_ERR_UNSUPPORTED unless a device exists; selects w's device when given. */
arb_status arb_cuda_require(const char *what);
arb_status arb_cuda_require_ternary(const arb_ternary *w, const char *what);

/* A second stream of the calling thread on the current device (created once, kept): for work
 * that may run beside the current stream; the caller orders it with events. */
arb_status arb_cuda_side_stream(cudaStream_t *out);

/* The current device's SM count (read once per device), or 0 when it cannot be read. */
int arb_cuda_sm_count(void);

/* A page-locked host buffer of at least n bytes, private to the calling thread (grows; kept). */
arb_status arb_cuda_host_scratch(size_t n, void **p);

/* A scratch buffer from the pool that frees itself (RAII keeps error paths short). */
struct arb_cuda_scratch {
    void *p = nullptr;
    ~arb_cuda_scratch() { if (p) arb_cuda_free(p); }
    arb_status alloc(size_t n) { return arb_cuda_malloc(&p, n); }
    template <class T> T *as() const { return static_cast<T *>(p); }
};

/* ---- where an update's norm and statistics live (runtime.cu) ------------------------------
 * An update reads the previous step's grad_norm and leaves the new one and its statistics in a
 * device record. Immediate mode (no arb_cuda_checks_defer): the record is the op's own, copied
 * back when the op ends (one synchronize). Deferred mode: the record sits in a per-thread device
 * arena and arb_cuda_checks_collect copies every pending record to its arb_update_state and
 * arb_update_stats in the same synchronize; a second update of the same state before collect
 * reads the pending device norm. So a training step has no host round trip per tensor. */
struct arb_cuda_upd_rec {
    double norm;                      /* grad_norm this update leaves */
    long long flips, zeros, exp_moves; /* its statistics */
};
struct arb_cuda_upd_slot {
    arb_cuda_upd_rec *rec = nullptr;    /* device */
    const double *norm_in = nullptr;    /* device previous norm, or NULL: norm_host */
    double norm_host = 0.0;
    int index = -1;                     /* deferred: arena index; -1: own */
    arb_cuda_scratch own;
};
/* Opens the record of one update of st (host struct). */
arb_status arb_cuda_upd_slot_open(arb_update_state *st, arb_cuda_upd_slot *s);
/* After the finish kernel is queued: immediate mode copies the record into st and stats (may be
 * NULL) now; deferred mode registers them for arb_cuda_checks_collect (they must stay valid). */
arb_status arb_cuda_upd_slot_close(arb_cuda_upd_slot *s, arb_update_state *st, arb_update_stats *stats,
                                   int64_t weights);

/* Overlapped finishes (cuda.h: arb_cuda_updates_overlap): active when switched on, in deferred
 * mode, and ARB_CUDA_UPD_OVERLAP is not 0. side_begin forks the finish stream from the current
 * one and makes it current; side_end restores; hold keeps a pool block until collect. */
bool arb_cuda_upd_overlap_active(void);
arb_status arb_cuda_upd_side_begin(const void *tensor); /* tensor: its trits pointer */
/* Every update entry point calls this first (arb_cuda_upd_check): if the tensor has a finish in
 * flight, the current stream waits for it. */
arb_status arb_cuda_upd_wait_tensor(const void *tensor);
void arb_cuda_upd_side_end(void);
void arb_cuda_upd_hold(void *p);

static inline unsigned arb_cuda_blocks(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

#endif
