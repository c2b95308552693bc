/* kernels: the loops that carry the flops, OpenMP-parallel, pure (pointers and sizes in,
 * no globals, no MPI, no allocation).
 *
 * Two implementations with the same signatures: the fast one (kernels.c: register-blocked
 * micro-kernels over packed input panels) and the plain reference twin (kernels_ref.c:
 * the mathematics as simple loops, one thread). kernels_select picks one by name at run
 * time; both keep the contract below, so either gives the same bits on any number of
 * ranks and threads (but not the same bits as each other: they round differently).
 *
 * Exactness contract: every output element is computed by one thread, with a summation
 * order fixed by the data and the shapes alone (sample order within a chunk, feature order
 * within a sample). Threads split output tiles, never a sum, so the bits of every result
 * are the same for any thread count and on any rank. A term whose input feature is zero
 * may be skipped (the fast kernels skip features that are zero in a whole tile of
 * samples, and samples whose features are zero in a whole tile of features): for finite
 * operands adding x * w = 0 changes no bits, so which terms are skipped, itself decided by
 * the data alone, does not change the result.
 *
 * Fixed point (train.reduce = exact): a chunk's gradient g becomes the integer
 * trunc(g * 2^KERNELS_FIX_BITS); an output element is the int64 sum of its chunks' values.
 * |g| must not exceed the caller's `limit` (chosen so that no sum can overflow); a value
 * beyond it, or a NaN, is counted in *bad and contributes 0. dW1 and db1 may be truncated
 * at fewer fractional bits, b = kernels_fix_bits(sink), when the caller gives a bound that
 * is the same on every rank (KernelsSink.grad_bound): a chunk's value is then
 * trunc(g * 2^b) * 2^(KERNELS_FIX_BITS - b), in the same units (g summed from inputs that
 * carry the factor 2^b).
 *
 * Threads: called outside a parallel region, a kernel starts its own team; called inside
 * one, every thread of the team must call it with the same arguments, and the kernel
 * shares its loops among them and returns after a barrier (model.c runs a whole step in
 * one region this way). kernels_sgd_f32 and kernels_count_nonfinite are the exceptions:
 * outside regions only.
 *
 * Inputs are raw uint8 pixels (0..255, scaled by 1/255 once per output sum) or float32
 * features (used as they are); see KernelsInput.
 */
#ifndef MLP_KERNELS_H
#define MLP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define KERNELS_FIX_BITS 40
#define KERNELS_MAX_CLASSES 256
/* Largest limit honoured, the float just below 2^22: an accepted value times 2^40 stays
 * below 2^62, where the fast kernels' vector conversion to int64 is exact. */
#define KERNELS_LIMIT_MAX 0x1.fffffep21f

/* The input features of the data set, one of two kinds (exactly one pointer non-NULL):
 * u8 (n, d) row-major pixels, each x / 255; or f32 (n, d) row-major, each x as it is.
 * f32_max: with f32, optional: if positive and finite, no feature the kernels are given
 * exceeds it in magnitude (kernels_input_max computes it). In exact mode it lets
 * kernels_grad_layer1 bound the chunk sums, as it does for pixels (<= 1), and skip range
 * tests that cannot fail; the result is the same bits. 0: unknown.
 * sig: optional, one per sample (kernels_signatures): the forward pass groups samples with
 * similar nonzero features into its tiles, which then skip more (the same bits). NULL:
 * tiles in the shard's order. */
typedef struct {
    const uint8_t *u8;
    const float *f32;
    float f32_max;
    const uint64_t *sig;
} KernelsInput;

/* sig[r] for the n samples of X (d features each), for KernelsInput.sig: bit 63 - g set
 * where sample r has a nonzero feature (NaN counts) in group g, the features
 * g ceil(d / 64) .. (g + 1) ceil(d / 64) - 1. OpenMP-parallel; outside parallel regions. */
void kernels_signatures(const KernelsInput *X, size_t n, size_t d, uint64_t *sig);

/* Rows of a tile (6 with AVX2): samples per tile of the forward pass (shards of at most
 * this many samples are one tile, which signatures cannot regroup), and rows of dW1 (with
 * db1 as row d) per tile of kernels_grad_layer1. */
size_t kernels_tile_rows(void);

/* Tiles of dW1 and db1 rows: ceil((d + 1) / kernels_tile_rows()). */
size_t kernels_feature_tiles(size_t d);

/* The largest |x| of the n x d float features x, for KernelsInput.f32_max: INFINITY if one
 * is not finite. OpenMP-parallel; call it outside parallel regions. */
float kernels_input_max(const float *x, size_t n, size_t d);

/* Scratch that the fast kernels pack weight and input panels into (the reference needs
 * none): panel (panel_floats) and list (list_len) from kernels_scratch_size(m, d, h) for
 * up to m samples. Nothing is kept in it from one call to the next. */
typedef struct {
    float *panel;
    uint32_t *list;
} KernelsScratch;

/* Sizes of a KernelsScratch for up to m samples of d features and h hidden units.
 * Returns 0, or -1 if the sizes overflow. */
int kernels_scratch_size(size_t m, size_t d, size_t h, size_t *panel_floats,
                         size_t *list_len);

/* A1[r,:] = sigmoid(b1 + s sum_k X[idx[r],k] W1[k,:]) for r < m, s = 1/255 for pixels and
 * 1 for float features, the sum in ascending k (zero features may be skipped).
 * idx (m); W1 (d, h); b1 (h); A1 (m, h). */
void kernels_hidden_forward(const KernelsInput *X, const uint32_t *idx, size_t m, size_t d,
                            size_t h, const float *W1, const float *b1, float *A1,
                            const KernelsScratch *scratch);

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
                        atomically at the end of the call, which may come after the
                        kernel's last barrier: read it after the parallel region, not
                        inside it */
    /* exact mode, kernels_grad_layer1 only, optional (m): row_max[r] >= max |dZ1[r,:]|.
     * With pixel inputs (x / 255 <= 1), when these bounds show that no chunk sum can
     * exceed the limit, the per-value test is skipped (it could not fail: the result is
     * the same). NULL, or float inputs: always tested. */
    const float *row_max;
    /* kernels_grad_layer1 only, optional (kernels_feature_tiles(d) bytes): written[p] = 0
     * for a tile p of rows (kernels_tile_rows(): dW1 rows p R .. p R + R - 1, and db1 as row
     * d) in which no sample has a nonzero feature: its rows are zero and NOT stored; 1 for
     * the other tiles, whose rows are stored. NULL: every row stored. Lets a sum of many
     * ranks' gradients skip what a small shard leaves zero (dist_reduce_init's map). */
    uint8_t *written;
    /* exact mode, kernels_grad_layer1 only, optional: a bound, the same on every rank, on
     * the sum over all the minibatch's chunks (every rank's) of |chunk gradient| for any
     * element of dW1 and db1 (kernels_grad1_bound). With it, dW1's and db1's chunk values
     * are truncated at b = kernels_fix_bits(X, sink) fractional bits, the most that keep
     * grad_bound 2^b within 2^30 (26 to 40; where fewer would do, and where the input
     * bound is unknown, 40 bits as without it), and summed in 32-bit integers (AVX2
     * converts float to int32 in one instruction, to int64 in five or more). The caller
     * promises the bound; where row_max shows it broken on this rank, the call counts one
     * rejected value. 0: 40 bits (KERNELS_FIX_BITS). */
    double grad_bound;
    /* exact mode, kernels_grad_layer1 only, optional: where dW1 and db1 go when they are
     * summed in int32 (kernels_grad1_i32_bits(X, sink) > 0): the int32 totals themselves,
     * in units of 2^-b, element e at out_i32[e], instead of widened to int64 units of
     * 2^-40 in out_i. May be out_i's memory (its first half). Where row_max shows the
     * bound broken, or has a NaN or infinity, the call counts one rejected value and
     * stores zeros here (the step is void). NULL: always out_i. */
    int32_t *out_i32;
} KernelsSink;

/* The bound on dW1's and db1's chunk sums that KernelsSink.grad_bound asks for, from the
 * parameters alone (so every rank computes the same): with dZ2 = (softmax - onehot) / m
 * (sum_j |dZ2[r,j]| <= 2 / m), |dZ1[r,i]| <= 2 / m max|W2| a (1 - a) <= max|W2| / (2 m),
 * so the sum over a minibatch's m samples of |x dZ1| is at most xmax max|W2| / 2
 * (xmax: 1 for pixels and db1's constant, X->f32_max for float features), widened for
 * float rounding in chunks of `chunk` rows and k classes. 0 (no bound) if W2 or xmax is
 * not finite. */
double kernels_grad1_bound(const KernelsInput *X, const float *W2, size_t h, size_t k,
                           size_t chunk);

/* The fractional bits of dW1's and db1's chunk values for inputs X under `sink` (see
 * grad_bound): KERNELS_FIX_BITS, or fewer. */
int kernels_fix_bits(const KernelsInput *X, const KernelsSink *sink);

/* The same bits when dW1 and db1 are summed in int32 (and stored in out_i32 if given);
 * 0 when they take the 40-bit path (and go to out_i). */
int kernels_grad1_i32_bits(const KernelsInput *X, const KernelsSink *sink);

/* dW1[c,:] = s sum_r X[idx[r],c] dZ1[r,:] (s as in kernels_hidden_forward) and
 * db1 = sum_r dZ1[r,:], each summed in ascending r (zero features may be skipped).
 * idx (m); dZ1 (m, h); sink rows: dW1 (d, h) then db1 (h), contiguous. m >= 1 (a rank
 * without samples zeroes its gradient itself). */
void kernels_grad_layer1(const KernelsInput *X, const uint32_t *idx, size_t m, size_t d,
                         size_t h, const float *dZ1, const KernelsScratch *scratch,
                         const KernelsSink *sink);

/* dW2[i,:] = sum_r A1[r,i] dZ2[r,:] and db2 = sum_r dZ2[r,:].
 * A1 (m, h); dZ2 (m, k); sink rows: dW2 (h, k) then db2 (k), contiguous. m >= 1. */
void kernels_grad_layer2(const float *A1, size_t m, size_t h, size_t k, const float *dZ2,
                         const KernelsSink *sink);

/* theta[i] -= lr * g[i] for the float gradient (fast mode). Returns the number of NaN or
 * infinite g[i] (kernels_count_nonfinite's count, taken only when the update's own pass
 * saw one): when it is not 0, theta has taken them in and is good for nothing but
 * discarding. */
int64_t kernels_sgd_f32(float *theta, const float *g, size_t n, float lr);

/* theta[i] -= lr * (g[i] * 2^-KERNELS_FIX_BITS) for the fixed-point gradient (exact mode). */
void kernels_sgd_fixed(float *theta, const int64_t *g, size_t n, float lr);

/* theta[i] -= lr * (g[i] * 2^-bits) for an int32 fixed-point gradient (out_i32): the same
 * bits as kernels_sgd_fixed on g[i] * 2^(KERNELS_FIX_BITS - bits). */
void kernels_sgd_fixed32(float *theta, const int32_t *g, size_t n, float lr, int bits);

/* dst[i] = (float)g[i] * 2^-bits: kernels_fixed_to_f32's value for the int32 form.
 * Serial. */
void kernels_fixed32_to_f32(float *dst, const int32_t *g, size_t n, int bits);

/* dst[i] = (float)((double)g[i] * 2^-KERNELS_FIX_BITS), the fixed-point sum as the float
 * that kernels_sgd_fixed applies, bit for bit (one rounding for |g| < 2^53). Serial: the
 * caller splits the work (optim_update converts a block per thread). */
void kernels_fixed_to_f32(float *dst, const int64_t *g, size_t n);

/* Zeroed memory for n operands of `size` bytes, 64-byte aligned so that panels and rows
 * start on a cache line (glibc's malloc aligns to 16; measured on Zen 3, the products ran
 * 2-6% faster on aligned panels). NULL on overflow or failure; free() releases it. */
void *kernels_calloc(size_t n, size_t size);

/* Number of NaN or infinite values in x (n). */
int64_t kernels_count_nonfinite(const float *x, size_t n);

/* One implementation of the four step kernels, chosen at run time. */
typedef struct {
    const char *name;   /* "fast" or "reference" */
    void (*hidden_forward)(const KernelsInput *X, const uint32_t *idx, size_t m, size_t d,
                           size_t h, const float *W1, const float *b1, float *A1,
                           const KernelsScratch *scratch);
    void (*output_backward)(const float *A1, const uint8_t *labels, const uint32_t *idx,
                            size_t m, size_t h, size_t k, const float *W2, const float *b2,
                            float *W2t, float inv_m, float *dZ2, float *dZ1, float *dZ1_max,
                            double *loss, uint8_t *correct);
    void (*grad_layer1)(const KernelsInput *X, const uint32_t *idx, size_t m, size_t d,
                        size_t h, const float *dZ1, const KernelsScratch *scratch,
                        const KernelsSink *sink);
    void (*grad_layer2)(const float *A1, size_t m, size_t h, size_t k, const float *dZ2,
                        const KernelsSink *sink);
} KernelOps;

/* The implementation called `name`: "fast" (kernels.c) or "reference" (kernels_ref.c).
 * NULL for any other name. */
const KernelOps *kernels_select(const char *name);

/* The reference twin (kernels_ref.c): plain loops, run by one thread of the team, the
 * same contract and signatures as the fast kernels above. */
void kernels_ref_hidden_forward(const KernelsInput *X, const uint32_t *idx, size_t m,
                                size_t d, size_t h, const float *W1, const float *b1,
                                float *A1, const KernelsScratch *scratch);
void kernels_ref_output_backward(const float *A1, const uint8_t *labels, const uint32_t *idx,
                                 size_t m, size_t h, size_t k, const float *W2,
                                 const float *b2, float *W2t, float inv_m, float *dZ2,
                                 float *dZ1, float *dZ1_max, double *loss, uint8_t *correct);
void kernels_ref_grad_layer1(const KernelsInput *X, const uint32_t *idx, size_t m, size_t d,
                             size_t h, const float *dZ1, const KernelsScratch *scratch,
                             const KernelsSink *sink);
void kernels_ref_grad_layer2(const float *A1, size_t m, size_t h, size_t k, const float *dZ2,
                             const KernelsSink *sink);

#endif
