// A JPEG reader for the one case that decides the speed of large photos: a baseline (Huffman,
// 8-bit, one interleaved scan) JPEG decoded at 1/8 scale, where each 8x8 block becomes one pixel
// worth its DC coefficient. libjpeg-turbo's 1/8 decode still walks every Huffman code to find where
// each block ends, and that walk is about 90% of its time on a 4000x3000 photo. This reader walks
// the codes faster: the entropy data is unstuffed once up front (0xFF00 -> 0xFF, restart markers
// noted), so the bit buffer refills with one unaligned load and no per-byte checks, and one table
// lookup gives the next AC code or two with their magnitude bits and how far they move through
// the block, so skipping coefficients is a lookup and a shift (2.1x libjpeg-turbo's 1/8 decode on
// 4000x3000 photos; one code a lookup was 1.4x).
//
// Every luma pixel equals libjpeg-turbo's 1/8 output (the DC, dequantised, divided by 8 with
// rounding, level-shifted). Chroma that is subsampled differs: libjpeg-turbo gives it a 2x2
// reduced inverse DCT (AC coefficients included), this reader upsamples the chroma DC planes with
// the triangle filter libjpeg uses for "fancy" upsampling.
//
// Anything outside the plain case (progressive, arithmetic coding, 12-bit, several scans, RGB or
// CMYK colour, sampling factors other than 1 and 2 apart) and any irregularity in the data (a bad
// code, a block running past 63 coefficients, restart markers out of order, data ending early)
// returns "not handled", and the caller decodes the file with libjpeg, which then reports errors
// its own way. So this reader never has to produce an error message.
#include "image_codecs.h"

#include <stdlib.h>
#include <string.h>

enum {
    LOOKUP_BITS = 11,     // fast-table index width: two AC tables of 8 KiB stay in a 32 KiB
                          // L1d (12 bits ran 4% faster with a 48 KiB one, 13 and 14 slower)
    MAX_COMPONENTS = 3,
    PAD_BYTES = 4096,     // zeros after the unstuffed data: what one MCU can over-read (10 blocks of
                          // at most 64 codes of 26 bits) before the per-MCU bound check sees it
    EOB_ADVANCE = 100,    // the AC table's "block ends here": pushes the coefficient index past 64
};

// A fast-table entry. For DC tables: the code's length | its magnitude bits << 5. For AC tables,
// one or two codes, each with its magnitude bits, that the next LOOKUP_BITS bits determine:
//   bits  0-4   bits to consume for all of them
//   bits  5-12  how far they move the coefficient index (run + 1 per coefficient, 16 for a run of
//               16 zeros, EOB_ADVANCE for the end of the block)
//   bits 13-19  the advance of the first code alone
//   bits 20-24  the bits of the first code alone (with its magnitude)
// Two codes share an entry only when the first is not an end of block; the decoder takes the first
// alone when it ends the block (its advance reaches 64). 0: the code is longer than LOOKUP_BITS.
typedef uint32_t fast_entry;

static inline fast_entry ac_entry(unsigned bits, unsigned advance, unsigned first_advance,
                                  unsigned first_bits) {
    return bits | advance << 5 | first_advance << 13 | first_bits << 20;
}

typedef struct {
    fast_entry fast[1 << LOOKUP_BITS];
    // Canonical decoding of the longer codes: the largest code of each length (-1: none), and
    // where that length's symbols start in `symbols`, less its first code.
    int32_t max_code[17];
    int32_t offset[17];
    uint8_t symbols[256];
    int defined;
} huffman_table;

typedef struct {
    int id, h, v, quant;      // from the frame header
    int dc_table, ac_table;   // from the scan header
    int blocks_wide, blocks_high;  // blocks holding image data
    int plane_wide, plane_high;    // blocks coded, with the MCU padding
    int32_t *plane;                // DC coefficients, plane_wide x plane_high
} component;

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t max_pixels;
    int min_short_side;               // the caller's target: 1/8 must reach it
    int width, height, count;
    int h_max, v_max;
    int mcu_wide, mcu_high;           // MCUs of the scan (blocks, for one component)
    component comp[MAX_COMPONENTS];
    int scan_order[MAX_COMPONENTS];   // frame component index for each scan component
    int scan_count;
    int quant_dc[4];                  // DC entry of each quantisation table, 0 when undefined
    huffman_table dc[4], ac[4];
    unsigned restart_interval;
    int saw_jfif, saw_adobe, adobe_transform;
    size_t scan_start;                // first byte of entropy-coded data
} frame;

static unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

static unsigned ac_advance(uint8_t rs) {
    const unsigned r = rs >> 4, s = rs & 15;
    return s ? r + 1 : (r == 15 ? 16 : EOB_ADVANCE);  // libjpeg ends the block on any s = 0, r < 15
}

// Builds the canonical codes of a DHT table. Returns 0 when the counts over-subscribe the code
// space or a symbol's magnitude exceeds what baseline 8-bit data can hold.
static int build_table(huffman_table *t, const uint8_t counts[16], const uint8_t *symbols, int n,
                       int is_ac) {
    memset(t, 0, sizeof *t);
    memcpy(t->symbols, symbols, (size_t)n);
    // One code per entry first, with each entry's code length (for pairing below).
    uint8_t code_length[1 << LOOKUP_BITS] = {0};
    int code = 0, k = 0;
    for (int len = 1; len <= 16; len++) {
        const int c = counts[len - 1];
        t->offset[len] = k - code;
        t->max_code[len] = c ? code + c - 1 : -1;
        for (int i = 0; i < c; i++, k++, code++) {
            if (code >= 1 << len) return 0;  // over-subscribed
            const uint8_t rs = t->symbols[k];
            const unsigned s = rs & 15;
            if (is_ac ? s > 10 : rs > 11) return 0;
            if (len > LOOKUP_BITS) continue;
            const unsigned advance = ac_advance(rs);
            const fast_entry entry = is_ac ? ac_entry((unsigned)len + s, advance, advance, (unsigned)len + s)
                                           : (fast_entry)((unsigned)len | s << 5);
            const int shift = LOOKUP_BITS - len;
            for (int j = 0; j < 1 << shift; j++) {
                t->fast[(code << shift) | j] = entry;
                code_length[(code << shift) | j] = (uint8_t)len;
            }
        }
        if (code >= 1 << len) return 0;  // over-subscribed, or an all-ones code (as libjpeg)
        code <<= 1;
    }
    // Pairs: where the first code and its magnitude leave enough of the looked-up bits to hold
    // the whole of a second code, one entry covers both. Entries are rewritten in place from the
    // low index up, but each pairing reads a single entry at a different index whose own first
    // code is untouched: bits 20-24 and 13-19 always describe the first code, so read those.
    if (is_ac) {
        const unsigned mask = (1u << LOOKUP_BITS) - 1;
        for (unsigned i = 0; i <= mask; i++) {
            const fast_entry e = t->fast[i];
            if (e == 0) continue;
            const unsigned n1 = e >> 20 & 31, a1 = e >> 13 & 127;
            if (a1 == EOB_ADVANCE || n1 >= LOOKUP_BITS) continue;
            const unsigned j = (i << n1) & mask;
            const fast_entry second = t->fast[j];
            const unsigned len2 = code_length[j];
            if (second == 0 || len2 > LOOKUP_BITS - n1) continue;
            const unsigned n2 = second >> 20 & 31, a2 = second >> 13 & 127;
            t->fast[i] = ac_entry(n1 + n2, a1 + a2, a1, n1);
        }
    }
    t->defined = 1;
    return 1;
}

// MARK: - headers

// Reads the markers up to and including the start of scan. Returns 0 for anything this reader
// does not handle.
static int read_headers(frame *f) {
    const uint8_t *d = f->data;
    const size_t n = f->size;
    size_t i = 2;  // after SOI, which the caller checked
    int saw_frame = 0;
    for (;;) {
        if (i + 4 > n || d[i] != 0xFF) return 0;
        while (i < n && d[i] == 0xFF) i++;  // fill bytes
        if (i + 3 > n) return 0;
        const uint8_t marker = d[i++];
        if (marker == 0x01) return 0;  // TEM, a marker without a length
        const size_t length = be16(d + i);
        if (length < 2 || i + length > n) return 0;
        const uint8_t *s = d + i + 2;
        const size_t body = length - 2;
        switch (marker) {
        case 0xC0:
        case 0xC1: {  // baseline and extended sequential, Huffman
            if (saw_frame || body < 6 || s[0] != 8) return 0;
            f->height = (int)be16(s + 1);
            f->width = (int)be16(s + 3);
            f->count = s[5];
            if (f->height == 0 || f->width == 0) return 0;  // DNL-defined height: not handled
            if (f->height > 65500 || f->width > 65500) return 0;  // libjpeg's JPEG_MAX_DIMENSION
            // Smaller photos decode at a larger scale: decline before building any table (the
            // frame header usually precedes the Huffman tables).
            const int shorter = f->width < f->height ? f->width : f->height;
            if ((shorter + 7) / 8 < f->min_short_side) return 0;
            if ((f->count != 1 && f->count != 3) || body != 6 + 3 * (size_t)f->count) return 0;
            for (int c = 0; c < f->count; c++) {
                component *cp = &f->comp[c];
                cp->id = s[6 + 3 * c];
                cp->h = s[7 + 3 * c] >> 4;
                cp->v = s[7 + 3 * c] & 15;
                cp->quant = s[8 + 3 * c];
                if (cp->h < 1 || cp->h > 4 || cp->v < 1 || cp->v > 4 || cp->quant > 3) return 0;
                for (int e = 0; e < c; e++)
                    if (f->comp[e].id == cp->id) return 0;
            }
            saw_frame = 1;
            break;
        }
        case 0xC4: {  // Huffman tables, possibly several
            size_t j = 0;
            while (j < body) {
                if (j + 17 > body) return 0;
                const int tc = s[j] >> 4, th = s[j] & 15;
                if (tc > 1 || th > 3) return 0;
                int total = 0;
                for (int b = 0; b < 16; b++) total += s[j + 1 + b];
                if (total > 256 || j + 17 + (size_t)total > body) return 0;
                huffman_table *t = tc ? &f->ac[th] : &f->dc[th];
                if (!build_table(t, s + j + 1, s + j + 17, total, tc)) return 0;
                j += 17 + (size_t)total;
            }
            break;
        }
        case 0xDB: {  // quantisation tables; only the DC entry (the first) matters here
            size_t j = 0;
            while (j < body) {
                const int pq = s[j] >> 4, tq = s[j] & 15;
                if (pq > 1 || tq > 3) return 0;
                const size_t table = pq ? 128 : 64;
                if (j + 1 + table > body) return 0;
                f->quant_dc[tq] = pq ? (int)be16(s + j + 1) : s[j + 1];
                j += 1 + table;
            }
            break;
        }
        case 0xDD:  // restart interval
            if (body != 2) return 0;
            f->restart_interval = be16(s);
            break;
        case 0xE0:
            if (body >= 5 && memcmp(s, "JFIF\0", 5) == 0) f->saw_jfif = 1;
            break;
        case 0xEE:
            if (body >= 12 && memcmp(s, "Adobe", 5) == 0) {
                f->saw_adobe = 1;
                f->adobe_transform = s[11];
            }
            break;
        case 0xDA: {  // start of scan: must cover every component in one interleaved scan
            if (!saw_frame || body < 1) return 0;
            const int ns = s[0];
            if (ns != f->count || body != 4 + 2 * (size_t)ns) return 0;
            for (int k = 0; k < ns; k++) {
                const int id = s[1 + 2 * k], td = s[2 + 2 * k] >> 4, ta = s[2 + 2 * k] & 15;
                int c = 0;
                while (c < f->count && f->comp[c].id != id) c++;
                if (c == f->count || td > 3 || ta > 3) return 0;
                for (int e = 0; e < k; e++)
                    if (f->scan_order[e] == c) return 0;
                if (!f->dc[td].defined || !f->ac[ta].defined) return 0;
                f->comp[c].dc_table = td;
                f->comp[c].ac_table = ta;
                f->scan_order[k] = c;
            }
            const uint8_t *tail = s + 1 + 2 * ns;
            if (tail[0] != 0 || tail[1] != 63 || tail[2] != 0) return 0;  // Ss, Se, Ah/Al
            f->scan_count = ns;
            f->scan_start = i + length;
            return 1;
        }
        case 0xC2: case 0xC3: case 0xC5: case 0xC6: case 0xC7: case 0xC9: case 0xCA: case 0xCB:
        case 0xCD: case 0xCE: case 0xCF: case 0xCC: case 0xDC: case 0xD8: case 0xD9:
            return 0;  // progressive, lossless, hierarchical, arithmetic; DNL; stray SOI/EOI
        default:
            // APPn and COM are skipped; libjpeg refuses other markers here (restarts outside a
            // scan, reserved codes), so this reader declines them.
            if (!(marker >= 0xE0 && marker <= 0xEF) && marker != 0xFE) return 0;
            break;
        }
        i += length;
    }
}

// The colour space libjpeg would infer, reduced to "YCbCr or grey, which this reader converts"
// against everything else. An Adobe marker that does not say YCbCr declines, JFIF or not, so that
// the order in which libjpeg weighs the two markers never matters.
static int colour_handled(const frame *f) {
    if (f->count == 1) return 1;
    if (f->saw_adobe) return f->adobe_transform == 1;
    if (f->saw_jfif) return 1;
    return !(f->comp[0].id == 'R' && f->comp[1].id == 'G' && f->comp[2].id == 'B');
}

// Sets the block geometry. Returns 0 for sampling this reader does not upsample (chroma must be
// the luma's resolution or half of it, per direction) or for images over the pixel bound.
static int plan_geometry(frame *f) {
    if (f->max_pixels != 0 && (size_t)f->width * (size_t)f->height > f->max_pixels) return 0;
    if (f->count == 1) {  // one component: a non-interleaved scan, whatever its sampling factors
        f->comp[0].h = f->comp[0].v = 1;
    }
    f->h_max = f->v_max = 1;
    for (int c = 0; c < f->count; c++) {
        if (f->comp[c].h > f->h_max) f->h_max = f->comp[c].h;
        if (f->comp[c].v > f->v_max) f->v_max = f->comp[c].v;
    }
    if (f->comp[0].h != f->h_max || f->comp[0].v != f->v_max) return 0;
    int blocks_per_mcu = 0;
    for (int c = 0; c < f->count; c++) blocks_per_mcu += f->comp[c].h * f->comp[c].v;
    if (f->count > 1 && blocks_per_mcu > 10) return 0;  // more blocks an MCU than JPEG allows
    f->mcu_wide = (f->width + 8 * f->h_max - 1) / (8 * f->h_max);
    f->mcu_high = (f->height + 8 * f->v_max - 1) / (8 * f->v_max);
    for (int c = 0; c < f->count; c++) {
        component *cp = &f->comp[c];
        const int fx = f->h_max / cp->h, fy = f->v_max / cp->v;
        if (fx * cp->h != f->h_max || fy * cp->v != f->v_max || fx > 2 || fy > 2) return 0;
        if (f->quant_dc[cp->quant] == 0) return 0;
        const int samples_wide = (int)(((long)f->width * cp->h + f->h_max - 1) / f->h_max);
        const int samples_high = (int)(((long)f->height * cp->v + f->v_max - 1) / f->v_max);
        cp->blocks_wide = (samples_wide + 7) / 8;
        cp->blocks_high = (samples_high + 7) / 8;
        // One component (h = v = 1 here) has an MCU a block, the image's blocks; several are
        // coded in whole MCUs.
        cp->plane_wide = f->mcu_wide * cp->h;
        cp->plane_high = f->mcu_high * cp->v;
    }
    return 1;
}

// MARK: - entropy data

// Copies the scan's entropy-coded bytes with the stuffing removed. Each restart interval's start
// (in `clean`) goes to `starts`. Returns the clean length, or -1 when the data ends without a
// marker, restart markers come out of order or there are more intervals than the frame has.
// `end` gets the position of the marker that ends the scan.
static long unstuff(const uint8_t *d, size_t n, size_t from, uint8_t *clean, size_t *starts,
                    size_t max_starts, size_t *start_count, size_t *end) {
    size_t out = 0, i = from, intervals = 1;
    starts[0] = 0;
    for (;;) {
        const uint8_t *ff = memchr(d + i, 0xFF, n - i);
        if (ff == NULL) return -1;
        const size_t at = (size_t)(ff - d);
        memcpy(clean + out, d + i, at - i);
        out += at - i;
        size_t j = at + 1;
        while (j < n && d[j] == 0xFF) j++;  // fill bytes before a marker
        if (j >= n) return -1;
        const uint8_t b = d[j];
        if (b == 0x00 && j == at + 1) {
            clean[out++] = 0xFF;
            i = j + 1;
        } else if (b >= 0xD0 && b <= 0xD7) {
            if (b != 0xD0 + ((intervals - 1) & 7) || intervals == max_starts) return -1;
            starts[intervals++] = out;
            i = j + 1;
        } else if (b == 0x00) {
            return -1;  // 0xFF 0xFF 0x00: not a valid stuffing
        } else {
            *end = at;
            *start_count = intervals;
            return (long)out;
        }
    }
}

typedef struct {
    uint64_t acc;  // the next bits, left-aligned; bits below the valid ones are zero
    int count;     // how many of acc's bits are valid
    const uint8_t *next;
} bit_reader;

// Tops the buffer up to at least 56 valid bits. Reads 8 bytes at `next`: the clean buffer has
// PAD_BYTES of zeros after the data, and the caller bounds how far the position runs.
static inline void refill(bit_reader *b) {
    uint64_t word;
    memcpy(&word, b->next, 8);
    word = __builtin_bswap64(word);
    b->acc |= word >> b->count;
    b->next += (63 - b->count) >> 3;
    b->count |= 56;
}

static inline uint32_t take(bit_reader *b, int bits) {  // 1 <= bits <= 16, bits <= count
    const uint32_t value = (uint32_t)(b->acc >> (64 - bits));
    b->acc <<= bits;
    b->count -= bits;
    return value;
}

// The symbol of a code longer than LOOKUP_BITS; -1 for a code no table entry has.
static int slow_symbol(bit_reader *b, const huffman_table *t) {
    for (int len = LOOKUP_BITS + 1; len <= 16; len++) {
        const int32_t code = (int32_t)(b->acc >> (64 - len));
        if (code <= t->max_code[len]) {
            b->acc <<= len;
            b->count -= len;
            return t->symbols[t->offset[len] + code];
        }
    }
    return -1;
}

// Decodes one block: adds its DC difference to *dc and skips its AC codes. Returns 0 for corrupt
// data. The buffer holds at least 56 bits on entry.
static inline int decode_block(bit_reader *b, const huffman_table *dct, const huffman_table *act,
                               int32_t *dc) {
    int s;
    const fast_entry e = dct->fast[b->acc >> (64 - LOOKUP_BITS)];
    if (e) {
        const int len = e & 31;
        s = (int)(e >> 5);
        b->acc <<= len;
        b->count -= len;
    } else {
        const int symbol = slow_symbol(b, dct);
        if (symbol < 0) return 0;
        s = symbol;
    }
    if (s) {  // at most 16 + 11 bits so far: within the 56
        const uint32_t v = take(b, s);
        const int32_t diff = v < (1u << (s - 1)) ? (int32_t)v - (int32_t)((1u << s) - 1) : (int32_t)v;
        *dc = (int32_t)((uint32_t)*dc + (uint32_t)diff);  // wraps on nonsense data, never UB
    }
    // An entry consumes at most 26 bits (one code of 16 and its 10 magnitude bits, or two codes
    // within LOOKUP_BITS and a magnitude): two entries fit in a 56-bit refill.
    const fast_entry *fast = act->fast;
    unsigned k = 1;
    for (;;) {
        refill(b);
        for (int twice = 0; twice < 2; twice++) {
            fast_entry a = fast[b->acc >> (64 - LOOKUP_BITS)];
            if (__builtin_expect(a == 0, 0)) {  // a long code: decode it alone
                const int rs = slow_symbol(b, act);
                if (rs < 0) return 0;
                const unsigned m = (unsigned)rs & 15, advance = ac_advance((uint8_t)rs);
                a = ac_entry(m, advance, advance, m);
            }
            const unsigned advance = a >> 5 & 255;
            if (__builtin_expect(k + advance < 64, 1)) {
                const unsigned n = a & 31;
                b->acc <<= n;
                b->count -= (int)n;
                k += advance;
                continue;
            }
            // The block ends here: with the first code when its own advance reaches 64 (what
            // follows it belongs to the next block), else with the second.
            const unsigned first = a >> 13 & 127;
            const unsigned n = k + first >= 64 ? a >> 20 & 31 : a & 31;
            k += k + first >= 64 ? first : advance;
            b->acc <<= n;
            b->count -= (int)n;
            return k == 64 || k >= EOB_ADVANCE;
        }
    }
}

// MARK: - pixels

static inline uint8_t clamp_byte(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

// One component's samples at the output resolution (luma's blocks): the DC dequantised and
// divided by 8 with rounding, level-shifted, then (for subsampled chroma) upsampled by the
// triangle filter: each output sample is 3/4 of its nearer source sample and 1/4 of the next one
// out, per direction, edges replicated.
static int component_samples(const frame *f, const component *cp, int out_wide, int out_high,
                             uint8_t *out) {
    const int q = f->quant_dc[cp->quant];
    const int w = cp->blocks_wide, h = cp->blocks_high;
    uint8_t *level = malloc((size_t)w * (size_t)h);
    if (level == NULL) return 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const int64_t v = (int64_t)cp->plane[(size_t)y * (size_t)cp->plane_wide + (size_t)x] * q;
            const int64_t shifted = ((v + 4) >> 3) + 128;
            level[(size_t)y * (size_t)w + (size_t)x] =
                (uint8_t)(shifted < 0 ? 0 : shifted > 255 ? 255 : shifted);
        }
    const int fx = f->h_max / cp->h, fy = f->v_max / cp->v;
    int16_t *column = malloc((size_t)w * sizeof *column);  // one row after the vertical pass
    if (column == NULL) {
        free(level);
        return 0;
    }
    for (int y = 0; y < out_high; y++) {
        // Vertically: 3/4 of the nearer source row and 1/4 of the next one out (or all of one row).
        const int sy = fy == 2 ? y / 2 : (y < h ? y : h - 1);
        const int ny = fy == 2 ? (y & 1 ? (sy + 1 < h ? sy + 1 : sy) : (sy > 0 ? sy - 1 : 0)) : sy;
        const uint8_t *near = level + (size_t)sy * (size_t)w, *far = level + (size_t)ny * (size_t)w;
        for (int x = 0; x < w; x++) column[x] = (int16_t)(3 * near[x] + far[x]);
        // Horizontally the same, so each sample is a sum out of 16; the rounding bias alternates
        // between columns, as libjpeg's does, so that it does not drift one way.
        uint8_t *row = out + (size_t)y * (size_t)out_wide;
        if (fx == 1) {
            for (int x = 0; x < out_wide; x++)
                row[x] = (uint8_t)((4 * column[x < w ? x : w - 1] + 7 + (x & 1)) >> 4);
        } else {
            for (int x = 0; x < out_wide; x++) {
                const int sx = x / 2;
                const int nx = x & 1 ? (sx + 1 < w ? sx + 1 : sx) : (sx > 0 ? sx - 1 : 0);
                row[x] = (uint8_t)((3 * column[sx] + column[nx] + 7 + (x & 1)) >> 4);
            }
        }
    }
    free(column);
    free(level);
    return 1;
}

// YCbCr (JFIF, full range) to RGB in 16-bit fixed point, rounded.
static void ycc_to_rgb(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, size_t count,
                       uint8_t *rgb) {
    enum { ONE = 1 << 16, HALF = 1 << 15 };
    const int cr_r = (int)(1.40200 * ONE + 0.5), cb_b = (int)(1.77200 * ONE + 0.5);
    const int cb_g = (int)(0.34414 * ONE + 0.5), cr_g = (int)(0.71414 * ONE + 0.5);
    for (size_t i = 0; i < count; i++) {
        const int l = y[i], u = cb[i] - 128, v = cr[i] - 128;
        rgb[3 * i + 0] = clamp_byte(l + ((cr_r * v + HALF) >> 16));
        rgb[3 * i + 1] = clamp_byte(l + ((-cb_g * u - cr_g * v + HALF) >> 16));
        rgb[3 * i + 2] = clamp_byte(l + ((cb_b * u + HALF) >> 16));
    }
}

// MARK: - the decode

static int decode_scan(frame *f, const uint8_t *clean, size_t clean_length, const size_t *starts,
                       size_t start_count) {
    const int mcu_wide = f->mcu_wide, mcu_high = f->mcu_high;
    const size_t mcus = (size_t)mcu_wide * (size_t)mcu_high;
    const size_t interval = f->restart_interval ? f->restart_interval : mcus;
    if ((mcus + interval - 1) / interval != start_count) return 0;
    const uint8_t *limit = clean + clean_length;
    int32_t pred[MAX_COMPONENTS] = {0};
    bit_reader b = {0, 0, clean};
    size_t interval_index = 0, left = interval;
    for (int my = 0; my < mcu_high; my++) {
        for (int mx = 0; mx < mcu_wide; mx++) {
            if (left == 0) {  // the next interval starts byte-aligned where its marker was
                // The interval just read must have ended within its own bytes.
                if ((size_t)(b.next - clean) * 8 - (size_t)b.count > starts[interval_index + 1] * 8)
                    return 0;
                interval_index++;
                b = (bit_reader){0, 0, clean + starts[interval_index]};
                memset(pred, 0, sizeof pred);
                left = interval;
            }
            left--;
            for (int k = 0; k < f->scan_count; k++) {
                component *cp = &f->comp[f->scan_order[k]];
                const huffman_table *dct = &f->dc[cp->dc_table], *act = &f->ac[cp->ac_table];
                int32_t *p = &pred[f->scan_order[k]];
                for (int v = 0; v < cp->v; v++) {
                    int32_t *row = cp->plane + (size_t)(my * cp->v + v) * (size_t)cp->plane_wide +
                                   (size_t)mx * (size_t)cp->h;
                    for (int h = 0; h < cp->h; h++) {
                        refill(&b);
                        if (!decode_block(&b, dct, act, p)) return 0;
                        row[h] = *p;
                    }
                }
            }
            // Past the data (into the zero padding): the file is corrupt or truncated.
            if (b.next - (b.count >> 3) > limit) return 0;
        }
    }
    return (size_t)(b.next - clean) * 8 - (size_t)b.count <= clean_length * 8;
}

int qic_jpeg_decode_eighth(const uint8_t *data, size_t size, size_t max_pixels, int min_short_side,
                           qic_image *out) {
    if (size < 4 || data[0] != 0xFF || data[1] != 0xD8) return 0;
    frame *f = calloc(1, sizeof *f);
    if (f == NULL) return 0;
    f->data = data;
    f->size = size;
    f->max_pixels = max_pixels;
    f->min_short_side = min_short_side;
    int handled = 0;
    uint8_t *clean = NULL, *pixels = NULL, *samples = NULL;
    size_t *starts = NULL;
    if (!read_headers(f) || !colour_handled(f) || !plan_geometry(f)) goto done;
    const int out_wide = (f->width + 7) / 8, out_high = (f->height + 7) / 8;
    for (int c = 0; c < f->count; c++) {
        component *cp = &f->comp[c];
        cp->plane = malloc((size_t)cp->plane_wide * (size_t)cp->plane_high * sizeof(int32_t));
        if (cp->plane == NULL) goto done;
    }
    const size_t mcus = (size_t)f->mcu_wide * (size_t)f->mcu_high;
    const size_t max_starts = f->restart_interval ? mcus / f->restart_interval + 1 : 1;
    clean = malloc(size - f->scan_start + PAD_BYTES);
    starts = malloc(max_starts * sizeof *starts);
    if (clean == NULL || starts == NULL) goto done;
    size_t start_count = 0, end = 0;
    const long clean_length =
        unstuff(data, size, f->scan_start, clean, starts, max_starts, &start_count, &end);
    if (clean_length < 0) goto done;
    memset(clean + clean_length, 0, PAD_BYTES);
    // The scan must be the file's last: the marker after it has to be the end of image.
    if (end + 1 >= size || data[end + 1] != 0xD9) goto done;
    if (!decode_scan(f, clean, (size_t)clean_length, starts, start_count)) goto done;

    // Grey samples are the pixels; colour goes through planes of Y, Cb and Cr.
    const size_t plane = (size_t)out_wide * (size_t)out_high;
    pixels = malloc(plane * (size_t)f->count);
    samples = f->count == 1 ? pixels : malloc(plane * (size_t)f->count);
    if (samples == NULL || pixels == NULL) goto done;
    for (int c = 0; c < f->count; c++)
        if (!component_samples(f, &f->comp[c], out_wide, out_high, samples + plane * (size_t)c))
            goto done;
    if (f->count == 3) ycc_to_rgb(samples, samples + plane, samples + 2 * plane, plane, pixels);
    out->width = out_wide;
    out->height = out_high;
    out->channels = f->count;
    out->bit_depth = 8;
    out->pixels = pixels;
    out->format = QIC_FORMAT_JPEG;
    out->source_width = f->width;
    out->source_height = f->height;
    if (samples == pixels) samples = NULL;  // grey: the caller owns them now
    pixels = NULL;
    handled = 1;
done:
    for (int c = 0; c < MAX_COMPONENTS; c++) free(f->comp[c].plane);
    free(f);
    free(clean);
    free(starts);
    if (samples != pixels) free(samples);
    free(pixels);
    return handled;
}
