/* checkpoint: the HDF5 schema of mlp checkpoints (what is written, read and accepted), and
 * the naming, listing and pruning of checkpoint files in a directory. How bytes reach the
 * disk safely (atomic replace, symlink swap, fsyncs, the CRC seal) is fsafe's (fsafe.h).
 *
 * Layout: /model/W1 (d,h) /model/b1 (h) /model/W2 (h,K) /model/b2 (K), float32;
 * /history/{epoch (int64), train_loss, train_acc, test_acc, seconds, val_loss, val_acc,
 * test_loss (float64)}, 1-D (the last three since format_version 2);
 * /optimizer/{W1,b1,W2,b2}, float32, the velocity of momentum/nesterov (absent for sgd);
 * root attributes format, format_version, d, hidden, classes, epoch, step, epoch_step,
 * epoch_loss, epoch_correct, epoch_seconds, seed, batch, lr, reduce, ranks,
 * threads_per_rank, config, created, mlp_version (then optional ones: provenance, data,
 * best_val_acc, best_epoch); optional /model/x_mean, /model/x_std (d) float64
 * (data.normalize = standardize).
 * The first 512 bytes are an HDF5 user
 * block holding the seal line "mlp-checkpoint crc32 XXXXXXXX size N".
 *
 * Writing is for rank 0 only and atomic: the file is built in memory, written to a
 * temporary in DIR, fsync'd, renamed to DIR/epoch-NNNN.h5, the directory fsync'd, and
 * DIR/latest.h5 (a relative symlink) switched to it by the same rename dance. A crash at
 * any instant leaves the previous checkpoint and latest.h5 loadable.
 * Memory: CkptState arrays are borrowed on save, owned after ckpt_load (ckpt_state_free).
 * Errors: -1 with one line in err naming the path and what failed. No MPI here.
 */
#ifndef MLP_CHECKPOINT_H
#define MLP_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_FORMAT "mlp-checkpoint"
/* Written by this mlp; CKPT_FORMAT_VERSION_MIN..CKPT_FORMAT_VERSION load. Version 2 added
 * the optimizer state (/optimizer/...) and the best validation epoch; a version 1 file
 * loads with neither (plain SGD, no validation). */
#define CKPT_FORMAT_VERSION 2
#define CKPT_FORMAT_VERSION_MIN 1
#define CKPT_ERR_MAX 1024

typedef struct {
    size_t len;                 /* epochs recorded */
    size_t cap;
    int64_t *epoch;             /* (cap) */
    double *train_loss, *train_acc, *test_acc, *seconds;   /* (cap) each; NaN = not measured */
    double *val_loss, *val_acc, *test_loss;   /* (cap) each, format_version 2; NaN = not
                                               * measured (and in every version 1 file) */
} CkptHistory;

int ckpt_history_init(CkptHistory *h, size_t cap);
void ckpt_history_free(CkptHistory *h);
/* Append one epoch (grows if needed). Returns 0 or -1 on allocation failure. */
int ckpt_history_push(CkptHistory *h, int64_t epoch, double train_loss, double train_acc,
                      double test_acc, double seconds);
/* The last epoch's validation loss and accuracy and test loss (push leaves them NaN). */
void ckpt_history_set_eval(CkptHistory *h, double val_loss, double val_acc, double test_loss);

/* Everything a checkpoint holds. Arrays are borrowed on save, owned (free with
 * ckpt_state_free) after ckpt_load. */
typedef struct {
    int64_t format_version;     /* of the file, filled by ckpt_load (ckpt_save writes
                                 * CKPT_FORMAT_VERSION whatever it holds) */
    uint64_t d, hidden, classes;
    float *W1, *b1, *W2, *b2;   /* (d,hidden) (hidden) (hidden,classes) (classes) */
    int64_t epoch, step;        /* completed epochs; global steps taken */
    /* Mid-epoch position (all 0 at an epoch boundary): steps done in epoch `epoch` + 1
     * and the running sums of that partial epoch, so that a resumed run prints and
     * records the same epoch line as an uninterrupted one. */
    int64_t epoch_step, epoch_correct;
    double epoch_loss, epoch_seconds;
    uint64_t seed;
    int64_t batch;
    double lr;
    char reduce[16];            /* "exact" | "fast" */
    int64_t ranks, threads_per_rank;
    char *config;               /* resolved INI text */
    char created[32];           /* ISO 8601, UTC; filled by ckpt_save */
    char mlp_version[32];
    /* Provenance: the binary and the machine that wrote the file (bits are reproducible for
     * the same binary on the same CPU type); "" and 0 in files of an older mlp. build_isa
     * holds buildinfo.c's longest ISA, x86-64+sse4.2+avx+avx2+fma+avx512f (34 characters;
     * until 2026-12-02 it had 32 bytes and an AVX-512 build's was cut to 31). */
    char build_commit[64], build_compiler[160], build_flags[192], build_isa[64];
    char cpu_model[128];
    int64_t nodes;
    /* The data (since mlp 0.3; "" and 0 in older files): samples trained and tested on,
     * the type the inputs were held in ("uint8" = pixels / 255, "float32"), the CRC-32 of
     * the training inputs and labels as every rank compared them (data.h, Dataset.crc),
     * and data.normalize. With "standardize", x_mean and x_std (d each, float64) are the
     * training set's statistics that eval and predict apply; NULL otherwise. */
    int64_t train_samples, test_samples, train_crc;
    char input_type[16];
    char normalize[16];
    double *x_mean, *x_std;     /* (d) each, or both NULL */
    CkptHistory history;
    /* Optimizer state (format_version 2): the velocity, shaped as W1 b1 W2 b2, all four
     * NULL when the optimizer keeps none (sgd, and every version 1 file). */
    float *vW1, *vb1, *vW2, *vb2;
    /* The best validation accuracy so far and its epoch (0: none yet, or a version 1 file),
     * so that checkpoint.best and train.patience continue across a resume. */
    double best_val_acc;
    int64_t best_epoch;
} CkptState;

/* Write s atomically as DIR/epoch-NNNN.h5 (NNNN = s->epoch), or DIR/epoch-NNNN-SSSSSS.h5
 * mid-epoch (SSSSSS = s->epoch_step), and point DIR/latest.h5 at it; then delete the
 * oldest checkpoint files beyond `keep` (0 = keep all). Creates DIR if needed. s is
 * checked first with the same rules as ckpt_load (ranges of every attribute, history).
 * path_out (may be NULL) receives the file written. Returns 0 once the checkpoint and
 * latest.h5 are durable; a failure to delete an old file does not fail the save: it is
 * one line in warn (may be NULL; empty when there is nothing to warn about) for the
 * caller to print. -1 with err on any real failure. */
int ckpt_save_warn(const char *dir, CkptState *s, long keep, char *path_out, size_t path_len,
                   char *warn, size_t warnlen, char *err, size_t errlen);

/* ckpt_save_warn without the warning: a pruning failure is silently ignored. */
int ckpt_save(const char *dir, CkptState *s, long keep, char *path_out, size_t path_len,
              char *err, size_t errlen);

/* One checkpoint file of a directory: its place in training and its name. */
typedef struct {
    int64_t epoch, epoch_step;  /* completed epochs; steps into the next (0 at a boundary) */
    char name[64];              /* "epoch-NNNN.h5" or "epoch-NNNN-SSSSSS.h5" */
} CkptEntry;

/* The checkpoint files in dir, exactly as ckpt_save names them (epoch-NNNN.h5,
 * epoch-NNNN-SSSSSS.h5; not latest.h5, temporaries or look-alikes such as epoch-1.h5 or
 * epoch-0001.h5.bak), newest (epoch, epoch_step) first. *out is malloc'd (the caller frees
 * it; NULL when *n is 0), *n their count. A missing dir gives 0 entries. Returns 0, or -1
 * with a message in err (dir unreadable, not a directory, out of memory). */
int ckpt_list(const char *dir, CkptEntry **out, size_t *n, char *err, size_t errlen);

/* Read and validate a checkpoint, trusting nothing in it: path must be a regular file (a
 * FIFO or device is refused without blocking); its seal line must be intact and match the
 * size and CRC-32 of the rest (else refused, naming `mlp reseal` for a deliberate edit);
 * then format, version, every attribute in the range ckpt_save enforces, every dataset
 * present with the shape the attributes state, stored contiguous and unfiltered within
 * the file, and the history. The file is read once into memory and HDF5 parses those
 * bytes, so memory use is bounded by a few times the file's size (transient copies) plus
 * the model. NaN/Inf weights
 * load (a diverged run stays inspectable). Returns 0 or -1 with a message (control
 * characters escaped); on error s holds nothing to free. */
int ckpt_load(const char *path, CkptState *s, char *err, size_t errlen);

/* After a deliberate edit of a checkpoint (h5py), which leaves its seal stale: check the
 * file exactly as ckpt_load does (from memory, ignoring the seal), and only if it passes
 * rewrite it atomically with a fresh seal (mlp reseal FILE). The file must keep the
 * 512-byte block mlp wrote (h5py keeps it). 0, or -1 with a message, the file unchanged. */
int ckpt_reseal(const char *path, char *err, size_t errlen);

void ckpt_state_free(CkptState *s);

/* Write s atomically to `path` (a file name of its own, e.g. DIR/best.h5: not an epoch
 * file, so never listed, pruned or resumed from by `auto`), with the same checks, image
 * and seal as ckpt_save_warn, without touching latest.h5. 0, or -1 with err. */
int ckpt_save_as(const char *path, CkptState *s, char *err, size_t errlen);

/* Copy the NUL-terminated `in` to out (outlen > 0 bytes, always terminated) with every
 * byte that is not printable escaped: \n \r \t, other controls and bytes of invalid UTF-8
 * (C1 controls included) as \xHH; printable ASCII and valid printable UTF-8 are kept.
 * Truncates at a character boundary. Returns the length written. For any text of a file
 * shown on a terminal (mlp inspect, error messages): a file cannot send escape sequences. */
size_t ckpt_escape(char *out, size_t outlen, const char *in);

#endif
