/* kernel_rate: the FMA peak of one core, and the rate of mlp's two large kernels against
 * it, one thread, for `make bench` (docs/performance.md).
 *
 *   kernel_rate B:H [B:H ...]
 *
 * Prints one line "peak gflops=P" (the best of several runs of a loop of independent
 * vector multiply-adds as wide as the build's vectors: 16 lanes with AVX-512, 8 with AVX),
 * then per shape "kernel name=N b=B h=H seconds=S gflops=G" for kernels_hidden_forward
 * (Z1 = X W1 and the sigmoid) and kernels_grad_layer1 (dW1 = X^T dZ1, fast, and exact at
 * chunk = ceil(B / 8), train.chunk = auto): the best of REPS calls on B rows drawn at
 * random from 60,000 dense pixel rows (1..255, no zero to skip), GFLOP = 2 B 784 H.
 *
 * Build (bench/bench.mk): cc -O2 -march=native -ffp-contract=fast -fopenmp -Iinclude
 *   bench/kernel_rate.c build/src/kernels.o build/src/kernels_ref.o -lm */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "kernels.h"

enum { D = 784, NROWS = 60000, REPS = 200 };

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
typedef float vec __attribute__((vector_size(4 * LANES)));

/* GFLOP/s of n rounds of 12 independent multiply-add chains (contracted to FMA where the
 * target has it): enough chains to hide the FMA latency on two FMA pipes. */
static double peak_once(long n)
{
    const vec a = (vec){0} + 0.999999f, b = (vec){0} + 1e-7f;
    vec c0 = (vec){0} + 0.0f, c1 = (vec){0} + 1.0f, c2 = (vec){0} + 2.0f, c3 = (vec){0} + 3.0f;
    vec c4 = (vec){0} + 4.0f, c5 = (vec){0} + 5.0f, c6 = (vec){0} + 6.0f, c7 = (vec){0} + 7.0f;
    vec c8 = (vec){0} + 8.0f, c9 = (vec){0} + 9.0f, c10 = (vec){0} + 10.0f, c11 = (vec){0} + 11.0f;
    const double t0 = now();
    for (long r = 0; r < n; r++) {
        c0 = c0 * a + b, c1 = c1 * a + b, c2 = c2 * a + b, c3 = c3 * a + b;
        c4 = c4 * a + b, c5 = c5 * a + b, c6 = c6 * a + b, c7 = c7 * a + b;
        c8 = c8 * a + b, c9 = c9 * a + b, c10 = c10 * a + b, c11 = c11 * a + b;
    }
    const double t = now() - t0;
    const vec all = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
    float sink = 0;
    for (int l = 0; l < LANES; l++)
        sink += all[l];
    if (sink == 12345.0f)   /* uses the sums, so that the loop stays; never true */
        printf("#\n");
    return 2.0 * 12 * LANES * (double)n / t * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kernel_rate B:H [B:H ...]\n");
        return 2;
    }
    omp_set_num_threads(1);
    double peak = 0;
    for (int r = 0; r < 5; r++) {
        const double g = peak_once(20000000);
        peak = g > peak ? g : peak;
    }
    printf("peak gflops=%.2f lanes=%d\n", peak, LANES);

    uint8_t *px = malloc((size_t)NROWS * D);
    if (!px)
        return 1;
    unsigned s = 1;
    for (size_t i = 0; i < (size_t)NROWS * D; i++)
        px[i] = (uint8_t)(1 + next(&s) % 255);
    const KernelsInput X = {.u8 = px};
    for (int a = 1; a < argc; a++) {
        size_t b, h;
        if (sscanf(argv[a], "%zu:%zu", &b, &h) != 2 || b == 0 || h == 0)
            return 2;
        size_t pf, ll;
        if (kernels_scratch_size(b, D, h, &pf, &ll) != 0)
            return 1;
        float *W1 = malloc(D * h * sizeof *W1), *b1 = calloc(h, sizeof *b1);
        float *A1 = malloc(b * h * sizeof *A1), *dZ1 = malloc(b * h * sizeof *dZ1);
        float *rmax = malloc(b * sizeof *rmax), *gf = malloc((D + 1) * h * sizeof *gf);
        int64_t *gi = malloc((D + 1) * h * sizeof *gi), bad = 0;
        uint32_t *idx = malloc(b * sizeof *idx);
        KernelsScratch sc = {malloc(pf * sizeof(float)), malloc(ll * sizeof(uint32_t))};
        if (!W1 || !b1 || !A1 || !dZ1 || !rmax || !gf || !gi || !idx || !sc.panel || !sc.list)
            return 1;
        fill_operands(&s, b, h, W1, dZ1, rmax);
        const KernelsSink fast = {.out_f = gf};
        /* as the trainer asks for it: dW1 in int32 under the bound (KernelsSink.out_i32) */
        const KernelsSink exact = {.out_i = gi, .chunk = (b + 7) / 8, .limit = 1e5f,
                                   .bad = &bad, .row_max = rmax,
                                   .grad_bound = rows_bound(rmax, b),
                                   .out_i32 = (int32_t *)(void *)gi};
        double best[3] = {1e30, 1e30, 1e30};
        for (int r = 0; r < REPS; r++) {
            for (size_t i = 0; i < b; i++)
                idx[i] = next(&s) % NROWS;
            double t[4];
            t[0] = now();
            kernels_hidden_forward(&X, idx, b, D, h, W1, b1, A1, &sc);
            t[1] = now();
            kernels_grad_layer1(&X, idx, b, D, h, dZ1, &sc, &fast);
            t[2] = now();
            kernels_grad_layer1(&X, idx, b, D, h, dZ1, &sc, &exact);
            t[3] = now();
            for (int k = 0; k < 3; k++)
                best[k] = t[k + 1] - t[k] < best[k] ? t[k + 1] - t[k] : best[k];
        }
        const double gflop = 2.0 * (double)b * D * (double)h * 1e-9;
        const char *name[3] = {"hidden_forward", "grad_layer1_fast", "grad_layer1_exact"};
        for (int k = 0; k < 3; k++)
            printf("kernel name=%s b=%zu h=%zu seconds=%.6f gflops=%.2f\n", name[k], b, h,
                   best[k], gflop / best[k]);
        free(W1), free(b1), free(A1), free(dZ1), free(rmax), free(gf), free(gi), free(idx);
        free(sc.panel), free(sc.list);
    }
    free(px);
    return 0;
}
