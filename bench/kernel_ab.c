/* kernel_ab: two builds of src/kernels.c (A and B, their symbols renamed A_kernels_* and
 * B_kernels_* by bench/kernel-ab) called alternately on the same batches in one process,
 * so that both meet the machine in the same state; see bench/kernel-ab.
 *
 *   kernel_ab [-d mnist|dense] [-r CALLS] B:H [B:H ...]
 *
 * Per shape: kernels_hidden_forward, kernels_grad_layer1 fast, and exact at
 * chunk = ceil(B / 8), on B rows drawn at random from 60,000 (MNIST's training images, or
 * dense random pixels 1..255), a new batch for every call but the first round's two (so
 * that neither build finds the other's rows in the cache), with the threads
 * OMP_NUM_THREADS gives. Prints per kernel
 * the median and best call as dense-equivalent GFLOP/s (2 B 784 H flops per call) for A
 * and B, and the median over calls of B's time over A's in the same round (below 1: B is
 * faster); then whether A and B gave the same bits (the first round's outputs). With
 * signatures (kernels_signatures, where a build has it) for the forward pass. */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "kernels.h"

#define DECLARE(P)                                                                           \
    int P##kernels_scratch_size(size_t m, size_t d, size_t h, size_t *panel_floats,          \
                                size_t *list_len);                                           \
    void P##kernels_hidden_forward(const KernelsInput *X, const uint32_t *idx, size_t m,     \
                                   size_t d, size_t h, const float *W1, const float *b1,     \
                                   float *A1, const KernelsScratch *scratch);                \
    void P##kernels_grad_layer1(const KernelsInput *X, const uint32_t *idx, size_t m,        \
                                size_t d, size_t h, const float *dZ1,                        \
                                const KernelsScratch *scratch, const KernelsSink *sink);     \
    void P##kernels_signatures(const KernelsInput *X, size_t n, size_t d, uint64_t *sig)     \
        __attribute__((weak));
DECLARE(A_)
DECLARE(B_)

enum { D = 784, NROWS = 60000, NK = 3 };

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One build's view: its own scratch, input (with its signatures) and outputs. */
typedef struct {
    KernelsScratch sc;
    KernelsInput X;
    float *A1, *gf;
    int64_t *gi;
} Side;

static void side_init(Side *s, const uint8_t *px, size_t b, size_t h, size_t pf, size_t ll,
                      void (*sig)(const KernelsInput *, size_t, size_t, uint64_t *))
{
    s->sc = (KernelsScratch){aligned_alloc(64, (pf * sizeof(float) + 63) / 64 * 64),
                             malloc(ll * sizeof(uint32_t))};
    s->X = (KernelsInput){.u8 = px};
    s->A1 = malloc(b * h * sizeof *s->A1);
    s->gf = malloc((D + 1) * h * sizeof *s->gf);
    s->gi = malloc((D + 1) * h * sizeof *s->gi);
    if (!s->sc.panel || !s->sc.list || !s->A1 || !s->gf || !s->gi)
        exit(1);
    if (sig) {
        uint64_t *v = malloc(NROWS * sizeof *v);
        if (!v)
            exit(1);
        sig(&s->X, NROWS, D, v);
        s->X.sig = v;
    }
}

int main(int argc, char **argv)
{
    int reps = 0, dense = 0, a = 1;
    for (; a < argc && argv[a][0] == '-'; a++) {
        if (!strcmp(argv[a], "-r") && a + 1 < argc)
            reps = atoi(argv[++a]);
        else if (!strcmp(argv[a], "-d") && a + 1 < argc)
            dense = !strcmp(argv[++a], "dense");
        else
            a = argc;
    }
    if (a >= argc) {
        fprintf(stderr, "usage: kernel_ab [-d mnist|dense] [-r CALLS] B:H [B:H ...]\n");
        return 2;
    }
    uint8_t *px = malloc((size_t)NROWS * D);
    unsigned s = 1;
    if (!px)
        return 1;
    FILE *f = dense ? NULL : fopen("data/mnist/train-images-idx3-ubyte", "rb");
    if (!dense && (!f || fseek(f, 16, SEEK_SET) != 0 ||
                   fread(px, 1, (size_t)NROWS * D, f) != (size_t)NROWS * D)) {
        fprintf(stderr, "kernel_ab: cannot read data/mnist/train-images-idx3-ubyte (make data)\n");
        return 1;
    }
    if (f)
        fclose(f);
    if (dense)
        for (size_t i = 0; i < (size_t)NROWS * D; i++)
            px[i] = (uint8_t)(1 + next(&s) % 255);
    printf("data %s, %d threads\n", dense ? "dense" : "mnist", omp_get_max_threads());
    for (; a < argc; a++) {
        size_t b, h, pf, ll, pf2, ll2;
        if (sscanf(argv[a], "%zu:%zu", &b, &h) != 2 || b == 0 || h == 0)
            return 2;
        if (A_kernels_scratch_size(b, D, h, &pf, &ll) != 0 ||
            B_kernels_scratch_size(b, D, h, &pf2, &ll2) != 0)
            return 1;
        pf = pf2 > pf ? pf2 : pf, ll = ll2 > ll ? ll2 : ll;
        const int n = reps > 0 ? reps : (int)(60000 / b < 300 ? 300 : 60000 / b);
        float *W1 = malloc(D * h * sizeof *W1), *b1 = calloc(h, sizeof *b1);
        float *dZ1 = malloc(b * h * sizeof *dZ1), *rmax = malloc(b * sizeof *rmax);
        uint32_t *idx = malloc(b * sizeof *idx);
        double *t = malloc((size_t)n * 2 * NK * sizeof *t);
        double *ratio = malloc((size_t)n * sizeof *ratio);
        if (!W1 || !b1 || !dZ1 || !rmax || !idx || !t || !ratio)
            return 1;
        fill_operands(&s, b, h, W1, dZ1, rmax);
        Side side[2];
        side_init(&side[0], px, b, h, pf, ll, A_kernels_signatures);
        side_init(&side[1], px, b, h, pf, ll, B_kernels_signatures);
        int64_t bad = 0;
        int same[NK] = {1, 1, 1};
        for (int r = 0; r < n; r++) {
            for (int o = 0; o < 2; o++) {   /* A first in even rounds, B first in odd */
                const int v = (r + o) & 1;
                /* each call its own batch (the first round's the same for both, for the
                 * bits): rows the other build has just read would be in the cache */
                if (r > 0 || o == 0)
                    for (size_t i = 0; i < b; i++)
                        idx[i] = next(&s) % NROWS;
                Side *x = &side[v];
                const KernelsSink fast = {.out_f = x->gf};
                /* dW1 in int32 as the trainer asks for it (out_i32; a revision before
                 * a7e6ce1 ignores the field and stores int64: its bits then differ) */
                const KernelsSink exact = {.out_i = x->gi, .chunk = (b + 7) / 8, .limit = 1e5f,
                                           .bad = &bad, .row_max = rmax,
                                           .grad_bound = rows_bound(rmax, b),
                                           .out_i32 = (int32_t *)(void *)x->gi};
                double t0 = now();
                (v ? B_kernels_hidden_forward : A_kernels_hidden_forward)(&x->X, idx, b, D, h, W1,
                                                                          b1, x->A1, &x->sc);
                double t1 = now();
                (v ? B_kernels_grad_layer1 : A_kernels_grad_layer1)(&x->X, idx, b, D, h, dZ1,
                                                                    &x->sc, &fast);
                double t2 = now();
                (v ? B_kernels_grad_layer1 : A_kernels_grad_layer1)(&x->X, idx, b, D, h, dZ1,
                                                                    &x->sc, &exact);
                double t3 = now();
                double *tv = t + (size_t)v * NK * n;
                tv[0 * n + r] = t1 - t0, tv[1 * n + r] = t2 - t1, tv[2 * n + r] = t3 - t2;
            }
            if (r == 0) {
                same[0] = !memcmp(side[0].A1, side[1].A1, b * h * sizeof(float));
                same[1] = !memcmp(side[0].gf, side[1].gf, (D + 1) * h * sizeof(float));
                same[2] = !memcmp(side[0].gi, side[1].gi, (D + 1) * h * sizeof(int64_t));
            }
        }
        const double gflop = 2.0 * (double)b * D * (double)h * 1e-9;
        const char *name[NK] = {"hidden_forward", "grad_layer1_fast", "grad_layer1_exact"};
        for (int k = 0; k < NK; k++) {
            double *ta = t + (size_t)k * n, *tb = t + (size_t)(NK + k) * n;
            for (int r = 0; r < n; r++)
                ratio[r] = tb[r] / ta[r];
            qsort(ta, (size_t)n, sizeof *ta, cmp_double);
            qsort(tb, (size_t)n, sizeof *tb, cmp_double);
            qsort(ratio, (size_t)n, sizeof *ratio, cmp_double);
            printf("ab b=%zu h=%zu %-18s A %6.1f (best %6.1f)  B %6.1f (best %6.1f) GFLOP/s  "
                   "B/A %.3f  same bits: %s\n", b, h, name[k], gflop / ta[n / 2],
                   gflop / ta[0], gflop / tb[n / 2], gflop / tb[0], ratio[n / 2],
                   same[k] ? "yes" : "NO");
        }
        free(W1), free(b1), free(dZ1), free(rmax), free(idx), free(t), free(ratio);
        for (int v = 0; v < 2; v++) {
            free(side[v].sc.panel), free(side[v].sc.list), free(side[v].A1);
            free(side[v].gf), free(side[v].gi), free((void *)side[v].X.sig);
        }
    }
    free(px);
    return 0;
}
