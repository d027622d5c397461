// Image decoding through libjpeg-turbo, libpng and libwebp. C, because libjpeg and libpng report
// errors by longjmp, which Swift cannot catch.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Formats recognised by their leading bytes. JPEG, PNG and WebP decode; the others are named so
/// that an error can say what a file is instead of "unrecognised".
typedef enum {
    QIC_FORMAT_UNKNOWN = 0,
    QIC_FORMAT_JPEG,
    QIC_FORMAT_PNG,
    QIC_FORMAT_GIF,
    QIC_FORMAT_BMP,
    QIC_FORMAT_WEBP,
    QIC_FORMAT_TIFF,
    QIC_FORMAT_NPY,
} qic_format;

/// A decoded image. `pixels` holds `height` rows of `width * channels` samples, interleaved, rows
/// contiguous. `channels` is 1 (grey), 2 (grey, alpha), 3 (RGB) or 4 (RGBA); `bit_depth` is 8
/// (uint8 samples) or 16 (uint16 samples in host byte order). Palette and sub-byte images come out
/// expanded to 8 bits; CMYK JPEGs come out as RGB; WebPs come out as RGB with any alpha dropped.
/// `source_width` x `source_height` is the size the file declares: larger than `width` x `height`
/// when a JPEG was decoded at a reduced scale. Free with qic_image_free.
typedef struct {
    int width;
    int height;
    int channels;
    int bit_depth;
    void *pixels;
    qic_format format;
    int source_width;
    int source_height;
} qic_image;

/// Room for an error message, including the terminating NUL.
#define QIC_ERROR_CAPACITY 256

/// The format named by the first bytes of `data` (at least 12 bytes are looked at when present).
qic_format qic_detect_format(const uint8_t *data, size_t size);

/// A short name for a format ("JPEG", "PNG", ...).
const char *qic_format_name(qic_format format);

/// Decodes a JPEG, PNG or WebP held in memory. Returns 0 and fills `out` on success; returns -1 and writes
/// a message to `error` (never NULL-terminated beyond QIC_ERROR_CAPACITY) on any failure, including
/// truncated or corrupt data, which libjpeg would otherwise only warn about. `max_pixels` bounds
/// width * height to refuse decompression bombs (0: no bound).
int qic_decode(const uint8_t *data, size_t size, size_t max_pixels, qic_image *out,
               char error[QIC_ERROR_CAPACITY]);

/// Like qic_decode, but a JPEG is decoded in the DCT domain at the smallest of the scales 1/8, 1/4
/// and 1/2 (libjpeg-turbo's `scale_num / scale_denom`) whose output still has a shorter side of at
/// least `min_short_side` pixels, or at full size when none has. `min_short_side` <= 0 means full
/// size. PNG and WebP always decode at full size.
int qic_decode_scaled(const uint8_t *data, size_t size, size_t max_pixels, int min_short_side,
                      qic_image *out, char error[QIC_ERROR_CAPACITY]);

/// The reader qic_decode_scaled uses when a JPEG's chosen scale is 1/8 (jpeg_eighth.c): baseline,
/// one interleaved scan, YCbCr or grey, chroma at full or half resolution. Returns 1 and fills
/// `out` (8-bit, 1 or 3 channels, ceil(width / 8) x ceil(height / 8)) when the file is in that case
/// and its shorter side at 1/8 is at least `min_short_side`; returns 0, allocating nothing, for any
/// other file and for any irregularity in the data, which libjpeg then decodes or reports.
int qic_jpeg_decode_eighth(const uint8_t *data, size_t size, size_t max_pixels, int min_short_side,
                           qic_image *out);

/// qic_decode_scaled with libjpeg-turbo alone, never the 1/8 reader: the reference that reader is
/// tested and measured against.
int qic_decode_scaled_libjpeg(const uint8_t *data, size_t size, size_t max_pixels,
                              int min_short_side, qic_image *out, char error[QIC_ERROR_CAPACITY]);

// MARK: references for tests and benchmarks (jpeg_reference.c), through libjpeg-turbo

/// Encodes `height` rows of `width * channels` samples (1: grey, 3: RGB) as a JPEG: quality 1-100,
/// luma sampling `h_samp` x `v_samp` (1 or 2; chroma 1x1), a restart marker every
/// `restart_interval` MCUs (0: none), optimised Huffman tables, progressive scans. Returns 0 and a
/// malloc'd buffer (free it with free()) or -1.
int qic_encode_jpeg(const uint8_t *pixels, int width, int height, int channels, int quality,
                    int h_samp, int v_samp, int restart_interval, int optimize, int progressive,
                    uint8_t **out, size_t *out_size);

typedef struct {
    int blocks_wide, blocks_high;   // the component's blocks holding image data
    int h_samp, v_samp, max_h_samp, max_v_samp;
    int quant_dc;                   // the DC entry of its quantisation table
    int components;                 // in the frame
} qic_jpeg_component_info;

/// One component's quantised DC coefficients as libjpeg reads them (`jpeg_read_coefficients`),
/// row-major. Fills `info`; returns 0, 1 when `capacity` is too small for them (call again), or
/// -1 when libjpeg fails or there is no such component.
int qic_jpeg_dc_coefficients(const uint8_t *data, size_t size, int component, int32_t *dc,
                             size_t capacity, qic_jpeg_component_info *info);

/// Releases the pixels of an image returned by qic_decode; safe on a zeroed image.
void qic_image_free(qic_image *image);

#ifdef __cplusplus
}
#endif
