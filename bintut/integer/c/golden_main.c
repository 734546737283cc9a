/*
 * golden_main.c -- run the golden images through bintut_infer and compare every int32 logit, bit for
 * bit, with the numpy integer-only engine's. Prints one line per image and a summary; exits 1 on the
 * first mismatch (printing the first differing logit), 0 when all images match.
 */
#include <stdint.h>

#include "bintut.h"
#include "golden.h"
#include "platform.h"

#ifndef BINTUT_GOLDEN_LIMIT
#define BINTUT_GOLDEN_LIMIT BINTUT_GOLDEN_COUNT
#endif

static void write_int(int64_t value)
{
    char text[24];
    char *p = text + sizeof text - 1;
    uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    *p = '\0';
    do {
        *--p = (char)('0' + (int)(magnitude % 10));
        magnitude /= 10;
    } while (magnitude);
    if (value < 0) *--p = '-';
    platform_write(p);
}

static int32_t logits[BINTUT_NUM_CLASSES];

int main(void)
{
    int image, c, passed = 0;
    const int count = BINTUT_GOLDEN_LIMIT < BINTUT_GOLDEN_COUNT ? BINTUT_GOLDEN_LIMIT : BINTUT_GOLDEN_COUNT;
    for (image = 0; image < count; image++) {
        const uint64_t start = platform_counter();
        int best = 0;
        uint64_t used;
        bintut_infer(bintut_golden_images[image], logits);
        used = platform_counter() - start;
        for (c = 0; c < BINTUT_NUM_CLASSES; c++) {
            if (logits[c] != bintut_golden_logits[image][c]) {
                platform_write("image ");
                write_int(image);
                platform_write(": FAIL first differing logit [");
                write_int(c);
                platform_write("]: got ");
                write_int(logits[c]);
                platform_write(", expected ");
                write_int(bintut_golden_logits[image][c]);
                platform_write("\n");
                platform_exit(1);
                return 1;
            }
            if (logits[c] > logits[best]) best = c;
        }
        passed++;
        platform_write("image ");
        write_int(image);
        platform_write(": PASS class ");
        write_int(best);
        platform_write(" counter ");
        write_int((int64_t)used);
        platform_write(" ");
        platform_write(platform_counter_unit);
        platform_write("\n");
    }
#if __STDC_HOSTED__ /* bintut_infer_batch on all images at once (not on the microcontroller: twice the time) */
    {
        static int32_t batch_logits[BINTUT_GOLDEN_COUNT][BINTUT_NUM_CLASSES];
        const uint64_t start = platform_counter();
        uint64_t used;
        bintut_infer_batch(bintut_golden_images[0], count, batch_logits[0]);
        used = platform_counter() - start;
        for (image = 0; image < count; image++)
            for (c = 0; c < BINTUT_NUM_CLASSES; c++)
                if (batch_logits[image][c] != bintut_golden_logits[image][c]) {
                    platform_write("batch image ");
                    write_int(image);
                    platform_write(": FAIL first differing logit [");
                    write_int(c);
                    platform_write("]\n");
                    platform_exit(1);
                    return 1;
                }
        platform_write("batch of ");
        write_int(count);
        platform_write(": PASS counter ");
        write_int((int64_t)used);
        platform_write(" ");
        platform_write(platform_counter_unit);
        platform_write("\n");
    }
#endif
    platform_write("golden: ");
    write_int(passed);
    platform_write("/");
    write_int(count);
    platform_write(" images bit-exact\n");
    platform_exit(0);
    return 0;
}
