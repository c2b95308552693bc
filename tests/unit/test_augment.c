/* Unit tests for augment: elastic and affine distortions against plain double-precision
 * references on odd shapes (the vectorised smoothing included), identity cases, the same
 * bits for one sample whatever the thread count or the batch it is in (so the same on any
 * rank), the stream's key, zero images staying zero (the kernels' zero skipping). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "augment.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* A smooth blob with a stroke: something for the distortions to move. */
static uint8_t *make_images(size_t n, uint32_t rows, uint32_t cols)
{
    uint8_t *x = malloc(n * rows * cols);
    assert_non_null(x);
    for (size_t s = 0; s < n; s++)
        for (uint32_t r = 0; r < rows; r++)
            for (uint32_t c = 0; c < cols; c++) {
                double dy = r - rows * (0.3 + 0.05 * (double)(s % 5)), dx = c - cols * 0.5;
                double v = 255 * exp(-(dx * dx + dy * dy) / (0.08 * rows * cols));
                if (c == (r + s) % cols)
                    v = 255;
                x[(s * rows + r) * cols + c] = (uint8_t)(v < 20 ? 0 : v);
            }
    return x;
}

static double ref_in(const uint8_t *in, int rows, int cols, int y, int x)
{
    return y >= 0 && y < rows && x >= 0 && x < cols ? in[y * cols + x] : 0.0;
}

static double ref_bilinear(const uint8_t *in, int rows, int cols, double y, double x)
{
    const double fy = floor(y), fx = floor(x), wy = y - fy, wx = x - fx;
    const int y0 = (int)fy, x0 = (int)fx;
    return (1 - wy) * ((1 - wx) * ref_in(in, rows, cols, y0, x0) +
                       wx * ref_in(in, rows, cols, y0, x0 + 1)) +
           wy * ((1 - wx) * ref_in(in, rows, cols, y0 + 1, x0) +
                 wx * ref_in(in, rows, cols, y0 + 1, x0 + 1));
}

/* Simard's elastic distortion as the header states it, in double with plain loops. */
static void ref_elastic(const uint8_t *in, double *out, int rows, int cols, double sigma,
                        double alpha, uint64_t seed, uint64_t epoch, uint64_t index)
{
    const int n = rows * cols, R = (int)ceil(3 * sigma) < 1 ? 1 : (int)ceil(3 * sigma);
    double *f[2], *t = malloc(n * sizeof *t), *k = malloc((2 * R + 1) * sizeof *k), sum = 0;
    for (int i = -R; i <= R; i++)
        sum += k[i + R] = exp(-0.5 * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * R; i++)
        k[i] /= sum;
    for (int a = 0; a < 2; a++) {
        f[a] = malloc(n * sizeof *f[a]);
        for (int p = 0; p < n; p++) {
            uint64_t w = augment_word(seed, epoch, index, (uint64_t)p);
            uint64_t bits = a == 0 ? w >> 40 : (w >> 16) & 0xffffff;
            f[a][p] = 2 * ((double)bits / 16777216.0) - 1;
        }
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                double s = 0;
                for (int i = -R; i <= R; i++)
                    if (c + i >= 0 && c + i < cols)
                        s += k[i + R] * f[a][r * cols + c + i];
                t[r * cols + c] = s;
            }
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                double s = 0;
                for (int i = -R; i <= R; i++)
                    if (r + i >= 0 && r + i < rows)
                        s += k[i + R] * t[(r + i) * cols + c];
                f[a][r * cols + c] = s;
            }
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            out[r * cols + c] = ref_bilinear(in, rows, cols, r + alpha * f[1][r * cols + c],
                                             c + alpha * f[0][r * cols + c]);
    free(f[0]);
    free(f[1]);
    free(t);
    free(k);
}

static void ref_affine(const uint8_t *in, double *out, int rows, int cols, double rot,
                       double scale, double shift, uint64_t seed, uint64_t epoch,
                       uint64_t index)
{
    double u[4];
    for (int i = 0; i < 4; i++)
        u[i] = 2.0 * augment_uniform(seed, epoch, index, (uint64_t)i) - 1;
    const double th = u[0] * rot * M_PI / 180, s = 1 + u[1] * scale;
    const double ty = u[2] * shift, tx = u[3] * shift;
    const double cy = 0.5 * (rows - 1), cx = 0.5 * (cols - 1);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            double yr = r - cy - ty, xr = c - cx - tx;
            double xs = (cos(th) * xr + sin(th) * yr) / s + cx;
            double ys = (-sin(th) * xr + cos(th) * yr) / s + cy;
            out[r * cols + c] = ref_bilinear(in, rows, cols, ys, xs);
        }
}

/* out (uint8) within 1 of the reference everywhere (float vs double rounding at the .5
 * boundary, or a displacement a float ulp apart), and equal nearly everywhere. */
static void assert_close(const uint8_t *got, const double *want, size_t n)
{
    size_t off = 0;
    for (size_t p = 0; p < n; p++) {
        double w = want[p] < 0 ? 0 : want[p] > 255 ? 255 : want[p];
        double d = fabs((double)got[p] - w);
        if (d > 1.0 + 1e-3)
            fail_msg("pixel %zu: %u, reference %.4f", p, got[p], want[p]);
        off += fabs((double)got[p] - floor(w + 0.5)) > 0;
    }
    if (off * 50 > n)
        fail_msg("%zu of %zu pixels differ from the rounded reference", off, n);
}

static void check_kind(AugmentKind kind, uint32_t rows, uint32_t cols, double sigma,
                       double alpha)
{
    const AugmentSpec spec = {kind, sigma, alpha, 15, 0.15, 2.5};
    Augment a;
    assert_int_equal(augment_init(&a, &spec, rows, cols, 1), 0);
    uint8_t *x = make_images(4, rows, cols), *out = malloc(rows * cols);
    double *want = malloc(rows * cols * sizeof *want);
    for (uint64_t s = 0; s < 4; s++) {
        const uint8_t *in = x + s * rows * cols;
        augment_sample(&a, in, out, 99, 3, 1000 + s, a.scratch);
        if (kind == AUGMENT_ELASTIC)
            ref_elastic(in, want, (int)rows, (int)cols, sigma, alpha, 99, 3, 1000 + s);
        else
            ref_affine(in, want, (int)rows, (int)cols, 15, 0.15, 2.5, 99, 3, 1000 + s);
        assert_close(out, want, rows * cols);
        assert_memory_not_equal(out, in, rows * cols);   /* it did move something */
    }
    free(x);
    free(out);
    free(want);
    augment_free(&a);
}

static void test_elastic_vs_reference(void **state)
{
    (void)state;
    check_kind(AUGMENT_ELASTIC, 28, 28, 4, 34);      /* MNIST, Simard's values */
    check_kind(AUGMENT_ELASTIC, 13, 41, 2.5, 20);    /* odd: two column blocks, R > rows/2 */
    check_kind(AUGMENT_ELASTIC, 7, 3, 0.5, 3);       /* tiny, radius 2 */
    check_kind(AUGMENT_ELASTIC, 30, 70, 6, 50);      /* three column blocks */
}

static void test_affine_vs_reference(void **state)
{
    (void)state;
    check_kind(AUGMENT_AFFINE, 28, 28, 0, 0);
    check_kind(AUGMENT_AFFINE, 17, 40, 0, 0);
}

/* alpha = 0, and affine with nothing to draw, are the identity; none copies. */
static void test_identity(void **state)
{
    (void)state;
    const uint32_t rows = 19, cols = 33;
    uint8_t *x = make_images(1, rows, cols), *out = malloc(rows * cols);
    const AugmentSpec specs[3] = {{AUGMENT_ELASTIC, 3, 0, 0, 0, 0},
                                  {AUGMENT_AFFINE, 4, 34, 0, 0, 0},
                                  {AUGMENT_NONE, 4, 34, 10, 0.1, 2}};
    for (int i = 0; i < 3; i++) {
        Augment a;
        assert_int_equal(augment_init(&a, &specs[i], rows, cols, 1), 0);
        memset(out, 7, rows * cols);
        augment_sample(&a, x, out, 1, 2, 3, a.scratch);
        assert_memory_equal(out, x, rows * cols);
        augment_free(&a);
    }
    free(x);
    free(out);
}

/* A blank image stays blank: zero skipping in the kernels keeps its value. */
static void test_zero_stays_zero(void **state)
{
    (void)state;
    const uint32_t rows = 28, cols = 28;
    uint8_t zero[28 * 28] = {0}, out[28 * 28];
    for (int k = AUGMENT_ELASTIC; k <= AUGMENT_AFFINE; k++) {
        const AugmentSpec spec = {(AugmentKind)k, 4, 34, 10, 0.1, 2};
        Augment a;
        assert_int_equal(augment_init(&a, &spec, rows, cols, 1), 0);
        augment_sample(&a, zero, out, 5, 6, 7, a.scratch);
        assert_memory_equal(out, zero, sizeof zero);
        augment_free(&a);
    }
}

/* One sample's distortion is a function of (seed, epoch, index) only: the same inside any
 * batch, at any position, with any thread count (so on any rank); another key differs. */
static void test_same_bits_anywhere(void **state)
{
    (void)state;
    const uint32_t rows = 28, cols = 28, d = rows * cols;
    const size_t n = 64;
    uint8_t *x = make_images(n, rows, cols), labels[64];
    for (size_t i = 0; i < n; i++)
        labels[i] = (uint8_t)(i % 10);
    for (int k = AUGMENT_ELASTIC; k <= AUGMENT_AFFINE; k++) {
        const AugmentSpec spec = {(AugmentKind)k, 4, 34, 10, 0.1, 2};
        Augment a1, a3;
        assert_int_equal(augment_init(&a1, &spec, rows, cols, 1), 0);
        assert_int_equal(augment_init(&a3, &spec, rows, cols, 3), 0);
        uint32_t idx[40], sub[7];
        for (int i = 0; i < 40; i++)
            idx[i] = (uint32_t)((i * 37 + 5) % n);
        for (int i = 0; i < 7; i++)
            sub[i] = idx[3 + 5 * i];   /* the same samples in another batch ("another rank") */
        uint8_t *o1 = malloc(40 * d), *o3 = malloc(40 * d), *os = malloc(7 * d), l1[40], l3[40],
                ls[7], one[28 * 28];
        augment_batch(&a1, x, labels, idx, 40, o1, l1, 42, 9);
        augment_batch(&a3, x, labels, idx, 40, o3, l3, 42, 9);
        augment_batch(&a3, x, labels, sub, 7, os, ls, 42, 9);
        assert_memory_equal(o1, o3, 40 * d);
        assert_memory_equal(l1, l3, 40);
        for (int i = 0; i < 7; i++) {
            assert_memory_equal(os + i * d, o1 + (3 + 5 * i) * d, d);
            assert_int_equal(ls[i], labels[sub[i]]);
        }
        for (int i = 0; i < 40; i++) {
            augment_sample(&a1, x + (size_t)idx[i] * d, one, 42, 9, idx[i], a1.scratch);
            assert_memory_equal(one, o1 + i * d, d);
        }
        /* another epoch, seed or index gives another distortion */
        augment_sample(&a1, x, one, 42, 10, 0, a1.scratch);
        uint8_t base[28 * 28];
        augment_sample(&a1, x, base, 42, 9, 0, a1.scratch);
        assert_memory_not_equal(one, base, d);
        augment_sample(&a1, x, one, 43, 9, 0, a1.scratch);
        assert_memory_not_equal(one, base, d);
        augment_sample(&a1, x, one, 42, 9, 1, a1.scratch);
        assert_memory_not_equal(one, base, d);
        free(o1);
        free(o3);
        free(os);
        augment_free(&a1);
        augment_free(&a3);
    }
    free(x);
}

/* The stream: uniforms in [0, 1), mean near 1/2, and distinct keys distinct. */
static void test_stream(void **state)
{
    (void)state;
    double sum = 0;
    for (uint64_t k = 0; k < 100000; k++) {
        float u = augment_uniform(1, 2, 3, k);
        assert_true(u >= 0.0f && u < 1.0f);
        sum += u;
    }
    assert_true(fabs(sum / 100000 - 0.5) < 0.005);
    assert_true(augment_word(1, 2, 3, 0) != augment_word(1, 2, 4, 0));
    assert_true(augment_word(1, 2, 3, 0) != augment_word(1, 3, 3, 0));
    assert_true(augment_word(1, 2, 3, 0) != augment_word(2, 2, 3, 0));
    assert_true(augment_word(1, 2, 3, 0) != augment_word(1, 2, 3, 1));
    assert_true(augment_word(0, 1, 0, 0) != augment_word(0, 0, 1, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elastic_vs_reference),
        cmocka_unit_test(test_affine_vs_reference),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_zero_stays_zero),
        cmocka_unit_test(test_same_bits_anywhere),
        cmocka_unit_test(test_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
