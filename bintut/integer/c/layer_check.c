/*
 * layer_check.c -- the fast kernels against the reference kernel, layer by layer, on random inputs
 * (host only: uses stdio). Build: cc -std=c99 -O2 layer_check.c -o layer_check (it includes bintut.c;
 * add -DBINTUT_NO_SIMD to check the portable path on an x86-64 with AVX-512 VNNI).
 *
 *     ./layer_check [seed] [images]
 *
 * For every binary conv between the stem and the head: random int8 codes in [0, 127] (uniform,
 * sparse, or saturated at 127: the extremes of a ReLU's output) of the layer's input size; every
 * int32 accumulator of the fast kernel (its best path here: AMX-INT8, AVX-512 VNNI, Arm SIMD32 or
 * portable C; -DBINTUT_NO_AMX keeps an AMX machine to AVX-512 VNNI) must equal the reference kernel's.
 * Then the stem's int8 output on a random signed image, `images` random images end to end (logits)
 * and, if images > 0, a batch of 3 through bintut_infer_batch. Prints one line per check; exits 1 at
 * the first difference.
 */
#define BINTUT_FAST 1
#define BINTUT_LAYER_CHECK 1
#define BINTUT_AMX_GROUP 2 /* so that the batch check below crosses a group boundary */
#include <stdio.h>
#include <stdlib.h>

#include "bintut.c"

#define BIG (BINTUT_BUFFER_A_BYTES > BINTUT_BUFFER_B_BYTES ? BINTUT_BUFFER_A_BYTES : BINTUT_BUFFER_B_BYTES)

static int8_t input[BIG];
static int32_t fast_acc[BIG];
static int8_t image[BINTUT_IMAGE_BYTES];
#define BATCH 3
static int8_t batch[BATCH * BINTUT_IMAGE_BYTES];
static int32_t batch_logits[BATCH * BINTUT_NUM_CLASSES];
static int8_t stem_fast[BINTUT_BUFFER_A_BYTES];
static int8_t stem_reference[BINTUT_BUFFER_A_BYTES];
static uint64_t state = 88172645463325252u;

static uint32_t next(void) /* xorshift64 */
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (uint32_t)(state >> 32);
}

static void fill(int8_t *x, size_t n, int kind)
{
    size_t i;
    for (i = 0; i < n; i++) {
        const uint32_t r = next();
        if (kind == 0) x[i] = (int8_t)(r % 128);                      /* uniform */
        else if (kind == 1) x[i] = (int8_t)(r % 4 == 0 ? r % 128 : 0); /* sparse, as after a ReLU */
        else x[i] = (int8_t)(r % 8 == 0 ? r % 128 : 127);              /* mostly saturated */
    }
}

static int check_layer(int i, int size, int kind)
{
    const bintut_layer *layer = &bintut_layers[i];
    fast_sink sink = {NULL, NULL, NULL, -1, NULL, 0, 0, NULL, NULL};
    const int o = output_size(layer, size), cout = layer->out_channels;
    int oy, ox, c;
    fill(input, (size_t)size * size * layer->in_channels, kind);
    sink.raw = fast_acc;
    fast_conv(i, input, size, &sink);
    for (oy = 0; oy < o; oy++)
        for (ox = 0; ox < o; ox++) {
            accumulate(layer, input, size, oy, ox, acc_main);
            for (c = 0; c < cout; c++)
                if (fast_acc[((size_t)oy * o + ox) * cout + c] != acc_main[c]) {
                    printf("FAIL layer %s position (%d, %d) channel %d: fast %ld, reference %ld\n", layer->name, oy,
                           ox, c, (long)fast_acc[((size_t)oy * o + ox) * cout + c], (long)acc_main[c]);
                    return 1;
                }
        }
    printf("layer %s: %d x %d x %d accumulators equal (input kind %d)\n", layer->name, o, o, cout, kind);
    return 0;
}

int main(int argc, char **argv)
{
    const unsigned long seed = argc > 1 ? strtoul(argv[1], NULL, 10) : 1;
    const int images = argc > 2 ? atoi(argv[2]) : 1;
    int32_t fast_logits[BINTUT_NUM_CLASSES], reference_logits[BINTUT_NUM_CLASSES];
    int size, b, n, c, o;
    size_t i;
    state ^= (uint64_t)seed * 0x9E3779B97F4A7C15u;
    printf("kernel: %s\n", amx_ready()    ? "x86-64 AMX-INT8"
                           : vnni_ready() ? "x86-64 AVX-512 VNNI"
                           : BINTUT_ARM_SIMD32 ? "Arm SIMD32" : "portable C");
    size = output_size(&bintut_layers[0], BINTUT_IMAGE_SIZE);
    for (b = 0; b < BINTUT_NUM_BLOCKS; b++) {
        const bintut_block *block = &bintut_blocks[b];
        const int h = output_size(&bintut_layers[block->conv1], size);
        if (check_layer(block->conv1, size, (int)(next() % 3))) return 1;
        if (check_layer(block->conv2, h, (int)(next() % 3))) return 1;
        if (block->shortcut >= 0 && check_layer(block->shortcut, size, (int)(next() % 3))) return 1;
        size = output_size(&bintut_layers[block->conv2], h);
    }
    for (i = 0; i < sizeof image; i++) image[i] = (int8_t)((int)(next() % 255) - 127);
#if BINTUT_X86_VNNI
    if (vnni_ready()) {
        o = vnni_stem(image, stem_fast);
        conv_requantize(&bintut_layers[0], image, BINTUT_IMAGE_SIZE, stem_reference);
        for (i = 0; i < (size_t)o * o * bintut_layers[0].out_channels; i++)
            if (stem_fast[i] != stem_reference[i]) {
                printf("FAIL stem output %lu: fast %d, reference %d\n", (unsigned long)i, stem_fast[i],
                       stem_reference[i]);
                return 1;
            }
        printf("stem: %d x %d x %d codes equal\n", o, o, bintut_layers[0].out_channels);
    }
#endif
    (void)o;
    (void)stem_fast;
    (void)stem_reference;
    for (n = 0; n < images; n++) {
        for (i = 0; i < sizeof image; i++) image[i] = (int8_t)((int)(next() % 255) - 127);
        fast_infer(image, fast_logits);
        reference_infer(image, reference_logits);
        for (c = 0; c < BINTUT_NUM_CLASSES; c++)
            if (fast_logits[c] != reference_logits[c]) {
                printf("FAIL random image %d logit %d: fast %ld, reference %ld\n", n, c, (long)fast_logits[c],
                       (long)reference_logits[c]);
                return 1;
            }
        printf("random image %d: %d logits equal\n", n, BINTUT_NUM_CLASSES);
    }
    if (images > 0) { /* bintut_infer_batch: BATCH images, more than one AMX group (2 in this check) */
        for (i = 0; i < sizeof batch; i++) batch[i] = (int8_t)((int)(next() % 255) - 127);
        bintut_infer_batch(batch, BATCH, batch_logits);
        for (n = 0; n < BATCH; n++) {
            reference_infer(batch + (size_t)n * BINTUT_IMAGE_BYTES, reference_logits);
            for (c = 0; c < BINTUT_NUM_CLASSES; c++)
                if (batch_logits[n * BINTUT_NUM_CLASSES + c] != reference_logits[c]) {
                    printf("FAIL batch image %d logit %d: batch %ld, reference %ld\n", n, c,
                           (long)batch_logits[n * BINTUT_NUM_CLASSES + c], (long)reference_logits[c]);
                    return 1;
                }
        }
        printf("batch of %d random images: %d logits equal\n", BATCH, BATCH * BINTUT_NUM_CLASSES);
    }
    printf("layer check: PASS\n");
    return 0;
}
