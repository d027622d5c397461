// The per-level instances of kernels_variant.inc and the run-time choice between them.
#include "quarry_kernels.h"
#include <stdlib.h>
#include <string.h>

// The 16-float helpers of the depthwise kernel are always inlined, so the baseline's warning that
// returning a 512-bit vector without AVX-512 changes the calling convention does not apply.
#pragma clang diagnostic ignored "-Wpsabi"

#define QK_CAT2(a, b) a##_##b
#define QK_CAT(a, b) QK_CAT2(a, b)

// quarry_im2col_line's walk over the output pixels j0 ..< j0 + cols (across images, row by
// output row), one window row per output-row segment; `row_fn` copies it: row[first + t * stride]
// for lo <= t < hi, zero for the other t < count (lo and hi from window_bounds, the indices that
// fall inside the row). Each level passes its own.
typedef void (*window_row_fn)(const float *row, long first, long stride, long lo, long hi, long count, float *dst);

/// The t range [lo, hi) of a window row whose indices first + t * stride fall inside 0 ..< width.
static inline __attribute__((always_inline)) void window_bounds(long width, long first, long stride, long count,
                                                                long *lo, long *hi)
{
    *lo = first >= 0 ? 0 : (-first + stride - 1) / stride;
    if (*lo > count) *lo = count;
    *hi = first >= width ? 0 : (width - first + stride - 1) / stride;
    if (*hi > count) *hi = count;
    if (*hi < *lo) *hi = *lo;
}

static inline __attribute__((always_inline)) void im2col_walk(window_row_fn row_fn, const float *image,
                                                              const quarry_im2col_geometry *g, long c, long row_offset,
                                                              long col_offset, long j0, long cols, float *line)
{
    const long pixels = g->out_height * g->out_width, plane_size = g->height * g->width;
    long n = j0 / pixels, oy = (j0 % pixels) / g->out_width, ox = j0 % g->out_width;
    const float *plane = image + n * g->image_stride + c * plane_size;
    // Every whole output row has the same window bounds: found once, not with two divisions per
    // segment (a stride-2 3x3 layer at 28x28 has 28-float segments, where they cost as much as
    // the copy).
    long row_lo, row_hi;
    window_bounds(g->width, col_offset, g->stride_w, g->out_width, &row_lo, &row_hi);
    for (long q = 0; q < cols;) {
        if (oy == g->out_height) { n++; oy = 0; plane = image + n * g->image_stride + c * plane_size; }
        const long len = g->out_width - ox < cols - q ? g->out_width - ox : cols - q;
        const long iy = oy * g->stride_h + row_offset;
        if (iy < 0 || iy >= g->height) {
            row_fn(plane, 0, 1, 0, 0, len, line + q);
        } else {
            const long first = ox * g->stride_w + col_offset;
            long lo = row_lo, hi = row_hi;
            if (ox != 0 || len != g->out_width) window_bounds(g->width, first, g->stride_w, len, &lo, &hi);
            row_fn(plane + iy * g->width, first, g->stride_w, lo, hi, len, line + q);
        }
        q += len; oy++; ox = 0;
    }
}

static void window_row_generic(const float *row, long first, long stride, long lo, long hi, long count, float *dst)
{
    for (long t = 0; t < lo; t++) dst[t] = 0.0f;
    for (long t = lo; t < hi; t++) dst[t] = row[first + t * stride];
    for (long t = hi; t < count; t++) dst[t] = 0.0f;
}

#if defined(__x86_64__) && defined(__clang__)
// The intrinsics of every x86-64 section below (the variants' gathers, im2col, bf16, AMX).
#include <immintrin.h>

// x86-64-v4's vector subset. Zen 4 splits 512-bit operations into two 256-bit halves, but the
// 32 registers still hold the 12 x 32 tile that 16 ymm registers cannot.
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#define QK(name) QK_CAT(name, avx512)
#define VW 16
#define PASS_ROWS 12
#define PASS_VECS 2
#define MA_ROWS 8
#define MA_VECS 2
#define FC_VECS 3
#include "kernels_variant.inc"
#pragma clang attribute pop

// x86-64-v3: AVX2 and FMA, 16 ymm registers.
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#define QK(name) QK_CAT(name, avx2)
#define VW 8
#define PASS_ROWS 6
#define PASS_VECS 2
#define MA_ROWS 6
#define MA_VECS 2
#define FC_VECS 1
#include "kernels_variant.inc"
#pragma clang attribute pop

// The im2col row copy on AVX-512 (F/BW/DQ/VL, the level's own features).
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
/// The window row of quarry_im2col_line with 16-lane masked loads and stores: stride 1 copies,
/// stride 2 takes the even lanes of two loads; segments of a few dozen floats end in one masked
/// step instead of a scalar tail.
static inline void window_row_avx512(const float *row, long first, long stride, long lo, long hi, long count, float *dst)
{
    for (long t = 0; t < lo; t += 16) {
        const long n = lo - t < 16 ? lo - t : 16;
        _mm512_mask_storeu_ps(dst + t, (__mmask16)((1u << n) - 1), _mm512_setzero_ps());
    }
    if (stride == 1) {
        const float *s = row + first;
        for (long t = lo; t < hi; t += 16) {
            const long n = hi - t < 16 ? hi - t : 16;
            const __mmask16 m = (__mmask16)((1u << n) - 1);
            _mm512_mask_storeu_ps(dst + t, m, _mm512_maskz_loadu_ps(m, s + t));
        }
    } else if (stride == 2) {
        const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        const float *s = row + first;
        for (long t = lo; t < hi; t += 16) {
            const long n = hi - t < 16 ? hi - t : 16;
            // Elements s[2t] ... s[2(t + n - 1)]: 2n - 1 floats, none past the row.
            const long need = 2 * n - 1;
            const __mmask16 m0 = need >= 16 ? 0xffff : (__mmask16)((1u << need) - 1);
            const __mmask16 m1 = need <= 16 ? 0 : (__mmask16)((1u << (need - 16)) - 1);
            const __m512 a = _mm512_maskz_loadu_ps(m0, s + 2 * t), b = _mm512_maskz_loadu_ps(m1, s + 2 * t + 16);
            _mm512_mask_storeu_ps(dst + t, (__mmask16)((1u << n) - 1), _mm512_permutex2var_ps(a, even, b));
        }
    } else {
        for (long t = lo; t < hi; t++) dst[t] = row[first + t * stride];
    }
    for (long t = hi; t < count; t += 16) {
        const long n = count - t < 16 ? count - t : 16;
        _mm512_mask_storeu_ps(dst + t, (__mmask16)((1u << n) - 1), _mm512_setzero_ps());
    }
}

static void im2col_line_avx512(const float *image, const quarry_im2col_geometry *g, long c, long row_offset,
                               long col_offset, long j0, long cols, float *line)
{
    im2col_walk(window_row_avx512, image, g, c, row_offset, col_offset, j0, cols, line);
}

#pragma clang attribute pop

// bf16 on AVX512_BF16: vdpbf16ps multiplies pairs of bf16 and adds both products to fp32 lanes,
// twice the multiply-adds of an fp32 FMA per instruction (measured on Zen 4: 2.2x the FMA loop).
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma,f16c,bmi,bmi2"))), apply_to = function)

// Interleaves two rows of 16 bf16 (the low and high halves of a vcvtne2ps2bf16 result) into 16
// (k, k+1) pairs: lane j of the result is (row0[j], row1[j]).
static inline __m512i interleave_pairs(__m512 row0, __m512 row1)
{
    const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(row1, row0);  // row0 in the low 16 halves
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(order, both);
}

static void pack_a_bf16(const float *a, long kc, unsigned short *dst)
{
    for (long p = 0; 2 * p < kc; p++) {
        const __m512 r0 = _mm512_maskz_loadu_ps(0x0fff, a + 2 * p * 12);
        const __m512 r1 = 2 * p + 1 < kc ? _mm512_maskz_loadu_ps(0x0fff, a + (2 * p + 1) * 12) : _mm512_setzero_ps();
        _mm512_mask_storeu_epi16(dst + p * 24, 0x00ffffff, interleave_pairs(r0, r1));
    }
}

static void pack_b_bf16(const float *b, long bs, long kc, long cols, unsigned short *dst)
{
    const __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    for (long p = 0; 2 * p < kc; p++) {
        const float *r0 = b + 2 * p * bs, *r1 = r0 + bs;
        const int second = 2 * p + 1 < kc;
        for (int h = 0; h < 2; h++) {
            const __mmask16 m = h ? m1 : m0;
            const __m512 x0 = _mm512_maskz_loadu_ps(m, r0 + 16 * h);
            const __m512 x1 = second ? _mm512_maskz_loadu_ps(m, r1 + 16 * h) : _mm512_setzero_ps();
            _mm512_storeu_si512(dst + p * 64 + 32 * h, interleave_pairs(x0, x1));
        }
    }
}

/// ROWS x (VECS x 16) of C over kc/2 rounded up pairs; the epilogue as the fp32 kernels'.
static inline __attribute__((always_inline)) void tile_bf16(const int ROWS, const int VECS, long kc,
                                                            const unsigned short *a, const unsigned short *b, float *c,
                                                            long ldc, const quarry_tile_epilogue *ep)
{
    const quarry_tile_epilogue e = *ep;
    __m512 acc[12][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++)
#pragma clang loop unroll(full)
        for (int v = 0; v < VECS; v++) acc[r][v] = _mm512_setzero_ps();
    const long pairs = (kc + 1) / 2;
    for (long p = 0; p < pairs; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * 64);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * 64 + 32);
        const unsigned short *pa = a + p * 24;
#pragma clang loop unroll(full)
        for (int r = 0; r < ROWS; r++) {
            int pair;
            __builtin_memcpy(&pair, pa + 2 * r, 4);
            const __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
            if (VECS > 1) acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
        }
    }
    const vf_avx512 lo = (vf_avx512)e.lo, hi = (vf_avx512)e.hi;
#pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++)
#pragma clang loop unroll(full)
        for (int v = 0; v < VECS; v++)
            finish_avx512((vf_avx512)acc[r][v], c + (long)r * ldc + 16 * v, &e, r, 16 * v, lo, hi);
}

/// The bf16 peak loop: vdpbf16ps on 24 independent chains (more than latency x pipes on any
/// core so far), each adding 2 x (1 x 2^-10) per lane and iteration: 1.0 and 2^-10 are exact in
/// bf16 and the sums in fp32 up to 2^23 x 2^-9 (iterations past that lose the exactness, not the
/// timing). Returns the sum of the first lanes, so the work cannot be dropped.
static float bf16_peak_loop(long iterations)
{
    const __m512bh one = (__m512bh)_mm512_set1_epi16(0x3f80), step = (__m512bh)_mm512_set1_epi16(0x3a80);
    __m512 acc[24];
#pragma clang loop unroll(full)
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iterations; it++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < 24; i++) acc[i] = _mm512_dpbf16_ps(acc[i], one, step);
    }
    float total = 0;
    for (int i = 0; i < 24; i++) total += _mm512_cvtss_f32(acc[i]);
    return total;
}

static void gemm_tile_bf16(int rows, int cols, long kc, const unsigned short *a, const unsigned short *b, float *c,
                           long ldc, const quarry_tile_epilogue *e)
{
    switch (rows * 2 + (cols == 16)) {
#define BF_CASE(n) case 2 * n: tile_bf16(n, 2, kc, a, b, c, ldc, e); break; \
                   case 2 * n + 1: tile_bf16(n, 1, kc, a, b, c, ldc, e); break;
    BF_CASE(1) BF_CASE(2) BF_CASE(3) BF_CASE(4) BF_CASE(5) BF_CASE(6)
    BF_CASE(7) BF_CASE(8) BF_CASE(9) BF_CASE(10) BF_CASE(11) BF_CASE(12)
#undef BF_CASE
    default: break;
    }
}
#pragma clang attribute pop

// bf16 on AMX (Intel from Sapphire Rapids): a tile multiply-add TDPBF16PS forms a 16 x 16 fp32
// tile from a 16 x 32 bf16 tile of A and a 16-pair x 16 tile of B in one instruction, 16 times
// the multiply-adds of vdpbf16ps per cycle on the same core. The kernel keeps a 24 x 32 block of C
// in four accumulator tiles (two 12-row A tiles, two 16-column B tiles per 32 k), stores it once
// and finishes it with the fp32 epilogue. A's 12-row panels are laid out for the tile loads:
// per 32 k, 12 rows of 32 contiguous bf16 (768 bytes); B keeps the vdpbf16ps pair layout (a
// 16-column half of a 32-column panel is a tile with rows 128 bytes apart), its pairs padded
// with zeros to a multiple of 16.
#pragma clang attribute push(__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma,f16c,bmi,bmi2"))), apply_to = function)

typedef struct {
    unsigned char palette, start_row, reserved[14];
    unsigned short colsb[16];
    unsigned char rows[16];
} amx_tile_config;

static void amx_begin(void)
{
    amx_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    // tmm0-3: C (12 rows x 16 fp32), tmm4-5: A (12 rows x 32 bf16), tmm6-7: B (16 pairs x 16).
    for (int t = 0; t < 4; t++) { cfg.rows[t] = 12; cfg.colsb[t] = 64; }
    for (int t = 4; t < 6; t++) { cfg.rows[t] = 12; cfg.colsb[t] = 64; }
    for (int t = 6; t < 8; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
}

static void amx_end(void) { _tile_release(); }

/// A 12-row fp32 panel (a[12k + r]) as AMX rows: per 32 k, row r's 32 bf16 at dst + 384 c + 32 r.
static void pack_a_amx(const float *a, long kc, unsigned short *dst)
{
    float t[16 * 16] __attribute__((aligned(64)));
    for (long k0 = 0; k0 < kc; k0 += 16) {
        const long n = kc - k0 < 16 ? kc - k0 : 16;
        // Rows of t: k (16, zero past kc), each 12 floats of the panel; transposed to 12 rows of k.
        float in[16 * 16] __attribute__((aligned(64)));
        for (long k = 0; k < 16; k++)
            _mm512_store_ps(in + 16 * k, k < n ? _mm512_maskz_loadu_ps(0x0fff, a + 12 * (k0 + k)) : _mm512_setzero_ps());
        transpose16_avx512(in, 16, t, 16);
        unsigned short *d = dst + (k0 / 32) * 384 + (k0 % 32);
        for (int r = 0; r < 12; r++)
            _mm256_storeu_si256((__m256i *)(d + 32 * r), (__m256i)_mm512_cvtneps_pbh(_mm512_load_ps(t + 16 * r)));
    }
    // The rest of the last 32-k chunk: zeros.
    if (kc % 32 && kc % 32 <= 16) {
        unsigned short *d = dst + (kc / 32) * 384 + 16;
        for (int r = 0; r < 12; r++) _mm256_storeu_si256((__m256i *)(d + 32 * r), _mm256_setzero_si256());
    }
}

/// C[rows x cols] (+)= A * B for rows <= 24, cols <= 32 over `chunks` x 32 k: A's two panels at
/// a0 and a1 (AMX rows), B's 32-column panel at b (pairs, 128 bytes a pair), then the epilogue
/// on the elements inside rows x cols.
static void amx_tile(int rows, int cols, long chunks, const unsigned short *a0, const unsigned short *a1,
                     const unsigned short *b, float *c, long ldc, const quarry_tile_epilogue *ep)
{
    const quarry_tile_epilogue e = *ep;
    float out[24 * 32] __attribute__((aligned(64)));
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    for (long ch = 0; ch < chunks; ch++) {
        _tile_loadd(4, a0 + 384 * ch, 64);
        _tile_loadd(6, b + 1024 * ch, 128);
        _tile_loadd(7, b + 1024 * ch + 32, 128);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + 384 * ch, 64);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out, 128);
    _tile_stored(1, out + 16, 128);
    _tile_stored(2, out + 12 * 32, 128);
    _tile_stored(3, out + 12 * 32 + 16, 128);
    const __m512 lo = _mm512_set1_ps(e.lo), hi = _mm512_set1_ps(e.hi);
    for (int r = 0; r < rows; r++) {
        for (int h = 0; h < 2; h++) {
            const int w = cols - 16 * h;
            if (w <= 0) break;
            const __mmask16 m = w >= 16 ? 0xffff : (__mmask16)((1u << w) - 1);
            float *p = c + (long)r * ldc + 16 * h;
            __m512 t = _mm512_load_ps(out + 32 * r + 16 * h);
            if (e.load_c) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(m, p));
            if (e.row_bias) t = _mm512_add_ps(t, _mm512_set1_ps(e.row_bias[r]));
            if (e.col_bias) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(m, e.col_bias + 16 * h));
            if (e.addend) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(m, e.addend + r * e.addend_ld + 16 * h));
            if (e.clamp) {
                // A NaN stays NaN (both comparisons false), as in the fp32 kernels.
                t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, lo, _CMP_LT_OQ), t, lo);
                t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, hi, _CMP_GT_OQ), t, hi);
            }
            _mm512_mask_storeu_ps(p, m, t);
        }
    }
}
#pragma clang attribute pop

#endif

// The baseline: whatever the compiler targets by default (SSE2 on x86-64), 16 registers.
#define QK(name) QK_CAT(name, baseline)
#define VW 4
#define PASS_ROWS 4
#define PASS_VECS 2
#define MA_ROWS 4
#define MA_VECS 2
#define FC_VECS 1
#include "kernels_variant.inc"

typedef void (*gemm_tile_fn)(int, int, long, const float *, const float *, long, float *, long,
                             const quarry_tile_epilogue *);
typedef float (*peak_loop_fn)(long, float);
typedef void (*multiply_accumulate_fn)(const float *, long, long, long, const float *, long, long, long, const float *,
                                       long, float *, long);
typedef void (*few_channel_fn)(const float *, long, const long *, long, const float *, const float *, long, long, long,
                               long, long, float, float, float *);
typedef void (*transpose16_fn)(const float *, long, float *, long);
typedef void (*interleaved_fn)(const float *, const int *, const long *, const float *, const float *, float, float, long,
                               float *);
typedef void (*lstm_cell_fn)(const float *, float *, float *);
typedef void (*activate_fn)(int, float *, long);
typedef void (*pack_b_fn)(const float *, long, long, long, float *);
typedef void (*planes_to_padded_fn)(const float *, long, const int *, float *, float *);
typedef void (*rows_to_planes_fn)(const float *, long, long, float *, long, const float *, int, float, float, float *);
typedef void (*winograd_input_fn)(const float *, const quarry_winograd_geometry *, long, long, long, long, float *);
typedef void (*winograd_output_fn)(const float *, float *, const quarry_winograd_geometry *, long, long, long, long, long,
                                   const float *, int, float, float);
typedef void (*resample_v_fn)(const unsigned char *, long, const int *, long, int, unsigned char *);
typedef void (*resample_h_fn)(const unsigned char *, long, long, long, unsigned char *, long, long, const int *, long,
                              const int *, const int *, long, int);
typedef void (*depthwise3x3_fn)(const quarry_dw3x3_plane *, long, long, int, const float *, const float *, float, float,
                                float, float *);

struct variant {
    gemm_tile_fn gemm_tile;
    multiply_accumulate_fn multiply_accumulate;
    lstm_cell_fn lstm_cell16;
    depthwise3x3_fn depthwise3x3_rows;
    few_channel_fn few_channel_rows;
    transpose16_fn transpose16;
    interleaved_fn depthwise_interleaved_pixels;
    peak_loop_fn peak_loop;
    long peak_flops;
    activate_fn activate;
    resample_v_fn resample_vertical_u8;
    resample_h_fn resample_horizontal_u8;
    winograd_input_fn winograd_input;
    winograd_output_fn winograd_output;
    rows_to_planes_fn rows_to_planes;
    planes_to_padded_fn planes_to_padded;
    pack_b_fn pack_b;
};

static const struct variant variants[] = {
    [QUARRY_ISA_BASELINE] = {gemm_tile_baseline, multiply_accumulate_baseline, lstm_cell16_baseline, depthwise3x3_rows_baseline, few_channel_rows_baseline, transpose16_baseline, depthwise_interleaved_pixels_baseline, fma_peak_loop_baseline, 12 * 4 * 2, activate_baseline, resample_vertical_u8_baseline, resample_horizontal_rows_u8_baseline, winograd_input_baseline, winograd_output_baseline, rows_to_planes_baseline, planes_to_padded_baseline, pack_b_baseline},
#if defined(__x86_64__) && defined(__clang__)
    [QUARRY_ISA_AVX2] = {gemm_tile_avx2, multiply_accumulate_avx2, lstm_cell16_avx2, depthwise3x3_rows_avx2, few_channel_rows_avx2, transpose16_avx2, depthwise_interleaved_pixels_avx2, fma_peak_loop_avx2, 12 * 8 * 2, activate_avx2, resample_vertical_u8_avx2, resample_horizontal_rows_u8_avx2, winograd_input_avx2, winograd_output_avx2, rows_to_planes_avx2, planes_to_padded_avx2, pack_b_avx2},
    [QUARRY_ISA_AVX512] = {gemm_tile_avx512, multiply_accumulate_avx512, lstm_cell16_avx512, depthwise3x3_rows_avx512, few_channel_rows_avx512, transpose16_avx512, depthwise_interleaved_pixels_avx512, fma_peak_loop_avx512, 12 * 16 * 2, activate_avx512, resample_vertical_u8_avx512, resample_horizontal_rows_u8_avx512, winograd_input_avx512, winograd_output_avx512, rows_to_planes_avx512, planes_to_padded_avx512, pack_b_avx512},
#endif
};

static int detect(void)
{
#if defined(__x86_64__) && defined(__clang__)
    // __builtin_cpu_supports checks the operating system's register state (XGETBV) too.
    __builtin_cpu_init();
    // Every feature a level's target attribute names, so its code never meets a missing one.
    const int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
                   __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
    if (v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return QUARRY_ISA_AVX512;
    if (v3)
        return QUARRY_ISA_AVX2;
#endif
    return QUARRY_ISA_BASELINE;
}

// -1 until first asked. Set once from the host and QUARRY_CPU_ISA (a race between two first
// callers writes the same value).
static int host_isa = -1;
static int active_isa = -1;

int quarry_host_isa(void)
{
    if (host_isa < 0) host_isa = detect();
    return host_isa;
}

static int isa_from_name(const char *s)
{
    if (!s || !*s) return -1;
    if (!strcmp(s, "avx512")) return QUARRY_ISA_AVX512;
    if (!strcmp(s, "avx2")) return QUARRY_ISA_AVX2;
    if (!strcmp(s, "baseline")) return QUARRY_ISA_BASELINE;
    return -2;
}

int quarry_active_isa(void)
{
    if (active_isa < 0) {
        int host = quarry_host_isa();
        int wanted = isa_from_name(getenv("QUARRY_CPU_ISA"));
        active_isa = wanted >= 0 && wanted < host ? wanted : host;
    }
    return active_isa;
}

int quarry_select_isa(int isa)
{
    int host = quarry_host_isa();
    active_isa = isa < 0 ? 0 : isa > host ? host : isa;
    return active_isa;
}

const char *quarry_isa_name(int isa)
{
    switch (isa) {
    case QUARRY_ISA_AVX512: return "avx512";
    case QUARRY_ISA_AVX2: return "avx2";
    default: return "baseline";
    }
}

int quarry_bf16_available(void)
{
#if defined(__x86_64__) && defined(__clang__)
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512bf16") != 0;
    }
    return has && quarry_active_isa() == QUARRY_ISA_AVX512;
#else
    return 0;
#endif
}

void quarry_pack_a_bf16(const float *a, long kc, unsigned short *dst)
{
#if defined(__x86_64__) && defined(__clang__)
    if (quarry_bf16_available()) pack_a_bf16(a, kc, dst);
#endif
}

void quarry_pack_b_bf16(const float *b, long b_stride, long kc, long cols, unsigned short *dst)
{
#if defined(__x86_64__) && defined(__clang__)
    if (quarry_bf16_available()) pack_b_bf16(b, b_stride, kc, cols, dst);
#endif
}

void quarry_gemm_tile_bf16(int rows, int cols, long kc, const unsigned short *a, const unsigned short *b, float *c,
                           long ldc, const quarry_tile_epilogue *e)
{
#if defined(__x86_64__) && defined(__clang__)
    if (quarry_bf16_available()) gemm_tile_bf16(rows, cols, kc, a, b, c, ldc, e);
#endif
}

#if defined(__x86_64__) && defined(__clang__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static int amx_enabled = 1;

int quarry_amx_enable(int on)
{
    const int was = amx_enabled;
    amx_enabled = on != 0;
    return was;
}

int quarry_amx_available(void)
{
#if defined(__x86_64__) && defined(__clang__) && defined(__linux__)
    static int has = -1;
    if (has < 0) {
        // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE; then Linux must grant the tile data
        // state to this process (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), else a tile
        // instruction faults. QUARRY_CPU_AMX=0 keeps the vdpbf16ps kernel.
        unsigned a = 7, b = 0, c = 0, d = 0;
        __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
        const char *off = getenv("QUARRY_CPU_AMX");
        has = (d >> 22 & 1) && (d >> 24 & 1) && !(off && strcmp(off, "0") == 0)
              && syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    }
    return has && amx_enabled && quarry_bf16_available();
#else
    return 0;
#endif
}

void quarry_pack_a_amx(const float *a, long kc, unsigned short *dst)
{
#if defined(__x86_64__) && defined(__clang__)
    if (quarry_amx_available()) pack_a_amx(a, kc, dst);
#endif
}

void quarry_amx_begin(void)
{
#if defined(__x86_64__) && defined(__clang__)
    if (quarry_amx_available()) amx_begin();
#endif
}

void quarry_amx_end(void)
{
#if defined(__x86_64__) && defined(__clang__)
    if (quarry_amx_available()) amx_end();
#endif
}

void quarry_amx_tile(int rows, int cols, long chunks, const unsigned short *a0, const unsigned short *a1,
                     const unsigned short *b, float *c, long ldc, const quarry_tile_epilogue *e)
{
#if defined(__x86_64__) && defined(__clang__)
    if (quarry_amx_available()) amx_tile(rows, cols, chunks, a0, a1, b, c, ldc, e);
#endif
}

static void im2col_line_generic(const float *image, const quarry_im2col_geometry *g, long c, long row_offset,
                                long col_offset, long j0, long cols, float *line)
{
    im2col_walk(window_row_generic, image, g, c, row_offset, col_offset, j0, cols, line);
}

void quarry_im2col_line(const float *image, const quarry_im2col_geometry *g, long c, long row_offset, long col_offset,
                        long j0, long cols, float *line)
{
#if defined(__x86_64__) && defined(__clang__)
    if (quarry_active_isa() == QUARRY_ISA_AVX512) { im2col_line_avx512(image, g, c, row_offset, col_offset, j0, cols, line); return; }
#endif
    im2col_line_generic(image, g, c, row_offset, col_offset, j0, cols, line);
}

void quarry_resample_vertical_u8(const unsigned char *first, long row_bytes, const int *w, long count, int bits,
                                 unsigned char *line)
{
    variants[quarry_active_isa()].resample_vertical_u8(first, row_bytes, w, count, bits, line);
}

void quarry_resample_horizontal_rows_u8(const unsigned char *src, long src_stride, long rows, long last_row_readable,
                                        unsigned char *out, long out_stride, long columns, const int *weights,
                                        long stride, const int *firsts, const int *counts, long width, int bits)
{
    variants[quarry_active_isa()].resample_horizontal_u8(src, src_stride, rows, last_row_readable, out, out_stride,
                                                         columns, weights, stride, firsts, counts, width, bits);
}

void quarry_activate(int kind, float *p, long n)
{
    variants[quarry_active_isa()].activate(kind, p, n);
}

void quarry_gemm_tile(int rows, int cols, long kc, const float *a, const float *b, long b_stride, float *c, long ldc,
                      const quarry_tile_epilogue *e)
{
    variants[quarry_active_isa()].gemm_tile(rows, cols, kc, a, b, b_stride, c, ldc, e);
}

void quarry_multiply_accumulate(const float *a, long lda, long rows, long k, const float *b, long width, long col0,
                                long col1, const float *initial, long ldi, float *out, long ldo)
{
    variants[quarry_active_isa()].multiply_accumulate(a, lda, rows, k, b, width, col0, col1, initial, ldi, out, ldo);
}

void quarry_lstm_cell16(const float *gates, float *cell, float *h) { variants[quarry_active_isa()].lstm_cell16(gates, cell, h); }

void quarry_depthwise3x3_rows(const quarry_dw3x3_plane *plane, long oy0, long oy1, int stride, const float *src,
                              const float *weights, float bias, float lo, float hi, float *dst)
{
    variants[quarry_active_isa()].depthwise3x3_rows(plane, oy0, oy1, stride, src, weights, bias, lo, hi, dst);
}

void quarry_few_channel_rows(const float *phases, long row_step, const long *offsets, long taps, const float *weights,
                             const float *bias, long out_channels, long oy0, long oy1, long out_width, long plane,
                             float lo, float hi, float *out)
{
    variants[quarry_active_isa()].few_channel_rows(phases, row_step, offsets, taps, weights, bias, out_channels, oy0, oy1,
                                                   out_width, plane, lo, hi, out);
}

void quarry_winograd_input(const float *x, const quarry_winograd_geometry *g, long t0, long count, long c0, long c1,
                           float *v)
{
    variants[quarry_active_isa()].winograd_input(x, g, t0, count, c0, c1, v);
}

void quarry_winograd_output(const float *m, float *y, const quarry_winograd_geometry *g, long out_channels, long t0,
                            long count, long o0, long o1, const float *bias, int clamp, float lo, float hi)
{
    variants[quarry_active_isa()].winograd_output(m, y, g, out_channels, t0, count, o0, o1, bias, clamp, lo, hi);
}

void quarry_pack_b(const float *src, long ld, long kc, long cols, float *dst)
{
    variants[quarry_active_isa()].pack_b(src, ld, kc, cols, dst);
}

void quarry_planes_to_padded(const float *src, long pixels, const int *offsets, float *padded, float *tile)
{
    variants[quarry_active_isa()].planes_to_padded(src, pixels, offsets, padded, tile);
}

void quarry_rows_to_planes(const float *src, long ld, long n, float *planes, long plane_stride, const float *residual,
                           int clamp, float lo, float hi, float *tile)
{
    variants[quarry_active_isa()].rows_to_planes(src, ld, n, planes, plane_stride, residual, clamp, lo, hi, tile);
}

void quarry_transpose16(const float *src, long src_stride, float *dst, long dst_stride)
{
    variants[quarry_active_isa()].transpose16(src, src_stride, dst, dst_stride);
}

void quarry_depthwise_interleaved_pixels(const float *padded, const int *windows, const long *taps, const float *filters,
                                         const float *bias, float lo, float hi, long out_pixels, float *out)
{
    variants[quarry_active_isa()].depthwise_interleaved_pixels(padded, windows, taps, filters, bias, lo, hi, out_pixels,
                                                               out);
}

float quarry_fma_peak_loop(long iterations, float seed)
{
    return variants[quarry_active_isa()].peak_loop(iterations, seed);
}

long quarry_fma_peak_flops_per_iteration(void) { return variants[quarry_active_isa()].peak_flops; }

float quarry_bf16_peak_loop(long iterations)
{
#if defined(__x86_64__) && defined(__clang__)
    if (quarry_bf16_available()) return bf16_peak_loop(iterations);
#endif
    (void)iterations;
    return 0.0f;
}

long quarry_bf16_peak_flops_per_iteration(void) { return quarry_bf16_available() ? 24 * 32 * 2 : 0; }
