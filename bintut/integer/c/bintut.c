/*
 * bintut.c -- integer-only inference of a binary-weight ResNet exported by bintut (C99).
 *
 * No float, no malloc: two static activation buffers, int32 accumulators, int64 fixed-point
 * epilogues. Every binary layer computes, per output position and channel,
 *
 *     acc = 2 * (sum of the inputs whose weight bit is 1) - (sum of all inputs)
 *
 * (weights are +-1, stored as one bit each), then the fixed-point epilogue
 *
 *     e(x) = (x * m + bias + 2^(shift-1)) >> shift      (>> rounds toward minus infinity)
 *
 * with per-channel constants computed once by bintut's export (bintut/fixedpoint.py). The numpy
 * engine (bintut.engine.IntegerResNet(..., integer_only=True)) computes the same integers; the
 * golden test (golden_main.c) checks that bit for bit.
 *
 * This file is the readable reference kernel. With BINTUT_FAST 1 (bintut.h sets the default; the
 * compiler's -DBINTUT_FAST=0 or =1 overrides it), bintut_infer runs the fast kernels of bintut_fast.c
 * instead, which compute the same integers in a different order (checked against this file, layer by
 * layer, by layer_check.c).
 */
#include <stddef.h>
#include <stdint.h>

#include "bintut.h"

typedef struct {
    const char *name;
    uint16_t in_channels, out_channels;
    uint8_t kernel, stride, padding;
    const uint8_t *bits;  /* per output channel: kernel*kernel taps, each ceil(in_channels/8) bytes, MSB first */
    const int32_t *m;     /* signed fixed-point multiplier, |m| in [2^30, 2^31) (or 0) */
    const uint8_t *shift; /* 1..62 */
    const int64_t *bias;  /* in units of 2^-shift */
} bintut_layer;

typedef struct {
    int16_t conv1, conv2, shortcut; /* indices into bintut_layers; shortcut -1: identity */
    int32_t identity_m;             /* identity shortcut: int8 codes -> the shared scale */
    uint8_t identity_shift;
} bintut_block;

#include "bintut_model.h"

#ifdef __GNUC__
#define BINTUT_ALIGN8 __attribute__((aligned(8))) /* the fast kernel's word loads (LDRD on Arm) */
#else
#define BINTUT_ALIGN8
#endif
static int8_t buffer_a[BINTUT_BUFFER_A_BYTES] BINTUT_ALIGN8; /* block inputs and outputs (updated in place) */
static int8_t buffer_b[BINTUT_BUFFER_B_BYTES] BINTUT_ALIGN8; /* conv1 outputs inside a block */
static int32_t acc_main[BINTUT_MAX_CHANNELS];
static int8_t row[BINTUT_MAX_CHANNELS];
static int64_t pool[BINTUT_MAX_CHANNELS];

/* floor(v / 2^s) without relying on the implementation-defined >> of negative values */
static int64_t floor_shift(int64_t v, int s)
{
    return v >= 0 ? v >> s : ~(~v >> s);
}

/* the fixed-point epilogue e(x) */
static int64_t fixed_point(int64_t x, int32_t m, int64_t bias, int shift)
{
    return floor_shift(x * m + bias + ((int64_t)1 << (shift - 1)), shift);
}

/* int8 codes after a ReLU: clamp to [0, 127] */
static int8_t clamp_code(int64_t v)
{
    return (int8_t)(v < 0 ? 0 : (v > 127 ? 127 : v));
}

/* BEGIN INNER LOOP */
/* Sum of x[i] over the i whose weight bit is 1: additions only (a mask, no multiply). */
static int32_t sum_selected(const int8_t *x, const uint8_t *bits, int n)
{
    int32_t sum = 0;
    int i = 0;
    for (; i + 8 <= n; i += 8, x += 8) {
        const int32_t b = *bits++;
        sum += (x[0] & -((b >> 7) & 1)) + (x[1] & -((b >> 6) & 1))
             + (x[2] & -((b >> 5) & 1)) + (x[3] & -((b >> 4) & 1))
             + (x[4] & -((b >> 3) & 1)) + (x[5] & -((b >> 2) & 1))
             + (x[6] & -((b >> 1) & 1)) + (x[7] & -(b & 1));
    }
    for (; i < n; i++, x++) { /* a last, partial byte (the stem has 3 input channels) */
        sum += x[0] & -((bits[0] >> (7 - i % 8)) & 1);
    }
    return sum;
}

/* All output channels at one output position: acc[c] = 2 * sum_{w=+1} x - sum x. */
static void accumulate(const bintut_layer *layer, const int8_t *in, int size, int oy, int ox, int32_t *acc)
{
    const int cin = layer->in_channels, k = layer->kernel, tap_bytes = (cin + 7) / 8;
    const int row_bytes = k * k * tap_bytes;
    const int8_t *tap_in[9 * 9];
    int tap_index[9 * 9];
    int taps = 0, dy, dx, i, c;
    int32_t total = 0;
    for (dy = 0; dy < k; dy++) { /* taps inside the image; padded taps add 0 */
        const int iy = oy * layer->stride - layer->padding + dy;
        for (dx = 0; dx < k; dx++) {
            const int ix = ox * layer->stride - layer->padding + dx;
            if (iy < 0 || iy >= size || ix < 0 || ix >= size) continue;
            tap_in[taps] = in + ((size_t)iy * size + ix) * cin;
            tap_index[taps++] = dy * k + dx;
        }
    }
    for (i = 0; i < taps; i++) /* shared by every output channel */
        for (c = 0; c < cin; c++) total += tap_in[i][c];
    for (c = 0; c < layer->out_channels; c++) {
        const uint8_t *bits = layer->bits + (size_t)c * row_bytes;
        int32_t plus = 0;
        for (i = 0; i < taps; i++) plus += sum_selected(tap_in[i], bits + tap_index[i] * tap_bytes, cin);
        acc[c] = plus + plus - total;
    }
}
/* END INNER LOOP */

static int output_size(const bintut_layer *layer, int size)
{
    return (size + 2 * layer->padding - layer->kernel) / layer->stride + 1;
}

/* A binary conv whose epilogue requantizes to the next layer's int8 codes (the stem, block conv1). */
static int conv_requantize(const bintut_layer *layer, const int8_t *in, int size, int8_t *out)
{
    const int o = output_size(layer, size), cout = layer->out_channels;
    int oy, ox, c;
    for (oy = 0; oy < o; oy++)
        for (ox = 0; ox < o; ox++) {
            int8_t *dst = out + ((size_t)oy * o + ox) * cout;
            accumulate(layer, in, size, oy, ox, acc_main);
            for (c = 0; c < cout; c++)
                dst[c] = clamp_code(fixed_point(acc_main[c], layer->m[c], layer->bias[c], layer->shift[c]));
        }
    return o;
}

#if !BINTUT_FAST || defined(BINTUT_LAYER_CHECK)
static int32_t acc_shortcut[BINTUT_MAX_CHANNELS];

/* conv2 + shortcut, both mapped to the shared scale (2^-BINTUT_FRACTION_BITS of the output step) and
 * added; the sum is rounded to int8 codes written over the block input (position by position, after
 * the shortcut has read it), or, for the last block, summed into the global average pool. */
static int residual(const bintut_block *block, int8_t *x, int size, const int8_t *h, int h_size, int last)
{
    const bintut_layer *conv2 = &bintut_layers[block->conv2];
    const bintut_layer *shortcut = block->shortcut >= 0 ? &bintut_layers[block->shortcut] : NULL;
    const int o = output_size(conv2, h_size), cout = conv2->out_channels;
    const int64_t half = (int64_t)1 << (BINTUT_FRACTION_BITS - 1);
    int oy, ox, c;
    for (oy = 0; oy < o; oy++)
        for (ox = 0; ox < o; ox++) {
            const size_t at = ((size_t)oy * o + ox) * cout;
            accumulate(conv2, h, h_size, oy, ox, acc_main);
            if (shortcut) accumulate(shortcut, x, size, oy, ox, acc_shortcut);
            for (c = 0; c < cout; c++) {
                int64_t t = fixed_point(acc_main[c], conv2->m[c], conv2->bias[c], conv2->shift[c]);
                if (shortcut)
                    t += fixed_point(acc_shortcut[c], shortcut->m[c], shortcut->bias[c], shortcut->shift[c]);
                else
                    t += fixed_point(x[at + c], block->identity_m, 0, block->identity_shift);
                if (last)
                    pool[c] += t > 0 ? t : 0; /* ReLU, then the pool's sum */
                else
                    row[c] = clamp_code(floor_shift(t + half, BINTUT_FRACTION_BITS));
            }
            if (!last)
                for (c = 0; c < cout; c++) x[at + c] = row[c];
        }
    return o;
}

/* the reference kernel: the whole network, one output position at a time */
static int reference_infer(const int8_t *image, int32_t *logits)
{
    const int64_t half = (int64_t)1 << (BINTUT_FRACTION_BITS - 1);
    const bintut_layer *fc = &bintut_layers[BINTUT_NUM_LAYERS - 1];
    int size, b, c;
    for (c = 0; c < BINTUT_MAX_CHANNELS; c++) pool[c] = 0;
    size = conv_requantize(&bintut_layers[0], image, BINTUT_IMAGE_SIZE, buffer_a);
    for (b = 0; b < BINTUT_NUM_BLOCKS; b++) {
        const bintut_block *block = &bintut_blocks[b];
        const int h_size = conv_requantize(&bintut_layers[block->conv1], buffer_a, size, buffer_b);
        size = residual(block, buffer_a, size, buffer_b, h_size, b == BINTUT_NUM_BLOCKS - 1);
    }
    for (c = 0; c < fc->in_channels; c++) row[c] = clamp_code(floor_shift(pool[c] + half, BINTUT_FRACTION_BITS));
    accumulate(fc, row, 1, 0, 0, acc_main);
    for (c = 0; c < BINTUT_NUM_CLASSES; c++)
        logits[c] = (int32_t)fixed_point(acc_main[c], fc->m[c], fc->bias[c], fc->shift[c]);
    return 0;
}
#endif

#if BINTUT_FAST
#include "bintut_fast.c"
#endif

int bintut_infer(const int8_t *image, int32_t *logits)
{
    if (!image || !logits) return -1;
#if BINTUT_FAST
    return fast_infer(image, logits);
#else
    return reference_infer(image, logits);
#endif
}

int bintut_infer_batch(const int8_t *images, int count, int32_t *logits)
{
    if (!images || !logits || count < 0) return -1;
#if BINTUT_FAST
    return fast_infer_batch(images, count, logits);
#else
    {
        int n;
        for (n = 0; n < count; n++)
            reference_infer(images + (size_t)n * BINTUT_IMAGE_BYTES, logits + (size_t)n * BINTUT_NUM_CLASSES);
        return 0;
    }
#endif
}
