// Normalisations and softmax. Statistics are accumulated in two passes (mean, then centred
// variance) for accuracy on rows with a large mean.

__kernel void batch_norm(__global const float* X, const long xOff,
                         __global const float* gamma, const long gOff, __global const float* beta, const long bOff,
                         __global const float* mean, const long mOff, __global const float* var, const long vOff,
                         __global float* Y, const long yOff, const long total, const int C, const int inner,
                         const float eps) {
    const long i = get_global_id(0);
    if (i >= total) return;
    const int c = (int)((i / inner) % C);
    const float s = gamma[gOff + c] * rsqrt(var[vOff + c] + eps);
    Y[yOff + i] = (X[xOff + i] - mean[mOff + c]) * s + beta[bOff + c];
}

// One work-item per row of D elements; gamma / beta are optional (HAS_AFFINE flags).
__kernel void layer_norm(__global const float* X, const long xOff,
                         __global const float* gamma, const long gOff, __global const float* beta, const long bOff,
                         __global float* Y, const long yOff, const int rows, const int D, const float eps,
                         const int hasGamma, const int hasBeta) {
    const int r = get_global_id(0);
    if (r >= rows) return;
    const __global float* x = X + xOff + (long)r * D;
    __global float* y = Y + yOff + (long)r * D;
    float mean = 0.0f;
    for (int i = 0; i < D; ++i) mean += x[i];
    mean /= (float)D;
    float var = 0.0f;
    for (int i = 0; i < D; ++i) { const float d = x[i] - mean; var = mad(d, d, var); }
    const float inv = rsqrt(var / (float)D + eps);
    for (int i = 0; i < D; ++i) {
        float v = (x[i] - mean) * inv;
        if (hasGamma) v *= gamma[gOff + i];
        if (hasBeta) v += beta[bOff + i];
        y[i] = v;
    }
}

// One work-item per (image, channel) over P spatial positions.
__kernel void instance_norm(__global const float* X, const long xOff,
                            __global const float* gamma, const long gOff, __global const float* beta, const long bOff,
                            __global float* Y, const long yOff, const int NC, const int C, const int P, const float eps,
                            const int hasGamma, const int hasBeta) {
    const int i = get_global_id(0);
    if (i >= NC) return;
    const int c = i % C;
    const __global float* x = X + xOff + (long)i * P;
    __global float* y = Y + yOff + (long)i * P;
    float mean = 0.0f;
    for (int p = 0; p < P; ++p) mean += x[p];
    mean /= (float)P;
    float var = 0.0f;
    for (int p = 0; p < P; ++p) { const float d = x[p] - mean; var = mad(d, d, var); }
    const float s = rsqrt(var / (float)P + eps) * (hasGamma ? gamma[gOff + c] : 1.0f);
    const float b = hasBeta ? beta[bOff + c] : 0.0f;
    for (int p = 0; p < P; ++p) y[p] = (x[p] - mean) * s + b;
}

// Softmax (or log-softmax with LOG) over the middle axis of [outer, L, inner]; one work-item per
// (outer, inner) pair.
__kernel void softmax(__global const float* X, const long xOff, __global float* Y, const long yOff,
                      const int outer, const int L, const int inner) {
    const int in = get_global_id(0), o = get_global_id(1);
    if (in >= inner || o >= outer) return;
    const long base = (long)o * L * inner + in;
    const __global float* x = X + xOff + base;
    __global float* y = Y + yOff + base;
    float m = -INFINITY;
    for (int l = 0; l < L; ++l) m = fmax(m, x[(long)l * inner]);
    float sum = 0.0f;
    for (int l = 0; l < L; ++l) sum += exp(x[(long)l * inner] - m);
#if LOG
    const float lse = m + log(sum);
    for (int l = 0; l < L; ++l) y[(long)l * inner] = x[(long)l * inner] - lse;
#else
    const float inv = 1.0f / sum;
    for (int l = 0; l < L; ++l) y[(long)l * inner] = exp(x[(long)l * inner] - m) * inv;
#endif
}
