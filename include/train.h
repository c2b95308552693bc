/* train: the run. Loads the data, builds the model, runs the epoch/step loop with one
 * gradient reduction per step, evaluates, logs (rank 0: stdout and the metrics CSV) and
 * checkpoints (rank 0). Contains no math: formulas are in model/kernels, MPI in dist.
 *
 * COLLECTIVE: every rank calls train_run with the same Config.
 */
#ifndef MLP_TRAIN_H
#define MLP_TRAIN_H

#include "config.h"
#include "dist.h"

#define MLP_VERSION "0.2.0"

/* Returns the process exit status: 0, or 1 after a user error (bad data, divergence,
 * unwritable output) reported by the rank that met it, agreed on by every rank. */
int train_run(const Config *cfg, const Dist *dist);

#endif
