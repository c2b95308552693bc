/* dist: the only file that calls MPI. See include/dist.h. */
#define _GNU_SOURCE   /* sched_getaffinity, CPU_COUNT */
#include "dist.h"

#include <limits.h>
#include <mpi.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* COLLECTIVE on node. Threads per rank (DESIGN.md section 4): OMP_NUM_THREADS if set;
 * otherwise the CPUs in this rank's affinity mask, shared among the node's ranks that
 * have exactly the same mask (all of them when unbound or in one cgroup, one when each
 * rank is bound to its own cores). The node's CPUs are the union of the ranks' masks. */
static void choose_threads(Dist *d, MPI_Comm node)
{
    cpu_set_t mine, all;
    CPU_ZERO(&mine);
    if (sched_getaffinity(0, sizeof mine, &mine) != 0 || CPU_COUNT(&mine) == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        for (long c = 0; c < (n > 0 ? n : 1) && c < CPU_SETSIZE; c++)
            CPU_SET(c, &mine);
    }
    d->cpus = CPU_COUNT(&mine);
    MPI_Allreduce(&mine, &all, (int)sizeof mine, MPI_BYTE, MPI_BOR, node);
    d->cpus_node = CPU_COUNT(&all);

    cpu_set_t *masks = malloc((size_t)d->local_size * sizeof *masks);
    if (!masks) {
        fprintf(stderr, "mlp: [rank %d] error: out of memory (%zu bytes)\n", d->rank,
                (size_t)d->local_size * sizeof *masks);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, masks, (int)sizeof mine, MPI_BYTE, node);
    int sharing = 0;
    for (int r = 0; r < d->local_size; r++)
        sharing += CPU_EQUAL(&masks[r], &mine);
    free(masks);

    const char *env = getenv("OMP_NUM_THREADS");
    d->threads_from_env = env && *env;
    if (d->threads_from_env)
        d->threads = omp_get_max_threads();
    else
        d->threads = d->cpus / sharing > 0 ? d->cpus / sharing : 1;
    omp_set_num_threads(d->threads);

    /* Oversubscribed when some node's ranks want more threads than it has CPUs. */
    int want = d->threads, node_want = 0, over, any_over = 0;
    MPI_Allreduce(&want, &node_want, 1, MPI_INT, MPI_SUM, node);
    over = node_want > d->cpus_node;
    MPI_Allreduce(&over, &any_over, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    d->oversubscribed = any_over;
}

void dist_init(Dist *d, int *argc, char ***argv)
{
    int provided = 0;
    /* Only the master thread calls MPI, outside parallel regions. */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "mlp: error: MPI_Init_thread failed\n");
        exit(1);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    if (provided < MPI_THREAD_FUNNELED && d->rank == 0)
        fprintf(stderr, "mlp: warning: the MPI library gives thread level %d, less than "
                "MPI_THREAD_FUNNELED; mlp calls MPI from the main thread only\n", provided);

    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &d->local_rank);
    MPI_Comm_size(node, &d->local_size);
    int leader = d->local_rank == 0;
    MPI_Allreduce(&leader, &d->nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    choose_threads(d, node);
    MPI_Comm_free(&node);
}

void dist_finalize(Dist *d)
{
    (void)d;
    MPI_Finalize();
}

int dist_first_failure(int ok)
{
    int rank, mine, first;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    mine = ok ? INT_MAX : rank;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return first == INT_MAX ? -1 : first;
}

int64_t dist_max_i64(int64_t v)
{
    int64_t m = v;
    MPI_Allreduce(&v, &m, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    return m;
}

uint64_t dist_root_value(uint64_t v)
{
    MPI_Bcast(&v, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    return v;
}

void dist_shard(size_t m, size_t chunk, int rank, int size, size_t *begin, size_t *end)
{
    size_t nchunks = (m + chunk - 1) / chunk;
    size_t c0 = nchunks * (size_t)rank / (size_t)size;
    size_t c1 = nchunks * ((size_t)rank + 1) / (size_t)size;
    *begin = c0 * chunk < m ? c0 * chunk : m;
    *end = c1 * chunk < m ? c1 * chunk : m;
}

/* MPI counts are int: reduce in pieces if a buffer ever exceeds INT_MAX elements. */
void dist_sum_f32(const Dist *d, float *buf, size_t n)
{
    (void)d;
    for (size_t off = 0; off < n; off += INT_MAX) {
        int cnt = n - off < INT_MAX ? (int)(n - off) : INT_MAX;
        MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
}

void dist_sum_i64(const Dist *d, int64_t *buf, size_t n)
{
    (void)d;
    for (size_t off = 0; off < n; off += INT_MAX) {
        int cnt = n - off < INT_MAX ? (int)(n - off) : INT_MAX;
        MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    }
}

