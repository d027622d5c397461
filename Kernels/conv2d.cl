// Convolution as implicit-GEMM operands, and transposed convolution.
//
// im2col writes the GEMM's B operand for every image of the batch at once:
//   B[(c * KH + ky) * KW + kx][img * OH * OW + oy * OW + ox] = x[img][c][iy][ix] (0 in the padding)
// in gemm.cl's packed layout (BP-column panels; columns from N * OH * OW to ldp are zero), one
// packed matrix of KG rows per group, the groups one after another.

#ifndef BP
#define BP 16
#endif
#define PANEL_AT(D, K, k, n) (D)[((long)((n) / BP) * (K) + (k)) * BP + (n) % BP]
#define GROUPED_AT(D, KG, ldp, row, n) PANEL_AT((D) + (long)((row) / (KG)) * (KG) * (ldp), KG, (row) % (KG), n)
// gemm.cl then multiplies the weights [O, C/groups * KH * KW] by it, one group per batch index,
// with the per-channel bias, the activation, and the NCHW store fused into its epilogue.

__kernel void im2col(__global const float* X, const long xOff,
                     const int C, const int H, const int W, const int OH, const int OW,
                     const int KH, const int KW, const int SH, const int SW,
                     const int PT, const int PL, const int DH, const int DW, const int NIMG,
                     __global float* D, const long dOff, const int ldp, const int KG) {
    const int col = get_global_id(0), row = get_global_id(1);
    if (col >= ldp || row >= C * KH * KW) return;
    const int P = OH * OW;
    float v = 0.0f;
    if (col < NIMG * P) {
        const int img = col / P, pix = col - img * P;
        const int oy = pix / OW, ox = pix - oy * OW;
        const int kx = row % KW, t = row / KW;
        const int ky = t % KH, c = t / KH;
        const int iy = oy * SH - PT + ky * DH, ix = ox * SW - PL + kx * DW;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W)
            v = X[xOff + (((long)img * C + c) * H + iy) * W + ix];
    }
    GROUPED_AT(D + dOff, KG, ldp, row, col) = v;
}

// NCHW input as the packed [C][N * H * W] operand of a 1x1, stride-1 convolution (no im2col).
__kernel void channels_first(__global const float* X, const long xOff, const int C, const int P,
                             const int NIMG, __global float* D, const long dOff, const int ldp, const int KG) {
    const int col = get_global_id(0), c = get_global_id(1);
    if (col >= ldp || c >= C) return;
    float v = 0.0f;
    if (col < NIMG * P) {
        const int img = col / P, pix = col - img * P;
        v = X[xOff + ((long)img * C + c) * P + pix];
    }
    GROUPED_AT(D + dOff, KG, ldp, c, col) = v;
}

#ifndef HAS_BIAS
#define HAS_BIAS 0
#endif

// Transposed convolution, one work-item per output element: each output gathers the inputs whose
// stride-spaced footprint covers it. Weight layout [C, O/groups, KH, KW] (PyTorch).
__kernel void conv_transpose2d(__global const float* X, const long xOff,
                               __global const float* Wt, const long wOff,
                               __global const float* bias, const long bOff,
                               __global float* Y, const long yOff,
                               const int C, const int H, const int W, const int O, const int OH, const int OW,
                               const int KH, const int KW, const int SH, const int SW,
                               const int PT, const int PL, const int DH, const int DW, const int G) {
    const int pix = get_global_id(0), o = get_global_id(1), img = get_global_id(2);
    if (pix >= OH * OW || o >= O) return;
    const int oy = pix / OW, ox = pix - oy * OW;
    const int og = O / G, cg = C / G;
    const int g = o / og, oo = o - g * og;
    float acc = 0.0f;
    for (int ci = g * cg; ci < (g + 1) * cg; ++ci) {
        const __global float* xc = X + xOff + ((long)img * C + ci) * H * W;
        const __global float* wc = Wt + wOff + ((long)ci * og + oo) * KH * KW;
        for (int ky = 0; ky < KH; ++ky) {
            const int ty = oy + PT - ky * DH;
            if (ty < 0 || ty % SH != 0) continue;
            const int iy = ty / SH;
            if (iy >= H) continue;
            for (int kx = 0; kx < KW; ++kx) {
                const int tx = ox + PL - kx * DW;
                if (tx < 0 || tx % SW != 0) continue;
                const int ix = tx / SW;
                if (ix >= W) continue;
                acc = mad(xc[iy * W + ix], wc[ky * KW + kx], acc);
            }
        }
    }
#if HAS_BIAS
    acc += bias[bOff + o];
#endif
    Y[yOff + ((long)img * O + o) * OH * OW + pix] = activate(acc);
}
