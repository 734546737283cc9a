/*
 * bintut_fast.c -- the fast kernels (included by bintut.c when BINTUT_FAST is 1). They compute the
 * integers of the reference kernel in bintut.c, in another order; layer_check.c compares the two
 * layer by layer on random inputs, and the golden test end to end.
 *
 * What makes them fast (notebook 08 tells the story):
 *   1. Output-channel blocks outermost: the sign bits of four output channels are unpacked once
 *      into byte masks (0x00 for +1, 0xFF for -1) and reused at every output position, instead of
 *      testing one bit per add.
 *   2. No AND, no branch: activations after a ReLU are in [0, 127], so |x - mask| = x ^ mask is x
 *      for a +1 weight and 255 - x for a -1 weight; the sum over a window is acc + 255 * (number of
 *      -1 weights), a constant of the channel. On a Cortex-M4 with the DSP extension one USADA8
 *      (ACLE __usada8, __ARM_FEATURE_SIMD32: sum of four absolute byte differences, accumulated)
 *      does four of those additions; portable C sums XORed bytes in 16-bit lanes (SWAR).
 *   3. On x86-64 with AVX-512 VNNI (checked at run time; built with gcc's or clang's target
 *      attribute, so the library still runs on any x86-64): the weights as int8 +-1, unpacked once
 *      on the first call into a static table, and VPDPBUSD, 64 int8 multiply-adds per
 *      instruction, 4 positions x 64 output channels per register tile; AVX-512 epilogues.
 * The stem (3 signed input channels) and the head (one position) are small: on the portable path
 * they use the reference kernel, on the x86 path the stem is one VNNI GEMM over 27 taps.
 *
 * Compile with -DBINTUT_NO_SIMD to use only the portable C path on any machine.
 * No malloc, no float. RAM beyond the reference kernel: the masks of four output channels of a conv
 * and of its shortcut (4 x (BINTUT_MAX_TAP_BYTES + BINTUT_MAX_SHORTCUT_TAP_BYTES)); on x86-64 also the
 * unpacked int8 weights (BINTUT_FAST_WEIGHT_BYTES) and the stem's rows.
 */
#include <string.h>

#if !defined(BINTUT_NO_SIMD) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BINTUT_X86_VNNI 1
#include <immintrin.h>
#else
#define BINTUT_X86_VNNI 0
#endif
#if !defined(BINTUT_NO_SIMD) && defined(__ARM_FEATURE_SIMD32)
#define BINTUT_ARM_SIMD32 1
#include <arm_acle.h>
#else
#define BINTUT_ARM_SIMD32 0
#endif

#ifdef __GNUC__
#define COPY4(dst, src) __builtin_memcpy((dst), (src), 4) /* stays inline under -ffreestanding */
#else
#define COPY4(dst, src) memcpy((dst), (src), 4)
#endif

#define PORTABLE_CHANNELS 4 /* output channels per block (portable path) */
#define MAX_TAPS (9 * 9)

static const uint8_t zero_page[BINTUT_MAX_CHANNELS] BINTUT_ALIGN8; /* what a padded tap reads: zeros */
/* sign masks of four output channels of a conv (slot 0) and its shortcut (slot 1), see unpack_masks */
static uint32_t conv_masks[BINTUT_MAX_TAP_BYTES];          /* PORTABLE_CHANNELS masks of 4 bytes each */
static uint32_t shortcut_masks[BINTUT_MAX_SHORTCUT_TAP_BYTES];
static uint32_t *const masks[2] = {conv_masks, shortcut_masks};
static int32_t minus_weights[2][PORTABLE_CHANNELS];

#if !(BINTUT_ARM_SIMD32 && defined(__GNUC__)) /* the Arm path loads with LDRD */
static uint32_t load32(const uint8_t *p)
{
    uint32_t v;
    COPY4(&v, p);
    return v;
}
#endif

/* Pointers to the input rows (cin bytes, channels last) under each tap of output position p;
 * padded taps point at zeros. Returns the number of taps. */
static int gather_taps(const bintut_layer *layer, const int8_t *in, int size, int o, int p, const uint8_t **taps)
{
    const int k = layer->kernel, oy = p / o, ox = p % o;
    int dy, dx, t = 0;
    for (dy = 0; dy < k; dy++) {
        const int iy = oy * layer->stride - layer->padding + dy;
        for (dx = 0; dx < k; dx++, t++) {
            const int ix = ox * layer->stride - layer->padding + dx;
            if (iy < 0 || iy >= size || ix < 0 || ix >= size)
                taps[t] = zero_page;
            else
                taps[t] = (const uint8_t *)in + ((size_t)iy * size + ix) * layer->in_channels;
        }
    }
    return t;
}

/* What to do with a layer's accumulators. */
typedef struct {
    int8_t *out;          /* int8 codes (requantize, residual) */
    int32_t *raw;         /* the accumulators themselves (layer_check.c) */
    const bintut_block *block; /* residual: the block (its identity multiplier) */
    int shortcut;         /* residual: index of the shortcut layer, or -1 for the identity */
    const int8_t *x;      /* residual: the block input */
    int x_size;
    int last;             /* residual: the last block, summed into the pool */
    int64_t *pool;        /* the last block's pool sums (NULL: the static pool) */
    const int32_t *shortcut_acc; /* AMX: the shortcut conv's accumulators (position * cout + channel) */
} fast_sink;

/* ------------------------------------------------------------------ portable path (and Cortex-M4) */

/* Sign masks of the 16 nibbles, most significant bit first (the order of the packed sign bits):
 * 0xFF where the weight is -1, 0x00 where it is +1. */
static const uint8_t nibble_masks[16][4] = {
    {255, 255, 255, 255}, {255, 255, 255, 0}, {255, 255, 0, 255}, {255, 255, 0, 0},
    {255, 0, 255, 255}, {255, 0, 255, 0}, {255, 0, 0, 255}, {255, 0, 0, 0},
    {0, 255, 255, 255}, {0, 255, 255, 0}, {0, 255, 0, 255}, {0, 255, 0, 0},
    {0, 0, 255, 255}, {0, 0, 255, 0}, {0, 0, 0, 255}, {0, 0, 0, 0}};
static const uint8_t nibble_minus[16] = {4, 3, 3, 2, 3, 2, 2, 1, 3, 2, 2, 1, 2, 1, 1, 0}; /* -1 weights */

/* Sign masks of output channels oc0 .. oc0 + 3, interleaved four bytes at a time:
 * dst[16 * q + 4 * j + i] is the mask of channel oc0 + j, input (tap * cin + 4 q + i). Also
 * minus[j] = the number of -1 weights of channel oc0 + j. */
static void unpack_masks(const bintut_layer *layer, int oc0, uint32_t *words, int32_t *minus)
{
    const int cin = layer->in_channels, taps = layer->kernel * layer->kernel, row = taps * cin / 8;
    int j, i;
    for (j = 0; j < PORTABLE_CHANNELS; j++) {
        const uint8_t *bits = layer->bits + (size_t)(oc0 + j) * row;
        uint8_t *d = (uint8_t *)words + 4 * j;
        int32_t n = 0;
        for (i = 0; i < row; i++, d += 2 * 4 * PORTABLE_CHANNELS) {
            COPY4(d, nibble_masks[bits[i] >> 4]);
            COPY4(d + 4 * PORTABLE_CHANNELS, nibble_masks[bits[i] & 15]);
            n += nibble_minus[bits[i] >> 4] + nibble_minus[bits[i] & 15];
        }
        minus[j] = n;
    }
}

/* BEGIN INNER LOOP */
/* For an activation byte x in [0, 127] and a mask byte m (0x00 for a +1 weight, 0xFF for -1):
 *     |x - m| = x ^ m = x (weight +1) or 255 - x (weight -1),
 * so summing |x - m| over a window gives acc + 255 * (the number of -1 weights): no multiply, no
 * branch, no AND, one instruction per four weights on a Cortex-M4 (USADA8). Padded taps read x = 0
 * and fit the same formula. */
#if BINTUT_ARM_SIMD32
/* USADA8(v, m, s) = s + the sum of |v_i - m_i| over the four unsigned bytes */
#define SUM_BYTES(s, v, m) ((s) = __usada8((v), (m), (s)))
#define FINISH_SUM(s) ((int32_t)(s))
#define MAX_RUN (MAX_TAPS * BINTUT_MAX_CHANNELS) /* bytes per window_sums_4 call: any */
#else
/* SWAR: two 16-bit lanes, each gets two bytes (<= 2 * 255) per word: safe for 128 words (cin <= 512) */
#define SUM_BYTES(s, v, m) ((s) += (((v) ^ (m)) & 0x00FF00FFu) + ((((v) ^ (m)) >> 8) & 0x00FF00FFu))
#define FINISH_SUM(s) ((int32_t)(((s) & 0xFFFFu) + ((s) >> 16)))
#define MAX_RUN 512 /* bytes per window_sums_4 call: the 16-bit lanes hold 128 words' sums */
#endif

/* s[j] += sum over n input bytes of |x - mask_j| for the four channels of interleaved masks m (n a
 * multiple of 8; eight bytes per step, so that the compiler can pair the loads into LDRD) */
static void window_sums_4(const uint8_t *x, const uint32_t *m, int n, int32_t *s)
{
    const uint8_t *end = x + n;
    uint32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#if BINTUT_ARM_SIMD32 && defined(__GNUC__)
    /* LDRD: two words per load (gcc does not pair these loads itself); x and m are word-aligned */
#define LDRD(a, b, p) \
    __asm__("ldrd %0, %1, [%2], #8" : "=&r"(a), "=&r"(b), "+r"(p) : "m"(*(const uint32_t(*)[2])(p)))
#define STEP_8_BYTES                   \
    do {                               \
        uint32_t u, v, a, b;           \
        LDRD(u, v, x);                 \
        LDRD(a, b, m);                 \
        s0 = __usada8(u, a, s0);       \
        s1 = __usada8(u, b, s1);       \
        LDRD(a, b, m);                 \
        s2 = __usada8(u, a, s2);       \
        s3 = __usada8(u, b, s3);       \
        LDRD(a, b, m);                 \
        s0 = __usada8(v, a, s0);       \
        s1 = __usada8(v, b, s1);       \
        LDRD(a, b, m);                 \
        s2 = __usada8(v, a, s2);       \
        s3 = __usada8(v, b, s3);       \
    } while (0)
    for (; x + 16 <= end;) { /* 16 bytes per turn: 26 instructions for 64 additions, and the loop's 2 */
        STEP_8_BYTES;
        STEP_8_BYTES;
    }
    if (x < end) STEP_8_BYTES;
#undef STEP_8_BYTES
#undef LDRD
#else
#ifdef __GNUC__
    x = (const uint8_t *)__builtin_assume_aligned(x, 4); /* rows of cin bytes, cin a multiple of 8 */
#endif
    for (; x < end; x += 8, m += 8) {
        const uint32_t u = load32(x), v = load32(x + 4);
        SUM_BYTES(s0, u, m[0]);
        SUM_BYTES(s1, u, m[1]);
        SUM_BYTES(s2, u, m[2]);
        SUM_BYTES(s3, u, m[3]);
        SUM_BYTES(s0, v, m[4]);
        SUM_BYTES(s1, v, m[5]);
        SUM_BYTES(s2, v, m[6]);
        SUM_BYTES(s3, v, m[7]);
    }
#endif
    s[0] += FINISH_SUM(s0);
    s[1] += FINISH_SUM(s1);
    s[2] += FINISH_SUM(s2);
    s[3] += FINISH_SUM(s3);
}

/* END INNER LOOP */

/* acc[j] for output position p and the four channels whose masks are in slot */
static void portable_tile(const bintut_layer *layer, int slot, const int8_t *in, int size, int o, int p, int32_t *acc)
{
    const uint8_t *taps[MAX_TAPS];
    const int cin = layer->in_channels, n = gather_taps(layer, in, size, o, p, taps);
    int32_t s[PORTABLE_CHANNELS] = {0, 0, 0, 0};
    int t, u, j;
    for (t = 0; t < n; t = u) { /* taps side by side in memory (a row of the window) make one run */
        for (u = t + 1; u < n && taps[u] == taps[u - 1] + cin && (u + 1 - t) * cin <= MAX_RUN; u++) continue;
        window_sums_4(taps[t], masks[slot] + (size_t)t * cin, (u - t) * cin, s);
    }
    for (j = 0; j < PORTABLE_CHANNELS; j++) acc[j] = s[j] - 255 * minus_weights[slot][j];
}

/* ------------------------------------------------------------------ x86-64: AVX-512 VNNI */
#if BINTUT_X86_VNNI
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define VNNI_CHANNELS 64 /* four registers of 16 int32 accumulators */
#define VNNI_POSITIONS 4
#define MASK_POSITIONS 6 /* output positions per register tile of the convs */
#define STEM_K 32 /* the stem's 27 taps x channels, padded to a multiple of 4 */

/* The sign bits, reordered once (1 bit per weight, 1.4 MB for ResNet18: it fits a core's L2): per layer,
 * per block of 16 output channels, per group of 4 inputs k = tap * cin + c (padded to a multiple of 64),
 * one 64-bit mask whose bit 4 n + j is 1 where the weight of channel 16 b + n at input 4 q + j is +1.
 * One VPBLENDMB turns a mask into the 64 bytes of +-1 that VPDPBUSD (16 channels x 4 inputs) and an
 * AMX weight tile row read. The stem (27 inputs, zero weights beyond them) keeps int8 weights. */
static uint64_t sign_masks[BINTUT_FAST_MASK_BYTES / 8];
static size_t mask_offset[BINTUT_NUM_LAYERS], mask_row[BINTUT_NUM_LAYERS]; /* masks per 16 channels */
static int8_t stem_weights[BINTUT_MAX_CHANNELS * STEM_K]; /* [oc / 64][c / 4][64 oc][4 c], +-1 and 0 */
static int32_t stem_offset[BINTUT_MAX_CHANNELS]; /* 128 x the sum of a channel's weights */
static uint8_t stem_rows[BINTUT_MAX_POSITIONS][STEM_K];
static int vnni_state; /* 0: not checked yet, 1: masks ready, -1: this CPU has no AVX-512 VNNI */

static int sign_bit(const bintut_layer *layer, int oc, int tap, int c)
{
    const int tap_bytes = (layer->in_channels + 7) / 8;
    const uint8_t byte = layer->bits[((size_t)oc * layer->kernel * layer->kernel + tap) * tap_bytes + c / 8];
    return (byte >> (7 - c % 8)) & 1;
}

/* Run once: check the CPU, then reorder every layer's sign bits into masks (and the stem's int8 weights). */
static int vnni_ready(void)
{
    size_t at = 0;
    int i, oc, t, c;
    if (vnni_state) return vnni_state > 0;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vnni")) {
        vnni_state = -1;
        return 0;
    }
    for (i = 1; i < BINTUT_NUM_LAYERS - 1; i++) {
        const bintut_layer *layer = &bintut_layers[i];
        const int taps = layer->kernel * layer->kernel, cin = layer->in_channels;
        const size_t row = (size_t)(taps * cin + 63) / 64 * 16;
        mask_offset[i] = at;
        mask_row[i] = row;
        for (oc = 0; oc < layer->out_channels; oc++) {
            uint64_t *m = sign_masks + at + (size_t)(oc / 16) * row;
            for (t = 0; t < taps; t++)
                for (c = 0; c < cin; c++)
                    if (sign_bit(layer, oc, t, c)) m[(t * cin + c) / 4] |= (uint64_t)1 << (4 * (oc % 16) + c % 4);
        }
        at += (size_t)layer->out_channels / 16 * row;
    }
    for (oc = 0; oc < bintut_layers[0].out_channels; oc++) { /* the stem: k = tap * 3 + channel, 0 beyond 27 */
        const bintut_layer *layer = &bintut_layers[0];
        int32_t sum = 0;
        for (c = 0; c < STEM_K; c++) {
            const int w = c < layer->kernel * layer->kernel * 3 ? 2 * sign_bit(layer, oc, c / 3, c % 3) - 1 : 0;
            sum += w;
            stem_weights[((size_t)(oc / VNNI_CHANNELS) * (STEM_K / 4) + c / 4) * 4 * VNNI_CHANNELS +
                         (oc % VNNI_CHANNELS) * 4 + c % 4] = (int8_t)w;
        }
        stem_offset[oc] = 128 * sum;
    }
    vnni_state = 1;
    return 1;
}

/* Four input bytes to every lane (VPDPBUSD's unsigned operand), then 4 x 16 channels of one position. */
#define VNNI_STEP(x, a0, a1, a2, a3)                                     \
    do {                                                                 \
        const __m512i b_ = _mm512_set1_epi32((int32_t)load32((x) + q)); \
        a0 = _mm512_dpbusd_epi32(a0, b_, w0);                            \
        a1 = _mm512_dpbusd_epi32(a1, b_, w1);                            \
        a2 = _mm512_dpbusd_epi32(a2, b_, w2);                            \
        a3 = _mm512_dpbusd_epi32(a3, b_, w3);                            \
    } while (0)
#define VNNI_STORE(dst, a0, a1, a2, a3)              \
    do {                                             \
        _mm512_storeu_si512((dst), a0);              \
        _mm512_storeu_si512((dst) + 16, a1);         \
        _mm512_storeu_si512((dst) + 32, a2);         \
        _mm512_storeu_si512((dst) + 48, a3);         \
    } while (0)

/* acc[p * 64 + j] = sum over the n taps and cin channels of x_p[tap][c] * w[j][tap][c], for 4 positions
 * (taps[p * MAX_TAPS + tap]) and 64 channels: 16 registers of accumulators, 4 of weights */
static VNNI_TARGET void vnni_tile_4(const int8_t *w, const uint8_t *const *taps, int n, int cin, int32_t *acc)
{
    __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m512i a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    int t, q;
    for (t = 0; t < n; t++) {
        const uint8_t *x0 = taps[t], *x1 = taps[MAX_TAPS + t], *x2 = taps[2 * MAX_TAPS + t];
        const uint8_t *x3 = taps[3 * MAX_TAPS + t];
        for (q = 0; q < cin; q += 4, w += 4 * VNNI_CHANNELS) {
            const __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 64);
            const __m512i w2 = _mm512_loadu_si512(w + 128), w3 = _mm512_loadu_si512(w + 192);
            VNNI_STEP(x0, a00, a01, a02, a03);
            VNNI_STEP(x1, a10, a11, a12, a13);
            VNNI_STEP(x2, a20, a21, a22, a23);
            VNNI_STEP(x3, a30, a31, a32, a33);
        }
    }
    VNNI_STORE(acc, a00, a01, a02, a03);
    VNNI_STORE(acc + 64, a10, a11, a12, a13);
    VNNI_STORE(acc + 128, a20, a21, a22, a23);
    VNNI_STORE(acc + 192, a30, a31, a32, a33);
}

/* the same for one position */
static VNNI_TARGET void vnni_tile_1(const int8_t *w, const uint8_t *const *taps, int n, int cin, int32_t *acc)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int t, q;
    for (t = 0; t < n; t++)
        for (q = 0; q < cin; q += 4, w += 4 * VNNI_CHANNELS) {
            const __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 64);
            const __m512i w2 = _mm512_loadu_si512(w + 128), w3 = _mm512_loadu_si512(w + 192);
            VNNI_STEP(taps[t], a0, a1, a2, a3);
        }
    VNNI_STORE(acc, a0, a1, a2, a3);
}

/* The weights of one step from their masks (see sign_masks): +1 where a bit is set, -1 elsewhere. */
#define MASK_WEIGHTS(m, row)                                               \
    const __m512i w0 = _mm512_mask_blend_epi8((__mmask64)(m)[0], minus, plus);           \
    const __m512i w1 = _mm512_mask_blend_epi8((__mmask64)(m)[(row)], minus, plus);       \
    const __m512i w2 = _mm512_mask_blend_epi8((__mmask64)(m)[2 * (row)], minus, plus);   \
    const __m512i w3 = _mm512_mask_blend_epi8((__mmask64)(m)[3 * (row)], minus, plus)

/* vnni_tile_4 with the weights expanded in registers from the packed masks m (4 blocks of 16 channels,
 * `row` masks apart): each expanded register serves 4 positions */
static VNNI_TARGET void mask_tile_4(const uint64_t *m, size_t row, const uint8_t *const *taps, int n, int cin,
                                    int32_t *acc)
{
    const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
    __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m512i a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    int t, q;
    for (t = 0; t < n; t++) {
        const uint8_t *x0 = taps[t], *x1 = taps[MAX_TAPS + t], *x2 = taps[2 * MAX_TAPS + t];
        const uint8_t *x3 = taps[3 * MAX_TAPS + t];
        for (q = 0; q < cin; q += 4, m++) {
            MASK_WEIGHTS(m, row);
            VNNI_STEP(x0, a00, a01, a02, a03);
            VNNI_STEP(x1, a10, a11, a12, a13);
            VNNI_STEP(x2, a20, a21, a22, a23);
            VNNI_STEP(x3, a30, a31, a32, a33);
        }
    }
    VNNI_STORE(acc, a00, a01, a02, a03);
    VNNI_STORE(acc + 64, a10, a11, a12, a13);
    VNNI_STORE(acc + 128, a20, a21, a22, a23);
    VNNI_STORE(acc + 192, a30, a31, a32, a33);
}

/* the same for 6 positions (24 accumulator registers; taps[p * MAX_TAPS + tap]) */
static VNNI_TARGET void mask_tile_6(const uint64_t *m, size_t row, const uint8_t *const *taps, int n, int cin,
                                    int32_t *acc)
{
    const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
    __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m512i a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    __m512i a40 = a00, a41 = a00, a42 = a00, a43 = a00, a50 = a00, a51 = a00, a52 = a00, a53 = a00;
    int t, q;
    for (t = 0; t < n; t++) {
        const uint8_t *x0 = taps[t], *x1 = taps[MAX_TAPS + t], *x2 = taps[2 * MAX_TAPS + t];
        const uint8_t *x3 = taps[3 * MAX_TAPS + t], *x4 = taps[4 * MAX_TAPS + t], *x5 = taps[5 * MAX_TAPS + t];
        for (q = 0; q < cin; q += 4, m++) {
            MASK_WEIGHTS(m, row);
            VNNI_STEP(x0, a00, a01, a02, a03);
            VNNI_STEP(x1, a10, a11, a12, a13);
            VNNI_STEP(x2, a20, a21, a22, a23);
            VNNI_STEP(x3, a30, a31, a32, a33);
            VNNI_STEP(x4, a40, a41, a42, a43);
            VNNI_STEP(x5, a50, a51, a52, a53);
        }
    }
    VNNI_STORE(acc, a00, a01, a02, a03);
    VNNI_STORE(acc + 64, a10, a11, a12, a13);
    VNNI_STORE(acc + 128, a20, a21, a22, a23);
    VNNI_STORE(acc + 192, a30, a31, a32, a33);
    VNNI_STORE(acc + 256, a40, a41, a42, a43);
    VNNI_STORE(acc + 320, a50, a51, a52, a53);
}

/* the same for one position */
static VNNI_TARGET void mask_tile_1(const uint64_t *m, size_t row, const uint8_t *const *taps, int n, int cin,
                                    int32_t *acc)
{
    const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int t, q;
    for (t = 0; t < n; t++)
        for (q = 0; q < cin; q += 4, m++) {
            MASK_WEIGHTS(m, row);
            VNNI_STEP(taps[t], a0, a1, a2, a3);
        }
    VNNI_STORE(acc, a0, a1, a2, a3);
}

/* e(x) = (x * m + bias + 2^(shift-1)) >> shift (arithmetic: floor) for 8 channels, in int64 lanes */
static VNNI_TARGET __m512i vnni_fixed_point(__m256i x, const int32_t *m, const int64_t *bias, const uint8_t *shift)
{
    const __m512i one = _mm512_set1_epi64(1);
    const __m512i s = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)shift));
    __m512i v = _mm512_mul_epi32(_mm512_cvtepi32_epi64(x), _mm512_cvtepi32_epi64(_mm256_loadu_si256((const void *)m)));
    v = _mm512_add_epi64(v, _mm512_loadu_si512(bias));
    v = _mm512_add_epi64(v, _mm512_sllv_epi64(one, _mm512_sub_epi64(s, one)));
    return _mm512_srav_epi64(v, s);
}

/* The epilogue of one position (the scalar loop of fast_conv, 8 channels at a time): a[j] and b[j] are the
 * accumulators of the conv and of the shortcut conv (if any) for channels c0 .. c0 + n - 1, `at` the
 * position's offset in the output (position * cout). Requantize, or add the shortcut at the shared scale
 * and round to codes (or sum into the pool: sink->pool, else the static pool). */
static VNNI_TARGET void vnni_epilogue_row(const bintut_layer *layer, const fast_sink *sink, const int32_t *a,
                                          const int32_t *b, size_t at, int c0, int n)
{
    const bintut_layer *shortcut = sink->shortcut >= 0 ? &bintut_layers[sink->shortcut] : NULL;
    const __m512i zero = _mm512_setzero_si512();
    const __m128i fraction = _mm_cvtsi32_si128(BINTUT_FRACTION_BITS);
    const __m512i half = _mm512_set1_epi64((int64_t)1 << (BINTUT_FRACTION_BITS - 1));
    int64_t *sums = sink->pool ? sink->pool : pool;
    int j;
    for (j = 0; j < n; j += 8, at += 8) {
        const int c = c0 + j;
        __m512i t = vnni_fixed_point(_mm256_loadu_si256((const void *)(a + j)), layer->m + c, layer->bias + c,
                                     layer->shift + c);
        if (!sink->block) {
            _mm_storel_epi64((void *)(sink->out + at), _mm512_cvtsepi64_epi8(_mm512_max_epi64(t, zero)));
            continue;
        }
        if (shortcut) {
            t = _mm512_add_epi64(t, vnni_fixed_point(_mm256_loadu_si256((const void *)(b + j)), shortcut->m + c,
                                                     shortcut->bias + c, shortcut->shift + c));
        } else {
            const int s = sink->block->identity_shift;
            __m512i v = _mm512_cvtepi8_epi64(_mm_loadl_epi64((const void *)(sink->x + at)));
            v = _mm512_mul_epi32(v, _mm512_set1_epi64(sink->block->identity_m));
            v = _mm512_add_epi64(v, _mm512_set1_epi64((int64_t)1 << (s - 1)));
            t = _mm512_add_epi64(t, _mm512_sra_epi64(v, _mm_cvtsi32_si128(s)));
        }
        if (sink->last) {
            _mm512_storeu_si512(sums + c, _mm512_add_epi64(_mm512_loadu_si512(sums + c), _mm512_max_epi64(t, zero)));
        } else {
            t = _mm512_sra_epi64(_mm512_add_epi64(t, half), fraction);
            _mm_storel_epi64((void *)(sink->out + at), _mm512_cvtsepi64_epi8(_mm512_max_epi64(t, zero)));
        }
    }
}

/* the epilogues of a tile: np positions from p0, 64 channels from oc0 */
static void vnni_epilogue(const bintut_layer *layer, const fast_sink *sink, const int32_t *acc0,
                          const int32_t *acc1, int p0, int np, int oc0)
{
    int p;
    for (p = 0; p < np; p++)
        vnni_epilogue_row(layer, sink, acc0 + p * VNNI_CHANNELS, acc1 + p * VNNI_CHANNELS,
                          (size_t)(p0 + p) * layer->out_channels + oc0, oc0, VNNI_CHANNELS);
}

/* acc[p * 64 + j] for positions p0 .. p0 + np - 1 and output channels oc0 .. oc0 + 63 of layer i */
static void vnni_tile(int i, const int8_t *in, int size, int o, int p0, int np, int oc0, int32_t *acc)
{
    const bintut_layer *layer = &bintut_layers[i];
    const uint8_t *taps[MASK_POSITIONS][MAX_TAPS];
    const int cin = layer->in_channels;
    const uint64_t *m = sign_masks + mask_offset[i] + (size_t)(oc0 / 16) * mask_row[i];
    int p, n = 0;
    for (p = 0; p < np; p++) n = gather_taps(layer, in, size, o, p0 + p, taps[p]);
    if (np == MASK_POSITIONS)
        mask_tile_6(m, mask_row[i], taps[0], n, cin, acc);
    else if (np >= VNNI_POSITIONS) {
        mask_tile_4(m, mask_row[i], taps[0], n, cin, acc);
        for (p = VNNI_POSITIONS; p < np; p++) mask_tile_1(m, mask_row[i], taps[p], n, cin, acc + p * VNNI_CHANNELS);
    } else
        for (p = 0; p < np; p++) mask_tile_1(m, mask_row[i], taps[p], n, cin, acc + p * VNNI_CHANNELS);
}

/* a[j] -= b[j] for n (a multiple of 16) int32 */
static VNNI_TARGET void vnni_subtract(int32_t *a, const int32_t *b, int n)
{
    int j;
    for (j = 0; j < n; j += 16)
        _mm512_storeu_si512(a + j, _mm512_sub_epi32(_mm512_loadu_si512(a + j), _mm512_loadu_si512(b + j)));
}

/* The stem as one GEMM: each position's 27 inputs (x + 128, unsigned; 128 where padded, i.e. x = 0)
 * times the +-1 weights, minus 128 * (sum of the weights). */
static int vnni_stem(const int8_t *image, int8_t *out)
{
    const bintut_layer *layer = &bintut_layers[0];
    const int k = layer->kernel, o = output_size(layer, BINTUT_IMAGE_SIZE), cout = layer->out_channels;
    int32_t acc[VNNI_POSITIONS * VNNI_CHANNELS];
    const uint8_t *rows[VNNI_POSITIONS][MAX_TAPS];
    fast_sink sink = {NULL, NULL, NULL, -1, NULL, 0, 0, NULL, NULL}; /* requantize */
    int p, p0, oc0, dy, dx, c;
    sink.out = out;
    for (p = 0; p < o * o; p++) {
        const int y0 = (p / o) * layer->stride - layer->padding, x0 = (p % o) * layer->stride - layer->padding;
        const int whole = x0 >= 0 && x0 + k <= BINTUT_IMAGE_SIZE; /* the window's rows lie inside, left to right */
        uint8_t *row = stem_rows[p];
        int at = 0;
        for (dy = 0; dy < k; dy++) {
            const int iy = y0 + dy;
            const int8_t *src = image + ((size_t)iy * BINTUT_IMAGE_SIZE + x0) * 3;
            if (iy < 0 || iy >= BINTUT_IMAGE_SIZE) {
                for (c = 0; c < 3 * k; c++) row[at++] = 128;
            } else if (whole) {
                for (c = 0; c < 3 * k; c++) row[at++] = (uint8_t)(src[c] ^ 0x80); /* x + 128 */
            } else {
                for (dx = 0; dx < k; dx++) {
                    const int inside = x0 + dx >= 0 && x0 + dx < BINTUT_IMAGE_SIZE;
                    for (c = 0; c < 3; c++) row[at++] = (uint8_t)(inside ? src[3 * dx + c] ^ 0x80 : 128);
                }
            }
        }
        while (at < STEM_K) row[at++] = 0;
    }
    for (oc0 = 0; oc0 < cout; oc0 += VNNI_CHANNELS)
        for (p0 = 0; p0 < o * o; p0 += VNNI_POSITIONS) {
            const int np = o * o - p0 < VNNI_POSITIONS ? o * o - p0 : VNNI_POSITIONS;
            const int8_t *w = stem_weights + (size_t)(oc0 / VNNI_CHANNELS) * STEM_K * VNNI_CHANNELS;
            for (p = 0; p < np; p++) rows[p][0] = stem_rows[p0 + p];
            if (np == VNNI_POSITIONS)
                vnni_tile_4(w, rows[0], 1, STEM_K, acc);
            else
                for (p = 0; p < np; p++) vnni_tile_1(w, rows[p], 1, STEM_K, acc + p * VNNI_CHANNELS);
            for (p = 0; p < np; p++) {
                int32_t *a = acc + p * VNNI_CHANNELS;
                vnni_subtract(a, stem_offset + oc0, VNNI_CHANNELS);
                vnni_epilogue_row(layer, &sink, a, NULL, (size_t)(p0 + p) * cout + oc0, oc0, VNNI_CHANNELS);
            }
        }
    return o;
}
/* AMX intrinsics: gcc 11 or later, clang 12 or later */
#if !defined(BINTUT_NO_AMX) && ((defined(__clang__) && __clang_major__ >= 12) || \
                                (!defined(__clang__) && __GNUC__ >= 11))
#define BINTUT_X86_AMX 1
#include "bintut_amx.c"
#endif
#else
static int vnni_ready(void)
{
    return 0;
}
#endif
#ifndef BINTUT_X86_AMX
#define BINTUT_X86_AMX 0
#define amx_ready() 0
#endif

/* ------------------------------------------------------------------ one layer, either path */


/* Layer i (a binary conv reading nonnegative codes) on `in` (size x size x cin); returns its output size. */
static int fast_conv(int i, const int8_t *in, int size, const fast_sink *sink)
{
    const bintut_layer *layer = &bintut_layers[i];
    const bintut_layer *shortcut = sink->shortcut >= 0 ? &bintut_layers[sink->shortcut] : NULL;
    const int o = output_size(layer, size), positions = o * o, cout = layer->out_channels;
    const int vnni = vnni_ready();
    const int channels = vnni ? 64 : PORTABLE_CHANNELS, step = vnni ? 6 : 1;
    const int64_t half = (int64_t)1 << (BINTUT_FRACTION_BITS - 1);
    int32_t acc[2][6 * 64];
    int oc0, p0, p, j;
#if BINTUT_X86_AMX
    if (sink->raw && amx_ready()) { /* layer_check.c: the AMX path's accumulators */
        amx_layer(i, &in, 1, size, sink);
        return o;
    }
#endif
    for (oc0 = 0; oc0 < cout; oc0 += channels) {
        if (!vnni) {
            unpack_masks(layer, oc0, masks[0], minus_weights[0]);
            if (shortcut) unpack_masks(shortcut, oc0, masks[1], minus_weights[1]);
        }
        for (p0 = 0; p0 < positions; p0 += step) {
            const int np = positions - p0 < step ? positions - p0 : step;
#if BINTUT_X86_VNNI
            if (vnni) {
                vnni_tile(i, in, size, o, p0, np, oc0, acc[0]);
                if (shortcut) vnni_tile(sink->shortcut, sink->x, sink->x_size, o, p0, np, oc0, acc[1]);
                if (!sink->raw) {
                    vnni_epilogue(layer, sink, acc[0], acc[1], p0, np, oc0);
                    continue;
                }
            } else
#endif
            {
                portable_tile(layer, 0, in, size, o, p0, acc[0]);
                if (shortcut) portable_tile(shortcut, 1, sink->x, sink->x_size, o, p0, acc[1]);
            }
            for (p = 0; p < np; p++)
                for (j = 0; j < channels; j++) {
                    const int c = oc0 + j;
                    const size_t at = (size_t)(p0 + p) * cout + c;
                    const int32_t a = acc[0][p * channels + j];
                    int64_t t;
                    if (sink->raw) {
                        sink->raw[at] = a;
                        continue;
                    }
                    t = fixed_point(a, layer->m[c], layer->bias[c], layer->shift[c]);
                    if (!sink->block) {
                        sink->out[at] = clamp_code(t);
                        continue;
                    }
                    if (shortcut)
                        t += fixed_point(acc[1][p * channels + j], shortcut->m[c], shortcut->bias[c],
                                         shortcut->shift[c]);
                    else
                        t += fixed_point(sink->x[at], sink->block->identity_m, 0, sink->block->identity_shift);
                    if (sink->last)
                        pool[c] += t > 0 ? t : 0;
                    else
                        sink->out[at] = clamp_code(floor_shift(t + half, BINTUT_FRACTION_BITS));
                }
        }
    }
    return o;
}

static int fast_infer(const int8_t *image, int32_t *logits)
{
    const int64_t half = (int64_t)1 << (BINTUT_FRACTION_BITS - 1);
    const bintut_layer *fc = &bintut_layers[BINTUT_NUM_LAYERS - 1];
    int size, b, c;
#if BINTUT_X86_AMX
    if (amx_ready()) {
        amx_infer_group(image, 1, logits);
        return 0;
    }
#endif
    for (c = 0; c < BINTUT_MAX_CHANNELS; c++) pool[c] = 0;
#if BINTUT_X86_VNNI
    if (vnni_ready())
        size = vnni_stem(image, buffer_a);
    else
#endif
        size = conv_requantize(&bintut_layers[0], image, BINTUT_IMAGE_SIZE, buffer_a);
    for (b = 0; b < BINTUT_NUM_BLOCKS; b++) {
        const bintut_block *block = &bintut_blocks[b];
        const bintut_layer *conv1 = &bintut_layers[block->conv1], *conv2 = &bintut_layers[block->conv2];
        fast_sink sink = {NULL, NULL, NULL, -1, NULL, 0, 0, NULL, NULL};
        size_t h_bytes, y_bytes, n;
        int h_size, o;
        sink.out = buffer_b;
        h_size = fast_conv(block->conv1, buffer_a, size, &sink);
        o = output_size(conv2, h_size);
        h_bytes = (size_t)h_size * h_size * conv1->out_channels;
        y_bytes = (size_t)o * o * conv2->out_channels;
        sink.block = block;
        sink.shortcut = block->shortcut;
        sink.x = buffer_a;
        sink.x_size = size;
        sink.last = b == BINTUT_NUM_BLOCKS - 1;
        /* the identity block updates its input in place (each output reads only its own input code);
         * a block with a shortcut conv writes behind conv1's output in buffer B, then copies back */
        if (block->shortcut < 0) {
            sink.out = buffer_a;
        } else {
            if (h_bytes + y_bytes > BINTUT_BUFFER_B_BYTES) return -1; /* c_source.fast_kernel_plan checks this at export */
            sink.out = buffer_b + h_bytes;
        }
        size = fast_conv(block->conv2, buffer_b, h_size, &sink);
        if (block->shortcut >= 0 && !sink.last)
            for (n = 0; n < y_bytes; n++) buffer_a[n] = buffer_b[h_bytes + n];
    }
    for (c = 0; c < fc->in_channels; c++) row[c] = clamp_code(floor_shift(pool[c] + half, BINTUT_FRACTION_BITS));
    accumulate(fc, row, 1, 0, 0, acc_main);
    for (c = 0; c < BINTUT_NUM_CLASSES; c++)
        logits[c] = (int32_t)fixed_point(acc_main[c], fc->m[c], fc->bias[c], fc->shift[c]);
    return 0;
}

/* `count` images, BINTUT_IMAGE_BYTES apart: on the AMX path in groups that share each layer's weights,
 * elsewhere one by one. */
static int fast_infer_batch(const int8_t *images, int count, int32_t *logits)
{
    int n;
#if BINTUT_X86_AMX
    if (amx_ready()) {
        for (n = 0; n < count; n += BINTUT_AMX_GROUP)
            amx_infer_group(images + (size_t)n * BINTUT_IMAGE_BYTES,
                            count - n < BINTUT_AMX_GROUP ? count - n : BINTUT_AMX_GROUP,
                            logits + (size_t)n * BINTUT_NUM_CLASSES);
        return 0;
    }
#endif
    for (n = 0; n < count; n++)
        fast_infer(images + (size_t)n * BINTUT_IMAGE_BYTES, logits + (size_t)n * BINTUT_NUM_CLASSES);
    return 0;
}
