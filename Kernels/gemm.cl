// C = A · B (+ bias) with the activation epilogue, batched over dimension 2 of the launch.
//   A: row-major [M, K] at lda (rows past M are clamped on load).
//   B: packed in column panels of BP columns, panel-major: element (k, n) at
//   ((n / BP) * K + k) * BP + n % BP, columns past N zero. A panel is contiguous, so a work-item
//   streams it linearly; rows of a plain row-major B would be a large power-of-two stride apart
//   and alias in the cache's sets.
//   BIAS 0: none, 1: per column (dense), 2: per row (convolution: rows are output channels, and
//   batch index g reads biases from g * M, one group of output channels per batch index).
//   RESIDUAL 1: R (laid out as C, at the same offsets) is added before the activation: a skip
//   connection fused into the convolution that produces one operand of its add.
//   OUT_MODE 0: C[m * ldc + n]; 1: convolution output, column n = image * P + pixel written to
//   C[image * imgStride + m * P + pixel], so one GEMM covers every image of a batch.
// Two schedules share the epilogue:
//   gemm      — register blocking for CPUs: each work-item computes TM rows x (NV vectors of VW)
//               columns straight from global memory (the caches do the tiling; local memory on a
//               CPU only adds copies and barriers).
//   gemm_tiled — local-memory tiling for GPUs: a work-group of LT x LT work-items stages a
//               (LT*WPT) x TK tile of A and TK x (LT*WPT) of B, each work-item computing WPT x WPT.

#ifndef BIAS
#define BIAS 0
#endif
#ifndef BP
#define BP 16
#endif
#define B_AT(B, K, k, n) (B)[((long)((n) / BP) * (K) + (k)) * BP + (n) % BP]
#ifndef OUT_MODE
#define OUT_MODE 0
#endif
#ifndef RESIDUAL
#define RESIDUAL 0
#endif

inline void store_c(__global float* C, int ldc, int P, long imgStride, __global const float* bias,
                    __global const float* R, int m, int n, float v) {
#if BIAS == 1
    v += bias[n];
#elif BIAS == 2
    v += bias[m];
#endif
#if OUT_MODE == 0
    const long at = (long)m * ldc + n;
#else
    const int img = n / P, pix = n - img * P;
    const long at = img * imgStride + (long)m * P + pix;
#endif
#if RESIDUAL
    v += R[at];
#endif
    C[at] = activate(v);
}

#ifndef TM
#define TM 8
#endif
#ifndef VW
#define VW 8
#endif
#ifndef NV
#define NV 2
#endif
#define TN (VW * NV)

#if VW == 4
#define floatV float4
#define vloadV vload4
#define vstoreV vstore4
#elif VW == 8
#define floatV float8
#define vloadV vload8
#define vstoreV vstore8
#elif VW == 16
#define floatV float16
#define vloadV vload16
#define vstoreV vstore16
#else
#error VW must be 4, 8 or 16
#endif

__kernel void gemm(const int M, const int N, const int K,
                   __global const float* A, const long aOff, const int lda, const long sA,
                   __global const float* B, const long bOff, const long sB,
                   __global float* C, const long cOff, const int ldc, const long sC,
                   __global const float* bias, const long biasOff, const int P, const long imgStride,
                   __global const float* R, const long rOff) {
    // Work-items next to each other share the B panel (dimension 0 walks rows of C), which keeps
    // the panel in the core's cache while A streams through.
    const int mb = get_global_id(0), nb = get_global_id(1), g = get_global_id(2);
    const int m0 = mb * TM, n0 = nb * TN;
    if (m0 >= M || n0 >= N) return;
    const __global float* a = A + aOff + g * sA;
    const __global float* b = B + bOff + g * sB + (long)nb * K * TN;
    const __global float* ar[TM];
    #pragma unroll
    for (int i = 0; i < TM; ++i) ar[i] = a + (long)min(m0 + i, M - 1) * lda;
    floatV acc[TM][NV];
    #pragma unroll
    for (int i = 0; i < TM; ++i) {
        #pragma unroll
        for (int v = 0; v < NV; ++v) acc[i][v] = (floatV)(0.0f);
    }
    for (int k = 0; k < K; ++k) {
        floatV bv[NV];
        #pragma unroll
        for (int v = 0; v < NV; ++v) bv[v] = vloadV(0, b + (long)k * TN + v * VW);
        #pragma unroll
        for (int i = 0; i < TM; ++i) {
            const floatV av = (floatV)(ar[i][k]);
            #pragma unroll
            for (int v = 0; v < NV; ++v) acc[i][v] = mad(av, bv[v], acc[i][v]);
        }
    }
    __global float* c = C + cOff + g * sC;
    __global const float* r = R + rOff + g * sC;
    // Per-row biases follow the batch when it is the convolution's group (M rows a group).
    __global const float* bs = bias + biasOff + (BIAS == 2 ? (long)g * M : 0);
    #pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + i;
        if (m >= M) break;
        float row[TN];
        #pragma unroll
        for (int v = 0; v < NV; ++v) vstoreV(acc[i][v], 0, row + v * VW);
        for (int j = 0; j < TN; ++j) {
            const int n = n0 + j;
            if (n < N) store_c(c, ldc, P, imgStride, bs, r, m, n, row[j]);
        }
    }
}

#ifndef LT
#define LT 16
#endif
#ifndef WPT
#define WPT 4
#endif
#ifndef TK
#define TK 16
#endif
#define TILE (LT * WPT)

__kernel __attribute__((reqd_work_group_size(LT, LT, 1)))
void gemm_tiled(const int M, const int N, const int K,
                __global const float* A, const long aOff, const int lda, const long sA,
                __global const float* B, const long bOff, const long sB,
                __global float* C, const long cOff, const int ldc, const long sC,
                __global const float* bias, const long biasOff, const int P, const long imgStride,
                __global const float* R, const long rOff) {
    __local float As[TK][TILE + 1];
    __local float Bs[TK][TILE];
    const int tx = get_local_id(0), ty = get_local_id(1), g = get_global_id(2);
    const int n0 = get_group_id(0) * TILE, m0 = get_group_id(1) * TILE;
    const __global float* a = A + aOff + g * sA;
    const __global float* b = B + bOff + g * sB;
    const int tid = ty * LT + tx;
    float acc[WPT][WPT];
    for (int i = 0; i < WPT; ++i)
        for (int j = 0; j < WPT; ++j) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TK) {
        for (int l = tid; l < TILE * TK; l += LT * LT) {
            const int mm = l / TK, kk = l - mm * TK;
            const int gm = m0 + mm, gk = k0 + kk;
            As[kk][mm] = (gm < M && gk < K) ? a[(long)gm * lda + gk] : 0.0f;
            const int kb = l / TILE, nn = l - kb * TILE;
            const int gkb = k0 + kb, gn = n0 + nn;
            Bs[kb][nn] = (gkb < K && gn < N) ? B_AT(b, K, gkb, gn) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TK; ++kk) {
            float av[WPT], bv[WPT];
            for (int i = 0; i < WPT; ++i) av[i] = As[kk][ty + LT * i];
            for (int j = 0; j < WPT; ++j) bv[j] = Bs[kk][tx + LT * j];
            for (int i = 0; i < WPT; ++i)
                for (int j = 0; j < WPT; ++j) acc[i][j] = mad(av[i], bv[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    __global float* c = C + cOff + g * sC;
    __global const float* r = R + rOff + g * sC;
    // Per-row biases follow the batch when it is the convolution's group (M rows a group).
    __global const float* bs = bias + biasOff + (BIAS == 2 ? (long)g * M : 0);
    for (int i = 0; i < WPT; ++i) {
        const int m = m0 + ty + LT * i;
        if (m >= M) continue;
        for (int j = 0; j < WPT; ++j) {
            const int n = n0 + tx + LT * j;
            if (n < N) store_c(c, ldc, P, imgStride, bs, r, m, n, acc[i][j]);
        }
    }
}

// Packs B (row-major [K, N] at ldb, or [N, K] when TRANS) into BP-column panels, columns from N
// to the padded width ldp zeroed; batched over dimension 2.
__kernel void pack_b(const int K, const int N, const int TRANS,
                     __global const float* B, const long bOff, const int ldb, const long sB,
                     __global float* D, const long dOff, const int ldp, const long sD) {
    const int n = get_global_id(0), k = get_global_id(1), g = get_global_id(2);
    if (n >= ldp || k >= K) return;
    const __global float* b = B + bOff + g * sB;
    float v = 0.0f;
    if (n < N) v = TRANS ? b[(long)n * ldb + k] : b[(long)k * ldb + n];
    B_AT(D + dOff + g * sD, K, k, n) = v;
}

// Copies A ([K, M] at lda, i.e. A transposed) into row-major [M, K], batched over dimension 2.
__kernel void transpose_a(const int M, const int K, __global const float* A, const long aOff, const int lda,
                          const long sA, __global float* D, const long dOff, const long sD) {
    const int k = get_global_id(0), m = get_global_id(1), g = get_global_id(2);
    if (k >= K || m >= M) return;
    D[dOff + g * sD + (long)m * K + k] = A[aOff + g * sA + (long)k * lda + m];
}
