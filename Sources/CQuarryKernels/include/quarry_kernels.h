// The CPU backend's hottest loops in C, compiled once per x86-64 instruction-set level and chosen
// at run time (CPUID), so that a plain `swift build -c release` (generic x86-64 for Swift code) runs
// AVX-512 or AVX2+FMA code where the host has it, and the same binary still runs on a baseline
// x86-64 host. Swift has no per-function target attribute; C has (`#pragma clang attribute`), and
// needs no compiler flags for it, so the package keeps no unsafe flags.
#ifndef QUARRY_KERNELS_H
#define QUARRY_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/// Instruction-set levels with a kernel variant of their own, best last.
enum {
    /// x86-64 baseline (SSE2), or any non-x86 host: what the compiler targets by default.
    QUARRY_ISA_BASELINE = 0,
    /// x86-64-v3: AVX2 and FMA (Intel from Haswell, AMD from Zen 1).
    QUARRY_ISA_AVX2 = 1,
    /// x86-64-v4: AVX-512 F/BW/DQ/VL (Intel from Skylake-SP, AMD from Zen 4).
    QUARRY_ISA_AVX512 = 2,
};

/// The best level this host's CPU and operating system support (CPUID and XGETBV).
int quarry_host_isa(void);

/// The level in use: the host's best, or a lower one chosen with `quarry_select_isa`.
int quarry_active_isa(void);

/// Uses the kernels of `isa` (at most the host's level) from now on; returns the level in force.
/// For tests and benchmarks of the lower variants on a newer host (QUARRY_CPU_ISA).
int quarry_select_isa(int isa);

/// A level's name: "avx512", "avx2", "baseline".
const char *quarry_isa_name(int isa);

/// What the GEMM micro-kernel does with the finished tile: C's previous values added (load_c),
/// a bias per row or per column, an addend matrix (a residual), then a clamp (relu, clip).
typedef struct {
    int load_c;
    int clamp;
    float lo, hi;
    const float *row_bias;
    const float *col_bias;
    const float *addend;
    long addend_ld;
} quarry_tile_epilogue;

/// The GEMM micro-kernel: C[rows x cols] (+)= A panel * B panel, then the epilogue. The A panel
/// holds 12 rows per k (row r of step k at a[12k + r]); row k of the B panel starts at
/// b + k * b_stride and holds 32 floats. `rows` is 1...12; `cols` is 16 or 32.
void quarry_gemm_tile(int rows, int cols, long kc, const float *a, const float *b, long b_stride,
                      float *c, long ldc, const quarry_tile_epilogue *e);

/// The recurrent product of the LSTM / GRU kernels: out[r, c] = initial[r, c] + sum_k a[r, k] b[k, c]
/// for rows 0 ..< rows and columns col0 ..< col1, where b is a block of `width` columns packed in
/// panels of 32 (the last one 16 when `width` is not a multiple of 32), each panel's k x 32 floats
/// contiguous. col0 and col1 lie on panel boundaries. `ldi` 0 broadcasts one initial row (a bias).
void quarry_multiply_accumulate(const float *a, long lda, long rows, long k, const float *b, long width,
                                long col0, long col1, const float *initial, long ldi, float *out, long ldo);

/// One block of 16 LSTM units: gates holds i, f, g, o (16 pre-activations each, in that order);
/// c' = f c + i g is stored over `cell`, and h' = o tanh(c') into `h`.
void quarry_lstm_cell16(const float *gates, float *cell, float *h);

/// The geometry of a 3x3 depthwise plane for `quarry_depthwise3x3_rows` (QuarryCPU's Depthwise3x3).
typedef struct {
    long width, height, out_width, pad_top, pad_left;
    /// 16-float vectors per output row.
    long vectors;
    /// Per vector and tap column, 16 lane masks (all ones where the input column is in the row).
    const unsigned *keep;
    /// Per vector: whether any of its lanes reads padding.
    const unsigned char *padded;
    /// A row of zeros read in place of rows outside the image, readable 16 floats before.
    const float *zero;
} quarry_dw3x3_plane;

/// Output rows oy0 ..< oy1 of one 3x3 depthwise plane, stride 1 or 2, into dst (row oy at
/// dst + (oy - oy0) * out_width), bias added and clamped to [lo, hi]; input row iy at src + iy * width,
/// read up to 2 floats before and 48 past a row. The band's last vector is stored partially.
void quarry_depthwise3x3_rows(const quarry_dw3x3_plane *plane, long oy0, long oy1, int stride, const float *src,
                              const float *weights, float bias, float lo, float hi, float *dst);

/// Output rows oy0 ..< oy1 of a few-input-channel convolution (QuarryCPU's FewChannelConv, a
/// network's stem) from an image's column phases: output row oy's tap t reads from
/// phases + oy * row_step + offsets[t] on; weights as [out_channels / 8][taps][8]; bias (or NULL)
/// in the accumulators' start; a clamp to [lo, hi] before the store into out (channel-major planes
/// of `plane` floats, row oy at oy * out_width). Loads reach 16 floats past a row's last output.
void quarry_few_channel_rows(const float *phases, long row_step, const long *offsets, long taps, const float *weights,
                             const float *bias, long out_channels, long oy0, long oy1, long out_width, long plane,
                             float lo, float hi, float *out);

/// dst[j * dst_stride + i] = src[i * src_stride + j] for i, j < 16 (in place allowed when both
/// strides are 16): 64 two-source shuffles, single instructions on AVX-512.
void quarry_transpose16(const float *src, long src_stride, float *dst, long dst_stride);

/// The pixel loop of QuarryCPU's DepthwiseInterleaved (sixteen channels in the lanes): output pixel
/// q is bias + sum over the nine taps t of padded[windows[q] + taps[t] ...16] * filters[16 t ...16],
/// clamped to [lo, hi], stored at out + 16 q. `windows` holds out_pixels rounded up to 8 entries.
void quarry_depthwise_interleaved_pixels(const float *padded, const int *windows, const long *taps, const float *filters,
                                         const float *bias, float lo, float hi, long out_pixels, float *out);

/// 1 when the host runs the bf16 GEMM (AVX-512 with AVX512_BF16: Intel from Cooper Lake, AMD from
/// Zen 4) and the level in use is AVX-512.
int quarry_bf16_available(void);

/// bf16 operands of the GEMM, packed from the fp32 panels with round-to-nearest-even: k in
/// pairs, each (k, k+1) pair of a row or column adjacent (what vdpbf16ps multiplies), an odd
/// last k paired with zero. An A panel (12 rows, a[12k + r]) becomes kc/2 rounded up x 12 pairs;
/// a B panel (`cols` <= 32 columns of row k at b + k * b_stride) kc/2 rounded up x 32 pairs,
/// columns past `cols` zero.
void quarry_pack_a_bf16(const float *a, long kc, unsigned short *dst);
void quarry_pack_b_bf16(const float *b, long b_stride, long kc, long cols, unsigned short *dst);

/// The bf16 micro-kernel: C[rows x cols] (+)= A * B from bf16 panels (as packed above) with fp32
/// accumulation, then the epilogue; rows 1...12, cols 16 or 32. Only where quarry_bf16_available().
void quarry_gemm_tile_bf16(int rows, int cols, long kc, const unsigned short *a, const unsigned short *b, float *c,
                           long ldc, const quarry_tile_epilogue *e);

/// 1 when bf16 products may use AMX tiles (AMX-BF16 and AMX-TILE, the tile state granted by
/// Linux, quarry_bf16_available(), and QUARRY_CPU_AMX not 0).
int quarry_amx_available(void);

/// Turns the AMX kernel off (0) or back on (the default) for the process, so that the tests reach
/// the vdpbf16ps kernel on an AMX host too; returns the previous setting.
int quarry_amx_enable(int on);

/// A 12-row fp32 panel (a[12k + r]) in AMX rows: per 32 k (the last chunk zero-padded), 12 rows
/// of 32 bf16, row r of chunk c at dst + 384 c + 32 r.
void quarry_pack_a_amx(const float *a, long kc, unsigned short *dst);

/// Loads the tile configuration on this thread (before quarry_amx_tile) and releases the tiles.
void quarry_amx_begin(void);
void quarry_amx_end(void);

/// C[rows x cols] (+)= A * B, rows <= 24 and cols <= 32, over chunks x 32 k: A's two 12-row
/// panels at a0 and a1 (as quarry_pack_a_amx), B's 32-column panel at b (as quarry_pack_b_bf16,
/// its pairs zero-padded to chunks x 16), then the epilogue. Between quarry_amx_begin and _end.
void quarry_amx_tile(int rows, int cols, long chunks, const unsigned short *a0, const unsigned short *a1,
                     const unsigned short *b, float *c, long ldc, const quarry_tile_epilogue *e);

/// A convolution's input geometry for quarry_im2col_line: `images` images `image_stride` floats
/// apart, each `channels` planes of height x width; the output plane and the strides.
typedef struct {
    long height, width, out_height, out_width, stride_h, stride_w, image_stride;
} quarry_im2col_geometry;

/// One row of the implicit column matrix: for output pixels j0 ..< j0 + cols (counted across the
/// images, image n's pixel p at n * out_height * out_width + p), the input of channel c at row
/// oy * stride_h + row_offset, column ox * stride_w + col_offset, zero outside the plane.
void quarry_im2col_line(const float *image, const quarry_im2col_geometry *g, long c, long row_offset, long col_offset,
                        long j0, long cols, float *line);

/// One packed B panel of the GEMM: rows 0 ..< kc of `cols` (at most 32) floats, `ld` apart, from
/// src, as kc rows of 32 at dst, zero past cols.
void quarry_pack_b(const float *src, long ld, long kc, long cols, float *dst);

/// Planes into the channel-interleaved layout: 16 planes of `pixels` floats (`pixels` apart) from
/// src; pixel p's 16 channels as one vector at padded + offsets[p], or nowhere where offsets[p]
/// is negative. `tile` is 256 floats of scratch, 64-byte aligned.
void quarry_planes_to_padded(const float *src, long pixels, const int *offsets, float *padded, float *tile);

/// Pixel-major rows back to planes: rows 0 ..< n (n <= 16) of 16 floats, `ld` apart, hold 16
/// channels of n consecutive pixels; channel c's values go to planes + c * plane_stride, plus
/// residual[c * plane_stride + j] (if residual), clamped to lo...hi (if clamp). `tile` is 256
/// floats of scratch, 64-byte aligned.
void quarry_rows_to_planes(const float *src, long ld, long n, float *planes, long plane_stride, const float *residual,
                           int clamp, float lo, float hi, float *tile);

/// A 3x3 stride-1 convolution's geometry for the Winograd F(4x4, 3x3) transforms: the input
/// planes (channels x height x width per image, padded by pad_top / pad_left), the output plane,
/// the 4x4 tiles (tiles_x per row, tiles_per_image), and V's layout: tb tiles a block, packed as
/// the GEMM's B panels of nr columns in depth blocks of kc channels.
typedef struct {
    long channels, height, width, pad_top, pad_left, out_height, out_width, tiles_x, tiles_per_image, tb, kc, nr;
} quarry_winograd_geometry;

/// V = B^T d B of tiles t0 ..< t0 + count (counted across images; tiles past the block's count are
/// zero up to the next multiple of the vector width) for input channels c0 ..< c1: 36 matrices
/// [channels, tb] one after the other (element xi = i * 6 + j), each in packed B panels.
void quarry_winograd_input(const float *x, const quarry_winograd_geometry *g, long t0, long count, long c0, long c1,
                           float *v);

/// Y = A^T M A of tiles t0 ..< t0 + count for output channels o0 ..< o1, from M (36 row-major
/// matrices [out_channels, tb]), plus bias[o] (if bias), clamped to lo...hi (if clamp), written
/// into the NCHW output y (partial tiles at the right and bottom edges cut).
void quarry_winograd_output(const float *m, float *y, const quarry_winograd_geometry *g, long out_channels, long t0,
                            long count, long o0, long o1, const float *bias, int clamp, float lo, float hi);

/// The activations quarry_activate computes in the active level's vectors.
enum {
    QUARRY_ACT_GELU = 0,       // exact: x * Phi(x), through erfc
    QUARRY_ACT_GELU_TANH = 1,  // the tanh approximation
    QUARRY_ACT_SIGMOID = 2,
    QUARRY_ACT_SILU = 3,
    QUARRY_ACT_TANH = 4,
    QUARRY_ACT_EXP = 5,
    QUARRY_ACT_MISH = 6,
};

/// p[i] = f(p[i]) for i < n, f the activation `kind`.
void quarry_activate(int kind, float *p, long n);

/// The 8-bit resize's passes (Pillow's fixed-point taps, `bits` fractional bits): the vertical
/// one sums `count` rows of `row_bytes` bytes from `first` on, weighted by w; the horizontal one
/// makes `columns` RGB pixels of each of `rows` rows (src and out `src_stride` and `out_stride`
/// bytes apart) from taps at firsts[x] ... + counts[x] of the row, weights `stride` apart per pixel
/// and zero past counts[x]. It loads 4 bytes a tap below pixel `width` of a row (below
/// `last_row_readable` in the last row, where the buffer may end). Both round, shift and clamp to
/// 0...255 as Pillow does.
void quarry_resample_vertical_u8(const unsigned char *first, long row_bytes, const int *w, long count, int bits,
                                 unsigned char *line);
void quarry_resample_horizontal_rows_u8(const unsigned char *src, long src_stride, long rows, long last_row_readable,
                                        unsigned char *out, long out_stride, long columns, const int *weights,
                                        long stride, const int *firsts, const int *counts, long width, int bits);

/// The peak measurement's loop: multiply-adds on twelve independent vector chains, `iterations`
/// times, in the active level's widest vectors (fused where the level has FMA). Returns a value
/// that depends on every chain, so the work cannot be optimised away.
float quarry_fma_peak_loop(long iterations, float seed);

/// Floating-point operations of one iteration of `quarry_fma_peak_loop` at the active level.
long quarry_fma_peak_flops_per_iteration(void);

/// The same for the bf16 dot product (vdpbf16ps, 24 chains; each instruction is 32 multiply-adds,
/// 64 flops): returns 276 + 24 x iterations x 2^-9 while that is exact in fp32, and 0 where
/// quarry_bf16_available() is not. The loop is the one the vdpbf16ps GEMM kernel runs on.
float quarry_bf16_peak_loop(long iterations);

/// Flops of one iteration of `quarry_bf16_peak_loop` (0 where bf16 is not available).
long quarry_bf16_peak_flops_per_iteration(void);

#ifdef __cplusplus
}
#endif

#endif
