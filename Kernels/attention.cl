// Fused scaled dot-product attention. A work-group takes BQ queries of one (batch, head); it walks
// the keys in blocks of BK staged in local memory, and each work-item keeps its query's running
// maximum, normaliser and output row (online softmax), so scores never reach global memory.
// q [B, Sq, H*D], k [B, Sk, H*D], v [B, Sk, H*DV], optional key mask [B, Sk] (1 attend, 0 pad),
// CAUSAL masks keys after the query position (key j > query i, PyTorch's is_causal).
// D and DV are build constants (head widths) so the per-query rows live in registers.

#ifndef BQ
#define BQ 16
#endif
#ifndef BK
#define BK 32
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif
#ifndef HAS_MASK
#define HAS_MASK 0
#endif

__kernel __attribute__((reqd_work_group_size(BQ, 1, 1)))
void attention(__global const float* Q, const long qOff, __global const float* Kt, const long kOff,
               __global const float* V, const long vOff, __global const float* mask, const long mOff,
               __global float* O, const long oOff, const int Sq, const int Sk, const int H, const float scale) {
    __local float ks[BK][D];
    __local float vs[BK][DV];
    __local float ms[BK];
    const int lq = get_local_id(0);
    const int qi = get_group_id(0) * BQ + lq;
    const int h = get_global_id(1), b = get_global_id(2);
    const bool active = qi < Sq;
    const int qrow = active ? qi : Sq - 1;
    float q[D];
    const __global float* qp = Q + qOff + ((long)b * Sq + qrow) * H * D + h * D;
    for (int d = 0; d < D; ++d) q[d] = qp[d] * scale;
    float acc[DV];
    for (int d = 0; d < DV; ++d) acc[d] = 0.0f;
    float mrun = -INFINITY, lrun = 0.0f;
    const int lastKey = CAUSAL ? min(Sk, (int)(get_group_id(0) + 1) * BQ) : Sk;
    for (int k0 = 0; k0 < lastKey; k0 += BK) {
        for (int l = lq; l < BK; l += BQ) {
            const int kj = k0 + l;
            const bool in = kj < Sk;
            const __global float* kp = Kt + kOff + ((long)b * Sk + (in ? kj : 0)) * H * D + h * D;
            const __global float* vp = V + vOff + ((long)b * Sk + (in ? kj : 0)) * H * DV + h * DV;
            for (int d = 0; d < D; ++d) ks[l][d] = kp[d];
            for (int d = 0; d < DV; ++d) vs[l][d] = vp[d];
#if HAS_MASK
            ms[l] = in && mask[mOff + (long)b * Sk + kj] != 0.0f ? 1.0f : 0.0f;
#else
            ms[l] = in ? 1.0f : 0.0f;
#endif
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        const int n = min(BK, Sk - k0);
        for (int j = 0; j < n; ++j) {
            bool use = ms[j] != 0.0f;
#if CAUSAL
            use = use && (k0 + j <= qi);
#endif
            if (!use) continue;
            float s = 0.0f;
            for (int d = 0; d < D; ++d) s = mad(q[d], ks[j][d], s);
            const float mnew = fmax(mrun, s);
            const float corr = exp(mrun - mnew);
            const float p = exp(s - mnew);
            lrun = lrun * corr + p;
            for (int d = 0; d < DV; ++d) acc[d] = mad(p, vs[j][d], acc[d] * corr);
            mrun = mnew;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (active) {
        __global float* op = O + oOff + ((long)b * Sq + qi) * H * DV + h * DV;
        // A query with every key masked attends to nothing: zeros, as the CPU backend writes.
        const float inv = lrun > 0.0f ? 1.0f / lrun : 0.0f;
        for (int d = 0; d < DV; ++d) op[d] = acc[d] * inv;
    }
}
