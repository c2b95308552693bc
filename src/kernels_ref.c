/* kernels_ref: the reference twin of kernels.c. The same signatures and contract (see
 * include/kernels.h), written as the formulas of docs/derivation.md in plain loops, with
 * no blocking, no vectors and no zero skipping, so that a reader sees the mathematics and
 * a user can rule the fast kernels out when debugging (`train.kernels = reference`).
 *
 * Each kernel runs on one thread of the calling team (`omp single`, whose closing barrier
 * ends the call), so its results trivially do not depend on the thread count; exact mode
 * sums chunks in fixed point exactly as the fast kernels do, so they do not depend on the
 * rank count either. Roundings differ from the fast kernels' (no FMA contraction here,
 * no vector lanes), so the two agree to float rounding, not bitwise. */
#include "kernels.h"

#include <math.h>
#include <string.h>


/* x[c] of the input row of sample i, scaled: pixels / 255, floats as they are. */
static float input_at(const KernelsInput *X, size_t i, size_t d, size_t c)
{
    return X->u8 ? (float)X->u8[i * d + c] : X->f32[i * d + c];
}

static float input_scale(const KernelsInput *X)
{
    return X->u8 ? 1.0f / 255.0f : 1.0f;
}

void kernels_ref_hidden_forward(const KernelsInput *X, const uint32_t *idx, size_t m,
                                size_t d, size_t h, const float *W1, const float *b1,
                                float *A1, const KernelsScratch *scratch)
{
    (void)scratch;
#pragma omp single
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < h; j++) {
            float s = 0;   /* sum_k x[k] W1[k,j] */
            for (size_t c = 0; c < d; c++)
                s += input_at(X, idx[r], d, c) * W1[c * h + j];
            const float z = b1[j] + input_scale(X) * s;
            A1[r * h + j] = 1.0f / (1.0f + expf(-z));
        }
}

void kernels_ref_output_backward(const float *A1, const uint8_t *labels, const uint32_t *idx,
                                 size_t m, size_t h, size_t k, const float *W2,
                                 const float *b2, float *W2t, float inv_m, float *dZ2,
                                 float *dZ1, float *dZ1_max, double *loss, uint8_t *correct)
{
    (void)W2t;
    if (k == 0 || k > KERNELS_MAX_CLASSES)
        return;
#pragma omp single
    for (size_t r = 0; r < m; r++) {
        const float *a = A1 + r * h;   /* (h) */
        const size_t y = labels[idx[r]];
        float z[KERNELS_MAX_CLASSES] = {0};   /* (k) z = b2 + a W2 */
        size_t best = 0;
        for (size_t j = 0; j < k; j++) {
            z[j] = b2[j];
            for (size_t i = 0; i < h; i++)
                z[j] += a[i] * W2[i * k + j];
            if (z[j] > z[best])
                best = j;
        }
        const float zmax = z[best];
        float sum = 0;
        for (size_t j = 0; j < k; j++)
            sum += expf(z[j] - zmax);
        loss[r] = (double)logf(sum) - (double)(z[y] - zmax);   /* logsumexp(z) - z[y] */
        correct[r] = best == y;
        if (!dZ2)
            continue;
        for (size_t j = 0; j < k; j++)   /* (softmax - onehot) / m */
            dZ2[r * k + j] = (expf(z[j] - zmax) / sum - (j == y ? 1.0f : 0.0f)) * inv_m;
        float top = 0;
        for (size_t i = 0; i < h; i++) {   /* dZ1 = (dZ2 W2^T) .* a .* (1 - a) */
            float da = 0;
            for (size_t j = 0; j < k; j++)
                da += dZ2[r * k + j] * W2[i * k + j];
            const float g = da * a[i] * (1.0f - a[i]);
            dZ1[r * h + i] = g;
            top = isnan(g) || isnan(top) ? NAN : fmaxf(top, fabsf(g));
        }
        if (dZ1_max)
            dZ1_max[r] = top;
    }
}

/* Rows per chunk: fast mode sums all m rows as one chunk. */
static size_t ref_chunk(const KernelsSink *sink, size_t m)
{
    return sink->out_f || sink->chunk == 0 ? m : sink->chunk;
}

/* Output element e receives the value v of one chunk: stored as a float (fast mode, one
 * chunk), or added to *q as trunc(v * 2^bits) * 2^(40 - bits) (exact mode; a value with
 * !(|v| <= limit), NaN included, adds 0 and counts in *nbad). */
static void ref_put(const KernelsSink *sink, size_t e, float v, int bits, int64_t *q,
                    int64_t *nbad)
{
    if (sink->out_f) {
        sink->out_f[e] = v;
        return;
    }
    const float limit = sink->limit < KERNELS_LIMIT_MAX ? sink->limit : KERNELS_LIMIT_MAX;
    if (fabsf(v) <= limit)   /* trunc(v 2^bits) in units of 2^-40 */
        *q += (int64_t)(v * ldexpf(1.0f, bits)) * ((int64_t)1 << (KERNELS_FIX_BITS - bits));
    else
        ++*nbad;
}

void kernels_ref_grad_layer1(const KernelsInput *X, const uint32_t *idx, size_t m, size_t d,
                             size_t h, const float *dZ1, const KernelsScratch *scratch,
                             const KernelsSink *sink)
{
    (void)scratch;
#pragma omp single
    {
        const size_t chunk = ref_chunk(sink, m);
        const int bits = kernels_fix_bits(X, sink);
        int32_t *out32 = kernels_grad1_i32_bits(X, sink) ? sink->out_i32 : NULL;
        int64_t nbad = 0;
        for (size_t c = 0; c <= d; c++)   /* rows 0..d-1: dW1; row d: db1 (x = 1) */
            for (size_t j = 0; j < h; j++) {
                int64_t q = 0;
                for (size_t r0 = 0; r0 < m; r0 += chunk) {
                    float s = 0;   /* sum over the chunk of x[r,c] dZ1[r,j] */
                    for (size_t r = r0; r < m && r < r0 + chunk; r++)
                        s += (c < d ? input_at(X, idx[r], d, c) : 1.0f) * dZ1[r * h + j];
                    ref_put(sink, c * h + j, c < d ? input_scale(X) * s : s, bits, &q,
                            &nbad);
                }
                if (out32) {   /* q is a multiple of 2^(40 - bits), below 2^31 of them */
                    const int64_t v = q / ((int64_t)1 << (KERNELS_FIX_BITS - bits));
                    const int fits = v >= INT32_MIN && v <= INT32_MAX;   /* (a wrong bound) */
                    nbad += !fits;
                    out32[c * h + j] = fits ? (int32_t)v : 0;
                } else if (sink->out_i)
                    sink->out_i[c * h + j] = q;
            }
        if (sink->bad)
            *sink->bad += nbad;
    }
}

void kernels_ref_grad_layer2(const float *A1, size_t m, size_t h, size_t k, const float *dZ2,
                             const KernelsSink *sink)
{
#pragma omp single
    {
        const size_t chunk = ref_chunk(sink, m);
        int64_t nbad = 0;
        for (size_t i = 0; i <= h; i++)   /* rows 0..h-1: dW2; row h: db2 (a = 1) */
            for (size_t j = 0; j < k; j++) {
                int64_t q = 0;
                for (size_t r0 = 0; r0 < m; r0 += chunk) {
                    float s = 0;   /* sum over the chunk of A1[r,i] dZ2[r,j] */
                    for (size_t r = r0; r < m && r < r0 + chunk; r++)
                        s += (i < h ? A1[r * h + i] : 1.0f) * dZ2[r * k + j];
                    ref_put(sink, i * k + j, s, KERNELS_FIX_BITS, &q, &nbad);
                }
                if (sink->out_i)
                    sink->out_i[i * k + j] = q;
            }
        if (sink->bad)
            *sink->bad += nbad;
    }
}

const KernelOps *kernels_select(const char *name)
{
    static const KernelOps fast = {"fast", kernels_hidden_forward, kernels_output_backward,
                                   kernels_grad_layer1, kernels_grad_layer2};
    static const KernelOps reference = {"reference", kernels_ref_hidden_forward,
                                        kernels_ref_output_backward, kernels_ref_grad_layer1,
                                        kernels_ref_grad_layer2};
    if (!strcmp(name, "fast"))
        return &fast;
    if (!strcmp(name, "reference"))
        return &reference;
    return NULL;
}
