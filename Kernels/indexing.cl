// Ops along one axis (argmax / argmin, top-k, cumulative sum) and index ops (gather on any axis,
// gather_elements, gather_nd, scatter_nd), as QuarryCPU/Indexing.swift. An axis op sees its
// input as [outer, len, inner]: one work-item per (outer, inner) row walks the axis.

// Index operands hold integers as floats (see Op.swift): rounded to the nearest integer (rint,
// ties to even), a value in [-n, n) names position (value mod n); any other value, NaN included,
// gives -1, for which the gathers write NaN and scatter_nd skips the update, so that no index
// ever reads or writes outside its tensor.
inline long index_position(const float f, const long n) {
    const float r = rint(f);
    if (!(r >= -(float)n && r < (float)n)) return -1;
    const long i = (long)r;
    const long p = i < 0 ? i + n : i;
    return (p >= 0 && p < n) ? p : -1;
}

// The flat position in a block of k dimensions (`dims`, floats holding integers) that a tuple of
// k index values names, or -1.
inline long tuple_position(__global const float* tuple, __global const float* dims, const int k) {
    long off = 0;
    for (int j = 0; j < k; ++j) {
        const long n = (long)dims[j];
        const long p = index_position(tuple[j], n);
        if (p < 0) return -1;
        off = off * n + p;
    }
    return off;
}

// Y[row] = position of the largest (largest = 1) or smallest element of the row; strict
// comparisons keep the first of equal values, non-strict ones (last = 1) the last.
__kernel void arg_extreme(__global const float* X, const long xOff, __global float* Y, const long yOff,
                          const long rows, const int len, const long inner, const int largest, const int last) {
    const long row = get_global_id(0);
    if (row >= rows) return;
    __global const float* x = X + xOff + (row / inner) * len * inner + row % inner;
    float best = x[0];
    int at = 0;
    for (int l = 1; l < len; ++l) {
        const float v = x[l * inner];
        const int better = largest ? (last ? v >= best : v > best) : (last ? v <= best : v < best);
        if (better) { best = v; at = l; }
    }
    Y[yOff + row] = (float)at;
}

// Whether (a at position ia) comes before (b at ib) in top-k order: best first, equal values by
// position. A strict total order, so the j-th pick is the first element after the (j-1)-th.
inline int topk_before(const float a, const int ia, const float b, const int ib, const int largest) {
    if (a == b) return ia < ib;
    return largest ? a > b : a < b;
}

// The k best of each row by k passes of selection, with no scratch: each pass takes the best
// element that comes after the previous pick (k * len reads; k and rows are small in practice).
__kernel void topk(__global const float* X, const long xOff, __global float* V, const long vOff,
                   __global float* I, const long iOff, const long rows, const int len, const long inner,
                   const int k, const int largest) {
    const long row = get_global_id(0);
    if (row >= rows) return;
    const long o = row / inner, i = row % inner;
    __global const float* x = X + xOff + o * len * inner + i;
    float pv = 0;
    int pi = -1;
    for (int j = 0; j < k; ++j) {
        float bv = 0;
        int bi = -1;
        for (int l = 0; l < len; ++l) {
            const float v = x[l * inner];
            if (pi >= 0 && !topk_before(pv, pi, v, l, largest)) continue;
            if (bi < 0 || topk_before(v, l, bv, bi, largest)) { bv = v; bi = l; }
        }
        const long at = (o * k + j) * inner + i;
        V[vOff + at] = bv;
        I[iOff + at] = (float)bi;
        pv = bv; pi = bi;
    }
}

// Running sums along the axis, from the end with reverse = 1, leaving the element itself out
// with exclusive = 1.
__kernel void cumsum(__global const float* X, const long xOff, __global float* Y, const long yOff,
                     const long rows, const int len, const long inner, const int exclusive, const int reverse) {
    const long row = get_global_id(0);
    if (row >= rows) return;
    const long off = (row / inner) * len * inner + row % inner;
    float acc = 0;
    for (int step = 0; step < len; ++step) {
        const long at = off + (long)(reverse ? len - 1 - step : step) * inner;
        const float v = X[xOff + at];
        if (exclusive) { Y[yOff + at] = acc; acc += v; } else { acc += v; Y[yOff + at] = acc; }
    }
}

// data [outer, n, inner], m indices -> Y [outer, m, inner], one work-item per output element.
__kernel void gather_axis(__global const float* X, const long xOff, __global const float* Ind, const long iOff,
                          __global float* Y, const long yOff, const long total, const long n, const long m,
                          const long inner) {
    const long e = get_global_id(0);
    if (e >= total) return;
    const long c = e % inner, row = e / inner;
    const long p = index_position(Ind[iOff + row % m], n);
    Y[yOff + e] = p < 0 ? NAN : X[xOff + ((row / m) * n + p) * inner + c];
}

// Y has the indices' shape d0..d5 (padded with leading 1s); an element reads the data at its own
// coordinates (strides s0..s5, the axis's stride 0) plus the index times the axis's stride.
__kernel void gather_elements(__global const float* X, const long xOff, __global const float* Ind, const long iOff,
                              __global float* Y, const long yOff, const long total,
                              const int d1, const int d2, const int d3, const int d4, const int d5,
                              const long s0, const long s1, const long s2, const long s3, const long s4, const long s5,
                              const long axisLen, const long axisStride) {
    const long e = get_global_id(0);
    if (e >= total) return;
    long r = e, off = 0;
    off += (r % d5) * s5; r /= d5;
    off += (r % d4) * s4; r /= d4;
    off += (r % d3) * s3; r /= d3;
    off += (r % d2) * s2; r /= d2;
    off += (r % d1) * s1; r /= d1;
    off += r * s0;
    const long p = index_position(Ind[iOff + e], axisLen);
    Y[yOff + e] = p < 0 ? NAN : X[xOff + off + p * axisStride];
}

// data [B, dims (k of them), S], indices [B, T, k] -> Y [B, T, S]; `block` = prod(dims) * S.
__kernel void gather_nd(__global const float* X, const long xOff, __global const float* Ind, const long iOff,
                        __global const float* D, const long dOff, __global float* Y, const long yOff,
                        const long total, const int k, const long S, const long T, const long block) {
    const long e = get_global_id(0);
    if (e >= total) return;
    const long s = e % S, row = e / S;
    const long off = tuple_position(Ind + iOff + row * k, D + dOff, k);
    Y[yOff + e] = off < 0 ? NAN : X[xOff + (row / T) * block + off * S + s];
}

// Y (already a copy of the data, [dims (k of them), S]) takes updates [T, S] at the slices the
// index tuples [T, k] name. One work-item per slice position s applies every update to it in
// order, so repeated tuples combine in order with no race. RED: 0 none, 1 add, 2 mul, 3 max, 4 min.
__kernel void scatter_nd(__global const float* Ind, const long iOff, __global const float* D, const long dOff,
                         __global const float* U, const long uOff, __global float* Y, const long yOff,
                         const long S, const long T, const int k, const int red) {
    const long s = get_global_id(0);
    if (s >= S) return;
    for (long t = 0; t < T; ++t) {
        const long off = tuple_position(Ind + iOff + t * k, D + dOff, k);
        if (off < 0) continue;
        __global float* y = Y + yOff + off * S + s;
        const float u = U[uOff + t * S + s];
        switch (red) {
        case 0: *y = u; break;
        case 1: *y += u; break;
        case 2: *y *= u; break;
        case 3: *y = fmax(*y, u); break;
        default: *y = fmin(*y, u); break;
        }
    }
}
