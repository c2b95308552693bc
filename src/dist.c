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

static int affinity_cpus(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
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

    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &d->local_rank);
    MPI_Comm_size(node, &d->local_size);
    MPI_Comm_free(&node);
    int leader = d->local_rank == 0;
    MPI_Allreduce(&leader, &d->nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);

    /* Threads per rank (DESIGN.md section 4): OMP_NUM_THREADS if set; otherwise the CPUs
     * this rank may run on, shared among the ranks of the node when the ranks are not
     * bound (a bound rank's mask already is its share). */
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1)
        online = 1;
    d->cpus = affinity_cpus();
    const char *env = getenv("OMP_NUM_THREADS");
    d->threads_from_env = env && *env;
    if (d->threads_from_env)
        d->threads = omp_get_max_threads();
    else if (d->cpus < online)
        d->threads = d->cpus;
    else
        d->threads = d->cpus / d->local_size > 0 ? d->cpus / d->local_size : 1;
    omp_set_num_threads(d->threads);

    /* Oversubscribed when this node's ranks want more threads than it has CPUs. */
    d->oversubscribed = (long)d->local_size * d->threads > online;
    int over = d->oversubscribed, any_over = 0;
    MPI_Allreduce(&over, &any_over, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    d->oversubscribed = any_over;
    d->cpus_node = (int)online;
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

_Noreturn void dist_abort(const Dist *d, const char *msg)
{
    fprintf(stderr, "mlp: [rank %d] error: %s\n", d->rank, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);   /* MPI_Abort does not return; this keeps the compiler and readers sure */
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

double dist_sum_f64(const Dist *d, double v)
{
    (void)d;
    double s = 0;
    MPI_Allreduce(&v, &s, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return s;
}
