/* augment: see include/augment.h. */
#include "augment.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static const char *const augment_names[] = {"none", "elastic", "affine"};

const char *augment_kind_name(AugmentKind k)
{
    return k >= AUGMENT_NONE && k <= AUGMENT_AFFINE ? augment_names[k] : "?";
}

/* splitmix64's finaliser: a bijection of 64 bits with full avalanche. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The stream's key for one sample; counter k then gives mix64(key + (k + 1) * golden). */
static inline uint64_t sample_key(uint64_t seed, uint64_t epoch, uint64_t index)
{
    uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ull);
    h = mix64(h ^ (epoch + 0xd1b54a32d192ed03ull));
    return mix64(h ^ (index + 0x8cb92ba72f3d8dd7ull));
}

static inline float uniform_at(uint64_t key, uint64_t k)
{
    return (float)(mix64(key + (k + 1) * 0x9e3779b97f4a7c15ull) >> 40) * 0x1p-24f;
}

float augment_uniform(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t k)
{
    return uniform_at(sample_key(seed, epoch, index), k);
}

int augment_init(Augment *a, const AugmentSpec *spec, uint32_t rows, uint32_t cols,
                 int threads)
{
    memset(a, 0, sizeof *a);
    a->spec = *spec;
    a->rows = rows;
    a->cols = cols;
    a->threads = threads > 0 ? threads : omp_get_max_threads();
    const size_t n = (size_t)rows * cols;
    if (n == 0 || n > SIZE_MAX / 3 / sizeof(float))
        return -1;
    a->per_thread = 3 * n;
    if (a->per_thread > SIZE_MAX / sizeof(float) / (size_t)a->threads)
        return -1;
    if (spec->kind == AUGMENT_ELASTIC) {
        a->radius = (int)ceil(3 * spec->sigma);
        if (a->radius < 1)
            a->radius = 1;
        a->kernel = malloc((size_t)(2 * a->radius + 1) * sizeof *a->kernel);
        if (!a->kernel)
            return -1;
        double sum = 0;
        for (int i = -a->radius; i <= a->radius; i++)
            sum += exp(-0.5 * i * i / (spec->sigma * spec->sigma));
        for (int i = -a->radius; i <= a->radius; i++)
            a->kernel[i + a->radius] =
                (float)(exp(-0.5 * i * i / (spec->sigma * spec->sigma)) / sum);
    }
    a->scratch = malloc((size_t)a->threads * a->per_thread * sizeof *a->scratch);
    if (!a->scratch) {
        augment_free(a);
        return -1;
    }
    return 0;
}

void augment_free(Augment *a)
{
    if (!a)
        return;
    free(a->kernel);
    free(a->scratch);
    memset(a, 0, sizeof *a);
}

/* in at (y, x), bilinear, zero outside the image. */
static inline float bilinear(const uint8_t *in, int rows, int cols, float y, float x)
{
    const float fy = floorf(y), fx = floorf(x);
    const int y0 = (int)fy, x0 = (int)fx;
    const float wy = y - fy, wx = x - fx;
    float v[4] = {0, 0, 0, 0};
    for (int j = 0; j < 4; j++) {
        const int yy = y0 + (j >> 1), xx = x0 + (j & 1);
        if (yy >= 0 && yy < rows && xx >= 0 && xx < cols)
            v[j] = (float)in[yy * cols + xx];
    }
    return (1 - wy) * ((1 - wx) * v[0] + wx * v[1]) + wy * ((1 - wx) * v[2] + wx * v[3]);
}

static inline uint8_t quantise(float v)
{
    v = roundf(v);
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;
}

/* f (rows, cols) convolved with the Gaussian along both axes, zero outside; tmp (rows,
 * cols) scratch. */
static void smooth(const Augment *a, float *f, float *tmp)
{
    const int rows = (int)a->rows, cols = (int)a->cols, R = a->radius;
    const float *k = a->kernel + R;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            const int lo = c - R < 0 ? -c : -R, hi = c + R >= cols ? cols - 1 - c : R;
            float s = 0;
            for (int i = lo; i <= hi; i++)
                s += k[i] * f[r * cols + c + i];
            tmp[r * cols + c] = s;
        }
    for (int r = 0; r < rows; r++) {
        const int lo = r - R < 0 ? -r : -R, hi = r + R >= rows ? rows - 1 - r : R;
        for (int c = 0; c < cols; c++) {
            float s = 0;
            for (int i = lo; i <= hi; i++)
                s += k[i] * tmp[(r + i) * cols + c];
            f[r * cols + c] = s;
        }
    }
}

void augment_sample(const Augment *a, const uint8_t *in, uint8_t *out, uint64_t seed,
                    uint64_t epoch, uint64_t index, float *scratch)
{
    const int rows = (int)a->rows, cols = (int)a->cols;
    const size_t n = (size_t)rows * (size_t)cols;
    const uint64_t key = sample_key(seed, epoch, index);
    switch (a->spec.kind) {
    case AUGMENT_ELASTIC: {
        float *dx = scratch, *dy = scratch + n, *tmp = scratch + 2 * n;
        for (size_t p = 0; p < n; p++) {
            dx[p] = 2 * uniform_at(key, 2 * p) - 1;
            dy[p] = 2 * uniform_at(key, 2 * p + 1) - 1;
        }
        smooth(a, dx, tmp);
        smooth(a, dy, tmp);
        const float alpha = (float)a->spec.alpha;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                const size_t p = (size_t)r * (size_t)cols + (size_t)c;
                out[p] = quantise(bilinear(in, rows, cols, (float)r + alpha * dy[p],
                                           (float)c + alpha * dx[p]));
            }
        return;
    }
    case AUGMENT_AFFINE: {
        const double deg = (2.0 * uniform_at(key, 0) - 1) * a->spec.rotate;
        const double s = 1.0 + (2.0 * uniform_at(key, 1) - 1) * a->spec.scale;
        const float ty = (float)((2.0 * uniform_at(key, 2) - 1) * a->spec.shift);
        const float tx = (float)((2.0 * uniform_at(key, 3) - 1) * a->spec.shift);
        const double th = deg * M_PI / 180.0;
        /* output -> input: undo the shift, then the rotation and scale about the centre */
        const float cs = (float)(cos(th) / s), sn = (float)(sin(th) / s);
        const float cy = 0.5f * (float)(rows - 1), cx = 0.5f * (float)(cols - 1);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                const float yr = (float)r - cy - ty, xr = (float)c - cx - tx;
                const float xs = cs * xr + sn * yr + cx, ys = -sn * xr + cs * yr + cy;
                out[(size_t)r * (size_t)cols + (size_t)c] =
                    quantise(bilinear(in, rows, cols, ys, xs));
            }
        return;
    }
    default:
        memcpy(out, in, n);
        return;
    }
}

void augment_batch(const Augment *a, const uint8_t *images, const uint8_t *labels,
                   const uint32_t *idx, size_t m, uint8_t *out, uint8_t *out_labels,
                   uint64_t seed, uint64_t epoch)
{
    const size_t d = (size_t)a->rows * a->cols;
#pragma omp parallel num_threads(a->threads)
    {
        float *scratch = a->scratch + (size_t)omp_get_thread_num() * a->per_thread;
#pragma omp for schedule(static)
        for (size_t r = 0; r < m; r++) {
            augment_sample(a, images + (size_t)idx[r] * d, out + r * d, seed, epoch, idx[r],
                           scratch);
            out_labels[r] = labels[idx[r]];
        }
    }
}
