/* model: parameters, initialisation, one step's forward/backward, evaluation.
 * The formulas are those of docs/derivation.md; the loops live in kernels.c. */
#include "model.h"

#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* a * b + c with overflow check; returns 0 on overflow. */
static int size_muladd(size_t a, size_t b, size_t c, size_t *out)
{
    if (b && a > (SIZE_MAX - c) / b)
        return 0;
    *out = a * b + c;
    return 1;
}

/* W1 b1 W2 b2, consecutive in the block. */
static void point_tensors(Params *p)
{
    p->W1 = p->block;
    p->b1 = p->W1 + p->d * p->h;
    p->W2 = p->b1 + p->h;
    p->b2 = p->W2 + p->h * p->k;
}

int model_params_init(Params *p, size_t d, size_t h, size_t k)
{
    memset(p, 0, sizeof *p);
    size_t n1, n2, count;
    if (!size_muladd(d, h, h, &n1) || !size_muladd(h, k, k, &n2) || n1 > SIZE_MAX - n2)
        return -1;
    count = n1 + n2;
    if (count > SIZE_MAX / sizeof(float))
        return -1;
    p->block = kernels_calloc(count, sizeof(float));
    if (!p->block)
        return -1;
    p->d = d, p->h = h, p->k = k, p->count = count;
    point_tensors(p);
    return 0;
}

void model_params_free(Params *p)
{
    if (!p->borrowed)
        free(p->block);
    memset(p, 0, sizeof *p);
}

void model_params_move(Params *p, float *block)
{
    if (!p->borrowed)
        free(p->block);
    p->block = block, p->borrowed = 1;
    point_tensors(p);
}

/* splitmix64: a stateless mix, so weight i depends only on (seed, i). */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Uniform in [-a, a) from the top 53 bits of a hash. */
static void fill_uniform(float *w, size_t n, double a, uint64_t stream)
{
    for (size_t i = 0; i < n; i++) {
        double u = (double)(mix64(stream ^ mix64(i)) >> 11) * 0x1p-53;
        w[i] = (float)((2.0 * u - 1.0) * a);
    }
}

void model_init_xavier(Params *p, uint64_t seed)
{
    memset(p->block, 0, p->count * sizeof(float));
    fill_uniform(p->W1, p->d * p->h, sqrt(6.0 / (double)(p->d + p->h)), mix64(seed) ^ 1);
    fill_uniform(p->W2, p->h * p->k, sqrt(6.0 / (double)(p->h + p->k)), mix64(seed) ^ 2);
}

uint64_t model_param_hash(const Params *p)
{
    const unsigned char *b = (const unsigned char *)p->block;
    uint64_t hash = 0xcbf29ce484222325ull;          /* FNV-1a 64 */
    for (size_t i = 0; i < p->count * sizeof(float); i++)
        hash = (hash ^ b[i]) * 0x100000001b3ull;
    return hash;
}

int model_workspace_init(Workspace *w, const Params *p, size_t rows)
{
    memset(w, 0, sizeof *w);
    size_t nh, nk, npanel, nlist;
    if (rows == 0 || !size_muladd(rows, p->h, 0, &nh) || !size_muladd(rows, p->k, 0, &nk) ||
        nh > SIZE_MAX / sizeof(float) || nk > SIZE_MAX / sizeof(float) ||
        kernels_scratch_size(rows, p->d, p->h, &npanel, &nlist) != 0 ||
        npanel > SIZE_MAX / sizeof(float) || nlist > SIZE_MAX / sizeof(uint32_t))
        return -1;
    w->rows = rows, w->d = p->d, w->h = p->h, w->k = p->k;
    w->ops = kernels_select("fast");
    w->A1 = kernels_calloc(nh, sizeof(float));
    w->dZ1 = kernels_calloc(nh, sizeof(float));
    w->dZ1_max = malloc(rows * sizeof(float));
    w->dZ2 = malloc(nk * sizeof(float));
    w->W2t = malloc(p->h * p->k * sizeof(float));
    w->loss = malloc(rows * sizeof(double));
    w->correct = malloc(rows);
    w->scratch.panel = kernels_calloc(npanel, sizeof(float));
    w->scratch.list = malloc(nlist * sizeof(uint32_t));
    w->idx = malloc(rows * sizeof(uint32_t));
    if (!w->A1 || !w->dZ1 || !w->dZ1_max || !w->dZ2 || !w->W2t || !w->loss || !w->correct ||
        !w->scratch.panel || !w->scratch.list || !w->idx) {
        model_workspace_free(w);
        return -1;
    }
    return 0;
}

int model_workspace_kernels(Workspace *w, const char *name)
{
    const KernelOps *ops = kernels_select(name);
    if (!ops)
        return -1;
    w->ops = ops;
    return 0;
}

int model_memory(size_t d, size_t h, size_t k, size_t rows, size_t *params_bytes,
                 size_t *workspace_bytes)
{
    size_t n1, n2, nh, nk, npanel, nlist, a, b;
    if (!size_muladd(d, h, h, &n1) || !size_muladd(h, k, k, &n2) || n1 > SIZE_MAX - n2 ||
        !size_muladd(n1 + n2, sizeof(float), 0, params_bytes) ||
        !size_muladd(rows, h, 0, &nh) || !size_muladd(rows, k, 0, &nk) ||
        kernels_scratch_size(rows, d, h, &npanel, &nlist) != 0)
        return -1;
    /* A1, dZ1 (floats); dZ2 (floats); W2t; the kernels' scratch (panel floats and list
     * entries); loss (double), correct (byte), idx (uint32), dZ1_max (float) per row. */
    if (!size_muladd(nh, 2 * sizeof(float), 0, &a) ||
        !size_muladd(nk, sizeof(float), a, &a) ||
        !size_muladd(h * k, sizeof(float), a, &a) ||   /* W2t; h * k fits: params did */
        !size_muladd(npanel, sizeof(float), a, &a) ||
        !size_muladd(nlist, sizeof(uint32_t), a, &a) ||
        !size_muladd(rows, sizeof(double) + 1 + sizeof(uint32_t) + sizeof(float), a, &b))
        return -1;
    *workspace_bytes = b;
    return 0;
}

void model_workspace_free(Workspace *w)
{
    free(w->A1);
    free(w->dZ1);
    free(w->dZ1_max);
    free(w->dZ2);
    free(w->W2t);
    free(w->loss);
    free(w->correct);
    free(w->scratch.panel);
    free(w->scratch.list);
    free(w->idx);
    memset(w, 0, sizeof *w);
}

/* Per-sample losses are summed in fixed point (2^-24) so that the total is the same
 * whichever rank holds which sample. */
static void stats_add(ModelStats *st, const Workspace *w, size_t m)
{
    for (size_t r = 0; r < m; r++) {
        double l = w->loss[r];
        if (!(l >= 0.0 && l < MODEL_LOSS_MAX)) {
            st->bad++;
            continue;
        }
        st->loss_fix += (int64_t)llround(l * MODEL_LOSS_SCALE);
        st->correct += w->correct[r];
    }
}

ModelStats model_step_gradients(const Params *p, const KernelsInput *X, const uint8_t *labels,
                                const uint32_t *idx, size_t m, size_t m_global,
                                Workspace *w, size_t chunk, float *grad_f, int64_t *grad_i,
                                float limit, int64_t *bad)
{
    ModelStats st = {0};
    const size_t d = p->d, h = p->h, k = p->k;
    const size_t off2 = d * h + h;   /* dW2 starts after dW1 and db1 */
    /* Exact mode: dW1 and db1 in int32 at the start of grad_i where the bound allows it
     * (the same decision on every rank, from the parameters: st.grad1_bits) */
    KernelsSink s1 = {.out_f = grad_f, .out_i = grad_i, .chunk = chunk, .limit = limit,
                      .bad = bad, .row_max = w->dZ1_max, .written = w->tiles_written,
                      .grad_bound = grad_i ? kernels_grad1_bound(X, p->W2, h, k, chunk) : 0,
                      .out_i32 = grad_i ? (int32_t *)(void *)grad_i : NULL};
    st.grad1_bits = grad_i ? kernels_grad1_i32_bits(X, &s1) : 0;
    if (m == 0) {   /* a rank without a chunk contributes zeros */
        if (grad_f)
            memset(grad_f, 0, p->count * sizeof *grad_f);
        if (grad_i)   /* (the int32 form's zeros too) */
            memset(grad_i, 0, p->count * sizeof *grad_i);
        if (w->tiles_written)   /* all of it written (zeros) */
            memset(w->tiles_written, 1, kernels_feature_tiles(p->d));
        return st;
    }
    KernelsSink s2 = {.out_f = grad_f ? grad_f + off2 : NULL,
                      .out_i = grad_i ? grad_i + off2 : NULL, .chunk = chunk, .limit = limit,
                      .bad = bad};
    const KernelOps *ops = w->ops;
    /* One team for the whole step: each kernel shares its loops among these threads and
     * ends in a barrier, instead of starting and joining a team of its own. */
#pragma omp parallel
    {
        ops->hidden_forward(X, idx, m, d, h, p->W1, p->b1, w->A1, &w->scratch);
        ops->output_backward(w->A1, labels, idx, m, h, k, p->W2, p->b2, w->W2t,
                             1.0f / (float)m_global, w->dZ2, w->dZ1, w->dZ1_max, w->loss,
                             w->correct);
        ops->grad_layer1(X, idx, m, d, h, w->dZ1, &w->scratch, &s1);
        ops->grad_layer2(w->A1, m, h, k, w->dZ2, &s2);
    }
    stats_add(&st, w, m);
    return st;
}

ModelStats model_evaluate(const Params *p, const KernelsInput *X, const uint8_t *labels,
                          size_t first, size_t m, Workspace *w)
{
    ModelStats st = {0};
    for (size_t r0 = 0; r0 < m; r0 += w->rows) {
        size_t n = m - r0 < w->rows ? m - r0 : w->rows;
        for (size_t r = 0; r < n; r++)
            w->idx[r] = (uint32_t)(first + r0 + r);
#pragma omp parallel
        {
            w->ops->hidden_forward(X, w->idx, n, p->d, p->h, p->W1, p->b1, w->A1,
                                   &w->scratch);
            w->ops->output_backward(w->A1, labels, w->idx, n, p->h, p->k, p->W2, p->b2,
                                    w->W2t, 0.0f, NULL, NULL, NULL, w->loss, w->correct);
        }
        stats_add(&st, w, n);
    }
    return st;
}

/* Right or wrong is the kernel's verdict (correct[r]), so the diagonal, and eval's
 * accuracy, equal the trainer's test_acc exactly. The kernel computes z with FMA
 * contraction and the plain loop below without, so a near-tie could round differently;
 * the loop is therefore only asked which class OTHER than the label a wrong sample went to
 * (the kernel's argmax is one of those). */
void model_confusion(const Params *p, const KernelsInput *X, const uint8_t *labels, size_t first,
                     size_t m, Workspace *w, int64_t *conf, double *loss_sum)
{
    const size_t h = p->h, k = p->k;
    if (k == 0 || k > KERNELS_MAX_CLASSES)   /* the kernel computes nothing for these */
        return;
    float z[KERNELS_MAX_CLASSES];            /* (k) */
    for (size_t r0 = 0; r0 < m; r0 += w->rows) {
        size_t n = m - r0 < w->rows ? m - r0 : w->rows;
        for (size_t r = 0; r < n; r++)
            w->idx[r] = (uint32_t)(first + r0 + r);
        w->ops->hidden_forward(X, w->idx, n, p->d, h, p->W1, p->b1, w->A1, &w->scratch);
        w->ops->output_backward(w->A1, labels, w->idx, n, h, k, p->W2, p->b2, w->W2t, 0.0f,
                                NULL, NULL, NULL, w->loss, w->correct);
        for (size_t r = 0; r < n; r++) {
            const size_t y = labels[w->idx[r]];
            const float *a = w->A1 + r * h;   /* (h) */
            for (size_t j = 0; j < k; j++)
                z[j] = p->b2[j];
            for (size_t i = 0; i < h; i++)
                for (size_t j = 0; j < k; j++)
                    z[j] += a[i] * p->W2[i * k + j];
            size_t pred = y;
            if (!w->correct[r]) {
                /* argmax over the classes other than y, first index on ties */
                pred = y == 0 ? 1 : 0;
                for (size_t j = 0; j < k; j++)
                    if (j != y && z[j] > z[pred])
                        pred = j;
            }
            conf[y * k + pred]++;
            *loss_sum += w->loss[r];
        }
    }
}
