/* kernels: see include/kernels.h for the contract (fixed summation order per output
 * element, threads over rows, fixed point for exact mode).
 *
 * Column blocking: an output row is processed KB columns at a time with the running sums
 * in a small local array, which the compiler keeps in vector registers. Which columns fall
 * in a full block or in the last, partial one depends only on the row length, so the code
 * path (and the rounding) for every element is fixed by the shapes alone. */
#include "kernels.h"

#include <math.h>
#include <string.h>

#define KB 64                         /* columns per register block */
#define PIXEL_SCALE (1.0f / 255.0f)
#define FIX_SCALE 0x1p40f             /* 2^KERNELS_FIX_BITS */
#define FIX_UNSCALE 0x1p-40

_Static_assert(KERNELS_FIX_BITS == 40, "FIX_SCALE and FIX_UNSCALE assume 40 bits");

void kernels_hidden_forward(const uint8_t *X, const uint32_t *idx, size_t m, size_t d,
                            size_t h, const float *W1, const float *b1, float *A1)
{
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < m; r++) {
        const uint8_t *x = X + (size_t)idx[r] * d;   /* (d) */
        float *a = A1 + r * h;                        /* (h) */
        for (size_t j0 = 0; j0 < h; j0 += KB) {
            size_t bw = h - j0 < KB ? h - j0 : KB;
            float acc[KB] = {0};
            if (bw == KB) {
                for (size_t c = 0; c < d; c++) {
                    if (!x[c])
                        continue;
                    const float xv = x[c];
                    const float *w = W1 + c * h + j0;
                    for (size_t j = 0; j < KB; j++)
                        acc[j] += xv * w[j];
                }
            } else {
                for (size_t c = 0; c < d; c++) {
                    if (!x[c])
                        continue;
                    const float xv = x[c];
                    const float *w = W1 + c * h + j0;
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

void kernels_output_backward(const float *A1, const uint8_t *labels, const uint32_t *idx,
                             size_t m, size_t h, size_t k, const float *W2, const float *b2,
                             float inv_m, float *dZ2, float *dZ1, double *loss,
                             uint8_t *correct)
{
    if (k == 0 || k > KERNELS_MAX_CLASSES)   /* callers guarantee 1..MAX; keeps z[] in bounds */
        return;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < m; r++) {
        const float *a = A1 + r * h;    /* (h) */
        const size_t y = labels[idx[r]];
        float z[KERNELS_MAX_CLASSES];   /* (k) */
        for (size_t j = 0; j < k; j++)
            z[j] = b2[j];
        for (size_t i = 0; i < h; i++) {
            const float *w = W2 + i * k;
            for (size_t j = 0; j < k; j++)
                z[j] += a[i] * w[j];
        }
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
        float *g1 = dZ1 + r * h;         /* (h) */
        for (size_t i = 0; i < h; i++) {
            const float *w = W2 + i * k;
            float da = 0;
            for (size_t j = 0; j < k; j++)
                da += g2[j] * w[j];
            g1[i] = da * a[i] * (1.0f - a[i]);
        }
    }
}

void kernels_gather_transpose(const uint8_t *X, const uint32_t *idx, size_t m, size_t d,
                              uint8_t *Xt)
{
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < d; c++)
        for (size_t r = 0; r < m; r++)
            Xt[c * m + r] = X[(size_t)idx[r] * d + c];
}

/* Deliver one chunk's sums acc[0..bw) for output columns [j0, j0+bw) of output row `row`
 * (of width `width`): stored as floats (fast) or added as fixed point (exact). Returns the
 * number of rejected values. */
static int64_t sink_put(const KernelsSink *s, size_t row, size_t width, size_t j0,
                        size_t bw, const float *acc, int first_chunk)
{
    if (s->out_f) {
        float *o = s->out_f + row * width + j0;
        if (first_chunk)
            memcpy(o, acc, bw * sizeof *o);
        else
            for (size_t j = 0; j < bw; j++)
                o[j] += acc[j];
        return 0;
    }
    int64_t *o = s->out_i + row * width + j0;
    int64_t nbad = 0;
    for (size_t j = 0; j < bw; j++) {
        /* !(|v| <= limit) also catches NaN; converting NaN or a huge value is undefined
         * behaviour, so a rejected value is replaced by 0 before the conversion. */
        const int ok = fabsf(acc[j]) <= s->limit;
        nbad += !ok;
        o[j] += (int64_t)((ok ? acc[j] : 0.0f) * FIX_SCALE);
    }
    return nbad;
}

/* Rows per chunk: fast mode sums the whole shard at once. */
static size_t sink_chunk(const KernelsSink *s, size_t m)
{
    return s->out_f || s->chunk == 0 ? (m ? m : 1) : s->chunk;
}

void kernels_grad_layer1(const uint8_t *Xt, size_t m, size_t d, size_t h, const float *dZ1,
                         const KernelsSink *sink)
{
    const size_t chunk = sink_chunk(sink, m);
    int64_t nbad = 0;
    /* Rows 0..d-1 are dW1, row d is db1 (a pixel of constant 1, unscaled). */
#pragma omp parallel for schedule(dynamic, 8) reduction(+ : nbad)
    for (size_t c = 0; c <= d; c++) {
        const uint8_t *x = c < d ? Xt + c * m : NULL;   /* (m) */
        const float scale = c < d ? PIXEL_SCALE : 1.0f;
        for (size_t j0 = 0; j0 < h; j0 += KB) {
            size_t bw = h - j0 < KB ? h - j0 : KB;
            for (size_t r0 = 0; r0 < m; r0 += chunk) {
                size_t r1 = r0 + chunk < m ? r0 + chunk : m;
                float acc[KB] = {0};
                int any = 0;
                for (size_t r = r0; r < r1; r++) {
                    const float xv = x ? x[r] : 1.0f;
                    if (xv == 0.0f)
                        continue;
                    any = 1;
                    const float *g = dZ1 + r * h + j0;
                    if (bw == KB)
                        for (size_t j = 0; j < KB; j++)
                            acc[j] += xv * g[j];
                    else
                        for (size_t j = 0; j < bw; j++)
                            acc[j] += xv * g[j];
                }
                /* A pixel that is 0 in every sample of the chunk (MNIST's borders) adds
                 * nothing: skip its conversion, unless a float row must be stored. */
                if (!any && !(sink->out_f && r0 == 0))
                    continue;
                for (size_t j = 0; j < bw; j++)
                    acc[j] *= scale;
                nbad += sink_put(sink, c, h, j0, bw, acc, r0 == 0);
            }
        }
    }
    if (sink->bad)
        *sink->bad += nbad;
}

void kernels_grad_layer2(const float *A1, size_t m, size_t h, size_t k, const float *dZ2,
                         const KernelsSink *sink)
{
    const size_t chunk = sink_chunk(sink, m);
    int64_t nbad = 0;
    /* Rows 0..h-1 are dW2, row h is db2 (an activation of constant 1). */
#pragma omp parallel for schedule(static) reduction(+ : nbad)
    for (size_t i = 0; i <= h; i++) {
        for (size_t j0 = 0; j0 < k; j0 += KB) {
            size_t bw = k - j0 < KB ? k - j0 : KB;
            for (size_t r0 = 0; r0 < m; r0 += chunk) {
                size_t r1 = r0 + chunk < m ? r0 + chunk : m;
                float acc[KB] = {0};
                for (size_t r = r0; r < r1; r++) {
                    const float av = i < h ? A1[r * h + i] : 1.0f;
                    const float *g = dZ2 + r * k + j0;
                    for (size_t j = 0; j < bw; j++)
                        acc[j] += av * g[j];
                }
                nbad += sink_put(sink, i, k, j0, bw, acc, r0 == 0);
            }
        }
    }
    if (sink->bad)
        *sink->bad += nbad;
}

void kernels_sgd_f32(float *theta, const float *g, size_t n, float lr)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        theta[i] -= lr * g[i];
}

void kernels_sgd_fixed(float *theta, int64_t *g, size_t n, float lr)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        theta[i] -= lr * (float)((double)g[i] * FIX_UNSCALE);
        g[i] = 0;   /* ready for the next step's sums, while the line is in cache */
    }
}

int64_t kernels_count_nonfinite(const float *x, size_t n)
{
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (size_t i = 0; i < n; i++)
        bad += !isfinite(x[i]);
    return bad;
}
