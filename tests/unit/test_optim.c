/* Unit tests for optim: sgd, momentum and nesterov, with and without coupled weight decay,
 * against a plain double-precision reference over several steps on an odd size, from a
 * float gradient and from a fixed-point one; plain SGD bit for bit the seed's kernels;
 * the same bits for any thread count; each schedule against its formula. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kernels.h"
#include "optim.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define N 37      /* odd: not a multiple of any vector width */
#define STEPS 12

static uint64_t rng_state = 12345;
static double uniform(void)   /* [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1p-52 - 1.0;
}

/* The header's update in double: g' = g + lambda theta; v = mu v + g';
 * sgd theta -= lr g'; momentum theta -= lr v; nesterov theta -= lr (g' + mu v). */
static void ref_update(OptimKind kind, double mu, double *theta, double *vel, const double *g,
                       size_t n, double lr, double lambda)
{
    for (size_t i = 0; i < n; i++) {
        const double gi = g[i] + lambda * theta[i];
        if (kind == OPTIM_SGD) {
            theta[i] -= lr * gi;
            continue;
        }
        vel[i] = mu * vel[i] + gi;
        theta[i] -= lr * (kind == OPTIM_NESTEROV ? gi + mu * vel[i] : vel[i]);
    }
}

static void run_against_reference(OptimKind kind, float lambda, int fixed)
{
    const OptimSpec o = {kind, 0.9f};
    float theta[N], vel[N], gf[N];
    int64_t gi[N];
    double rt[N], rv[N], rg[N];
    for (size_t i = 0; i < N; i++) {
        theta[i] = (float)uniform();
        rt[i] = theta[i];
        vel[i] = 0, rv[i] = 0;
    }
    for (int s = 0; s < STEPS; s++) {
        const float lr = 0.05f * (float)(s + 1) / STEPS;   /* as a schedule would change it */
        for (size_t i = 0; i < N; i++) {
            const double g = 0.5 * uniform();
            if (fixed) {
                gi[i] = (int64_t)llround(g * 0x1p40);
                rg[i] = (double)gi[i] * 0x1p-40;
            } else {
                gf[i] = (float)g;
                rg[i] = gf[i];
            }
        }
        optim_update(&o, theta, optim_has_velocity(&o) ? vel : NULL,
                     (OptimGrad){.f = fixed ? NULL : gf, .i = fixed ? gi : NULL}, N, lr, lambda);
        ref_update(kind, (double)o.momentum, rt, rv, rg, N, (double)lr, (double)lambda);
    }
    for (size_t i = 0; i < N; i++) {
        /* float rounding over a dozen steps: a few ulps of values of order 1 */
        if (fabs(theta[i] - rt[i]) > 2e-6 * (1 + fabs(rt[i])))
            fail_msg("%s lambda %g %s: theta[%zu] = %.9g, reference %.9g",
                     optim_kind_name(kind), (double)lambda, fixed ? "fixed" : "float", i,
                     (double)theta[i], rt[i]);
        if (kind != OPTIM_SGD && fabs(vel[i] - rv[i]) > 2e-6 * (1 + fabs(rv[i])))
            fail_msg("%s: vel[%zu] = %.9g, reference %.9g", optim_kind_name(kind), i,
                     (double)vel[i], rv[i]);
    }
}

static void test_updates_vs_reference(void **state)
{
    (void)state;
    for (int k = OPTIM_SGD; k <= OPTIM_NESTEROV; k++)
        for (int fixed = 0; fixed < 2; fixed++) {
            run_against_reference((OptimKind)k, 0.0f, fixed);
            run_against_reference((OptimKind)k, 1e-3f, fixed);
            run_against_reference((OptimKind)k, 0.3f, fixed);   /* decay that shows */
        }
}

/* Momentum with mu = 0 is SGD; decay pulls a weight with zero gradient towards 0 by
 * exactly the factor (1 - lr lambda) per step (in float). */
static void test_special_cases(void **state)
{
    (void)state;
    float t1[N], t2[N], v[N] = {0}, g[N];
    for (size_t i = 0; i < N; i++)
        t1[i] = t2[i] = (float)uniform(), g[i] = (float)uniform();
    const OptimSpec m0 = {OPTIM_MOMENTUM, 0.0f}, sgd = {OPTIM_SGD, 0.9f};
    optim_update(&m0, t1, v, (OptimGrad){.f = g}, N, 0.1f, 0.01f);
    optim_update(&sgd, t2, NULL, (OptimGrad){.f = g}, N, 0.1f, 0.01f);
    assert_memory_equal(t1, t2, sizeof t1);
    float z[N] = {0};
    memcpy(t2, t1, sizeof t1);
    optim_update(&sgd, t1, NULL, (OptimGrad){.f = z}, N, 0.5f, 0.2f);
    for (size_t i = 0; i < N; i++)
        assert_true(t1[i] == t2[i] - 0.5f * (0.0f + 0.2f * t2[i]));
}

/* SGD without decay is the seed's update, bit for bit (configs/mnist.ini's weights). */
static void test_sgd_is_the_seed_kernel(void **state)
{
    (void)state;
    const OptimSpec o = {OPTIM_SGD, 0.9f};
    float a[N], b[N], gf[N];
    int64_t gi[N];
    for (size_t i = 0; i < N; i++) {
        a[i] = b[i] = (float)uniform();
        gf[i] = (float)uniform();
        gi[i] = (int64_t)(uniform() * 0x1p40);
    }
    optim_update(&o, a, NULL, (OptimGrad){.i = gi}, N, 0.37f, 0.0f);
    kernels_sgd_fixed(b, gi, N, 0.37f);
    assert_memory_equal(a, b, sizeof a);
    optim_update(&o, a, NULL, (OptimGrad){.f = gf}, N, 0.37f, 0.0f);
    kernels_sgd_f32(b, gf, N, 0.37f);
    assert_memory_equal(a, b, sizeof a);
}

/* Exact mode's dW1 and db1 in int32 at `bits` fractional bits (OptimGrad.i32) update
 * exactly as their int64 form at 40 bits does, for every optimizer, with and without
 * decay, over lengths that end in every vector tail; kernels_sgd_fixed32 and
 * kernels_fixed32_to_f32 are kernels_sgd_fixed's and kernels_fixed_to_f32's values. */
static void test_int32_form(void **state)
{
    (void)state;
    enum { L = 1031 };
    static const size_t lens[] = {1, 3, 17, 255, L};
    static const int bitss[] = {26, 30, 35, 40};
    int32_t *g32 = malloc(L * sizeof *g32);
    int64_t *g64 = malloc(L * sizeof *g64);
    float *t32 = malloc(L * sizeof *t32), *t64 = malloc(L * sizeof *t64);
    float *v32 = malloc(L * sizeof *v32), *v64 = malloc(L * sizeof *v64);
    float *f32 = malloc(L * sizeof *f32), *f64 = malloc(L * sizeof *f64);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (size_t bi = 0; bi < sizeof bitss / sizeof bitss[0]; bi++) {
            const size_t n = lens[li];
            const int bits = bitss[bi];
            for (size_t i = 0; i < n; i++) {   /* all of int32's range, and small values */
                const double u = 2 * uniform() - 1;
                g32[i] = (int32_t)(i % 3 ? u * 0x1p30 : u * 0x1p12);
                g64[i] = (int64_t)g32[i] * ((int64_t)1 << (KERNELS_FIX_BITS - bits));
                t32[i] = t64[i] = (float)(2 * uniform() - 1);
            }
            kernels_fixed32_to_f32(f32, g32, n, bits);
            kernels_fixed_to_f32(f64, g64, n);
            assert_memory_equal(f32, f64, n * sizeof *f32);
            kernels_sgd_fixed32(t32, g32, n, 0.37f, bits);
            kernels_sgd_fixed(t64, g64, n, 0.37f);
            assert_memory_equal(t32, t64, n * sizeof *t32);
            for (int k = OPTIM_SGD; k <= OPTIM_NESTEROV; k++)
                for (int dec = 0; dec < 2; dec++) {
                    const OptimSpec o = {(OptimKind)k, 0.9f};
                    const int vel = optim_has_velocity(&o);
                    for (size_t i = 0; i < n; i++)
                        v32[i] = v64[i] = (float)uniform();
                    for (int step = 0; step < 2; step++) {
                        optim_update(&o, t32, vel ? v32 : NULL,
                                     (OptimGrad){.i32 = g32, .bits = bits}, n, 0.05f,
                                     dec ? 1e-3f : 0.0f);
                        optim_update(&o, t64, vel ? v64 : NULL, (OptimGrad){.i = g64}, n,
                                     0.05f, dec ? 1e-3f : 0.0f);
                    }
                    assert_memory_equal(t32, t64, n * sizeof *t32);
                    assert_memory_equal(v32, v64, n * sizeof *v32);
                }
        }
    free(g32), free(g64), free(t32), free(t64), free(v32), free(v64), free(f32), free(f64);
}

/* Plain SGD skips blocks of all-zero gradient (kernels_sgd_f32, kernels_sgd_fixed32): the
 * result must be the full update's bit for bit wherever the zeros fall (runs that start
 * and end inside a block, a zero prefix, a zero partial last block, an all-zero gradient),
 * with theta +0, -0, tiny and NaN where the gradient is zero, for 1, 2 and 3 threads, and
 * with kernels_sgd_fixed32 called from inside a team as the trainer calls it.
 * kernels_sgd_fixed32 against kernels_sgd_fixed (which skips nothing); kernels_sgd_f32
 * against theta - lr g, fused or not, and against theta unchanged where g is +0, and +0
 * where theta and g are -0 (a -0 gradient has bits set: it is no zero block). The
 * buffers are exactly n long, so that `make SAN=1 test` catches a block read past n. */
static void test_zero_blocks(void **state)
{
    (void)state;
    static const size_t lens[] = {1, 3, 15, 16, 17, 33, 255, 1031};
    static const float special[] = {0.0f, -0.0f, 0x1p-140f, NAN};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (int pattern = 0; pattern < 4; pattern++)
            for (int th = 1; th <= 3; th++) {
                const size_t n = lens[li];
                int32_t *g32 = malloc(n * sizeof *g32);
                int64_t *g64 = malloc(n * sizeof *g64);
                float *gf = malloc(n * sizeof *gf), *t32 = malloc(n * sizeof *t32);
                float *t32t = malloc(n * sizeof *t32t), *t64 = malloc(n * sizeof *t64);
                float *tf = malloc(n * sizeof *tf), *t0 = malloc(n * sizeof *t0);
                assert_non_null(g32), assert_non_null(g64), assert_non_null(gf);
                assert_non_null(t32), assert_non_null(t32t), assert_non_null(t64);
                assert_non_null(tf), assert_non_null(t0);
                for (size_t i = 0; i < n; i++) {
                    /* 0: runs of 7 zeros every 19; 1: the first 40 and the last n % 16 zero;
                     * 2: all zero; 3: every other block of 16 zero */
                    const int zero = pattern == 0   ? i % 19 < 7
                                     : pattern == 1 ? i < 40 || i >= n - n % 16
                                     : pattern == 2 ? 1
                                                    : i / 16 % 2 == 0;
                    const double u = 2 * uniform() - 1;
                    g32[i] = zero ? 0 : (int32_t)(u * 0x1p28) | 1;
                    g64[i] = (int64_t)g32[i] * ((int64_t)1 << (KERNELS_FIX_BITS - 30));
                    gf[i] = zero ? (i % 5 == 4 ? -0.0f : 0.0f) : (float)u;
                    t0[i] = zero && i % 3 == 0 ? special[i / 3 % 4] : (float)(2 * uniform() - 1);
                    t32[i] = t32t[i] = t64[i] = tf[i] = t0[i];
                }
                omp_set_num_threads(th);
                kernels_sgd_fixed32(t32, g32, n, 0.37f, 30);
#pragma omp parallel num_threads(th)
                kernels_sgd_fixed32(t32t, g32, n, 0.37f, 30);
                kernels_sgd_fixed(t64, g64, n, 0.37f);
                assert_memory_equal(t32, t64, n * sizeof *t32);
                assert_memory_equal(t32t, t64, n * sizeof *t32t);
                kernels_sgd_f32(tf, gf, n, 0.37f);
                for (size_t i = 0; i < n; i++) {
                    const float fused = fmaf(-0.37f, gf[i], t0[i]),
                                plain = t0[i] - 0.37f * gf[i];
                    if (memcmp(&tf[i], &fused, sizeof fused) && memcmp(&tf[i], &plain, sizeof plain))
                        fail_msg("sgd_f32, n %zu, pattern %d, element %zu: %.9g - 0.37 * %.9g = %.9g",
                                 n, pattern, i, t0[i], gf[i], tf[i]);
                    const int pos0 = gf[i] == 0 && !signbit(gf[i]);
                    if (pos0 && memcmp(&tf[i], &t0[i], sizeof t0[i]))
                        fail_msg("sgd_f32, n %zu, element %zu: theta %.9g changed by a +0 gradient",
                                 n, i, t0[i]);
                    if (!pos0 && gf[i] == 0 && t0[i] == 0 && signbit(t0[i]) &&
                        (tf[i] != 0 || signbit(tf[i])))
                        fail_msg("sgd_f32, n %zu, element %zu: -0 - 0.37 * -0 must be +0", n, i);
                }
                free(g32), free(g64), free(gf), free(t32), free(t32t), free(t64), free(tf);
                free(t0);
            }
    omp_set_num_threads(1);
}

/* The same bits with 1, 2 or 3 threads (each element by one thread, one expression). */
static void test_threads(void **state)
{
    (void)state;
    enum { M = 1001 };
    static float t[3][M], v[3][M];
    static int64_t g[M];
    for (size_t i = 0; i < M; i++) {
        t[0][i] = t[1][i] = t[2][i] = (float)uniform();
        v[0][i] = v[1][i] = v[2][i] = (float)uniform();
        g[i] = (int64_t)(uniform() * 0x1p38);
    }
    for (int k = OPTIM_MOMENTUM; k <= OPTIM_NESTEROV; k++) {
        const OptimSpec o = {(OptimKind)k, 0.95f};
        for (int th = 1; th <= 3; th++) {
            omp_set_num_threads(th);
            for (int s = 0; s < 3; s++)
                optim_update(&o, t[th - 1], v[th - 1], (OptimGrad){.i = g}, M, 0.01f, 5e-4f);
        }
        assert_memory_equal(t[0], t[1], sizeof t[0]);
        assert_memory_equal(t[0], t[2], sizeof t[0]);
        assert_memory_equal(v[0], v[2], sizeof v[0]);
    }
    omp_set_num_threads(1);
}

static void assert_near(double got, double want)
{
    if (fabs(got - want) > 1e-12 * (1 + fabs(want)))
        fail_msg("%.17g, expected %.17g", got, want);
}

static void test_schedules(void **state)
{
    (void)state;
    const int64_t spe = 10;   /* steps per epoch */
    ScheduleSpec s = {SCHEDULE_CONSTANT, 0.1, 0.001, 0, 3, 0.5, 9};
    assert_true(optim_schedule_lr(&s, 0, 0, spe) == 0.1);   /* exactly train.lr */
    assert_true(optim_schedule_lr(&s, 8, 9, spe) == 0.1);

    /* warm-up over 1.5 epochs = 15 steps: lr (k + 1) / 15, then the schedule */
    s.warmup_epochs = 1.5;
    assert_near(optim_schedule_lr(&s, 0, 0, spe), 0.1 / 15);
    assert_near(optim_schedule_lr(&s, 1, 3, spe), 0.1 * 14 / 15);
    assert_near(optim_schedule_lr(&s, 1, 4, spe), 0.1);
    assert_near(optim_schedule_lr(&s, 1, 5, spe), 0.1);

    /* step: lr gamma^floor(epoch / step_epochs), epochs from 0 */
    s = (ScheduleSpec){SCHEDULE_STEP, 0.1, 0, 0, 3, 0.5, 9};
    assert_near(optim_schedule_lr(&s, 0, 0, spe), 0.1);
    assert_near(optim_schedule_lr(&s, 2, 9, spe), 0.1);
    assert_near(optim_schedule_lr(&s, 3, 0, spe), 0.05);
    assert_near(optim_schedule_lr(&s, 8, 5, spe), 0.025);

    /* cosine from lr at the end of warm-up to lr_min at the end of the run */
    s = (ScheduleSpec){SCHEDULE_COSINE, 0.1, 0.001, 1, 3, 0.5, 9};
    const double K = 9 * 10, Kw = 10;
    for (int64_t k = 10; k < 90; k += 7) {
        const double p = ((double)k - Kw) / (K - Kw);
        assert_near(optim_schedule_lr(&s, k / spe, k % spe, spe),
                    0.001 + (0.1 - 0.001) * 0.5 * (1 + cos(M_PI * p)));
    }
    assert_near(optim_schedule_lr(&s, 1, 0, spe), 0.1);
    assert_near(optim_schedule_lr(&s, 5, 0, spe), 0.0505);    /* half-way: the mean */
    assert_true(optim_schedule_lr(&s, 8, 9, spe) > 0.001);
    assert_true(optim_schedule_lr(&s, 8, 9, spe) < 0.00105);
    assert_near(optim_schedule_lr(&s, 0, 4, spe), 0.1 * 5 / 10);   /* its warm-up */

    /* a warm-up longer than the run: still a ramp, never above lr */
    s.warmup_epochs = 20;
    assert_near(optim_schedule_lr(&s, 8, 9, spe), 0.1 * 90 / 200);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(optim_kind_name(OPTIM_NESTEROV), "nesterov");
    assert_string_equal(optim_schedule_name(SCHEDULE_COSINE), "cosine");
    assert_string_equal(optim_kind_name((OptimKind)7), "?");
    const OptimSpec s = {OPTIM_SGD, 0.9f}, m = {OPTIM_MOMENTUM, 0.9f};
    assert_false(optim_has_velocity(&s));
    assert_true(optim_has_velocity(&m));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_updates_vs_reference),
        cmocka_unit_test(test_special_cases),
        cmocka_unit_test(test_sgd_is_the_seed_kernel),
        cmocka_unit_test(test_int32_form),
        cmocka_unit_test(test_zero_blocks),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
