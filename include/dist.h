/* dist: everything MPI. Start-up and the rank's place (ranks, nodes, threads per rank),
 * shard arithmetic, the one gradient reduction per step, agreement on errors so that
 * a failure on one rank ends every rank instead of leaving the others in a collective,
 * and one block of memory shared by the ranks of a node (an MPI shared-memory window).
 *
 * Calls marked COLLECTIVE must be made by every rank in the same order; NODE-COLLECTIVE
 * by every rank of the node (in practice: by every rank, as the trainer does).
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
    int threads;                /* OpenMP threads per rank (docs/design.md section 4) */
    int threads_from_env;       /* 1 if OMP_NUM_THREADS set it */
    int oversubscribed;         /* on some node, its ranks' threads > its CPUs */
    int over_ranks, over_threads, over_cpus; /* that node's ranks, threads in all, CPUs
                                              * (the node with the largest excess) */
    /* Every rank's view, gathered by dist_init (the same on every rank), so that rank 0's
     * banner can tell when ranks or nodes differ: */
    int threads_min, threads_max;     /* threads per rank, over all ranks */
    int threads_env_ranks;            /* ranks whose thread count came from OMP_NUM_THREADS */
    int cpus_node_min, cpus_node_max; /* CPUs per node, over all nodes */
    char isa[48];                     /* the ISA this binary was compiled for, e.g.
                                       * "x86-64+sse4.2+avx+avx2+fma" */
    char isas[200];                   /* the distinct ISAs over all ranks, rank 0's first,
                                       * "; "-separated ("..." if they do not fit) */
    int isa_count;                    /* how many distinct ISAs */
    int binaries_differ;              /* the executables' bytes differ between ranks */
} Dist;

/* COLLECTIVE. MPI_Init_thread, the node split, the thread count (omp_set_num_threads),
 * and the survey of every rank's threads, node CPUs, ISA and executable (the *_min/_max,
 * isas and binaries_differ fields). On failure prints a message and exits 1. */
void dist_init(Dist *d, int *argc, char ***argv);
void dist_finalize(Dist *d);

/* COLLECTIVE. Returns the lowest rank whose ok was 0, or -1 if every rank was ok. */
int dist_first_failure(int ok);

/* COLLECTIVE. The smallest and largest v over all ranks. */
void dist_range_int(int v, int *min, int *max);

/* COLLECTIVE. The largest v over all ranks. */
int64_t dist_max_i64(int64_t v);

/* COLLECTIVE. Rank 0's value of v (so that every rank can compare its own with it). */
uint64_t dist_root_value(uint64_t v);

/* COLLECTIVE. The sum of v over the ranks of this node. */
int64_t dist_node_sum_i64(int64_t v);

/* One block of memory shared by the ranks of a node: allocated by the node's local rank 0
 * (the leader, which fills it), mapped by the others; read-only once filled. */
typedef struct {
    void *base;        /* the block, in this rank's address space; NULL when bytes == 0 */
    size_t bytes;
    int leader;        /* 1 on the node's local rank 0: the rank that must fill the block */
    /* dist's own: the node communicator and the window as MPI_Fint handles (MPI_Comm_c2f,
     * MPI_Win_c2f), so that this header needs no mpi.h and nothing is allocated for them */
    int has_comm, has_win;
    int64_t comm, win;
} DistShared;

/* NODE-COLLECTIVE. Allocates `bytes` (the leader's value counts; the others' is ignored)
 * in one shared-memory window on this node (MPI_Win_allocate_shared) and opens a passive
 * epoch on it (lock_all), so that every rank can read it with plain loads. bytes == 0
 * gives base == NULL. Returns 0, or -1 with a message in err, on every rank of the node
 * (there is no fallback to private copies: the error says what could not be had);
 * dist_node_shared_free must be called either way. Under Open MPI the node's rank 0 first
 * checks that the window's backing directory (osc_sm_backing_directory, /dev/shm) has
 * room, because Open MPI 4.1 hangs the node's other ranks when it cannot make the file. */
int dist_node_shared(DistShared *s, size_t bytes, char *err, size_t errlen);

/* NODE-COLLECTIVE. After the leader has written the block: makes its stores visible to
 * every rank of the node (MPI_Win_sync, barrier, MPI_Win_sync). */
void dist_node_shared_sync(DistShared *s);

/* NODE-COLLECTIVE (when a window was made). Releases the window; s is zeroed. Safe on a
 * zeroed s. */
void dist_node_shared_free(DistShared *s);

/* The step's gradient sum through the node's shared memory: each rank of a node writes
 * its buffer into its own slot of one shared window; after a node barrier each rank sums
 * one slice of the buffer over the node's slots (in local rank order) into a result area,
 * and, with several nodes, reduces that slice with the ranks of the same local rank on
 * the other nodes (one MPI_Allreduce per slice, all slices at once); after a second
 * barrier every rank reads the whole sum from the result area. Instead of MPI_Allreduce
 * over the whole buffer, which copies it through MPI's shared-memory transport; the sums
 * are the same numbers (int64: exactly; float: the node's ranks summed in local rank
 * order, which fast mode's results may depend on, as they may on MPI's order). Used when
 * every node runs the same number of ranks, more than one; otherwise (shared == 0) the
 * buffer is private and the sum is MPI_Allreduce in place, as before. */
typedef struct {
    int shared;        /* 1: the window below; 0: buf is private memory (malloc) */
    void *buf;         /* this rank's buffer: write the step's values here */
    void *result;      /* shared: the node's result area (read after dist_reduce_*) */
    size_t n, elem;    /* elements per buffer, bytes per element */
    size_t slot;       /* shared: bytes from one rank's slot to the next (cache-line aligned) */
    int local_rank, local_size;
    DistShared shm;
    int has_cross;     /* several nodes: the communicator of this local rank across nodes */
    int64_t cross;     /* as an MPI_Fint */
    /* shared, with blocks: map[j] = 0 says that this rank left block j (elements
     * j block .. (j + 1) block - 1, below `mapped`) unwritten because it is zero (set by
     * the kernels: KernelsSink.written), so that the sum skips it; NULL otherwise */
    uint8_t *map;
    void *maps;        /* shared: every local rank's map, mapb bytes apart */
    size_t block, mapped, blocks, mapb;
    /* shared: `extra` bytes of the window that the caller asked for (64-byte aligned,
     * zeroed), e.g. parameters every rank of the node reads; NULL otherwise */
    void *extra;
} DistReduce;

/* COLLECTIVE. A buffer of n elements of elem bytes (4: float, 8: int64), zeroed, with the
 * shared window when it applies; with it, and block > 0, a map of the blocks of `block`
 * elements that cover the first `mapped` elements (r->map, every block marked written).
 * With the window, `extra` more bytes of it for the caller (r->extra). Returns 0, or -1
 * with a message in err on every rank of a node (out of memory, or no room for the
 * window); dist_reduce_free must be called either way. */
int dist_reduce_init(DistReduce *r, const Dist *d, size_t n, size_t elem, size_t block,
                     size_t mapped, size_t extra, char *err, size_t errlen);

/* This rank's slice of the buffer, elements [*a, *b): the part it sums (shared) or all
 * of it (private). */
void dist_reduce_slice(const DistReduce *r, size_t *a, size_t *b);

/* COLLECTIVE (the node's ranks; nothing without the window): a barrier that orders the
 * window's memory around it. */
void dist_reduce_sync(DistReduce *r);

/* COLLECTIVE. The sum over all ranks of every rank's buf; returns where to read it (until
 * the next call; buf itself when the sum was made in place). Then buf may be rewritten. */
const float *dist_reduce_f32(DistReduce *r);
const int64_t *dist_reduce_i64(DistReduce *r);

/* COLLECTIVE. dist_reduce_i64 of an int64 buffer whose first n32 elements (the same n32
 * on every rank) are int32 instead, packed at its start (element e < n32 at
 * ((int32_t *)buf)[e]; elements from n32 on where they always are): summed as int32,
 * the result laid out the same way. For exact mode's dW1 and db1 under their bound
 * (KernelsSink.out_i32), whose sum over every rank stays within int32. */
const int64_t *dist_reduce_fixed(DistReduce *r, size_t n32);

/* COLLECTIVE (when the window was made). Safe on a zeroed r. */
void dist_reduce_free(DistReduce *r);

/* The rows [*begin, *end) of an m-sample minibatch that `rank` of `size` computes: the
 * minibatch is cut into ceil(m/chunk) chunks and the chunks go to ranks in contiguous,
 * balanced blocks. A rank may get none (begin == end). */
void dist_shard(size_t m, size_t chunk, int rank, int size, size_t *begin, size_t *end);

/* COLLECTIVE. In-place sum over all ranks with MPI_Allreduce (dist_reduce_* without the
 * shared window). */
void dist_sum_f32(const Dist *d, float *buf, size_t n);
void dist_sum_i64(const Dist *d, int64_t *buf, size_t n);

#endif
