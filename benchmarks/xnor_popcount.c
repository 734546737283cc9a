/* One binary layer's GEMM, four ways, on the same shapes: int8 codes x +-1 weights (AVX-512 VNNI VPDPBUSD), and
 * +-1 x +-1 as XNOR + popcount (portable C, the POPCNT instruction, AVX-512 VPOPCNTQ). Driven by xnor_layer.py,
 * which writes the operands and checks every result against numpy (bintut.integer.xnor.xnor_gemm, the int64 oracle).
 *
 *   xnor_popcount DIR REPEATS     reads DIR/shape.txt ("M K N"), codes.u8 (M x K), weights.i8 (N x K, +-1),
 *                                 a_words.u64 (M x W), w_words.u64 (N x W), W = ceil(K / 64), zero padded;
 *                                 writes DIR/acc_<kernel>.i32 (M x N) and prints "kernel seconds" per kernel
 *                                 (the fastest of REPEATS runs, CPU time of this process).
 *
 * Compiled for any x86-64 (cc -O2, no -march): the SIMD kernels carry target attributes and run only where
 * __builtin_cpu_supports says the CPU has them. Plain C99 otherwise (gcc or clang builtins).
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int M, K, N, W;
static uint8_t *codes;
static int8_t *weights;
static uint64_t *a_words, *w_words;

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *read_file(const char *dir, const char *name, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    void *data = malloc(bytes ? bytes : 1);
    if (!f || !data || fread(data, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot read %s (%zu bytes)\n", path, bytes);
        exit(2);
    }
    fclose(f);
    return data;
}

static void write_file(const char *dir, const char *name, const void *data, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

/* Portable C: a popcount from shifts and masks (what a compiler without a popcount instruction emits). */
static int popcount64(uint64_t v)
{
    v = v - ((v >> 1) & 0x5555555555555555ULL);
    v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
    v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int)((v * 0x0101010101010101ULL) >> 56);
}

static void xnor_portable(int32_t *acc)
{
    for (int m = 0; m < M; m++) {
        const uint64_t *a = a_words + (size_t)m * W;
        for (int n = 0; n < N; n++) {
            const uint64_t *w = w_words + (size_t)n * W;
            int differ = 0;
            for (int j = 0; j < W; j++)
                differ += popcount64(a[j] ^ w[j]);
            acc[(size_t)m * N + n] = K - 2 * differ;
        }
    }
}

__attribute__((target("popcnt"))) static void xnor_popcnt(int32_t *acc)
{
    for (int m = 0; m < M; m++) {
        const uint64_t *a = a_words + (size_t)m * W;
        for (int n = 0; n < N; n++) {
            const uint64_t *w = w_words + (size_t)n * W;
            long long differ = 0;
            for (int j = 0; j < W; j++)
                differ += __builtin_popcountll(a[j] ^ w[j]);
            acc[(size_t)m * N + n] = K - 2 * (int32_t)differ;
        }
    }
}

/* AVX-512 VPOPCNTQ: eight words per XOR and popcount, four output channels per pass over a row of a. */
#define VPOPCNT_TARGET __attribute__((target("avx512f,avx512vpopcntdq")))

VPOPCNT_TARGET static void xnor_vpopcntq(int32_t *acc)
{
    int full = W / 8 * 8;
    for (int m = 0; m < M; m++) {
        const uint64_t *a = a_words + (size_t)m * W;
        int n = 0;
        for (; n + 4 <= N; n += 4) {
            const uint64_t *w0 = w_words + (size_t)n * W, *w1 = w0 + W, *w2 = w1 + W, *w3 = w2 + W;
            __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
            for (int j = 0; j < full; j += 8) {
                __m512i x = _mm512_loadu_si512(a + j);
                s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_loadu_si512(w0 + j))));
                s1 = _mm512_add_epi64(s1, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_loadu_si512(w1 + j))));
                s2 = _mm512_add_epi64(s2, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_loadu_si512(w2 + j))));
                s3 = _mm512_add_epi64(s3, _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_loadu_si512(w3 + j))));
            }
            long long d[4] = {_mm512_reduce_add_epi64(s0), _mm512_reduce_add_epi64(s1),
                              _mm512_reduce_add_epi64(s2), _mm512_reduce_add_epi64(s3)};
            for (int j = full; j < W; j++) {
                d[0] += __builtin_popcountll(a[j] ^ w0[j]);
                d[1] += __builtin_popcountll(a[j] ^ w1[j]);
                d[2] += __builtin_popcountll(a[j] ^ w2[j]);
                d[3] += __builtin_popcountll(a[j] ^ w3[j]);
            }
            for (int i = 0; i < 4; i++)
                acc[(size_t)m * N + n + i] = K - 2 * (int32_t)d[i];
        }
        for (; n < N; n++) {
            const uint64_t *w = w_words + (size_t)n * W;
            long long differ = 0;
            for (int j = 0; j < W; j++)
                differ += __builtin_popcountll(a[j] ^ w[j]);
            acc[(size_t)m * N + n] = K - 2 * (int32_t)differ;
        }
    }
}

/* int8 codes (0..127, after a ReLU) x +-1 int8 weights with VPDPBUSD: 64 multiply-adds per instruction, four
 * output channels per pass over a row of codes, as the library's VNNI tile does; K a multiple of 64 here. */
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))

VNNI_TARGET static void int8_vnni(int32_t *acc)
{
    for (int m = 0; m < M; m++) {
        const uint8_t *x = codes + (size_t)m * K;
        for (int n = 0; n < N; n += 4) {
            const int8_t *w0 = weights + (size_t)n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
            __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
            for (int k = 0; k < K; k += 64) {
                __m512i v = _mm512_loadu_si512(x + k);
                s0 = _mm512_dpbusd_epi32(s0, v, _mm512_loadu_si512(w0 + k));
                s1 = _mm512_dpbusd_epi32(s1, v, _mm512_loadu_si512(w1 + k));
                s2 = _mm512_dpbusd_epi32(s2, v, _mm512_loadu_si512(w2 + k));
                s3 = _mm512_dpbusd_epi32(s3, v, _mm512_loadu_si512(w3 + k));
            }
            acc[(size_t)m * N + n] = _mm512_reduce_add_epi32(s0);
            acc[(size_t)m * N + n + 1] = _mm512_reduce_add_epi32(s1);
            acc[(size_t)m * N + n + 2] = _mm512_reduce_add_epi32(s2);
            acc[(size_t)m * N + n + 3] = _mm512_reduce_add_epi32(s3);
        }
    }
}

typedef struct {
    const char *name;
    void (*run)(int32_t *);
    int available;
} kernel;

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DIR REPEATS\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int repeats = atoi(argv[2]);
    char path[4096];
    snprintf(path, sizeof path, "%s/shape.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f || fscanf(f, "%d %d %d", &M, &K, &N) != 3 || M < 1 || K < 64 || K % 64 || N < 4 || N % 4) {
        fprintf(stderr, "%s: need 'M K N' with K a multiple of 64 and N of 4\n", path);
        return 2;
    }
    fclose(f);
    W = (K + 63) / 64;
    codes = read_file(dir, "codes.u8", (size_t)M * K);
    weights = read_file(dir, "weights.i8", (size_t)N * K);
    a_words = read_file(dir, "a_words.u64", (size_t)M * W * 8);
    w_words = read_file(dir, "w_words.u64", (size_t)N * W * 8);
    __builtin_cpu_init();
    kernel kernels[] = {
        {"int8_vnni", int8_vnni, __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")},
        {"xnor_portable", xnor_portable, 1},
        {"xnor_popcnt", xnor_popcnt, __builtin_cpu_supports("popcnt")},
        {"xnor_vpopcntq", xnor_vpopcntq, __builtin_cpu_supports("avx512vpopcntdq")},
    };
    int32_t *acc = malloc((size_t)M * N * sizeof *acc);
    for (size_t i = 0; i < sizeof kernels / sizeof *kernels; i++) {
        if (!kernels[i].available) {
            printf("%s unavailable\n", kernels[i].name);
            continue;
        }
        double best = 1e30;
        for (int r = 0; r < repeats; r++) {
            memset(acc, 0, (size_t)M * N * sizeof *acc);
            double t0 = cpu_seconds();
            kernels[i].run(acc);
            double t = cpu_seconds() - t0;
            best = t < best ? t : best;
        }
        snprintf(path, sizeof path, "acc_%s.i32", kernels[i].name);
        write_file(dir, path, acc, (size_t)M * N * sizeof *acc);
        printf("%s %.9f\n", kernels[i].name, best);
    }
    free(acc);
    return 0;
}
