// Device probes for `quarry devices --probe`, in the manner of clpeak: a compute kernel whose
// work-items each run many independent multiply-adds (enough chains to hide the FMA latency,
// in vectors of VW floats so that vector units are used), and a streaming copy for memory
// bandwidth. The host runs the compute kernel at VW 4, 8 and 16 and keeps the best: a GPU's
// scalar lanes are indifferent to it, but a CPU device (PoCL) fills a 512-bit unit only with 16.

#ifndef ITER
#define ITER 256
#endif
#ifndef VW
#define VW 4
#endif
#define CAT(a, b) a##b
#define VEC(n) CAT(float, n)
#define floatV VEC(VW)

__kernel void peak_mad(__global float* out, const float a) {
    const float s = (float)get_global_id(0) * 1e-7f;
    floatV x0 = (floatV)(s), x1 = x0 + 0.1f, x2 = x0 + 0.2f, x3 = x0 + 0.3f;
    floatV x4 = x0 + 0.4f, x5 = x0 + 0.5f, x6 = x0 + 0.6f, x7 = x0 + 0.7f;
    const floatV m = (floatV)(a), c = (floatV)(1e-3f);
    for (int i = 0; i < ITER; ++i) {
        x0 = mad(x0, m, c); x1 = mad(x1, m, c); x2 = mad(x2, m, c); x3 = mad(x3, m, c);
        x4 = mad(x4, m, c); x5 = mad(x5, m, c); x6 = mad(x6, m, c); x7 = mad(x7, m, c);
    }
    const floatV r = (x0 + x1) + (x2 + x3) + (x4 + x5) + (x6 + x7);
    float sum = 0.0f;
    for (int i = 0; i < VW; ++i) sum += ((const float*)&r)[i];
    out[get_global_id(0)] = sum;
}

__kernel void stream_copy(__global const float4* src, __global float4* dst) {
    const size_t i = get_global_id(0);
    dst[i] = src[i];
}
