/* train: see include/train.h. */
#include "train.h"

#include "checkpoint.h"
#include "data.h"
#include "kernels.h"
#include "model.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MSG_MAX 2048

/* Slots after the gradient in the reduction buffer: per-step totals that ride in the same
 * allreduce, so that a step costs exactly one. */
enum { SLOT_LOSS, SLOT_CORRECT, SLOT_BAD, SLOT_STOP, SLOTS };

typedef struct {
    const Config *cfg;
    const Dist *dist;
    Dataset train, test;
    Params params;
    Workspace ws;
    uint32_t *order;         /* (train.n) this epoch's sample order */
    float *grad_f;           /* (params.count + SLOTS), fast mode */
    int64_t *grad_i;         /* (params.count + SLOTS), exact mode */
    CkptHistory history;
    FILE *metrics;           /* rank 0 */
    char *config_text;       /* resolved INI */
    int64_t step;            /* global steps taken */
    char msg[MSG_MAX];       /* this rank's error, if any */
} Run;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void set_msg(Run *run, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->msg, sizeof run->msg, fmt, ap);
    va_end(ap);
}

/* COLLECTIVE. Every rank says whether it is fine; if one is not, the lowest such rank
 * prints its message and every rank returns 0 (and then leaves the run together). */
static int agree(Run *run, int ok)
{
    int first = dist_first_failure(ok);
    if (first < 0)
        return 1;
    if (first == run->dist->rank) {
        fprintf(stderr, "mlp: [rank %d] error: %s\n", run->dist->rank, run->msg);
        fflush(stderr);
    }
    return 0;
}

/* mkdir -p for the parent directory of path. */
static int make_parent_dirs(const char *path)
{
    char buf[CONFIG_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

static int load_data(Run *run)
{
    const Config *c = run->cfg;
    char err[DATA_ERR_MAX];
    if (data_load(&run->train, c->data.train_images, c->data.train_labels, 0, err,
                  sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    if (c->data.train_limit > 0 && (size_t)c->data.train_limit < run->train.n)
        run->train.n = (size_t)c->data.train_limit;
    if (data_load(&run->test, c->data.test_images, c->data.test_labels, run->train.classes,
                  err, sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    if (run->test.d != run->train.d) {
        set_msg(run, "%s: images are %" PRIu32 "x%" PRIu32 " but %s has %" PRIu32 "x%" PRIu32,
                c->data.test_images, run->test.rows, run->test.cols, c->data.train_images,
                run->train.rows, run->train.cols);
        return 0;
    }
    if (run->train.classes > KERNELS_MAX_CLASSES || run->train.classes < 2) {
        set_msg(run, "%s: %d classes; mlp needs 2..%d", c->data.train_labels,
                run->train.classes, KERNELS_MAX_CLASSES);
        return 0;
    }
    return 1;
}

static int alloc_model(Run *run)
{
    const Config *c = run->cfg;
    Params *p = &run->params;
    size_t d = run->train.d, h = (size_t)c->model.hidden, k = (size_t)run->train.classes;
    if (model_params_init(p, d, h, k) != 0) {
        set_msg(run, "[model] hidden = %ld: cannot allocate %zu x %zu parameters", c->model.hidden,
                d, h);
        return 0;
    }
    model_init_xavier(p, c->model.seed);
    size_t rows = (size_t)c->train.batch;   /* the largest shard: everything on one rank */
    size_t nbuf = p->count + SLOTS;
    run->order = malloc(run->train.n * sizeof *run->order);
    if (c->train.reduce == REDUCE_EXACT)
        run->grad_i = calloc(nbuf, sizeof *run->grad_i);
    else
        run->grad_f = malloc(nbuf * sizeof *run->grad_f);
    if (model_workspace_init(&run->ws, p, rows) != 0 || !run->order ||
        (!run->grad_i && !run->grad_f) || ckpt_history_init(&run->history, 16) != 0) {
        set_msg(run, "out of memory for a %zu-%zu-%zu model with batch %zu", d, h, k, rows);
        return 0;
    }
    return 1;
}

/* Rank 0: the metrics file starts afresh with its header. */
static int open_metrics(Run *run)
{
    const char *path = run->cfg->log.metrics;
    if (make_parent_dirs(path) != 0 || !(run->metrics = fopen(path, "w"))) {
        set_msg(run, "%s: cannot create metrics file: %s", path, strerror(errno));
        return 0;
    }
    fprintf(run->metrics, "epoch,train_loss,train_acc,test_acc,seconds,samples_per_s,param_hash\n");
    if (fflush(run->metrics) != 0) {
        set_msg(run, "%s: cannot write: %s", path, strerror(errno));
        return 0;
    }
    return 1;
}

static void print_banner(const Run *run)
{
    const Dist *d = run->dist;
    const Config *c = run->cfg;
    printf("mlp %s: %d rank%s on %d node%s, %d thread%s per rank (%s), %d CPUs per node\n",
           MLP_VERSION, d->size, d->size == 1 ? "" : "s", d->nodes, d->nodes == 1 ? "" : "s",
           d->threads, d->threads == 1 ? "" : "s",
           d->threads_from_env ? "OMP_NUM_THREADS" : "CPUs / ranks on node", d->cpus_node);
    if (d->oversubscribed)
        printf("warning: oversubscribed: %d ranks x %d threads on a node with %d CPUs; steps "
               "will be slow (see README, Launching)\n",
               d->local_size, d->threads, d->cpus_node);
    long nchunks = (c->train.batch + c->train.chunk - 1) / c->train.chunk;
    if (nchunks < d->size)
        printf("warning: a minibatch is %ld chunk%s (batch %ld / chunk %ld), so only %ld of %d "
               "ranks compute; lower train.chunk to use them all\n",
               nchunks, nchunks == 1 ? "" : "s", c->train.batch, c->train.chunk, nchunks, d->size);
    printf("data: %zu training samples%s, %zu test samples, d = %zu (%" PRIu32 "x%" PRIu32
           "), K = %d classes\n",
           run->train.n, c->data.train_limit ? " (train_limit)" : "", run->test.n, run->train.d,
           run->train.rows, run->train.cols, run->train.classes);
    printf("model: %zu-%zu-%zu, %zu parameters; batch %ld, lr %g, reduce %s (chunk %ld)\n",
           run->params.d, run->params.h, run->params.k, run->params.count, c->train.batch,
           c->train.lr, config_reduce_name(c->train.reduce), c->train.chunk);
    printf("%s", run->config_text);
    fflush(stdout);
}

typedef struct {
    double loss;        /* mean over the epoch's samples */
    double acc;
    int diverged_step;  /* -1, or the step within the epoch */
    int64_t bad;
} EpochResult;

/* One epoch of SGD. COLLECTIVE: every rank runs the same steps and one reduction each. */
static EpochResult run_epoch(Run *run, int64_t epoch)
{
    const Config *c = run->cfg;
    const Dist *d = run->dist;
    Params *p = &run->params;
    const size_t n = run->train.n, B = (size_t)c->train.batch, chunk = (size_t)c->train.chunk;
    const size_t steps = (n + B - 1) / B, count = p->count;
    const int exact = c->train.reduce == REDUCE_EXACT;
    const int progress = c->log.progress == PROGRESS_ON ||
                         (c->log.progress == PROGRESS_AUTO && isatty(STDERR_FILENO));
    EpochResult res = {0, 0, -1, 0};
    double loss_sum = 0, t_progress = now_seconds();
    int64_t correct = 0;

    data_epoch_order(run->order, n, c->model.seed, (uint64_t)epoch);
    for (size_t s = 0; s < steps; s++) {
        const size_t b0 = s * B, m = n - b0 < B ? n - b0 : B;
        size_t r0, r1;
        dist_shard(m, chunk, d->rank, d->size, &r0, &r1);
        const uint32_t *idx = run->order + b0 + r0;
        ModelStats st;
        int64_t bad = 0;
        if (exact) {
            /* Each chunk's sum must fit so that the sum of all chunks stays below 2^62. */
            const size_t nchunks = (m + chunk - 1) / chunk;
            const float limit = (float)(0x1p22 / (double)nchunks);
            int64_t *g = run->grad_i;   /* zero: calloc'd, then consumed by each update */
            st = model_step_gradients(p, run->train.images, run->train.labels, idx, r1 - r0, m,
                                      &run->ws, chunk, NULL, g, limit, &bad);
            g[count + SLOT_LOSS] = st.loss_fix;
            g[count + SLOT_CORRECT] = st.correct;
            g[count + SLOT_BAD] = bad + st.bad;
            g[count + SLOT_STOP] = 0;
            dist_sum_i64(d, g, count + SLOTS);
            if (g[count + SLOT_BAD] > 0) {
                res.bad = g[count + SLOT_BAD];
                res.diverged_step = (int)s;
                return res;
            }
            kernels_sgd_fixed(p->block, g, count, (float)c->train.lr);
            loss_sum += (double)g[count + SLOT_LOSS] / MODEL_LOSS_SCALE;
            correct += g[count + SLOT_CORRECT];
        } else {
            float *g = run->grad_f;
            st = model_step_gradients(p, run->train.images, run->train.labels, idx, r1 - r0, m,
                                      &run->ws, chunk, g, NULL, 0, NULL);
            g[count + SLOT_LOSS] = (float)((double)st.loss_fix / MODEL_LOSS_SCALE);
            g[count + SLOT_CORRECT] = (float)st.correct;
            g[count + SLOT_BAD] = (float)st.bad;
            g[count + SLOT_STOP] = 0;
            dist_sum_f32(d, g, count + SLOTS);
            int64_t nonfinite = kernels_count_nonfinite(g, count);
            if (nonfinite > 0 || g[count + SLOT_BAD] > 0) {
                res.bad = nonfinite + (int64_t)g[count + SLOT_BAD];
                res.diverged_step = (int)s;
                return res;
            }
            kernels_sgd_f32(p->block, g, count, (float)c->train.lr);
            loss_sum += g[count + SLOT_LOSS];
            correct += (int64_t)g[count + SLOT_CORRECT];
        }
        run->step++;
        if (progress && d->rank == 0 && now_seconds() - t_progress > 0.5) {
            fprintf(stderr, "\repoch %" PRId64 ": step %zu/%zu", epoch + 1, s + 1, steps);
            fflush(stderr);
            t_progress = now_seconds();
        }
    }
    if (progress && d->rank == 0)
        fprintf(stderr, "\r%40s\r", "");
    res.loss = loss_sum / (double)n;
    res.acc = (double)correct / (double)n;
    return res;
}

/* COLLECTIVE. Test accuracy over the whole test set: each rank takes a contiguous block,
 * so each sample is counted exactly once whatever the rank count. */
static double evaluate(Run *run)
{
    const Dist *d = run->dist;
    const size_t N = run->test.n;
    size_t first = N * (size_t)d->rank / (size_t)d->size;
    size_t last = N * ((size_t)d->rank + 1) / (size_t)d->size;
    ModelStats st = model_evaluate(&run->params, run->test.images, run->test.labels, first,
                                   last - first, &run->ws);
    int64_t sums[2] = {st.correct, st.loss_fix};
    dist_sum_i64(d, sums, 2);
    return (double)sums[0] / (double)N;
}

static int save_checkpoint(Run *run, int64_t epoch, char *path, size_t path_len)
{
    const Config *c = run->cfg;
    CkptState s;
    memset(&s, 0, sizeof s);
    s.d = run->params.d, s.hidden = run->params.h, s.classes = run->params.k;
    s.W1 = run->params.W1, s.b1 = run->params.b1, s.W2 = run->params.W2, s.b2 = run->params.b2;
    s.epoch = epoch, s.step = run->step, s.seed = c->model.seed, s.batch = c->train.batch;
    s.lr = c->train.lr;
    snprintf(s.reduce, sizeof s.reduce, "%s", config_reduce_name(c->train.reduce));
    s.ranks = run->dist->size, s.threads_per_rank = run->dist->threads;
    s.config = run->config_text;
    snprintf(s.mlp_version, sizeof s.mlp_version, "%s", MLP_VERSION);
    s.history = run->history;
    char err[CKPT_ERR_MAX];
    if (ckpt_save(c->checkpoint.dir, &s, c->checkpoint.keep, path, path_len, err,
                  sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    return 1;
}

static int check_unimplemented(Run *run)
{
    const Config *c = run->cfg;
    if (strcmp(c->checkpoint.resume, "none") != 0) {
        set_msg(run, "%s: [checkpoint] resume = '%s': resuming is not implemented in mlp %s; "
                "use none", c->source, c->checkpoint.resume, MLP_VERSION);
        return 0;
    }
    if (c->checkpoint.every_steps != 0) {
        set_msg(run, "%s: [checkpoint] every_steps = %ld: mid-epoch checkpoints are not "
                "implemented in mlp %s; use 0", c->source, c->checkpoint.every_steps,
                MLP_VERSION);
        return 0;
    }
    return 1;
}

static int train_loop(Run *run)
{
    const Config *c = run->cfg;
    const Dist *d = run->dist;
    const int64_t epochs = c->train.epochs;
    double test_acc = NAN;
    char ckpt_path[CONFIG_PATH_MAX + 64] = "";

    for (int64_t e = 0; e < epochs; e++) {
        const int last = e + 1 == epochs;
        double t0 = now_seconds();
        EpochResult r = run_epoch(run, e);
        double seconds = now_seconds() - t0;
        if (r.diverged_step >= 0) {
            if (d->rank == 0)
                fprintf(stderr, "mlp: [rank 0] error: training diverged at epoch %" PRId64
                        " step %d: %" PRId64 " non-finite or out-of-range gradient or loss "
                        "values (is train.lr = %g too large?); no checkpoint written for it\n",
                        e + 1, r.diverged_step + 1, r.bad, c->train.lr);
            return 0;
        }
        double acc = NAN;
        if (last || (c->train.eval_every > 0 && (e + 1) % c->train.eval_every == 0))
            acc = test_acc = evaluate(run);
        uint64_t hash = model_param_hash(&run->params);
        int ok = ckpt_history_push(&run->history, e + 1, r.loss, r.acc, acc, seconds) == 0;
        if (!ok)
            set_msg(run, "out of memory for the training history");
        if (d->rank == 0 && ok) {
            printf("epoch %3" PRId64 "/%" PRId64 "  loss %.4f  train_acc %.4f  test_acc %.4f  "
                   "%.2f s  %.0f samples/s\n",
                   e + 1, epochs, r.loss, r.acc, acc, seconds, (double)run->train.n / seconds);
            fflush(stdout);
            fprintf(run->metrics, "%" PRId64 ",%.9g,%.9g,%.9g,%.6f,%.1f,%016" PRIx64 "\n", e + 1,
                    r.loss, r.acc, acc, seconds, (double)run->train.n / seconds, hash);
            if (fflush(run->metrics) != 0 || ferror(run->metrics)) {
                set_msg(run, "%s: cannot write: %s", c->log.metrics, strerror(errno));
                ok = 0;
            }
            if (ok && (last || (c->checkpoint.every > 0 && (e + 1) % c->checkpoint.every == 0)))
                ok = save_checkpoint(run, e + 1, ckpt_path, sizeof ckpt_path);
        }
        if (!agree(run, ok))
            return 0;
    }
    if (d->rank == 0) {
        printf("done: test accuracy %.4f (%.2f%%) after %" PRId64 " epochs; checkpoint %s; "
               "metrics %s\n",
               test_acc, 100 * test_acc, epochs, ckpt_path, c->log.metrics);
        fflush(stdout);
    }
    return 1;
}

static void run_free(Run *run)
{
    data_free(&run->train);
    data_free(&run->test);
    model_params_free(&run->params);
    model_workspace_free(&run->ws);
    free(run->order);
    free(run->grad_f);
    free(run->grad_i);
    ckpt_history_free(&run->history);
    if (run->metrics)
        fclose(run->metrics);
    free(run->config_text);
}

int train_run(const Config *cfg, const Dist *dist)
{
    Run run;
    memset(&run, 0, sizeof run);
    run.cfg = cfg;
    run.dist = dist;
    int ok = agree(&run, check_unimplemented(&run));
    ok = ok && agree(&run, load_data(&run));
    ok = ok && agree(&run, alloc_model(&run));
    if (ok) {
        run.config_text = config_to_ini(cfg);
        if (!run.config_text)
            set_msg(&run, "out of memory");
        ok = agree(&run, run.config_text != NULL);
    }
    ok = ok && agree(&run, dist->rank != 0 || open_metrics(&run));
    if (ok && dist->rank == 0)
        print_banner(&run);
    ok = ok && train_loop(&run);
    run_free(&run);
    return ok ? 0 : 1;
}
