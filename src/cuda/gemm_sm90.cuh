/* src/cuda/gemm_sm90.cuh — the Hopper pieces of the warp-specialized GEMM: mbarriers, the bulk
 * tensor copy (TMA, optionally multicast to a 2-CTA cluster), cluster helpers, setmaxnreg, and the
 * host side that encodes tensor maps through the driver entry point (no link to libcuda).
 *
 * Why a header of its own: these are thin PTX wrappers with no arbitor semantics; linear.cu keeps
 * the kernel and its epilogues. The device functions exist only in the sm_90a image
 * (ARB_HAVE_WGMMA); the host helpers compile everywhere. */
#ifndef ARB_CUDA_GEMM_SM90_CUH
#define ARB_CUDA_GEMM_SM90_CUH

#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <cstdint>

#include "cuda/wgmma.cuh"

#if defined(ARB_HAVE_WGMMA)
__device__ __forceinline__ uint32_t arb_smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void arb_mbar_init(uint64_t *bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(arb_smem_u32(bar)), "r"(count) : "memory");
}
/* Makes the initialized barriers visible to the copy engine and to the other CTA of a cluster. */
__device__ __forceinline__ void arb_mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void arb_mbar_arrive_expect_tx(uint64_t *bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(arb_smem_u32(bar)), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void arb_mbar_arrive(uint64_t *bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(arb_smem_u32(bar)) : "memory");
}
/* Arrive on the barrier at the same offset in CTA `rank` of this cluster (rank may be our own).
 * Release at CTA scope, as CUTLASS does: the arrival only says that this warp's wgmma reads of
 * the stage have retired. (.release.cluster made every arrival wait for the warp's earlier global
 * stores — the previous tile's epilogue — and halved the 2-CTA kernel's speed.) */
__device__ __forceinline__ void arb_mbar_arrive_cluster(uint64_t *bar, unsigned rank) {
    asm volatile("{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\n"
                 "mbarrier.arrive.shared::cluster.b64 _, [ra];\n}\n" ::"r"(arb_smem_u32(bar)),
                 "r"(rank)
                 : "memory");
}
__device__ __forceinline__ void arb_mbar_wait(uint64_t *bar, unsigned parity) {
    const uint32_t a = arb_smem_u32(bar);
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(a), "r"(parity)
                     : "memory");
    } while (!done);
}

/* 2-D tiled bulk copy global → shared, completing on bar (bytes counted by the barrier). Coordinates
 * are elements, innermost first; the parts of the box outside the tensor arrive as zeros. */
__device__ __forceinline__ void arb_tma_load_2d(void *dst, const CUtensorMap *map, int c0, int c1, uint64_t *bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], "
                 "[%2];\n" ::"r"(arb_smem_u32(dst)),
                 "l"((uint64_t)map), "r"(arb_smem_u32(bar)), "r"(c0), "r"(c1)
                 : "memory");
}
/* The same box written into every CTA of mask at the same shared offset, each CTA's barrier at
 * bar's offset counting the bytes. */
__device__ __forceinline__ void arb_tma_load_2d_mc(void *dst, const CUtensorMap *map, int c0, int c1, uint64_t *bar,
                                                   uint16_t mask) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster "
                 "[%0], [%1, {%3, %4}], [%2], %5;\n" ::"r"(arb_smem_u32(dst)),
                 "l"((uint64_t)map), "r"(arb_smem_u32(bar)), "r"(c0), "r"(c1), "h"(mask)
                 : "memory");
}

/* 2-D tiled bulk copy shared → global (parts outside the tensor are not written), and its
 * bulk-group bookkeeping: commit, then wait until at most N groups still read shared memory. */
__device__ __forceinline__ void arb_tma_store_2d(const CUtensorMap *map, int c0, int c1, const void *src) {
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"((uint64_t)map),
                 "r"(c0), "r"(c1), "r"(arb_smem_u32(src))
                 : "memory");
}
__device__ __forceinline__ void arb_bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void arb_bulk_wait_read() {
    asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
template <int N> __device__ __forceinline__ void arb_bulk_wait() {
    asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ unsigned arb_cluster_rank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
__device__ __forceinline__ void arb_cluster_sync() {
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}
/* Ordinary shared stores → reads by the tensor cores or the copy engine. */
__device__ __forceinline__ void arb_fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
/* D(64×256) += A(64×32, registers: the mma.m16n8k32 A fragment of each warp's 16 rows) ·
 * B(256×32, K-major shared). The A registers must stay untouched until this wgmma retires. */
__device__ __forceinline__ void arb_wgmma_m64n256k32_rs(int32_t (&d)[128], const uint32_t (&a)[4], uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 {"
                 "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127"
                 "}, {%128, %129, %130, %131}, %132, p;\n}\n"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]), "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]), "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]), "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]), "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]), "+r"(d[96]), "+r"(d[97]), "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]), "+r"(d[104]), "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]), "+r"(d[110]), "+r"(d[111]), "+r"(d[112]), "+r"(d[113]), "+r"(d[114]), "+r"(d[115]), "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]), "+r"(d[120]), "+r"(d[121]), "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}
template <int N> __device__ __forceinline__ void arb_setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void arb_setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
#endif

/* ---- host: tensor maps (cuTensorMapEncodeTiled through the runtime's driver entry point) */

/* A 2-D tensor map over a row-major matrix: `inner` elements per row (contiguous), `outer` rows,
 * `stride` bytes between rows, box box0 × box1 elements. False when the driver lacks the entry
 * point or refuses the shape (then the caller uses the portable kernel). */
static inline bool arb_tensor_map_2d(CUtensorMap *m, CUtensorMapDataType dt, const void *base, uint64_t inner,
                                     uint64_t outer, uint64_t stride, uint32_t box0, uint32_t box1,
                                     CUtensorMapSwizzle sw) {
    static PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
    static int tried = 0;
    if (!tried) {
        void *fn = nullptr;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) ==
                cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;
        tried = 1;
    }
    if (!encode || inner == 0 || outer == 0) return false;
    cuuint64_t dims[2] = {inner, outer}, strides[1] = {stride};
    cuuint32_t box[2] = {box0, box1}, es[2] = {1, 1};
    return encode(m, dt, 2, const_cast<void *>(base), dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE, sw,
                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

#endif
