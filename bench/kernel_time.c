/* kernel_time: one thread's time per call of kernels_grad_layer1 (dW1 = X^T dZ1), fast and
 * exact mode at several chunk sizes (40 fractional bits, and the 32-bit sums that a
 * grad_bound allows), on random pixel data that is dense (1..255) or MNIST-like (81%
 * zeros), best of REPS calls. A developer's tool for the exact-mode
 * conversion (docs/reduction.md); `make bench` does not run it.
 *
 *   kernel_time [M H REPS]      (default 32 128 2000)
 *
 * Build: make && cc -O2 -fopenmp -Iinclude -o build/bench/kernel_time bench/kernel_time.c \
 *            build/src/kernels.o build/src/kernels_ref.o -lm */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"
#include "kernels.h"

enum { D = 784 };

static double best_call(const KernelsInput *X, const uint32_t *idx, size_t m, size_t h,
                        const float *dZ1, const KernelsScratch *sc, const KernelsSink *sink,
                        int reps)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        kernels_grad_layer1(X, idx, m, D, h, dZ1, sc, sink);
        const double t = now() - t0;
        if (t < best)
            best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    const size_t m = argc > 1 ? strtoul(argv[1], NULL, 10) : 32;
    const size_t h = argc > 2 ? strtoul(argv[2], NULL, 10) : 128;
    const int reps = argc > 3 ? atoi(argv[3]) : 2000;
    size_t pf, ll;
    if (m == 0 || h == 0 || kernels_scratch_size(m, D, h, &pf, &ll) != 0)
        return 1;
    uint8_t *px = malloc(m * D);
    uint32_t *idx = malloc(m * sizeof *idx);
    float *dZ1 = malloc(m * h * sizeof *dZ1), *rmax = malloc(m * sizeof *rmax);
    float *of = malloc((D + 1) * h * sizeof *of);
    int64_t *oi = malloc((D + 1) * h * sizeof *oi);
    KernelsScratch sc = {malloc(pf * sizeof(float)), malloc(ll * sizeof(uint32_t))};
    if (!px || !idx || !dZ1 || !rmax || !of || !oi || !sc.panel || !sc.list)
        return 1;
    unsigned s = 1;
    for (size_t r = 0; r < m; r++) {
        idx[r] = (uint32_t)r;
        rmax[r] = 0;
        for (size_t j = 0; j < h; j++) {
            dZ1[r * h + j] = ((float)(next(&s) & 0xffff) / 65536.0f - 0.5f) * 1e-3f;
            const float a = dZ1[r * h + j] < 0 ? -dZ1[r * h + j] : dZ1[r * h + j];
            rmax[r] = a > rmax[r] ? a : rmax[r];
        }
    }
    const size_t chunks[] = {1, 2, 4, 8, 16, 32};
    for (int dense = 1; dense >= 0; dense--) {
        for (size_t i = 0; i < m * D; i++) {
            const unsigned v = next(&s);
            px[i] = dense ? (uint8_t)(1 + v % 255) : (v % 100 < 19 ? (uint8_t)(1 + v % 255) : 0);
        }
        const KernelsInput X = {.u8 = px};
        const KernelsSink fast = {.out_f = of};
        const double tf = best_call(&X, idx, m, h, dZ1, &sc, &fast, reps);
        printf("%s m=%zu h=%zu fast %.1f us", dense ? "dense" : "mnist-like", m, h, tf * 1e6);
        for (int bounded = 0; bounded <= 1; bounded++) {
            printf("\n  %s:", bounded ? "32-bit (grad_bound)" : "40-bit");
            for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
                int64_t bad = 0;
                const KernelsSink ex = {.out_i = oi, .chunk = chunks[c], .limit = 1e6f,
                                        .bad = &bad, .row_max = rmax,
                                        .grad_bound = bounded ? rows_bound(rmax, m) : 0,
                                        .out_i32 = bounded ? (int32_t *)(void *)oi : NULL};
                const double te = best_call(&X, idx, m, h, dZ1, &sc, &ex, reps);
                printf("  chunk %zu %.1f us (%.2fx)", chunks[c], te * 1e6, te / tf);
            }
        }
        printf("\n");
    }
    return 0;
}
