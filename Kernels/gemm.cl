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
//   gemm_tiled — local-memory tiling for GPUs, double-buffered (see below); also the
//               convolution as an implicit GEMM (IMPLICIT 1).

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

// gemm_tiled: a work-group of LN x LM work-items computes a BM x BN tile of C (BM = LM * WM,
// BN = LN * WN), each work-item WM x WN of it in registers, at rows ty + LM * i and columns
// tx + LN * j: neighbouring work-items store neighbouring columns (coalesced), and read distinct
// local-memory banks. K advances TK at a time through two local-memory buffers: while the tile in
// one is multiplied, the next is loaded from global memory into registers, then stored into the
// other, so one barrier a step suffices (a work-item can only write buffer b after every
// work-item has passed the barrier that ended the last read of b).
//
// With IMPLICIT 1 the same kernel is a convolution as an implicit GEMM: B is not a packed matrix
// but the NCHW input itself, and element (k, n) of the column matrix is gathered on the fly,
// k = (c * KH + ky) * KW + kx and n = image * P + pixel, through a table of K entries
// (kTable[2k]: the offset of (c, ky * DH, kx * DW) in an image; kTable[2k + 1]: ky * DH << 16 |
// kx * DW, for the padding test) so no integer division is left in the inner loops. No column
// matrix is written to global memory. The batch index g is the convolution's group.
#ifndef LM
#define LM 16
#endif
#ifndef LN
#define LN 16
#endif
#ifndef WM
#define WM 8
#endif
#ifndef WN
#define WN 8
#endif
#ifndef TK
#define TK 16
#endif
#ifndef IMPLICIT
#define IMPLICIT 0
#endif
#define BM (LM * WM)
#define BN (LN * WN)
#define THREADS (LM * LN)
#define A_LOADS ((BM * TK + THREADS - 1) / THREADS)
#define B_LOADS ((BN * TK + THREADS - 1) / THREADS)

__kernel __attribute__((reqd_work_group_size(LN, LM, 1)))
void gemm_tiled(const int M, const int N, const int K,
                __global const float* A, const long aOff, const int lda, const long sA,
                __global const float* B, const long bOff, const long sB,
                __global float* C, const long cOff, const int ldc, const long sC,
                __global const float* bias, const long biasOff, const int P, const long imgStride,
                __global const float* R, const long rOff,
                __global const int* kTable, const long kOff, const int imageFloats, const int H, const int W, const int OW,
                const int SH, const int SW, const int PT, const int PL) {
    // A is stored k-major with one float of padding a row: the loads below walk k fastest, and
    // without the padding every work-item of a warp would store into the same bank.
    __local float As[2][TK][BM + 1];
    __local float Bs[2][TK][BN];
    const int tx = get_local_id(0), ty = get_local_id(1), g = get_global_id(2);
    const int tid = ty * LN + tx;
    const int n0 = get_group_id(0) * BN, m0 = get_group_id(1) * BM;
    const __global float* a = A + aOff + g * sA;
#if IMPLICIT
    // This group's input channels; each B element a work-item loads keeps its column across the
    // K loop when THREADS is a multiple of BN, so its image, row and column are found once.
    const __global float* x = B + bOff + g * sB;
    kTable += kOff;
    int colBase[B_LOADS], colY[B_LOADS], colX[B_LOADS];
    #pragma unroll
    for (int r = 0; r < B_LOADS; ++r) {
        const int n = n0 + (tid + r * THREADS) % BN;
        const int img = n / P, pix = n - img * P, oy = pix / OW, ox = pix - oy * OW;
        colY[r] = n < N ? oy * SH - PT : -0x40000000;   // a column past N reads as padding
        colX[r] = ox * SW - PL;
        colBase[r] = n < N ? img * imageFloats + colY[r] * W + colX[r] : 0;
    }
#else
    const __global float* b = B + bOff + g * sB + (long)get_group_id(0) * K * BN;
#endif
    float acc[WM][WN];
    #pragma unroll
    for (int i = 0; i < WM; ++i) {
        #pragma unroll
        for (int j = 0; j < WN; ++j) acc[i][j] = 0.0f;
    }
    float aReg[A_LOADS], bReg[B_LOADS];
    const int steps = (K + TK - 1) / TK;
    for (int step = 0; step <= steps; ++step) {
        const int cur = step & 1;
        // Load step `step` into registers (global memory), multiply step - 1 (local memory), then
        // store the registers into the other buffer.
        if (step < steps) {
            const int k0 = step * TK;
            #pragma unroll
            for (int r = 0; r < A_LOADS; ++r) {
                const int l = tid + r * THREADS, mm = l / TK, kk = l - mm * TK;
                const int gm = m0 + mm, gk = k0 + kk;
                aReg[r] = (l < BM * TK && gm < M && gk < K) ? a[(long)gm * lda + gk] : 0.0f;
            }
            #pragma unroll
            for (int r = 0; r < B_LOADS; ++r) {
                const int l = tid + r * THREADS, kk = l / BN, gk = k0 + kk;
                float v = 0.0f;
#if IMPLICIT
                if (l < BN * TK && gk < K) {
                    const int dyx = kTable[2 * gk + 1], iy = colY[r] + (dyx >> 16), ix = colX[r] + (dyx & 0xffff);
                    if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = x[colBase[r] + kTable[2 * gk]];
                }
#else
                if (l < BN * TK && gk < K) v = b[(long)gk * BN + (l - kk * BN)];
#endif
                bReg[r] = v;
            }
        }
        if (step > 0) {
            const int prev = cur ^ 1;
            #pragma unroll
            for (int kk = 0; kk < TK; ++kk) {
                float av[WM], bv[WN];
                #pragma unroll
                for (int i = 0; i < WM; ++i) av[i] = As[prev][kk][ty + LM * i];
                #pragma unroll
                for (int j = 0; j < WN; ++j) bv[j] = Bs[prev][kk][tx + LN * j];
                #pragma unroll
                for (int i = 0; i < WM; ++i) {
                    #pragma unroll
                    for (int j = 0; j < WN; ++j) acc[i][j] = mad(av[i], bv[j], acc[i][j]);
                }
            }
        }
        if (step < steps) {
            #pragma unroll
            for (int r = 0; r < A_LOADS; ++r) {
                const int l = tid + r * THREADS, mm = l / TK;
                if (l < BM * TK) As[cur][l - mm * TK][mm] = aReg[r];
            }
            #pragma unroll
            for (int r = 0; r < B_LOADS; ++r) {
                const int l = tid + r * THREADS, kk = l / BN;
                if (l < BN * TK) Bs[cur][kk][l - kk * BN] = bReg[r];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    __global float* c = C + cOff + g * sC;
    __global const float* rs = R + rOff + g * sC;
    // Per-row biases follow the batch when it is the convolution's group (M rows a group).
    __global const float* bs = bias + biasOff + (BIAS == 2 ? (long)g * M : 0);
    #pragma unroll
    for (int i = 0; i < WM; ++i) {
        const int m = m0 + ty + LM * i;
        if (m >= M) break;
        #pragma unroll
        for (int j = 0; j < WN; ++j) {
            const int n = n0 + tx + LN * j;
            if (n < N) store_c(c, ldc, P, imgStride, bs, rs, m, n, acc[i][j]);
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
