/* allreduce: the time of mlp's one collective per step, MPI_Allreduce(MPI_IN_PLACE, SUM)
 * of the gradient buffer, as the trainer issues it between nodes (src/dist.c); with -m
 * node, the sum the trainer makes when every node runs the same number of ranks
 * (dist_reduce_*: through the node's shared memory, the trainer's own code).
 *
 *   mpirun -np P allreduce [-m mpi|node] [-r REPS] [-s SECONDS] [-c US] SPEC [SPEC ...]
 *
 * TYPE is i64 (exact mode: 64-bit fixed point) or f32 (fast mode); COUNT the elements,
 * e.g. i64:101774 for h = 128 (101,770 parameters + 4 per-step slots) and i64:1 for the
 * latency. x32:COUNT:N32 is exact mode's buffer with dW1 and db1 in int32 (under their
 * bound from W2, the usual case): its first N32 elements int32, packed at its start, the
 * rest int64, summed as the trainer sums it (dist_reduce_fixed; without the node's
 * window two MPI_Allreduce calls, int32 and int64), e.g. x32:101774:100480 for h = 128;
 * bytes= counts the bytes summed (4 N32 + 8 (COUNT - N32)). Every repetition starts after a barrier; its time is the slowest rank's. Prints
 * per spec, from rank 0:
 *     allreduce np=P type=i64 count=N bytes=.. reps=.. median_s=.. min_s=.. p90_s=..
 * Repetitions: REPS (default 200) after 10 warm-ups, stopping early once SECONDS (default
 * 3) have been spent on the spec, but never below 20.
 *
 * With -c US (i64 and f32 specs only), also whether a nonblocking allreduce progresses
 * behind computation: each rank computes for about US microseconds (arithmetic on a small
 * array, no MPI calls) with an MPI_Iallreduce of the same buffer started before and
 * waited for after; printed as
 *     overlap np=P type=.. count=N compute_s=.. blocking_s=.. overlapped_s=.. hidden=..
 * hidden = (compute + blocking - overlapped) / blocking: 1 if the reduction was entirely
 * hidden behind the computation, 0 if it only started inside MPI_Wait. */
#include "dist.h"

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Work that touches no memory beyond a few cache lines and calls no MPI: n rounds. */
static double work(long n)
{
    double x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (long i = 0; i < n; i++)
        for (int k = 0; k < 8; k++)
            x[k] = x[k] * 0.999999 + 1e-7;
    return x[0] + x[7];
}

static volatile double sink;

/* Median over ranks' maxima of `reps` timed runs of: barrier, [Iallreduce], work, [Wait]. */
static double time_overlap(void *buf, long count, MPI_Datatype dt, long n, int with_comm,
                           int reps, double *t, double *tmax)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    for (int r = 0; r < reps; r++) {
        MPI_Request req = MPI_REQUEST_NULL;
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        if (with_comm)
            MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, dt, MPI_SUM, MPI_COMM_WORLD, &req);
        sink = work(n);
        if (with_comm)
            MPI_Wait(&req, MPI_STATUS_IGNORE);
        t[r] = MPI_Wtime() - t0;
    }
    MPI_Allreduce(t, tmax, reps, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    qsort(tmax, (size_t)reps, sizeof *tmax, cmp_double);
    (void)rank;
    return tmax[reps / 2];
}

static void usage(int rank)
{
    if (rank == 0)
        fprintf(stderr, "usage: allreduce [-m mpi|node] [-r REPS] [-s SECONDS] [-c US] "
                "{i64|f32}:COUNT | x32:COUNT:N32 ...\n");
    MPI_Finalize();
    exit(2);
}

/* Small values, so that repeated sums never overflow or turn denormal or infinite: float
 * (esize 4) or int64 elements, the first n32 of them int32 packed at the start. */
static void fill(void *buf, long count, size_t esize, long n32)
{
    for (long i = 0; i < n32; i++)
        ((int32_t *)buf)[i] = (int32_t)(i & 7);
    for (long i = n32; i < count; i++)
        if (esize == 8)
            ((int64_t *)buf)[i] = i & 7;
        else
            ((float *)buf)[i] = 1e-3f * (float)(i & 7);
}

/* The bytes summed. */
static size_t sum_bytes(long count, size_t esize, long n32)
{
    return 4 * (size_t)n32 + (size_t)(count - n32) * esize;
}

/* The trainer's sum without the node's window: one MPI_Allreduce in place, or two when
 * the first n32 elements are int32 (dist_reduce_fixed). */
static void sum_buffer(void *buf, long count, MPI_Datatype dt, long n32)
{
    if (n32 > 0)
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n32, MPI_INT32_T, MPI_SUM, MPI_COMM_WORLD);
    if (count > n32)
        MPI_Allreduce(MPI_IN_PLACE, (int64_t *)buf + n32, (int)(count - n32), dt, MPI_SUM,
                      MPI_COMM_WORLD);
}

/* -m node: the median over reps (slowest rank) of one dist_reduce_* of count elements. */
static void time_node(const Dist *d, const char *type, long count, size_t esize, long n32,
                      int reps, double budget, double *t, double *tmax)
{
    DistReduce r;
    char err[512] = "";
    if (dist_reduce_init(&r, d, (size_t)count, esize, 0, 0, 0, err, sizeof err) != 0) {
        fprintf(stderr, "allreduce: %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int n = 0;
    double start = MPI_Wtime();
    for (int w = -10; n < reps; w++) {
        fill(r.buf, count, esize, n32);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        if (esize == 8)
            sink = (double)dist_reduce_fixed(&r, (size_t)n32)[count - 1];
        else
            sink = dist_reduce_f32(&r)[count - 1];
        if (w >= 0)
            t[n++] = MPI_Wtime() - t0;
        int stop = n >= 20 && MPI_Wtime() - start > budget;
        MPI_Bcast(&stop, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (stop)
            break;
    }
    MPI_Reduce(t, tmax, n, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (d->rank == 0) {
        qsort(tmax, (size_t)n, sizeof *tmax, cmp_double);
        printf("node-sum np=%d shared=%d type=%s count=%ld bytes=%zu reps=%d median_s=%.9f "
               "min_s=%.9f p90_s=%.9f\n", d->size, r.shared, type, count,
               sum_bytes(count, esize, n32), n, tmax[n / 2], tmax[0], tmax[(n * 9) / 10]);
        fflush(stdout);
    }
    dist_reduce_free(&r);
}

int main(int argc, char **argv)
{
    Dist dist;
    dist_init(&dist, &argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    int reps = 200, first = argc, node = 0;
    double budget = 3.0, compute_us = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) node = !strcmp(argv[++i], "node");
        else if (!strcmp(argv[i], "-s") && i + 1 < argc) budget = atof(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) compute_us = atof(argv[++i]);
        else if (argv[i][0] == '-') usage(rank);
        else { first = i; break; }
    }
    if (first >= argc || reps < 1) usage(rank);

    for (int a = first; a < argc; a++) {
        char type[8];
        long count, n32 = 0;
        const int got = sscanf(argv[a], "%3[a-z0-9]:%ld:%ld", type, &count, &n32);
        if (got < 2 || count < 1 || count > (1L << 30) || (got == 3) != !strcmp(type, "x32") ||
            n32 < 0 || n32 > count)
            usage(rank);
        MPI_Datatype dt;
        size_t esize;
        if (!strcmp(type, "i64") || !strcmp(type, "x32")) { dt = MPI_INT64_T; esize = 8; }
        else if (!strcmp(type, "f32")) { dt = MPI_FLOAT; esize = 4; }
        else usage(rank);

        void *buf = calloc((size_t)count, esize);
        double *t = malloc((size_t)reps * sizeof *t);
        double *tmax = malloc((size_t)reps * sizeof *tmax);
        if (!buf || !t || !tmax) MPI_Abort(MPI_COMM_WORLD, 1);
        if (node) {
            time_node(&dist, type, count, esize, n32, reps, budget, t, tmax);
            free(buf), free(t), free(tmax);
            continue;
        }
        for (int w = 0; w < 10; w++) {
            fill(buf, count, esize, n32);   /* (every sum of 8 ranks' values stays small) */
            sum_buffer(buf, count, dt, n32);
        }
        fill(buf, count, esize, n32);
        int n = 0;
        double start = MPI_Wtime();
        while (n < reps) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            sum_buffer(buf, count, dt, n32);
            t[n++] = MPI_Wtime() - t0;
            fill(buf, count, esize, n32);   /* keep the values from growing without bound */
            /* Stop on rank 0's clock, decided together, once past budget and 20 reps. */
            int stop = n >= 20 && MPI_Wtime() - start > budget;
            MPI_Bcast(&stop, 1, MPI_INT, 0, MPI_COMM_WORLD);
            if (stop) break;
        }
        MPI_Reduce(t, tmax, n, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        double blocking = 0;
        if (rank == 0) {
            qsort(tmax, (size_t)n, sizeof *tmax, cmp_double);
            blocking = tmax[n / 2];
            printf("allreduce np=%d type=%s count=%ld bytes=%zu reps=%d median_s=%.9f min_s=%.9f "
                   "p90_s=%.9f\n",
                   size, type, count, sum_bytes(count, esize, n32), n, blocking, tmax[0],
                   tmax[(n * 9) / 10]);
            fflush(stdout);
        }
        if (compute_us > 0 && n32 == 0) {
            /* Calibrate the work to about compute_us on rank 0, then use it everywhere. */
            long rounds = 1000;
            for (;;) {
                double t0 = MPI_Wtime();
                sink = work(rounds);
                double dt_s = MPI_Wtime() - t0;
                if (dt_s > 1e-3 || rounds > (1L << 40))
                    break;
                rounds *= 2;
            }
            double best = 1e30;
            for (int k = 0; k < 5; k++) {   /* the fastest of five: the clock may ramp up */
                double t0 = MPI_Wtime();
                sink = work(rounds);
                double dt_s = MPI_Wtime() - t0;
                best = dt_s < best ? dt_s : best;
            }
            rounds = (long)((double)rounds * compute_us * 1e-6 / best) + 1;
            MPI_Bcast(&rounds, 1, MPI_LONG, 0, MPI_COMM_WORLD);
            int r = n < 50 ? n : 50;
            double alone = time_overlap(buf, count, dt, rounds, 0, r, t, tmax);
            double both = time_overlap(buf, count, dt, rounds, 1, r, t, tmax);
            if (rank == 0) {
                printf("overlap np=%d type=%s count=%ld compute_s=%.9f blocking_s=%.9f "
                       "overlapped_s=%.9f hidden=%.2f\n", size, type, count, alone, blocking,
                       both, (alone + blocking - both) / blocking);
                fflush(stdout);
            }
        }
        free(buf);
        free(t);
        free(tmax);
    }
    dist_finalize(&dist);
    return 0;
}
