/* dist: everything MPI. Start-up and the rank's place (ranks, nodes, threads per rank),
 * shard arithmetic, the one gradient reduction per step, and agreement on errors so that
 * a failure on one rank ends every rank instead of leaving the others in a collective.
 *
 * Calls marked COLLECTIVE must be made by every rank in the same order.
 * Knows nothing of the model's formulas.
 */
#ifndef MLP_DIST_H
#define MLP_DIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int rank, size;             /* in MPI_COMM_WORLD */
    int local_rank, local_size; /* on this node (MPI_COMM_TYPE_SHARED) */
    int nodes;
    int cpus;                   /* CPUs in this rank's affinity mask */
    int cpus_node;              /* CPUs in the union of this node's ranks' masks */
    int threads;                /* OpenMP threads per rank (DESIGN.md section 4) */
    int threads_from_env;       /* 1 if OMP_NUM_THREADS set it */
    int oversubscribed;         /* on some node, its ranks * threads > its CPUs */
} Dist;

/* COLLECTIVE. MPI_Init_thread, the node split, the thread count (omp_set_num_threads).
 * On failure prints a message and exits 1. */
void dist_init(Dist *d, int *argc, char ***argv);
void dist_finalize(Dist *d);

/* COLLECTIVE. Returns the lowest rank whose ok was 0, or -1 if every rank was ok. */
int dist_first_failure(int ok);

/* COLLECTIVE. The largest v over all ranks. */
int64_t dist_max_i64(int64_t v);

/* COLLECTIVE. Rank 0's value of v (so that every rank can compare its own with it). */
uint64_t dist_root_value(uint64_t v);

/* The rows [*begin, *end) of an m-sample minibatch that `rank` of `size` computes: the
 * minibatch is cut into ceil(m/chunk) chunks and the chunks go to ranks in contiguous,
 * balanced blocks. A rank may get none (begin == end). */
void dist_shard(size_t m, size_t chunk, int rank, int size, size_t *begin, size_t *end);

/* COLLECTIVE. In-place sum over all ranks: the one allreduce of a step. */
void dist_sum_f32(const Dist *d, float *buf, size_t n);
void dist_sum_i64(const Dist *d, int64_t *buf, size_t n);

#endif
