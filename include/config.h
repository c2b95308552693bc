/* config: the run's settings, from an INI file (libinih) plus `--set section.key=value`
 * overrides, with every default in one place (config_defaults) and every value checked.
 *
 * Owns: the Config struct (plain values, fixed-size path buffers; nothing to free).
 * Touches: the INI file only. No MPI, no other files.
 * Errors: config_load returns -1 and writes ONE line into err, naming `file:line`, the
 * key and the value (or `--set ARG` for an override), e.g.
 *   configs/x.ini:7: [train] lr = 'abc': not a number
 * The file must be a regular file (a FIFO, a device or a directory is refused before
 * anything is read) and text: a control character other than tab (CR only before the
 * newline), DEL or NUL, in the file or in an override, is an error naming where it is.
 */
#ifndef MLP_CONFIG_H
#define MLP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "augment.h"
#include "optim.h"

#define CONFIG_PATH_MAX 1024
#define CONFIG_ERR_MAX 1024
/* train.chunk = auto cuts a minibatch into this many chunks: up to 8 ranks compute (the
 * headline mpirun -np 8), and larger batches get larger chunks, so fewer fixed-point
 * conversions in exact mode (docs/reduction.md). */
#define CONFIG_CHUNKS_PER_BATCH 8

typedef enum { REDUCE_EXACT = 0, REDUCE_FAST = 1 } ReduceMode;
typedef enum { PROGRESS_AUTO = 0, PROGRESS_ON = 1, PROGRESS_OFF = 2 } ProgressMode;

typedef struct {
    char source[CONFIG_PATH_MAX];          /* the INI file it was loaded from */
    struct {
        char train_images[CONFIG_PATH_MAX];
        char train_labels[CONFIG_PATH_MAX];
        char test_images[CONFIG_PATH_MAX];
        char test_labels[CONFIG_PATH_MAX];
        long train_limit;                  /* first N training samples; 0 = all */
        char format[8];                    /* "auto" (by signature), "idx" or "hdf5" */
        char x_dataset[256];               /* HDF5: features dataset, in each group */
        char y_dataset[256];               /* HDF5: labels dataset, in each group */
        char train_group[256];             /* HDF5: group of the training datasets ("/") */
        char test_group[256];              /* HDF5: group of the test datasets ("/") */
        char normalize[16];                /* "none" or "standardize" */
        long validation;                   /* training samples held out (chosen from the
                                            * seed) and evaluated every epoch; 0 = none */
        AugmentKind augment;
        double elastic_sigma, elastic_alpha;   /* pixels */
        double affine_rotate;              /* degrees */
        double affine_scale;               /* fraction */
        double affine_shift;               /* pixels */
    } data;
    struct {
        long hidden;                       /* h, hidden units */
        uint64_t seed;                     /* init and epoch order */
        char init[16];                     /* "xavier" */
        long classes;                      /* K; 0 = 1 + the largest training label */
    } model;
    struct {
        long epochs;
        long batch;                        /* GLOBAL minibatch size B, whatever the rank count */
        double lr;                         /* eta */
        long chunk;                        /* samples per reduction chunk; "auto" =
                                            * ceil(batch / CONFIG_CHUNKS_PER_BATCH),
                                            * resolved by config_load */
        ReduceMode reduce;
        char kernels[16];                  /* "fast" | "reference": kernels.h, kernels_select */
        long eval_every;                   /* epochs between test evaluations; 0 = only at end */
        OptimKind optimizer;
        double momentum;                   /* [0, 1) */
        double weight_decay;               /* coupled L2, >= 0 */
        int decay_biases;                  /* 1: b1, b2 decay too; 0 (default): W only */
        ScheduleKind schedule;
        double warmup_epochs;
        long step_epochs;                  /* schedule = step: epochs between decays */
        double step_gamma;                 /* schedule = step: factor per decay */
        double lr_min;                     /* schedule = cosine: the floor */
        long patience;                     /* epochs without a better val_acc; 0 = off */
    } train;
    struct {
        char dir[CONFIG_PATH_MAX];
        long every;                        /* epochs; 0 = only at end */
        long every_steps;                  /* 0 = off */
        long keep;                         /* epoch files kept; 0 = all */
        char resume[CONFIG_PATH_MAX];      /* "auto", "none" or a path */
        int overwrite;                     /* 1: a fresh run may replace the files of an
                                            * earlier run in dir; 0: it must not */
        int best;                          /* 1: keep DIR/best.h5, the best val_acc */
    } checkpoint;
    struct {
        char metrics[CONFIG_PATH_MAX];     /* CSV path; unset (""), config_load makes it
                                            * checkpoint.dir + "/metrics.csv" */
        ProgressMode progress;
        long progress_seconds;             /* between plain progress lines (not a terminal);
                                            * 0 = after every step */
    } log;
} Config;

/* Fill c with the documented defaults; log.metrics is left "" (see config_load). */
void config_defaults(Config *c);

/* Defaults, then the INI file at path, then each override "section.key=value" in order;
 * last, a log.metrics set by neither becomes checkpoint.dir + "/metrics.csv".
 * Returns 0, or -1 with a one-line message in err (errlen bytes). */
int config_load(Config *c, const char *path, int noverrides, char *const overrides[],
                char *err, size_t errlen);

/* The resolved configuration as INI text, every key, parseable by config_load.
 * Returns a malloc'd string (caller frees) or NULL on allocation failure. */
char *config_to_ini(const Config *c);

const char *config_reduce_name(ReduceMode m);

#endif
