// JPEG, PNG and WebP decoding from memory. Both libraries report fatal errors through a callback that must
// not return; we longjmp back to the decode call, free what was allocated and return the message.
// libjpeg only *warns* about truncated or corrupt entropy data (and pads the image with grey), so
// the warnings that mean "pixels are missing or wrong" are promoted to errors as well.
#include "image_codecs.h"

#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>

qic_format qic_detect_format(const uint8_t *d, size_t n) {
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return QIC_FORMAT_JPEG;
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (n >= 8 && memcmp(d, png_magic, 8) == 0) return QIC_FORMAT_PNG;
    if (n >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)) return QIC_FORMAT_GIF;
    if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0) return QIC_FORMAT_WEBP;
    if (n >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0)) return QIC_FORMAT_TIFF;
    if (n >= 6 && memcmp(d, "\x93NUMPY", 6) == 0) return QIC_FORMAT_NPY;
    if (n >= 2 && d[0] == 'B' && d[1] == 'M') return QIC_FORMAT_BMP;
    return QIC_FORMAT_UNKNOWN;
}

const char *qic_format_name(qic_format format) {
    switch (format) {
    case QIC_FORMAT_JPEG: return "JPEG";
    case QIC_FORMAT_PNG: return "PNG";
    case QIC_FORMAT_GIF: return "GIF";
    case QIC_FORMAT_BMP: return "BMP";
    case QIC_FORMAT_WEBP: return "WebP";
    case QIC_FORMAT_TIFF: return "TIFF";
    case QIC_FORMAT_NPY: return "NumPy array";
    default: return "unknown";
    }
}

void qic_image_free(qic_image *image) {
    if (image == NULL) return;
    free(image->pixels);
    image->pixels = NULL;
}

// width * height * bytes_per_pixel, or 0 when that overflows or exceeds the caller's bound.
static size_t checked_size(size_t width, size_t height, size_t bytes_per_pixel, size_t max_pixels,
                           char *error) {
    if (width == 0 || height == 0) {
        snprintf(error, QIC_ERROR_CAPACITY, "image has no pixels (%zu x %zu)", width, height);
        return 0;
    }
    if (height > SIZE_MAX / width || width * height > SIZE_MAX / bytes_per_pixel ||
        width * height > (size_t)INT_MAX) {
        snprintf(error, QIC_ERROR_CAPACITY, "image of %zu x %zu pixels is too large", width, height);
        return 0;
    }
    if (max_pixels != 0 && width * height > max_pixels) {
        snprintf(error, QIC_ERROR_CAPACITY,
                 "image of %zu x %zu pixels exceeds the limit of %zu pixels", width, height,
                 max_pixels);
        return 0;
    }
    return width * height * bytes_per_pixel;
}

// MARK: - JPEG

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *message;
} jpeg_failure;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_failure *failure = (jpeg_failure *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    snprintf(failure->message, QIC_ERROR_CAPACITY, "invalid JPEG: %s", text);
    longjmp(failure->jump, 1);
}

// Level -1 is a warning; higher levels are trace messages, which we drop. Warnings about missing or
// undecodable entropy data mean the rest of the image would be filled in, so they fail the decode.
// Others ("extraneous bytes before marker", odd JFIF versions) are common in valid-looking files
// that Pillow also accepts.
static void jpeg_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_MUST_RESYNC:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
        jpeg_fail(cinfo);
        break;
    default:
        cinfo->err->num_warnings++;
        break;
    }
}

// Pillow reads CMYK JPEGs as inverted ("Adobe convention") and converts with
// R = (255 - K') - (C' * (255 - K') / 255), rounded; with C' = 255 - C stored this keeps
// `.convert("RGB")` identical.
static uint8_t mul_div_255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static void cmyk_to_rgb_in_place(uint8_t *pixels, size_t count) {
    for (size_t i = 0; i < count; i++) {
        const uint8_t *in = pixels + 4 * i;
        uint8_t *out = pixels + 3 * i;
        int nk = in[3];  // 255 - (255 - stored K)
        int c = 255 - in[0], m = 255 - in[1], y = 255 - in[2];
        // Read all four before writing: out overlaps in for i > 0 only behind the read position.
        uint8_t r = (uint8_t)(nk - mul_div_255(c, nk));
        uint8_t g = (uint8_t)(nk - mul_div_255(m, nk));
        uint8_t b = (uint8_t)(nk - mul_div_255(y, nk));
        out[0] = r;
        out[1] = g;
        out[2] = b;
    }
}

static int decode_jpeg(const uint8_t *data, size_t size, size_t max_pixels, int min_short_side,
                       qic_image *out, char *error) {
    struct jpeg_decompress_struct cinfo;
    jpeg_failure failure;
    uint8_t *volatile pixels = NULL;

    cinfo.err = jpeg_std_error(&failure.pub);
    failure.pub.error_exit = jpeg_fail;
    failure.pub.emit_message = jpeg_message;
    failure.message = error;
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    if (size > ULONG_MAX) {
        snprintf(error, QIC_ERROR_CAPACITY, "JPEG file too large");
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);

    int cmyk = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo.out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        cinfo.out_color_space = JCS_RGB;
        break;
    }
    // Checked before jpeg_start_decompress, which for progressive files allocates the whole
    // coefficient buffer: a small file declaring 60000 x 60000 pixels must not get that far.
    const size_t components = cinfo.out_color_space == JCS_GRAYSCALE ? 1 : (cmyk ? 4 : 3);
    if (checked_size(cinfo.image_width, cinfo.image_height, components, max_pixels, error) == 0) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    // The smallest DCT-domain scale whose shorter side still covers the caller's target. libjpeg-turbo
    // has SIMD inverse DCTs for 1/2 and 1/4 and a trivial one for 1/8 (the DC coefficient alone).
    if (min_short_side > 0) {
        static const unsigned denominators[3] = {8, 4, 2};
        for (int i = 0; i < 3; i++) {
            cinfo.scale_num = 1;
            cinfo.scale_denom = denominators[i];
            jpeg_calc_output_dimensions(&cinfo);
            const JDIMENSION shorter = cinfo.output_width < cinfo.output_height ? cinfo.output_width
                                                                                : cinfo.output_height;
            if (shorter >= (JDIMENSION)min_short_side) break;
            cinfo.scale_num = 1;
            cinfo.scale_denom = 1;
        }
    }
    jpeg_start_decompress(&cinfo);

    const size_t width = cinfo.output_width, height = cinfo.output_height;
    const size_t bytes = checked_size(width, height, components, max_pixels, error);
    if (bytes == 0 || (size_t)cinfo.output_components != components) {
        if (bytes != 0) snprintf(error, QIC_ERROR_CAPACITY, "unexpected JPEG component count");
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    pixels = malloc(bytes);
    if (pixels == NULL) {
        snprintf(error, QIC_ERROR_CAPACITY, "out of memory for %zu x %zu pixels", width, height);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    const size_t stride = width * components;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rows[4];
        int wanted = 0;
        for (; wanted < 4 && cinfo.output_scanline + (JDIMENSION)wanted < cinfo.output_height; wanted++)
            rows[wanted] = pixels + (cinfo.output_scanline + (size_t)wanted) * stride;
        jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)wanted);
    }
    // Reads on to the end-of-image marker: like Pillow, a file cut after the last scan is an error.
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);

    if (cmyk) cmyk_to_rgb_in_place(pixels, width * height);
    out->width = (int)width;
    out->height = (int)height;
    out->channels = cmyk ? 3 : (int)components;
    out->bit_depth = 8;
    out->pixels = pixels;
    out->format = QIC_FORMAT_JPEG;
    out->source_width = (int)cinfo.image_width;
    out->source_height = (int)cinfo.image_height;
    return 0;
}

// MARK: - PNG

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t offset;
} png_memory;

static void png_read_memory(png_structp png, png_bytep destination, size_t count) {
    png_memory *source = (png_memory *)png_get_io_ptr(png);
    if (source->size - source->offset < count) png_error(png, "file is truncated");
    memcpy(destination, source->data + source->offset, count);
    source->offset += count;
}

static void png_fail(png_structp png, png_const_charp message) {
    char *error = (char *)png_get_error_ptr(png);
    snprintf(error, QIC_ERROR_CAPACITY, "invalid PNG: %s", message);
    png_longjmp(png, 1);
}

// Warnings concern ancillary chunks (colour profiles, text) that do not change the pixels we read.
static void png_warn(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static int decode_png(const uint8_t *data, size_t size, size_t max_pixels, qic_image *out,
                      char *error) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, error, png_fail, png_warn);
    if (png == NULL) {
        snprintf(error, QIC_ERROR_CAPACITY, "cannot create a PNG decoder");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(error, QIC_ERROR_CAPACITY, "cannot create a PNG decoder");
        return -1;
    }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    png_memory source = {data, size, 0};
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        return -1;
    }
    png_set_read_fn(png, &source, png_read_memory);
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, NULL, NULL, NULL);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (bit_depth == 16) png_set_swap(png);
#endif
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);

    const int channels = png_get_channels(png, info);
    const int depth = png_get_bit_depth(png, info);
    if ((depth != 8 && depth != 16) || channels < 1 || channels > 4) {
        snprintf(error, QIC_ERROR_CAPACITY, "unsupported PNG layout (%d channels of %d bits)",
                 channels, depth);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    const size_t stride = (size_t)width * (size_t)channels * (size_t)(depth / 8);
    const size_t bytes = checked_size(width, height, (size_t)channels * (size_t)(depth / 8),
                                      max_pixels, error);
    if (bytes == 0 || png_get_rowbytes(png, info) != stride) {
        if (bytes != 0) snprintf(error, QIC_ERROR_CAPACITY, "unexpected PNG row size");
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    pixels = malloc(bytes);
    rows = malloc(sizeof(png_bytep) * height);
    if (pixels == NULL || rows == NULL) {
        snprintf(error, QIC_ERROR_CAPACITY, "out of memory for %u x %u pixels", width, height);
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        return -1;
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * stride;
    png_read_image(png, rows);
    // Reads the chunks after the image data, which checks the CRC of the last IDAT chunk.
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);

    out->width = (int)width;
    out->height = (int)height;
    out->channels = channels;
    out->bit_depth = depth;
    out->pixels = pixels;
    out->format = QIC_FORMAT_PNG;
    out->source_width = (int)width;
    out->source_height = (int)height;
    return 0;
}

// MARK: - WebP

static const char *webp_status_text(VP8StatusCode status) {
    switch (status) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "corrupt data";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "file is truncated";
    default: return "cannot decode";
    }
}

// Always RGB: Pillow's convert("RGB") drops the alpha of an RGBA WebP without compositing, and
// libwebp's RGB output mode gives the colour samples unpremultiplied, i.e. the same values.
static int decode_webp(const uint8_t *data, size_t size, size_t max_pixels, qic_image *out,
                       char *error) {
    WebPDecoderConfig config;
    if (!WebPInitDecoderConfig(&config)) {
        snprintf(error, QIC_ERROR_CAPACITY, "libwebp version mismatch");
        return -1;
    }
    VP8StatusCode status = WebPGetFeatures(data, size, &config.input);
    if (status != VP8_STATUS_OK) {
        snprintf(error, QIC_ERROR_CAPACITY, "invalid WebP: %s", webp_status_text(status));
        return -1;
    }
    if (config.input.has_animation) {
        snprintf(error, QIC_ERROR_CAPACITY, "animated WebP images are not supported");
        return -1;
    }
    const size_t width = (size_t)config.input.width, height = (size_t)config.input.height;
    const size_t bytes = checked_size(width, height, 3, max_pixels, error);
    if (bytes == 0) return -1;
    uint8_t *pixels = malloc(bytes);
    if (pixels == NULL) {
        snprintf(error, QIC_ERROR_CAPACITY, "out of memory for %zu x %zu pixels", width, height);
        return -1;
    }
    config.output.colorspace = MODE_RGB;
    config.output.is_external_memory = 1;
    config.output.u.RGBA.rgba = pixels;
    config.output.u.RGBA.stride = (int)(width * 3);
    config.output.u.RGBA.size = bytes;
    status = WebPDecode(data, size, &config);
    WebPFreeDecBuffer(&config.output);
    if (status != VP8_STATUS_OK) {
        free(pixels);
        snprintf(error, QIC_ERROR_CAPACITY, "invalid WebP: %s", webp_status_text(status));
        return -1;
    }
    out->width = (int)width;
    out->height = (int)height;
    out->channels = 3;
    out->bit_depth = 8;
    out->pixels = pixels;
    out->format = QIC_FORMAT_WEBP;
    out->source_width = (int)width;
    out->source_height = (int)height;
    return 0;
}

static int decode_any(const uint8_t *data, size_t size, size_t max_pixels, int min_short_side,
                      int allow_eighth, qic_image *out, char error[QIC_ERROR_CAPACITY]) {
    memset(out, 0, sizeof *out);
    error[0] = '\0';
    const qic_format format = qic_detect_format(data, size);
    out->format = format;
    switch (format) {
    case QIC_FORMAT_JPEG:
        // At 1/8 scale libjpeg's time is nearly all Huffman decoding, which jpeg_eighth.c does
        // faster; it declines anything unusual, and libjpeg decodes (or reports) that.
        if (allow_eighth && min_short_side > 0 &&
            qic_jpeg_decode_eighth(data, size, max_pixels, min_short_side, out))
            return 0;
        return decode_jpeg(data, size, max_pixels, min_short_side, out, error);
    case QIC_FORMAT_PNG: return decode_png(data, size, max_pixels, out, error);
    case QIC_FORMAT_WEBP: return decode_webp(data, size, max_pixels, out, error);
    case QIC_FORMAT_UNKNOWN:
        if (size == 0)
            snprintf(error, QIC_ERROR_CAPACITY, "file is empty");
        else
            snprintf(error, QIC_ERROR_CAPACITY, "not a JPEG, PNG or WebP image (unrecognised content)");
        return -1;
    default:
        snprintf(error, QIC_ERROR_CAPACITY,
                 "%s images are not supported (only JPEG, PNG and WebP)", qic_format_name(format));
        return -1;
    }
}

int qic_decode_scaled(const uint8_t *data, size_t size, size_t max_pixels, int min_short_side,
                      qic_image *out, char error[QIC_ERROR_CAPACITY]) {
    return decode_any(data, size, max_pixels, min_short_side, 1, out, error);
}

int qic_decode_scaled_libjpeg(const uint8_t *data, size_t size, size_t max_pixels,
                              int min_short_side, qic_image *out, char error[QIC_ERROR_CAPACITY]) {
    return decode_any(data, size, max_pixels, min_short_side, 0, out, error);
}

int qic_decode(const uint8_t *data, size_t size, size_t max_pixels, qic_image *out,
               char error[QIC_ERROR_CAPACITY]) {
    return qic_decode_scaled(data, size, max_pixels, 0, out, error);
}
