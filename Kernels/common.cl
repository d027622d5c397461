// Shared by every program (prepended to each kernel file).
//
// Buffers are passed as (pointer, offset in floats) pairs because intermediates live at offsets in
// one arena (the memory plan) and OpenCL 1.2 sub-buffers need origins aligned to the device's
// base-address alignment, which the plan does not promise.
//
// ACT selects the activation an epilogue applies, with ACT_A / ACT_B its parameters:
//  0 none, 1 relu, 2 clip(A, B), 3 leaky relu(A), 4 sigmoid, 5 hard sigmoid(A, B), 6 tanh,
//  7 silu, 8 mish, 9 gelu (erf), 10 gelu (tanh), 11 hard swish, 12 sqrt, 13 exp, 14 log, 15 neg,
//  16 abs, 17 erf, 18 reciprocal.

#ifndef ACT
#define ACT 0
#endif
#ifndef ACT_A
#define ACT_A 0.0f
#endif
#ifndef ACT_B
#define ACT_B 0.0f
#endif

inline float activate(float x) {
#if ACT == 0
    return x;
#elif ACT == 1
    return fmax(x, 0.0f);
#elif ACT == 2
    return fmin(fmax(x, ACT_A), ACT_B);
#elif ACT == 3
    return x >= 0.0f ? x : ACT_A * x;
#elif ACT == 4
    return 1.0f / (1.0f + exp(-x));
#elif ACT == 5
    return fmin(fmax(ACT_A * x + ACT_B, 0.0f), 1.0f);
#elif ACT == 6
    return tanh(x);
#elif ACT == 7
    return x / (1.0f + exp(-x));
#elif ACT == 8
    float sp = x > 20.0f ? x : log1p(exp(x));
    return x * tanh(sp);
#elif ACT == 9
    return 0.5f * x * (1.0f + erf(x * 0.70710678118654752f));
#elif ACT == 10
    return 0.5f * x * (1.0f + tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
#elif ACT == 11
    return x * fmin(fmax(x + 3.0f, 0.0f), 6.0f) / 6.0f;
#elif ACT == 12
    return sqrt(x);
#elif ACT == 13
    return exp(x);
#elif ACT == 14
    return log(x);
#elif ACT == 15
    return -x;
#elif ACT == 16
    return fabs(x);
#elif ACT == 17
    return erf(x);
#elif ACT == 18
    return 1.0f / x;
#else
#error unknown ACT
#endif
}

inline float sigmoidf(float x) { return 1.0f / (1.0f + exp(-x)); }
