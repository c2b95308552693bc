/* kernels: the loops that carry the flops, OpenMP-parallel, pure (pointers and sizes in,
 * no globals, no MPI, no allocation).
 *
 * Exactness contract: every output element is computed by one thread, with a summation
 * order fixed by the data alone (sample order within a chunk, pixel order within a
 * sample). Threads split output ROWS, never a sum, so the bits of every result are the
 * same for any thread count and on any rank. Zero pixels are skipped; that too depends
 * only on the data.
 *
 * Fixed point (train.reduce = exact): a chunk's gradient g becomes the integer
 * trunc(g * 2^KERNELS_FIX_BITS); an output element is the int64 sum of its chunks' values.
 * |g| must not exceed the caller's `limit` (chosen so that no sum can overflow); a value
 * beyond it, or a NaN, is counted in *bad and contributes 0.
 *
 * Threads: called outside a parallel region, a kernel starts its own team; called inside
 * one, every thread of the team must call it with the same arguments, and the kernel
 * shares its loops among them and returns after a barrier (model.c runs a whole step in
 * one region this way). kernels_count_nonfinite is the exception: outside regions only.
 *
 * Pixels are raw uint8 (0..255); the 1/255 scaling is applied once per output sum.
 */
#ifndef MLP_KERNELS_H
#define MLP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define KERNELS_FIX_BITS 40
#define KERNELS_MAX_CLASSES 256
#define KERNELS_LIMIT_MAX 0x1p22f   /* largest limit honoured: limit * 2^40 fits int64 */

/* A1[r,:] = sigmoid(b1 + (1/255) sum_k X[idx[r],k] W1[k,:]) for r < m, summing over the
 * nonzero pixels in ascending order; those pixels are also listed, per sample, in
 * sp_pos/sp_val (m, d) with sp_len[r] entries (for kernels_gather_pixels).
 * X (n, d) uint8 row-major; idx (m); W1 (d, h); b1 (h); A1 (m, h). */
void kernels_hidden_forward(const uint8_t *X, const uint32_t *idx, size_t m, size_t d,
                            size_t h, const float *W1, const float *b1, float *A1,
                            uint32_t *sp_pos, uint8_t *sp_val, uint32_t *sp_len);

/* Output layer, loss and the backward pass down to dZ1, one row at a time:
 *   z = b2 + A1[r,:] W2;  loss[r] = logsumexp(z) - z[y];  correct[r] = (argmax z == y)
 *   dZ2[r,:] = (softmax(z) - onehot(y)) * inv_m
 *   dZ1[r,:] = (dZ2[r,:] W2^T) .* A1[r,:] .* (1 - A1[r,:])
 *   dZ1_max[r] = max_i |dZ1[r,i]| (NaN if the row has one), if dZ1_max is not NULL
 * y = labels[idx[r]]. A1 (m, h); W2 (h, k); b2 (k); W2t (k, h) scratch that receives W2
 * transposed; dZ2 (m, k); dZ1 (m, h); dZ1_max, loss, correct (m). dZ2 and dZ1 may both be
 * NULL (evaluation only). k <= KERNELS_MAX_CLASSES. */
void kernels_output_backward(const float *A1, const uint8_t *labels, const uint32_t *idx,
                             size_t m, size_t h, size_t k, const float *W2, const float *b2,
                             float *W2t, float inv_m, float *dZ2, float *dZ1,
                             float *dZ1_max, double *loss, uint8_t *correct);

/* The same nonzero pixels by pixel: for each pixel c, the samples r (ascending) where it
 * is nonzero and its value there, from the per-sample lists of kernels_hidden_forward.
 * pos, val (d, m): row c holds len[c] entries. */
void kernels_gather_pixels(const uint32_t *sp_pos, const uint8_t *sp_val,
                           const uint32_t *sp_len, size_t m, size_t d, uint32_t *pos,
                           uint8_t *val, uint32_t *len);

/* Where a gradient kernel puts its result, STORED (every element is written; nothing
 * needs zeroing first). Fast mode: out_f, one float sum over all m rows. Exact mode:
 * out_i, the int64 sum of one fixed-point value per chunk of `chunk` rows (the last
 * chunk shorter). Exactly one of out_f, out_i is non-NULL. */
typedef struct {
    float *out_f;
    int64_t *out_i;
    size_t chunk;
    float limit;     /* exact mode: largest |chunk gradient| accepted (at most
                        KERNELS_LIMIT_MAX: a larger limit counts as that) */
    int64_t *bad;    /* exact mode: incremented per rejected value (non-finite or > limit),
                        atomically and after the kernel's last barrier: read it after the
                        parallel region, not inside it */
    /* exact mode, kernels_grad_layer1 only, optional (m): row_max[r] >= max |dZ1[r,:]|.
     * When these bounds show that no chunk sum can exceed the limit, the per-value test
     * is skipped (it could not fail: the result is the same). NULL: always tested. */
    const float *row_max;
} KernelsSink;

/* dW1[c,:] = (1/255) sum_r X[r,c] dZ1[r,:] over the samples where pixel c is nonzero (from
 * kernels_gather_pixels), and db1 = sum_r dZ1[r,:]. dZ1 (m, h); sink rows: dW1 (d, h) then
 * db1 (h), contiguous. m >= 1 (a rank without samples zeroes its gradient itself). */
void kernels_grad_layer1(const uint32_t *pos, const uint8_t *val, const uint32_t *len,
                         size_t m, size_t d, size_t h, const float *dZ1,
                         const KernelsSink *sink);

/* dW2[i,:] = sum_r A1[r,i] dZ2[r,:] and db2 = sum_r dZ2[r,:].
 * A1 (m, h); dZ2 (m, k); sink rows: dW2 (h, k) then db2 (k), contiguous. m >= 1. */
void kernels_grad_layer2(const float *A1, size_t m, size_t h, size_t k, const float *dZ2,
                         const KernelsSink *sink);

/* theta[i] -= lr * g[i] for the float gradient (fast mode). */
void kernels_sgd_f32(float *theta, const float *g, size_t n, float lr);

/* theta[i] -= lr * (g[i] * 2^-KERNELS_FIX_BITS) for the fixed-point gradient (exact mode). */
void kernels_sgd_fixed(float *theta, const int64_t *g, size_t n, float lr);

/* Number of NaN or infinite values in x (n). */
int64_t kernels_count_nonfinite(const float *x, size_t n);

#endif
