/* dist_reduce_fixed across ranks: exact mode's gradient buffer with dW1 and db1 as int32
 * packed at its start (KernelsSink.out_i32) and the rest int64, summed through the node's
 * shared window (slices that straddle the int32 part's end, a map of blocks some ranks
 * left unwritten with garbage in them) and through MPI_Allreduce (MLP_REDUCE_MPI=1).
 *
 * Run alone (as `make test` runs the unit tests), the program launches itself under
 * scripts/mpirun-local at 2 and 3 ranks, with and without MLP_REDUCE_MPI, and passes when
 * every launch does; each rank checks the whole sum against the one it computes from
 * every rank's inputs, and the ranks agree on the verdict. Not a cmocka test: cmocka's
 * output from several ranks would interleave. */
#include "dist.h"

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 1004, N32 = 700, BLOCK = 50 };

/* Whether rank q leaves block blk unwritten (only where there is a map). */
static int skipped(int q, size_t blk)
{
    return (blk + (size_t)q) % 3 == 0;
}

/* Rank q's int32 value of element e: near 2^31 / 3 for every third element, so that a
 * sum read as int64, or added with a carry into the neighbour, shows. */
static int32_t value32(int q, size_t e)
{
    const int32_t v = (int32_t)((e * 7919u + 13u * (unsigned)q) % 1000u);
    return (e % 2 ? v : -v) + (e % 3 == 0 ? 700000000 : 0);
}

static int64_t value64(int q, size_t e)
{
    return (int64_t)e * 1000000007LL + q;
}

/* One sum with n32 int32 elements (0: all int64); returns this rank's count of errors. */
static int check(const Dist *d, size_t n32)
{
    DistReduce r;
    char err[256];
    if (dist_reduce_init(&r, d, N, sizeof(int64_t), BLOCK, N32, 0, err, sizeof err) != 0) {
        fprintf(stderr, "test_dist: %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    memset(r.buf, 0xa5, N * sizeof(int64_t));   /* garbage wherever nothing is written */
    int32_t *b32 = r.buf;
    int64_t *b64 = r.buf;
    for (size_t e = 0; e < N32; e++) {
        const size_t blk = e / BLOCK;
        const int skip = r.map && skipped(d->rank, blk);
        if (r.map && e % BLOCK == 0)
            r.map[blk] = !skip;
        if (!skip && e < n32)
            b32[e] = value32(d->rank, e);
        else if (!skip)
            b64[e] = value64(d->rank, e);
    }
    for (size_t e = N32; e < N; e++)
        b64[e] = value64(d->rank, e);
    const int64_t *sum = dist_reduce_fixed(&r, n32);
    const int32_t *sum32 = (const int32_t *)(const void *)sum;
    int errors = 0;
    for (size_t e = 0; e < N; e++) {
        int64_t want = 0;
        for (int q = 0; q < d->size; q++)
            if (!(r.map && e < N32 && skipped(q, e / BLOCK)))
                want += e < n32 ? value32(q, e) : value64(q, e);
        const int64_t got = e < n32 ? sum32[e] : sum[e];
        if (got != want && errors++ < 5)
            fprintf(stderr, "test_dist: rank %d, n32 %zu, element %zu: %lld, want %lld\n",
                    d->rank, n32, e, (long long)got, (long long)want);
    }
    dist_reduce_sync(&r);
    dist_reduce_free(&r);
    return errors;
}

static int launch(const char *self, int np, int mpi_path)
{
    char cmd[4096 + 64];
    snprintf(cmd, sizeof cmd, "%sscripts/mpirun-local -np %d '%s'",
             mpi_path ? "MLP_REDUCE_MPI=1 " : "", np, self);
    fflush(stdout);
    const int rc = system(cmd);
    printf("%s: %s\n", cmd, rc == 0 ? "ok" : "FAILED");
    return rc == 0;
}

int main(int argc, char **argv)
{
    if (!getenv("OMPI_COMM_WORLD_SIZE")) {   /* alone: launch the ranks (from the repo root) */
        /* under SAN=1: LeakSanitizer's exit-time scan crashes in Open MPI's threads */
        setenv("ASAN_OPTIONS", "detect_leaks=0", 0);
        char self[4096];
        const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
        if (len <= 0)
            return 1;
        self[len] = '\0';
        int ok = 1;
        for (int np = 2; np <= 3; np++)
            for (int mpi_path = 0; mpi_path <= 1; mpi_path++)
                ok &= launch(self, np, mpi_path);
        printf("test_dist: %s\n", ok ? "passed" : "FAILED");
        return ok ? 0 : 1;
    }
    Dist d;
    dist_init(&d, &argc, &argv);
    int errors = check(&d, N32) + check(&d, 0) + check(&d, 123);   /* 123: mid-block */
    int all = 0;
    MPI_Allreduce(&errors, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    DistReduce probe;   /* which path this launch took, for the log */
    char err[256];
    dist_reduce_init(&probe, &d, 1, sizeof(int64_t), 0, 0, 0, err, sizeof err);
    if (d.rank == 0)
        printf("test_dist: %d ranks, %s: %d errors\n", d.size,
               probe.shared ? "node window" : "MPI_Allreduce", all);
    dist_reduce_free(&probe);
    dist_finalize(&d);
    return all == 0 ? 0 : 1;
}
