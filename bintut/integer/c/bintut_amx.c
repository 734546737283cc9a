/*
 * bintut_amx.c -- the AMX-INT8 path of the fast kernels (included by bintut_fast.c on x86-64 with gcc or
 * clang). Same integers as the reference kernel, checked layer by layer by layer_check.c.
 *
 * Each binary conv is a matrix product: rows are output positions (of up to BINTUT_AMX_GROUP images, so
 * that each expanded weight serves them all), columns output channels, and k = tap * cin + c runs over
 * the window. The sign masks of 32 channels are expanded into +-1 weight tiles (one VPBLENDMB per 64
 * weights, 32 x K bytes that stay in L2), and TDPBUSD (16 x 16 int32 += 16 x 64 uint8 . 64 x 16 int8,
 * 16,384 multiply-adds per instruction) fills 2 x 2 tiles of accumulators: 32 positions x 32 channels.
 * Where output rows are whole tiles (16 or 32 wide) the input tiles are read straight from the image
 * (a copy with a zero border where the conv pads): a tap is a fixed offset, a tile 16 positions at the
 * conv's stride. Elsewhere (8 x 8 and 4 x 4 outputs) the windows are first copied into a panel (im2col).
 * The epilogues compute vnni_epilogue_row's integers with constants loaded once per 32 channels.
 *
 * Chosen at run time: the CPU must have AMX-TILE and AMX-INT8 (cpuid) and Linux must grant the tile
 * state (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), Linux 5.16 or later); elsewhere, or with
 * -DBINTUT_NO_AMX, the AVX-512 VNNI path runs. Static RAM of this path: the batch's activations and
 * shortcut accumulators (AMX_GROUP images), the panel and the weight tiles (a few MB, x86 only).
 */
#include <cpuid.h>

#ifndef BINTUT_AMX_GROUP
#define BINTUT_AMX_GROUP 4 /* images per batch that share each layer's expanded weights (8 was no faster) */
#endif
#define AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,bmi2")))
#define AMX_K (((BINTUT_MAX_TAP_BYTES) + 63) / 64 * 64) /* the largest window, padded to whole tiles */
#define AMX_PANEL_BYTES (AMX_K * 32 > (1 << 20) ? AMX_K * 32 : (1 << 20))
#define AMX_N 32 /* output channels per pass: two weight tiles */

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} amx_config;

static uint8_t amx_panel[AMX_PANEL_BYTES] __attribute__((aligned(64)));     /* rows x K input codes */
static int8_t amx_weights[AMX_K * AMX_N] __attribute__((aligned(64)));      /* [k / 64][2 tiles][16][64] */
static int32_t amx_acc[32 * 32] __attribute__((aligned(64)));               /* one 32 x 32 block */
static int8_t group_a[BINTUT_AMX_GROUP][BINTUT_BUFFER_A_BYTES] __attribute__((aligned(64)));
static int8_t group_b[BINTUT_AMX_GROUP][BINTUT_BUFFER_B_BYTES] __attribute__((aligned(64)));
static int32_t group_shortcut[BINTUT_AMX_GROUP][BINTUT_BUFFER_A_BYTES]; /* a block output's accumulators */
static int64_t group_pool[BINTUT_AMX_GROUP][BINTUT_MAX_CHANNELS];
static int amx_state; /* 0: not checked yet, 1: ready, -1: no AMX here */

/* Run once: AVX-512 VNNI ready (the masks), AMX-TILE and AMX-INT8 in cpuid, and Linux's permission. */
static int amx_ready(void)
{
    if (amx_state) return amx_state > 0;
    amx_state = -1;
#if !defined(BINTUT_NO_AMX) && defined(__linux__)
    {
        unsigned int a, b, c, d;
        long granted;
        if (!vnni_ready() || !__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25)))
            return 0;
        /* arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18): system call 158 on x86-64 */
        __asm__ volatile("syscall" : "=a"(granted) : "a"(158L), "D"(0x1023L), "S"(18L) : "rcx", "r11", "memory");
        if (granted == 0) amx_state = 1;
    }
#endif
    return amx_state > 0;
}

/* Eight tiles of 16 rows x 64 bytes: 0-3 accumulators, 4-5 inputs, 6-7 weights. */
static AMX_TARGET void amx_configure(void)
{
    static amx_config config;
    int t;
    config.palette = 1;
    for (t = 0; t < 8; t++) {
        config.bytes_per_row[t] = 64;
        config.rows[t] = 16;
    }
    _tile_loadconfig(&config);
}

/* The weight tiles of channels oc0 .. oc0 + 31 of layer i: for each 64 inputs, two tiles of 16 rows
 * (4 inputs each) x 16 channels x 4 inputs, +1 where a mask bit is set, -1 elsewhere (padding inputs
 * meet zero codes in the panel). */
static AMX_TARGET void amx_expand(int i, int oc0, int chunks)
{
    const uint64_t *m0 = sign_masks + mask_offset[i] + (size_t)(oc0 / 16) * mask_row[i], *m1 = m0 + mask_row[i];
    const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
    int8_t *w = amx_weights;
    int kc, r;
    for (kc = 0; kc < chunks; kc++, w += 2048, m0 += 16, m1 += 16)
        for (r = 0; r < 16; r++) {
            _mm512_store_si512(w + 64 * r, _mm512_mask_blend_epi8((__mmask64)m0[r], minus, plus));
            _mm512_store_si512(w + 1024 + 64 * r, _mm512_mask_blend_epi8((__mmask64)m1[r], minus, plus));
        }
}

/* amx_acc[r * 32 + n] = sum over k of panel row r . weight column n, for 32 rows from `a` (`k` bytes apart)
 * and the 32 expanded channels */
static AMX_TARGET void amx_block(const uint8_t *a, int k)
{
    const int8_t *w = amx_weights;
    int kc;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (kc = 0; kc < k; kc += 64, w += 2048) {
        _tile_loadd(4, a + kc, k);
        _tile_loadd(5, a + (size_t)16 * k + kc, k);
        _tile_loadd(6, w, 64);
        _tile_loadd(7, w + 1024, 64);
        _tile_dpbusd(0, 4, 6);
        _tile_dpbusd(1, 4, 7);
        _tile_dpbusd(2, 5, 6);
        _tile_dpbusd(3, 5, 7);
    }
    _tile_stored(0, amx_acc, 128);
    _tile_stored(1, amx_acc + 16, 128);
    _tile_stored(2, amx_acc + 16 * 32, 128);
    _tile_stored(3, amx_acc + 16 * 32 + 16, 128);
}

static AMX_TARGET void amx_release(void)
{
    _tile_release();
}

/* The fixed-point constants of 16 channels from c, split into even and odd channels (int64 lanes):
 * VPMULDQ multiplies the even int32 lanes, so 16 accumulators need no widening, only one shift. */
typedef struct {
    __m512i m, m_odd, bias, bias_odd, shift, shift_odd;
} amx_constants;

static AMX_TARGET amx_constants amx_load_constants(const bintut_layer *layer, int c)
{
    const __m512i one = _mm512_set1_epi64(1);
    const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0), odd = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i s0 = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const void *)(layer->shift + c)));
    const __m512i s1 = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const void *)(layer->shift + c + 8)));
    const __m512i b0 = _mm512_add_epi64(_mm512_loadu_si512(layer->bias + c), _mm512_sllv_epi64(one, _mm512_sub_epi64(s0, one)));
    const __m512i b1 = _mm512_add_epi64(_mm512_loadu_si512(layer->bias + c + 8),
                                        _mm512_sllv_epi64(one, _mm512_sub_epi64(s1, one)));
    amx_constants k;
    k.m = _mm512_loadu_si512(layer->m + c); /* 16 int32: the even ones in the low halves */
    k.m_odd = _mm512_srli_epi64(k.m, 32);
    k.bias = _mm512_permutex2var_epi64(b0, even, b1);
    k.bias_odd = _mm512_permutex2var_epi64(b0, odd, b1);
    k.shift = _mm512_permutex2var_epi64(s0, even, s1);
    k.shift_odd = _mm512_permutex2var_epi64(s0, odd, s1);
    return k;
}

/* e(x) for 16 int32 values x: the even channels' results in *odd's partner *even (int64 lanes) */
static AMX_TARGET void amx_fixed_point(__m512i x, const amx_constants *k, __m512i *even, __m512i *odd)
{
    *even = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, k->m), k->bias), k->shift);
    *odd = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), k->m_odd), k->bias_odd),
                             k->shift_odd);
}

/* 16 int8 codes clamp(v, 0, 127) from the even and odd channels' int64 values, in channel order */
static AMX_TARGET void amx_store_codes(int8_t *dst, __m512i even, __m512i odd)
{
    const __m512i zero = _mm512_setzero_si512(), top = _mm512_set1_epi64(127);
    even = _mm512_min_epi64(_mm512_max_epi64(even, zero), top);
    odd = _mm512_min_epi64(_mm512_max_epi64(odd, zero), top);
    _mm_storeu_si128((void *)dst, _mm512_cvtepi32_epi8(_mm512_or_si512(even, _mm512_slli_epi64(odd, 32))));
}

/* The epilogues of rows r0 .. r0 + n - 1 of the product (in amx_acc) for channels oc0 .. oc0 + 31: the
 * per-channel constants loaded once, then row by row, 16 channels at a time (vnni_epilogue_row's integers). */
static AMX_TARGET void amx_epilogue(const bintut_layer *layer, const fast_sink *sinks, int r0, int positions, int n,
                                    int oc0)
{
    const bintut_layer *shortcut = sinks->shortcut >= 0 ? &bintut_layers[sinks->shortcut] : NULL;
    const int cout = layer->out_channels;
    const __m512i zero = _mm512_setzero_si512();
    const __m512i half = _mm512_set1_epi64((int64_t)1 << (BINTUT_FRACTION_BITS - 1));
    const __m512i low = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0), high = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    const __m128i fraction = _mm_cvtsi32_si128(BINTUT_FRACTION_BITS);
    amx_constants k[AMX_N / 16], ks[AMX_N / 16];
    __m512i im = zero, ir = zero;
    __m128i is = _mm_setzero_si128();
    int j, r, g = r0 / positions, position = r0 % positions; /* of row r0; no division per row */
    for (j = 0; j < AMX_N / 16; j++) {
        k[j] = amx_load_constants(layer, oc0 + 16 * j);
        ks[j] = shortcut ? amx_load_constants(shortcut, oc0 + 16 * j) : k[j];
    }
    if (!shortcut && sinks->block) {
        im = _mm512_set1_epi64(sinks->block->identity_m);
        ir = _mm512_set1_epi64((int64_t)1 << (sinks->block->identity_shift - 1));
        is = _mm_cvtsi32_si128(sinks->block->identity_shift);
    }
    for (r = 0; r < n; r++, position = position + 1 < positions ? position + 1 : (g++, 0)) {
        const fast_sink *sink = &sinks[g];
        const size_t at = (size_t)position * cout + oc0;
        for (j = 0; j < AMX_N / 16; j++) {
            const size_t c = at + 16 * (size_t)j;
            __m512i even, odd;
            amx_fixed_point(_mm512_loadu_si512(amx_acc + r * 32 + 16 * j), &k[j], &even, &odd);
            if (!sink->block) {
                amx_store_codes(sink->out + c, even, odd);
                continue;
            }
            if (shortcut) {
                __m512i e2, o2;
                amx_fixed_point(_mm512_loadu_si512(sink->shortcut_acc + c), &ks[j], &e2, &o2);
                even = _mm512_add_epi64(even, e2);
                odd = _mm512_add_epi64(odd, o2);
            } else {
                const __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(sink->x + c)));
                even = _mm512_add_epi64(even, _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(v, im), ir), is));
                odd = _mm512_add_epi64(odd, _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(v, 32),
                                                                                               im), ir), is));
            }
            if (sink->last) { /* back to channel order, ReLU, into the pool */
                int64_t *sum = sink->pool + oc0 + 16 * j;
                _mm512_storeu_si512(sum, _mm512_add_epi64(_mm512_loadu_si512(sum),
                                                          _mm512_max_epi64(_mm512_permutex2var_epi64(even, low, odd),
                                                                           zero)));
                _mm512_storeu_si512(sum + 8, _mm512_add_epi64(_mm512_loadu_si512(sum + 8),
                                                              _mm512_max_epi64(_mm512_permutex2var_epi64(even, high,
                                                                                                         odd), zero)));
            } else {
                amx_store_codes(sink->out + c, _mm512_sra_epi64(_mm512_add_epi64(even, half), fraction),
                                _mm512_sra_epi64(_mm512_add_epi64(odd, half), fraction));
            }
        }
    }
}

/* Panel rows 0 .. (rows rounded up to 32) - 1, zeros beyond `rows`: row r is the window of product row r0 + r
 * (output position (r0 + r) % positions of image (r0 + r) / positions), k bytes: the cin input codes of each
 * tap (zeros where the window leaves the image), then zeros up to k. */
static AMX_TARGET void amx_fill_panel(const bintut_layer *layer, const int8_t *const *in, int size, int o,
                                      int positions, int r0, int rows, int k)
{
    const int cin = layer->in_channels, kernel = layer->kernel, taps = kernel * kernel, full = cin / 64 * 64;
    const __mmask64 tail = _bzhi_u64(~(uint64_t)0, (unsigned)(cin - full));
    const __mmask64 rest = _bzhi_u64(~(uint64_t)0, (unsigned)(k - taps * cin));
    const __m512i zero = _mm512_setzero_si512();
    int r, dy, dx, c;
    for (r = 0; r < (rows + 31) / 32 * 32; r++) {
        uint8_t *dst = amx_panel + (size_t)r * k;
        if (r < rows) {
            const int p = (r0 + r) % positions, oy = p / o, ox = p % o;
            const uint8_t *x = (const uint8_t *)in[(r0 + r) / positions];
            for (dy = 0; dy < kernel; dy++) {
                const int iy = oy * layer->stride - layer->padding + dy;
                for (dx = 0; dx < kernel; dx++, dst += cin) {
                    const int ix = ox * layer->stride - layer->padding + dx;
                    const uint8_t *src = iy < 0 || iy >= size || ix < 0 || ix >= size
                                             ? zero_page
                                             : x + ((size_t)iy * size + ix) * cin;
                    for (c = 0; c < full; c += 64) _mm512_storeu_si512(dst + c, _mm512_loadu_si512(src + c));
                    if (tail) _mm512_mask_storeu_epi8(dst + full, tail, _mm512_maskz_loadu_epi8(tail, src + full));
                }
            }
            _mm512_mask_storeu_epi8(dst, rest, zero); /* k - taps * cin < 64 */
        } else {
            for (c = 0; c < k; c += 64) _mm512_storeu_si512(dst + c, zero);
        }
    }
}

/* amx_block for a 3 x 3 (or any) conv read straight from the input, no panel: rows 0-15 are 16 output
 * positions of one output row at a0, rows 16-31 those at a1 (`stride` bytes apart: the conv's stride x cin),
 * and the window's taps are `offsets` (bytes) from there, cin codes each. */
static AMX_TARGET void amx_block_direct(const uint8_t *a0, const uint8_t *a1, int stride, const int *offsets,
                                        int taps, int cin)
{
    const int8_t *w = amx_weights;
    int t, c;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (t = 0; t < taps; t++)
        for (c = offsets[t]; c < offsets[t] + cin; c += 64, w += 2048) {
            _tile_loadd(4, a0 + c, stride);
            _tile_loadd(5, a1 + c, stride);
            _tile_loadd(6, w, 64);
            _tile_loadd(7, w + 1024, 64);
            _tile_dpbusd(0, 4, 6);
            _tile_dpbusd(1, 4, 7);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbusd(3, 5, 7);
        }
    _tile_stored(0, amx_acc, 128);
    _tile_stored(1, amx_acc + 16, 128);
    _tile_stored(2, amx_acc + 16 * 32, 128);
    _tile_stored(3, amx_acc + 16 * 32 + 16, 128);
}

/* Image x (size x size x cin codes) with a border of `pad` zeros into dst ((size + 2 pad)^2 x cin). */
static AMX_TARGET void amx_pad(uint8_t *dst, const int8_t *x, int size, int pad, int cin)
{
    const int row = (size + 2 * pad) * cin, inner = size * cin, side = pad * cin;
    const __m512i zero = _mm512_setzero_si512();
    int y, c;
    for (y = 0; y < size + 2 * pad; y++, dst += row) {
        if (y < pad || y >= size + pad) {
            for (c = 0; c < row; c += 64) _mm512_storeu_si512(dst + c, zero);
            continue;
        }
        for (c = 0; c < side; c += 64) {
            _mm512_storeu_si512(dst + c, zero);
            _mm512_storeu_si512(dst + side + inner + c, zero);
        }
        memcpy(dst + side, x + (size_t)(y - pad) * inner, (size_t)inner);
    }
}

/* Layer i straight from its input, for output rows of whole tiles (o a multiple of 16) and cin a multiple of
 * 64 (ResNet18's layers 1 and 2): no panel, each input code read from L1/L2 by 9 taps' tile loads; a padded
 * copy of each image (zeros around it) where the conv pads. Returns 0 when the copies do not fit. */
static int amx_layer_direct(int i, const int8_t *const *in, int count, int size, const fast_sink *sinks)
{
    const bintut_layer *layer = &bintut_layers[i];
    const int o = output_size(layer, size), positions = o * o, cout = layer->out_channels, cin = layer->in_channels;
    const int kernel = layer->kernel, pad = layer->padding, padded = size + 2 * pad;
    const size_t image_bytes = (size_t)padded * padded * cin;
    const uint8_t *base[BINTUT_AMX_GROUP];
    int offsets[MAX_TAPS];
    int g, dy, dx, oc0, r, j;
    if (o % 16 || cin % 64 || (pad && (size_t)count * image_bytes > AMX_PANEL_BYTES)) return 0;
    for (g = 0; g < count; g++) {
        if (pad) amx_pad(amx_panel + g * image_bytes, in[g], size, pad, cin);
        base[g] = pad ? amx_panel + g * image_bytes : (const uint8_t *)in[g];
    }
    for (dy = 0; dy < kernel; dy++)
        for (dx = 0; dx < kernel; dx++) offsets[dy * kernel + dx] = (dy * padded + dx) * cin;
    amx_configure();
    for (oc0 = 0; oc0 < cout; oc0 += AMX_N) {
        amx_expand(i, oc0, (kernel * kernel * cin + 63) / 64);
        for (r = 0; r < count * positions; r += 32) { /* 32 rows: two runs of 16 positions, one image */
            const uint8_t *a[2];
            for (j = 0; j < 2; j++) {
                const int p = (r + 16 * j) % positions, oy = p / o, ox = p % o;
                a[j] = base[(r + 16 * j) / positions] +
                       ((size_t)oy * layer->stride * padded + (size_t)ox * layer->stride) * cin;
            }
            amx_block_direct(a[0], a[1], layer->stride * cin, offsets, kernel * kernel, cin);
            if (!sinks->raw) {
                amx_epilogue(layer, sinks, r, positions, 32, oc0);
                continue;
            }
            for (j = 0; j < 32; j++) /* layer_check.c, and shortcut convs */
                memcpy(sinks[(r + j) / positions].raw + (size_t)((r + j) % positions) * cout + oc0, amx_acc + j * 32,
                       AMX_N * sizeof(int32_t));
        }
    }
    amx_release();
    return 1;
}

/* Layer i on `count` images in[g] (size x size x cin codes): row r of the product is image r / positions,
 * position r % positions; each image's accumulators go to its sink (raw, requantized or residual). */
static void amx_layer(int i, const int8_t *const *in, int count, int size, const fast_sink *sinks)
{
    const bintut_layer *layer = &bintut_layers[i];
    const int o = output_size(layer, size), positions = o * o, cout = layer->out_channels, cin = layer->in_channels;
    const int k = (layer->kernel * layer->kernel * cin + 63) / 64 * 64, total = count * positions;
    const int chunk = AMX_PANEL_BYTES / k / 32 * 32;
    int r0, rows, r, oc0, b;
    if (amx_layer_direct(i, in, count, size, sinks)) return;
    amx_configure();
    for (r0 = 0; r0 < total; r0 += chunk) {
        rows = total - r0 < chunk ? total - r0 : chunk;
        amx_fill_panel(layer, in, size, o, positions, r0, rows, k);
        for (oc0 = 0; oc0 < cout; oc0 += AMX_N) {
            amx_expand(i, oc0, k / 64);
            for (b = 0; b < rows; b += 32) {
                amx_block(amx_panel + (size_t)b * k, k);
                if (!sinks->raw) {
                    amx_epilogue(layer, sinks, r0 + b, positions, rows - b < 32 ? rows - b : 32, oc0);
                    continue;
                }
                for (r = b; r < rows && r < b + 32; r++) /* layer_check.c, and shortcut convs */
                    memcpy(sinks[(r0 + r) / positions].raw + (size_t)((r0 + r) % positions) * cout + oc0,
                           amx_acc + (r - b) * 32, AMX_N * sizeof(int32_t));
            }
        }
    }
    amx_release();
}

/* The whole network on `count` <= BINTUT_AMX_GROUP images (BINTUT_IMAGE_BYTES apart), layer by layer. */
static void amx_infer_group(const int8_t *images, int count, int32_t *logits)
{
    const int64_t half = (int64_t)1 << (BINTUT_FRACTION_BITS - 1);
    const bintut_layer *fc = &bintut_layers[BINTUT_NUM_LAYERS - 1];
    const int8_t *in[BINTUT_AMX_GROUP];
    fast_sink sinks[BINTUT_AMX_GROUP];
    int g, b, c, size = 0, h;
    for (g = 0; g < count; g++) {
        size = vnni_stem(images + (size_t)g * BINTUT_IMAGE_BYTES, group_a[g]);
        for (c = 0; c < BINTUT_MAX_CHANNELS; c++) group_pool[g][c] = 0;
    }
    for (b = 0; b < BINTUT_NUM_BLOCKS; b++) {
        const bintut_block *block = &bintut_blocks[b];
        memset(sinks, 0, sizeof sinks);
        for (g = 0; g < count; g++) {
            in[g] = group_a[g];
            sinks[g].out = group_b[g];
            sinks[g].shortcut = -1;
        }
        amx_layer(block->conv1, in, count, size, sinks);
        h = output_size(&bintut_layers[block->conv1], size);
        if (block->shortcut >= 0) {
            for (g = 0; g < count; g++) {
                sinks[g].out = NULL;
                sinks[g].raw = group_shortcut[g];
            }
            amx_layer(block->shortcut, in, count, size, sinks);
        }
        for (g = 0; g < count; g++) { /* conv2 + shortcut, written over the block input */
            in[g] = group_b[g];
            sinks[g].raw = NULL;
            sinks[g].out = group_a[g];
            sinks[g].block = block;
            sinks[g].shortcut = block->shortcut;
            sinks[g].shortcut_acc = block->shortcut >= 0 ? group_shortcut[g] : NULL;
            sinks[g].x = group_a[g];
            sinks[g].x_size = size;
            sinks[g].last = b == BINTUT_NUM_BLOCKS - 1;
            sinks[g].pool = group_pool[g];
        }
        amx_layer(block->conv2, in, count, h, sinks);
        size = output_size(&bintut_layers[block->conv2], h);
    }
    for (g = 0; g < count; g++) {
        for (c = 0; c < fc->in_channels; c++)
            row[c] = clamp_code(floor_shift(group_pool[g][c] + half, BINTUT_FRACTION_BITS));
        accumulate(fc, row, 1, 0, 0, acc_main);
        for (c = 0; c < BINTUT_NUM_CLASSES; c++)
            logits[(size_t)g * BINTUT_NUM_CLASSES + c] =
                (int32_t)fixed_point(acc_main[c], fc->m[c], fc->bias[c], fc->shift[c]);
    }
}
