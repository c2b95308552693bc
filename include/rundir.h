/* rundir: the run directory (checkpoint.dir). One directory holds one run: its checkpoints,
 * its metrics CSV (log.metrics, by default DIR/metrics.csv), a copy of the resolved config
 * (DIR/config.ini) and the lock file DIR/.lock. These calls keep one run from destroying
 * another:
 *
 *  - rundir_open creates DIR (or refuses what is in its way), takes an exclusive lock that is
 *    held for the whole run and proves DIR writable with a probe file (written, fsync'd,
 *    removed). The lock is an open-file-description lock (fcntl F_OFD_SETLK; a POSIX lock on
 *    NFS): the kernel drops it when the process dies, so a killed run never blocks the next.
 *  - rundir_scan tells what a previous run left in DIR, so that a fresh run is refused
 *    before any work rather than truncating the old run's files.
 *  - rundir_metrics_resume keeps the metrics rows up to the resume point and moves the rows
 *    after it (and a partial last line) to a side file: history is set aside, never deleted.
 *
 * For rank 0 only: no MPI (the trainer agrees on the outcome), no HDF5. Errors: -1 with one
 * line in err naming the path and what is wrong.
 */
#ifndef MLP_RUNDIR_H
#define MLP_RUNDIR_H

#include <stddef.h>
#include <stdint.h>

#define RUNDIR_PATH_MAX 4096
#define RUNDIR_LOCK ".lock"
#define RUNDIR_CONFIG "config.ini"

typedef struct {
    int lock_fd;                   /* -1 when no lock is held */
    int created;                   /* rundir_open made DIR itself */
    char dir[RUNDIR_PATH_MAX];     /* without trailing slashes */
} RunDir;

/* What a previous run left in a run directory. */
typedef struct {
    size_t checkpoints;            /* epoch-NNNN[-SSSSSS].h5 files */
    char newest[64];               /* the newest of them; "" when none */
    int latest;                    /* DIR/latest.h5 exists (perhaps a dangling link) */
    int config;                    /* DIR/config.ini exists */
    long metrics_rows;             /* lines after the header in the metrics file; -1: no file */
} RunFiles;

/* Create dir (mkdir -p), refuse it if it is not a directory, take the lock (a held lock is
 * an error naming its holder: pid, host, start time, as written in the lock file), and
 * write, fsync and remove a probe file. On error nothing is held. */
int rundir_open(RunDir *r, const char *dir, char *err, size_t errlen);

/* Release the lock. remove_if_unused: a DIR that rundir_open created itself and that still
 * holds nothing but the lock file is removed, so that a run refused at start-up leaves no
 * trace. Safe on a zeroed RunDir with lock_fd = -1. */
void rundir_close(RunDir *r, int remove_if_unused);

/* A path mlp will write or read must be a regular file (or not exist yet): a FIFO would
 * block, a device or directory is never meant. `what` names the key, e.g. "log.metrics". */
int rundir_check_regular(const char *path, const char *what, char *err, size_t errlen);

/* What of a previous run is in dir (and in the metrics file at metrics_path). */
int rundir_scan(const char *dir, const char *metrics_path, RunFiles *f, char *err,
                size_t errlen);

/* 1 if f shows another run's files (checkpoints, latest.h5, config.ini or metrics rows). */
int rundir_has_run(const RunFiles *f);

/* "3 checkpoints up to epoch-0030.h5, latest.h5, config.ini, metrics.csv with 30 rows". */
void rundir_describe(const RunFiles *f, const char *metrics_path, char *buf, size_t len);

/* checkpoint.overwrite: remove the previous run's checkpoints, latest.h5, best.h5 and config.ini
 * (the metrics file is truncated by whoever opens it next). *removed counts the files. */
int rundir_clear(const char *dir, int *removed, char *err, size_t errlen);

/* On resume at `epoch` completed epochs: the metrics file keeps its header and the rows of
 * epochs 1..epoch; rows of later epochs, rows that do not parse and a last line without
 * its newline are moved to a new side file PATH.aside-YYYYMMDDTHHMMSSZ[-N] (its name into
 * aside, "" when nothing was moved; the file is then left untouched). The first line must be
 * `header` (a file that is not mlp's metrics is never rewritten). A symlink is written
 * through. A missing or empty file is fine (nothing to do). */
int rundir_metrics_resume(const char *path, const char *header, int64_t epoch, char *aside,
                          size_t asidelen, char *err, size_t errlen);

/* On resume at (epoch, epoch_step): the checkpoint files in dir of a LATER place (from a
 * run that went on past the resume point, or files that did not load) are renamed to
 * NAME.aside-YYYYMMDDTHHMMSSZ[-N] (never replaced, and no longer checkpoints to ckpt_list),
 * so that the resumed run writing those places does not overwrite them. *moved counts them;
 * first names the first one moved ("" when none). */
int rundir_set_aside_later(const char *dir, int64_t epoch, int64_t epoch_step, int *moved,
                           char *first, size_t firstlen, char *err, size_t errlen);

/* Write text to DIR/config.ini atomically (temporary, fsync, rename, directory fsync). */
int rundir_save_config(const char *dir, const char *text, char *err, size_t errlen);

#endif
