// Max / average pooling with padding, dilation and ceil mode, and global pooling.
// A max window ignores padded positions; an average divides by the positions inside the padded
// extent (count_include_pad) or by the positions inside the input.

__kernel void pool2d(__global const float* X, const long xOff, __global float* Y, const long yOff,
                     const int C, const int H, const int W, const int OH, const int OW,
                     const int KH, const int KW, const int SH, const int SW, const int PT, const int PL,
                     const int PB, const int PR, const int DH, const int DW, const int INCLUDE_PAD) {
    const int pix = get_global_id(0), c = get_global_id(1), img = get_global_id(2);
    if (pix >= OH * OW || c >= C) return;
    const int oy = pix / OW, ox = pix - oy * OW;
    const __global float* xc = X + xOff + ((long)img * C + c) * H * W;
    const int iy0 = oy * SH - PT, ix0 = ox * SW - PL;
#if IS_MAX
    float acc = -INFINITY;
#else
    float acc = 0.0f;
    int inside = 0, padded = 0;
#endif
    for (int ky = 0; ky < KH; ++ky) {
        const int iy = iy0 + ky * DH;
        for (int kx = 0; kx < KW; ++kx) {
            const int ix = ix0 + kx * DW;
            const bool valid = iy >= 0 && iy < H && ix >= 0 && ix < W;
#if IS_MAX
            if (valid) acc = fmax(acc, xc[iy * W + ix]);
#else
            if (valid) { acc += xc[iy * W + ix]; inside++; }
            if (iy >= -PT && iy < H + PB && ix >= -PL && ix < W + PR) padded++;
#endif
        }
    }
#if !IS_MAX
    const int count = INCLUDE_PAD ? padded : inside;
    acc = count > 0 ? acc / (float)count : 0.0f;
#endif
    Y[yOff + ((long)img * C + c) * OH * OW + pix] = acc;
}

__kernel void global_pool(__global const float* X, const long xOff, __global float* Y, const long yOff,
                          const int NC, const int P) {
    const int i = get_global_id(0);
    if (i >= NC) return;
    const __global float* x = X + xOff + (long)i * P;
#if IS_MAX
    float acc = -INFINITY;
    for (int p = 0; p < P; ++p) acc = fmax(acc, x[p]);
#else
    float acc = 0.0f;
    for (int p = 0; p < P; ++p) acc += x[p];
    acc /= (float)P;
#endif
    Y[yOff + i] = acc;
}
