/* The model and its kernels against the double-precision reference (reference.c) and
 * finite differences, on odd shapes; exactness of the fixed-point path across thread
 * counts and shard boundaries; one SGD step; the shard arithmetic. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "widen.h"
#include "kernels.h"
#include "model.h"
#include "reference.h"

/* pixels as the model takes them (kernels.h) */
#define U8(p) (&(const KernelsInput){.u8 = (p)})

typedef struct {
    size_t n, d, h, k;
    uint8_t *X, *labels;
    uint32_t *idx;
    Params p;
    double *theta;   /* the same parameters in double */
} Fixture;

static uint64_t rng_state = 0x1234567;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

/* Random data with many zero pixels (as MNIST), a shuffled index, Xavier weights with
 * random biases so that every parameter matters. */
static void fixture_init(Fixture *f, size_t n, size_t d, size_t h, size_t k, uint64_t seed)
{
    f->n = n, f->d = d, f->h = h, f->k = k;
    f->X = malloc(n * d);
    f->labels = malloc(n);
    f->idx = malloc(n * sizeof *f->idx);
    assert_non_null(f->X);
    for (size_t i = 0; i < n * d; i++)
        f->X[i] = rnd() % 3 == 0 ? 0 : (uint8_t)(rnd() & 255);
    for (size_t i = 0; i < n; i++) {
        f->labels[i] = (uint8_t)(rnd() % k);
        f->idx[i] = (uint32_t)i;
    }
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd() % i;
        uint32_t t = f->idx[i - 1];
        f->idx[i - 1] = f->idx[j];
        f->idx[j] = t;
    }
    assert_int_equal(model_params_init(&f->p, d, h, k), 0);
    model_init_xavier(&f->p, seed);
    for (size_t j = 0; j < h; j++)
        f->p.b1[j] = (float)((int)(rnd() % 200) - 100) / 400.0f;
    for (size_t j = 0; j < k; j++)
        f->p.b2[j] = (float)((int)(rnd() % 200) - 100) / 400.0f;
    f->theta = malloc(f->p.count * sizeof *f->theta);
    for (size_t i = 0; i < f->p.count; i++)
        f->theta[i] = f->p.block[i];
}

static void fixture_free(Fixture *f)
{
    free(f->X);
    free(f->labels);
    free(f->idx);
    free(f->theta);
    model_params_free(&f->p);
}

static const size_t shapes[][4] = {   /* m (= n), d, h, k */
    {1, 1, 1, 2}, {3, 3, 3, 3}, {17, 17, 17, 17}, {5, 255, 65, 10}, {33, 100, 129, 7},
    {64, 784, 128, 10}, {255, 3, 1, 2},
};

/* Largest |a - b| relative to the largest |b| (gradients vary over orders of magnitude). */
static double rel_err(const float *a, const double *b, size_t n)
{
    double diff = 0, scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs(b[i]));
    }
    return diff / scale;
}

/* The reference's analytic gradient agrees with central finite differences of the
 * reference loss, for every parameter (all in double). */
static void test_reference_vs_finite_differences(void **state)
{
    (void)state;
    Fixture f;
    fixture_init(&f, 6, 5, 4, 3, 7);
    size_t n = f.p.count;
    double *g = malloc(n * sizeof *g);
    ref_loss_grad(f.theta, f.d, f.h, f.k, f.X, f.labels, f.idx, f.n, (double)f.n, g, NULL);
    for (size_t i = 0; i < n; i++) {
        const double eps = 1e-5, keep = f.theta[i];
        f.theta[i] = keep + eps;
        double lp = ref_loss_grad(f.theta, f.d, f.h, f.k, f.X, f.labels, f.idx, f.n,
                                  (double)f.n, NULL, NULL);
        f.theta[i] = keep - eps;
        double lm = ref_loss_grad(f.theta, f.d, f.h, f.k, f.X, f.labels, f.idx, f.n,
                                  (double)f.n, NULL, NULL);
        f.theta[i] = keep;
        double fd = (lp - lm) / (2 * eps);
        if (fabs(fd - g[i]) > 1e-7 + 1e-5 * fabs(fd))
            fail_msg("parameter %zu: analytic %.10g, finite difference %.10g", i, g[i], fd);
    }
    free(g);
    fixture_free(&f);
}

/* Forward activations and loss of the kernels against the reference. */
static void test_forward_vs_reference(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        Fixture f;
        fixture_init(&f, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], s);
        size_t m = f.n, h = f.h, k = f.k;
        float *A1 = malloc(m * h * sizeof *A1);
        double *rA1 = malloc(m * h * sizeof *rA1), *rA2 = malloc(m * k * sizeof *rA2);
        double *loss = malloc(m * sizeof *loss);
        uint8_t *correct = malloc(m);
        size_t np, nl;
        assert_int_equal(kernels_scratch_size(m, f.d, h, &np, &nl), 0);
        KernelsScratch sc = {malloc(np * sizeof(float)), malloc(nl * sizeof(uint32_t))};
        const KernelsInput in = {.u8 = f.X};
        kernels_hidden_forward(&in, f.idx, m, f.d, h, f.p.W1, f.p.b1, A1, &sc);
        free(sc.panel), free(sc.list);
        ref_forward(f.theta, f.d, h, k, f.X, f.idx, m, rA1, rA2);
        assert_true(rel_err(A1, rA1, m * h) < 1e-5);
        float *W2t = malloc(h * k * sizeof *W2t);
        kernels_output_backward(A1, f.labels, f.idx, m, h, k, f.p.W2, f.p.b2, W2t, 0, NULL,
                                NULL, NULL, loss, correct);
        for (size_t r = 0; r < m; r++) {
            double ref = -log(rA2[r * k + f.labels[f.idx[r]]]);
            if (fabs(loss[r] - ref) > 1e-5 * (1 + ref))
                fail_msg("shape %zu row %zu: loss %.8g, reference %.8g", s, r, loss[r], ref);
        }
        free(A1), free(rA1), free(rA2), free(loss), free(correct), free(W2t);
        fixture_free(&f);
    }
}

/* Full gradient, fast and exact (several chunk sizes), against the reference. */
static void test_gradients_vs_reference(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        Fixture f;
        fixture_init(&f, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], 100 + s);
        size_t n = f.p.count, m = f.n;
        double *ref = malloc(n * sizeof *ref);
        long ref_correct;
        double ref_loss = ref_loss_grad(f.theta, f.d, f.h, f.k, f.X, f.labels, f.idx, m,
                                        (double)m, ref, &ref_correct);
        Workspace w;
        assert_int_equal(model_workspace_init(&w, &f.p, m), 0);
        float *gf = malloc(n * sizeof *gf);
        int64_t *gi = malloc(n * sizeof *gi);

        ModelStats st = model_step_gradients(&f.p, U8(f.X), f.labels, f.idx, m, m, &w, 0, gf, NULL,
                                             0, NULL);
        if (rel_err(gf, ref, n) > 1e-4)
            fail_msg("shape %zu fast: relative error %g", s, rel_err(gf, ref, n));
        assert_int_equal(st.correct, ref_correct);
        assert_true(fabs((double)st.loss_fix / MODEL_LOSS_SCALE / (double)m - ref_loss) <
                    1e-5 * (1 + ref_loss));

        const size_t chunks[] = {1, 3, 16, 1000};
        for (size_t c = 0; c < 4; c++) {
            memset(gi, 0x5a, n * sizeof *gi);
            int64_t bad = 0;
            const ModelStats se = model_step_gradients(&f.p, U8(f.X), f.labels, f.idx, m, m, &w,
                                                       chunks[c], NULL, gi, 1e6f, &bad);
            assert_int_equal(bad, 0);
            widen_grad1(gi, f.d * f.h + f.h, se.grad1_bits);
            for (size_t i = 0; i < n; i++)
                gf[i] = (float)((double)gi[i] * 0x1p-40);
            if (rel_err(gf, ref, n) > 1e-4)
                fail_msg("shape %zu exact chunk %zu: relative error %g", s, chunks[c],
                         rel_err(gf, ref, n));
        }
        free(ref), free(gf), free(gi);
        model_workspace_free(&w);
        fixture_free(&f);
    }
}

/* Exact mode: the fixed-point gradient is bit-for-bit the same for 1, 2 and 3 threads and
 * when the minibatch is split at chunk boundaries over "ranks" whose parts are summed. */
static void test_exact_independent_of_threads_and_shards(void **state)
{
    (void)state;
    Fixture f;
    fixture_init(&f, 50, 67, 208, 10, 9);   /* h = 128 + 64 + 16: every row path */
    const size_t n = f.p.count, m = f.n, chunk = 4;
    Workspace w;
    assert_int_equal(model_workspace_init(&w, &f.p, m), 0);
    int64_t *want = calloc(n, sizeof *want), *got = calloc(n, sizeof *got);
    int64_t bad = 0;
    omp_set_num_threads(1);
    ModelStats s1 = model_step_gradients(&f.p, U8(f.X), f.labels, f.idx, m, m, &w, chunk, NULL, want,
                                         1e6f, &bad);
    /* dW1 and db1 on the int32 path: the bound from W2 gives b < 40 bits, and the step
     * passed the bound to the kernel and says it stored them as int32 at those bits */
    const size_t n32 = f.d * f.h + f.h;
    const KernelsSink bs = {.out_i = want, .chunk = chunk, .limit = 1e6f,
                            .grad_bound = kernels_grad1_bound(U8(f.X), f.p.W2, f.h, f.k, chunk)};
    const int bits = kernels_fix_bits(U8(f.X), &bs);
    assert_true(bits >= 26 && bits < KERNELS_FIX_BITS);
    assert_int_equal(s1.grad1_bits, bits);
    widen_grad1(want, n32, s1.grad1_bits);
    int nonzero = 0;
    for (size_t i = 0; i < n32; i++)
        nonzero |= want[i] != 0;
    assert_true(nonzero);
    for (int threads = 2; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        memset(got, 0x5a, n * sizeof *got);
        ModelStats s2 = model_step_gradients(&f.p, U8(f.X), f.labels, f.idx, m, m, &w, chunk, NULL,
                                             got, 1e6f, &bad);
        assert_int_equal(s2.grad1_bits, bits);
        widen_grad1(got, n32, s2.grad1_bits);
        assert_memory_equal(want, got, n * sizeof *got);
        assert_int_equal(s1.loss_fix, s2.loss_fix);
    }
    int64_t *part = malloc(n * sizeof *part);
    for (int ranks = 2; ranks <= 16; ranks++) {   /* 13 chunks: from 14 ranks on, some idle */
        memset(got, 0, n * sizeof *got);
        int64_t loss = 0, correct = 0;
        for (int r = 0; r < ranks; r++) {   /* each "rank" stores its part; the sum is the allreduce */
            size_t b, e;
            dist_shard(m, chunk, r, ranks, &b, &e);
            memset(part, 0x5a, n * sizeof *part);   /* stored, never added to */
            ModelStats st = model_step_gradients(&f.p, U8(f.X), f.labels, f.idx + b, e - b, m, &w,
                                                 chunk, NULL, part, 1e6f, &bad);
            assert_int_equal(st.grad1_bits, bits);   /* an idle "rank" too */
            widen_grad1(part, n32, st.grad1_bits);
            for (size_t i = 0; i < n; i++)
                got[i] += part[i];
            loss += st.loss_fix, correct += st.correct;
        }
        assert_memory_equal(want, got, n * sizeof *got);
        assert_int_equal(loss, s1.loss_fix);
        assert_int_equal(correct, s1.correct);
    }
    assert_int_equal(bad, 0);
    omp_set_num_threads(2);
    free(want), free(got), free(part);
    model_workspace_free(&w);
    fixture_free(&f);
}

/* Out-of-range and NaN chunk sums are counted, never added. */
static void test_exact_rejects_out_of_range(void **state)
{
    (void)state;
    Fixture f;
    fixture_init(&f, 8, 5, 3, 2, 3);
    Workspace w;
    assert_int_equal(model_workspace_init(&w, &f.p, f.n), 0);
    int64_t *g = calloc(f.p.count, sizeof *g), bad = 0;
    model_step_gradients(&f.p, U8(f.X), f.labels, f.idx, f.n, f.n, &w, 2, NULL, g, 1e-12f, &bad);
    assert_true(bad > 0);
    f.p.W2[0] = NAN;
    bad = 0;
    memset(g, 0, f.p.count * sizeof *g);
    ModelStats st = model_step_gradients(&f.p, U8(f.X), f.labels, f.idx, f.n, f.n, &w, 2, NULL, g,
                                         1e6f, &bad);
    assert_true(bad + st.bad > 0);
    free(g);
    model_workspace_free(&w);
    fixture_free(&f);
}

/* kernels_grad_layer1 in exact mode, at the kernel level, for widths with a partial
 * register block only (3), one full block (64) and mixes (100, 130, 160): every chunk sum
 * that the double reference puts above the limit is rejected and counted, every other one
 * is added, and a NaN in one sample's dZ1 is rejected in exactly the chunk sums it
 * reaches. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A limit in the widest gap between the middle values of |S| (n reference chunk sums),
 * so that no float rounding can move a chunk sum across it; *above = how many exceed it. */
static double gap_limit(const double *S, size_t n, int64_t *above)
{
    double *sorted = malloc(n * sizeof *sorted);
    assert_non_null(sorted);
    for (size_t i = 0; i < n; i++)
        sorted[i] = fabs(S[i]);
    qsort(sorted, n, sizeof *sorted, cmp_double);
    size_t best = n / 4;
    for (size_t i = n / 4; i < 3 * n / 4; i++)
        if (sorted[i + 1] - sorted[i] > sorted[best + 1] - sorted[best])
            best = i;
    const double limit = (sorted[best] + sorted[best + 1]) / 2;
    assert_true(sorted[best + 1] - sorted[best] > 1e-4 * limit);
    free(sorted);
    *above = 0;
    for (size_t i = 0; i < n; i++)
        *above += fabs(S[i]) > limit;
    return limit;
}

/* out[e] * 2^-40 is the sum of the chunk sums S[e, :] that are within the limit. */
static void check_accepted(const int64_t *out, const double *S, size_t rows, size_t nch,
                           double limit, size_t h)
{
    for (size_t e = 0; e < rows; e++) {
        double want = 0;
        for (size_t q = 0; q < nch; q++)
            want += fabs(S[e * nch + q]) > limit ? 0 : S[e * nch + q];
        double got = (double)out[e] * 0x1p-40;
        if (fabs(got - want) > 1e-6 * (1 + fabs(want)))
            fail_msg("h %zu element %zu: %.9g, reference %.9g", h, e, got, want);
    }
}

static void test_grad_layer1_exact_limits(void **state)
{
    (void)state;
    const size_t m = 37, d = 19, chunk = 5, nch = (m + chunk - 1) / chunk;
    /* the row paths: 128, 64 and 16 columns at a time, and what is left */
    const size_t widths[] = {3, 64, 100, 130, 160};
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        const size_t h = widths[wi], rows = (d + 1) * h;
        uint8_t *X = malloc(m * d);
        uint32_t *ident = malloc(m * sizeof *ident);
        for (size_t r = 0; r < m; r++)
            ident[r] = (uint32_t)r;
        const KernelsInput in = {.u8 = X};
        size_t np, nl;
        assert_int_equal(kernels_scratch_size(m, d, h, &np, &nl), 0);
        KernelsScratch sc = {malloc(np * sizeof(float)), malloc(nl * sizeof(uint32_t))};
        float *dZ1 = malloc(m * h * sizeof *dZ1);
        double *S = calloc(rows * nch, sizeof *S);   /* (d+1, h, nch) reference chunk sums */
        int64_t *out = calloc(rows, sizeof *out);
        for (size_t i = 0; i < m * d; i++)
            X[i] = rnd() % 2 ? 0 : (uint8_t)(1 + rnd() % 255);
        for (size_t i = 0; i < m * h; i++)
            dZ1[i] = (float)((int)(rnd() % 20001) - 10000) / 10000.0f;
        for (size_t r = 0; r < m; r++)
            for (size_t j = 0; j < h; j++) {
                for (size_t c = 0; c < d; c++)
                    S[(c * h + j) * nch + r / chunk] += X[r * d + c] / 255.0 * dZ1[r * h + j];
                S[(d * h + j) * nch + r / chunk] += dZ1[r * h + j];
            }
        int64_t want_bad;
        const double limit = gap_limit(S, rows * nch, &want_bad);

        /* row bounds: with them the kernel may skip the range test where it cannot fail */
        float *row_max = calloc(m, sizeof *row_max);
        int64_t *plain = malloc(rows * sizeof *plain);
        for (size_t r = 0; r < m; r++)
            for (size_t j = 0; j < h; j++)
                row_max[r] = fmaxf(row_max[r], fabsf(dZ1[r * h + j]));
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            for (int bounded = 0; bounded <= 1; bounded++) {
                memset(out, 0x5a, rows * sizeof *out);
                int64_t bad = 0;
                KernelsSink sink = {.out_i = out, .chunk = chunk, .limit = (float)limit,
                                    .bad = &bad, .row_max = bounded ? row_max : NULL};
                kernels_grad_layer1(&in, ident, m, d, h, dZ1, &sc, &sink);
                assert_int_equal(bad, want_bad);
                check_accepted(out, S, rows, nch, limit, h);
            }
            /* a limit no chunk sum comes near: the untested path gives the same bits */
            int64_t bad = 0;
            KernelsSink sink = {.out_i = plain, .chunk = chunk, .limit = 1e6f, .bad = &bad};
            memset(plain, 0x5a, rows * sizeof *plain);
            kernels_grad_layer1(&in, ident, m, d, h, dZ1, &sc, &sink);
            sink.out_i = out, sink.row_max = row_max;
            memset(out, 0x5a, rows * sizeof *out);
            kernels_grad_layer1(&in, ident, m, d, h, dZ1, &sc, &sink);
            assert_int_equal(bad, 0);
            assert_memory_equal(out, plain, rows * sizeof *out);
            check_accepted(out, S, rows, nch, 1e6, h);
        }

        /* NaN in sample r, column j: rejected in the chunk sum of db1 and of every pixel
         * nonzero in sample r; a pixel zero there may skip the term (its tile of pixels
         * is zero in sample r) or meet 0 * NaN and be rejected too. Nothing else changes.
         * The row bound is NaN too. */
        const size_t r = 11, j = h - 1;
        dZ1[r * h + j] = NAN;
        row_max[r] = NAN;
        int64_t want_min = 1, bad = 0, rejected = 0;
        for (size_t c = 0; c < d; c++)
            want_min += X[r * d + c] != 0;
        memset(out, 0x5a, rows * sizeof *out);
        KernelsSink sink = {.out_i = out, .chunk = chunk, .limit = 1e6f, .bad = &bad,
                            .row_max = row_max};
        kernels_grad_layer1(&in, ident, m, d, h, dZ1, &sc, &sink);
        free(row_max), free(plain);
        for (size_t e = 0; e < rows; e++) {
            double with = 0, without = 0;
            for (size_t q = 0; q < nch; q++) {
                with += S[e * nch + q];
                if (!(e % h == j && q == r / chunk))
                    without += S[e * nch + q];
            }
            const int hit = e % h == j;   /* column j: the NaN's column */
            const int must = hit && (e / h == d || X[r * d + e / h]);
            const double got = (double)out[e] * 0x1p-40;
            const int is_without = fabs(got - without) <= 1e-6 * (1 + fabs(without));
            const int is_with = fabs(got - with) <= 1e-6 * (1 + fabs(with));
            if (must ? !is_without : hit ? !(is_with || is_without) : !is_with)
                fail_msg("h %zu NaN case, element %zu: %.9g, reference %.9g or %.9g", h, e, got,
                         with, without);
            rejected += hit && is_without && !is_with;
        }
        assert_true(bad >= want_min && bad <= (int64_t)d + 1 && bad >= rejected);
        free(X), free(ident), free(sc.panel), free(sc.list), free(dZ1), free(S), free(out);
    }
    omp_set_num_threads(2);
}

/* The same for kernels_grad_layer2 (dW2 then db2), with h = 3, 64 and 130: A1 in (0, 1),
 * dZ2 in (-1, 1), a limit in the widest gap of the reference chunk sums. */
static void test_grad_layer2_exact_limits(void **state)
{
    (void)state;
    const size_t m = 29, k = 7, chunk = 4, nch = (m + chunk - 1) / chunk;
    const size_t widths[] = {3, 64, 130};
    for (size_t wi = 0; wi < 3; wi++) {
        const size_t h = widths[wi], rows = h * k + k;
        float *A1 = malloc(m * h * sizeof *A1), *dZ2 = malloc(m * k * sizeof *dZ2);
        double *S = calloc(rows * nch, sizeof *S);
        int64_t *out = malloc(rows * sizeof *out);
        for (size_t i = 0; i < m * h; i++)
            A1[i] = (float)(1 + rnd() % 9999) / 10000.0f;
        for (size_t i = 0; i < m * k; i++)
            dZ2[i] = (float)((int)(rnd() % 20001) - 10000) / 10000.0f;
        for (size_t r = 0; r < m; r++)
            for (size_t j = 0; j < k; j++) {
                for (size_t i = 0; i < h; i++)
                    S[(i * k + j) * nch + r / chunk] += (double)A1[r * h + i] * dZ2[r * k + j];
                S[(h * k + j) * nch + r / chunk] += dZ2[r * k + j];
            }
        int64_t want_bad;
        const double limit = gap_limit(S, rows * nch, &want_bad);
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            memset(out, 0x5a, rows * sizeof *out);
            int64_t bad = 0;
            KernelsSink sink = {.out_i = out, .chunk = chunk, .limit = (float)limit, .bad = &bad};
            kernels_grad_layer2(A1, m, h, k, dZ2, &sink);
            assert_int_equal(bad, want_bad);
            check_accepted(out, S, rows, nch, limit, h);
        }
        free(A1), free(dZ2), free(S), free(out);
    }
    omp_set_num_threads(2);
}

/* kernels_output_backward's row bounds: dZ1_max[r] is exactly max |dZ1[r,:]| (h with and
 * without a 16-column tail), and NaN for a row with a NaN. */
static void test_output_dz1_max(void **state)
{
    (void)state;
    const size_t widths[] = {3, 16, 70, 130};
    for (size_t wi = 0; wi < 4; wi++) {
        const size_t h = widths[wi], m = 9, k = 4;
        Fixture f;
        fixture_init(&f, m, 5, h, k, 40 + wi);
        float *A1 = malloc(m * h * sizeof *A1), *W2t = malloc(h * k * sizeof *W2t);
        float *dZ2 = malloc(m * k * sizeof *dZ2), *dZ1 = malloc(m * h * sizeof *dZ1);
        float *top = malloc(m * sizeof *top);
        double *loss = malloc(m * sizeof *loss);
        uint8_t *correct = malloc(m);
        for (size_t i = 0; i < m * h; i++)
            A1[i] = (float)(1 + rnd() % 9999) / 10000.0f;
        A1[4 * h + h - 1] = NAN;   /* row 4: NaN in its last column, the tail when h % 16 */
        kernels_output_backward(A1, f.labels, f.idx, m, h, k, f.p.W2, f.p.b2, W2t,
                                1.0f / (float)m, dZ2, dZ1, top, loss, correct);
        for (size_t r = 0; r < m; r++) {
            float want = 0;
            int nan = 0;
            for (size_t i = 0; i < h; i++) {
                nan |= isnan(dZ1[r * h + i]);
                want = fmaxf(want, fabsf(dZ1[r * h + i]));
            }
            if (nan)
                assert_true(isnan(top[r]));
            else if (top[r] != want)
                fail_msg("h %zu row %zu: dZ1_max %.9g, max |dZ1| %.9g", h, r, top[r], want);
            assert_true(r == 4 ? nan : !nan);
        }
        free(A1), free(W2t), free(dZ2), free(dZ1), free(top), free(loss), free(correct);
        fixture_free(&f);
    }
}

/* One SGD step (both modes) equals theta - lr * reference gradient. */
static void test_sgd_step_vs_reference(void **state)
{
    (void)state;
    Fixture f;
    fixture_init(&f, 17, 255, 17, 10, 5);
    const size_t n = f.p.count;
    const float lr = 0.5f;
    double *ref = malloc(n * sizeof *ref);
    ref_loss_grad(f.theta, f.d, f.h, f.k, f.X, f.labels, f.idx, f.n, (double)f.n, ref, NULL);
    for (size_t i = 0; i < n; i++)
        ref[i] = f.theta[i] - lr * ref[i];
    Workspace w;
    assert_int_equal(model_workspace_init(&w, &f.p, f.n), 0);
    float *start = malloc(n * sizeof *start), *gf = malloc(n * sizeof *gf);
    int64_t *gi = calloc(n, sizeof *gi), bad = 0;
    memcpy(start, f.p.block, n * sizeof *start);

    model_step_gradients(&f.p, U8(f.X), f.labels, f.idx, f.n, f.n, &w, 0, gf, NULL, 0, NULL);
    kernels_sgd_f32(f.p.block, gf, n, lr);
    for (size_t i = 0; i < n; i++)
        assert_true(fabs(f.p.block[i] - ref[i]) < 1e-6 + 1e-5 * fabs(ref[i]));

    memcpy(f.p.block, start, n * sizeof *start);
    const ModelStats st = model_step_gradients(&f.p, U8(f.X), f.labels, f.idx, f.n, f.n, &w, 5,
                                               NULL, gi, 1e6f, &bad);
    /* as the trainer applies it: dW1 and db1 from their int32 form, the rest from int64 */
    const size_t n32 = f.d * f.h + f.h;
    assert_true(st.grad1_bits > 0);
    kernels_sgd_fixed32(f.p.block, (const int32_t *)(const void *)gi, n32, lr, st.grad1_bits);
    kernels_sgd_fixed(f.p.block + n32, gi + n32, n - n32, lr);
    for (size_t i = 0; i < n; i++)
        assert_true(fabs(f.p.block[i] - ref[i]) < 1e-6 + 1e-5 * fabs(ref[i]));
    /* the same bits as the int64 form of the same values */
    float *via64 = malloc(n * sizeof *via64);
    memcpy(via64, start, n * sizeof *start);
    widen_grad1(gi, n32, st.grad1_bits);
    kernels_sgd_fixed(via64, gi, n, lr);
    assert_memory_equal(via64, f.p.block, n * sizeof *via64);
    free(via64);
    free(ref), free(start), free(gf), free(gi);
    model_workspace_free(&w);
    fixture_free(&f);
}

/* No allocation per step: this program's malloc family (below) counts its calls while
 * `counting` is set, and hands every call to glibc's own allocator. Not under
 * AddressSanitizer, which replaces the allocator itself (the test is skipped there). */
#if defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCS 0
#else
#define COUNT_ALLOCS 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static volatile int counting;
static volatile long allocs;   /* calls while counting, from any thread */
static void count(void)
{
    if (counting)
        __atomic_add_fetch(&allocs, 1, __ATOMIC_RELAXED);
}
void *malloc(size_t n) { count(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count(); return __libc_calloc(a, b); }
void *realloc(void *q, size_t n) { count(); return __libc_realloc(q, n); }
void *aligned_alloc(size_t al, size_t n) { count(); return __libc_memalign(al, n); }
int posix_memalign(void **q, size_t al, size_t n)
{
    count();
    *q = __libc_memalign(al, n);
    return *q ? 0 : 12;   /* ENOMEM */
}
#endif

/* Steps after the first (exact and fast, both kernels, 1 and 2 threads, with the update
 * and an evaluation) call no allocator: everything they use was sized by
 * model_workspace_init. The counter itself is checked to see an allocation. */
static void test_no_allocation_per_step(void **state)
{
    (void)state;
#if COUNT_ALLOCS
    Fixture f;
    fixture_init(&f, 37, 100, 33, 10, 9);
    const size_t n = f.p.count;
    Workspace w;
    assert_int_equal(model_workspace_init(&w, &f.p, f.n), 0);
    float *gf = malloc(n * sizeof *gf);
    int64_t *gi = calloc(n, sizeof *gi), bad = 0;
    static const char *const kernels[] = {"fast", "reference"};
    for (int kk = 0; kk < 2; kk++)
        for (int th = 1; th <= 2; th++) {
            assert_int_equal(model_workspace_kernels(&w, kernels[kk]), 0);
            omp_set_num_threads(th);
            for (int rep = 0; rep < 4; rep++) {   /* the first, uncounted: OpenMP's team */
                counting = rep > 0;
                model_step_gradients(&f.p, U8(f.X), f.labels, f.idx, f.n, f.n, &w, 0, gf, NULL,
                                     0, NULL);
                kernels_sgd_f32(f.p.block, gf, n, 0.01f);
                const ModelStats st = model_step_gradients(&f.p, U8(f.X), f.labels, f.idx, f.n,
                                                           f.n, &w, 4, NULL, gi, 1e6f, &bad);
                widen_grad1(gi, f.d * f.h + f.h, st.grad1_bits);
                kernels_sgd_fixed(f.p.block, gi, n, 0.01f);
                model_evaluate(&f.p, U8(f.X), f.labels, 0, f.n, &w);
                counting = 0;
                assert_int_equal(allocs, 0);
            }
        }
    assert_int_equal(bad, 0);
    counting = 1;   /* the counter works */
    void *volatile probe = malloc(16);   /* volatile: not elided with its free */
    counting = 0;
    assert_int_equal(allocs, 1);
    free(probe), free(gf), free(gi);
    model_workspace_free(&w);
    fixture_free(&f);
    omp_set_num_threads(2);
#else
    skip();
#endif
}

/* Evaluation over a range counts each sample once and matches the reference. */
static void test_evaluate(void **state)
{
    (void)state;
    Fixture f;
    fixture_init(&f, 37, 20, 9, 4, 11);
    for (size_t i = 0; i < f.n; i++)
        f.idx[i] = (uint32_t)i;
    long ref_correct;
    double ref_loss = ref_loss_grad(f.theta, f.d, f.h, f.k, f.X, f.labels, f.idx, f.n, 1.0, NULL,
                                    &ref_correct);
    Workspace w;
    assert_int_equal(model_workspace_init(&w, &f.p, 5), 0);   /* several blocks, last short */
    ModelStats st = model_evaluate(&f.p, U8(f.X), f.labels, 0, f.n, &w);
    assert_int_equal(st.correct, ref_correct);
    assert_true(fabs((double)st.loss_fix / MODEL_LOSS_SCALE - ref_loss) < 1e-4 * ref_loss);
    ModelStats a = model_evaluate(&f.p, U8(f.X), f.labels, 0, 20, &w);
    ModelStats b = model_evaluate(&f.p, U8(f.X), f.labels, 20, f.n - 20, &w);
    assert_int_equal(a.correct + b.correct, st.correct);
    assert_int_equal(a.loss_fix + b.loss_fix, st.loss_fix);
    model_workspace_free(&w);
    fixture_free(&f);
}

/* Xavier: within bounds, deterministic in the seed, biases zero; the hash sees one bit. */
static void test_init_and_hash(void **state)
{
    (void)state;
    Params a, b;
    assert_int_equal(model_params_init(&a, 13, 7, 3), 0);
    assert_int_equal(model_params_init(&b, 13, 7, 3), 0);
    model_init_xavier(&a, 42);
    model_init_xavier(&b, 42);
    assert_memory_equal(a.block, b.block, a.count * sizeof(float));
    assert_int_equal(model_param_hash(&a), model_param_hash(&b));
    double lim1 = sqrt(6.0 / 20), lim2 = sqrt(6.0 / 10);
    int nonzero = 0;
    for (size_t i = 0; i < 13 * 7; i++) {
        assert_true(fabs(a.W1[i]) <= lim1);
        nonzero += a.W1[i] != 0;
    }
    assert_true(nonzero > 80);
    for (size_t i = 0; i < 7 * 3; i++)
        assert_true(fabs(a.W2[i]) <= lim2);
    for (size_t i = 0; i < 7; i++)
        assert_true(a.b1[i] == 0.0f);
    uint32_t bits;
    memcpy(&bits, &b.b2[2], 4);
    bits ^= 1;
    memcpy(&b.b2[2], &bits, 4);
    assert_true(model_param_hash(&a) != model_param_hash(&b));
    model_init_xavier(&b, 43);
    assert_memory_not_equal(a.block, b.block, a.count * sizeof(float));
    model_params_free(&a);
    model_params_free(&b);
    assert_int_equal(model_params_init(&a, SIZE_MAX / 2, 4, 3), -1);
}

/* Shards: contiguous, in whole chunks, covering the minibatch exactly once. */
static void test_shards(void **state)
{
    (void)state;
    for (size_t m = 1; m <= 70; m++)
        for (size_t chunk = 1; chunk <= 17; chunk += 4)
            for (int P = 1; P <= 9; P++) {
                size_t next = 0;
                for (int r = 0; r < P; r++) {
                    size_t b, e;
                    dist_shard(m, chunk, r, P, &b, &e);
                    assert_int_equal(b, next);
                    assert_true(e >= b);
                    assert_true(b % chunk == 0 || b == m);
                    next = e;
                }
                assert_int_equal(next, m);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vs_finite_differences),
        cmocka_unit_test(test_forward_vs_reference),
        cmocka_unit_test(test_gradients_vs_reference),
        cmocka_unit_test(test_exact_independent_of_threads_and_shards),
        cmocka_unit_test(test_exact_rejects_out_of_range),
        cmocka_unit_test(test_grad_layer1_exact_limits),
        cmocka_unit_test(test_grad_layer2_exact_limits),
        cmocka_unit_test(test_output_dz1_max),
        cmocka_unit_test(test_sgd_step_vs_reference),
        cmocka_unit_test(test_no_allocation_per_step),
        cmocka_unit_test(test_evaluate),
        cmocka_unit_test(test_init_and_hash),
        cmocka_unit_test(test_shards),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
