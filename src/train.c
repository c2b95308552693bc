/* train: see include/train.h. */
#include "train.h"

#include "augment.h"
#include "checkpoint.h"
#include "data.h"
#include "fsafe.h"
#include "kernels.h"
#include "buildinfo.h"
#include "model.h"
#include "optim.h"
#include "rundir.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MSG_MAX 2048

/* Slots after the gradient in the reduction buffer: per-step totals that ride in the same
 * allreduce, so that a step costs exactly one. */
enum { SLOT_LOSS, SLOT_CORRECT, SLOT_BAD, SLOT_STOP, SLOTS };

/* The one global: set by SIGTERM/SIGUSR1 (pre-emption), read at every step. Atomic (and
 * lock-free, so async-signal-safe) because the handler may run on an OpenMP thread. */
static atomic_int train_stop_signal;

static void on_stop_signal(int sig)
{
    if (atomic_exchange(&train_stop_signal, sig))   /* a second signal: leave at once */
        _exit(128 + sig);
}

/* COLLECTIVE. Whether a stop signal reached any rank. */
static int stop_requested(void)
{
    return dist_max_i64(atomic_load(&train_stop_signal) != 0) > 0;
}

/* Where training stands: completed epochs, and how far into the next one. */
typedef struct {
    int64_t epoch;        /* completed epochs */
    int64_t epoch_step;   /* steps done of epoch `epoch` + 1 */
    double loss_sum;      /* sum of per-sample losses over those steps */
    int64_t correct;
    double seconds;       /* training time spent on them */
} Position;

typedef struct {
    const Config *cfg;
    const Dist *dist;
    Dataset train, test;     /* features point into `inputs`; labels are this rank's */
    DataShape train_shape, test_shape;   /* as the headers announce (before train_limit) */
    DataType type;           /* how the inputs are held: uint8 pixels or float32 */
    DistShared inputs;       /* the node's one copy of the train then the test inputs */
    size_t test_offset;      /* where the test inputs start in it, bytes */
    size_t input_bytes;      /* its size: train inputs, padding to 64 bytes, test inputs */
    KernelsInput train_in, test_in;   /* the kernels' view of the two */
    double *mean, *std;      /* (d) data.normalize = standardize: the training set's */
    Params params;
    Workspace ws;
    uint32_t *order;         /* (train.n) this epoch's sample order (n_train used) */
    uint64_t *sig;           /* (train.n) kernels_signatures of the training samples */
    size_t n_train;          /* samples trained on: train.n less the validation split */
    uint32_t *train_idx;     /* (n_train) their indices in the file, ascending; NULL when
                                data.validation = 0 (then the identity) */
    size_t val_n;            /* data.validation: samples held out, over all ranks */
    size_t val_count;        /* this rank's block of them, gathered into: */
    uint8_t *val_images;     /* (val_count, d) elements of the input type */
    KernelsInput val_in, aug_in;   /* the kernels' view of val_images, aug_images */
    uint8_t *val_labels;     /* (val_count) */
    OptimSpec optim;
    ScheduleSpec schedule;
    float *velocity;         /* (params.count) momentum/nesterov state, the same on every rank */
    /* the parameters and velocity in the node's window (alloc_reduce): each rank updates
     * its slice; node_bad: (local ranks) each one's count of non-finite summed values */
    int params_shared;
    int64_t *node_bad;
    Augment aug;             /* data.augment != none: */
    uint8_t *aug_images;     /* (shard rows, d) this step's distorted shard */
    uint8_t *aug_labels;     /* (shard rows) */
    uint32_t *aug_idx;       /* (shard rows) 0, 1, 2, ...: rows of aug_images */
    double best_val_acc;     /* the best validation accuracy so far, at epoch best_epoch */
    int64_t best_epoch;      /* 0 = none yet */
    int metrics_v1;          /* rank 0: continuing a metrics file without the val columns */
    DistReduce reduce;       /* the gradient buffer and its sum over the ranks */
    float *grad_f;           /* (params.count + SLOTS), fast mode: reduce.buf */
    int64_t *grad_i;         /* (params.count + SLOTS), exact mode: reduce.buf */
    const float *sum_f;      /* the step's sum over every rank (reduce_step) */
    const int64_t *sum_i;
    int sum_bits;            /* exact mode: > 0 when sum_i's first sum_n32 elements (dW1,
                                db1) are int32 in units of 2^-sum_bits (dist_reduce_fixed) */
    size_t sum_n32;
    CkptHistory history;
    FILE *metrics;           /* rank 0 */
    char *config_text;       /* resolved INI */
    int64_t step;            /* global steps taken */
    Position pos;
    int64_t order_epoch;     /* the epoch `order` was made for; -1 = none */
    char resumed_from[CONFIG_PATH_MAX + 80];
    char resume_note[MSG_MAX];   /* rank 0 prints it: why resume = auto took another file */
    char resume_warn[MSG_MAX];   /* rank 0 prints it: the checkpoint came from another binary */
    RunDir rundir;           /* rank 0: checkpoint.dir, locked for the whole run */
    RunFiles prior;          /* rank 0: what a previous run left there */
    int outputs_ready;       /* rank 0: prepare_outputs wrote into the run directory */
    int replace;             /* rank 0: checkpoint.overwrite replaces the run found there */
    char msg[MSG_MAX];       /* this rank's error, if any */
} Run;

static size_t steps_per_epoch(const Run *run)
{
    const size_t B = (size_t)run->cfg->train.batch;
    return (run->n_train + B - 1) / B;
}

/* Rows of the largest shard any rank computes: ceil(chunks / ranks) whole chunks. */
static size_t shard_rows(const Config *c, int ranks)
{
    const size_t B = (size_t)c->train.batch, chunk = (size_t)c->train.chunk;
    const size_t nchunks = (B + chunk - 1) / chunk;
    const size_t rows = (nchunks + (size_t)ranks - 1) / (size_t)ranks * chunk;
    return rows < B ? rows : B;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Where training stands, numbered as the progress and epoch lines number it: "after epoch
 * 3" at an epoch boundary, "at epoch 4 step 89/1875" within one (epochs from 1). */
static void describe_position(char *buf, size_t len, const Run *run)
{
    const Position *pos = &run->pos;
    if (pos->epoch_step == 0)
        snprintf(buf, len, "after epoch %" PRId64, pos->epoch);
    else
        snprintf(buf, len, "at epoch %" PRId64 " step %" PRId64 "/%zu", pos->epoch + 1,
                 pos->epoch_step, steps_per_epoch(run));
}

static void set_msg(Run *run, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->msg, sizeof run->msg, fmt, ap);
    va_end(ap);
}

/* One more line of the warnings rank 0 prints when the run resumes. */
static void add_resume_warn(Run *run, const char *fmt, ...)
{
    char *w = run->resume_warn;
    const size_t used = strlen(w);
    if (used + 2 >= sizeof run->resume_warn)
        return;
    if (used)
        w[used] = '\n', w[used + 1] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w + strlen(w), sizeof run->resume_warn - strlen(w), fmt, ap);
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

/* Where the training (test = 0) or test set lives: [data]'s paths, and for HDF5 the
 * dataset paths in their group. names: two buffers of DATA_NAME_MAX bytes. */
#define DATA_NAME_MAX 600
static DataSource data_source(const Config *c, int test, char names[2][DATA_NAME_MAX])
{
    const char *group = test ? c->data.test_group : c->data.train_group;
    /* Both fit: a group and a name are at most 255 bytes each (config.h). */
    data_dataset_path(names[0], DATA_NAME_MAX, group, c->data.x_dataset);
    data_dataset_path(names[1], DATA_NAME_MAX, group, c->data.y_dataset);
    const int format = data_format_parse(c->data.format);
    return (DataSource){test ? c->data.test_images : c->data.train_images,
                        test ? c->data.test_labels : c->data.train_labels, names[0], names[1],
                        format < 0 ? DATA_FORMAT_AUTO : (DataFormat)format, 0};
}

/* Every rank: both pairs of headers, checked before any feature is read, so that the
 * node's shared block can be sized: by the element type the inputs will be held in
 * (uint8 pixels only when both sets are uint8 and not standardised; float32 otherwise). */
static int probe_data(Run *run)
{
    const Config *c = run->cfg;
    const DataShape *tr = &run->train_shape, *te = &run->test_shape;
    char err[DATA_ERR_MAX], names[2][DATA_NAME_MAX];
    DataSource train = data_source(c, 0, names);
    if (data_probe_source(&run->train_shape, &train, err, sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    DataSource test = data_source(c, 1, names);
    if (data_probe_source(&run->test_shape, &test, err, sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    if (te->d != tr->d) {
        if (tr->native == DATA_U8 && te->native == DATA_U8 && tr->rows > 1 && te->rows > 1)
            set_msg(run, "%s: images are %" PRIu32 "x%" PRIu32 " but %s has %" PRIu32 "x%"
                    PRIu32, c->data.test_images, te->rows, te->cols, c->data.train_images,
                    tr->rows, tr->cols);
        else
            set_msg(run, "%s: %zu features per sample but %s has %zu", c->data.test_images,
                    te->d, c->data.train_images, tr->d);
        return 0;
    }
    const int standardize = !strcmp(c->data.normalize, "standardize");
    run->type = tr->native == DATA_U8 && te->native == DATA_U8 && !standardize ? DATA_U8
                                                                                : DATA_F32;
    const size_t elem = data_type_size(run->type);
    if (tr->d > UINT32_MAX || tr->n > UINT32_MAX) {
        set_msg(run, "%s: %zu samples of %zu pixels: mlp indexes both with 32 bits",
                c->data.train_images, tr->n, tr->d);
        return 0;
    }
    /* The node's block: the training inputs, then the test inputs from the next 64-byte
     * boundary, in bytes of the held type (HDF5's expanded size, whatever its storage).
     * Each product fits in elements (the probe checked); in bytes, and the sum, must too. */
    const size_t train_n = tr->n * tr->d, test_n = te->n * te->d;
    if (train_n > SIZE_MAX / elem || test_n > SIZE_MAX / elem ||
        train_n * elem > SIZE_MAX - 63 - test_n * elem) {
        set_msg(run, "%s and %s: %zu + %zu values overflow this machine's sizes",
                c->data.train_images, c->data.test_images, train_n, test_n);
        return 0;
    }
    run->test_offset = (train_n * elem + 63) / 64 * 64;
    run->input_bytes = run->test_offset + test_n * elem;
    return 1;
}

/* MemAvailable from /proc/meminfo in bytes, or 0 if unknown. */
static size_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return kb > SIZE_MAX / 1024 ? SIZE_MAX : (size_t)kb * 1024;
}

/* The inputs are held once per node, whatever its rank count: they must fit once, checked
 * before the block is allocated (the model's share per rank is checked by check_memory).
 * HDF5 inputs count at their expanded, converted size, before anything is decompressed. */
static int check_data_memory(Run *run)
{
    const Config *c = run->cfg;
    const size_t bytes = run->input_bytes, avail = mem_available();
    if (run->dist->local_rank == 0 && avail && bytes > avail) {
        set_msg(run, "%s and %s: the inputs need %zu bytes (%s, one copy per node, shared by "
                "its ranks) but %zu bytes are available", c->data.train_images,
                c->data.test_images, bytes, run->type == DATA_U8 ? "uint8" : "float32", avail);
        return 0;
    }
    return 1;
}

/* COLLECTIVE. The node's block for the inputs (dist_node_shared). */
static int share_data(Run *run)
{
    char err[MSG_MAX];
    if (dist_node_shared(&run->inputs, run->input_bytes, err, sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    return 1;
}

/* Every rank reads and checks both pairs of files in full: the node's leader keeps the
 * inputs in the node's shared block, the other ranks only checksum theirs (ds->crc), so
 * that check_same_data can compare every rank's files with rank 0's. Labels are per rank. */
static int load_data(Run *run)
{
    const Config *c = run->cfg;
    const int leader = run->inputs.leader;
    uint8_t *base = run->inputs.base;
    const size_t elem = data_type_size(run->type);
    const size_t train_bytes = run->train_shape.n * run->train_shape.d * elem;
    const size_t test_bytes = run->test_shape.n * run->test_shape.d * elem;
    char err[DATA_ERR_MAX], names[2][DATA_NAME_MAX];
    DataSource train = data_source(c, 0, names);
    if (data_read_into(&run->train, &train, (int)c->model.classes, run->type, 0,
                       leader ? base : NULL, train_bytes, err, sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    DataSource test = data_source(c, 1, names);
    if (data_read_into(&run->test, &test, run->train.classes, run->type, 0,
                       leader ? base + run->test_offset : NULL, test_bytes, err,
                       sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    if (run->train.classes > KERNELS_MAX_CLASSES || run->train.classes < 2) {
        set_msg(run, "%s: %d classes; mlp needs 2..%d", c->data.train_labels,
                run->train.classes, KERNELS_MAX_CLASSES);
        return 0;
    }
    return 1;
}

/* COLLECTIVE. Every rank must train on the same bytes: a rank that read a different file
 * under the same path (a stale copy on a node-local disk, say) would silently break the
 * run, so the checksums (data.c's, over the whole files) and sizes are compared with rank
 * 0's. Only then does a rank take its node's shared pixels: its leader's files matched
 * rank 0's too, so they are the bytes this rank read. */
static int check_same_data(Run *run)
{
    const Config *c = run->cfg;
    Dataset *sets[2] = {&run->train, &run->test};
    const char *paths[2][2] = {{c->data.train_images, c->data.train_labels},
                               {c->data.test_images, c->data.test_labels}};
    uint64_t crc0[2], size0[2];
    dist_node_shared_sync(&run->inputs);   /* the leader's inputs are visible from here on */
    for (int i = 0; i < 2; i++) {
        crc0[i] = dist_root_value(sets[i]->crc);
        size0[i] = dist_root_value((uint64_t)sets[i]->n << 32 | sets[i]->d); /* both < 2^32 */
    }
    for (int i = 0; i < 2; i++) {
        const Dataset *ds = sets[i];
        const uint64_t size = (uint64_t)ds->n << 32 | ds->d;
        if (size != size0[i]) {
            set_msg(run, "%s, %s: content differs from rank 0's (%zu samples of %zu %s, "
                    "rank 0 has %" PRIu64 " of %" PRIu64 "): every rank must read the same data",
                    paths[i][0], paths[i][1], ds->n, ds->d,
                    run->type == DATA_U8 ? "pixels" : "features", size0[i] >> 32,
                    size0[i] & UINT32_MAX);
            return 0;
        }
        if (ds->crc != crc0[i]) {
            set_msg(run, "%s, %s: content differs from rank 0's (CRC-32 %08" PRIx32 ", rank 0 "
                    "has %08" PRIx64 "): every rank must read the same data", paths[i][0],
                    paths[i][1], ds->crc, crc0[i]);
            return 0;
        }
    }
    uint8_t *base = run->inputs.base;
    if (run->type == DATA_U8) {
        run->train.images = base;
        run->test.images = base + run->test_offset;
        run->train_in = (KernelsInput){.u8 = run->train.images};
        run->test_in = (KernelsInput){.u8 = run->test.images};
    } else {
        run->train.features = (float *)(void *)base;
        run->test.features = (float *)(void *)(base + run->test_offset);
        run->train_in = (KernelsInput){.f32 = run->train.features};
        run->test_in = (KernelsInput){.f32 = run->test.features};
    }
    if (c->data.train_limit > 0 && (size_t)c->data.train_limit < run->train.n)
        run->train.n = (size_t)c->data.train_limit;
    return 1;
}

/* COLLECTIVE. The gradient buffer, in the node's shared window when the ranks of a node
 * sum through it (dist_reduce_init), with a map of the tiles of dW1 rows that a rank's
 * kernels leave unwritten because no sample of its shard reaches them (the sum skips
 * them: at 8 ranks x 4 MNIST samples, 46% of the tiles). */
static int alloc_reduce(Run *run)
{
    const int exact = run->cfg->train.reduce == REDUCE_EXACT;
    Params *p = &run->params;
    const size_t nvec = run->velocity ? 2 : 1;
    const size_t pbytes = (p->count * nvec + 1) / 2 * 2 * sizeof(float);   /* int64 after it */
    const size_t extra = pbytes + (size_t)run->dist->local_size * sizeof(int64_t);
    if (dist_reduce_init(&run->reduce, run->dist, p->count + SLOTS,
                         exact ? sizeof(int64_t) : sizeof(float), kernels_tile_rows() * p->h,
                         (p->d + 1) * p->h, extra, run->msg, sizeof run->msg) != 0)
        return 0;
    run->ws.tiles_written = run->reduce.map;
    if (run->reduce.extra) {
        /* With the window, one copy of the parameters (and velocity) per node, in it:
         * every rank reads them, and updates only its slice (update_params), instead of
         * every rank updating a copy of its own (at 8 ranks on a node, 8 passes over
         * them per step). The node's rank 0 copies them in (every rank has initialised
         * the same values). */
        float *block = run->reduce.extra, *vel = run->velocity ? block + p->count : NULL;
        if (run->dist->local_rank == 0) {
            memcpy(block, p->block, p->count * sizeof *block);
            if (vel)
                memcpy(vel, run->velocity, p->count * sizeof *vel);
        }
        dist_reduce_sync(&run->reduce);
        model_params_move(p, block);
        if (vel) {
            free(run->velocity);
            run->velocity = vel;
        }
        run->node_bad = (int64_t *)(void *)((char *)run->reduce.extra + pbytes);
        run->params_shared = 1;
    }
    if (exact)
        run->grad_i = run->reduce.buf;
    else
        run->grad_f = run->reduce.buf;
    return 1;
}

/* data.normalize = standardize: room for the statistics. */
static int alloc_standardize(Run *run)
{
    if (strcmp(run->cfg->data.normalize, "standardize") != 0)
        return 1;
    run->mean = malloc(run->train.d * sizeof *run->mean);
    run->std = malloc(run->train.d * sizeof *run->std);
    if (!run->mean || !run->std) {
        set_msg(run, "out of memory for the statistics of %zu features", run->train.d);
        return 0;
    }
    return 1;
}

/* The sample that data.validation's split puts first, as an "epoch" of data_epoch_order
 * that no run reaches (train.epochs <= 10^6): the split is a function of the seed alone. */
#define VALIDATION_KEY UINT64_MAX

/* data.validation = N: the marks (train.n) of the N training samples held out, the first N
 * of a permutation of the file's samples drawn from the seed alone, the same on every rank.
 * NULL with *oom = 0 when nothing is held out (N = 0, or N >= train.n, which
 * split_validation refuses); NULL with *oom = 1 when out of memory. */
static uint8_t *held_out_mask(const Run *run, int *oom)
{
    const size_t n = run->train.n, N = (size_t)run->cfg->data.validation;
    *oom = 0;
    if (N == 0 || N >= n)
        return NULL;
    uint8_t *held = calloc(n, 1);
    uint32_t *order = malloc(n * sizeof *order);
    if (held && order) {
        data_epoch_order(order, n, run->cfg->model.seed, VALIDATION_KEY);
        for (size_t i = 0; i < N; i++)
            held[order[i]] = 1;
    } else {
        free(held);
        held = NULL;
        *oom = 1;
    }
    free(order);
    return held;
}

/* NODE-COLLECTIVE (every rank). data.normalize = standardize: every rank computes the
 * per-feature mean and standard deviation of the training samples it trains on (after
 * train_limit, without the validation split's) from the node's shared copy, in
 * data_standardize_stats' fixed order, so they are the same bits on every rank (and they
 * go into the checkpoint for eval and predict). Once every rank of the node has read the
 * raw values, the leader standardises the shared training and test inputs in place (the
 * held-out samples with the training set's statistics), and the result is made visible.
 * 0 when out of memory (then nothing is standardised; every rank calls the syncs). */
static int standardize_data(Run *run)
{
    const size_t d = run->train.d;
    int oom = 0;
    uint8_t *held = run->mean ? held_out_mask(run, &oom) : NULL;
    if (run->mean && !oom)
        data_standardize_stats(run->train.features, held, run->train.n, d, run->mean,
                               run->std);
    free(held);
    if (oom)
        set_msg(run, "out of memory for the validation split of %ld samples",
                run->cfg->data.validation);
    if (!agree(run, !oom))
        return 0;
    if (!run->mean)
        return 1;
    dist_node_shared_sync(&run->inputs);   /* every rank is done reading the raw values */
    if (run->inputs.leader) {
        data_standardize_apply(run->train.features, run->train.n, d, run->mean, run->std);
        data_standardize_apply(run->test.features, run->test.n, d, run->mean, run->std);
    }
    dist_node_shared_sync(&run->inputs);
    return 1;
}

/* The model must fit before anything is allocated: a clear error with the bytes it needs,
 * not an out-of-memory kill in the middle of a run. */
static int check_memory(Run *run)
{
    const Config *c = run->cfg;
    size_t d = run->train.d, h = (size_t)c->model.hidden, k = (size_t)run->train.classes;
    size_t rows = shard_rows(c, run->dist->size), pb, wb, total;
    size_t grad_elem = c->train.reduce == REDUCE_EXACT ? sizeof(int64_t) : sizeof(float);
    if (model_memory(d, h, k, rows, &pb, &wb) != 0 || pb / sizeof(float) > SIZE_MAX / grad_elem - SLOTS ||
        pb > SIZE_MAX - wb || pb + wb > SIZE_MAX - (pb / sizeof(float) + SLOTS) * grad_elem) {
        set_msg(run, "[model] hidden = %ld with d = %zu and [train] batch = %ld: the sizes "
                "overflow", c->model.hidden, d, c->train.batch);
        return 0;
    }
    /* + the sample order and the samples' signatures (kernels_signatures), and (rank 0) a
     * checkpoint's in-memory file image, about pb. The
     * pixels are not counted: they are in memory already, once per node (check_data_memory),
     * so MemAvailable has already gone down by them. */
    total = 2 * pb + wb + (pb / sizeof(float) + SLOTS) * grad_elem +
            run->train.n * (sizeof(uint32_t) + sizeof(uint64_t));
    /* + the velocity, the distorted shard and the validation block (small next to these
     * unless h or the batch is huge; bounded by the checks above times small factors) */
    if (c->train.optimizer != OPTIM_SGD)
        total += pb;
    if (c->data.augment != AUGMENT_NONE)
        total += rows * (d + 5) + (size_t)run->dist->threads * 3 * d * sizeof(float);
    total += (size_t)c->data.validation / (size_t)run->dist->size * (d + 1) + run->train.n * 4;
    size_t avail = mem_available(), ranks = (size_t)run->dist->local_size;
    if (avail && total > avail / ranks) {
        set_msg(run, "[model] hidden = %ld with [train] batch = %ld needs %zu bytes per rank "
                "(parameters %zu, gradient %zu, workspace %zu), x %zu ranks on this node, but "
                "%zu bytes are available", c->model.hidden, c->train.batch, total, pb,
                (pb / sizeof(float) + SLOTS) * grad_elem, wb, ranks, avail);
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
    size_t rows = shard_rows(c, run->dist->size);
    run->order = malloc(run->train.n * sizeof *run->order);
    /* the forward pass's tiles group samples by their signatures: worth it when a shard
     * has more than one tile (not at 8 ranks x 4 samples, configs/mnist.ini's -np 8) */
    const int grouped = rows > kernels_tile_rows();
    run->sig = grouped ? malloc(run->train.n * sizeof *run->sig) : NULL;
    if (run->sig) {
        kernels_signatures(&run->train_in, run->train.n, d, run->sig);
        run->train_in.sig = run->sig;
    }
    run->optim = (OptimSpec){c->train.optimizer, (float)c->train.momentum};
    run->schedule = (ScheduleSpec){c->train.schedule, c->train.lr, c->train.lr_min,
                                   c->train.warmup_epochs, c->train.step_epochs,
                                   c->train.step_gamma, c->train.epochs};
    int extra_ok = 1;
    if (optim_has_velocity(&run->optim))
        extra_ok = (run->velocity = calloc(p->count, sizeof *run->velocity)) != NULL;
    if (c->data.augment != AUGMENT_NONE && (run->type != DATA_U8 || run->train.rows < 2)) {
        set_msg(run, "[data] augment = %s distorts images: it needs uint8 images with rows and "
                "columns (IDX), not %s features", augment_kind_name(c->data.augment),
                run->type == DATA_U8 ? "flat uint8" : "float32");
        return 0;
    }
    if (c->data.augment != AUGMENT_NONE && extra_ok) {
        const AugmentSpec spec = {c->data.augment, c->data.elastic_sigma, c->data.elastic_alpha,
                                  c->data.affine_rotate, c->data.affine_scale,
                                  c->data.affine_shift};
        run->aug_images = malloc(rows * d);
        run->aug_labels = malloc(rows);
        run->aug_idx = malloc(rows * sizeof *run->aug_idx);
        extra_ok = run->aug_images && run->aug_labels && run->aug_idx &&
                   augment_init(&run->aug, &spec, run->train.rows, run->train.cols,
                                run->dist->threads) == 0;
        for (size_t r = 0; extra_ok && r < rows; r++)
            run->aug_idx[r] = (uint32_t)r;
        run->aug_in = (KernelsInput){.u8 = run->aug_images};
    }
    if (model_workspace_init(&run->ws, p, rows) != 0 || !run->order || (grouped && !run->sig) ||
        ckpt_history_init(&run->history, 16) != 0 ||
        !extra_ok) {
        set_msg(run, "out of memory for a %zu-%zu-%zu model with batch %zu", d, h, k, rows);
        return 0;
    }
    if (model_workspace_kernels(&run->ws, c->train.kernels) != 0) {   /* config_load checked it */
        set_msg(run, "train.kernels = %s: unknown kernels", c->train.kernels);
        return 0;
    }
    return 1;
}

/* Every rank: data.validation = N holds out N training samples, the first N of a
 * permutation of the file's samples drawn from the seed, the same for any ranks; the rest,
 * in file order, are what the epochs permute. Each rank gathers its contiguous block of
 * the held-out samples (in file order) for evaluation. */
static int split_validation(Run *run)
{
    const Config *c = run->cfg;
    const size_t n = run->train.n, N = (size_t)c->data.validation, d = run->train.d;
    run->n_train = n;
    if (N == 0 && (c->checkpoint.best || c->train.patience > 0)) {
        set_msg(run, "%s needs a validation split: set [data] validation = N (held-out "
                "samples)", c->checkpoint.best ? "[checkpoint] best = true" :
                "[train] patience > 0");
        return 0;
    }
    if (N == 0)
        return 1;
    if (N >= n) {
        set_msg(run, "[data] validation = %zu: must be less than the %zu training samples%s",
                N, n, c->data.train_limit ? " (after data.train_limit)" : "");
        return 0;
    }
    int oom;
    uint8_t *held = held_out_mask(run, &oom);
    run->train_idx = malloc((n - N) * sizeof *run->train_idx);
    const size_t first = N * (size_t)run->dist->rank / (size_t)run->dist->size;
    const size_t last = N * ((size_t)run->dist->rank + 1) / (size_t)run->dist->size;
    run->val_n = N;
    run->val_count = last - first;
    const size_t elem = data_type_size(run->type), row = d * elem;
    run->val_images = malloc(run->val_count * row + 1);
    run->val_labels = malloc(run->val_count + 1);
    if (!held || !run->train_idx || !run->val_images || !run->val_labels) {
        free(held);
        set_msg(run, "out of memory for the validation split of %zu samples", N);
        return 0;
    }
    size_t t = 0, v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!held[i]) {
            run->train_idx[t++] = (uint32_t)i;
            continue;
        }
        if (v >= first && v < last) {
            const uint8_t *src = run->type == DATA_U8 ? run->train.images
                                                      : (const uint8_t *)run->train.features;
            memcpy(run->val_images + (v - first) * row, src + i * row, row);
            run->val_labels[v - first] = run->train.labels[i];
        }
        v++;
    }
    free(held);
    run->n_train = t;
    if (run->type == DATA_U8)
        run->val_in = (KernelsInput){.u8 = run->val_images};
    else
        run->val_in = (KernelsInput){.f32 = (const float *)(const void *)run->val_images};
    return 1;
}

static void print_banner(const Run *run)
{
    const Dist *d = run->dist;
    const Config *c = run->cfg;
    /* Every rank's figures (dist_init gathers them): a range when ranks or nodes differ. */
    char threads[32], cpus[32], from[64];
    snprintf(threads, sizeof threads, d->threads_min == d->threads_max ? "%d" : "%d-%d",
             d->threads_min, d->threads_max);
    snprintf(cpus, sizeof cpus, d->cpus_node_min == d->cpus_node_max ? "%d" : "%d-%d",
             d->cpus_node_min, d->cpus_node_max);
    if (d->threads_env_ranks == d->size || d->threads_env_ranks == 0)
        snprintf(from, sizeof from, "%s", d->threads_env_ranks ? "OMP_NUM_THREADS"
                 : "its CPUs / ranks sharing them");
    else
        snprintf(from, sizeof from, "OMP_NUM_THREADS on %d of %d ranks", d->threads_env_ranks,
                 d->size);
    printf("mlp %s: %d rank%s on %d node%s, %s thread%s per rank (%s), %s CPUs per node, "
           "ISA %s\n", MLP_VERSION, d->size, d->size == 1 ? "" : "s", d->nodes,
           d->nodes == 1 ? "" : "s", threads, d->threads_max == 1 ? "" : "s", from, cpus,
           d->isa_count > 1 ? d->isas : d->isa);
    if (d->threads_min != d->threads_max)
        printf("warning: threads per rank differ between ranks (%s): the ranks with fewer "
               "threads set the pace; give every rank the same OMP_NUM_THREADS (mpirun -x "
               "OMP_NUM_THREADS)\n", threads);
    if (d->cpus_node_min != d->cpus_node_max)
        printf("warning: CPUs per node differ between nodes (%s): the ranks share the "
               "minibatch evenly, so the smaller nodes set the pace\n", cpus);
    if (d->isa_count > 1 || d->binaries_differ)
        printf("warning: the ranks run different binaries (ISA %s): exact mode is the same "
               "mathematics, but each rank rounds as its own binary does (FMA, vector "
               "paths), so the bits may differ from a run of one binary; use one binary for "
               "the whole job\n", d->isas);
    const char *job = getenv("SLURM_JOB_ID");
    if (job && *job) {
        const char *nodes = getenv("SLURM_JOB_NODELIST"), *restarts = getenv("SLURM_RESTART_COUNT");
        printf("slurm: job %s, nodes %s, restart count %s\n", job, nodes ? nodes : "?",
               restarts && *restarts ? restarts : "0");
    }
    if (d->oversubscribed)
        printf("warning: oversubscribed: %d ranks with %d threads in all on a node with %d "
               "CPUs; steps will be slow%s (see README, Launching)\n",
               d->over_ranks, d->over_threads, d->over_cpus,
               getenv("OMP_WAIT_POLICY") ? "" : "; set OMP_WAIT_POLICY=passive");
    long nchunks = (c->train.batch + c->train.chunk - 1) / c->train.chunk;
    if (nchunks < d->size)
        printf("warning: a minibatch is %ld chunk%s (batch %ld / chunk %ld), so only %ld of %d "
               "ranks compute; lower train.chunk to use them all\n",
               nchunks, nchunks == 1 ? "" : "s", c->train.batch, c->train.chunk, nchunks, d->size);
    char what[96], held[96] = "";
    if (run->train_shape.rows > 1)
        snprintf(what, sizeof what, "%" PRIu32 "x%" PRIu32, run->train.rows, run->train.cols);
    else
        snprintf(what, sizeof what, "%s as %s", run->train_shape.stored,
                 run->type == DATA_U8 ? "uint8 / 255" : "float32");
    if (run->mean)
        snprintf(what + strlen(what), sizeof what - strlen(what), ", standardized");
    if (run->val_n)
        snprintf(held, sizeof held, " (+ %zu held out for validation)", run->val_n);
    printf("data: %zu training samples%s%s, %zu test samples, d = %zu (%s), K = %d classes\n",
           run->n_train, c->data.train_limit ? " (train_limit)" : "", held, run->test.n,
           run->train.d, what, run->train.classes);
    printf("model: %zu-%zu-%zu, %zu parameters; batch %ld, lr %g, reduce %s (chunk %ld), %s "
           "kernels\n", run->params.d, run->params.h, run->params.k, run->params.count,
           c->train.batch, c->train.lr, config_reduce_name(c->train.reduce), c->train.chunk,
           c->train.kernels);
    if (c->train.optimizer != OPTIM_SGD || c->train.weight_decay > 0 ||
        c->train.schedule != SCHEDULE_CONSTANT || c->train.warmup_epochs > 0 ||
        c->data.augment != AUGMENT_NONE)
        printf("learning: %s (momentum %g), weight decay %g (coupled L2, %s), schedule %s "
               "(warm-up %g epochs), augment %s\n", optim_kind_name(c->train.optimizer),
               c->train.optimizer == OPTIM_SGD ? 0.0 : c->train.momentum, c->train.weight_decay,
               c->train.decay_biases ? "W and b" : "W only",
               optim_schedule_name(c->train.schedule), c->train.warmup_epochs,
               augment_kind_name(c->data.augment));
    size_t pb, wb;   /* what alloc_model allocated, once: no step allocates */
    if (model_memory(run->params.d, run->params.h, run->params.k, run->ws.rows, &pb, &wb) == 0)
        printf("workspace: %zu bytes per rank for %zu samples (parameters %zu, gradient %zu "
               "bytes%s), allocated before the first step\n", wb, run->ws.rows, pb,
               (run->params.count + SLOTS) * (run->grad_i ? sizeof(int64_t) : sizeof(float)),
               run->params_shared ? ", summed through the node's shared memory, where the "
                                    "parameters are too, one copy per node"
                                  : ", summed with MPI_Allreduce");
    const BuildInfo *bi = buildinfo();
    char cpu[128];
    buildinfo_cpu_model(cpu, sizeof cpu);
    printf("build: commit %s, %s; cpu: %s\n", bi->commit, bi->flags, cpu);
    if (run->outputs_ready)
        printf("config: %s resolved into %s/%s (`mlp config %s` prints it)\n", c->source,
               c->checkpoint.dir, RUNDIR_CONFIG, c->source);
    if (run->resume_note[0])
        printf("%s\n", run->resume_note);
    if (run->resume_warn[0])
        printf("%s\n", run->resume_warn);
    if (run->resumed_from[0]) {
        char where[96];
        describe_position(where, sizeof where, run);
        printf("resuming from %s: %s (global step %" PRId64 ")\n", run->resumed_from, where,
               run->step);
    }
    fflush(stdout);
}

/* "1:02:03" or "2:03": a duration for an ETA. */
static void format_duration(char *buf, size_t len, double seconds)
{
    if (!(seconds >= 0) || seconds > 1e8) {
        snprintf(buf, len, "?");
        return;
    }
    long t = (long)(seconds + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

/* Rank 0's progress within an epoch, so that no long epoch is silent: on a terminal one
 * line rewritten in place twice a second; elsewhere (mpirun, SLURM logs: a pipe or a file)
 * a plain line every log.progress_seconds. Step, samples/s since this call began, the
 * epoch's running loss, and the ETA of the epoch and of the run (training steps only). */
typedef struct {
    int on, tty;
    double every, t0, last;
    size_t step0;     /* epoch_step when the steps began */
} Progress;

static void progress_init(Progress *pr, const Run *run, double t0)
{
    const Config *c = run->cfg;
    pr->tty = isatty(STDERR_FILENO);
    pr->on = run->dist->rank == 0 && c->log.progress != PROGRESS_OFF;
    pr->every = pr->tty ? 0.5 : (double)c->log.progress_seconds;
    pr->t0 = pr->last = t0;
    pr->step0 = (size_t)run->pos.epoch_step;
}

static void progress_report(Progress *pr, const Run *run, size_t done, size_t steps)
{
    const double now = now_seconds();
    if (!pr->on || now - pr->last < pr->every)
        return;
    pr->last = now;
    const size_t n = run->n_train, B = (size_t)run->cfg->train.batch;
    const size_t seen = done * B < n ? done * B : n, seen0 = pr->step0 * B;
    const double rate = now > pr->t0 ? (double)(seen - seen0) / (now - pr->t0) : 0;
    const int64_t epoch = run->pos.epoch + 1, epochs = run->cfg->train.epochs;
    char eta[32], eta_run[32];
    format_duration(eta, sizeof eta, rate > 0 ? (double)(n - seen) / rate : -1);
    format_duration(eta_run, sizeof eta_run,
                    rate > 0 ? ((double)(n - seen) + (double)(epochs - epoch) * (double)n) / rate
                             : -1);
    fprintf(stderr, "%sepoch %" PRId64 "/%" PRId64 "  step %zu/%zu (%.0f%%)  %.0f samples/s  "
            "loss %.4f  ETA %s (run %s)%s", pr->tty ? "\r" : "progress: ", epoch, epochs, done,
            steps, 100.0 * (double)done / (double)steps, rate, run->pos.loss_sum / (double)seen,
            eta, eta_run, pr->tty ? "\033[K" : "\n");
    fflush(stderr);
}

static void progress_end(const Progress *pr)
{
    if (pr->on && pr->tty && pr->last > pr->t0) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}

typedef enum { STEPS_EPOCH_DONE, STEPS_SIGNAL, STEPS_CHECKPOINT, STEPS_DIVERGED } StepsEnd;

/* A step's totals over every rank, from the slots of its one reduction. */
typedef struct {
    int64_t bad;       /* rejected gradient values and non-finite losses */
    double loss;       /* sum of the batch's per-sample losses */
    int64_t correct;
    int64_t stop;      /* a stop signal reached some rank */
} StepTotals;

/* COLLECTIVE. The step's one reduction: this rank's gradient (stored by the kernels in
 * grad_i or grad_f) and totals summed over every rank, into sum_i or sum_f (the node's
 * shared result, or the buffer itself). */
static StepTotals reduce_step(Run *run, const ModelStats *st, int64_t bad)
{
    const size_t count = run->params.count;
    const int64_t stop = atomic_load(&train_stop_signal) != 0;
    StepTotals t;
    if (run->grad_i) {
        int64_t *g = run->grad_i;
        g[count + SLOT_LOSS] = st->loss_fix;
        g[count + SLOT_CORRECT] = st->correct;
        g[count + SLOT_BAD] = bad + st->bad;
        g[count + SLOT_STOP] = stop;
        run->sum_bits = st->grad1_bits;   /* the same on every rank */
        run->sum_n32 = st->grad1_bits ? (run->params.d + 1) * run->params.h : 0;
        const int64_t *sum = run->sum_i = dist_reduce_fixed(&run->reduce, run->sum_n32);
        t = (StepTotals){sum[count + SLOT_BAD],
                         (double)sum[count + SLOT_LOSS] / MODEL_LOSS_SCALE,
                         sum[count + SLOT_CORRECT], sum[count + SLOT_STOP]};
    } else {
        float *g = run->grad_f;
        g[count + SLOT_LOSS] = (float)((double)st->loss_fix / MODEL_LOSS_SCALE);
        g[count + SLOT_CORRECT] = (float)st->correct;
        g[count + SLOT_BAD] = (float)st->bad;
        g[count + SLOT_STOP] = (float)stop;
        const float *sum = run->sum_f = dist_reduce_f32(&run->reduce);
        t = (StepTotals){(int64_t)sum[count + SLOT_BAD], sum[count + SLOT_LOSS],
                         (int64_t)sum[count + SLOT_CORRECT], sum[count + SLOT_STOP] > 0};
    }
    return t;
}

/* The summed gradient of elements [lo, hi), which lie on one side of sum_n32. */
static OptimGrad grad_at(const Run *run, size_t lo)
{
    if (run->sum_f)
        return (OptimGrad){.f = run->sum_f + lo};
    if (lo < run->sum_n32)
        return (OptimGrad){.i32 = (const int32_t *)(const void *)run->sum_i + lo,
                           .bits = run->sum_bits};
    return (OptimGrad){.i = run->sum_i + lo};
}

/* The update of parameters [a, b) of the block from the summed gradient (optim.h);
 * weight decay on W1 and W2, and on the biases only with train.decay_biases. Returns the
 * number of non-finite values met in a float sum. */
static int64_t update_range(Run *run, float lr, size_t a, size_t b)
{
    const Config *c = run->cfg;
    Params *p = &run->params;
    const float wd = (float)c->train.weight_decay, wdb = c->train.decay_biases ? wd : 0.0f;
    if (wd == 0.0f && !run->velocity) {   /* plain SGD: one call per form of the gradient */
        size_t mid = a;   /* [a, mid): the int32 part */
        if (run->sum_i && run->sum_n32 > a)
            mid = run->sum_n32 < b ? run->sum_n32 : b;
        int64_t bad = 0;
        if (a < mid)
            bad += optim_update(&run->optim, p->block + a, NULL, grad_at(run, a), mid - a, lr,
                                0.0f);
        if (mid < b)
            bad += optim_update(&run->optim, p->block + mid, NULL, grad_at(run, mid), b - mid,
                                lr, 0.0f);
        return bad;
    }
    /* W1 b1 W2 b2 are consecutive in the block, the gradient and the velocity alike (the
     * int32 part, if any, is W1 and b1 exactly) */
    const size_t len[4] = {p->d * p->h, p->h, p->h * p->k, p->k};
    const float decay[4] = {wd, wdb, wd, wdb};
    size_t off = 0;
    for (int i = 0; i < 4; off += len[i], i++) {
        const size_t lo = off > a ? off : a, hi = off + len[i] < b ? off + len[i] : b;
        if (lo >= hi)
            continue;
        const OptimGrad g = grad_at(run, lo);
        const int64_t bad = optim_update(&run->optim, p->block + lo,
                                         run->velocity ? run->velocity + lo : NULL, g, hi - lo,
                                         lr, decay[i]);
        if (bad)
            return bad;
    }
    return 0;
}

/* COLLECTIVE. The update of every parameter, the same on every rank: each its own copy, or
 * with the parameters in the node's window, each rank its slice of them (the slice it
 * summed), then a node barrier before anyone reads them. Returns the number of
 * non-finite values in a float sum (fast mode: a sum that overflowed, or a NaN from some
 * rank), noticed in the update's own pass (and only then counted): when it is not 0 the
 * parameters are void and training must stop. */
static int64_t update_params(Run *run, float lr)
{
    const size_t count = run->params.count;
    if (!run->params_shared)
        return update_range(run, lr, 0, count);
    size_t a, b;
    dist_reduce_slice(&run->reduce, &a, &b);
    b = b < count ? b : count;
    run->node_bad[run->dist->local_rank] = update_range(run, lr, a < b ? a : b, b);
    dist_reduce_sync(&run->reduce);   /* every slice updated */
    int64_t bad = 0;   /* every node updates the same slices: its total is everyone's */
    for (int q = 0; q < run->dist->local_size; q++)
        bad += run->node_bad[q];
    return bad;
}

/* SGD steps from run->pos to the end of its epoch, or until a stop signal on any rank, a
 * mid-epoch checkpoint (checkpoint.every_steps) or divergence. COLLECTIVE: every rank runs
 * the same steps, one reduction each, and returns the same verdict. */
static StepsEnd run_steps(Run *run, int64_t *bad_out)
{
    const Config *c = run->cfg;
    const Dist *d = run->dist;
    Params *p = &run->params;
    Position *pos = &run->pos;
    const size_t n = run->n_train, B = (size_t)c->train.batch, chunk = (size_t)c->train.chunk;
    const size_t steps = steps_per_epoch(run);
    const int exact = c->train.reduce == REDUCE_EXACT;
    const double t0 = now_seconds();
    Progress progress;
    progress_init(&progress, run, t0);
    StepsEnd end = STEPS_EPOCH_DONE;

    if (run->order_epoch != pos->epoch) {
        data_epoch_order(run->order, n, c->model.seed, (uint64_t)pos->epoch);
        if (run->train_idx)   /* a permutation of the samples left after the validation split */
            for (size_t i = 0; i < n; i++)
                run->order[i] = run->train_idx[run->order[i]];
        run->order_epoch = pos->epoch;
    }
    for (size_t s = (size_t)pos->epoch_step; s < steps; s++) {
        const size_t b0 = s * B, m = n - b0 < B ? n - b0 : B;
        size_t r0, r1;
        dist_shard(m, chunk, d->rank, d->size, &r0, &r1);
        const uint32_t *idx = run->order + b0 + r0;
        const KernelsInput *X = &run->train_in;
        const uint8_t *labels = run->train.labels;
        if (run->aug_images) {
            /* the shard's samples, distorted (keyed by their file index), as rows 0.. */
            augment_batch(&run->aug, run->train.images, labels, idx, r1 - r0, run->aug_images,
                          run->aug_labels, c->model.seed, (uint64_t)pos->epoch);
            X = &run->aug_in;
            labels = run->aug_labels;
            idx = run->aug_idx;
        }
        /* Gradients, one reduction, one update. Exact mode: each chunk's sum must fit so
         * that the sum of all chunks stays below 2^62. */
        const size_t nchunks = (m + chunk - 1) / chunk;
        const float limit = (float)(0x1p22 / (double)nchunks);
        int64_t bad = 0;
        ModelStats st = model_step_gradients(p, X, labels, idx, r1 - r0, m, &run->ws, chunk,
                                             run->grad_f, run->grad_i, exact ? limit : 0,
                                             exact ? &bad : NULL);
        StepTotals t = reduce_step(run, &st, bad);
        if (t.bad > 0) {
            *bad_out = t.bad;
            end = STEPS_DIVERGED;
            break;
        }
        const float lr = (float)optim_schedule_lr(&run->schedule, pos->epoch, (int64_t)s,
                                                  (int64_t)steps);
        const int64_t nonfinite = update_params(run, lr);
        if (nonfinite > 0) {   /* the parameters are void: nothing of them is kept */
            *bad_out = nonfinite;
            end = STEPS_DIVERGED;
            break;
        }
        pos->loss_sum += t.loss;
        pos->correct += t.correct;
        const int64_t stop = t.stop;
        run->step++;
        pos->epoch_step = (int64_t)s + 1;
        progress_report(&progress, run, s + 1, steps);
        if (stop) {
            end = STEPS_SIGNAL;
            break;
        }
        if (c->checkpoint.every_steps > 0 && run->step % c->checkpoint.every_steps == 0 &&
            s + 1 < steps) {
            end = STEPS_CHECKPOINT;
            break;
        }
    }
    progress_end(&progress);
    pos->seconds += now_seconds() - t0;
    return end;
}

typedef struct {
    double loss, acc;   /* mean cross-entropy and accuracy over the set */
} Eval;

/* COLLECTIVE. Loss and accuracy over a set of `total` samples of which this rank holds
 * samples first..first+count of X: each sample counted exactly once whatever the rank
 * count, the sums exact (integers). */
static Eval evaluate_set(Run *run, const KernelsInput *X, const uint8_t *labels,
                         size_t first, size_t count, size_t total)
{
    ModelStats st = model_evaluate(&run->params, X, labels, first, count, &run->ws);
    int64_t sums[2] = {st.loss_fix, st.correct};
    dist_sum_i64(run->dist, sums, 2);
    return (Eval){(double)sums[0] / MODEL_LOSS_SCALE / (double)total,
                  (double)sums[1] / (double)total};
}

/* COLLECTIVE. The whole test set: each rank takes a contiguous block. */
static Eval evaluate(Run *run)
{
    const Dist *d = run->dist;
    const size_t N = run->test.n;
    size_t first = N * (size_t)d->rank / (size_t)d->size;
    size_t last = N * ((size_t)d->rank + 1) / (size_t)d->size;
    return evaluate_set(run, &run->test_in, run->test.labels, first, last - first, N);
}

/* COLLECTIVE. The validation split: each rank holds its block (split_validation). */
static Eval evaluate_validation(Run *run)
{
    return evaluate_set(run, &run->val_in, run->val_labels, 0, run->val_count, run->val_n);
}

/* The binary and the machine, as a checkpoint records them. */
static void provenance(CkptState *s, const Dist *d)
{
    const BuildInfo *bi = buildinfo();
    snprintf(s->build_commit, sizeof s->build_commit, "%s", bi->commit);
    snprintf(s->build_compiler, sizeof s->build_compiler, "%s", bi->compiler);
    snprintf(s->build_flags, sizeof s->build_flags, "%s", bi->flags);
    snprintf(s->build_isa, sizeof s->build_isa, "%s", bi->isa);
    buildinfo_cpu_model(s->cpu_model, sizeof s->cpu_model);
    s->nodes = d ? d->nodes : 1;
}

/* The optimizer state and the best validation epoch, as a checkpoint records them. */
static void ckpt_fill_learning(const Run *run, CkptState *s)
{
    if (run->velocity) {
        const Params *p = &run->params;
        s->vW1 = run->velocity;
        s->vb1 = run->velocity + (p->b1 - p->block);
        s->vW2 = run->velocity + (p->W2 - p->block);
        s->vb2 = run->velocity + (p->b2 - p->block);
    }
    s->best_val_acc = run->best_epoch ? run->best_val_acc : 0;
    s->best_epoch = run->best_epoch;
}

/* The state a checkpoint of the current position records (arrays borrowed). */
static void fill_state(const Run *run, CkptState *sp)
{
    const Config *c = run->cfg;
    CkptState s;
    memset(&s, 0, sizeof s);
    s.d = run->params.d, s.hidden = run->params.h, s.classes = run->params.k;
    s.W1 = run->params.W1, s.b1 = run->params.b1, s.W2 = run->params.W2, s.b2 = run->params.b2;
    s.epoch = run->pos.epoch, s.step = run->step, s.epoch_step = run->pos.epoch_step;
    s.epoch_loss = run->pos.loss_sum, s.epoch_correct = run->pos.correct;
    s.epoch_seconds = run->pos.seconds;
    s.seed = c->model.seed, s.batch = c->train.batch, s.lr = c->train.lr;
    snprintf(s.reduce, sizeof s.reduce, "%s", config_reduce_name(c->train.reduce));
    s.ranks = run->dist->size, s.threads_per_rank = run->dist->threads;
    s.config = run->config_text;
    snprintf(s.mlp_version, sizeof s.mlp_version, "%s", MLP_VERSION);
    provenance(&s, run->dist);
    s.history = run->history;
    s.train_samples = (int64_t)run->train.n, s.test_samples = (int64_t)run->test.n;
    s.train_crc = run->train.crc;
    snprintf(s.input_type, sizeof s.input_type, "%s", run->type == DATA_U8 ? "uint8" : "float32");
    snprintf(s.normalize, sizeof s.normalize, "%s", c->data.normalize);
    s.x_mean = run->mean, s.x_std = run->std;
    ckpt_fill_learning(run, &s);
    *sp = s;
}

/* Rank 0: a checkpoint of the current position (an epoch boundary or mid-epoch). */
static int save_checkpoint(Run *run, char *path, size_t path_len)
{
    const Config *c = run->cfg;
    CkptState s;
    fill_state(run, &s);
    char err[CKPT_ERR_MAX], warn[CKPT_ERR_MAX];
    if (ckpt_save_warn(c->checkpoint.dir, &s, c->checkpoint.keep, path, path_len, warn,
                       sizeof warn, err, sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    if (warn[0])   /* an old checkpoint that could not be pruned costs space, not the run */
        fprintf(stderr, "mlp: [rank 0] warning: %s\n", warn);
    return 1;
}

/* Rank 0: DIR/best.h5, the checkpoint of the epoch with the best validation accuracy
 * (checkpoint.best), replaced atomically; never pruned, never resumed from by auto. */
static int save_best(Run *run)
{
    char path[CONFIG_PATH_MAX + 16], err[CKPT_ERR_MAX];
    snprintf(path, sizeof path, "%s/best.h5", run->cfg->checkpoint.dir);
    CkptState s;
    fill_state(run, &s);
    if (ckpt_save_as(path, &s, err, sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    return 1;
}

/* Every rank: the checkpoint resume = auto continues from. DIR/latest.h5 when it loads;
 * when it is missing, dangling or damaged, the newest epoch or step file that loads (and
 * rank 0 says which). 0 with path = "" when DIR holds no checkpoint at all (a fresh start);
 * -1 when it holds some but none loads: starting over would hide them, so it is refused. */
static int choose_auto(Run *run, CkptState *s, char *path, size_t len)
{
    const char *dir = run->cfg->checkpoint.dir;
    char err[CKPT_ERR_MAX], first_err[CKPT_ERR_MAX] = "", target[256] = "";
    CkptEntry *list = NULL;
    size_t n = 0, tried = 0;
    struct stat st;
    path[0] = '\0';
    snprintf(path, len, "%s/latest.h5", dir);
    const int present = lstat(path, &st) == 0;
    if (!present && errno != ENOENT) {
        set_msg(run, "resume: %s: %s", path, strerror(errno));
        return -1;
    }
    if (present) {
        tried++;
        ssize_t t = readlink(path, target, sizeof target - 1);
        target[t > 0 ? t : 0] = '\0';
        if (ckpt_load(path, s, first_err, sizeof first_err) == 0)
            return 0;
    } else {
        snprintf(first_err, sizeof first_err, "%s: missing", path);
    }
    if (ckpt_list(dir, &list, &n, err, sizeof err) != 0) {
        set_msg(run, "resume: %s", err);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(list[i].name, target))
            continue;   /* latest.h5's own target: tried above */
        tried++;
        snprintf(path, len, "%s/%s", dir, list[i].name);
        if (ckpt_load(path, s, err, sizeof err) == 0) {
            snprintf(run->resume_note, sizeof run->resume_note, "resume: %s; resuming from %s, "
                     "the newest checkpoint that loads", first_err, path);
            free(list);
            return 0;
        }
    }
    free(list);
    path[0] = '\0';
    if (tried == 0 && n == 0)
        return 0;
    set_msg(run, "resume = auto: %s holds checkpoints but none of the %zu tried loads (%s); "
            "refusing to start over on top of them: resume from a file with --set "
            "checkpoint.resume=PATH, or start afresh with --set checkpoint.resume=none --set "
            "checkpoint.overwrite=true", dir, tried, first_err);
    return -1;
}

/* Every rank: with checkpoint.resume = auto (a checkpoint in DIR) or a path, load the
 * checkpoint and continue from its position. Shapes, seed and batch must match the run's,
 * or the position would mean something else. */
static int resume(Run *run)
{
    const Config *c = run->cfg;
    const char *mode = c->checkpoint.resume;
    char path[CONFIG_PATH_MAX + 80];
    CkptState s;
    char err[CKPT_ERR_MAX];
    if (!strcmp(mode, "none"))
        return 1;
    if (!strcmp(mode, "auto")) {
        if (choose_auto(run, &s, path, sizeof path) != 0)
            return 0;
        if (!path[0])
            return 1;   /* nothing to resume: a fresh start */
    } else {
        snprintf(path, sizeof path, "%s", mode);
        if (ckpt_load(path, &s, err, sizeof err) != 0) {
            set_msg(run, "resume: %s", err);
            return 0;
        }
    }
    const Params *p = &run->params;
    const size_t steps = steps_per_epoch(run);
    int ok = 0;
    if (s.d != p->d || s.hidden != p->h || s.classes != p->k)
        set_msg(run, "%s: checkpoint model is %" PRIu64 "-%" PRIu64 "-%" PRIu64 " but this run's "
                "is %zu-%zu-%zu ([model] hidden and the data files)", path, s.d, s.hidden,
                s.classes, p->d, p->h, p->k);
    else if (s.seed != c->model.seed || s.batch != c->train.batch)
        set_msg(run, "%s: checkpoint has seed %" PRIu64 " and batch %" PRId64 " but the config "
                "has %" PRIu64 " and %ld: its epoch order and position would not apply here",
                path, s.seed, s.batch, c->model.seed, c->train.batch);
    else if ((s.normalize[0] && strcmp(s.normalize, c->data.normalize) != 0) ||
             (s.input_type[0] && strcmp(s.input_type, run->type == DATA_U8 ? "uint8"
                                                                          : "float32") != 0))
        set_msg(run, "%s: checkpoint was trained on %s inputs with data.normalize = %s but "
                "this run's are %s with %s: its weights would not apply to them", path,
                s.input_type, s.normalize[0] ? s.normalize : "none",
                run->type == DATA_U8 ? "uint8" : "float32", c->data.normalize);
    else if (s.epoch_step < 0 || (size_t)s.epoch_step >= steps)
        set_msg(run, "%s: checkpoint is at step %" PRId64 " of an epoch, but an epoch here has "
                "%zu steps (was data.train_limit changed?)", path, s.epoch_step, steps);
    else
        ok = 1;
    if (ok) {
        /* Exact mode's bits are those of an uninterrupted run for the same binary on the
         * same CPU type: say so when either changed (a file of an older mlp records none). */
        CkptState now;
        memset(&now, 0, sizeof now);
        provenance(&now, NULL);
        const char *what = strcmp(s.build_commit, now.build_commit) ? "binary (commit)"
                         : strcmp(s.build_flags, now.build_flags) ? "binary (build flags)"
                         : strcmp(s.build_isa, now.build_isa) ? "kernel ISA"
                         : strcmp(s.cpu_model, now.cpu_model) ? "CPU model" : NULL;
        if (what)
            add_resume_warn(run, "warning: resuming on another %s than %s was written by "
                            "(commit %s, %s, %s; now %s, %s, %s): the weights may differ in "
                            "their last bits from an uninterrupted run", what, path,
                            s.build_commit[0] ? s.build_commit : "unrecorded", s.build_isa,
                            s.cpu_model, now.build_commit, now.build_isa, now.cpu_model);
        /* The numerics the checkpoint's run used, where this one differs: its chunk (a
         * train.chunk of auto, or an older default) and its standardisation statistics
         * (another training file, or an mlp that counted the validation split in them). */
        const char *ch = s.config ? strstr(s.config, "\nchunk = ") : NULL;
        const long was = ch ? strtol(ch + strlen("\nchunk = "), NULL, 10) : 0;
        if (was > 0 && was != c->train.chunk)
            add_resume_warn(run, "warning: %s was trained with train.chunk = %ld, this run "
                            "has %ld: the sums round differently from here on (set "
                            "train.chunk = %ld to continue exactly)", path, was,
                            c->train.chunk, was);
        if (s.x_mean && run->mean &&
            (memcmp(s.x_mean, run->mean, p->d * sizeof *run->mean) != 0 ||
             memcmp(s.x_std, run->std, p->d * sizeof *run->std) != 0))
            add_resume_warn(run, "warning: the standardisation statistics of this run's "
                            "training samples differ from those in %s (another training "
                            "file, or an older mlp that counted the validation split): the "
                            "inputs shift from here on", path);
        if (!run->params_shared || run->dist->local_rank == 0) {   /* a node's one copy */
            memcpy(p->W1, s.W1, p->d * p->h * sizeof(float));
            memcpy(p->b1, s.b1, p->h * sizeof(float));
            memcpy(p->W2, s.W2, p->h * p->k * sizeof(float));
            memcpy(p->b2, s.b2, p->k * sizeof(float));
        }
        if (run->velocity && s.vW1) {
            if (!run->params_shared || run->dist->local_rank == 0) {
                memcpy(run->velocity, s.vW1, p->d * p->h * sizeof(float));
                memcpy(run->velocity + (p->b1 - p->block), s.vb1, p->h * sizeof(float));
                memcpy(run->velocity + (p->W2 - p->block), s.vW2, p->h * p->k * sizeof(float));
                memcpy(run->velocity + (p->b2 - p->block), s.vb2, p->k * sizeof(float));
            }
        } else if (run->velocity && s.step > 0) {
            add_resume_warn(run, "warning: %s holds no optimizer velocity (written by "
                            "plain SGD or an older mlp): %s starts from zero velocity", path,
                            optim_kind_name(c->train.optimizer));
        }
        run->best_val_acc = s.best_val_acc;
        run->best_epoch = s.best_epoch;
        ckpt_history_free(&run->history);
        run->history = s.history;           /* taken over */
        memset(&s.history, 0, sizeof s.history);
        run->step = s.step;
        run->pos = (Position){s.epoch, s.epoch_step, s.epoch_loss, s.epoch_correct,
                              s.epoch_seconds};
        snprintf(run->resumed_from, sizeof run->resumed_from, "%s", path);
    }
    ckpt_state_free(&s);
    return ok;
}

/* COLLECTIVE. Every rank must start from the same state: ranks that see different files
 * under checkpoint.dir (a node-local directory, a stale NFS view after a requeue) would
 * otherwise train on mismatched weights. */
static int check_same_start(Run *run)
{
    uint64_t h = model_param_hash(&run->params);
    const int64_t pos[3] = {run->step, run->pos.epoch, run->pos.epoch_step};
    for (int i = 0; i < 3; i++)
        h = (h ^ (uint64_t)pos[i]) * 0x100000001b3ull;
    if (h == dist_root_value(h))
        return 1;
    set_msg(run, "resume: this rank starts from %s (epoch %" PRId64 ", step %" PRId64 ") but "
            "rank 0 from another state: every rank must see the same %s (a shared file "
            "system)", run->resumed_from[0] ? run->resumed_from : "scratch", run->pos.epoch,
            run->pos.epoch_step, run->cfg->checkpoint.dir);
    return 0;
}

/* The columns of mlp 0.2 first, then those of the validation split and the test loss
 * (empty where not evaluated). A metrics file with the old header is continued with the
 * old columns (metrics_v1). */
#define METRICS_HEADER_V1 "epoch,train_loss,train_acc,test_acc,seconds,samples_per_s,param_hash"
#define METRICS_HEADER METRICS_HEADER_V1 ",val_loss,val_acc,test_loss"

/* Whether `path` (a checkpoint to resume from) lies in directory dir. */
static int in_dir(const char *path, const char *dir)
{
    char a[PATH_MAX], b[PATH_MAX], parent[CONFIG_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else
        *slash = '\0';
    return realpath(parent, a) && realpath(dir, b) && !strcmp(a, b);
}

/* Rank 0, before any data is read: the run directory is created (or refused), locked for
 * the whole run and proven writable; the metrics path must be a regular file or new; and a
 * fresh run is refused where another run's files are, unless checkpoint.overwrite says so. */
static int open_run_dir(Run *run)
{
    const Config *c = run->cfg;
    const char *mode = c->checkpoint.resume, *dir = c->checkpoint.dir;
    char err[MSG_MAX], what[MSG_MAX];
    const int automatic = !strcmp(mode, "auto");
    if (c->checkpoint.overwrite && automatic) {
        set_msg(run, "checkpoint.overwrite = true and checkpoint.resume = auto contradict each "
                "other: overwrite is for a fresh run (checkpoint.resume = none)");
        return 0;
    }
    if (rundir_open(&run->rundir, dir, err, sizeof err) != 0 ||
        rundir_check_regular(c->log.metrics, "log.metrics", err, sizeof err) != 0 ||
        rundir_scan(dir, c->log.metrics, &run->prior, err, sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    const int continues = automatic || (strcmp(mode, "none") != 0 && in_dir(mode, dir));
    if (rundir_has_run(&run->prior) && !continues && !c->checkpoint.overwrite) {
        rundir_describe(&run->prior, c->log.metrics, what, sizeof what);
        set_msg(run, "checkpoint.dir = %s holds another run (%s); nothing was changed: continue "
                "it with --set checkpoint.resume=auto, choose another --set checkpoint.dir=DIR, "
                "or replace it with --set checkpoint.overwrite=true", dir, what);
        return 0;
    }
    run->replace = rundir_has_run(&run->prior) && !continues;   /* overwrite says so */
    return 1;
}

/* Rank 0, once the start is agreed and there is something to train: the previous run's
 * files replaced (checkpoint.overwrite) or its metrics continued (rows after the resume
 * point set aside, never deleted), the metrics file opened, the resolved config saved. */
static int prepare_outputs(Run *run)
{
    const Config *c = run->cfg;
    const char *path = c->log.metrics;
    char err[MSG_MAX], aside[CONFIG_PATH_MAX + 64] = "";
    int removed = 0;
    const int replace = run->replace;
    run->outputs_ready = 1;
    char parent[CONFIG_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {   /* log.metrics may lie outside the run directory */
        *slash = '\0';
        if (fsafe_mkdir_p(parent, err, sizeof err) != 0) {
            set_msg(run, "log.metrics = %s: %s", path, err);
            return 0;
        }
    }
    if (replace && rundir_clear(c->checkpoint.dir, &removed, err, sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    if (!replace && rundir_metrics_resume(path, METRICS_HEADER, run->pos.epoch, aside,
                                          sizeof aside, err, sizeof err) != 0) {
        /* a run begun by an older mlp: continue its file with its own columns */
        char err1[MSG_MAX];
        if (rundir_metrics_resume(path, METRICS_HEADER_V1, run->pos.epoch, aside,
                                  sizeof aside, err1, sizeof err1) != 0) {
            set_msg(run, "%s", err);
            return 0;
        }
        run->metrics_v1 = 1;
    }
    /* Checkpoints of later places would be overwritten as the run reaches them. */
    char first[CONFIG_PATH_MAX + 96];
    int later = 0;
    if (!replace && rundir_set_aside_later(c->checkpoint.dir, run->pos.epoch,
                                           run->pos.epoch_step, &later, first, sizeof first,
                                           err, sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    if (!(run->metrics = fopen(path, replace ? "w" : "a"))) {
        set_msg(run, "%s: cannot open metrics file: %s", path, strerror(errno));
        return 0;
    }
    if (fseek(run->metrics, 0, SEEK_END) == 0 && ftell(run->metrics) == 0)
        fprintf(run->metrics, METRICS_HEADER "\n");
    if (fflush(run->metrics) != 0) {
        set_msg(run, "%s: cannot write: %s", path, strerror(errno));
        return 0;
    }
    if (rundir_save_config(c->checkpoint.dir, run->config_text, err, sizeof err) != 0) {
        set_msg(run, "%s", err);
        return 0;
    }
    if (replace)
        printf("checkpoint.overwrite: replaced the previous run in %s (%d file%s removed, "
               "%s truncated)\n", c->checkpoint.dir, removed, removed == 1 ? "" : "s", path);
    if (aside[0])
        printf("metrics: rows after epoch %" PRId64 " (from a run that went on past its last "
               "checkpoint) moved to %s\n", run->pos.epoch, aside);
    if (later)
        printf("checkpoints: %d file%s of later places than the resume point moved aside "
               "(%s%s)\n", later, later == 1 ? "" : "s", first, later > 1 ? ", ..." : "");
    return 1;
}

/* A metrics field: %.9g, or empty for a value not measured (NaN). */
static const char *csv_num(char *buf, size_t len, double v)
{
    if (isnan(v))
        buf[0] = '\0';
    else
        snprintf(buf, len, "%.9g", v);
    return buf;
}

/* An epoch's steps are done: evaluate (validation every epoch, test every eval_every),
 * record, log, checkpoint (and best.h5 on a better val_acc). *early: train.patience epochs
 * passed without a better val_acc, so this epoch is the last. COLLECTIVE. */
static int finish_epoch(Run *run, int *stopped, int *early, char *ckpt_path, size_t ckpt_len,
                        double *test_acc)
{
    const Config *c = run->cfg;
    const Dist *d = run->dist;
    const int64_t e = run->pos.epoch + 1, epochs = c->train.epochs;
    const double n = (double)run->n_train;
    const double loss = run->pos.loss_sum / n, acc = (double)run->pos.correct / n;
    const double seconds = run->pos.seconds;
    double tacc = NAN, tloss = NAN, vacc = NAN, vloss = NAN;
    int improved = 0;
    if (run->val_n) {
        const Eval v = evaluate_validation(run);
        vacc = v.acc, vloss = v.loss;
        /* strictly better: the earliest of equal epochs stays the best */
        if (run->best_epoch == 0 || vacc > run->best_val_acc) {
            run->best_val_acc = vacc;
            run->best_epoch = e;
            improved = 1;
        }
    }
    *early = e < epochs && run->val_n && c->train.patience > 0 &&
             e - run->best_epoch >= c->train.patience;
    const int last = e == epochs || *early;
    if (last || (c->train.eval_every > 0 && e % c->train.eval_every == 0)) {
        const Eval t = evaluate(run);
        tacc = *test_acc = t.acc;
        tloss = t.loss;
    }
    /* A signal that came during the last step's update or the evaluation stops here,
     * with this epoch's checkpoint, rather than one step into the next epoch. */
    if (!last && !*stopped)
        *stopped = stop_requested();
    uint64_t hash = model_param_hash(&run->params);
    run->pos = (Position){e, 0, 0, 0, 0};
    int ok = ckpt_history_push(&run->history, e, loss, acc, tacc, seconds) == 0;
    if (!ok)
        set_msg(run, "out of memory for the training history");
    else
        ckpt_history_set_eval(&run->history, vloss, vacc, tloss);
    if (d->rank == 0 && ok) {
        char val[64] = "", b1[32], b2[32], b3[32];
        if (run->val_n)
            snprintf(val, sizeof val, "  val_acc %.4f%s", vacc, improved ? "*" : "");
        printf("epoch %3" PRId64 "/%" PRId64 "  loss %.4f  train_acc %.4f%s  test_acc %.4f  "
               "%.2f s  %.0f samples/s\n", e, epochs, loss, acc, val, tacc, seconds,
               n / seconds);
        fflush(stdout);
        fprintf(run->metrics, "%" PRId64 ",%.9g,%.9g,%.9g,%.6f,%.1f,%016" PRIx64, e, loss,
                acc, tacc, seconds, n / seconds, hash);
        if (!run->metrics_v1)
            fprintf(run->metrics, ",%s,%s,%s", csv_num(b1, sizeof b1, vloss),
                    csv_num(b2, sizeof b2, vacc), csv_num(b3, sizeof b3, tloss));
        fputc('\n', run->metrics);
        if (fflush(run->metrics) != 0 || ferror(run->metrics)) {
            set_msg(run, "%s: cannot write: %s", c->log.metrics, strerror(errno));
            ok = 0;
        }
        if (ok && (last || *stopped ||
                   (c->checkpoint.every > 0 && e % c->checkpoint.every == 0)))
            ok = save_checkpoint(run, ckpt_path, ckpt_len);
        if (ok && improved && c->checkpoint.best)
            ok = save_best(run);
    }
    return agree(run, ok);
}

/* A "Key:   N kB" line of a /proc file, in KiB; -1 when the file or the line is missing. */
static int64_t proc_kib(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    char line[256];
    long long kib = -1;
    const size_t klen = strlen(key);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, klen) && sscanf(line + klen, " %lld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* COLLECTIVE. The final lines (rank 0 prints). Peak RSS (ru_maxrss) counts every page a
 * rank touched, the node's shared pixels included, so it reads the same for 1 or 8 ranks;
 * the memory held now is therefore also given as what is private to a rank (RssAnon) and
 * as the node's total, the proportional set sizes (PSS: a page shared by k processes
 * counts 1/k in each) summed over the node's ranks, which counts the shared pixels once.
 * Several nodes: the node with the largest total. */
static void report_memory(const Run *run)
{
    const Dist *d = run->dist;
    struct rusage ru;
    int64_t peak = getrusage(RUSAGE_SELF, &ru) == 0 ? (int64_t)ru.ru_maxrss : 0;
    int64_t pss = proc_kib("/proc/self/smaps_rollup", "Pss:");
    int64_t anon = proc_kib("/proc/self/status", "RssAnon:");
    peak = dist_max_i64(peak);
    const int no_pss = dist_max_i64(pss < 0) > 0, no_anon = dist_max_i64(anon < 0) > 0;
    anon = dist_max_i64(anon);
    const int64_t node_pss = dist_node_sum_i64(pss), max_pss = dist_max_i64(node_pss);
    const int64_t node_ranks = dist_max_i64(node_pss == max_pss ? d->local_size : 0);
    if (d->rank != 0)
        return;
    char priv[64], node[128];
    if (no_anon)
        snprintf(priv, sizeof priv, "n/a");
    else
        snprintf(priv, sizeof priv, "%.1f MiB", (double)anon / 1024);
    if (no_pss)
        snprintf(node, sizeof node, "n/a (no /proc/self/smaps_rollup)");
    else if (d->nodes == 1)
        snprintf(node, sizeof node, "%.1f MiB over %" PRId64 " rank%s", (double)max_pss / 1024,
                 node_ranks, node_ranks == 1 ? "" : "s");
    else
        snprintf(node, sizeof node, "%.1f MiB over %" PRId64 " rank%s (the largest of %d nodes)",
                 (double)max_pss / 1024, node_ranks, node_ranks == 1 ? "" : "s", d->nodes);
    printf("memory: peak RSS %.1f MiB per rank (max over ranks); now: private %s per rank "
           "(max), node total (PSS) %s\n", (double)peak / 1024, priv, node);
    fflush(stdout);
}

static int train_loop(Run *run)
{
    const Config *c = run->cfg;
    const Dist *d = run->dist;
    const int64_t epochs = c->train.epochs;
    double test_acc = NAN;
    char ckpt_path[CONFIG_PATH_MAX + 64] = "";

    if (run->pos.epoch < epochs && run->pos.epoch_step == 0 && c->train.patience > 0 &&
        run->best_epoch > 0 && run->pos.epoch - run->best_epoch >= c->train.patience) {
        if (d->rank == 0)
            printf("done: nothing to train: %s stopped early at epoch %" PRId64 " (no better "
                   "val_acc since epoch %" PRId64 ", train.patience = %ld)\n", run->resumed_from,
                   run->pos.epoch, run->best_epoch, c->train.patience);
        return 1;
    }
    if (run->pos.epoch >= epochs) {
        if (d->rank == 0)
            printf("done: nothing to train: %s is at epoch %" PRId64 " and train.epochs = %"
                   PRId64 "\n", run->resumed_from, run->pos.epoch, epochs);
        return 1;
    }
    while (run->pos.epoch < epochs) {
        int64_t bad = 0;
        StepsEnd end = run_steps(run, &bad);
        if (end == STEPS_DIVERGED) {
            if (d->rank == 0)
                fprintf(stderr, "mlp: [rank 0] error: training diverged at epoch %" PRId64
                        " step %" PRId64 ": %" PRId64 " non-finite or out-of-range gradient "
                        "or loss values (is train.lr = %g too large?); no checkpoint written "
                        "for it\n", run->pos.epoch + 1, run->pos.epoch_step + 1, bad,
                        c->train.lr);
            return 0;
        }
        int stopped = end == STEPS_SIGNAL, early = 0;
        if ((size_t)run->pos.epoch_step == steps_per_epoch(run)) {
            if (!finish_epoch(run, &stopped, &early, ckpt_path, sizeof ckpt_path, &test_acc))
                return 0;
            if (early) {
                if (d->rank == 0)
                    printf("early stop: no better val_acc for %ld epochs (train.patience); "
                           "the best, %.4f, was after epoch %" PRId64 "\n", c->train.patience,
                           run->best_val_acc, run->best_epoch);
                break;
            }
        } else if (!agree(run, d->rank != 0 || save_checkpoint(run, ckpt_path, sizeof ckpt_path))) {
            return 0;   /* a mid-epoch checkpoint (every_steps, or a stop signal) failed */
        }
        if (stopped) {
            if (d->rank == 0) {
                char where[96];
                describe_position(where, sizeof where, run);
                printf("mlp: stopped by signal %s (global step %" PRId64 "); checkpoint %s; "
                       "resume with --set checkpoint.resume=auto\n", where, run->step,
                       ckpt_path);
                fflush(stdout);
            }
            return 1;
        }
    }
    if (d->rank == 0) {
        printf("done: test accuracy %.4f (%.2f%%) after %" PRId64 " epoch%s; checkpoint %s; "
               "metrics %s\n",
               test_acc, 100 * test_acc, run->pos.epoch, run->pos.epoch == 1 ? "" : "s",
               ckpt_path, c->log.metrics);
        if (c->checkpoint.best && run->best_epoch)
            printf("best: val_acc %.4f after epoch %" PRId64 "; checkpoint %s/best.h5\n",
                   run->best_val_acc, run->best_epoch, c->checkpoint.dir);
        fflush(stdout);
    }
    report_memory(run);
    return 1;
}

static void run_free(Run *run)
{
    data_free(&run->train);
    data_free(&run->test);
    dist_node_shared_free(&run->inputs);   /* NODE-COLLECTIVE: every rank gets here */
    free(run->mean);
    free(run->std);
    model_params_free(&run->params);
    model_workspace_free(&run->ws);
    free(run->order);
    free(run->sig);
    dist_reduce_free(&run->reduce);   /* COLLECTIVE: every rank gets here */
    free(run->train_idx);
    free(run->val_images);
    free(run->val_labels);
    if (!run->params_shared)
        free(run->velocity);
    free(run->aug_images);
    free(run->aug_labels);
    free(run->aug_idx);
    augment_free(&run->aug);
    ckpt_history_free(&run->history);
    free(run->config_text);
}

int train_run(const Config *cfg, const Dist *dist)
{
    Run run;
    memset(&run, 0, sizeof run);
    run.cfg = cfg;
    run.dist = dist;
    run.order_epoch = -1;
    run.rundir.lock_fd = -1;
    /* Pre-emption (SLURM's --signal, scancel, mpirun forwarding): stop at the next step
     * boundary on every rank, checkpoint, exit 0. Installed first, so that a signal during
     * start-up is not fatal: the first step's reduction carries it. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    /* The inputs are read once per node into a block its ranks share: headers first, to
     * size it; then the node's leader fills it while the other ranks checksum their own
     * files; then every rank's checksum is compared with rank 0's. */
    int ok = agree(&run, probe_data(&run));
    ok = ok && agree(&run, check_data_memory(&run));
    ok = ok && agree(&run, dist->rank != 0 || open_run_dir(&run));
    ok = ok && agree(&run, share_data(&run));
    ok = ok && agree(&run, load_data(&run));
    ok = ok && agree(&run, check_same_data(&run));
    ok = ok && agree(&run, alloc_standardize(&run));
    ok = ok && standardize_data(&run);
    if (ok && run.type == DATA_F32)   /* float features: their bound, for exact mode's kernels */
        run.train_in.f32_max = kernels_input_max(run.train.features, run.train.n, run.train.d);
    ok = ok && agree(&run, check_memory(&run));
    ok = ok && agree(&run, alloc_model(&run));
    ok = ok && agree(&run, alloc_reduce(&run));
    ok = ok && agree(&run, split_validation(&run));
    ok = ok && agree(&run, resume(&run));
    if (ok)   /* the node's rank 0 wrote the parameters in the window: all may read them */
        dist_reduce_sync(&run.reduce);
    ok = ok && agree(&run, check_same_start(&run));
    if (ok) {
        run.config_text = config_to_ini(cfg);
        if (!run.config_text)
            set_msg(&run, "out of memory");
        ok = agree(&run, run.config_text != NULL);
    }
    /* "Nothing to train" changes no file; otherwise the outputs are ready before step 1. */
    const int nothing = ok && run.pos.epoch >= cfg->train.epochs;
    ok = ok && (nothing || agree(&run, dist->rank != 0 || prepare_outputs(&run)));
    if (ok && dist->rank == 0)
        print_banner(&run);
    ok = ok && train_loop(&run);
    /* Rank 0's last words: a write error that surfaces only now (NFS, a full disk) must
     * not end in exit status 0. Nothing collective follows. */
    if (run.metrics && fclose(run.metrics) != 0 && ok) {
        fprintf(stderr, "mlp: [rank 0] error: %s: %s\n", cfg->log.metrics, strerror(errno));
        ok = 0;
    }
    if (dist->rank == 0 && (fflush(stdout) != 0 || ferror(stdout)) && ok) {
        fprintf(stderr, "mlp: [rank 0] error: writing to stdout failed\n");
        ok = 0;
    }
    /* A run refused before it wrote anything leaves no directory behind it. */
    rundir_close(&run.rundir, !run.outputs_ready);
    run_free(&run);
    return ok ? 0 : 1;
}
