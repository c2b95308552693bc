/* kernels: see include/kernels.h for the contract (fixed summation order per output
 * element, threads over rows, fixed point for exact mode).
 *
 * Column blocking: an output row is processed KB columns at a time with the running sums
 * in a small local array, which the compiler keeps in vector registers. Which columns fall
 * in a full block or in the last, partial one depends only on the row length, so the code
 * path (and the rounding) for every element is fixed by the shapes alone.
 *
 * Teams: a kernel called outside any parallel region opens one (OWN_TEAM below) and
 * calls itself inside it; inside a region, its loops are orphaned worksharing constructs
 * that share the work among the caller's team. Rejected-value counts are per thread,
 * added to *sink->bad atomically (integers: the total does not depend on the order). */
#include "kernels.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define KB 64                         /* columns per register block */
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

/* A register block of KB = 64 floats as four 16-lane vectors (GCC/Clang vector
 * extensions: AVX-512 registers with -march=native, four SSE registers each on a generic
 * x86-64 target). Every lane does the same operations in the same order as a scalar loop
 * would, so the vector width never changes a result's bits. */
typedef float vf16 __attribute__((vector_size(64)));
typedef float vf16u __attribute__((vector_size(64), aligned(4), may_alias));   /* unaligned */
typedef int32_t vm16 __attribute__((vector_size(64)));    /* 16 int32 lanes, lane masks */
typedef struct {
    vf16 v[4];
} Acc64;

_Static_assert(KB == 64, "Acc64 holds exactly one register block");

static inline Acc64 acc64_load(const float *p)
{
    Acc64 a;
    memcpy(&a, p, sizeof a);   /* unaligned load */
    return a;
}

static inline void acc64_store(float *p, Acc64 a)
{
    memcpy(p, &a, sizeof a);
}

/* a += x * w[0..64) */
static inline Acc64 acc64_axpy(Acc64 a, float x, const float *w)
{
    for (int i = 0; i < 4; i++)
        a.v[i] += x * *(const vf16u *)(w + 16 * i);
    return a;
}

/* The nonzero pixels of one sample, in ascending order, as (position, value) lists.
 * Eight pixels are tested at once: MNIST-like images are mostly background, so most
 * groups are skipped with one well-predicted branch. Returns the count. */
static size_t compact_pixels(const uint8_t *x, size_t d, uint32_t *pos, uint8_t *val)
{
    size_t n = 0, c = 0;
    for (; c + 8 <= d; c += 8) {
        uint64_t word;
        memcpy(&word, x + c, 8);
        if (!word)
            continue;
        for (size_t k = c; k < c + 8; k++) {   /* branch-free within the group */
            pos[n] = (uint32_t)k;
            val[n] = x[k];
            n += x[k] != 0;
        }
    }
    for (; c < d; c++) {
        pos[n] = (uint32_t)c;
        val[n] = x[c];
        n += x[c] != 0;
    }
    return n;
}

void kernels_hidden_forward(const uint8_t *X, const uint32_t *idx, size_t m, size_t d,
                            size_t h, const float *W1, const float *b1, float *A1,
                            uint32_t *sp_pos, uint8_t *sp_val, uint32_t *sp_len)
{
    OWN_TEAM(kernels_hidden_forward(X, idx, m, d, h, W1, b1, A1, sp_pos, sp_val, sp_len));
#pragma omp for schedule(static)
    for (size_t r = 0; r < m; r++) {
        /* Samples are drawn at random from the whole data set: fetch the next one's
         * pixels while this one is computed, instead of stalling on memory at its start. */
        if (r + 1 < m)
            for (size_t c = 0; c < d; c += 64)
                __builtin_prefetch(X + (size_t)idx[r + 1] * d + c);
        uint32_t *pos = sp_pos + r * d;   /* (d) */
        uint8_t *val = sp_val + r * d;    /* (d) */
        const size_t nnz = compact_pixels(X + (size_t)idx[r] * d, d, pos, val);
        sp_len[r] = (uint32_t)nnz;
        float *a = A1 + r * h;            /* (h) */
        size_t j0 = 0;
        /* Two register blocks at once where the row allows: eight independent FMA chains
         * instead of four, enough to hide the FMA latency. Each element's sum is the same
         * sequence of operations in every path. */
        for (; j0 + 2 * KB <= h; j0 += 2 * KB) {
            Acc64 u, v;
            memset(&u, 0, sizeof u);
            memset(&v, 0, sizeof v);
            for (size_t t = 0; t < nnz; t++) {
                const float *w = W1 + (size_t)pos[t] * h + j0;
                u = acc64_axpy(u, (float)val[t], w);
                v = acc64_axpy(v, (float)val[t], w + KB);
            }
            float acc[2 * KB];
            acc64_store(acc, u);
            acc64_store(acc + KB, v);
            for (size_t j = 0; j < 2 * KB; j++) {
                float z = b1[j0 + j] + PIXEL_SCALE * acc[j];
                a[j0 + j] = 1.0f / (1.0f + expf(-z));
            }
        }
        for (; j0 < h; j0 += KB) {
            size_t bw = h - j0 < KB ? h - j0 : KB;
            float acc[KB] = {0};
            if (bw == KB) {
                Acc64 v = acc64_load(acc);
                for (size_t t = 0; t < nnz; t++)
                    v = acc64_axpy(v, (float)val[t], W1 + (size_t)pos[t] * h + j0);
                acc64_store(acc, v);
            } else {
                for (size_t t = 0; t < nnz; t++) {
                    const float xv = val[t], *w = W1 + (size_t)pos[t] * h + j0;
                    for (size_t j = 0; j < bw; j++)
                        acc[j] += xv * w[j];
                }
            }
            for (size_t j = 0; j < bw; j++) {
                float z = b1[j0 + j] + PIXEL_SCALE * acc[j];
                a[j0 + j] = 1.0f / (1.0f + expf(-z));
            }
        }
    }
}

/* sum_i a[i] * w[i] for i < n in a fixed order: 16 running lane sums over the full
 * 16-blocks (vectorised), added lane 0 to 15, then the tail in order. */
static inline float dot_fixed(const float *a, const float *w, size_t n)
{
    vf16 acc = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        acc += *(const vf16u *)(a + i) * *(const vf16u *)(w + i);
    float s = 0;
    for (int l = 0; l < 16; l++)
        s += acc[l];
    for (; i < n; i++)
        s += a[i] * w[i];
    return s;
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
            /* dZ1[i] = (sum_j dZ2[j] W2[i,j]) * a (1 - a), 16 hidden units at a time */
            /* and the row's largest |dZ1|, as the largest bit pattern with the sign cleared:
             * for such patterns integer order is float order, with NaN above infinity. */
            float *g1 = dZ1 + r * h;         /* (h) */
            vm16 top = {0};
            size_t i0 = 0;
            for (; i0 + 16 <= h; i0 += 16) {
                vf16 da = {0};
                for (size_t j = 0; j < k; j++)
                    da += g2[j] * *(const vf16u *)(W2t + j * h + i0);
                const vf16 av = *(const vf16u *)(a + i0);
                const vf16 g = da * av * (1.0f - av);
                *(vf16u *)(g1 + i0) = g;
                const vm16 bits = (vm16)g & 0x7fffffff;
                const vm16 keep = top > bits;   /* -1 or 0 per lane */
                top = (top & keep) | (bits & ~keep);
            }
            int32_t top1 = 0;
            for (int l = 0; l < 16; l++)
                top1 = top1 > top[l] ? top1 : top[l];
            for (size_t i = i0; i < h; i++) {
                float da = 0;
                for (size_t j = 0; j < k; j++)
                    da += g2[j] * W2t[j * h + i];
                g1[i] = da * a[i] * (1.0f - a[i]);
                int32_t bits;
                memcpy(&bits, &g1[i], sizeof bits);
                bits &= 0x7fffffff;
                top1 = top1 > bits ? top1 : bits;
            }
            if (dZ1_max)
                memcpy(&dZ1_max[r], &top1, sizeof top1);
        }
    }
}

/* The first k with p[k] >= key in the ascending p[0..n), or n; the steps select with a
 * conditional move instead of a branch. */
static inline size_t lower_bound(const uint32_t *p, size_t n, size_t key)
{
    if (n == 0)
        return 0;
    const uint32_t *base = p;
    while (n > 1) {
        const size_t half = n / 2;
        base = base[half] < key ? base + half : base;
        n -= half;
    }
    return (size_t)(base - p) + (*base < key);
}

void kernels_gather_pixels(const uint32_t *sp_pos, const uint8_t *sp_val,
                           const uint32_t *sp_len, size_t m, size_t d, uint32_t *pos,
                           uint8_t *val, uint32_t *len)
{
    OWN_TEAM(kernels_gather_pixels(sp_pos, sp_val, sp_len, m, d, pos, val, len));
    {
        /* Each thread owns a contiguous range of pixels and scans every sample's list in
         * sample order, so each pixel's list comes out in ascending sample order. */
        const size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
        const size_t c0 = d * t / nt, c1 = d * (t + 1) / nt;
        for (size_t c = c0; c < c1; c++)
            len[c] = 0;
        /* A sample's list is sorted by pixel, so this thread's pixels are one run of it,
         * found by binary search: no per-entry test (and misprediction) on pixels that
         * belong to other threads. */
        for (size_t r = 0; r < m; r++) {
            const uint32_t *p = sp_pos + r * d;
            const uint8_t *v = sp_val + r * d;
            const size_t k1 = lower_bound(p, sp_len[r], c1);
            for (size_t k = lower_bound(p, k1, c0); k < k1; k++) {
                const size_t c = p[k];
                pos[c * m + len[c]] = (uint32_t)r;
                val[c * m + len[c]] = v[k];
                len[c]++;
            }
        }
    }
#pragma omp barrier   /* the lists are complete for every thread's next kernel */
}

/* The limit in force: the caller's, but never above KERNELS_LIMIT_MAX, below which
 * limit * 2^40 converts to int64 without overflow. */
static float sink_limit(const KernelsSink *s)
{
    return s->limit < KERNELS_LIMIT_MAX ? s->limit : KERNELS_LIMIT_MAX;   /* NaN: the max */
}

/* Deliver one chunk's sums acc[0..bw) to output elements base, base + stride, ...: as
 * floats (fast) or fixed point (exact), stored for the first chunk and added for the
 * others. Returns the number of rejected values. */
static int64_t sink_put(const KernelsSink *s, size_t base, size_t stride, size_t bw,
                        const float *acc, int first_chunk)
{
    if (s->out_f) {
        float *o = s->out_f + base;
        for (size_t j = 0; j < bw; j++)
            o[j * stride] = first_chunk ? acc[j] : o[j * stride] + acc[j];
        return 0;
    }
    int64_t *o = s->out_i + base;
    int64_t nbad = 0;
    for (size_t j = 0; j < bw; j++) {
        /* !(|v| <= limit) also catches NaN; converting NaN or a huge value is undefined
         * behaviour, so a rejected value is replaced by 0 before the conversion. */
        const int ok = fabsf(acc[j]) <= sink_limit(s);
        nbad += !ok;
        const int64_t q = (int64_t)((ok ? acc[j] : 0.0f) * FIX_SCALE);
        o[j * stride] = first_chunk ? q : o[j * stride] + q;
    }
    return nbad;
}

/* Rows per chunk: fast mode sums the whole shard at once. */
static size_t sink_chunk(const KernelsSink *s, size_t m)
{
    return s->out_f || s->chunk == 0 ? (m ? m : 1) : s->chunk;
}

/* Exact mode, one full register block: the running fixed-point sums of the block's 64
 * output elements, kept in registers across a pixel's chunks. */
typedef int64_t vi8 __attribute__((vector_size(64)));     /* 8 int64 lanes, one register */
typedef float vf8 __attribute__((vector_size(32)));
typedef struct {
    vi8 v[8];   /* lanes 8i .. 8i+7 */
} Fix64;

/* f.v[2i], f.v[2i+1] += the 16 lanes of x, truncated to int64 */
static inline void fix64_add16(Fix64 *f, int i, vf16 x)
{
    const vf8 lo = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7);
    const vf8 hi = __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
    f->v[2 * i] += __builtin_convertvector(lo, vi8);
    f->v[2 * i + 1] += __builtin_convertvector(hi, vi8);
}

/* f += fix(a * scale) lane by lane, where fix(x) = trunc(x * 2^40); a lane with
 * !(|a * scale| <= limit) (also NaN) adds 0 and is counted in *nbad. Folding 2^40 into
 * the scale factor and the limit changes no bits: scaling by a power of two is exact, so
 * round(a * scale) * 2^40 == round(a * (scale * 2^40)) (a product too small to differ
 * truncates to 0 either way). */
static inline Fix64 fix64_add(Fix64 f, Acc64 a, float scale_fix, float limit_fix,
                              vm16 *nbad)
{
    for (int i = 0; i < 4; i++) {
        const vf16 x = a.v[i] * scale_fix;
        const vm16 ok = (x <= limit_fix) & (x >= -limit_fix);   /* -1 or 0; NaN: 0 */
        *nbad += ok + 1;                                        /* +1 where rejected */
        fix64_add16(&f, i, (vf16)((vm16)x & ok));                /* rejected -> +0.0 */
    }
    return f;
}

/* fix64_add for values known to be within the limit: no test, no mask. */
static inline Fix64 fix64_add_unchecked(Fix64 f, Acc64 a, float scale_fix)
{
    for (int i = 0; i < 4; i++)
        fix64_add16(&f, i, a.v[i] * scale_fix);
    return f;
}

/* Can a chunk sum of the dZ1 rows, at most sum_r row_max[r] in exact arithmetic, exceed
 * the limit? A float sum of n products (pixel / 255 at most 1) and the two roundings of
 * the scaling exceed the exact value by at most a factor (1 + 2^-24)^(n + 2), which is
 * below 1 + (n + 3) 2^-23 while (n + 2) 2^-24 <= 1 (so for chunks up to 2^22, with room).
 * Larger chunks, NaN or infinity in row_max: cannot rule it out. */
static int chunks_within_limit(const float *row_max, size_t m, size_t chunk, float limit)
{
    if (chunk > ((size_t)1 << 22))
        return 0;
    for (size_t r0 = 0; r0 < m; r0 += chunk) {
        const size_t r1 = r0 + chunk < m ? r0 + chunk : m;
        double s = 0;
        for (size_t r = r0; r < r1; r++)
            s += row_max[r];
        if (!(s * (1.0 + (double)(r1 - r0 + 3) * 0x1p-23) <= limit))
            return 0;
    }
    return 1;
}

/* The dW1/db1 rows c of the full register block at j0, in exact mode: each chunk's float
 * sum goes through fix64_add into registers, and only the pixel's total is stored. Same
 * sums, same order and same fixed-point values as the general path of
 * kernels_grad_layer1; it saves the round trip through memory per chunk. `checked` = 0
 * when chunks_within_limit has shown that no value can be rejected. */
static int64_t grad1_exact_block(const uint32_t *p, const uint8_t *v, size_t n,
                                 size_t h, size_t j0, float scale, const float *dZ1,
                                 size_t chunk, const KernelsSink *sink, int checked,
                                 int64_t *out)
{
    const float scale_fix = scale * FIX_SCALE, limit_fix = sink_limit(sink) * FIX_SCALE;
    Fix64 f;
    memset(&f, 0, sizeof f);
    vm16 nbad = {0};
    size_t t = 0;
    /* Chunk by chunk; a pixel 0 in every sample of a chunk adds nothing and is skipped.
     * The entries are consumed in the same loop that finds the chunk's end, so that each
     * chunk costs one unpredictable loop exit, not two. */
    while (t < n) {
        const size_t r1 = ((p ? p[t] : t) / chunk + 1) * chunk;   /* end of t's chunk */
        Acc64 a;
        memset(&a, 0, sizeof a);
        if (p)
            for (; t < n && p[t] < r1; t++)
                a = acc64_axpy(a, (float)v[t], dZ1 + (size_t)p[t] * h + j0);
        else
            for (; t < n && t < r1; t++)
                a = acc64_axpy(a, 1.0f, dZ1 + t * h + j0);
        f = checked ? fix64_add(f, a, scale_fix, limit_fix, &nbad)
                    : fix64_add_unchecked(f, a, scale_fix);
    }
    memcpy(out, &f, sizeof f);
    int64_t bad = 0;
    for (int l = 0; l < 16; l++)
        bad += nbad[l];
    return bad;
}

/* grad1_exact_block for two adjacent full blocks (j0 .. j0 + 128) when no value can be
 * rejected: one pass over the pixel's entries feeds eight FMA chains, and each chunk's
 * end costs one loop exit for 128 columns instead of one per 64. */
static void grad1_exact_pair(const uint32_t *p, const uint8_t *v, size_t n, size_t h,
                             size_t j0, float scale, const float *dZ1, size_t chunk,
                             int64_t *out)
{
    const float scale_fix = scale * FIX_SCALE;
    Fix64 f, g;
    memset(&f, 0, sizeof f);
    memset(&g, 0, sizeof g);
    size_t t = 0;
    while (t < n) {
        const size_t r1 = ((p ? p[t] : t) / chunk + 1) * chunk;   /* end of t's chunk */
        Acc64 a, b;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        for (; t < n && (p ? p[t] : t) < r1; t++) {
            const float x = p ? (float)v[t] : 1.0f;
            const float *row = dZ1 + (size_t)(p ? p[t] : t) * h + j0;
            a = acc64_axpy(a, x, row);
            b = acc64_axpy(b, x, row + KB);
        }
        f = fix64_add_unchecked(f, a, scale_fix);
        g = fix64_add_unchecked(g, b, scale_fix);
    }
    memcpy(out, &f, sizeof f);
    memcpy(out + KB, &g, sizeof g);
}

/* The same for 16 columns (what is left of a row after its full blocks). */
static void grad1_exact_16(const uint32_t *p, const uint8_t *v, size_t n, size_t h,
                           size_t j0, float scale, const float *dZ1, size_t chunk,
                           int64_t *out)
{
    const float scale_fix = scale * FIX_SCALE;
    vi8 lo = {0}, hi = {0};
    size_t t = 0;
    while (t < n) {
        const size_t r1 = ((p ? p[t] : t) / chunk + 1) * chunk;   /* end of t's chunk */
        vf16 a = {0};
        for (; t < n && (p ? p[t] : t) < r1; t++)
            a += (p ? (float)v[t] : 1.0f) *
                 *(const vf16u *)(dZ1 + (size_t)(p ? p[t] : t) * h + j0);
        const vf16 x = a * scale_fix;
        lo += __builtin_convertvector(__builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7),
                                      vi8);
        hi += __builtin_convertvector(
            __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15), vi8);
    }
    memcpy(out, &lo, sizeof lo);
    memcpy(out + 8, &hi, sizeof hi);
}

void kernels_grad_layer1(const uint32_t *pos, const uint8_t *val, const uint32_t *len,
                         size_t m, size_t d, size_t h, const float *dZ1,
                         const KernelsSink *sink)
{
    OWN_TEAM(kernels_grad_layer1(pos, val, len, m, d, h, dZ1, sink));
    const size_t chunk = sink_chunk(sink, m);
    const int checked = !(sink->out_i && sink->row_max &&
                          chunks_within_limit(sink->row_max, m, chunk, sink_limit(sink)));
    int64_t nbad = 0;   /* this thread's */
    /* Rows 0..d-1 are dW1 (over the samples where the pixel is nonzero), row d is db1 (a
     * pixel of constant 1 in every sample, unscaled). */
#pragma omp for schedule(dynamic, 8)
    for (size_t c = 0; c <= d; c++) {
        const uint32_t *p = c < d ? pos + c * m : NULL;   /* (len[c]) sample rows, ascending */
        const uint8_t *v = c < d ? val + c * m : NULL;
        const size_t n = c < d ? len[c] : m;
        const float scale = c < d ? PIXEL_SCALE : 1.0f;
        size_t j0 = 0;
        if (sink->out_i && !checked) {   /* 128 columns at a time, then 64, then 16 */
            for (; j0 + 2 * KB <= h; j0 += 2 * KB)
                grad1_exact_pair(p, v, n, h, j0, scale, dZ1, chunk, sink->out_i + c * h + j0);
            if (j0 + KB <= h) {
                grad1_exact_block(p, v, n, h, j0, scale, dZ1, chunk, sink, 0,
                                  sink->out_i + c * h + j0);
                j0 += KB;
            }
            for (; j0 + 16 <= h; j0 += 16)
                grad1_exact_16(p, v, n, h, j0, scale, dZ1, chunk, sink->out_i + c * h + j0);
        }
        for (; j0 < h; j0 += KB) {
            size_t bw = h - j0 < KB ? h - j0 : KB;
            if (sink->out_i && bw == KB) {
                nbad += grad1_exact_block(p, v, n, h, j0, scale, dZ1, chunk, sink, checked,
                                          sink->out_i + c * h + j0);
                continue;
            }
            size_t t = 0;
            for (size_t r0 = 0; r0 < m; r0 += chunk) {
                const size_t r1 = r0 + chunk < m ? r0 + chunk : m;
                size_t t1 = t;
                if (p)
                    while (t1 < n && p[t1] < r1)
                        t1++;
                else
                    t1 = r1;
                /* A pixel that is 0 in every sample of the chunk (MNIST's borders) adds
                 * nothing: skip it, except in the first chunk, which stores the row. */
                if (t1 == t && r0 != 0)
                    continue;
                float acc[KB] = {0};
                if (bw == KB) {
                    Acc64 a = acc64_load(acc);
                    if (p)
                        for (; t < t1; t++)
                            a = acc64_axpy(a, (float)v[t], dZ1 + (size_t)p[t] * h + j0);
                    else
                        for (; t < t1; t++)
                            a = acc64_axpy(a, 1.0f, dZ1 + t * h + j0);
                    acc64_store(acc, a);
                } else {
                    for (; t < t1; t++) {
                        const float xv = p ? (float)v[t] : 1.0f;
                        const float *g = dZ1 + (size_t)(p ? p[t] : t) * h + j0;
                        for (size_t j = 0; j < bw; j++)
                            acc[j] += xv * g[j];
                    }
                }
                for (size_t j = 0; j < bw; j++)
                    acc[j] *= scale;
                nbad += sink_put(sink, c * h + j0, 1, bw, acc, r0 == 0);
            }
        }
    }
    add_bad(sink->bad, nbad);
}

void kernels_grad_layer2(const float *A1, size_t m, size_t h, size_t k, const float *dZ2,
                         const KernelsSink *sink)
{
    OWN_TEAM(kernels_grad_layer2(A1, m, h, k, dZ2, sink));
    const size_t chunk = sink_chunk(sink, m), nblk = (h + KB - 1) / KB;
    const float limit_fix = sink_limit(sink) * FIX_SCALE;
    int64_t nbad = 0;   /* this thread's */
    /* One task per class j and block of KB hidden units: dW2[i0.., j] = sum_r dZ2[r,j]
     * A1[r,i0..], running along the contiguous rows of A1; block nblk of class j is
     * db2[j] = sum_r dZ2[r,j]. dW2 is (h, k): the block's elements are k apart. */
#pragma omp for schedule(static)
    for (size_t task = 0; task < k * (nblk + 1); task++) {
        const size_t j = task / (nblk + 1), b = task % (nblk + 1);
        const size_t i0 = b * KB, bw = b == nblk ? 1 : (h - i0 < KB ? h - i0 : KB);
        Fix64 f;   /* exact mode, full block: the sums over chunks */
        memset(&f, 0, sizeof f);
        vm16 fbad = {0};
        for (size_t r0 = 0; r0 < m; r0 += chunk) {
            const size_t r1 = r0 + chunk < m ? r0 + chunk : m;
            float acc[KB] = {0};
            if (b == nblk) {
                for (size_t r = r0; r < r1; r++)
                    acc[0] += dZ2[r * k + j];
                nbad += sink_put(sink, h * k + j, 1, 1, acc, r0 == 0);
                continue;
            }
            if (bw == KB) {
                Acc64 a = acc64_load(acc);
                for (size_t r = r0; r < r1; r++)
                    a = acc64_axpy(a, dZ2[r * k + j], A1 + r * h + i0);
                if (sink->out_i) {   /* exact: fixed-point sums stay in registers */
                    f = fix64_add(f, a, FIX_SCALE, limit_fix, &fbad);
                    continue;
                }
                acc64_store(acc, a);
            } else {
                for (size_t r = r0; r < r1; r++) {
                    const float g = dZ2[r * k + j], *a = A1 + r * h + i0;
                    for (size_t i = 0; i < bw; i++)
                        acc[i] += g * a[i];
                }
            }
            nbad += sink_put(sink, i0 * k + j, k, bw, acc, r0 == 0);
        }
        if (sink->out_i && b < nblk && bw == KB) {
            int64_t q[KB];
            memcpy(q, &f, sizeof q);
            for (size_t i = 0; i < KB; i++)
                sink->out_i[(i0 + i) * k + j] = q[i];
            for (int l = 0; l < 16; l++)
                nbad += fbad[l];
        }
    }
    add_bad(sink->bad, nbad);
}

void kernels_sgd_f32(float *theta, const float *g, size_t n, float lr)
{
    OWN_TEAM(kernels_sgd_f32(theta, g, n, lr));
#pragma omp for schedule(static)
    for (size_t i = 0; i < n; i++)
        theta[i] -= lr * g[i];
}

void kernels_sgd_fixed(float *theta, const int64_t *g, size_t n, float lr)
{
    OWN_TEAM(kernels_sgd_fixed(theta, g, n, lr));
#pragma omp for schedule(static)
    for (size_t i = 0; i < n; i++)
        theta[i] -= lr * (float)((double)g[i] * FIX_UNSCALE);
}

int64_t kernels_count_nonfinite(const float *x, size_t n)
{
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (size_t i = 0; i < n; i++)
        bad += !isfinite(x[i]);
    return bad;
}
