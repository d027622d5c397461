// Shared by every program (prepended to each kernel file).
//
// Buffers are passed as (pointer, offset in floats) pairs because intermediates live at offsets in
// one arena (the memory plan) and OpenCL 1.2 sub-buffers need origins aligned to the device's
// base-address alignment, which the plan does not promise.
//
// ACT selects the activation an epilogue applies, with ACT_A / ACT_B its parameters:
//  0 none, 1 relu, 2 clip(A, B), 3 leaky relu(A), 4 sigmoid, 5 hard sigmoid(A, B), 6 tanh,
//  7 silu, 8 mish, 9 gelu (erf), 10 gelu (tanh), 11 hard swish, 12 sqrt, 13 exp, 14 log, 15 neg,
//  16 abs, 17 erf, 18 reciprocal, 19 sin, 20 cos, 21 floor, 22 ceil, 23 round (half to even),
//  24 trunc, 25 softplus, 26 elu(A), 27 selu(alpha A, gamma B), 28 not, 29 sign.

#ifndef ACT
#define ACT 0
#endif
#ifndef ACT_A
#define ACT_A 0.0f
#endif
#ifndef ACT_B
#define ACT_B 0.0f
#endif

// `code` is a build constant in epilogues (activate), so the switch folds away; the standalone
// unary kernel passes it at run time so that one program serves every activation.
inline float activate_by(float x, int code, float A, float B) {
    switch (code) {
    case 0: return x;
    case 1: return fmax(x, 0.0f);
    case 2: return fmin(fmax(x, A), B);
    case 3: return x >= 0.0f ? x : A * x;
    case 4: return 1.0f / (1.0f + exp(-x));
    case 5: return fmin(fmax(A * x + B, 0.0f), 1.0f);
    case 6: return tanh(x);
    case 7: return x / (1.0f + exp(-x));
    case 8: return x * tanh(x > 20.0f ? x : log1p(exp(x)));
    case 9: return 0.5f * x * (1.0f + erf(x * 0.70710678118654752f));
    case 10: return 0.5f * x * (1.0f + tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case 11: return x * fmin(fmax(x + 3.0f, 0.0f), 6.0f) / 6.0f;
    case 12: return sqrt(x);
    case 13: return exp(x);
    case 14: return log(x);
    case 15: return -x;
    case 16: return fabs(x);
    case 17: return erf(x);
    case 18: return 1.0f / x;
    case 19: return sin(x);
    case 20: return cos(x);
    case 21: return floor(x);
    case 22: return ceil(x);
    // rint rounds in the default mode, to nearest with halves to even (round() takes halves away from zero).
    case 23: return rint(x);
    case 24: return trunc(x);
    case 25: return fmax(x, 0.0f) + log1p(exp(-fabs(x)));
    // expm1, not exp - 1: for small negative x the difference cancels to a few bits.
    case 26: return x > 0.0f ? x : A * expm1(x);
    case 27: return B * (x > 0.0f ? x : A * expm1(x));
    case 28: return x == 0.0f ? 1.0f : 0.0f;
    case 29: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    default: return NAN;  // an unknown code shows in the result
    }
}

inline float activate(float x) { return activate_by(x, ACT, ACT_A, ACT_B); }

inline float sigmoidf(float x) { return 1.0f / (1.0f + exp(-x)); }
