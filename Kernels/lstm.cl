// Recurrent steps. The input projections x · W^T of every step are one GEMM before the loop
// (gemm.cl, into G [D][B * S][gates * H]); each step is then one launch that, for every
// (hidden unit, batch row, direction), takes the recurrent dot products for all gates, applies
// the gate nonlinearities and the state update, and writes y. h is double-buffered (all of
// h_{t-1} is read while h_t is written); c is updated in place (one owner per element).
// Direction d runs backwards when d == 1 or when the only direction is reverse (REVERSE_ONLY).

inline int step_time(int d, int step, int S, int reverseOnly) {
    return (d == 1 || reverseOnly) ? S - 1 - step : step;
}

// Gate order i, f, g, o; bias [D][8H] = input biases then recurrent biases.
__kernel void lstm_step(__global const float* G, const long gOff, __global const float* R, const long rOff,
                        __global const float* bias, const long bOff, const int hasBias,
                        __global const float* Hp, const long hpOff, __global float* Hn, const long hnOff,
                        __global float* Cs, const long cOff, __global float* Y, const long yOff,
                        const int step, const int S, const int B, const int H, const int D, const int reverseOnly) {
    const int j = get_global_id(0), b = get_global_id(1), d = get_global_id(2);
    if (j >= H || b >= B) return;
    const int t = step_time(d, step, S, reverseOnly);
    const __global float* g = G + gOff + ((long)d * B * S + (long)b * S + t) * 4 * H;
    const __global float* h = Hp + hpOff + ((long)d * B + b) * H;
    const __global float* r = R + rOff + (long)d * 4 * H * H;
    float a[4];
    for (int q = 0; q < 4; ++q) {
        float acc = g[q * H + j];
        if (hasBias) acc += bias[bOff + (long)d * 8 * H + q * H + j] + bias[bOff + (long)d * 8 * H + 4 * H + q * H + j];
        const __global float* rr = r + (long)(q * H + j) * H;
        for (int k = 0; k < H; ++k) acc = mad(rr[k], h[k], acc);
        a[q] = acc;
    }
    const long s = ((long)d * B + b) * H + j;
    const float c = sigmoidf(a[1]) * Cs[cOff + s] + sigmoidf(a[0]) * tanh(a[2]);
    const float hn = sigmoidf(a[3]) * tanh(c);
    Cs[cOff + s] = c;
    Hn[hnOff + s] = hn;
    Y[yOff + ((long)b * S + t) * D * H + (long)d * H + j] = hn;
}

// Gate order r, z, n; the reset gate scales the recurrent term after the matmul (PyTorch's GRU,
// ONNX linear_before_reset = 1). bias [D][6H] = input biases then recurrent biases.
__kernel void gru_step(__global const float* G, const long gOff, __global const float* R, const long rOff,
                       __global const float* bias, const long bOff, const int hasBias,
                       __global const float* Hp, const long hpOff, __global float* Hn, const long hnOff,
                       __global float* Y, const long yOff,
                       const int step, const int S, const int B, const int H, const int D, const int reverseOnly) {
    const int j = get_global_id(0), b = get_global_id(1), d = get_global_id(2);
    if (j >= H || b >= B) return;
    const int t = step_time(d, step, S, reverseOnly);
    const __global float* g = G + gOff + ((long)d * B * S + (long)b * S + t) * 3 * H;
    const __global float* h = Hp + hpOff + ((long)d * B + b) * H;
    const __global float* r = R + rOff + (long)d * 3 * H * H;
    float xi[3], hr[3];
    for (int q = 0; q < 3; ++q) {
        xi[q] = g[q * H + j] + (hasBias ? bias[bOff + (long)d * 6 * H + q * H + j] : 0.0f);
        float acc = hasBias ? bias[bOff + (long)d * 6 * H + 3 * H + q * H + j] : 0.0f;
        const __global float* rr = r + (long)(q * H + j) * H;
        for (int k = 0; k < H; ++k) acc = mad(rr[k], h[k], acc);
        hr[q] = acc;
    }
    const float rg = sigmoidf(xi[0] + hr[0]);
    const float z = sigmoidf(xi[1] + hr[1]);
    const float n = tanh(xi[2] + rg * hr[2]);
    const long s = ((long)d * B + b) * H + j;
    const float hn = (1.0f - z) * n + z * h[j];
    Hn[hnOff + s] = hn;
    Y[yOff + ((long)b * S + t) * D * H + (long)d * H + j] = hn;
}
