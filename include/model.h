/* model: the two-layer perceptron of docs/derivation.md. Parameters and gradients, Xavier
 * initialisation, forward/backward on a range of samples, evaluation.
 *
 * Owns: Params (one contiguous block, W1 b1 W2 b2 in that order, so one allreduce or one
 * write covers all) and Workspace (every per-step buffer, sized once; nothing is allocated
 * in the step). Each has an _init/_free pair. Never calls MPI.
 */
#ifndef MLP_MODEL_H
#define MLP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

typedef struct {
    size_t d, h, k;     /* input, hidden, classes */
    size_t count;       /* d*h + h + h*k + k */
    float *block;       /* (count) */
    float *W1;          /* (d, h) row-major, block + 0 */
    float *b1;          /* (h) */
    float *W2;          /* (h, k) */
    float *b2;          /* (k) */
    int borrowed;       /* block is the caller's memory (model_params_move): not freed */
} Params;

/* Allocate zeroed parameters. Returns 0, or -1 if the sizes overflow or malloc fails. */
int model_params_init(Params *p, size_t d, size_t h, size_t k);
void model_params_free(Params *p);

/* The parameters now live in `block` (count floats of the caller's, which must hold a
 * copy of them already): the old block is freed, the tensors point into the new one, and
 * model_params_free leaves it to the caller. */
void model_params_move(Params *p, float *block);

/* Xavier/Glorot uniform: W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)); biases 0.
 * Each weight is a hash of (seed, its index): the same on every rank. */
void model_init_xavier(Params *p, uint64_t seed);

/* 64-bit FNV-1a hash of the raw bytes of W1, b1, W2, b2 (the metrics' param_hash). */
uint64_t model_param_hash(const Params *p);

typedef struct {
    size_t rows;        /* capacity in samples */
    size_t d, h, k;
    float *A1;          /* (rows, h) */
    float *dZ1;         /* (rows, h) */
    float *dZ1_max;     /* (rows) max |dZ1| per row: bounds for exact mode's range test */
    float *dZ2;         /* (rows, k) */
    float *W2t;         /* (k, h) W2 transposed, for the output kernel */
    double *loss;       /* (rows) */
    uint8_t *correct;   /* (rows) */
    KernelsScratch scratch;   /* packed input panels (kernels_scratch_size) */
    uint32_t *idx;      /* (rows) scratch sample indices for evaluation */
    const KernelOps *ops;     /* the kernels in use: "fast" unless model_workspace_kernels */
    /* optional (kernels_feature_tiles(d)): KernelsSink.written for dW1 (the caller's map of
     * tiles left unwritten, dist_reduce_init); NULL: the whole gradient is written */
    uint8_t *tiles_written;
} Workspace;

int model_workspace_init(Workspace *w, const Params *p, size_t rows);

/* Use the kernels called `name` ("fast", the default, or "reference": see kernels.h)
 * for every later call with w. Returns 0, or -1 for an unknown name (w unchanged). */
int model_workspace_kernels(Workspace *w, const char *name);

/* Bytes that model_params_init(d, h, k) and model_workspace_init(rows) will allocate.
 * Returns 0, or -1 if the sizes overflow. */
int model_memory(size_t d, size_t h, size_t k, size_t rows, size_t *params_bytes,
                 size_t *workspace_bytes);
void model_workspace_free(Workspace *w);

/* Per-sample losses are summed as integers in units of 1/MODEL_LOSS_SCALE, so that the
 * total does not depend on which rank or thread held which sample. */
#define MODEL_LOSS_SCALE 0x1p24
#define MODEL_LOSS_MAX 0x1p18   /* larger per-sample losses count as bad: sums cannot overflow */

typedef struct {
    int64_t loss_fix;   /* sum of per-sample losses, fixed point */
    int64_t correct;    /* samples whose argmax is the label */
    int64_t bad;        /* samples whose loss was not finite (excluded from the sums) */
    int grad1_bits;     /* model_step_gradients, exact mode: > 0 when dW1 and db1 went to
                           grad_i as int32 in units of 2^-grad1_bits, packed at its start
                           (KernelsSink.out_i32; sum them with dist_reduce_fixed); 0 when
                           they are int64 in units of 2^-40 like the rest */
} ModelStats;

/* Forward and backward over samples idx[0..m) (m <= w->rows) of X (n, d) with labels.
 * X: uint8 pixels or float32 features (kernels.h, KernelsInput).
 * dZ2 is normalised by m_global, the GLOBAL minibatch size. The W1 b1 W2 b2 gradient goes
 * to grad_f or grad_i, stored (see kernels.h: float sums, or sums of fixed-point chunk
 * values; dW1 and db1 possibly in int32: ModelStats.grad1_bits).
 * Returns the loss and accuracy of the forward pass. */
ModelStats model_step_gradients(const Params *p, const KernelsInput *X, const uint8_t *labels,
                                const uint32_t *idx, size_t m, size_t m_global,
                                Workspace *w, size_t chunk, float *grad_f, int64_t *grad_i,
                                float limit, int64_t *bad);

/* Forward only over samples first..first+m of X, in workspace-sized blocks. */
ModelStats model_evaluate(const Params *p, const KernelsInput *X, const uint8_t *labels,
                          size_t first, size_t m, Workspace *w);

/* Evaluation with the confusion matrix, forward only, over samples first..first+m of X
 * (n, d) with labels (n), in workspace-sized blocks. conf (k, k) row-major, conf[y*k + p]
 * counts samples of true label y predicted as p: ADDED to (the caller zeroes it). The
 * per-sample cross-entropy losses are added to *loss_sum in sample order (double).
 * The diagonal agrees exactly with model_evaluate's `correct`. Labels must be < k. */
void model_confusion(const Params *p, const KernelsInput *X, const uint8_t *labels, size_t first,
                     size_t m, Workspace *w, int64_t *conf, double *loss_sum);

#endif
