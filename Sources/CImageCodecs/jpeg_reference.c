// What the 1/8 reader (jpeg_eighth.c) is tested and measured against, through libjpeg-turbo: an
// encoder that makes JPEGs of every layout the reader must handle or decline, and the DC
// coefficients of a file as libjpeg reads them (the exact input of the reader's pixels).
#include "image_codecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
} reference_failure;

static void reference_fail(j_common_ptr cinfo) {
    longjmp(((reference_failure *)cinfo->err)->jump, 1);
}

static void reference_quiet(j_common_ptr cinfo, int level) {
    (void)cinfo;
    (void)level;
}

int qic_encode_jpeg(const uint8_t *pixels, int width, int height, int channels, int quality,
                    int h_samp, int v_samp, int restart_interval, int optimize, int progressive,
                    uint8_t **out, size_t *out_size) {
    *out = NULL;
    *out_size = 0;
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3)) return -1;
    struct jpeg_compress_struct cinfo;
    reference_failure failure;
    unsigned char *volatile buffer = NULL;
    unsigned long volatile size = 0;
    cinfo.err = jpeg_std_error(&failure.pub);
    failure.pub.error_exit = reference_fail;
    failure.pub.emit_message = reference_quiet;
    if (setjmp(failure.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        return -1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, (unsigned char **)&buffer, (unsigned long *)&size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    if (channels == 3) {
        cinfo.comp_info[0].h_samp_factor = h_samp;
        cinfo.comp_info[0].v_samp_factor = v_samp;
        for (int c = 1; c < 3; c++) cinfo.comp_info[c].h_samp_factor = cinfo.comp_info[c].v_samp_factor = 1;
    }
    cinfo.restart_interval = (unsigned)restart_interval;
    cinfo.optimize_coding = optimize ? TRUE : FALSE;
    if (progressive) jpeg_simple_progression(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    const size_t stride = (size_t)width * (size_t)channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + cinfo.next_scanline * stride);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    // jpeg_mem_dest's buffer comes from malloc; the caller frees it with free().
    *out = buffer;
    *out_size = size;
    return 0;
}

int qic_jpeg_dc_coefficients(const uint8_t *data, size_t size, int component, int32_t *dc,
                             size_t capacity, qic_jpeg_component_info *info) {
    struct jpeg_decompress_struct cinfo;
    reference_failure failure;
    cinfo.err = jpeg_std_error(&failure.pub);
    failure.pub.error_exit = reference_fail;
    failure.pub.emit_message = reference_quiet;
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (component < 0 || component >= cinfo.num_components) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jvirt_barray_ptr *arrays = jpeg_read_coefficients(&cinfo);
    jpeg_component_info *cp = &cinfo.comp_info[component];
    const size_t wide = cp->width_in_blocks, high = cp->height_in_blocks;
    info->blocks_wide = (int)wide;
    info->blocks_high = (int)high;
    info->h_samp = cp->h_samp_factor;
    info->v_samp = cp->v_samp_factor;
    info->max_h_samp = cinfo.max_h_samp_factor;
    info->max_v_samp = cinfo.max_v_samp_factor;
    info->quant_dc = cp->quant_table ? cp->quant_table->quantval[0] : 0;
    info->components = cinfo.num_components;
    if (wide * high > capacity) {
        jpeg_destroy_decompress(&cinfo);
        return 1;  // the sizes are filled in: call again with room for them
    }
    for (JDIMENSION y = 0; y < high; y++) {
        JBLOCKARRAY row = (*cinfo.mem->access_virt_barray)((j_common_ptr)&cinfo, arrays[component], y, 1, FALSE);
        for (JDIMENSION x = 0; x < wide; x++) dc[y * wide + x] = row[0][x][0];
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return 0;
}
