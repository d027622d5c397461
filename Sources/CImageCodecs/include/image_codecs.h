// Image decoding through libjpeg-turbo and libpng. C, because both libraries report errors by
// longjmp, which Swift cannot catch.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Formats recognised by their leading bytes. Only JPEG and PNG decode; the others are named so
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
/// expanded to 8 bits; CMYK JPEGs come out as RGB. Free with qic_image_free.
typedef struct {
    int width;
    int height;
    int channels;
    int bit_depth;
    void *pixels;
    qic_format format;
} qic_image;

/// Room for an error message, including the terminating NUL.
#define QIC_ERROR_CAPACITY 256

/// The format named by the first bytes of `data` (at least 12 bytes are looked at when present).
qic_format qic_detect_format(const uint8_t *data, size_t size);

/// A short name for a format ("JPEG", "PNG", ...).
const char *qic_format_name(qic_format format);

/// Decodes a JPEG or PNG held in memory. Returns 0 and fills `out` on success; returns -1 and writes
/// a message to `error` (never NULL-terminated beyond QIC_ERROR_CAPACITY) on any failure, including
/// truncated or corrupt data, which libjpeg would otherwise only warn about. `max_pixels` bounds
/// width * height to refuse decompression bombs (0: no bound).
int qic_decode(const uint8_t *data, size_t size, size_t max_pixels, qic_image *out,
               char error[QIC_ERROR_CAPACITY]);

/// Releases the pixels of an image returned by qic_decode; safe on a zeroed image.
void qic_image_free(qic_image *image);

#ifdef __cplusplus
}
#endif
