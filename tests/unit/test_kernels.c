/* The fast kernels (kernels.c) against their plain reference twin (kernels_ref.c) and
 * against double-precision sums, on odd shapes, for uint8 pixels and float32 features:
 * the two large products (hidden_forward, grad_layer1) in fast and exact mode, the small
 * ones (output_backward, grad_layer2), bitwise independence of the thread count and of
 * the split into shards, the run-time choice between the two implementations, and the
 * fixed-point update against its definition. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "widen.h"
#include "model.h"

/* pixels as the model takes them (kernels.h) */
#define U8(p) (&(const KernelsInput){.u8 = (p)})

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

/* Uniform in [-1, 1). */
static float rnd_sym(void)
{
    return (float)((double)rnd() / 2147483648.0 - 1.0);
}

/* (m, d, h): ones, primes, a tail after every vector width, MNIST's d and h; the last
 * two have enough sample tiles for the forward pass to copy W1 into panels (the others
 * read it in place). */
static const size_t shapes[][3] = {
    {1, 1, 1},   {3, 3, 3},     {17, 17, 17},   {7, 255, 33},  {13, 100, 129},
    {255, 3, 1}, {20, 784, 128}, {5, 30, 70},   {9, 8, 200},   {2, 785, 5},
    {40, 50, 48}, {67, 31, 35},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

/* Inputs of n samples, d features, with the zeros that make tiles skip work: every other
 * sample zero in its first features, one feature zero in every sample, one sample zero
 * everywhere, the rest zero one time in three. f32: values in [-3, 3), same zeros. Dense
 * (data_init's dense != 0): no zero at all, so that every tile lists every feature or
 * sample (the kernels' paths for full lists: no list read, W1's panels filled as W1 is
 * read, dW1's packing without counts). */
typedef struct {
    size_t n, d;
    uint8_t *u8;
    float *f32;
    uint32_t *idx;   /* (n) a permutation: samples are drawn out of order */
} Data;

static void data_init(Data *x, size_t n, size_t d, int dense)
{
    x->n = n, x->d = d;
    x->u8 = malloc(n * d);
    x->f32 = malloc(n * d * sizeof *x->f32);
    x->idx = malloc(n * sizeof *x->idx);
    assert_true(x->u8 && x->f32 && x->idx);
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < d; c++) {
            int zero = rnd() % 3 == 0 || (r % 2 && c < d / 3) || c == d / 2 || r == n / 2;
            zero = zero && !dense;
            x->u8[r * d + c] = zero ? 0 : (uint8_t)(1 + rnd() % 255);
            float f = 3.0f * rnd_sym();
            x->f32[r * d + c] = zero ? 0.0f : f != 0.0f ? f : 1.0f;
        }
    for (size_t r = 0; r < n; r++)
        x->idx[r] = (uint32_t)r;
    for (size_t r = n; r > 1; r--) {
        size_t j = rnd() % r;
        uint32_t t = x->idx[r - 1];
        x->idx[r - 1] = x->idx[j];
        x->idx[j] = t;
    }
}

static void data_free(Data *x)
{
    free(x->u8), free(x->f32), free(x->idx);
}

/* Input feature c of sample i as the kernels see it (pixels scaled by 1/255). */
static double feature(const Data *x, int f32, size_t i, size_t c)
{
    return f32 ? (double)x->f32[i * x->d + c] : x->u8[i * x->d + c] / 255.0;
}

static KernelsInput input_of(const Data *x, int f32)
{
    KernelsInput in = {0};
    if (f32)
        in.f32 = x->f32;
    else
        in.u8 = x->u8;
    return in;
}

static KernelsScratch scratch_new(size_t m, size_t d, size_t h)
{
    size_t np, nl;
    assert_int_equal(kernels_scratch_size(m, d, h, &np, &nl), 0);
    KernelsScratch s = {malloc(np * sizeof(float)), malloc(nl * sizeof(uint32_t))};
    assert_true(s.panel && s.list);
    return s;
}

/* Fill the scratch with all bits set (NaN floats, huge counts) before a call, so that a
 * kernel reading a panel, tile or list it has not written in that call (what an earlier
 * call left there is often right) fails rather than passes. */
static void scratch_poison(const KernelsScratch *s, size_t m, size_t d, size_t h)
{
    size_t np, nl;
    assert_int_equal(kernels_scratch_size(m, d, h, &np, &nl), 0);
    memset(s->panel, 0xff, np * sizeof(float));
    memset(s->list, 0xff, nl * sizeof(uint32_t));
}

static float *random_floats(size_t n, float scale)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = scale * rnd_sym();
    return v;
}

/* |got - want| <= tol * (sum of |terms| + 1e-30) + abs_tol; names the element if not. */
static void check_close(const char *what, size_t s, size_t e, double got, double want,
                        double terms, double tol, double abs_tol)
{
    if (!(fabs(got - want) <= tol * terms + abs_tol))
        fail_msg("%s, shape %zu, element %zu: %.9g, double reference %.9g (terms %.3g)", what,
                 s, e, got, want, terms);
}

/* Hidden layer: fast (1, 2 and 3 threads, tiles in the shard's order or grouped by
 * signature: the same bits) and reference against the double sum, pixels and floats, with
 * zeros and dense (shape numbers NSHAPES and up: the shapes again, dense). */
static void test_forward_vs_double(void **state)
{
    (void)state;
    for (size_t s = 0; s < 2 * NSHAPES; s++) {
        const size_t m = shapes[s % NSHAPES][0], d = shapes[s % NSHAPES][1];
        const size_t h = shapes[s % NSHAPES][2], n = m + 3;
        Data x;
        data_init(&x, n, d, s >= NSHAPES);
        float *W1 = random_floats(d * h, 0.5f), *b1 = random_floats(h, 0.5f);
        float *A = malloc(m * h * sizeof *A), *B = malloc(m * h * sizeof *B);
        float *R = malloc(m * h * sizeof *R);
        KernelsScratch sc = scratch_new(m, d, h);
        for (int f32 = 0; f32 <= 1; f32++) {
            const KernelsInput in = input_of(&x, f32);
            omp_set_num_threads(1);
            scratch_poison(&sc, m, d, h);
            kernels_hidden_forward(&in, x.idx, m, d, h, W1, b1, A, &sc);
            const int teams[] = {2, 3, 8};   /* 8: more threads than tiles for some shapes */
            for (size_t ti = 0; ti < sizeof teams / sizeof teams[0]; ti++) {
                omp_set_num_threads(teams[ti]);
                memset(B, 0xff, m * h * sizeof *B);
                scratch_poison(&sc, m, d, h);
                kernels_hidden_forward(&in, x.idx, m, d, h, W1, b1, B, &sc);
                assert_memory_equal(A, B, m * h * sizeof *A);
            }
            /* tiles grouped by the samples' signatures: other tiles, the same bits */
            uint64_t *sig = malloc(n * sizeof *sig);
            assert_non_null(sig);
            kernels_signatures(&in, n, d, sig);
            KernelsInput ins = in;
            ins.sig = sig;
            for (int th = 1; th <= 3; th += 2) {
                omp_set_num_threads(th);
                memset(B, 0xff, m * h * sizeof *B);
                scratch_poison(&sc, m, d, h);
                kernels_hidden_forward(&ins, x.idx, m, d, h, W1, b1, B, &sc);
                assert_memory_equal(A, B, m * h * sizeof *A);
            }
            free(sig);
            kernels_ref_hidden_forward(&in, x.idx, m, d, h, W1, b1, R, NULL);
            for (size_t r = 0; r < m; r++)
                for (size_t j = 0; j < h; j++) {
                    double z = b1[j], terms = fabs(b1[j]);
                    for (size_t c = 0; c < d; c++) {
                        const double t = feature(&x, f32, x.idx[r], c) * W1[c * h + j];
                        z += t, terms += fabs(t);
                    }
                    const double a = 1 / (1 + exp(-z));
                    /* sigmoid' <= 1/4: the error of z, a quarter of it, plus expf's */
                    check_close("forward fast", s, r * h + j, A[r * h + j], a, terms, 1e-6,
                                1e-6);
                    check_close("forward reference", s, r * h + j, R[r * h + j], a, terms,
                                1e-6, 1e-6);
                }
        }
        free(W1), free(b1), free(A), free(B), free(R), free(sc.panel), free(sc.list);
        data_free(&x);
    }
    omp_set_num_threads(2);
}

/* The sigmoid of the fast forward pass, over the whole float range: with a zero input
 * feature (skipped, so z = b1 exactly), A1 = sigmoid(b1). h = 4099 values of z: a sweep of
 * [-100, 100] (every column path: tiles, single vectors, the tail), the clamps' edges,
 * tiny and huge magnitudes, infinities and NaN. Relative error within 1e-6 (a few ulp),
 * or 1e-38 where the sigmoid is below the clamp; NaN stays NaN. */
static void test_sigmoid_range(void **state)
{
    (void)state;
    const size_t h = 4099, m = 3;
    float *b1 = malloc(h * sizeof *b1), *W1 = random_floats(h, 1.0f);
    float *A = malloc(m * h * sizeof *A);
    assert_true(b1 && A);
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, -1e-30f, 86.0f,
                             -86.0f, 88.0f, -88.0f, 86.5f, -87.5f, 200.0f, -200.0f, FLT_MAX,
                             -FLT_MAX, 0x1p-149f, 15.9424f, -15.9424f};
    const size_t ns = sizeof special / sizeof special[0];
    for (size_t j = 0; j < h; j++)
        b1[j] = j < ns ? special[j] : -100.0f + 200.0f * (float)(j - ns) / (float)(h - ns);
    const uint32_t payload[] = {0x7fc00001u, 0xffc001ffu, 0x7f800001u, 0xffc00001u}; /* NaNs */
    for (size_t i = 0; i < 4; i++)
        memcpy(&b1[h - 1 - 7 * i], &payload[i], sizeof payload[i]);
    uint8_t x[3] = {0, 0, 0};
    uint32_t idx[3] = {0, 1, 2};
    const KernelsInput in = {.u8 = x};
    KernelsScratch sc = scratch_new(m, 1, h);
    kernels_hidden_forward(&in, idx, m, 1, h, W1, b1, A, &sc);
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < h; j++) {
            const double z = b1[j], got = A[r * h + j];
            if (isnan(z)) {
                assert_true(isnan(got));
                continue;
            }
            const double want = 1 / (1 + exp(-z));
            if (!(fabs(got - want) <= 1e-6 * want + 1e-38))
                fail_msg("sigmoid(%.9g) = %.9g, double reference %.9g", z, got, want);
        }
    free(b1), free(W1), free(A), free(sc.panel), free(sc.list);
}

/* dW1 and db1 in double, per chunk: S (d+1, h, nch) chunk sums and T their |terms|. */
static void grad1_double(const Data *x, int f32, size_t m, size_t h, const float *dZ1,
                         size_t chunk, double *S, double *T)
{
    const size_t d = x->d, nch = (m + chunk - 1) / chunk;
    memset(S, 0, (d + 1) * h * nch * sizeof *S);
    memset(T, 0, (d + 1) * h * nch * sizeof *T);
    for (size_t r = 0; r < m; r++)
        for (size_t c = 0; c <= d; c++)
            for (size_t j = 0; j < h; j++) {
                const double v = (c < d ? feature(x, f32, x->idx[r], c) : 1.0) * dZ1[r * h + j];
                S[(c * h + j) * nch + r / chunk] += v;
                T[(c * h + j) * nch + r / chunk] += fabs(v);
            }
}

/* Exact dW1 over "ranks" holding two chunks each (the fast kernels, or with impl the
 * reference twin), each rank's stored part added into part (rows): the allreduce. The
 * ranks use `base` (its row bounds, if any, from their first sample on). */
static void parts_sum(int impl, const KernelsInput *in, const Data *x, size_t m, size_t d,
                      size_t h, const float *dZ1, const KernelsScratch *sc,
                      const KernelsSink *base, int64_t *part)
{
    const size_t rows = (d + 1) * h, chunk = base->chunk;
    memset(part, 0, rows * sizeof *part);
    int64_t *own = malloc(rows * sizeof *own);
    assert_non_null(own);
    for (size_t b = 0; b < m; b += 2 * chunk) {
        const size_t e = b + 2 * chunk < m ? b + 2 * chunk : m;
        KernelsSink sh = *base;
        sh.out_i = own;
        if (base->row_max)
            sh.row_max = base->row_max + b;
        memset(own, 0x5a, rows * sizeof *own);   /* stored, never added to */
        scratch_poison(sc, m, d, h);
        if (impl)
            kernels_ref_grad_layer1(in, x->idx + b, e - b, d, h, dZ1 + b * h, NULL, &sh);
        else
            kernels_grad_layer1(in, x->idx + b, e - b, d, h, dZ1 + b * h, sc, &sh);
        for (size_t q = 0; q < rows; q++)
            part[q] += own[q];
    }
    free(own);
}

/* dW1: fast kernels (threads 1..3 bitwise equal; exact mode bitwise equal when the samples
 * are split into shards at chunk boundaries) and reference, fast mode and exact mode with
 * several chunks, pixels and floats, against the double sums; with zeros and dense (shape
 * numbers NSHAPES and up). */
static void test_grad_layer1_vs_double(void **state)
{
    (void)state;
    for (size_t s = 0; s < 2 * NSHAPES; s++) {
        const size_t m = shapes[s % NSHAPES][0], d = shapes[s % NSHAPES][1];
        const size_t h = shapes[s % NSHAPES][2], rows = (d + 1) * h;
        Data x;
        data_init(&x, m + 2, d, s >= NSHAPES);
        float *dZ1 = random_floats(m * h, 0.01f);
        float *row_max = calloc(m, sizeof *row_max);
        for (size_t r = 0; r < m; r++)
            for (size_t j = 0; j < h; j++)
                row_max[r] = fmaxf(row_max[r], fabsf(dZ1[r * h + j]));
        float *gf = malloc(rows * sizeof *gf), *gf2 = malloc(rows * sizeof *gf2);
        int64_t *gi = malloc(rows * sizeof *gi), *gi2 = malloc(rows * sizeof *gi2);
        int64_t *part = malloc(rows * sizeof *part);
        KernelsScratch sc = scratch_new(m, d, h);
        const size_t chunks[] = {1, 4, 16, m};
        size_t maxch = m;   /* the largest number of chunks (chunk 1) */
        double *S = malloc(rows * maxch * sizeof *S), *T = malloc(rows * maxch * sizeof *T);
        for (int f32 = 0; f32 <= 1; f32++) {
            const KernelsInput in = input_of(&x, f32);
            /* fast mode: one float sum per element */
            grad1_double(&x, f32, m, h, dZ1, m, S, T);
            KernelsSink sink = {.out_f = gf};
            omp_set_num_threads(1);
            scratch_poison(&sc, m, d, h);
            kernels_grad_layer1(&in, x.idx, m, d, h, dZ1, &sc, &sink);
            for (int th = 2; th <= 3; th++) {
                omp_set_num_threads(th);
                sink.out_f = gf2;
                memset(gf2, 0xff, rows * sizeof *gf2);
                scratch_poison(&sc, m, d, h);
                kernels_grad_layer1(&in, x.idx, m, d, h, dZ1, &sc, &sink);
                assert_memory_equal(gf, gf2, rows * sizeof *gf);
            }
            kernels_ref_grad_layer1(&in, x.idx, m, d, h, dZ1, NULL, &sink);   /* into gf2 */
            for (size_t e = 0; e < rows; e++) {
                check_close("dW1 fast", s, e, gf[e], S[e], T[e], 1e-6, 1e-30);
                check_close("dW1 reference", s, e, gf2[e], S[e], T[e], 1e-6, 1e-30);
            }
            /* exact mode */
            for (size_t ci = 0; ci < 4; ci++) {
                const size_t chunk = chunks[ci], nch = (m + chunk - 1) / chunk;
                grad1_double(&x, f32, m, h, dZ1, chunk, S, T);
                int64_t bad = 0;
                KernelsSink ex = {.out_i = gi, .chunk = chunk, .limit = 1e6f, .bad = &bad};
                omp_set_num_threads(2);
                memset(gi, 0x5a, rows * sizeof *gi);
                scratch_poison(&sc, m, d, h);
                kernels_grad_layer1(&in, x.idx, m, d, h, dZ1, &sc, &ex);
                {
                    /* with the row bounds (and for floats the features' bound): the
                     * unchecked paths (on AVX2 with double totals) give the same bits */
                    KernelsInput bounded = in;
                    if (f32)
                        bounded.f32_max = kernels_input_max(x.f32, x.n, d);
                    ex.out_i = gi2, ex.row_max = row_max;
                    memset(gi2, 0x5a, rows * sizeof *gi2);
                    scratch_poison(&sc, m, d, h);
                    kernels_grad_layer1(&bounded, x.idx, m, d, h, dZ1, &sc, &ex);
                    assert_memory_equal(gi, gi2, rows * sizeof *gi);
                    ex.row_max = NULL;
                }
                ex.out_i = gi2;
                memset(gi2, 0x5a, rows * sizeof *gi2);
                kernels_ref_grad_layer1(&in, x.idx, m, d, h, dZ1, NULL, &ex);
                assert_int_equal(bad, 0);
                for (size_t e = 0; e < rows; e++) {
                    double want = 0, terms = 0;
                    for (size_t q = 0; q < nch; q++)
                        want += S[e * nch + q], terms += T[e * nch + q];
                    /* float rounding, plus the truncation of each chunk value */
                    const double abs_tol = (double)nch * 0x1p-40;
                    check_close("dW1 exact fast", s, e, (double)gi[e] * 0x1p-40, want, terms,
                                1e-6, abs_tol);
                    check_close("dW1 exact reference", s, e, (double)gi2[e] * 0x1p-40, want,
                                terms, 1e-6, abs_tol);
                }
                /* Under a bound shared by every "rank" (KernelsSink.grad_bound; here the
                 * sum of the row bounds, as kernels_grad1_bound gives one from W2): int32
                 * totals at fewer fractional bits. The same bits for 1, 2 and 3 threads
                 * and from parts of two chunks each; within the truncation of the double
                 * sums; the reference twin alike; and a promise that the row bounds show
                 * broken is one rejected value per call. */
                {
                    KernelsInput bounded = in;
                    if (f32)
                        bounded.f32_max = kernels_input_max(x.f32, x.n, d);
                    const double xmax = f32 ? fmax(bounded.f32_max, 1.0) : 1.0;
                    double rsum = 0;
                    for (size_t r = 0; r < m; r++)
                        rsum += row_max[r];
                    int64_t *bo = malloc(rows * sizeof *bo);
                    KernelsSink bs = {.out_i = bo, .chunk = chunk, .limit = 1e6f, .bad = &bad,
                                      .row_max = row_max,
                                      .grad_bound = xmax * rsum * (1 + 0x1p-20)};
                    const int bits = kernels_fix_bits(&bounded, &bs);
                    /* (float features all zero have no input bound: 40 bits) */
                    assert_true(f32 && !(bounded.f32_max > 0) ? bits == KERNELS_FIX_BITS
                                                              : bits >= 26 && bits < 40);
                    int64_t *want = malloc(rows * sizeof *want);
                    for (int th = 1; th <= 3; th++) {
                        omp_set_num_threads(th);
                        memset(bo, 0x5a, rows * sizeof *bo);
                        scratch_poison(&sc, m, d, h);
                        kernels_grad_layer1(&bounded, x.idx, m, d, h, dZ1, &sc, &bs);
                        if (th == 1)
                            memcpy(want, bo, rows * sizeof *want);
                        assert_memory_equal(want, bo, rows * sizeof *want);
                    }
                    int64_t *refi = malloc(rows * sizeof *refi);
                    bs.out_i = refi;
                    kernels_ref_grad_layer1(&bounded, x.idx, m, d, h, dZ1, NULL, &bs);
                    assert_int_equal(bad, 0);
                    for (size_t e = 0; e < rows; e++) {
                        double w = 0, terms = 0;
                        for (size_t q = 0; q < nch; q++)
                            w += S[e * nch + q], terms += T[e * nch + q];
                        const double abs_tol = (double)nch * ldexp(1.0, -bits);
                        assert_true(want[e] % ((int64_t)1 << (KERNELS_FIX_BITS - bits)) == 0);
                        assert_true(refi[e] % ((int64_t)1 << (KERNELS_FIX_BITS - bits)) == 0);
                        check_close("dW1 bounded fast", s, e, (double)want[e] * 0x1p-40, w,
                                    terms, 1e-6, abs_tol);
                        check_close("dW1 bounded reference", s, e, (double)refi[e] * 0x1p-40,
                                    w, terms, 1e-6, abs_tol);
                    }
                    for (int impl = 0; impl <= 1; impl++) {
                        parts_sum(impl, &bounded, &x, m, d, h, dZ1, &sc, &bs, part);
                        assert_memory_equal(impl ? refi : want, part, rows * sizeof *part);
                    }
                    assert_int_equal(bad, 0);
                    /* With out_i32 (where the int32 path runs): the int32 totals
                     * themselves, each implementation's values above over 2^(40 - bits),
                     * out_i untouched. Without the int32 path: out_i as above. */
                    const int b32 = kernels_grad1_i32_bits(&bounded, &bs);
                    if (bits < KERNELS_FIX_BITS)
                        assert_int_equal(b32, bits);
                    else   /* 40 bits: the int32 path at 40, or the 40-bit path */
                        assert_true(b32 == 0 || b32 == KERNELS_FIX_BITS);
                    int32_t *o32 = malloc(rows * sizeof *o32);
                    for (int impl = 0; impl <= 1; impl++)
                        for (int th = 1; th <= 3; th += 2) {
                            omp_set_num_threads(th);
                            memset(bo, 0x5a, rows * sizeof *bo);
                            memset(o32, 0x5a, rows * sizeof *o32);
                            bs.out_i = bo, bs.out_i32 = o32;
                            if (impl)
                                kernels_ref_grad_layer1(&bounded, x.idx, m, d, h, dZ1, NULL, &bs);
                            else
                                kernels_grad_layer1(&bounded, x.idx, m, d, h, dZ1, &sc, &bs);
                            for (size_t e = 0; e < rows; e++) {
                                if (b32 > 0) {
                                    assert_true((int64_t)o32[e] * ((int64_t)1 << (40 - b32)) ==
                                                (impl ? refi : want)[e]);
                                    assert_true(bo[e] == 0x5a5a5a5a5a5a5a5a);
                                } else {
                                    assert_true(bo[e] == (impl ? refi : want)[e]);
                                    assert_true(o32[e] == 0x5a5a5a5a);
                                }
                            }
                        }
                    bs.out_i32 = NULL;
                    assert_int_equal(bad, 0);
                    /* a bound 2^12 times too small: the row bounds catch it (float
                     * features all zero have no f32_max, so no row bounds to check),
                     * with and without out_i32 */
                    bs.out_i = bo, bs.grad_bound = xmax * rsum * 0x1p-12;
                    if (rsum > 0 && (!f32 || bounded.f32_max > 0)) {
                        omp_set_num_threads(3);
                        kernels_grad_layer1(&bounded, x.idx, m, d, h, dZ1, &sc, &bs);
                        assert_int_equal(bad, 1);
                        bad = 0;
                        /* with out_i32: one rejected value, zeros in the int32 layout
                         * (nothing converted out of range), out_i untouched; and so for
                         * a NaN in the row bounds (no bound), which the 40-bit path
                         * would have counted */
                        for (int nan = 0; nan <= 1; nan++) {
                            const float keep = row_max[0];
                            if (nan)
                                row_max[0] = NAN;
                            bs.out_i32 = o32;
                            memset(o32, 0x5a, rows * sizeof *o32);
                            memset(bo, 0x5a, rows * sizeof *bo);
                            kernels_grad_layer1(&bounded, x.idx, m, d, h, dZ1, &sc, &bs);
                            assert_int_equal(bad, 1);
                            bad = 0;
                            for (size_t e = 0; e < rows; e++)
                                assert_true(o32[e] == 0 && bo[e] == 0x5a5a5a5a5a5a5a5a);
                            bs.out_i32 = NULL;
                            row_max[0] = keep;
                        }
                    }
                    free(o32);
                    omp_set_num_threads(2);
                    free(want), free(refi), free(bo);
                }
                /* "ranks" holding two chunks each: their stored parts sum to the bits of
                 * the whole, for both implementations */
                for (int impl = 0; impl <= 1; impl++) {
                    const KernelsSink sh = {.chunk = chunk, .limit = 1e6f, .bad = &bad};
                    parts_sum(impl, &in, &x, m, d, h, dZ1, &sc, &sh, part);
                    assert_memory_equal(impl ? gi2 : gi, part, rows * sizeof *part);
                }
            }
        }
        free(dZ1), free(row_max), free(gf), free(gf2), free(gi), free(gi2), free(part);
        free(S), free(T);
        free(sc.panel), free(sc.list);
        data_free(&x);
    }
    omp_set_num_threads(2);
}

/* output_backward and grad_layer2: fast and reference agree to float rounding (the
 * double reference of these is tests/unit/test_model.c's, through the model). */
static void test_small_kernels_fast_vs_reference(void **state)
{
    (void)state;
    const size_t cases[][3] = {{1, 1, 2}, {3, 3, 3}, {17, 17, 10}, {33, 129, 7}, {64, 128, 10}};
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const size_t m = cases[s][0], h = cases[s][1], k = cases[s][2];
        float *A1 = malloc(m * h * sizeof *A1);
        for (size_t i = 0; i < m * h; i++)
            A1[i] = (float)(1 + rnd() % 9999) / 10000.0f;
        float *W2 = random_floats(h * k, 0.5f), *b2 = random_floats(k, 0.5f);
        float *W2t = malloc(h * k * sizeof *W2t);
        uint8_t *labels = malloc(m);
        uint32_t *idx = malloc(m * sizeof *idx);
        for (size_t r = 0; r < m; r++)
            labels[r] = (uint8_t)(rnd() % k), idx[r] = (uint32_t)r;
        float *dZ2[2], *dZ1[2], *top[2];
        double *loss[2];
        uint8_t *correct[2];
        for (int v = 0; v < 2; v++) {
            dZ2[v] = malloc(m * k * sizeof(float)), dZ1[v] = malloc(m * h * sizeof(float));
            top[v] = malloc(m * sizeof(float)), loss[v] = malloc(m * sizeof(double));
            correct[v] = malloc(m);
        }
        kernels_output_backward(A1, labels, idx, m, h, k, W2, b2, W2t, 1.0f / (float)m, dZ2[0],
                                dZ1[0], top[0], loss[0], correct[0]);
        kernels_ref_output_backward(A1, labels, idx, m, h, k, W2, b2, W2t, 1.0f / (float)m,
                                    dZ2[1], dZ1[1], top[1], loss[1], correct[1]);
        for (size_t r = 0; r < m; r++) {
            assert_true(fabs(loss[0][r] - loss[1][r]) < 1e-5 * (1 + loss[1][r]));
            for (size_t j = 0; j < k; j++)
                assert_true(fabsf(dZ2[0][r * k + j] - dZ2[1][r * k + j]) < 1e-6f);
            for (size_t i = 0; i < h; i++)
                assert_true(fabsf(dZ1[0][r * h + i] - dZ1[1][r * h + i]) < 1e-6f);
            assert_true(fabsf(top[0][r] - top[1][r]) < 1e-6f);
        }
        const size_t rows = h * k + k;
        float *g[2] = {malloc(rows * sizeof(float)), malloc(rows * sizeof(float))};
        KernelsSink s0 = {.out_f = g[0]}, s1 = {.out_f = g[1]};
        kernels_grad_layer2(A1, m, h, k, dZ2[0], &s0);
        kernels_ref_grad_layer2(A1, m, h, k, dZ2[0], &s1);
        for (size_t e = 0; e < rows; e++)
            assert_true(fabsf(g[0][e] - g[1][e]) < 1e-5f * (1 + fabsf(g[1][e])));
        int64_t *q[2] = {malloc(rows * sizeof(int64_t)), malloc(rows * sizeof(int64_t))}, bad = 0;
        KernelsSink e0 = {.out_i = q[0], .chunk = 3, .limit = 1e6f, .bad = &bad};
        KernelsSink e1 = {.out_i = q[1], .chunk = 3, .limit = 1e6f, .bad = &bad};
        kernels_grad_layer2(A1, m, h, k, dZ2[0], &e0);
        kernels_ref_grad_layer2(A1, m, h, k, dZ2[0], &e1);
        assert_int_equal(bad, 0);
        for (size_t e = 0; e < rows; e++)
            assert_true(fabs((double)(q[0][e] - q[1][e])) * 0x1p-40 < 1e-6);
        for (int v = 0; v < 2; v++)
            free(dZ2[v]), free(dZ1[v]), free(top[v]), free(loss[v]), free(correct[v]),
                free(g[v]), free(q[v]);
        free(A1), free(W2), free(b2), free(W2t), free(labels), free(idx);
    }
}

/* kernels_grad1_bound: the sum over a minibatch of xmax |dZ1[r,i]| (what every chunk sum
 * of dW1 and db1 adds up to at most) never exceeds it: random models, and the case that
 * reaches it (sigmoid outputs of 1/2, all the probability on a wrong class whose weights
 * have the opposite sign of the right one's), where it is tight. Not finite: no bound. */
static void test_grad1_bound(void **state)
{
    (void)state;
    for (int tight = 0; tight <= 1; tight++)
        for (size_t c = 0; c < 20; c++) {
            const size_t m = 1 + rnd() % 40, h = 1 + rnd() % 70, k = 2 + rnd() % 9;
            float *A1 = malloc(m * h * sizeof *A1), *W2 = random_floats(h * k, 2.0f);
            float *b2 = random_floats(k, 3.0f), *W2t = malloc(h * k * sizeof *W2t);
            float *dZ2 = malloc(m * k * sizeof *dZ2), *dZ1 = malloc(m * h * sizeof *dZ1);
            float *top = malloc(m * sizeof *top);
            double *loss = malloc(m * sizeof *loss);
            uint8_t *labels = malloc(m), *correct = malloc(m);
            uint32_t *idx = malloc(m * sizeof *idx);
            for (size_t r = 0; r < m; r++) {
                labels[r] = (uint8_t)(tight ? 1 : rnd() % k), idx[r] = (uint32_t)r;
                for (size_t i = 0; i < h; i++)
                    A1[r * h + i] = tight ? 0.5f : (float)(rnd() % 10001) / 10000.0f;
            }
            if (tight) {   /* class 0 wins by far; W2[:, 0] = w, W2[:, 1] = -w */
                const float w = 0.5f + (float)(rnd() % 100) / 10.0f;
                for (size_t i = 0; i < h * k; i++)
                    W2[i] = i % k == 0 ? w : i % k == 1 ? -w : 0.0f;
                b2[0] = 80.0f;
            }
            const int f32 = (int)(c % 2);
            const float fmax_ = 1.0f + (float)(rnd() % 50);
            const KernelsInput in = f32 ? (KernelsInput){.f32 = A1, .f32_max = fmax_}
                                        : (KernelsInput){.u8 = labels};
            const double bound = kernels_grad1_bound(&in, W2, h, k, m);
            kernels_output_backward(A1, labels, idx, m, h, k, W2, b2, W2t, 1.0f / (float)m, dZ2,
                                    dZ1, top, loss, correct);
            const double xmax = f32 ? fmax_ : 1.0;
            double worst = 0;
            for (size_t i = 0; i < h; i++) {
                double sum = 0;
                for (size_t r = 0; r < m; r++)
                    sum += xmax * fabs((double)dZ1[r * h + i]);
                worst = fmax(worst, sum);
            }
            assert_true(bound > 0);
            if (!(worst <= bound))
                fail_msg("case %zu: sum %.9g above the bound %.9g", c, worst, bound);
            if (tight)
                assert_true(worst >= bound * 0.999);
            W2[rnd() % (h * k)] = c % 4 < 2 ? NAN : -INFINITY;
            assert_true(kernels_grad1_bound(&in, W2, h, k, m) == 0);
            free(A1), free(W2), free(b2), free(W2t), free(dZ2), free(dZ1), free(top);
            free(loss), free(labels), free(correct), free(idx);
        }
    /* The bits a bound gives: the most within 2^30, 26 to 40, else 40 (the 40-bit path);
     * 40 too without a known input bound, or with one so large that x 2^b could overflow */
    int64_t out = 0;
    KernelsSink s = {.out_i = &out, .chunk = 4, .limit = 1e6f};
    const uint8_t px = 1;
    const float big = 1e30f;
    const KernelsInput u8 = {.u8 = &px}, f0 = {.f32 = &big}, fbig = {.f32 = &big, .f32_max = big};
    const double bounds[][2] = {{0, 40}, {0x1p-11, 40}, {0x1p-10, 39}, {0.5, 30}, {0.49, 31},
                                {15.9, 26}, {16, 40}, {1e7, 40}, {NAN, 40}, {-1, 40}};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        s.grad_bound = bounds[i][0];
        assert_int_equal(kernels_fix_bits(&u8, &s), (int)bounds[i][1]);
    }
    s.grad_bound = 0.5;
    assert_int_equal(kernels_fix_bits(&f0, &s), 40);
    assert_int_equal(kernels_fix_bits(&fbig, &s), 40);
    s.limit = 0.25f;   /* a bound above the range limit */
    assert_int_equal(kernels_fix_bits(&u8, &s), 40);
}

/* Choosing by name; a whole model step through the reference twin: exact mode gives the
 * same bits at 1 and 3 threads and over shards, and agrees with the fast kernels. */
static void test_select_and_model_step(void **state)
{
    (void)state;
    assert_string_equal(kernels_select("fast")->name, "fast");
    assert_string_equal(kernels_select("reference")->name, "reference");
    assert_null(kernels_select("Fast"));
    assert_null(kernels_select(""));

    const size_t n = 23, d = 31, h = 19, k = 5, chunk = 4;
    Data x;
    data_init(&x, n, d, 0);
    uint8_t *labels = malloc(n);
    for (size_t r = 0; r < n; r++)
        labels[r] = (uint8_t)(rnd() % k);
    Params p;
    assert_int_equal(model_params_init(&p, d, h, k), 0);
    model_init_xavier(&p, 3);
    Workspace w;
    assert_int_equal(model_workspace_init(&w, &p, n), 0);
    assert_string_equal(w.ops->name, "fast");
    assert_int_equal(model_workspace_kernels(&w, "naive"), -1);
    assert_string_equal(w.ops->name, "fast");
    const size_t cnt = p.count;
    int64_t *fast = malloc(cnt * sizeof *fast), *ref1 = malloc(cnt * sizeof *ref1);
    int64_t *ref3 = malloc(cnt * sizeof *ref3), *part = malloc(cnt * sizeof *part), bad = 0;
    /* dW1 and db1 come as int32 (ModelStats.grad1_bits) from both implementations:
     * compared in one form (widen_grad1) */
    const size_t n32 = d * h + h;
    const ModelStats sf = model_step_gradients(&p, U8(x.u8), labels, x.idx, n, n, &w, chunk,
                                               NULL, fast, 1e6f, &bad);
    assert_true(sf.grad1_bits > 0);
    widen_grad1(fast, n32, sf.grad1_bits);
    assert_int_equal(model_workspace_kernels(&w, "reference"), 0);
    omp_set_num_threads(1);
    ModelStats s1 = model_step_gradients(&p, U8(x.u8), labels, x.idx, n, n, &w, chunk, NULL, ref1,
                                         1e6f, &bad);
    assert_int_equal(s1.grad1_bits, sf.grad1_bits);
    widen_grad1(ref1, n32, s1.grad1_bits);
    omp_set_num_threads(3);
    ModelStats s3 = model_step_gradients(&p, U8(x.u8), labels, x.idx, n, n, &w, chunk, NULL, ref3,
                                         1e6f, &bad);
    widen_grad1(ref3, n32, s3.grad1_bits);
    assert_memory_equal(ref1, ref3, cnt * sizeof *ref1);
    assert_int_equal(s1.loss_fix, s3.loss_fix);
    memset(ref3, 0, cnt * sizeof *ref3);
    for (size_t b = 0; b < n; b += 2 * chunk) {   /* shards of two chunks */
        const size_t e = b + 2 * chunk < n ? b + 2 * chunk : n;
        const ModelStats sp = model_step_gradients(&p, U8(x.u8), labels, x.idx + b, e - b, n, &w,
                                                   chunk, NULL, part, 1e6f, &bad);
        widen_grad1(part, n32, sp.grad1_bits);
        for (size_t i = 0; i < cnt; i++)
            ref3[i] += part[i];
    }
    assert_memory_equal(ref1, ref3, cnt * sizeof *ref1);
    assert_int_equal(bad, 0);
    for (size_t i = 0; i < cnt; i++)
        if (fabs((double)(fast[i] - ref1[i])) * 0x1p-40 > 1e-6)
            fail_msg("parameter %zu: fast %.9g, reference %.9g", i, fast[i] * 0x1p-40,
                     ref1[i] * 0x1p-40);
    omp_set_num_threads(2);
    free(fast), free(ref1), free(ref3), free(part), free(labels);
    model_workspace_free(&w);
    model_params_free(&p);
    data_free(&x);
}

/* The fixed-point update, its conversion to floats and the non-finite count, against their
 * one-line definitions, bit for bit, with values on both sides of 2^51 (the vector path's limit), odd lengths. */
static void test_sgd_fixed_and_nonfinite(void **state)
{
    (void)state;
    const size_t lens[] = {1, 3, 4, 7, 13, 255, 1000, 4099};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const size_t n = lens[li];
        /* the long ones: large values rare, so that whole blocks of 16 take the vector
         * path, and some blocks hold one large value (or the edge) among small ones */
        const unsigned rare = n >= 1000 ? 97 : 1;
        int64_t *g = malloc(n * sizeof *g);
        float *theta = malloc(n * sizeof *theta), *want = malloc(n * sizeof *want);
        for (size_t i = 0; i < n; i++) {
            const int big = rnd() % (5 * rare) == 0;
            g[i] = ((int64_t)rnd() << 31 ^ rnd()) >> (big ? 0 : 12);   /* up to 2^62 or 2^50 */
            if (rnd() % 2)
                g[i] = -g[i];
            if (rnd() % (7 * rare) == 0)
                g[i] = (rnd() % 2 ? 1 : -1) * ((int64_t)1 << 51);   /* the edge itself */
            theta[i] = rnd_sym();
            want[i] = theta[i] - 0.25f * (float)((double)g[i] * 0x1p-40);
        }
        float *conv = malloc(n * sizeof *conv);
        kernels_fixed_to_f32(conv, g, n);
        for (size_t i = 0; i < n; i++) {
            const float w = (float)((double)g[i] * 0x1p-40);
            if (memcmp(&conv[i], &w, sizeof w))
                fail_msg("fixed_to_f32: n %zu, element %zu (g = %lld): %.9g, want %.9g", n, i,
                         (long long)g[i], conv[i], w);
        }
        free(conv);
        kernels_sgd_fixed(theta, g, n, 0.25f);
        for (size_t i = 0; i < n; i++)
            if (memcmp(&theta[i], &want[i], sizeof want[i]))
                fail_msg("n %zu, element %zu (g = %lld): %.9g, want %.9g", n, i,
                         (long long)g[i], theta[i], want[i]);
        size_t nonfinite = 0;
        for (size_t i = 0; i < n; i++) {
            const float special[] = {INFINITY, -INFINITY, NAN, 0x1p-140f, -0.0f, 3.4e38f};
            theta[i] = rnd() % 3 ? rnd_sym() : special[rnd() % 6];
            nonfinite += !isfinite(theta[i]);
        }
        assert_int_equal(kernels_count_nonfinite(theta, n), nonfinite);
        /* the float update counts the same values in its one pass (theta as the gradient),
         * and applies the finite ones, fused or not */
        float *p = malloc(n * sizeof *p), *p0 = malloc(n * sizeof *p0);
        for (size_t i = 0; i < n; i++)
            p[i] = p0[i] = rnd_sym();
        assert_int_equal(kernels_sgd_f32(p, theta, n, 0.25f), nonfinite);
        for (size_t i = 0; i < n; i++) {
            const float fused = fmaf(-0.25f, theta[i], p0[i]), plain = p0[i] - 0.25f * theta[i];
            if (isfinite(theta[i]) && memcmp(&p[i], &fused, sizeof p[i]) &&
                memcmp(&p[i], &plain, sizeof p[i]))
                fail_msg("sgd_f32, n %zu, element %zu: %.9g - 0.25 * %.9g = %.9g", n, i, p0[i],
                         theta[i], p[i]);
        }
        free(p), free(p0);
        float mx = 0;
        for (size_t i = 0; i < n; i++)
            mx = fmaxf(mx, fabsf(theta[i]));
        const float want_max = nonfinite ? INFINITY : mx, got_max = kernels_input_max(theta, 1, n);
        if (memcmp(&got_max, &want_max, sizeof mx))
            fail_msg("input_max, n %zu: %.9g, want %.9g", n, got_max, want_max);
        free(g), free(theta), free(want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_vs_double),
        cmocka_unit_test(test_sigmoid_range),
        cmocka_unit_test(test_grad_layer1_vs_double),
        cmocka_unit_test(test_small_kernels_fast_vs_reference),
        cmocka_unit_test(test_grad1_bound),
        cmocka_unit_test(test_select_and_model_step),
        cmocka_unit_test(test_sgd_fixed_and_nonfinite),
    };
    return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
