// Elementwise maps, broadcasting binaries, reductions and embedding lookups.
// Tensors of rank up to 6 are described by dimensions padded with leading 1s and per-operand
// strides (0 along a broadcast dimension).

__kernel void unary(__global const float* X, const long xOff, __global float* Y, const long yOff, const long n,
                    const int code, const float a, const float b) {
    const long i = get_global_id(0);
    if (i < n) Y[yOff + i] = activate_by(X[xOff + i], code, a, b);
}

// OP: 0 add, 1 sub, 2 mul, 3 div, 4 pow, 5 max, 6 min, 7 equal, 8 less, 9 less or equal,
// 10 greater, 11 greater or equal, 12 and, 13 or, 14 xor (1 true, 0 false; any non-zero operand
// is true), 15 mod (the divisor's sign, Python's %), 16 fmod (the dividend's sign, C's).
inline float binary_op(float a, float b) {
#if OP == 0
    return a + b;
#elif OP == 1
    return a - b;
#elif OP == 2
    return a * b;
#elif OP == 3
    return a / b;
#elif OP == 4
    return pow(a, b);
#elif OP == 5
    return fmax(a, b);
#elif OP == 6
    return fmin(a, b);
#elif OP == 7
    return a == b ? 1.0f : 0.0f;
#elif OP == 8
    return a < b ? 1.0f : 0.0f;
#elif OP == 9
    return a <= b ? 1.0f : 0.0f;
#elif OP == 10
    return a > b ? 1.0f : 0.0f;
#elif OP == 11
    return a >= b ? 1.0f : 0.0f;
#elif OP == 12
    return (a != 0.0f && b != 0.0f) ? 1.0f : 0.0f;
#elif OP == 13
    return (a != 0.0f || b != 0.0f) ? 1.0f : 0.0f;
#elif OP == 14
    return ((a != 0.0f) != (b != 0.0f)) ? 1.0f : 0.0f;
#elif OP == 15
    // fmod is exact (OpenCL requires 0 ulp), and so is the one correction for integers.
    const float r = fmod(a, b);
    return (r != 0.0f && ((r < 0.0f) != (b < 0.0f))) ? r + b : r;
#else
    return fmod(a, b);
#endif
}

__kernel void binary(__global const float* A, const long aOff, __global const float* B, const long bOff,
                     __global float* Y, const long yOff, const long n,
                     const int d1, const int d2, const int d3, const int d4, const int d5,
                     const long a0, const long a1, const long a2, const long a3, const long a4, const long a5,
                     const long b0, const long b1, const long b2, const long b3, const long b4, const long b5) {
    const long i = get_global_id(0);
    if (i >= n) return;
#if SAME_SHAPE
    Y[yOff + i] = activate(binary_op(A[aOff + i], B[bOff + i]));
#else
    long r = i;
    const int i5 = r % d5; r /= d5;
    const int i4 = r % d4; r /= d4;
    const int i3 = r % d3; r /= d3;
    const int i2 = r % d2; r /= d2;
    const int i1 = r % d1; r /= d1;
    const int i0 = (int)r;
    const long ia = i0 * a0 + i1 * a1 + i2 * a2 + i3 * a3 + i4 * a4 + i5 * a5;
    const long ib = i0 * b0 + i1 * b1 + i2 * b2 + i3 * b3 + i4 * b4 + i5 * b5;
    Y[yOff + i] = activate(binary_op(A[aOff + ia], B[bOff + ib]));
#endif
}

// Y = C != 0 ? X : Z with the three operands broadcast to the output (ONNX Where); dimensions
// and per-operand strides padded to rank 6 as in `binary`.
__kernel void select3(__global const float* C, const long cOff, __global const float* X, const long xOff,
                      __global const float* Z, const long zOff, __global float* Y, const long yOff, const long n,
                      const int d1, const int d2, const int d3, const int d4, const int d5,
                      const long c0, const long c1, const long c2, const long c3, const long c4, const long c5,
                      const long x0, const long x1, const long x2, const long x3, const long x4, const long x5,
                      const long z0, const long z1, const long z2, const long z3, const long z4, const long z5) {
    const long i = get_global_id(0);
    if (i >= n) return;
    long r = i;
    const int i5 = r % d5; r /= d5;
    const int i4 = r % d4; r /= d4;
    const int i3 = r % d3; r /= d3;
    const int i2 = r % d2; r /= d2;
    const int i1 = r % d1; r /= d1;
    const int i0 = (int)r;
    const long ic = i0 * c0 + i1 * c1 + i2 * c2 + i3 * c3 + i4 * c4 + i5 * c5;
    const long ix = i0 * x0 + i1 * x1 + i2 * x2 + i3 * x3 + i4 * x4 + i5 * x5;
    const long iz = i0 * z0 + i1 * z1 + i2 * z2 + i3 * z3 + i4 * z4 + i5 * z5;
    Y[yOff + i] = C[cOff + ic] != 0.0f ? X[xOff + ix] : Z[zOff + iz];
}

// One work-item per output element: kept dimensions k1..k5 (input strides ks), reduced
// dimensions r1..r5 walked inside (input strides rs). RED: 0 mean, 1 sum, 2 max.
__kernel void reduce(__global const float* X, const long xOff, __global float* Y, const long yOff, const long n,
                     const int k1, const int k2, const int k3, const int k4, const int k5,
                     const long ks0, const long ks1, const long ks2, const long ks3, const long ks4, const long ks5,
                     const int r1, const int r2, const int r3, const int r4, const int r5, const long count,
                     const long rs0, const long rs1, const long rs2, const long rs3, const long rs4, const long rs5) {
    const long i = get_global_id(0);
    if (i >= n) return;
    long r = i;
    long base = 0;
    base += (r % k5) * ks5; r /= k5;
    base += (r % k4) * ks4; r /= k4;
    base += (r % k3) * ks3; r /= k3;
    base += (r % k2) * ks2; r /= k2;
    base += (r % k1) * ks1; r /= k1;
    base += r * ks0;
#if RED == 2
    float acc = -INFINITY;
#else
    float acc = 0.0f;
#endif
    for (long j = 0; j < count; ++j) {
        long q = j, off = base;
        off += (q % r5) * rs5; q /= r5;
        off += (q % r4) * rs4; q /= r4;
        off += (q % r3) * rs3; q /= r3;
        off += (q % r2) * rs2; q /= r2;
        off += (q % r1) * rs1; q /= r1;
        off += q * rs0;
        const float v = X[xOff + off];
#if RED == 2
        acc = fmax(acc, v);
#else
        acc += v;
#endif
    }
#if RED == 0
    acc /= (float)count;
#endif
    Y[yOff + i] = acc;
}

// ids hold integers as floats; ids in [-V, 0) count from the end (ONNX Gather, as the CPU does);
// any other id gives NaN (visible, never a wild read).
__kernel void embedding(__global const float* ids, const long iOff, __global const float* T, const long tOff,
                        __global float* Y, const long yOff, const int n, const int V, const int D) {
    const int d = get_global_id(0), i = get_global_id(1);
    if (d >= D || i >= n) return;
    const float f = ids[iOff + i];
    const long id = (long)f;
    const long row = id < 0 ? id + V : id;
    Y[yOff + (long)i * D + d] = (f == (float)id && row >= 0 && row < V) ? T[tOff + row * D + d] : NAN;
}
