// Data movement: copies, concat / split blocks, strided gathers (slice, transpose), padding and
// upsampling. Shapes of rank up to 6 are padded with leading 1s.

__kernel void copy(__global const float* X, const long xOff, __global float* Y, const long yOff, const long n) {
    const long i = get_global_id(0);
    if (i < n) Y[yOff + i] = X[xOff + i];
}

__kernel void fill(__global float* Y, const long yOff, const long n, const float v) {
    const long i = get_global_id(0);
    if (i < n) Y[yOff + i] = v;
}

// Views both tensors as [outer, len, inner] around the concat axis: the source block of `len`
// rows lands at row `at` of a destination with `dstLen` rows (concat), or is read from row `at`
// of a source with `srcLen` rows (split).
__kernel void copy_block(__global const float* X, const long xOff, __global float* Y, const long yOff,
                         const int outer, const int len, const long inner,
                         const int srcLen, const int srcAt, const int dstLen, const int dstAt) {
    const long e = get_global_id(0);
    const int l = get_global_id(1), o = get_global_id(2);
    if (e >= inner || l >= len || o >= outer) return;
    Y[yOff + ((long)o * dstLen + dstAt + l) * inner + e] = X[xOff + ((long)o * srcLen + srcAt + l) * inner + e];
}

// Y[i] = X[sum_d index_d(i) * s_d] over output dimensions d0..d5 (slice: steps folded into the
// strides and starts into xOff; transpose: permuted strides).
__kernel void gather(__global const float* X, const long xOff, __global float* Y, const long yOff, const long n,
                     const int d1, const int d2, const int d3, const int d4, const int d5,
                     const long s0, const long s1, const long s2, const long s3, const long s4, const long s5) {
    const long i = get_global_id(0);
    if (i >= n) return;
    long r = i, off = 0;
    off += (r % d5) * s5; r /= d5;
    off += (r % d4) * s4; r /= d4;
    off += (r % d3) * s3; r /= d3;
    off += (r % d2) * s2; r /= d2;
    off += (r % d1) * s1; r /= d1;
    off += r * s0;
    Y[yOff + i] = X[xOff + off];
}

// MODE 0 constant, 1 reflect, 2 edge. e0..e5 input dims, p0..p5 leading pads.
inline int pad_index(int o, int p, int e, int* inside) {
    int i = o - p;
    if (i >= 0 && i < e) return i;
#if MODE == 0
    *inside = 0;
    return 0;
#elif MODE == 1
    if (e == 1) return 0;
    const int period = 2 * (e - 1);
    i = i % period; if (i < 0) i += period;
    return i < e ? i : period - i;
#else
    return clamp(i, 0, e - 1);
#endif
}

__kernel void pad(__global const float* X, const long xOff, __global float* Y, const long yOff, const long n,
                  const int d1, const int d2, const int d3, const int d4, const int d5,
                  const int e0, const int e1, const int e2, const int e3, const int e4, const int e5,
                  const int p0, const int p1, const int p2, const int p3, const int p4, const int p5, const float value) {
    const long i = get_global_id(0);
    if (i >= n) return;
    long r = i;
    const int o5 = r % d5; r /= d5;
    const int o4 = r % d4; r /= d4;
    const int o3 = r % d3; r /= d3;
    const int o2 = r % d2; r /= d2;
    const int o1 = r % d1; r /= d1;
    const int o0 = (int)r;
    int inside = 1;
    const int i0 = pad_index(o0, p0, e0, &inside), i1 = pad_index(o1, p1, e1, &inside);
    const int i2 = pad_index(o2, p2, e2, &inside), i3 = pad_index(o3, p3, e3, &inside);
    const int i4 = pad_index(o4, p4, e4, &inside), i5 = pad_index(o5, p5, e5, &inside);
    const long src = ((((((long)i0 * e1 + i1) * e2 + i2) * e3 + i3) * e4 + i4) * e5) + i5;
    Y[yOff + i] = inside ? X[xOff + src] : value;
}

// MODE 0 nearest (src = floor(dst * in / out)), 1 bilinear with half-pixel centres, 2 bilinear
// with aligned corners.
__kernel void upsample2d(__global const float* X, const long xOff, __global float* Y, const long yOff,
                       const int NC, const int H, const int W, const int OH, const int OW,
                       const float RH, const float RW) {
    const int pix = get_global_id(0), c = get_global_id(1);
    if (pix >= OH * OW || c >= NC) return;
    const int oy = pix / OW, ox = pix - oy * OW;
    const __global float* x = X + xOff + (long)c * H * W;
#if MODE == 0
    const int iy = min((int)((long)oy * H / OH), H - 1), ix = min((int)((long)ox * W / OW), W - 1);
    const float v = x[iy * W + ix];
#else
#if MODE == 1
    // Half-pixel centres; RH, RW are the source steps (1 / scale, or in / out for a given size).
    float fy = ((float)oy + 0.5f) * RH - 0.5f;
    float fx = ((float)ox + 0.5f) * RW - 0.5f;
    fy = fmax(fy, 0.0f); fx = fmax(fx, 0.0f);
#else
    const float fy = OH > 1 ? (float)oy * (float)(H - 1) / (float)(OH - 1) : 0.0f;
    const float fx = OW > 1 ? (float)ox * (float)(W - 1) / (float)(OW - 1) : 0.0f;
#endif
    const int y0 = min((int)fy, H - 1), x0 = min((int)fx, W - 1);
    const int y1 = min(y0 + 1, H - 1), x1 = min(x0 + 1, W - 1);
    const float wy = fy - (float)y0, wx = fx - (float)x0;
    const float top = x[y0 * W + x0] * (1.0f - wx) + x[y0 * W + x1] * wx;
    const float bot = x[y1 * W + x0] * (1.0f - wx) + x[y1 * W + x1] * wx;
    const float v = top * (1.0f - wy) + bot * wy;
#endif
    Y[yOff + (long)c * OH * OW + pix] = v;
}
