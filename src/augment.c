/* augment: see include/augment.h. */
#include "augment.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

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

static inline uint64_t word_at(uint64_t key, uint64_t k)
{
    return mix64(key + (k + 1) * 0x9e3779b97f4a7c15ull);
}

static inline float uniform_at(uint64_t key, uint64_t k)
{
    return (float)(word_at(key, k) >> 40) * 0x1p-24f;
}

uint64_t augment_word(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t k)
{
    return word_at(sample_key(seed, epoch, index), k);
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
    if (spec->kind == AUGMENT_ELASTIC) {
        a->radius = (int)ceil(3 * spec->sigma);
        if (a->radius < 1)
            a->radius = 1;
    }
    /* dx, dy (n each); tmp ((rows + 2R) W), W = cols rounded up to 32; pad (W + 2R) */
    const size_t R = (size_t)a->radius, W = ((size_t)cols + 31) / 32 * 32;
    /* n < 2^30: remap's byte offsets y * cols + x stay in 32-bit lanes */
    if (n == 0 || n >= ((size_t)1 << 30) || rows > 65536 || cols > 65536 || R > 1024)
        return -1;
    a->per_thread = 2 * n + (rows + 2 * R) * W + W + 2 * R;
    if (a->per_thread > SIZE_MAX / sizeof(float) / (size_t)a->threads)
        return -1;
    if (spec->kind == AUGMENT_ELASTIC) {
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
    if (y0 >= 0 && y0 + 1 < rows && x0 >= 0 && x0 + 1 < cols) {
        const uint8_t *p = in + y0 * cols + x0;
        v[0] = p[0], v[1] = p[1], v[2] = p[cols], v[3] = p[cols + 1];
    } else for (int j = 0; j < 4; j++) {
        const int yy = y0 + (j >> 1), xx = x0 + (j & 1);
        if (yy >= 0 && yy < rows && xx >= 0 && xx < cols)
            v[j] = (float)in[yy * cols + xx];
    }
    return (1 - wy) * ((1 - wx) * v[0] + wx * v[1]) + wy * ((1 - wx) * v[2] + wx * v[3]);
}

/* To the nearest integer (halves up; v is never negative), clamped to 0..255. */
static inline uint8_t quantise(float v)
{
    return v <= 0 ? 0 : v >= 254.5f ? 255 : (uint8_t)(v + 0.5f);
}

/* out[p] = quantise(bilinear(in, ys[p], xs[p])) for the n = rows x cols pixels. pad:
 * room for n + 4 bytes. The AVX2 path does eight pixels at a time with the same
 * operations in the same order (no contraction: ISO C rounding in both), so its bytes are
 * the scalar loop's: each corner is gathered (zero outside the image, by mask) from a copy
 * of the image with 4 bytes of padding, as a gather reads 4 bytes per lane. */
static void remap(const uint8_t *in, int rows, int cols, const float *ys, const float *xs,
                  uint8_t *out, uint8_t *pad)
{
    const size_t n = (size_t)rows * (size_t)cols;
    size_t p = 0;
#if defined(__AVX2__)
    memcpy(pad, in, n);
    memset(pad + n, 0, 4);
    const int *base = (const int *)(const void *)pad;
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256i zero = _mm256_setzero_si256(), lowbyte = _mm256_set1_epi32(0xff);
    const __m256i minus1 = _mm256_set1_epi32(-1), R = _mm256_set1_epi32(rows),
                  C = _mm256_set1_epi32(cols), i1 = _mm256_set1_epi32(1);
    for (; p + 8 <= n; p += 8) {
        const __m256 y = _mm256_loadu_ps(ys + p), x = _mm256_loadu_ps(xs + p);
        const __m256 fy = _mm256_floor_ps(y), fx = _mm256_floor_ps(x);
        const __m256i y0 = _mm256_cvttps_epi32(fy), x0 = _mm256_cvttps_epi32(fx);
        const __m256i y1 = _mm256_add_epi32(y0, i1), x1 = _mm256_add_epi32(x0, i1);
        const __m256 wy = _mm256_sub_ps(y, fy), wx = _mm256_sub_ps(x, fx);
        /* lane inside [0, limit): v > -1 and limit > v */
#define INSIDE(v, lim) _mm256_and_si256(_mm256_cmpgt_epi32(v, minus1), _mm256_cmpgt_epi32(lim, v))
        const __m256i iy0 = INSIDE(y0, R), iy1 = INSIDE(y1, R);
        const __m256i ix0 = INSIDE(x0, C), ix1 = INSIDE(x1, C);
#undef INSIDE
        const __m256i at = _mm256_add_epi32(_mm256_mullo_epi32(y0, C), x0);
        const __m256i at2 = _mm256_add_epi32(at, C);
#define CORNER(idx, mask)                                                                  \
    _mm256_cvtepi32_ps(_mm256_and_si256(                                                   \
        _mm256_mask_i32gather_epi32(zero, base, idx, mask, 1), lowbyte))
        const __m256 v0 = CORNER(at, _mm256_and_si256(iy0, ix0));
        const __m256 v1 = CORNER(_mm256_add_epi32(at, i1), _mm256_and_si256(iy0, ix1));
        const __m256 v2 = CORNER(at2, _mm256_and_si256(iy1, ix0));
        const __m256 v3 = CORNER(_mm256_add_epi32(at2, i1), _mm256_and_si256(iy1, ix1));
#undef CORNER
        /* (1 - wy) ((1 - wx) v0 + wx v1) + wy ((1 - wx) v2 + wx v3), as bilinear() */
        const __m256 ox = _mm256_sub_ps(one, wx), oy = _mm256_sub_ps(one, wy);
        const __m256 top = _mm256_add_ps(_mm256_mul_ps(ox, v0), _mm256_mul_ps(wx, v1));
        const __m256 bot = _mm256_add_ps(_mm256_mul_ps(ox, v2), _mm256_mul_ps(wx, v3));
        const __m256 v = _mm256_add_ps(_mm256_mul_ps(oy, top), _mm256_mul_ps(wy, bot));
        /* quantise(): v >= 0, so trunc(v + 0.5) saturated to 0..255 is the same byte */
        const __m256i q = _mm256_cvttps_epi32(_mm256_add_ps(v, half));
        const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(q),
                                           _mm256_extracti128_si256(q, 1));
        _mm_storel_epi64((__m128i *)(void *)(out + p), _mm_packus_epi16(w, w));
    }
#else
    (void)pad;
#endif
    for (; p < n; p++)
        out[p] = quantise(bilinear(in, rows, cols, ys[p], xs[p]));
}

typedef float v8f __attribute__((vector_size(32)));
typedef float v8fu __attribute__((vector_size(32), aligned(4), may_alias));

/* Eight floats from p, unaligned (a macro: a function returning a vector wider than the
 * portable build's registers would change the ABI, and GCC warns about it). */
#define load8(p) ((v8f)*(const v8fu *)(p))

/* f (rows, cols) convolved with the Gaussian along both axes, zero outside. Rows of the
 * intermediate are W = cols rounded up to 32 wide. tmp ((rows + 2R) * W), pad (W + 2R):
 * scratch. Each output is a sum over the taps in a fixed order (terms beyond the image
 * are exact zeros), 32 columns at a time in four vector registers (independent chains of
 * additions, which hide their latency): lane c computes exactly what the scalar loop
 * would, so the bits depend on nothing but the input. */
static void smooth(const Augment *a, float *f, float *tmp, float *pad)
{
    const int rows = (int)a->rows, cols = (int)a->cols, R = a->radius, taps = 2 * R + 1;
    const int W = (cols + 31) / 32 * 32;
    const float *k = a->kernel;
    memset(pad, 0, (size_t)(W + 2 * R) * sizeof *pad);
    memset(tmp, 0, (size_t)R * (size_t)W * sizeof *tmp);
    memset(tmp + (size_t)(rows + R) * (size_t)W, 0, (size_t)R * (size_t)W * sizeof *tmp);
    for (int r = 0; r < rows; r++) {
        memcpy(pad + R, f + (size_t)r * (size_t)cols, (size_t)cols * sizeof *pad);
        float *out = tmp + (size_t)(r + R) * (size_t)W;
        for (int c0 = 0; c0 < W; c0 += 32) {
            v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int i = 0; i < taps; i++) {
                const float *in = pad + c0 + i;
                a0 += k[i] * load8(in);
                a1 += k[i] * load8(in + 8);
                a2 += k[i] * load8(in + 16);
                a3 += k[i] * load8(in + 24);
            }
            memcpy(out + c0, &a0, sizeof a0);
            memcpy(out + c0 + 8, &a1, sizeof a1);
            memcpy(out + c0 + 16, &a2, sizeof a2);
            memcpy(out + c0 + 24, &a3, sizeof a3);
        }
    }
    for (int r = 0; r < rows; r++) {
        /* taps on the zero rows above and below the image add +0: skipped, same bits */
        const int i0 = R - r > 0 ? R - r : 0, i1 = R + rows - r < taps ? R + rows - r : taps;
        for (int c0 = 0; c0 < W; c0 += 32) {
            v8f acc[4], a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int i = i0; i < i1; i++) {
                const float *in = tmp + (size_t)(r + i) * (size_t)W + (size_t)c0;
                a0 += k[i] * load8(in);
                a1 += k[i] * load8(in + 8);
                a2 += k[i] * load8(in + 16);
                a3 += k[i] * load8(in + 24);
            }
            acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
            const int n = cols - c0 < 32 ? cols - c0 : 32;
            memcpy(f + (size_t)r * (size_t)cols + c0, acc, (size_t)n * sizeof(float));
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
        const size_t R = (size_t)a->radius, W = ((size_t)cols + 31) / 32 * 32;
        float *dx = scratch, *dy = scratch + n, *tmp = scratch + 2 * n;
        float *pad = tmp + ((size_t)rows + 2 * R) * W;
        /* pixel p: counter p's 64 bits, the top 24 for dx, the next 24 for dy */
        for (size_t p = 0; p < n; p++) {
            const uint64_t h = word_at(key, p);
            dx[p] = 2 * ((float)(h >> 40) * 0x1p-24f) - 1;
            dy[p] = 2 * ((float)((h >> 16) & 0xffffff) * 0x1p-24f) - 1;
        }
        smooth(a, dx, tmp, pad);
        smooth(a, dy, tmp, pad);
        const float alpha = (float)a->spec.alpha;
        for (int r = 0; r < rows; r++)   /* the fields become the points each pixel reads */
            for (int c = 0; c < cols; c++) {
                const size_t p = (size_t)r * (size_t)cols + (size_t)c;
                dy[p] = (float)r + alpha * dy[p];
                dx[p] = (float)c + alpha * dx[p];
            }
        remap(in, rows, cols, dy, dx, out, (uint8_t *)tmp);   /* tmp is free again */
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
