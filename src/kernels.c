/* kernels: the fast implementation; see include/kernels.h for the contract (fixed
 * summation order per output element, threads over output tiles, fixed point for exact
 * mode) and kernels_ref.c for the same mathematics in plain loops.
 *
 * The two large products run as register-blocked micro-kernels (below); the small ones
 * (output layer, dW2) use the same vector type. Which columns fall in a full micro-tile,
 * a single vector or the scalar tail depends only on the shapes, so the code path (and
 * the rounding) of every element is fixed by the shapes alone.
 *
 * Teams: a kernel called outside any parallel region opens one (OWN_TEAM below) and
 * calls itself inside it; inside a region, its loops are orphaned worksharing constructs
 * that share the work among the caller's team. Rejected-value counts are per thread,
 * added to *sink->bad atomically (integers: the total does not depend on the order). */
#include "kernels.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define PIXEL_SCALE (1.0f / 255.0f)
#define FIX_SCALE 0x1p40f             /* 2^KERNELS_FIX_BITS */
#define FIX_UNSCALE 0x1p-40

_Static_assert(KERNELS_FIX_BITS == 40, "FIX_SCALE and FIX_UNSCALE assume 40 bits");

/* Outside a parallel region, run `call` (the kernel itself, with the same arguments) on
 * a new team and return; inside one, fall through to the worksharing body. The level,
 * not omp_in_parallel(), is tested, so that a team of one thread also counts as inside. */
#define OWN_TEAM(call)                      \
    do {                                    \
        if (omp_get_level() == 0) {         \
            _Pragma("omp parallel") call;   \
            return;                         \
        }                                   \
    } while (0)

static void add_bad(int64_t *bad, int64_t n)
{
    if (bad && n) {
#pragma omp atomic
        *bad += n;
    }
}

/* Register-blocked micro-kernels for the two large products, Z1 = X W1 and dW1 = X^T dZ1
 * (Goto and van de Geijn's scheme, as BLIS and OpenBLAS use it): an MR x NR tile of
 * outputs stays in MR x 2 vector registers for the whole inner loop, each step loading
 * one row of NR weights (two vectors) and broadcasting MR input values. The vector width
 * VL follows the target: 16 lanes with AVX-512 (32 registers: 8 x 32 tiles), 8 with AVX2
 * (16 registers: 6 x 16), 4 with SSE2 for the portable build (6 x 8). KERNELS_VL set at
 * build time (make KVL=N) overrides it: tests/integration/generic-build.sh runs the
 * AVX-512 shape on machines without AVX-512 this way.
 *
 * Every output element is a sum over the inner index in ascending order, one multiply-add
 * per term, whatever tile, thread or column path computes it: the tiles only decide which
 * elements are computed together. The inner loop runs over a list of the inner indices
 * at which some input of the tile is nonzero (built when the inputs are packed), so an
 * input that is zero in the whole tile costs nothing, and one that is zero in some rows
 * of the tile adds x * w = 0 there, which changes no bits (finite w). */
#if defined(KERNELS_VL)
#define VL KERNELS_VL
#elif defined(__AVX512F__)
#define VL 16
#elif defined(__AVX__)
#define VL 8
#else
#define VL 4
#endif
#define NR (2 * VL)           /* columns of a micro-tile */
#define MR (VL >= 16 ? 8 : 6) /* rows of a micro-tile */
#define CG (4 * VL)           /* columns of a task: a W1 or dZ1 panel that stays in cache */

typedef float vf __attribute__((vector_size(4 * VL)));
typedef float vfu __attribute__((vector_size(4 * VL), aligned(4), may_alias));
typedef int32_t vi __attribute__((vector_size(4 * VL)));
typedef int64_t vq __attribute__((vector_size(8 * VL)));
typedef uint64_t vqu __attribute__((vector_size(8 * VL)));
typedef uint32_t viu __attribute__((vector_size(4 * VL)));

/* Unaligned vector load and store (macros: a function returning a vector wider than the
 * target's registers would change the ABI, and GCC warns about it). */
#define vload(p) ((vf)*(const vfu *)(p))
#define vstore(p, v) (*(vfu *)(p) = (v))
typedef int64_t vqs __attribute__((vector_size(8 * VL), aligned(8), may_alias));
#define vstoreq(p, v) (*(vqs *)(p) = (v))
typedef int32_t vis __attribute__((vector_size(4 * VL), aligned(4), may_alias));
#define vstorei(p, v) (*(vis *)(p) = (v))

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Scratch layout (kernels_scratch_size). The first WP floats hold the weight panels: the
 * forward pass copies W1 there as panels of d x NR (each thread the CG / NR panels of
 * the column group it is at, into a slot of d CG floats of its own, where WP has room
 * for one per thread; else all h / NR of them, shared), and dW1 copies dZ1 as panels of
 * m x NR, each k-major, so that the micro-kernel reads one contiguous row of NR values
 * per step. After them, the input panels: the forward pass packs sample tile t at
 * ip + t * MR * d ((d, MR) k-major: per listed feature, the tile's MR values) with
 * list + t * (d + 1) (count, then the features nonzero in some row of the tile); dW1 packs
 * feature tile p at ip + p (m MR + 8) ((m, MR): per listed sample, the tile's MR values,
 * then 8 floats of slack) with list + p * (m + 1) (count, then sample indices). The last
 * feature tile holds the constant 1 of db1 (feature d). */
static size_t weight_panel_floats(size_t m, size_t d, size_t h)
{
    return (m > d ? m : d) * (h / NR * NR);
}

/* A packed feature tile of dW1: m entries of MR floats, and 8 floats of slack. */
static size_t feature_tile_floats(size_t m)
{
    return m * MR + 8;
}


size_t kernels_feature_tiles(size_t d)
{
    return (d + 1 + MR - 1) / MR;
}

/* The lists' part of the list scratch (even, so that the sample order's 64-bit keys after
 * it are aligned): the forward pass's T (d + 1) or dW1's P (m + 1), the larger. After it,
 * the forward pass's sample order (order_samples): m positions (and one of padding when m
 * is odd), then 2 m keys of 64 bits. */
static size_t list_words(size_t m, size_t d)
{
    const size_t T = (m + MR - 1) / MR, P = kernels_feature_tiles(d);
    const size_t lf = T * (d + 1), lb = P * (m + 1);
    return ((lf > lb ? lf : lb) + 1) / 2 * 2;
}

int kernels_scratch_size(size_t m, size_t d, size_t h, size_t *panel_floats, size_t *list_len)
{
    const size_t T = (m + MR - 1) / MR, P = kernels_feature_tiles(d);
    if (m > SIZE_MAX / (8 * MR) / (d + 2) || d > SIZE_MAX / (8 * MR) / (m + 2) ||
        (h && (m > d ? m : d) > SIZE_MAX / 8 / h))
        return -1;
    const size_t fw = T * MR * d, bw = P * feature_tile_floats(m);
    const size_t wp = weight_panel_floats(m, d, h);
    if (wp > SIZE_MAX / 2 - (fw > bw ? fw : bw))
        return -1;
    *panel_floats = wp + (fw > bw ? fw : bw);
    *list_len = list_words(m, d) + 5 * m + 1;
    return 0;
}

/* The scale of an output sum: pixels are x / 255, float features as they are. */
static float input_scale(const KernelsInput *X)
{
    return X->u8 ? PIXEL_SCALE : 1.0f;
}

/* Copy full NR-column block b of the (rows, h) matrix A into the k-major panel
 * (rows, NR) at panel. */
static void pack_weight_panel(const float *A, size_t rows, size_t h, size_t b, float *panel)
{
    for (size_t r = 0; r < rows; r++)
        for (int v = 0; v < 2; v++)
            vstore(panel + r * NR + v * VL, vload(A + r * h + b * NR + v * VL));
}

/* a[i][v] = 0 for a tile of vectors (a[rows][2]): element by element, so that the tile
 * can stay in registers (a memset of the array made GCC keep some instances of it in
 * memory and call memset in the inner loops). */
#define zero_tile(a)                                \
    do {                                            \
        for (size_t zi_ = 0; zi_ < sizeof(a) / sizeof((a)[0]); zi_++) \
            (a)[zi_][0] = (a)[zi_][1] = (__typeof__((a)[0][0])){0}; \
    } while (0)

/* Eight features c0 .. c0 + 7 of one sample row (element offset row in X) as floats into
 * dst, each times f (one rounding; f = 1: pixels converted, not yet scaled, and float
 * features as they are). Returns a bit per feature, set where it is nonzero before the
 * multiplication (NaN included). */
static inline unsigned load8(const KernelsInput *X, size_t row, size_t c0, float f, float *dst)
{
#if defined(__AVX2__)
    if (X->u8) {
        const __m128i b = _mm_loadl_epi64((const __m128i *)(X->u8 + row + c0));
        _mm256_storeu_ps(dst, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)),
                                            _mm256_set1_ps(f)));
        return ~(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(b, _mm_setzero_si128())) & 0xffu;
    }
    const __m256 x = _mm256_loadu_ps(X->f32 + row + c0);
    _mm256_storeu_ps(dst, _mm256_mul_ps(x, _mm256_set1_ps(f)));
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ));
#else
    unsigned nz = 0;
    for (unsigned l = 0; l < 8; l++) {
        const float x = X->u8 ? (float)X->u8[row + c0 + l] : X->f32[row + c0 + l];
        dst[l] = x * f;
        nz |= (unsigned)(x != 0.0f) << l;
    }
    return nz;
#endif
}

/* Append to list (from n on) the features c0 .. c0 + w - 1 (w <= 64) that are nonzero
 * in one of the rows (byte offsets row[i], i < rows); returns the new count. */
static size_t list_nonzero(const KernelsInput *X, const size_t *row, size_t rows, size_t c0,
                           size_t w, uint32_t *list, size_t n)
{
    uint64_t nz = 0;   /* bit l: feature c0 + l is nonzero somewhere */
#if defined(__AVX2__)
    if (w == 32 && X->u8) {
        __m256i any = _mm256_setzero_si256();
        for (size_t i = 0; i < rows; i++)
            any = _mm256_or_si256(any,
                                  _mm256_loadu_si256((const __m256i *)(X->u8 + row[i] + c0)));
        nz = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(any, _mm256_setzero_si256()));
        nz &= 0xffffffffu;
    } else if (w == 32) {   /* float features: NaN counts as nonzero */
        for (int g = 0; g < 4; g++) {
            __m256 any = _mm256_setzero_ps();
            for (size_t i = 0; i < rows; i++)
                any = _mm256_or_ps(any, _mm256_cmp_ps(_mm256_loadu_ps(X->f32 + row[i] + c0 + 8 * g),
                                                      _mm256_setzero_ps(), _CMP_NEQ_UQ));
            nz |= (uint64_t)(unsigned)_mm256_movemask_ps(any) << (8 * g);
        }
    } else
#endif
        for (size_t l = 0; l < w; l++) {
            int any = 0;
            for (size_t i = 0; i < rows; i++)
                any |= X->u8 ? X->u8[row[i] + c0 + l] != 0 : X->f32[row[i] + c0 + l] != 0.0f;
            nz |= (uint64_t)(any != 0) << l;
        }
    if (nz == (w == 64 ? ~0ull : (1ull << w) - 1)) {   /* all nonzero: the dense case */
        for (uint32_t l = 0; l < w; l++)
            list[n + l] = (uint32_t)c0 + l;
        return n + w;
    }
    for (; nz; nz &= nz - 1)
        list[n++] = (uint32_t)(c0 + (size_t)__builtin_ctzll(nz));
    return n;
}

/* The shard position of the q-th sample of the forward pass's tiles (order_samples);
 * NULL: the shard's order. */
static inline size_t position(const uint32_t *order, size_t q)
{
    return order ? order[q] : q;
}

/* Ask for the cache line of feature c of each of the n rows at element offsets row[i]. */
static inline void prefetch_rows(const KernelsInput *X, const size_t *row, size_t n, size_t c)
{
    for (size_t i = 0; i < n; i++)
        __builtin_prefetch(X->u8 ? (const void *)(X->u8 + row[i] + c)
                                 : (const void *)(X->f32 + row[i] + c));
}

/* Ask for features c0 .. c1 of sample r's row to be brought into the cache (if r < m):
 * the rows of a batch are scattered over the data set (MNIST's 60,000 rows: 47 MB), where
 * the hardware's prefetchers, which follow streams, cannot see them coming; and by the
 * time dW1 packs them, the step's other reads have pushed most out of this core's caches. */
static inline void prefetch_stretch(const KernelsInput *X, const uint32_t *idx, size_t r,
                                    size_t m, size_t d, size_t c0, size_t c1)
{
    if (r >= m)
        return;
    const size_t row = (size_t)idx[r] * d, line = X->u8 ? 64 : 16;   /* features a line */
    for (size_t c = c0; c < c1 && c < d; c += line)
        prefetch_rows(X, &row, 1, c);
}

/* Pack sample tile t (rows order[r0 .. r0 + rows]): per feature k < d, the MR rows' values as
 * floats at P[k MR + i] (rows past the last repeat row 0), and the list of the features
 * nonzero in some row. Sixteen features at a time (AVX-512; else eight) are converted and
 * transposed in registers. */
static void pack_sample_tile(const KernelsInput *X, const uint32_t *idx, const uint32_t *order,
                             size_t m, size_t d, size_t t, float *ip, uint32_t *lists)
{
    const size_t r0 = t * MR, rows = min_size(MR, m - r0);
    float *P = ip + t * MR * d;           /* (d, MR) */
    uint32_t *list = lists + t * (d + 1);
    size_t row[MR];                       /* element offsets of the rows in X */
    for (size_t i = 0; i < MR; i++)
        row[i] = (size_t)idx[position(order, r0 + (i < rows ? i : 0))] * d;
    /* The next tile's rows are asked for while this one's are read, a cache line of each
     * row at a time, in step with the reads: measured on Zen 5 with bench/kernel-ab, one
     * thread, the forward pass ran 3-9% faster (dense and MNIST); asking for whole rows at
     * once filled the core's queue of outstanding misses and stalled it (a third of the
     * packing's time), and asking two tiles ahead gained nothing more. */
    size_t next[MR], nn = 0;
    for (size_t q = r0 + MR; q < r0 + 2 * MR && q < m; q++)
        next[nn++] = (size_t)idx[position(order, q)] * d;
    const size_t line = X->u8 ? 64 : 16;   /* features per cache line */
    size_t n = 0, c0 = 0, pf = 0;
    for (; c0 + 32 <= d; c0 += 32) {
        for (; pf < c0 + 32; pf += line)
            prefetch_rows(X, next, nn, pf);
        n = list_nonzero(X, row, rows, c0, 32, list + 1, n);
    }
    if (c0 < d)
        n = list_nonzero(X, row, rows, c0, d - c0, list + 1, n);
    for (; pf < d; pf += line)
        prefetch_rows(X, next, nn, pf);
    if (d)   /* rows do not start on a line: the last one */
        prefetch_rows(X, next, nn, d - 1);
    list[0] = (uint32_t)n;
    c0 = 0;
#if defined(__AVX512F__) && VL == 16
    /* Sixteen features at a time with AVX-512: the 8 rows' values as 8 vectors of 16,
     * transposed in four rounds of shuffles into 8 vectors of two features' 8 rows each.
     * Measured on Zen 5, dense pixels: the packing 11% faster than with the 8-feature loop
     * below (which stores and reloads each row's values). */
    _Static_assert(MR == 8, "the AVX-512 transpose packs tiles of 8 rows");
    for (; c0 + 16 <= d; c0 += 16) {
        __m512 r[8], tt[8], u[8], a[8];
        for (int i = 0; i < 8; i++)   /* r[i] = row i, features c0 .. c0 + 15 */
            r[i] = X->u8 ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                               _mm_loadu_si128((const __m128i *)(X->u8 + row[i] + c0))))
                         : _mm512_mul_ps(_mm512_loadu_ps(X->f32 + row[i] + c0),
                                         _mm512_set1_ps(1.0f));   /* as load8 does */
        /* Within each 128-bit lane L (features 4L .. 4L + 3, s = feature - 4L):
         * tt[2j] = rows 2j, 2j + 1 of s = 0, 1; tt[2j + 1]: of s = 2, 3 */
        for (int j = 0; j < 4; j++) {
            tt[2 * j] = _mm512_unpacklo_ps(r[2 * j], r[2 * j + 1]);
            tt[2 * j + 1] = _mm512_unpackhi_ps(r[2 * j], r[2 * j + 1]);
        }
        /* u[s] = rows 0-3 of feature 4L + s, u[4 + s] = rows 4-7 (lane L) */
        for (int h4 = 0; h4 < 2; h4++) {
            const __m512d t0 = _mm512_castps_pd(tt[4 * h4]), t1 = _mm512_castps_pd(tt[4 * h4 + 1]);
            const __m512d t2 = _mm512_castps_pd(tt[4 * h4 + 2]), t3 = _mm512_castps_pd(tt[4 * h4 + 3]);
            u[4 * h4] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
            u[4 * h4 + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
            u[4 * h4 + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
            u[4 * h4 + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
        }
        /* a[2s] = (u[s] lanes 0, 1; u[s + 4] lanes 0, 1), a[2s + 1]: lanes 2, 3 */
        for (int k = 0; k < 4; k++) {
            a[2 * k] = _mm512_shuffle_f32x4(u[k], u[k + 4], 0x44);
            a[2 * k + 1] = _mm512_shuffle_f32x4(u[k], u[k + 4], 0xee);
        }
        /* Feature 4L + s (L = 0 .. 3) is 8 floats at P + (c0 + 4L + s) MR: one vector
         * holds features 4L + s and 4L + s + 1 (s = 0 or 2), rows 0-3 then 4-7 of each */
        float *p = P + c0 * MR;
        for (int half = 0; half < 2; half++)       /* lanes 0, 1 or 2, 3: L = 2 half + (0, 1) */
            for (int s2 = 0; s2 < 2; s2++) {       /* s = 2 s2 */
                const __m512 lo = a[4 * s2 + half], hi = a[4 * s2 + 2 + half];
                _mm512_storeu_ps(p + (8 * half + 2 * s2) * MR, _mm512_shuffle_f32x4(lo, hi, 0x88));
                _mm512_storeu_ps(p + (8 * half + 4 + 2 * s2) * MR, _mm512_shuffle_f32x4(lo, hi, 0xdd));
            }
    }
#endif
    for (; c0 + 8 <= d; c0 += 8) {
        float v[8][8];   /* [row][feature] */
        for (size_t i = 0; i < MR; i++)
            load8(X, row[i], c0, 1.0f, v[i]);   /* the nonzero bits: from list_nonzero */
#if defined(__AVX2__)
        /* The 8 x 8 transpose (rows past MR are garbage and land in lanes >= MR), then per
         * feature a store of 8 lanes whose last 8 - MR the next feature's store overwrites;
         * the last feature's store is narrowed to MR lanes. */
        __m256 r[8], s[8], u[8];
        for (int i = 0; i < 8; i++)
            r[i] = _mm256_loadu_ps(v[i < MR ? i : 0]);
        for (int i = 0; i < 8; i += 2) {
            s[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
            s[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int i = 0; i < 8; i += 4) {
            u[i] = _mm256_shuffle_ps(s[i], s[i + 2], 0x44);
            u[i + 1] = _mm256_shuffle_ps(s[i], s[i + 2], 0xee);
            u[i + 2] = _mm256_shuffle_ps(s[i + 1], s[i + 3], 0x44);
            u[i + 3] = _mm256_shuffle_ps(s[i + 1], s[i + 3], 0xee);
        }
        /* u[0..3]: rows 0-3 of features (0, 4), (1, 5), (2, 6), (3, 7); u[4..7]: rows 4-7 */
        __m256 col[8];
        for (int l = 0; l < 4; l++) {
            col[l] = _mm256_permute2f128_ps(u[l], u[l + 4], 0x20);
            col[l + 4] = _mm256_permute2f128_ps(u[l], u[l + 4], 0x31);
        }
        float *p = P + c0 * MR;
        for (int l = 0; l < 7; l++)
            _mm256_storeu_ps(p + l * MR, col[l]);
        if (MR == 8) {
            _mm256_storeu_ps(p + 7 * MR, col[7]);
        } else {
            _mm_storeu_ps(p + 7 * MR, _mm256_castps256_ps128(col[7]));
            _mm_storel_pi((__m64 *)(p + 7 * MR + 4), _mm256_extractf128_ps(col[7], 1));
        }
#else
        for (size_t l = 0; l < 8; l++)
            for (size_t i = 0; i < MR; i++)
                P[(c0 + l) * MR + i] = v[i][l];
#endif
    }
    for (; c0 < d; c0++)
        for (size_t i = 0; i < MR; i++)
            P[c0 * MR + i] = X->u8 ? (float)X->u8[row[i] + c0] : X->f32[row[i] + c0];
}

/* x w + s in one rounding where the target fuses multiply-adds (as the vector code's
 * contracted x * w + s), else in two: written out, because GCC vectorises a scalar
 * running sum as blocks of eight rounded products added in order and fuses only the
 * remainder; which terms were fused would then depend on how many terms the list has, and
 * a forward tile's list depends on the other samples of the tile (so on the shard, the
 * rank count). */
static inline float muladd(float x, float w, float s)
{
#if defined(__FMA__)
    return __builtin_fmaf(x, w, s);
#else
    return x * w + s;
#endif
}

/* acc[i][v] = sum over the listed k (all k < n when list is NULL) of x[t, i] W[k, v VL ..]
 * for the first mr of the MR rows of the packed panel P (n, MR) (the others: 0) and nv (1
 * or 2) vectors of columns of W, whose rows are ldw floats apart. With cp (list NULL, nv
 * 2), each row of W read is also stored at cp + k NR: the panel (n, NR) of those columns. */
static inline __attribute__((always_inline)) void
fwd_micro(const float *P, const uint32_t *list, size_t n, const float *W, size_t ldw, int nv,
          int mr, float *cp, vf acc[MR][2])
{
    vf a[MR][2];
    zero_tile(a);
    /* Unrolled four times (here and in grad1_micro's fast loop): the same operations in
     * the same order, one loop test per four terms. Measured on Zen 3 with bench/kernel-ab,
     * MNIST: forward 3-7% and dW1 1-4% faster; dense data: no change. Unrolling the exact
     * chunks' loops (in a form GCC accepts) made them 13-16% slower at chunks of 4 and 8. */
#pragma GCC unroll 4
    for (size_t t = 0; t < n; t++) {
        const float *w = W + (list ? list[t] : t) * ldw;
        const vf w0 = vload(w), w1 = nv > 1 ? vload(w + VL) : w0;
        if (cp)
            vstore(cp + t * NR, w0), vstore(cp + t * NR + VL, w1);
        const float *x = P + (list ? list[t] : t) * MR;
        for (int i = 0; i < mr; i++) {
            a[i][0] += x[i] * w0;
            if (nv > 1)
                a[i][1] += x[i] * w1;
        }
    }
    memcpy(acc, a, sizeof a);
}

/* fwd_micro for a tile with `rows` samples: a last, partial tile of one or two rows (or
 * three or four) computes only two (four) of them, a third (two thirds) of a full tile's
 * work. Each row's sum is the same either way. The batch of configs/mnist.ini (32) leaves
 * a last tile of 2 rows on one rank, and of 4 rows on each of 8 ranks (their whole shard). */
static inline __attribute__((always_inline)) void
fwd_rows(const float *P, const uint32_t *list, size_t n, const float *W, size_t ldw, int nv,
         size_t rows, float *cp, vf acc[MR][2])
{
    if (rows > 4)
        fwd_micro(P, list, n, W, ldw, nv, MR, cp, acc);
    else if (rows > 2)
        fwd_micro(P, list, n, W, ldw, nv, 4, cp, acc);
    else
        fwd_micro(P, list, n, W, ldw, nv, 2, cp, acc);
}

/* 1 / (1 + e^-z) lane by lane, the same operations for every lane (so the same bits
 * whichever column path a value takes). e^x for x = -z clamped to [-86, 88] (beyond, the
 * sigmoid is 1 or below 6e-39): x = n ln 2 + r with n = round(x / ln 2), |r| <= ln2 / 2,
 * e^r by Cephes's degree-6 expf polynomial (relative error about 1e-7) and 2^n added to
 * its exponent (e^r 2^n stays normal for these n). NaN stays NaN. */
static inline void sigmoid(vf *zp)   /* in place: a vector return would change the ABI */
{
    const vf z = *zp;
    const vf lo = (vf){0} - 86.0f, hi = (vf){0} + 88.0f;
    vf x = -z;
    x = (vf)(((vi)(x < lo) & (vi)lo) | (~(vi)(x < lo) & (vi)x));   /* max(x, lo) */
    x = (vf)(((vi)(x > hi) & (vi)hi) | (~(vi)(x > hi) & (vi)x));   /* min(x, hi) */
    const vf shift = (vf){0} + 0x1.8p23f;   /* adding it rounds to an integer */
    const vf t = x * 1.44269504088896341f + shift;
    const vf n = t - shift;
    const vf r = (x - n * 0.693359375f) - n * -2.12194440e-4f;   /* ln 2 = hi + lo */
    vf p = (vf){0} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const vf er = p * (r * r) + r + 1.0f;
    /* n in the exponent field; unsigned, so that wrapping (a NaN's payload, a negative n
     * shifted) is defined and gives the bits of two's complement */
    const viu two_n = ((viu)t - (viu)shift) << 23;
    const vf e = (vf)((viu)er + two_n);
    const vf s = 1.0f / (1.0f + e);
    const vi nan = z != z;   /* (a NaN's payload could reach the exponent through two_n) */
    *zp = (vf)((nan & (vi)z) | (~nan & (vi)s));
}

/* A1 rows order[r0 .. r0 + rows], columns j0 .. j1 of sample tile t: full NR blocks from
 * the packed panels of W1 at Wp (the block of columns j0 first; or from W1 when Wp is
 * NULL), the columns past the last full block from W1 itself. With fill (the tile lists
 * every feature, Wp NULL), the full blocks' panels are written there as W1 is read. */
static void fwd_task(const KernelsInput *X, size_t m, size_t d, size_t h, const float *W1,
                     const float *Wp, float *fill, const float *b1, float *A1, const float *ip,
                     const uint32_t *lists, const uint32_t *order, size_t t, size_t j0,
                     size_t j1)
{
    const size_t r0 = t * MR, rows = min_size(MR, m - r0);
    const uint32_t *list = lists + t * (d + 1) + 1;
    const size_t n = list[-1];
    const float *P = ip + t * MR * d;
    const float scale = input_scale(X);
    for (size_t j = j0; j < j1;) {
        float acc[MR][NR];
        size_t bw;
        vf a[MR][2];
        if (j + NR <= j1) {
            bw = NR;
            const float *Wb = Wp ? Wp + (j - j0) / NR * d * NR : W1 + j;   /* (d, NR) or in place */
            const size_t ldw = Wp ? NR : h;
            if (fill)
                fwd_rows(P, NULL, n, Wb, ldw, 2, rows, fill + (j - j0) / NR * d * NR, a);
            else if (n == d)   /* every feature listed: the list is 0, 1, ..., d - 1 */
                fwd_rows(P, NULL, n, Wb, ldw, 2, rows, NULL, a);
            else
                fwd_rows(P, list, n, Wb, ldw, 2, rows, NULL, a);
            for (int i = 0; i < MR; i++)
                vstore(acc[i], a[i][0]), vstore(acc[i] + VL, a[i][1]);
        } else if (j + VL <= j1) {
            bw = VL;
            fwd_rows(P, list, n, W1 + j, h, 1, rows, NULL, a);
            for (int i = 0; i < MR; i++)
                vstore(acc[i], a[i][0]);
        } else {   /* fewer than VL columns: the same sums, one column at a time */
            bw = j1 - j;
            for (size_t i = 0; i < MR; i++)
                for (size_t c = 0; c < bw; c++) {
                    float s = 0;
                    for (size_t q = 0; q < n; q++)
                        s = muladd(P[(size_t)list[q] * MR + i], W1[(size_t)list[q] * h + j + c], s);
                    acc[i][c] = s;
                }
        }
        for (size_t i = 0; i < rows; i++) {
            float *out = A1 + position(order, r0 + i) * h + j;
            size_t c = 0;
            for (; c + VL <= bw; c += VL) {
                vf z = vload(b1 + j + c) + scale * vload(acc[i] + c);
                sigmoid(&z);
                vstore(out + c, z);
            }
            if (c < bw) {   /* the last columns, through one vector (lanes past bw unused) */
                float z[VL] = {0};
                for (size_t l = 0; c + l < bw; l++)
                    z[l] = b1[j + c + l] + scale * acc[i][c + l];
                vf zv = vload(z);
                sigmoid(&zv);
                vstore(z, zv);
                memcpy(out + c, z, (bw - c) * sizeof *z);
            }
        }
        j += bw;
    }
}

/* The order in which the forward pass groups samples into tiles: by their signatures
 * (kernels_signatures), so that a tile's samples tend to be nonzero at the same features
 * and the tile lists fewer of them (MNIST, batch 256: 43.5% of a tile's features listed
 * in the data's order, 39% in this one). Each output row is the same sum whichever tile
 * computes it (zeros skipped change no bits), so the order changes no result.
 * order[q] = the position in the shard (0 .. m - 1) of the q-th sample: by the top 40
 * bits of the signature, ties in the shard's order (m < 2^24). A stable LSD radix sort of
 * (signature's top 40 bits | position), 8 bits a pass, on 2 m keys of scratch after
 * order. */
static void order_samples(const KernelsInput *X, const uint32_t *idx, size_t m, uint32_t *order)
{
    uint64_t *key = (uint64_t *)(order + (m + 1) / 2 * 2), *tmp = key + m;   /* aligned */
    int varied = 0;
    for (size_t r = 0; r < m; r++)   /* scattered over the data set's signatures */
        __builtin_prefetch(X->sig + idx[r]);
    for (size_t r = 0; r < m; r++) {
        key[r] = (X->sig[idx[r]] & ~(uint64_t)0xffffff) | r;
        varied |= (key[r] ^ key[0]) >> 24 != 0;
    }
    for (int pass = 0; varied && pass < 5; pass++) {
        const int shift = 24 + 8 * pass;
        size_t count[257] = {0};
        for (size_t r = 0; r < m; r++)
            count[(key[r] >> shift & 0xff) + 1]++;
        for (int b = 0; b < 256; b++)
            count[b + 1] += count[b];
        for (size_t r = 0; r < m; r++)
            tmp[count[key[r] >> shift & 0xff]++] = key[r];
        uint64_t *swap = key;
        key = tmp, tmp = swap;
    }
    for (size_t q = 0; q < m; q++)
        order[q] = (uint32_t)(key[q] & 0xffffff);
}

size_t kernels_tile_rows(void)
{
    return MR;
}

void kernels_signatures(const KernelsInput *X, size_t n, size_t d, uint64_t *sig)
{
    const size_t g = (d + 63) / 64;   /* features per group */
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < n; r++) {
        const size_t row = r * d;
        uint64_t s = 0;
        for (size_t c0 = 0, bit = 63; c0 < d; c0 += g, bit--) {
            int any = 0;
            for (size_t c = c0; c < c0 + g && c < d; c++)
                any |= X->u8 ? X->u8[row + c] != 0 : X->f32[row + c] != 0.0f;
            s |= (uint64_t)(any != 0) << bit;
        }
        sig[r] = s;
    }
}

/* Copy W1 into panels when the sample tiles read its rows at least this many times over
 * (measured on Zen 3, one and two threads: MNIST at batch 32 and 64, whose 6-sample tiles
 * list 44% of the pixels, ran 17-40% faster reading W1 in place; dense data from batch
 * 32 on and MNIST from batch 128 on are as fast or faster with the copy). */
#define PANEL_READS 6

/* A thread's first tile of a column group whose list holds every feature (dense data)
 * reads W1 in place and writes the group's panels as it goes, instead of a copy before
 * it, up to this many columns (rows of W1 up to 1 KB apart). Measured on Zen 3 with
 * bench/kernel-ab, dense pixels, one thread: h = 128 batch 32 / 64 / 256 forward 0.90 /
 * 0.93 / 0.98 (two threads, batch 32 and 64: 0.93, 0.96), h = 256 0.97; at h = 512 and
 * 800, 0.90-1.00 at some batches but 1.08-1.20 at batch 96. */
#define FILL_MAX_H 256

void kernels_hidden_forward(const KernelsInput *X, const uint32_t *idx, size_t m, size_t d,
                            size_t h, const float *W1, const float *b1, float *A1,
                            const KernelsScratch *scratch)
{
    OWN_TEAM(kernels_hidden_forward(X, idx, m, d, h, W1, b1, A1, scratch));
    const size_t T = (m + MR - 1) / MR, G = (h + CG - 1) / CG;
    float *Wp = scratch->panel, *ip = Wp + weight_panel_floats(m, d, h);
    /* Samples grouped by signature, when there are signatures and more than one tile */
    uint32_t *order = NULL;
    if (X->sig && m > MR && m < ((size_t)1 << 24)) {
        order = scratch->list + list_words(m, d);
#pragma omp single
        order_samples(X, idx, m, order);
    }
    /* The sample tiles first: their lists say how many rows of W1 the products read.
     * Shared out statically, in the order in which the products share out the tiles when
     * they read W1 in place, so that a thread then computes the tiles it has packed. */
#pragma omp for schedule(static)
    for (size_t t = 0; t < T; t++)
        pack_sample_tile(X, idx, order, m, d, t, ip, scratch->list);
    size_t listed = 0;   /* rows of W1 read, over all tiles (every thread: the same sum) */
    for (size_t t = 0; t < T; t++)
        listed += scratch->list[t * (d + 1)];
    /* W1's panels are copied (all d rows) only when the tiles read W1's rows often enough
     * (PANEL_READS times over) to repay the copy; otherwise the products read W1 in place.
     * Each thread copies the panels of a column group into a slot of its own when it
     * comes to the group, where they stay in its cache for its tiles, rather than all
     * threads copying all of W1 before the products into a buffer of W1's size (at
     * h = 800, 2.5 MB written and read back from L3: measured on Zen 3, 18% of the
     * forward pass's time went to that copy); on dense data its first tile of the group
     * fills the slot as it reads W1 (FILL_MAX_H). Where the scratch has no room for a slot
     * per thread, the shared copy. The same values either way: the same bits. */
    const int panels = listed >= PANEL_READS * d && h >= NR;
    const size_t slot = d * CG, tid = (size_t)omp_get_thread_num();
    const int own = panels && (size_t)omp_get_num_threads() * slot <= weight_panel_floats(m, d, h);
    if (panels && !own) {
#pragma omp for schedule(static)
        for (size_t b = 0; b < h / NR; b++)
            pack_weight_panel(W1, d, h, b, Wp + b * d * NR);
    }
    /* With panels, tasks column group by column group, so that a thread's consecutive
     * tasks reuse the same d x CG panel of W1 from its cache (and copy it once). Reading
     * W1 in place (few listed rows: MNIST at small batches), tile by tile instead: a
     * thread computes all columns of the tiles it packed, which are in its own cache,
     * rather than half the columns of every tile, half of them packed by the other thread
     * (two threads, MNIST, batch 32 and 64: forward 2-15% faster; one thread: the same). */
    size_t copied = G;   /* the group whose panels are in this thread's slot */
#pragma omp for schedule(static)
    for (size_t task = 0; task < T * G; task++) {
        const size_t g = panels ? task / T : task % G, t = panels ? task % T : task / G;
        const size_t j0 = g * CG, j1 = min_size(h, j0 + CG);
        float *Wg = NULL, *fill = NULL;   /* the group's panels; to be filled by this task */
        if (own) {
            Wg = Wp + tid * slot;
            if (copied != g && h <= FILL_MAX_H && scratch->list[t * (d + 1)] == d) {
                fill = Wg, Wg = NULL;
            } else if (copied != g) {
                for (size_t b = j0 / NR; b < j1 / NR; b++)
                    pack_weight_panel(W1, d, h, b, Wg + (b - j0 / NR) * d * NR);
            }
            copied = g;
        } else if (panels) {
            Wg = Wp + j0 / NR * d * NR;
        }
        fwd_task(X, m, d, h, W1, Wg, fill, b1, A1, ip, scratch->list, order, t, j0, j1);
    }
}

/* sum_i a[i] * w[i] for i < n in a fixed order: 16 running lane sums over the full
 * 16-blocks (vectorised, 16 / VL vectors), added lane 0 to 15, then the tail in order. */
#define V16 (16 / VL)
static inline float dot_fixed(const float *a, const float *w, size_t n)
{
    vf acc[V16];
    memset(acc, 0, sizeof acc);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int v = 0; v < V16; v++)
            acc[v] += vload(a + i + v * VL) * vload(w + i + v * VL);
    float lanes[16];
    memcpy(lanes, acc, sizeof lanes);
    float s = 0;
    for (int l = 0; l < 16; l++)
        s += lanes[l];
    for (; i < n; i++)
        s = muladd(a[i], w[i], s);
    return s;
}

/* One row of dZ1: g1[i] = (sum_j g2[j] W2t[j, i]) a[i] (1 - a[i]), the sum in class order,
 * each product rounded and then added: never fused into one multiply-add, which this
 * function's fp-contract=off ensures whatever GCC's tuning for the target prefers (with
 * -ffp-contract=fast it fuses or not depending on how the loop is blocked, and on the
 * tuning). Four vectors of hidden units at a time, so that the four chains of additions
 * overlap. Returns the largest |g1[i]| as a bit pattern with the sign cleared: for such
 * patterns integer order is float order, with NaN above infinity. */
__attribute__((optimize("fp-contract=off"))) static int32_t
dz1_row(const float *a, const float *g2, const float *W2t, size_t h, size_t k, float *g1)
{
    vi top = {0};
    size_t i = 0;
    for (; i + 4 * VL <= h; i += 4 * VL) {
        vf da[4] = {{0}, {0}, {0}, {0}};
        for (size_t j = 0; j < k; j++)
            for (int u = 0; u < 4; u++)
                da[u] += g2[j] * vload(W2t + j * h + i + u * VL);
        for (int u = 0; u < 4; u++) {
            const vf av = vload(a + i + u * VL);
            const vf g = da[u] * av * (1.0f - av);
            vstore(g1 + i + u * VL, g);
            const vi bits = (vi)g & 0x7fffffff;
            const vi keep = top > bits;   /* -1 or 0 per lane */
            top = (top & keep) | (bits & ~keep);
        }
    }
    for (; i + VL <= h; i += VL) {
        vf da = {0};
        for (size_t j = 0; j < k; j++)
            da += g2[j] * vload(W2t + j * h + i);
        const vf av = vload(a + i);
        const vf g = da * av * (1.0f - av);
        vstore(g1 + i, g);
        const vi bits = (vi)g & 0x7fffffff;
        const vi keep = top > bits;
        top = (top & keep) | (bits & ~keep);
    }
    int32_t lanes[VL], top1 = 0;
    memcpy(lanes, &top, sizeof lanes);
    for (int l = 0; l < VL; l++)
        top1 = top1 > lanes[l] ? top1 : lanes[l];
    for (; i < h; i++) {
        float da = 0;
        for (size_t j = 0; j < k; j++)
            da += g2[j] * W2t[j * h + i];
        g1[i] = da * a[i] * (1.0f - a[i]);
        int32_t bits;
        memcpy(&bits, &g1[i], sizeof bits);
        bits &= 0x7fffffff;
        top1 = top1 > bits ? top1 : bits;
    }
    return top1;
}

void kernels_output_backward(const float *A1, const uint8_t *labels, const uint32_t *idx,
                             size_t m, size_t h, size_t k, const float *W2, const float *b2,
                             float *W2t, float inv_m, float *dZ2, float *dZ1,
                             float *dZ1_max, double *loss, uint8_t *correct)
{
    if (k == 0 || k > KERNELS_MAX_CLASSES)   /* callers guarantee 1..MAX; keeps z[] in bounds */
        return;
    OWN_TEAM(kernels_output_backward(A1, labels, idx, m, h, k, W2, b2, W2t, inv_m, dZ2, dZ1,
                                     dZ1_max, loss, correct));
    {
        /* W2 transposed, so that both products below run along h, contiguous. */
#pragma omp for schedule(static)
        for (size_t j = 0; j < k; j++)
            for (size_t i = 0; i < h; i++)
                W2t[j * h + i] = W2[i * k + j];
        /* The rows' labels asked for first, all at once: they are scattered over the data
         * set's labels (60 KB for MNIST), which the step's other reads have pushed out of
         * this core's caches; read row by row, a third of this loop's time (measured on
         * Zen 5, dense pixels, batch 256) went to waiting for them. The same static
         * schedule as the loop below: each thread asks for its own rows. */
#pragma omp for schedule(static) nowait
        for (size_t r = 0; r < m; r++)
            __builtin_prefetch(labels + idx[r]);
#pragma omp for schedule(static)
        for (size_t r = 0; r < m; r++) {
            const float *a = A1 + r * h;    /* (h) */
            const size_t y = labels[idx[r]];
            float z[KERNELS_MAX_CLASSES];   /* (k) */
            for (size_t j = 0; j < k; j++)
                z[j] = b2[j] + dot_fixed(a, W2t + j * h, h);
            /* log-sum-exp with the row maximum subtracted: no overflow, no log(0). */
            size_t best = 0;
            float zmax = -INFINITY, zy = 0;
            for (size_t j = 0; j < k; j++) {
                if (z[j] > zmax)
                    zmax = z[j], best = j;
                if (j == y)
                    zy = z[j];
            }
            zy -= zmax;   /* <= 0 */
            float sum = 0;
            for (size_t j = 0; j < k; j++) {
                z[j] = expf(z[j] - zmax);   /* z now holds the unnormalised softmax */
                sum += z[j];
            }
            /* loss = log(sum exp(z - zmax)) - (z_y - zmax); sum >= 1, so no log(0). */
            loss[r] = (double)logf(sum) - (double)zy;
            correct[r] = best == y;
            if (!dZ2)
                continue;
            float *g2 = dZ2 + r * k;         /* (k) */
            const float inv_sum = 1.0f / sum;
            for (size_t j = 0; j < k; j++)
                g2[j] = (z[j] * inv_sum - (j == y ? 1.0f : 0.0f)) * inv_m;
            const int32_t top1 = dz1_row(a, g2, W2t, h, k, dZ1 + r * h);
            if (dZ1_max)
                memcpy(&dZ1_max[r], &top1, sizeof top1);
        }
    }
}

/* The limit in force: the caller's, but never above KERNELS_LIMIT_MAX, below which
 * limit * 2^40 converts to int64 without overflow. */
static float sink_limit(const KernelsSink *s)
{
    return s->limit < KERNELS_LIMIT_MAX ? s->limit : KERNELS_LIMIT_MAX;   /* NaN: the max */
}

/* Rows per chunk: fast mode sums the whole shard at once. */
static size_t sink_chunk(const KernelsSink *s, size_t m)
{
    return s->out_f || s->chunk == 0 ? (m ? m : 1) : s->chunk;
}

/* A bound on every chunk sum of dW1 and db1 from the dZ1 rows for inputs of magnitude at
 * most 1 (pixels: x / 255; the caller multiplies it by a larger float features' bound):
 * at most sum_r row_max[r] in exact arithmetic, or INFINITY if there is none. A float sum
 * of n products and the two roundings of the scaling (for pixels; one exact scaling by
 * 2^40 for float features) exceed the exact value by at most a factor (1 + 2^-24)^(n + 2), which is
 * below 1 + (n + 3) 2^-23 while (n + 2) 2^-24 <= 1 (so for chunks up to 2^22, with room).
 * Larger chunks, NaN or infinity in row_max: cannot rule it out. */
static double chunk_sum_bound(const float *row_max, size_t m, size_t chunk, double *total)
{
    *total = INFINITY;
    if (chunk > ((size_t)1 << 22))
        return INFINITY;
    double worst = 0, all = 0;
    for (size_t r0 = 0; r0 < m; r0 += chunk) {
        const size_t r1 = r0 + chunk < m ? r0 + chunk : m;
        double s = 0;
        for (size_t r = r0; r < r1; r++)
            s += row_max[r];
        s *= 1.0 + (double)(r1 - r0 + 3) * 0x1p-23;
        if (!(s <= worst))
            worst = s >= 0 ? s : INFINITY;   /* NaN: no bound */
        all += s;
    }
    *total = worst < INFINITY ? all : INFINITY;
    return worst;
}

/* A bound on |x s| for every feature x (s: input_scale) and for db1's constant 1: 1 for
 * pixels (x / 255), max(1, f32_max) for float features; 0 if unknown. */
static float input_bound(const KernelsInput *X)
{
    const float xmax = X->u8 ? 1.0f : X->f32_max;
    return xmax > 0 && xmax < INFINITY ? fmaxf(xmax, 1.0f) : 0;
}

double kernels_grad1_bound(const KernelsInput *X, const float *W2, size_t h, size_t k,
                           size_t chunk)
{
    const float xmax = input_bound(X);
    float wmax = 0;
    int finite = 1;
    for (size_t i = 0; i < h * k; i++) {
        const float a = fabsf(W2[i]);
        finite &= a < INFINITY;   /* NaN: not finite */
        wmax = a > wmax ? a : wmax;
    }
    /* Float rounding: a dZ1 value takes about k + 8 roundings (softmax, the k-term
     * product, the sigmoid's derivative, 1 / m), a chunk value chunk + 3 more; n roundings
     * of relative size 2^-24 grow a value by at most a factor 1 + n 2^-23 while
     * n 2^-24 <= 1. */
    const double n = (double)chunk + (double)k + 12;
    if (!finite || !(xmax > 0) || n > 0x1p22)
        return 0;
    return 0.5 * (double)xmax * (double)wmax * (1.0 + n * 0x1p-23);
}

/* The fractional bits of dW1's chunk values on the int32 path, or 0 for the 40-bit path:
 * the most that keep grad_bound 2^b within 2^30, at most 40 and at least FIX_MIN_BITS
 * (the resolution 2^-b stays below about a weight's float ulp times the learning rate;
 * a bound that asks for fewer, from float features with large outliers or a huge W2,
 * takes the 40-bit path); a known input bound (and at most 2^80, so that the scaled
 * inputs x s 2^b stay finite) and a grad_bound within the limit. */
#define FIX_MIN_BITS 26
static int grad1_bits(const KernelsInput *X, const KernelsSink *s)
{
    const float xmax = input_bound(X);
    if (!s->out_i || !(s->grad_bound > 0 && s->grad_bound <= sink_limit(s)) ||
        !(xmax > 0 && xmax <= 0x1p80f))
        return 0;
    int ex;
    frexp(s->grad_bound, &ex);   /* grad_bound < 2^ex */
    const int b = 30 - ex;
    return b < FIX_MIN_BITS ? 0 : b < KERNELS_FIX_BITS ? b : KERNELS_FIX_BITS;
}

int kernels_fix_bits(const KernelsInput *X, const KernelsSink *sink)
{
    const int b = grad1_bits(X, sink);
    return b ? b : KERNELS_FIX_BITS;
}

int kernels_grad1_i32_bits(const KernelsInput *X, const KernelsSink *sink)
{
    return grad1_bits(X, sink);
}

/* Feature tiles p0 .. p1 of dW1 (tile p: features p MR .. p MR + MR; feature d is the
 * constant 1 of db1, and features past it are 0): per sample r, the tile's MR values as
 * floats, for the samples where one of them is nonzero, in ascending r. Sample by sample,
 * so that each row is read once, a stretch of it for all the tiles; the tiles with eight
 * features to read load and convert them at once (the values past MR land in the next
 * entry, or in the tile's 8 floats of slack, and are overwritten or unused). */
#define FEATURE_TILES 16   /* tiles packed together (the loop's unit of work) */
_Static_assert(FEATURE_TILES <= 32, "pack_feature_tiles keeps a bit per tile in 32 bits");
#define PACK_AHEAD 8       /* samples ahead whose stretch of row is asked for */

static void pack_feature_tiles(const KernelsInput *X, const uint32_t *idx, size_t m, size_t d,
                               size_t p0, size_t p1, int bits, float *ip, uint32_t *lists)
{
    /* Exact mode under a bound (bits > 0): every value times the input scale s and 2^bits,
     * so that a chunk's float sum is its fixed-point value before truncation, with no
     * multiply per chunk (one rounding per pixel, x s; float features and db1's constant 1
     * are scaled exactly). Otherwise the values as they are (f = 1). */
    const float two_bits = bits ? ldexpf(1.0f, bits) : 1.0f;
    const float f = bits ? input_scale(X) * two_bits : 1.0f;
    size_t n[FEATURE_TILES] = {0};
    const size_t pv = d >= 8 ? (d - 8) / MR + 1 : 0;   /* tiles p < pv: eight features read */
    const size_t p1v = p1 < pv ? p1 : pv;
    const unsigned mask = (1u << MR) - 1;
    /* While every sample has a nonzero feature in every tile of the block (dense data),
     * sample r is entry r of each: no counts to keep, and the lists, 0, 1, 2, ..., are
     * written afterwards in one sequential pass per tile. The first sample that some tile
     * skips is redone by the loop below (its values land where they already are). */
    size_t r = 0;
    for (; r < m && p0 < p1v; r++) {
        const size_t row = (size_t)idx[r] * d;
        prefetch_stretch(X, idx, r + PACK_AHEAD, m, d, p0 * MR, p1v * MR + 8);
        unsigned all = 1;
        size_t p = p0;
#if defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && MR == 8
        /* Pixels, two tiles at a time with AVX-512: load8's values and test, in half the
         * instructions (measured on Zen 5: dW1 1-3% faster on dense pixels) */
        if (X->u8)
            for (; p + 2 <= p1v; p += 2) {
                const __m128i b = _mm_loadu_si128((const __m128i *)(X->u8 + row + p * MR));
                const __mmask16 nz = _mm_test_epi8_mask(b, b);
                const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)),
                                               _mm512_set1_ps(f));
                _mm256_storeu_ps(ip + p * feature_tile_floats(m) + r * MR, _mm512_castps512_ps256(v));
                _mm256_storeu_ps(ip + (p + 1) * feature_tile_floats(m) + r * MR,
                                 _mm512_extractf32x8_ps(v, 1));
                all &= (nz & 0xff) != 0 && (nz >> 8) != 0;
            }
#endif
        for (; p < p1v; p++)
            all &= (load8(X, row, p * MR, f, ip + p * feature_tile_floats(m) + r * MR) & mask) != 0;
        if (!all)
            break;
    }
    for (size_t p = p0; p < p1v; p++) {
        uint32_t *list = lists + p * (m + 1) + 1;
        for (size_t i = 0; i < r; i++)
            list[i] = (uint32_t)i;
        n[p - p0] = r;
    }
    /* Pixels: which tiles a sample has a nonzero pixel in, first (an 8-byte load per tile),
     * then only those tiles are converted and stored (MNIST: a third of them). */
    _Static_assert(MR <= 8, "a tile's pixels are tested as one 8-byte word");
    uint64_t tile_bytes = 0;   /* the first MR of 8 bytes, in memory order (any endianness) */
    memset(&tile_bytes, 0xff, MR);
    if (X->u8)
        for (; r < m; r++) {
            const size_t row = (size_t)idx[r] * d;
            prefetch_stretch(X, idx, r + PACK_AHEAD, m, d, p0 * MR, p1v * MR + 8);
            uint32_t nzt = 0;   /* bit q: tile p0 + q */
#if defined(__AVX512F__) && MR == 8
            /* Eight tiles' words at a time, a bit per nonzero word (the load masked to the
             * tiles that exist, so never past the row's end) */
            for (size_t p = p0; p < p1v; p += 8) {
                const __mmask8 have = (__mmask8)((1u << min_size(8, p1v - p)) - 1);
                const __m512i v = _mm512_maskz_loadu_epi64(have, X->u8 + row + p * MR);
                nzt |= (uint32_t)_mm512_test_epi64_mask(v, v) << (p - p0);
            }
#else
            for (size_t p = p0; p < p1v; p++) {
                uint64_t v;
                memcpy(&v, X->u8 + row + p * MR, sizeof v);
                nzt |= (uint32_t)((v & tile_bytes) != 0) << (p - p0);
            }
#endif
            for (; nzt; nzt &= nzt - 1) {
                const size_t q = (size_t)__builtin_ctz(nzt), p = p0 + q;
                load8(X, row, p * MR, f, ip + p * feature_tile_floats(m) + n[q] * MR);
                lists[p * (m + 1) + 1 + n[q]] = (uint32_t)r;
                n[q]++;
            }
        }
    for (; r < m; r++) {
        const size_t row = (size_t)idx[r] * d;
        prefetch_stretch(X, idx, r + PACK_AHEAD, m, d, p0 * MR, p1v * MR + 8);
        for (size_t p = p0; p < p1v; p++) {
            const size_t q = p - p0;
            const unsigned nz =
                load8(X, row, p * MR, f, ip + p * feature_tile_floats(m) + n[q] * MR);
            lists[p * (m + 1) + 1 + n[q]] = (uint32_t)r;
            n[q] += (nz & mask) != 0;
        }
    }
    for (size_t p = p0 > pv ? p0 : pv; p < p1; p++) {
        const size_t q = p - p0, c0 = p * MR;
        float *P = ip + p * feature_tile_floats(m);
        for (size_t s = 0; s < m; s++) {
            float v[MR];
            int any = 0;
            for (size_t i = 0; i < MR; i++) {
                const size_t c = c0 + i;
                v[i] = c < d ? (X->u8 ? (float)X->u8[(size_t)idx[s] * d + c]
                                      : X->f32[(size_t)idx[s] * d + c])
                             : c == d ? 1.0f : 0.0f;
                any |= v[i] != 0.0f;
                v[i] *= c < d ? f : two_bits;
            }
            memcpy(P + n[q] * MR, v, sizeof v);
            lists[p * (m + 1) + 1 + n[q]] = (uint32_t)s;
            n[q] += any != 0;
        }
    }
    for (size_t p = p0; p < p1; p++)
        lists[p * (m + 1)] = (uint32_t)n[p - p0];
}

/* q += trunc(x) lane by lane, for |x| < 2^62 (checked by the caller), with 32-bit
 * conversions only (AVX2 and SSE2 have no float -> int64 vector conversion):
 * x = hi 2^31 + lo exactly, hi = trunc(x 2^-31) (|hi| < 2^31), and lo = x - hi 2^31 is
 * exact (Sterbenz: hi 2^31 is within a factor 2 of x, or 0) with |lo| < 2^31 and the sign
 * of x, so trunc(x) = hi 2^31 + trunc(lo). */
static inline void fix_trunc_add_split(vq *q, vf x)
{
    const vi hi = __builtin_convertvector(x * 0x1p-31f, vi);
    const vf lo = x - __builtin_convertvector(hi, vf) * 0x1p31f;
    const vq h64 = __builtin_convertvector(hi, vq), l64 = __builtin_convertvector(
                                                        __builtin_convertvector(lo, vi), vq);
    *q += (vq)((vqu)h64 << 31) + l64;
}

#if VL == 8 && defined(__AVX2__)
/* AVX2: where every lane has |x| < 2^51 (all but diverging runs), each half of x widened
 * to double (exact), truncated (vroundpd), and read as an integer by adding 1.5 * 2^52:
 * the sum lies in [2^52, 2^53), where the mantissa bits minus those of 1.5 * 2^52 are the
 * integer. Five instructions per four lanes instead of fix_trunc_add_split's dozen. */
static inline void fix_trunc_add(vq *q, vf x)
{
    const __m256 xv = (__m256)x;
    const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), xv);
    if (_mm256_movemask_ps(_mm256_cmp_ps(ax, _mm256_set1_ps(0x1p51f), _CMP_LT_OQ)) != 0xff) {
        fix_trunc_add_split(q, x);
        return;
    }
    const __m256d M = _mm256_set1_pd(0x1.8p52);
    const __m256i Mi = _mm256_castpd_si256(M);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(xv));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
    lo = _mm256_add_pd(_mm256_round_pd(lo, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC), M);
    hi = _mm256_add_pd(_mm256_round_pd(hi, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC), M);
    __m256i *qq = (__m256i *)q;
    qq[0] = _mm256_add_epi64(qq[0], _mm256_sub_epi64(_mm256_castpd_si256(lo), Mi));
    qq[1] = _mm256_add_epi64(qq[1], _mm256_sub_epi64(_mm256_castpd_si256(hi), Mi));
}

/* The same for values whose running total stays below 2^51 (no test; the caller knows a
 * bound): truncated in float, widened to double (exact) and added to a total kept as a
 * double that starts at 1.5 * 2^52 (fix_small_init). Every partial total is then an
 * integer in [2^52, 2^53), where doubles are the integers, so each addition is exact, and
 * the total's bits minus those of 1.5 * 2^52 are the int64 sum (fix_small_done). */
#define FIX_SMALL 1
static inline void fix_small_init(vq *q)
{
    __m256d *qd = (__m256d *)q;
    qd[0] = qd[1] = _mm256_set1_pd(0x1.8p52);
}

static inline void fix_add_small(vq *q, vf x)
{
    const __m256 t = _mm256_round_ps((__m256)x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256d *qd = (__m256d *)q;
    qd[0] = _mm256_add_pd(qd[0], _mm256_cvtps_pd(_mm256_castps256_ps128(t)));
    qd[1] = _mm256_add_pd(qd[1], _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1)));
}

static inline void fix_small_done(vq *q)
{
    const __m256i M = _mm256_castpd_si256(_mm256_set1_pd(0x1.8p52));
    __m256i *qi = (__m256i *)q;
    qi[0] = _mm256_sub_epi64(qi[0], M);
    qi[1] = _mm256_sub_epi64(qi[1], M);
}
#elif VL == 16 && defined(__AVX512DQ__)
/* AVX-512DQ converts float to int64 directly (vcvttps2qq), exact below 2^63. */
static inline void fix_trunc_add(vq *q, vf x)
{
    *q += __builtin_convertvector(x, vq);
}
#define FIX_SMALL 0
#else
#define fix_trunc_add fix_trunc_add_split
#define FIX_SMALL 0
#endif

#if !FIX_SMALL
/* Elsewhere the totals are int64 from the start. */
static inline void fix_small_init(vq *q)
{
    *q = (vq){0};
}
#define fix_add_small fix_trunc_add
static inline void fix_small_done(vq *q)
{
    (void)q;
}
#endif

/* One chunk's sums a (VL lanes) into the fixed-point sums q: x = a * scale_fix; a lane
 * with !(|x| <= limit_fix) (NaN included) adds 0 and counts in *nbad. */
static inline void fix_put(vq *q, vf a, float scale_fix, float limit_fix, int checked,
                           vi *nbad)
{
    vf x = a * scale_fix;
    if (checked) {
        const vi ok = (x <= limit_fix) & (x >= -limit_fix);   /* -1 or 0 */
        *nbad += ok + 1;
        x = (vf)((vi)x & ok);
    }
    fix_trunc_add(q, x);
}

/* The scalar twin of fix_put, for the columns past the last full vector. */
static inline int64_t fix_put1(int64_t q, float a, float scale_fix, float limit_fix,
                               int64_t *nbad)
{
    const float x = a * scale_fix;
    if (!(x <= limit_fix && x >= -limit_fix)) {
        ++*nbad;
        return q;
    }
    return q + (int64_t)x;
}

/* The end of the chunk that holds sample r, given the end r1 of the previous chunk
 * visited (0 at first; r >= r1): most often the next chunk, found without a division. */
static inline size_t next_chunk_end(size_t r, size_t r1, size_t chunk)
{
    return r < r1 + chunk ? r1 + chunk : (r / chunk + 1) * chunk;
}

/* One chunk's float sums for grad1_micro's tile: a[i][v] = the sum over the listed samples
 * from t on that lie before r1 (t < n, list[t] < r1; without a list, t itself) of
 * P[t MR + i] G[sample, v VL ..], in that order. Returns the first t past the chunk. Every
 * exact path sums a chunk here, so that they agree bit for bit. */
static inline __attribute__((always_inline)) size_t
grad1_chunk(const float *P, const uint32_t *list, size_t n, size_t t, size_t r1,
            const float *G, size_t ldg, int nv, vf a[MR][2])
{
    for (int i = 0; i < MR; i++)
        a[i][0] = a[i][1] = (vf){0};
    for (; t < n && (list ? list[t] : t) < r1; t++) {
        const float *g = G + (list ? list[t] : t) * ldg;
        const vf g0 = vload(g), g1 = nv > 1 ? vload(g + VL) : g0;
        for (int i = 0; i < MR; i++) {
            a[i][0] += P[t * MR + i] * g0;
            if (nv > 1)
                a[i][1] += P[t * MR + i] * g1;
        }
    }
    return t;
}

/* dW1 rows c0 .. c0 + MR (those <= d), nv VL columns: the sums over the listed samples
 * (over samples t < n when list is NULL), chunk by chunk (exact) or all at once (fast).
 * G: the dZ1 values of those columns, sample rows ldg floats apart; out_i / out_f: the
 * first output element, rows h apart. Returns the rejected count. */
static inline __attribute__((always_inline)) int64_t
grad1_micro(const float *P, const uint32_t *list, size_t n, const float *G, size_t ldg,
            int nv, size_t h, size_t chunk, const float *scale, size_t rows,
            const KernelsSink *sink, int checked, int small, int64_t *out_i, float *out_f)
{
    if (out_f) {
        vf a[MR][2];
        zero_tile(a);
#pragma GCC unroll 4
        for (size_t t = 0; t < n; t++) {
            const float *g = G + (list ? list[t] : t) * ldg;
            const vf g0 = vload(g), g1 = nv > 1 ? vload(g + VL) : g0;
            for (int i = 0; i < MR; i++) {
                a[i][0] += P[t * MR + i] * g0;
                if (nv > 1)
                    a[i][1] += P[t * MR + i] * g1;
            }
        }
        for (size_t i = 0; i < rows; i++)
            for (int v = 0; v < nv; v++)
                vstore(out_f + i * h + v * VL, a[i][v] * scale[i]);
        return 0;
    }
    const float limit_fix = sink_limit(sink) * FIX_SCALE;
    vq q[MR][2];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < 2; v++) {
            if (small)
                fix_small_init(&q[i][v]);
            else
                q[i][v] = (vq){0};
        }
    vi nbad[MR];   /* per row: the padding rows past feature d are not counted */
    for (int i = 0; i < MR; i++)
        nbad[i] = (vi){0};
    size_t t = 0, r1 = 0;
    while (t < n) {   /* chunk by chunk; a chunk without listed samples adds nothing */
        r1 = next_chunk_end(list ? list[t] : t, r1, chunk);
        vf a[MR][2];
        t = grad1_chunk(P, list, n, t, r1, G, ldg, nv, a);
        if (small)
            for (int i = 0; i < MR; i++)
                for (int v = 0; v < nv; v++)
                    fix_add_small(&q[i][v], a[i][v] * (scale[i] * FIX_SCALE));
        else
            for (int i = 0; i < MR; i++)
                for (int v = 0; v < nv; v++)
                    fix_put(&q[i][v], a[i][v], scale[i] * FIX_SCALE, limit_fix, checked,
                            &nbad[i]);
    }
    if (small)
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < nv; v++)
                fix_small_done(&q[i][v]);
    for (size_t i = 0; i < rows; i++)
        for (int v = 0; v < nv; v++)
            vstoreq(out_i + i * h + v * VL, q[i][v]);
    int64_t bad = 0;
    if (checked)
        for (size_t i = 0; i < rows; i++)
            for (int l = 0; l < VL; l++)
                bad += nbad[i][l];
    return bad;
}

/* Exact mode under a bound (KernelsSink.grad_bound), on a tile whose inputs carry the
 * scale s 2^bits (pack_feature_tiles): grad1_micro's chunk sums (the same terms in the
 * same order), each truncated to int32 and added to int32 totals, which the bound keeps
 * below 2^30 in magnitude with every value; stored as int64 in units of
 * 2^-KERNELS_FIX_BITS. One conversion and one addition per vector and chunk: on AVX2 a
 * fifth of fix_add_small's work. Output rows past `rows` are not written. */
static inline __attribute__((always_inline)) void
grad1_micro_i32(const float *P, const uint32_t *list, size_t n, const float *G, size_t ldg,
                int nv, size_t h, size_t chunk, int bits, size_t rows, int64_t *out_i,
                int32_t *out32)
{
    vi q[MR][2];
    for (int i = 0; i < MR; i++)
        q[i][0] = q[i][1] = (vi){0};
    size_t t = 0, r1 = 0;
    while (t < n) {   /* chunk by chunk; a chunk without listed samples adds nothing */
        r1 = next_chunk_end(list ? list[t] : t, r1, chunk);
        vf a[MR][2];
        t = grad1_chunk(P, list, n, t, r1, G, ldg, nv, a);
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < nv; v++)
                q[i][v] += __builtin_convertvector(a[i][v], vi);
    }
    for (size_t i = 0; i < rows; i++)
        for (int v = 0; v < nv; v++) {
            if (out32) {
                vstorei(out32 + i * h + v * VL, q[i][v]);
                continue;
            }
            const vq w = __builtin_convertvector(q[i][v], vq);
            vstoreq(out_i + i * h + v * VL, (vq)((vqu)w << (KERNELS_FIX_BITS - bits)));
        }
}

/* Largest chunk given to grad1_pair_tiny: its four float sums are four dependent chains
 * of multiply-adds, half the FMA rate of grad1_micro's twelve; that pays at small chunks
 * (one conversion per 4 or 8 terms) and loses at 16 and above (measured on Zen 3: exact
 * h = 128 batch 256 dense epoch 0.43-0.49 s without it, 0.54-0.65 s with it; batch 32
 * 0.52-0.55 s with it, 0.69-0.71 s without). Either path gives the same bits. */
#define TINY_MAX_CHUNK 8
#if VL == 8 && defined(__AVX2__)
#define FIX_TINY 1
/* Exact mode on AVX2 when every partial sum of an element's chunk values, times 2^40,
 * stays below 2^50 (`tiny` in kernels_grad_layer1): rows i0 and i0 + 1 of a feature tile,
 * nv VL columns, so that the chunk's float sums (four registers) and their running totals
 * in double (eight) all stay in registers across the chunks; grad1_micro's MR-row tile
 * keeps its int64 totals in memory, loaded and stored once per chunk, which at small
 * chunks costs more than the products. The float sums are grad1_micro's (the same terms
 * in the same order), scaled and truncated in float as in fix_add_small, widened to
 * double (exact) and added to totals that start at 1.5 * 2^52: every partial total is an
 * integer in [2^52, 2^53), where doubles are the integers, so every addition is exact and
 * the total's bits minus those of 1.5 * 2^52 are the int64 sum: the same bits as the
 * int64 path. Output rows past `rows` are not written. */
static inline __attribute__((always_inline)) void
grad1_pair_tiny(const float *P, const uint32_t *list, size_t n, const float *G, size_t ldg,
                int nv, size_t h, size_t chunk, const float *scale, size_t i0, size_t rows,
                int64_t *out_i)
{
    const __m256d M = _mm256_set1_pd(0x1.8p52);
    __m256d q[2][2][2];   /* [row][vector][half] */
    for (int i = 0; i < 2; i++)
        for (int v = 0; v < 2; v++)
            q[i][v][0] = q[i][v][1] = M;
    const float s0 = scale[i0] * FIX_SCALE, s1 = scale[i0 + 1] * FIX_SCALE;
    size_t t = 0, r1 = 0;
    while (t < n) {
        r1 = next_chunk_end(list ? list[t] : t, r1, chunk);
        vf a[2][2];
        zero_tile(a);
        for (; t < n && (list ? list[t] : t) < r1; t++) {
            const float *g = G + (list ? list[t] : t) * ldg;
            const vf g0 = vload(g), g1 = nv > 1 ? vload(g + VL) : g0;
            const float p0 = P[t * MR + i0], p1 = P[t * MR + i0 + 1];
            a[0][0] += p0 * g0;
            a[1][0] += p1 * g0;
            if (nv > 1) {
                a[0][1] += p0 * g1;
                a[1][1] += p1 * g1;
            }
        }
        for (int i = 0; i < 2; i++)
            for (int v = 0; v < nv; v++) {
                const __m256 x = (__m256)(a[i][v] * (i ? s1 : s0));
                const __m256 tr = _mm256_round_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
                q[i][v][0] = _mm256_add_pd(q[i][v][0], _mm256_cvtps_pd(_mm256_castps256_ps128(tr)));
                q[i][v][1] = _mm256_add_pd(q[i][v][1], _mm256_cvtps_pd(_mm256_extractf128_ps(tr, 1)));
            }
    }
    const __m256i Mi = _mm256_castpd_si256(M);
    for (size_t i = 0; i < 2 && i0 + i < rows; i++)
        for (int v = 0; v < nv; v++)
            for (int half = 0; half < 2; half++) {
                const __m256i r = _mm256_sub_epi64(_mm256_castpd_si256(q[i][v][half]), Mi);
                memcpy(out_i + (i0 + i) * h + v * VL + 4 * half, &r, sizeof r);
            }
}
#else
#define FIX_TINY 0
#endif

/* Column col (dZ1's, rows h apart) of row i of a feature tile: the chunk's sum over the
 * listed samples from t on (t < n) that lie in the chunk of list[t], in order; returns the
 * first t past the chunk. */
static inline size_t column_chunk(const float *P, const uint32_t *list, size_t n, size_t t,
                                  size_t i, const float *col, size_t h, size_t chunk, float *a)
{
    const size_t r1 = (list[t] / chunk + 1) * chunk;
    float s = 0;
    for (; t < n && list[t] < r1; t++)
        s = muladd(P[t * MR + i], col[(size_t)list[t] * h], s);
    *a = s;
    return t;
}

/* The columns j0 .. j1 (fewer than VL) of the same rows, one column at a time. */
static int64_t grad1_columns(const float *P, const uint32_t *list, size_t n, size_t h,
                             size_t j0, size_t j1, const float *dZ1, size_t chunk,
                             const float *scale, size_t rows, const KernelsSink *sink,
                             int64_t *out_i, float *out_f)
{
    const float limit_fix = sink_limit(sink) * FIX_SCALE;
    int64_t bad = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = j0; j < j1; j++) {
            if (out_f) {
                float a = 0;
                for (size_t t = 0; t < n; t++)
                    a = muladd(P[t * MR + i], dZ1[(size_t)list[t] * h + j], a);
                out_f[i * h + j] = a * scale[i];
                continue;
            }
            int64_t q = 0;
            for (size_t t = 0; t < n;) {
                float a;
                t = column_chunk(P, list, n, t, i, dZ1 + j, h, chunk, &a);
                q = fix_put1(q, a, scale[i] * FIX_SCALE, limit_fix, &bad);
            }
            out_i[i * h + j] = q;
        }
    return bad;
}

/* grad1_columns under a bound: grad1_micro_i32's values, one column at a time. */
static void grad1_columns_i32(const float *P, const uint32_t *list, size_t n, size_t h,
                              size_t j0, size_t j1, const float *dZ1, size_t chunk, int bits,
                              size_t rows, int64_t *out_i, int32_t *out32)
{
    for (size_t i = 0; i < rows; i++)
        for (size_t j = j0; j < j1; j++) {
            int32_t q = 0;
            for (size_t t = 0; t < n;) {
                float a;
                t = column_chunk(P, list, n, t, i, dZ1 + j, h, chunk, &a);
                q += (int32_t)a;   /* |a| and the total < 2^31 (the row bounds' check) */
            }
            if (out32)
                out32[i * h + j] = q;
            else
                out_i[i * h + j] = (int64_t)((uint64_t)(int64_t)q << (KERNELS_FIX_BITS - bits));
        }
}

/* Columns j0 .. j1 (one column group) of a feature tile's rows with grad1_micro_i32: the
 * full NR blocks from dZ1's packed panels at Dp, then a VL block and the last columns
 * from dZ1 itself (grad1_columns_i32: the same values, one at a time). Out of line, so that
 * the fast and 40-bit paths' loops in kernels_grad_layer1 stay as they were compiled
 * before (inlined there, dW1's fast mode ran 4-8% slower on Zen 3). */
static __attribute__((noinline)) void
grad1_task_i32(const float *Pn, const uint32_t *list, size_t n, size_t m, const float *Dp,
               const float *dZ1, size_t h, size_t j0, size_t j1, size_t chunk, int bits,
               size_t rows, int64_t *oi, int32_t *o32)
{
    size_t j = j0;
    for (; j + NR <= j1; j += NR) {
        const float *Gb = Dp + j / NR * m * NR;   /* (m, NR) */
        int64_t *oij = o32 ? NULL : oi + j;
        int32_t *o32j = o32 ? o32 + j : NULL;
        if (n == m)   /* every sample listed: the list is 0, 1, ..., m - 1 */
            grad1_micro_i32(Pn, NULL, n, Gb, NR, 2, h, chunk, bits, rows, oij, o32j);
        else
            grad1_micro_i32(Pn, list, n, Gb, NR, 2, h, chunk, bits, rows, oij, o32j);
    }
    for (; j + VL <= j1; j += VL)
        grad1_micro_i32(Pn, list, n, dZ1 + j, h, 1, h, chunk, bits, rows, o32 ? NULL : oi + j,
                        o32 ? o32 + j : NULL);
    if (j < j1)
        grad1_columns_i32(Pn, list, n, h, j, j1, dZ1, chunk, bits, rows, oi, o32);
}

void kernels_grad_layer1(const KernelsInput *X, const uint32_t *idx, size_t m, size_t d,
                         size_t h, const float *dZ1, const KernelsScratch *scratch,
                         const KernelsSink *sink)
{
    OWN_TEAM(kernels_grad_layer1(X, idx, m, d, h, dZ1, scratch, sink));
    const size_t chunk = sink_chunk(sink, m);
    int64_t nbad = 0;   /* this thread's */
    /* With a bound on the chunk sums (pixels: x / 255 <= 1; float features: f32_max):
     * no range test where it cannot fail, and the short conversion (totals in double)
     * where the sum of an element's |chunk sums| times 2^40 stays below 2^50. Either way
     * the result is the same. */
    double total = INFINITY;   /* a bound on the sum of an element's |chunk sums| */
    double bound = INFINITY;
    const float xmax = input_bound(X);
    if (sink->out_i && sink->row_max && xmax > 0) {
        bound = chunk_sum_bound(sink->row_max, m, chunk, &total) * xmax;
        total *= xmax;   /* (each product's double rounding is within the bound's slack) */
    }
    /* Under the caller's bound (grad_bound): int32 totals at `bits` fractional bits. The
     * row bounds, where given, check the promise on this rank's chunks: a NaN or infinity
     * (no bound) takes the tested path below, which counts it; a finite sum too large for
     * int32 means the promise was broken and counts as a rejected value. With out_i32 the
     * caller expects the int32 layout whatever happens: either case counts one rejected
     * value and stores zeros there (`void32`), converting nothing. */
    int bits = grad1_bits(X, sink), void32 = 0;
    if (bits && sink->row_max && !(total * ldexp(1.0, bits) < 0x1p31)) {
        nbad += omp_get_thread_num() == 0 && (total < INFINITY || sink->out_i32);   /* once */
        if (sink->out_i32)
            void32 = 1;
        else
            bits = 0;
    }
    const int checked = !(bound <= sink_limit(sink)), small = !checked && total < 0x1p10;
    const int tiny = FIX_TINY && small && chunk <= TINY_MAX_CHUNK;
    (void)tiny;   /* unused without FIX_TINY */
    const size_t P = kernels_feature_tiles(d), G = (h + CG - 1) / CG;
    float *Dp = scratch->panel, *ip = Dp + weight_panel_floats(m, d, h);
    /* This thread's tasks (tile by tile: task p G + g), a contiguous share, and the
     * feature tiles whose first task is among them, which it packs itself: it then
     * computes them from its own cache, not from the cache of the thread that happened
     * to pack them (two threads, MNIST, batch 32 to 256: dW1 1-12% faster). dZ1's
     * panels, which every thread reads, are shared out statically. */
    const size_t nth = (size_t)omp_get_num_threads(), me = (size_t)omp_get_thread_num();
    const size_t lo = P * G * me / nth, hi = P * G * (me + 1) / nth;
    const size_t pa = (lo + G - 1) / G, pb = (hi + G - 1) / G;
    for (size_t p = pa; p < pb; p += FEATURE_TILES)
        pack_feature_tiles(X, idx, m, d, p, min_size(pb, p + FEATURE_TILES), bits, ip,
                           scratch->list);
#pragma omp for schedule(static)
    for (size_t b = 0; b < h / NR; b++)
        pack_weight_panel(dZ1, m, h, b, Dp + b * m * NR);
    /* Tasks feature tile by feature tile: a thread's consecutive tasks reuse the same
     * packed tile (m x MR) from its L1 cache, and read dZ1's panels (m x h, all of them)
     * from L2. Column group by column group instead, each packed tile came back from L3
     * once per group: measured on Zen 3, this order computes dW1 5-15% faster with one
     * thread and 10-30% with two (docs/performance.md). Rows 0..d-1 of the output are
     * dW1, row d db1. */
    for (size_t task = lo; task < hi; task++) {
        const size_t g = task % G, p = task / G, c0 = p * MR;
        const size_t rows = min_size(MR, d + 1 - c0);
        const uint32_t *list = scratch->list + p * (m + 1) + 1;
        const size_t n = list[-1];
        if (sink->written) {   /* a tile without samples: zero rows, left unwritten */
            if (g == 0)
                sink->written[p] = n > 0;
            if (n == 0)
                continue;
        }
        const float *Pn = ip + p * feature_tile_floats(m);
        float scale[MR];
        for (size_t i = 0; i < MR; i++)
            scale[i] = c0 + i < d ? input_scale(X) : 1.0f;
        int64_t *oi = sink->out_i ? sink->out_i + c0 * h : NULL;
        float *of = sink->out_f ? sink->out_f + c0 * h : NULL;
        size_t j = g * CG;
        const size_t j1 = min_size(h, j + CG);
        if (void32) {
            for (size_t i = 0; i < rows; i++)
                memset(sink->out_i32 + (c0 + i) * h + j, 0, (j1 - j) * sizeof(int32_t));
            continue;
        }
        if (bits) {
            grad1_task_i32(Pn, list, n, m, Dp, dZ1, h, j, j1, chunk, bits, rows, oi,
                           sink->out_i32 ? sink->out_i32 + c0 * h : NULL);
            continue;
        }
        for (; j + NR <= j1; j += NR) {   /* from the packed panel of dZ1 */
            const float *Gb = Dp + j / NR * m * NR;   /* (m, NR) */
#if FIX_TINY
            if (tiny) {
                for (size_t i0 = 0; i0 < rows; i0 += 2) {
                    if (n == m)
                        grad1_pair_tiny(Pn, NULL, n, Gb, NR, 2, h, chunk, scale, i0, rows,
                                        oi + j);
                    else
                        grad1_pair_tiny(Pn, list, n, Gb, NR, 2, h, chunk, scale, i0, rows,
                                        oi + j);
                }
                continue;
            }
#endif
            if (n == m)   /* every sample listed: the list is 0, 1, ..., m - 1 */
                nbad += grad1_micro(Pn, NULL, n, Gb, NR, 2, h, chunk, scale, rows, sink,
                                    checked, small, oi ? oi + j : NULL, of ? of + j : NULL);
            else
                nbad += grad1_micro(Pn, list, n, Gb, NR, 2, h, chunk, scale, rows, sink,
                                    checked, small, oi ? oi + j : NULL, of ? of + j : NULL);
        }
        for (; j + VL <= j1; j += VL) {
#if FIX_TINY
            if (tiny) {
                for (size_t i0 = 0; i0 < rows; i0 += 2)
                    grad1_pair_tiny(Pn, list, n, dZ1 + j, h, 1, h, chunk, scale, i0, rows,
                                    oi + j);
                continue;
            }
#endif
            nbad += grad1_micro(Pn, list, n, dZ1 + j, h, 1, h, chunk, scale, rows, sink,
                                checked, small, oi ? oi + j : NULL, of ? of + j : NULL);
        }
        if (j < j1)
            nbad += grad1_columns(Pn, list, n, h, j, j1, dZ1, chunk, scale, rows, sink, oi, of);
    }
    add_bad(sink->bad, nbad);
#pragma omp barrier
}
/* dW2 elements (hidden i0 .. i0 + nv VL) x (classes c0 .. c0 + rc, rc <= MR): the grad1_micro
 * tile with the classes as its rows (dZ2 columns broadcast, A1 rows loaded), every sample
 * in order, chunk by chunk (exact) or all at once (fast). The result goes to dW2 (h, k),
 * where a class is a column. Returns the rejected count. */
static inline __attribute__((always_inline)) int64_t
grad2_micro(const float *A1, const float *dZ2, size_t m, size_t h, size_t k, size_t c0,
            size_t rc, size_t i0, int nv, size_t chunk, const KernelsSink *sink)
{
    const float *zr[MR];   /* class columns of dZ2; rows past rc repeat the last class */
    for (size_t i = 0; i < MR; i++)
        zr[i] = dZ2 + c0 + (i < rc ? i : rc - 1);
    const float limit_fix = sink_limit(sink) * FIX_SCALE;
    float af[MR][NR] = {{0}};   /* (set by the loop below: m >= 1; zeroed for the compiler) */
    int64_t ai[MR][NR];
    vq q[MR][2];
    zero_tile(q);
    vi nbad[MR];
    for (int i = 0; i < MR; i++)
        nbad[i] = (vi){0};
    for (size_t r0 = 0; r0 < m; r0 += chunk) {
        const size_t r1 = min_size(m, r0 + chunk);
        vf a[MR][2];
        zero_tile(a);
        for (size_t r = r0; r < r1; r++) {
            const float *g = A1 + r * h + i0;
            const vf g0 = vload(g), g1 = nv > 1 ? vload(g + VL) : g0;
            for (int i = 0; i < MR; i++) {
                a[i][0] += zr[i][r * k] * g0;
                if (nv > 1)
                    a[i][1] += zr[i][r * k] * g1;
            }
        }
        if (sink->out_f) {   /* one chunk: all m rows */
            for (int i = 0; i < MR; i++)
                for (int v = 0; v < nv; v++)
                    vstore(af[i] + v * VL, a[i][v]);
            break;
        }
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < nv; v++)
                fix_put(&q[i][v], a[i][v], FIX_SCALE, limit_fix, 1, &nbad[i]);
    }
    int64_t bad = 0;
    if (sink->out_i)
        for (size_t i = 0; i < rc; i++) {
            memcpy(ai[i], q[i], (size_t)nv * sizeof q[i][0]);
            for (int l = 0; l < VL; l++)
                bad += nbad[i][l];
        }
    for (size_t i = 0; i < rc; i++)
        for (size_t l = 0; l < (size_t)nv * VL; l++) {
            if (sink->out_f)
                sink->out_f[(i0 + l) * k + c0 + i] = af[i][l];
            else
                sink->out_i[(i0 + l) * k + c0 + i] = ai[i][l];
        }
    return bad;
}

/* The same for single hidden units i0 .. i1 (the columns past the last vector), and for
 * db2 (a = 1, i0 = h): plain loops, one element at a time. */
static int64_t grad2_columns(const float *A1, const float *dZ2, size_t m, size_t h, size_t k,
                             size_t c0, size_t rc, size_t i0, size_t i1, size_t chunk,
                             const KernelsSink *sink)
{
    const float limit_fix = sink_limit(sink) * FIX_SCALE;
    int64_t bad = 0;
    for (size_t c = c0; c < c0 + rc; c++)
        for (size_t i = i0; i < i1; i++) {
            int64_t q = 0;
            for (size_t r0 = 0; r0 < m; r0 += chunk) {
                const size_t r1 = min_size(m, r0 + chunk);
                float a = 0;
                if (i < h)
                    for (size_t r = r0; r < r1; r++)
                        a = muladd(dZ2[r * k + c], A1[r * h + i], a);
                else
                    for (size_t r = r0; r < r1; r++)
                        a += dZ2[r * k + c];
                if (sink->out_f) {
                    sink->out_f[i * k + c] = a;
                    break;
                }
                q = fix_put1(q, a, FIX_SCALE, limit_fix, &bad);
            }
            if (sink->out_i)
                sink->out_i[i * k + c] = q;
        }
    return bad;
}

void kernels_grad_layer2(const float *A1, size_t m, size_t h, size_t k, const float *dZ2,
                         const KernelsSink *sink)
{
    OWN_TEAM(kernels_grad_layer2(A1, m, h, k, dZ2, sink));
    const size_t chunk = sink_chunk(sink, m);
    const size_t CT = (k + MR - 1) / MR, HB = (h + NR - 1) / NR;
    int64_t nbad = 0;   /* this thread's */
    /* One task per tile of MR classes and NR hidden units, and one for db2 (row h). */
#pragma omp for schedule(static)
    for (size_t task = 0; task <= CT * HB; task++) {
        if (task == CT * HB) {
            nbad += grad2_columns(A1, dZ2, m, h, k, 0, k, h, h + 1, chunk, sink);
            continue;
        }
        const size_t c0 = task / HB * MR, rc = min_size(MR, k - c0);
        size_t i = task % HB * NR;
        const size_t i1 = min_size(h, i + NR);
        if (i + NR <= i1) {
            nbad += grad2_micro(A1, dZ2, m, h, k, c0, rc, i, 2, chunk, sink);
            i += NR;
        }
        if (i + VL <= i1) {
            nbad += grad2_micro(A1, dZ2, m, h, k, c0, rc, i, 1, chunk, sink);
            i += VL;
        }
        if (i < i1)
            nbad += grad2_columns(A1, dZ2, m, h, k, c0, rc, i, i1, chunk, sink);
    }
    add_bad(sink->bad, nbad);
}

void *kernels_calloc(size_t n, size_t size)
{
    if (size && n > (SIZE_MAX - 63) / size)
        return NULL;
    const size_t want = n * size > 0 ? n * size : 1;
    const size_t bytes = (want + 63) / 64 * 64;   /* aligned_alloc: a multiple of 64 */
    void *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

/* Exponent all ones: infinity or NaN (a test that vectorises). */
static inline int nonfinite_bits(const float *x)
{
    uint32_t u;
    memcpy(&u, x, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

/* Plain SGD passes over the blocks of SKIP_BLOCK gradient elements whose bits are all zero
 * (+0): theta - lr (+0) is theta, bit for bit, whatever theta is (-0 included), so the
 * update reads and writes theta only where it changes. The rows of dW1 for the pixels that
 * no sample of the batch lights are such blocks: on MNIST 42% of W1 at batch 32, 29% at
 * batch 256, and an update per 32 samples costs as much as a kernel's share. */
#define SKIP_BLOCK 16

/* Whether the SKIP_BLOCK 32-bit patterns at g are all zero (+0 for floats). */
static inline int zero_block(const void *g)
{
#if defined(__AVX2__)
    const __m256i a = _mm256_loadu_si256((const __m256i *)g);
    const __m256i b = _mm256_loadu_si256((const __m256i *)g + 1);
    return _mm256_testz_si256(_mm256_or_si256(a, b), _mm256_or_si256(a, b));
#else
    uint32_t u[SKIP_BLOCK], any = 0;
    memcpy(u, g, sizeof u);
    for (int l = 0; l < SKIP_BLOCK; l++)
        any |= u[l];
    return any == 0;
#endif
}

/* This thread's share [*lo, *hi) of `count` blocks, contiguous, as even as it goes. */
static inline void thread_share(size_t count, size_t *lo, size_t *hi)
{
    const size_t nth = (size_t)omp_get_num_threads(), me = (size_t)omp_get_thread_num();
    *lo = count * me / nth, *hi = count * (me + 1) / nth;
}

/* The next stretch of blocks, from block *b on (b < nb), whose update must be done: it
 * starts at the first block that is not all zero and ends before the next that is (the
 * last block, which may be partial, counts as not zero). Returns 0 when none is left. */
static inline int next_stretch(const void *g, size_t n, size_t *b, size_t nb, size_t *i0,
                               size_t *i1)
{
    const uint32_t *u = g;
    while (*b < nb && (*b + 1) * SKIP_BLOCK <= n && zero_block(u + *b * SKIP_BLOCK))
        ++*b;
    if (*b == nb)
        return 0;
    size_t e = *b + 1;
    while (e < nb && ((e + 1) * SKIP_BLOCK > n || !zero_block(u + e * SKIP_BLOCK)))
        e++;
    *i0 = *b * SKIP_BLOCK;
    *i1 = min_size(n, e * SKIP_BLOCK);
    *b = e;
    return 1;
}

int64_t kernels_sgd_f32(float *theta, const float *g, size_t n, float lr)
{
    /* Whether any g[i] is NaN or infinite, as an OR in the update's pass; the count only
     * then (the error path). Counting in the pass widened every element's test to int64:
     * measured on Zen 5, half of the update's time. */
    unsigned any = 0;
#pragma omp parallel reduction(| : any)
    {
        size_t b, nb, i0, i1;
        thread_share((n + SKIP_BLOCK - 1) / SKIP_BLOCK, &b, &nb);
        while (next_stretch(g, n, &b, nb, &i0, &i1))
            for (size_t i = i0; i < i1; i++) {
                theta[i] -= lr * g[i];
                any |= (unsigned)nonfinite_bits(g + i);
            }
    }
    return any ? kernels_count_nonfinite(g, n) : 0;
}

typedef int64_t v4q __attribute__((vector_size(32)));
typedef uint64_t v4qu __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

/* theta[i] -= lr * (float)(g[i] * 2^-40), four at a time: x86 before AVX-512 has no
 * int64 -> double vector conversion, so below 2^51 in magnitude (every gradient of a run
 * that has not diverged) g is read as the double 1.5 * 2^52 + g (mantissa bits plus g)
 * minus 1.5 * 2^52, which is exact; a block with a larger value is converted one by one.
 * Either way (double)g is exact below 2^53, so the result is the plain loop's. */
/* theta - lr f, in one rounding where the target has FMA (as AVX2's _mm_fnmadd_ps below),
 * spelt out so that it does not depend on the compiler contracting it (-O0, DEBUG=1). */
static inline float update_one(float theta, float lr, float f)
{
#if defined(__FMA__)
    return fmaf(-lr, f, theta);
#else
    return theta - lr * f;
#endif
}

void kernels_sgd_fixed(float *theta, const int64_t *g, size_t n, float lr)
{
    OWN_TEAM(kernels_sgd_fixed(theta, g, n, lr));
    const double M = 0x1.8p52;
    int64_t mbits;
    memcpy(&mbits, &M, sizeof mbits);
#if defined(__AVX2__)
    /* Sixteen at a time with one range test for all (the generic vector code below tests
     * and branches per four, lane by lane: four times the time of kernels_sgd_f32). The
     * double is (1.5 * 2^52 + g) 2^-40 - 1.5 * 2^-12 in one FMA: both terms are exact
     * (power-of-two scaling), so the result is g 2^-40 exactly, as below; the update is
     * the same fused multiply-add as the contracted `t -= lr * f`. */
    const __m256i Mi = _mm256_set1_epi64x(mbits), bias = _mm256_set1_epi64x((int64_t)1 << 51);
    const __m256d U = _mm256_set1_pd(FIX_UNSCALE), MU = _mm256_set1_pd(0x1.8p52 * FIX_UNSCALE);
    const __m128 lrv = _mm_set1_ps(lr);
#pragma omp for schedule(static)
    for (size_t b = 0; b < (n + 15) / 16; b++) {
        const size_t i = 16 * b;
        if (i + 16 <= n) {
            __m256i q[4], over = _mm256_setzero_si256();
            for (int k = 0; k < 4; k++) {
                q[k] = _mm256_loadu_si256((const __m256i *)(g + i + 4 * k));
                over = _mm256_or_si256(over,
                                       _mm256_srli_epi64(_mm256_add_epi64(q[k], bias), 52));
            }
            if (_mm256_testz_si256(over, over)) {   /* every |g| < 2^51 */
                for (int k = 0; k < 4; k++) {
                    const __m256d x =
                        _mm256_fmsub_pd(_mm256_castsi256_pd(_mm256_add_epi64(q[k], Mi)), U, MU);
                    const __m128 f = _mm256_cvtpd_ps(x);
                    float *t = theta + i + 4 * k;
                    _mm_storeu_ps(t, _mm_fnmadd_ps(lrv, f, _mm_loadu_ps(t)));
                }
                continue;
            }
        }
        for (size_t k = i; k < n && k < i + 16; k++)
            theta[k] = update_one(theta[k], lr, (float)((double)g[k] * FIX_UNSCALE));
    }
#else
#pragma omp for schedule(static)
    for (size_t b = 0; b < (n + 3) / 4; b++) {
        const size_t i = 4 * b;
        v4q q;
        if (i + 4 <= n) {
            memcpy(&q, g + i, sizeof q);
            const v4q small = (v4qu)(q + ((int64_t)1 << 51)) < ((uint64_t)1 << 52);
            if (small[0] & small[1] & small[2] & small[3]) {
                v4d x = (v4d)(q + mbits) - M;
                const v4f f = __builtin_convertvector(x * FIX_UNSCALE, v4f);
                v4f t;
                memcpy(&t, theta + i, sizeof t);
                t -= lr * f;
                memcpy(theta + i, &t, sizeof t);
                continue;
            }
        }
        for (size_t k = i; k < n && k < i + 4; k++)
            theta[k] -= lr * (float)((double)g[k] * FIX_UNSCALE);
    }
#endif
}

void kernels_fixed_to_f32(float *dst, const int64_t *g, size_t n)
{
    /* The trick of kernels_sgd_fixed, four at a time: for |g| < 2^51 the bits of
     * 1.5 * 2^52 + g are that double exactly, and subtracting 1.5 * 2^52 leaves g. */
    const double M = 0x1.8p52;
    int64_t mbits;
    memcpy(&mbits, &M, sizeof mbits);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v4q q;
        memcpy(&q, g + i, sizeof q);
        const v4q small = (v4qu)(q + ((int64_t)1 << 51)) < ((uint64_t)1 << 52);
        if (!(small[0] & small[1] & small[2] & small[3]))
            break;
        const v4d x = (v4d)(q + mbits) - M;
        const v4f f = __builtin_convertvector(x * FIX_UNSCALE, v4f);
        memcpy(dst + i, &f, sizeof f);
    }
    for (; i < n; i++)   /* the tail, and everything from the first large value on */
        dst[i] = (float)((double)g[i] * FIX_UNSCALE);
}

/* (float)g 2^-bits is the float of kernels_sgd_fixed for g 2^(40 - bits): float rounds
 * the same 24 leading bits either way, and scaling by a power of two is exact (every
 * value here is a normal float). The update is update_one's, as there. */
void kernels_sgd_fixed32(float *theta, const int32_t *g, size_t n, float lr, int bits)
{
    OWN_TEAM(kernels_sgd_fixed32(theta, g, n, lr, bits));
    const float u = ldexpf(1.0f, -bits);
    size_t b, nb, i0, i1;
    thread_share((n + SKIP_BLOCK - 1) / SKIP_BLOCK, &b, &nb);
    while (next_stretch(g, n, &b, nb, &i0, &i1))
        for (size_t i = i0; i < i1; i++)
            theta[i] = update_one(theta[i], lr, (float)g[i] * u);
#pragma omp barrier
}

void kernels_fixed32_to_f32(float *dst, const int32_t *g, size_t n, int bits)
{
    const float u = ldexpf(1.0f, -bits);
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)g[i] * u;
}

float kernels_input_max(const float *x, size_t n, size_t d)
{
    float mx = 0;
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(max : mx) reduction(+ : bad)
    for (size_t i = 0; i < n * d; i++) {
        const float a = fabsf(x[i]);
        mx = a > mx ? a : mx;
        bad += !(a <= FLT_MAX);   /* NaN or infinity */
    }
    return bad ? INFINITY : mx;
}

int64_t kernels_count_nonfinite(const float *x, size_t n)
{
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (size_t i = 0; i < n; i++)
        bad += nonfinite_bits(x + i);
    return bad;
}
