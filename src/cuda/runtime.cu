/* CUDA device runtime: a caching pool over cudaMalloc, per-thread current stream, checked
 * copies, tensor storage, and ternary tensors resident on the device.
 *
 * Why a pool: training allocates the same scratch sizes every step; cudaMalloc/cudaFree
 * synchronize the device and cost tens of microseconds each. Blocks are rounded to size classes
 * and cached per device; a cached block remembers the stream that last freed it, so reuse on
 * another stream first waits for that stream (no use-after-free across streams). */
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/internal.cuh"

/* ------------------------------------------------------------------ devices, streams */

static thread_local cudaStream_t g_stream = nullptr;

cudaStream_t arb_cuda_cur_stream(void) { return g_stream; }

static thread_local int *g_deferred = nullptr; /* device int while checks are deferred */

int *arb_cuda_deferred_flag(void) { return g_deferred; }

extern "C" arb_status arb_cuda_checks_defer(void) {
    if (g_deferred) return ARB_OK;
    void *p = nullptr;
    ARB_TRY(arb_cuda_malloc(&p, sizeof(int)));
    cudaError_t e = cudaMemsetAsync(p, 0, sizeof(int), g_stream);
    if (e != cudaSuccess) {
        arb_cuda_free(p);
        return arb_error(ARB_ERR_CUDA, "%s:%d: arb_cuda_checks_defer: %s", __FILE__, __LINE__, cudaGetErrorString(e));
    }
    g_deferred = static_cast<int *>(p);
    return ARB_OK;
}

/* Overlapped finishes (arb_cuda_updates_overlap): a per-thread stream for the finish of each
 * update in deferred mode, forked from the current stream after the update pass and joined
 * before anything that reads what a finish wrote (a second update of the same state, the arena's
 * growth, collect). The finishes' scratch is held until collect: the pool would otherwise hand
 * it to the current stream while the finish still reads it. */
namespace {
struct UpdOverlap {
    bool on = false, used = false;
    int device = -1;
    cudaStream_t side = nullptr, prev = nullptr;
    cudaEvent_t ev_main = nullptr, ev_side = nullptr;
    std::vector<void *> held;
    std::vector<const void *> busy; /* tensors (trits) with a finish queued since the last join */
    ~UpdOverlap() {
        if (ev_main) cudaEventDestroy(ev_main);
        if (ev_side) cudaEventDestroy(ev_side);
        if (side) cudaStreamDestroy(side);
    }
};
thread_local UpdOverlap g_ovl;

/* The current stream waits for every finish queued so far. */
arb_status upd_side_join(void) {
    UpdOverlap &O = g_ovl;
    if (!O.used || O.busy.empty()) return ARB_OK;
    ARB_CU(cudaEventRecord(O.ev_side, O.side));
    ARB_CU(cudaStreamWaitEvent(g_stream, O.ev_side, 0));
    O.busy.clear();
    return ARB_OK;
}
} // namespace

arb_status arb_cuda_upd_wait_tensor(const void *tensor) {
    for (const void *t : g_ovl.busy)
        if (t == tensor) return upd_side_join();
    return ARB_OK;
}

extern "C" void arb_cuda_updates_overlap(bool on) { g_ovl.on = on; }

bool arb_cuda_upd_overlap_active(void) {
    if (!g_ovl.on || !g_deferred) return false;
    const char *e = getenv("ARB_CUDA_UPD_OVERLAP");
    return !(e && e[0] == '0');
}

arb_status arb_cuda_upd_side_begin(const void *tensor) {
    UpdOverlap &O = g_ovl;
    int dev = 0;
    ARB_CU(cudaGetDevice(&dev));
    if (O.side && O.device != dev) {
        if (O.used) return arb_error(ARB_ERR_UNSUPPORTED, "overlapped updates on two devices in one deferred window");
        cudaEventDestroy(O.ev_main);
        cudaEventDestroy(O.ev_side);
        cudaStreamDestroy(O.side);
        O.side = nullptr;
        O.ev_main = O.ev_side = nullptr;
    }
    if (!O.side) {
        ARB_CU(cudaStreamCreateWithFlags(&O.side, cudaStreamNonBlocking));
        ARB_CU(cudaEventCreateWithFlags(&O.ev_main, cudaEventDisableTiming));
        ARB_CU(cudaEventCreateWithFlags(&O.ev_side, cudaEventDisableTiming));
        O.device = dev;
    }
    ARB_CU(cudaEventRecord(O.ev_main, g_stream)); /* the update pass and everything before it */
    ARB_CU(cudaStreamWaitEvent(O.side, O.ev_main, 0));
    O.prev = g_stream;
    g_stream = O.side;
    O.used = true;
    O.busy.push_back(tensor);
    return ARB_OK;
}

void arb_cuda_upd_side_end(void) { g_stream = g_ovl.prev; }

void arb_cuda_upd_hold(void *p) {
    if (p) g_ovl.held.push_back(p);
}

/* Pending update records of this thread (deferred mode): a device arena of records and, per
 * record, where its result goes on the host. */
namespace {
struct PendingUpd {
    arb_update_state *st;
    arb_update_stats *stats;
    int64_t weights;
};
struct UpdArena {
    arb_cuda_upd_rec *d = nullptr; /* device (cap) */
    int cap = 0, used = 0;
    int device = -1;
    std::vector<PendingUpd> pend; /* (used) */
};
thread_local UpdArena g_upd;

/* Room for one more record; growing copies the records so far on the stream (kernels already
 * queued wrote the old arena before the copy runs). */
arb_status upd_arena_reserve(void) {
    UpdArena &A = g_upd;
    int dev = 0;
    ARB_CU(cudaGetDevice(&dev));
    if (A.d && A.device != dev && A.used == 0) {
        arb_cuda_free(A.d);
        A.d = nullptr;
        A.cap = 0;
    }
    if (A.d && A.device != dev)
        return arb_error(ARB_ERR_UNSUPPORTED, "deferred updates on cuda:%d and cuda:%d in one arb_cuda_checks_defer window",
                         A.device, dev);
    if (A.used < A.cap) return ARB_OK;
    ARB_TRY(upd_side_join()); /* finishes may still write the old arena */
    int cap = A.cap ? 2 * A.cap : 256;
    void *p = nullptr;
    ARB_TRY(arb_cuda_malloc(&p, (size_t)cap * sizeof(arb_cuda_upd_rec)));
    if (A.used) {
        cudaError_t e = cudaMemcpyAsync(p, A.d, (size_t)A.used * sizeof(arb_cuda_upd_rec), cudaMemcpyDeviceToDevice,
                                        g_stream);
        if (e != cudaSuccess) {
            arb_cuda_free(p);
            return arb_error(ARB_ERR_CUDA, "%s:%d: growing the update arena: %s", __FILE__, __LINE__,
                             cudaGetErrorString(e));
        }
    }
    if (A.d) arb_cuda_free(A.d);
    A.d = static_cast<arb_cuda_upd_rec *>(p);
    A.cap = cap;
    A.device = dev;
    return ARB_OK;
}
} // namespace

arb_status arb_cuda_upd_slot_open(arb_update_state *st, arb_cuda_upd_slot *s) {
    s->norm_host = st->grad_norm;
    s->norm_in = nullptr;
    if (!g_deferred) {
        ARB_TRY(s->own.alloc(sizeof(arb_cuda_upd_rec)));
        s->rec = s->own.as<arb_cuda_upd_rec>();
        s->index = -1;
        return ARB_OK;
    }
    UpdArena &A = g_upd;
    for (int i = A.used - 1; i >= 0; i--) /* an earlier update of the same state in this window */
        if (A.pend[(size_t)i].st == st) {
            ARB_TRY(upd_side_join()); /* its finish wrote the norm (and the tensor's E, scale, nnz) */
            s->index = i;
            s->rec = A.d + i;
            s->norm_in = &s->rec->norm;
            return ARB_OK;
        }
    ARB_TRY(upd_arena_reserve());
    s->index = A.used; /* taken at close: a failed op leaves no record behind */
    s->rec = A.d + A.used;
    return ARB_OK;
}

arb_status arb_cuda_upd_slot_close(arb_cuda_upd_slot *s, arb_update_state *st, arb_update_stats *stats,
                                   int64_t weights) {
    if (s->index < 0) {
        arb_cuda_upd_rec r;
        ARB_TRY(arb_cuda_copy_d2h(&r, s->rec, sizeof r));
        st->grad_norm = r.norm;
        if (stats) {
            stats->flips = r.flips;
            stats->zeros = r.zeros;
            stats->weights = weights;
            stats->exp_moves = (int32_t)r.exp_moves;
        }
        return ARB_OK;
    }
    UpdArena &A = g_upd;
    if (s->index < A.used) { /* the same state again: the later stats win, as on the host */
        A.pend[(size_t)s->index].stats = stats;
        A.pend[(size_t)s->index].weights = weights;
        return ARB_OK;
    }
    A.pend.resize((size_t)A.used + 1);
    A.pend[(size_t)A.used] = PendingUpd{st, stats, weights};
    A.used++;
    return ARB_OK;
}

/* One synchronize for the flag and every pending update record. */
extern "C" arb_status arb_cuda_checks_collect(void) {
    if (!g_deferred) return ARB_OK;
    int *p = g_deferred;
    g_deferred = nullptr;
    UpdArena &A = g_upd;
    const int n = A.used;
    A.used = 0;
    std::vector<PendingUpd> pend;
    pend.swap(A.pend);
    const size_t rb = (size_t)n * sizeof(arb_cuda_upd_rec);
    uint8_t *h = nullptr;
    arb_status s = upd_side_join();
    g_ovl.used = false;
    if (s == ARB_OK) s = arb_cuda_host_scratch(rb + sizeof(int), (void **)&h);
    if (s == ARB_OK && n) {
        cudaError_t e = cudaMemcpyAsync(h, A.d, rb, cudaMemcpyDeviceToHost, g_stream);
        if (e != cudaSuccess)
            s = arb_error(ARB_ERR_CUDA, "%s:%d: copying update records: %s", __FILE__, __LINE__, cudaGetErrorString(e));
    }
    if (s == ARB_OK) {
        cudaError_t e = cudaMemcpyAsync(h + rb, p, sizeof(int), cudaMemcpyDeviceToHost, g_stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(g_stream);
        if (e != cudaSuccess)
            s = arb_error(ARB_ERR_CUDA, "%s:%d: arb_cuda_checks_collect: %s", __FILE__, __LINE__, cudaGetErrorString(e));
    }
    arb_cuda_free(p);
    if (s == ARB_OK || !g_ovl.held.empty()) { /* after the synchronize (or on an error: best effort) */
        if (s != ARB_OK) cudaDeviceSynchronize();
        for (void *q : g_ovl.held) arb_cuda_free(q);
        g_ovl.held.clear();
    }
    if (s != ARB_OK) return s;
    for (int i = 0; i < n; i++) {
        arb_cuda_upd_rec r;
        memcpy(&r, h + (size_t)i * sizeof r, sizeof r);
        const PendingUpd &q = pend[(size_t)i];
        q.st->grad_norm = r.norm;
        if (q.stats) {
            q.stats->flips = r.flips;
            q.stats->zeros = r.zeros;
            q.stats->weights = q.weights;
            q.stats->exp_moves = (int32_t)r.exp_moves;
        }
    }
    int flag;
    memcpy(&flag, h + rb, sizeof flag);
    if (flag)
        return arb_error(ARB_ERR_INVALID_ARG, "a NaN or infinite value reached a CUDA op since arb_cuda_checks_defer "
                                              "(ARB_CUDA_SYNC_CHECK=1 with immediate checks names the op)");
    return ARB_OK;
}

bool arb_cuda_sync_check(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("ARB_CUDA_SYNC_CHECK");
        v = (e && e[0] == '1') ? 1 : 0;
    }
    return v == 1;
}

extern "C" int arb_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no device" error */
        return 0;
    }
    return n;
}

arb_status arb_cuda_require(const char *what) {
    if (arb_cuda_device_count() <= 0)
        return arb_error(ARB_ERR_UNSUPPORTED, "%s: no CUDA device is available", what);
    return ARB_OK;
}

arb_status arb_cuda_require_ternary(const arb_ternary *w, const char *what) {
    if (!w || !w->trits) return arb_error(ARB_ERR_INVALID_ARG, "%s: ternary tensor is NULL or not initialized", what);
    if (w->device.kind != ARB_DEVICE_CUDA)
        return arb_error(ARB_ERR_INVALID_ARG, "%s: ternary tensor (%lld, %lld) is on the host; upload it first", what,
                         (long long)w->rows, (long long)w->cols);
    ARB_CU(cudaSetDevice(w->device.index));
    return ARB_OK;
}

extern "C" arb_status arb_cuda_set_device(int index) {
    ARB_TRY(arb_cuda_require("arb_cuda_set_device"));
    if (index < 0 || index >= arb_cuda_device_count())
        return arb_error(ARB_ERR_INVALID_ARG, "cuda:%d does not exist (%d devices)", index, arb_cuda_device_count());
    ARB_CU(cudaSetDevice(index));
    return ARB_OK;
}

extern "C" arb_status arb_cuda_device_name(int index, char *buf, size_t cap) {
    ARB_TRY(arb_cuda_require("arb_cuda_device_name"));
    cudaDeviceProp p;
    ARB_CU(cudaGetDeviceProperties(&p, index));
    snprintf(buf, cap, "%s (%d SMs, %.1f GiB, sm_%d%d)", p.name, p.multiProcessorCount,
             (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), p.major, p.minor);
    return ARB_OK;
}

extern "C" arb_status arb_cuda_stream_create(arb_cuda_stream *s) {
    ARB_TRY(arb_cuda_require("arb_cuda_stream_create"));
    cudaStream_t st;
    ARB_CU(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    *s = reinterpret_cast<arb_cuda_stream>(st);
    return ARB_OK;
}

static void pool_forget_stream(cudaStream_t s);

extern "C" void arb_cuda_stream_destroy(arb_cuda_stream s) {
    if (!s) return;
    cudaStream_t st = reinterpret_cast<cudaStream_t>(s);
    if (g_stream == st) g_stream = nullptr;
    cudaStreamSynchronize(st); /* its work is done: blocks it freed are free for any stream */
    pool_forget_stream(st);
    cudaStreamDestroy(st);
}

extern "C" void arb_cuda_stream_set(arb_cuda_stream s) { g_stream = reinterpret_cast<cudaStream_t>(s); }
extern "C" arb_cuda_stream arb_cuda_stream_get(void) { return reinterpret_cast<arb_cuda_stream>(g_stream); }

extern "C" arb_status arb_cuda_synchronize(void) {
    ARB_CU(cudaStreamSynchronize(g_stream));
    return ARB_OK;
}

/* ------------------------------------------------------------------ caching pool */

namespace {
struct Block {
    size_t size;
    int device;
    cudaStream_t stream; /* stream current when it was freed */
};
struct Pool {
    std::mutex mu;
    std::multimap<std::pair<int, size_t>, std::pair<void *, cudaStream_t>> cached; /* (device, size) */
    std::unordered_map<void *, Block> live;
    size_t in_use = 0, cached_bytes = 0;
};
Pool &pool() {
    static Pool *p = new Pool; /* never destroyed: frees may run from static destructors */
    return *p;
}
/* Size classes: 512 B granules below 1 MiB, 2 MiB granules above (bounded waste, few classes). */
size_t size_class(size_t n) {
    if (n == 0) n = 1;
    if (n < (1u << 20)) return (n + 511) & ~(size_t)511;
    return (n + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
}
} // namespace

static void pool_forget_stream(cudaStream_t s) {
    Pool &P = pool();
    std::lock_guard<std::mutex> g(P.mu);
    for (auto &kv : P.cached)
        if (kv.second.second == s) kv.second.second = nullptr;
}

extern "C" arb_status arb_cuda_malloc(void **out, size_t nbytes) {
    *out = nullptr;
    ARB_TRY(arb_cuda_require("arb_cuda_malloc"));
    int dev = 0;
    ARB_CU(cudaGetDevice(&dev));
    size_t cls = size_class(nbytes);
    if (cls < nbytes) return arb_error(ARB_ERR_OVERFLOW, "device allocation of %zu bytes overflows", nbytes);
    Pool &P = pool();
    {
        std::lock_guard<std::mutex> g(P.mu);
        auto it = P.cached.find({dev, cls});
        if (it != P.cached.end()) {
            void *p = it->second.first;
            cudaStream_t freed_on = it->second.second;
            P.cached.erase(it);
            P.cached_bytes -= cls;
            if (freed_on != g_stream) {
                cudaError_t e = cudaStreamSynchronize(freed_on);
                if (e != cudaSuccess) {
                    cudaFree(p);
                    return arb_error(ARB_ERR_CUDA, "%s:%d: waiting for stream of a pooled block: %s", __FILE__,
                                     __LINE__, cudaGetErrorString(e));
                }
            }
            P.live[p] = Block{cls, dev, g_stream};
            P.in_use += cls;
            *out = p;
            return ARB_OK;
        }
    }
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, cls);
    if (e == cudaErrorMemoryAllocation) { /* give the cache back and try once more */
        cudaGetLastError();
        arb_cuda_pool_trim();
        e = cudaMalloc(&p, cls);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return arb_error(e == cudaErrorMemoryAllocation ? ARB_ERR_OOM : ARB_ERR_CUDA, "%s:%d: cudaMalloc(%zu) on cuda:%d: %s",
                         __FILE__, __LINE__, cls, dev, cudaGetErrorString(e));
    }
    std::lock_guard<std::mutex> g(P.mu);
    P.live[p] = Block{cls, dev, g_stream};
    P.in_use += cls;
    *out = p;
    return ARB_OK;
}

extern "C" void arb_cuda_free(void *p) {
    if (!p) return;
    Pool &P = pool();
    std::lock_guard<std::mutex> g(P.mu);
    auto it = P.live.find(p);
    if (it == P.live.end()) { /* not ours: never happens unless a caller mixes allocators */
        arb_log(ARB_LOG_WARN, "arb_cuda_free: %p was not allocated by the arbitor pool", p);
        return;
    }
    Block b = it->second;
    P.live.erase(it);
    P.in_use -= b.size;
    P.cached.insert({{b.device, b.size}, {p, g_stream}});
    P.cached_bytes += b.size;
}

extern "C" void arb_cuda_pool_trim(void) {
    Pool &P = pool();
    std::lock_guard<std::mutex> g(P.mu);
    int cur = 0;
    cudaGetDevice(&cur);
    for (auto &kv : P.cached) {
        cudaSetDevice(kv.first.first);
        cudaStreamSynchronize(kv.second.second);
        cudaFree(kv.second.first);
    }
    cudaSetDevice(cur);
    P.cached.clear();
    P.cached_bytes = 0;
}

extern "C" void arb_cuda_pool_stats(size_t *in_use, size_t *cached) {
    Pool &P = pool();
    std::lock_guard<std::mutex> g(P.mu);
    if (in_use) *in_use = P.in_use;
    if (cached) *cached = P.cached_bytes;
}

/* ------------------------------------------------------------------ pinned host scratch */

namespace {
struct HostScratch {
    void *p = nullptr;
    size_t n = 0;
    ~HostScratch() { if (p) cudaFreeHost(p); }
};
thread_local HostScratch g_host_scratch;
} // namespace

arb_status arb_cuda_host_scratch(size_t n, void **out) {
    HostScratch &h = g_host_scratch;
    if (h.n < n) {
        if (h.p) {
            ARB_CU(cudaStreamSynchronize(g_stream)); /* nothing may still copy into the old one */
            cudaFreeHost(h.p);
            h.p = nullptr;
            h.n = 0;
        }
        size_t want = n < 4096 ? 4096 : n;
        ARB_CU(cudaMallocHost(&h.p, want));
        h.n = want;
    }
    *out = h.p;
    return ARB_OK;
}

/* ------------------------------------------------------------------ side stream */

namespace {
/* One non-blocking stream per thread and device for work that may overlap the thread's current
 * stream (ordered against it with events by the caller). */
struct SideStreams {
    cudaStream_t s[64] = {};
    ~SideStreams() {
        for (cudaStream_t &x : s)
            if (x) cudaStreamDestroy(x);
    }
};
thread_local SideStreams g_side;
} // namespace

arb_status arb_cuda_side_stream(cudaStream_t *out) {
    int dev = 0;
    ARB_CU(cudaGetDevice(&dev));
    if (dev < 0 || dev >= 64) return arb_error(ARB_ERR_CUDA, "arb_cuda_side_stream: device %d", dev);
    if (!g_side.s[dev]) ARB_CU(cudaStreamCreateWithFlags(&g_side.s[dev], cudaStreamNonBlocking));
    *out = g_side.s[dev];
    return ARB_OK;
}

int arb_cuda_sm_count(void) {
    static int sms[64];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        (void)cudaGetLastError();
        return 0;
    }
    if (!sms[dev] && cudaDeviceGetAttribute(&sms[dev], cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        sms[dev] = -1;
    }
    return sms[dev] > 0 ? sms[dev] : 0;
}

/* ------------------------------------------------------------------ copies, tensors */

extern "C" arb_status arb_cuda_copy_h2d(void *dst, const void *src, size_t n) {
    if (!n) return ARB_OK;
    ARB_CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, g_stream));
    return ARB_OK;
}

extern "C" arb_status arb_cuda_copy_d2h(void *dst, const void *src, size_t n) {
    if (!n) return ARB_OK;
    ARB_CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, g_stream));
    ARB_CU(cudaStreamSynchronize(g_stream));
    return ARB_OK;
}

extern "C" arb_status arb_cuda_copy_d2d(void *dst, const void *src, size_t n) {
    if (!n) return ARB_OK;
    ARB_CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, g_stream));
    return ARB_OK;
}

/* Storage hooks of src/core/tensor.c. */
extern "C" arb_status arb_cuda_tensor_alloc(arb_tensor *t) {
    ARB_TRY(arb_cuda_require("arb_tensor_init"));
    ARB_CU(cudaSetDevice(t->device.index));
    void *p = nullptr;
    ARB_TRY(arb_cuda_malloc(&p, t->nbytes));
    cudaError_t e = cudaMemsetAsync(p, 0, t->nbytes, g_stream);
    if (e != cudaSuccess) {
        arb_cuda_free(p);
        return arb_error(ARB_ERR_CUDA, "%s:%d: cudaMemsetAsync(%zu): %s", __FILE__, __LINE__, t->nbytes,
                         cudaGetErrorString(e));
    }
    t->data = p;
    return ARB_OK;
}

extern "C" void arb_cuda_tensor_release(arb_tensor *t) { arb_cuda_free(t->data); }

extern "C" arb_status arb_tensor_copy(arb_tensor *dst, const arb_tensor *src) {
    if (!dst || !src) return arb_error(ARB_ERR_INVALID_ARG, "arb_tensor_copy: NULL tensor");
    char a[96], b[96];
    if (dst->dtype != src->dtype || dst->nbytes != src->nbytes)
        return arb_error(ARB_ERR_SHAPE, "arb_tensor_copy: %s into %s", arb_tensor_describe(src, a, sizeof a),
                         arb_tensor_describe(dst, b, sizeof b));
    bool sd = src->device.kind == ARB_DEVICE_CUDA, dd = dst->device.kind == ARB_DEVICE_CUDA;
    if (!sd && !dd) {
        memcpy(dst->data, src->data, src->nbytes);
        return ARB_OK;
    }
    if (sd && dd && src->device.index != dst->device.index) {
        ARB_CU(cudaMemcpyPeerAsync(dst->data, dst->device.index, src->data, src->device.index, src->nbytes, g_stream));
        ARB_CU(cudaStreamSynchronize(g_stream));
        return ARB_OK;
    }
    ARB_CU(cudaSetDevice(sd ? src->device.index : dst->device.index));
    if (sd && dd) return arb_cuda_copy_d2d(dst->data, src->data, src->nbytes);
    if (dd) {
        ARB_TRY(arb_cuda_copy_h2d(dst->data, src->data, src->nbytes));
        ARB_CU(cudaStreamSynchronize(g_stream)); /* the host buffer may be freed right after */
        return ARB_OK;
    }
    return arb_cuda_copy_d2h(dst->data, src->data, src->nbytes);
}

/* ------------------------------------------------------------------ ternary tensors */

namespace {
struct TernarySizes {
    size_t trits, accum, rows;
};
TernarySizes ternary_sizes(const arb_ternary *w) {
    return TernarySizes{(size_t)w->rows_pad * (size_t)(w->cols_pad / 4), (size_t)w->rows * (size_t)w->cols,
                        (size_t)w->rows};
}
void ternary_release_arrays(arb_ternary *w) {
    arb_cuda_free(w->trits);
    arb_cuda_free(w->accum);
    arb_cuda_free(w->exp);
    arb_cuda_free(w->exp_evidence);
    arb_cuda_free(w->scale);
    arb_cuda_free(w->nnz);
    w->trits = nullptr;
    w->accum = nullptr;
    w->exp = w->exp_evidence = nullptr;
    w->scale = nullptr;
    w->nnz = nullptr;
}
arb_status ternary_alloc_arrays(arb_ternary *w) {
    TernarySizes z = ternary_sizes(w);
    void *p[6] = {};
    size_t n[6] = {z.trits, z.accum, z.rows, z.rows, z.rows * sizeof(float), z.rows * sizeof(int32_t)};
    for (int i = 0; i < 6; i++) {
        arb_status s = arb_cuda_malloc(&p[i], n[i]);
        if (s != ARB_OK) {
            for (int j = 0; j < i; j++) arb_cuda_free(p[j]);
            return s;
        }
    }
    w->trits = (uint8_t *)p[0];
    w->accum = (int8_t *)p[1];
    w->exp = (int8_t *)p[2];
    w->exp_evidence = (int8_t *)p[3];
    w->scale = (float *)p[4];
    w->nnz = (int32_t *)p[5];
    return ARB_OK;
}
} // namespace

/* Hooks of src/ternary/ternary.c: arb_ternary_init / arb_ternary_free on a CUDA device. The
 * header fields (shape, pads, kind, id, device) are already set. */
extern "C" arb_status arb_cuda_ternary_alloc(arb_ternary *w) {
    ARB_TRY(arb_cuda_require("arb_ternary_init"));
    ARB_CU(cudaSetDevice(w->device.index));
    ARB_TRY(ternary_alloc_arrays(w));
    TernarySizes z = ternary_sizes(w);
    cudaError_t e = cudaMemsetAsync(w->trits, 0x55, z.trits, g_stream); /* code 1: trit 0 */
    if (e == cudaSuccess) e = cudaMemsetAsync(w->accum, 0, z.accum, g_stream);
    if (e == cudaSuccess) e = cudaMemsetAsync(w->exp, 0, z.rows, g_stream);
    if (e == cudaSuccess) e = cudaMemsetAsync(w->exp_evidence, 0, z.rows, g_stream);
    if (e != cudaSuccess) {
        ternary_release_arrays(w);
        return arb_error(ARB_ERR_CUDA, "%s:%d: initializing ternary (%lld, %lld): %s", __FILE__, __LINE__,
                         (long long)w->rows, (long long)w->cols, cudaGetErrorString(e));
    }
    arb_status s = arb_cuda_ternary_refresh(w);
    if (s != ARB_OK) ternary_release_arrays(w);
    return s;
}

/* arb_ternary_fix_exponent on a CUDA tensor: E must be all 0; frees E and the evidence counter. */
extern "C" arb_status arb_cuda_ternary_fix_exponent(arb_ternary *w) {
    ARB_TRY(arb_cuda_require_ternary(w, "arb_ternary_fix_exponent"));
    if (!w->exp) return ARB_OK;
    std::vector<int8_t> e((size_t)w->rows);
    ARB_TRY(arb_cuda_copy_d2h(e.data(), w->exp, e.size()));
    for (int64_t r = 0; r < w->rows; r++)
        if (e[(size_t)r] != 0)
            return arb_error(ARB_ERR_INVALID_ARG, "ternary tensor %d: row %lld has E = %d; only E = 0 can be fixed",
                             (int)w->id, (long long)r, (int)e[(size_t)r]);
    arb_cuda_free(w->exp);
    arb_cuda_free(w->exp_evidence);
    w->exp = w->exp_evidence = nullptr;
    return arb_cuda_ternary_refresh(w);
}

extern "C" void arb_cuda_ternary_release(arb_ternary *w) {
    if (cudaSetDevice(w->device.index) != cudaSuccess) cudaGetLastError();
    ternary_release_arrays(w);
}

extern "C" arb_status arb_cuda_ternary_upload(arb_ternary *dst, const arb_ternary *src, int device) {
    if (!dst || !src || !src->trits) return arb_error(ARB_ERR_INVALID_ARG, "arb_cuda_ternary_upload: NULL tensor");
    if (src->device.kind != ARB_DEVICE_CPU)
        return arb_error(ARB_ERR_INVALID_ARG, "arb_cuda_ternary_upload: source (%lld, %lld) is not on the host",
                         (long long)src->rows, (long long)src->cols);
    ARB_TRY(arb_cuda_set_device(device));
    *dst = *src;
    dst->device = arb_cuda(device);
    dst->rows64 = nullptr; /* a host-only derived copy */
    arb_status s = ternary_alloc_arrays(dst);
    if (s != ARB_OK) {
        memset(dst, 0, sizeof *dst);
        return s;
    }
    if (!src->exp) { /* a fixed exponent stays fixed */
        arb_cuda_free(dst->exp);
        arb_cuda_free(dst->exp_evidence);
        dst->exp = dst->exp_evidence = nullptr;
    }
    TernarySizes z = ternary_sizes(src);
    const void *from[6] = {src->trits, src->accum, src->exp, src->exp_evidence, src->scale, src->nnz};
    void *to[6] = {dst->trits, dst->accum, dst->exp, dst->exp_evidence, dst->scale, dst->nnz};
    size_t n[6] = {z.trits, z.accum, z.rows, z.rows, z.rows * sizeof(float), z.rows * sizeof(int32_t)};
    for (int i = 0; i < 6; i++) {
        cudaError_t e = to[i] ? cudaMemcpyAsync(to[i], from[i], n[i], cudaMemcpyHostToDevice, g_stream) : cudaSuccess;
        if (e == cudaSuccess && i == 5) e = cudaStreamSynchronize(g_stream);
        if (e != cudaSuccess) {
            ternary_release_arrays(dst);
            memset(dst, 0, sizeof *dst);
            return arb_error(ARB_ERR_CUDA, "%s:%d: uploading ternary (%lld, %lld): %s", __FILE__, __LINE__,
                             (long long)src->rows, (long long)src->cols, cudaGetErrorString(e));
        }
    }
    return ARB_OK;
}

extern "C" arb_status arb_cuda_ternary_download(arb_ternary *dst, const arb_ternary *src) {
    ARB_TRY(arb_cuda_require_ternary(src, "arb_cuda_ternary_download"));
    if (!dst || !dst->trits || dst->device.kind != ARB_DEVICE_CPU)
        return arb_error(ARB_ERR_INVALID_ARG, "arb_cuda_ternary_download: destination is not an initialized host tensor");
    if (dst->rows != src->rows || dst->cols != src->cols || dst->kind != src->kind)
        return arb_error(ARB_ERR_SHAPE, "arb_cuda_ternary_download: (%lld, %lld) kind %d into (%lld, %lld) kind %d",
                         (long long)src->rows, (long long)src->cols, (int)src->kind, (long long)dst->rows,
                         (long long)dst->cols, (int)dst->kind);
    if (!src->exp != !dst->exp)
        return arb_error(ARB_ERR_INVALID_ARG, "arb_cuda_ternary_download: tensor %d has %s exponent on the device but %s on the host",
                         (int)src->id, src->exp ? "a trained" : "a fixed", dst->exp ? "a trained one" : "a fixed one");
    TernarySizes z = ternary_sizes(src);
    const void *from[6] = {src->trits, src->accum, src->exp, src->exp_evidence, src->scale, src->nnz};
    void *to[6] = {dst->trits, dst->accum, dst->exp, dst->exp_evidence, dst->scale, dst->nnz};
    size_t n[6] = {z.trits, z.accum, z.rows, z.rows, z.rows * sizeof(float), z.rows * sizeof(int32_t)};
    for (int i = 0; i < 6; i++)
        if (to[i]) ARB_CU(cudaMemcpyAsync(to[i], from[i], n[i], cudaMemcpyDeviceToHost, g_stream));
    ARB_CU(cudaStreamSynchronize(g_stream));
    return ARB_OK;
}

/* The bench entry lives in bench.cu; this strong reference makes the linker take bench.o out of
 * the static library even though the CLI refers to it only weakly. */
extern "C" int arb_cuda_bench_kernels(int argc, char **argv);
__attribute__((used)) static int (*const g_keep_bench)(int, char **) = arb_cuda_bench_kernels;
