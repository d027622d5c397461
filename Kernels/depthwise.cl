// Depthwise convolution (groups == input channels), one work-item per output pixel. Output
// channel o reads input channel o / MULT (the channel multiplier O / C). KH and KW are build
// constants so the window loops unroll. A residual (the same shape as Y) is added before the
// activation when HAS_RESIDUAL.

#ifndef HAS_BIAS
#define HAS_BIAS 0
#endif
#ifndef HAS_RESIDUAL
#define HAS_RESIDUAL 0
#endif

__kernel void depthwise_conv2d(__global const float* X, const long xOff,
                               __global const float* Wt, const long wOff,
                               __global const float* bias, const long bOff,
                               __global const float* R, const long rOff,
                               __global float* Y, const long yOff,
                               const int C, const int H, const int W, const int O, const int OH, const int OW,
                               const int SH, const int SW, const int PT, const int PL, const int DH, const int DW) {
    const int pix = get_global_id(0), o = get_global_id(1), img = get_global_id(2);
    if (pix >= OH * OW || o >= O) return;
    const int oy = pix / OW, ox = pix - oy * OW;
    const int c = o / (O / C);
    const __global float* xc = X + xOff + ((long)img * C + c) * H * W;
    const __global float* w = Wt + wOff + (long)o * KH * KW;
    const int iy0 = oy * SH - PT, ix0 = ox * SW - PL;
    float acc = 0.0f;
    #pragma unroll
    for (int ky = 0; ky < KH; ++ky) {
        const int iy = iy0 + ky * DH;
        if (iy < 0 || iy >= H) continue;
        #pragma unroll
        for (int kx = 0; kx < KW; ++kx) {
            const int ix = ix0 + kx * DW;
            if (ix >= 0 && ix < W) acc = mad(xc[iy * W + ix], w[ky * KW + kx], acc);
        }
    }
#if HAS_BIAS
    acc += bias[bOff + o];
#endif
    const long at = ((long)img * O + o) * OH * OW + pix;
#if HAS_RESIDUAL
    acc += R[rOff + at];
#endif
    Y[yOff + at] = activate(acc);
}
