/* dist: the only file that calls MPI. See include/dist.h. */
#define _GNU_SOURCE   /* sched_getaffinity, CPU_COUNT */
#include "dist.h"

#include "buildinfo.h"
#include "kernels.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <mpi.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* COLLECTIVE on node. Threads per rank (docs/design.md section 4): OMP_NUM_THREADS if set;
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

    /* Oversubscribed when some node's ranks want more threads than it has CPUs; the
     * figures of the node with the largest excess are kept, for the banner. */
    int want = d->threads, node_want = 0;
    MPI_Allreduce(&want, &node_want, 1, MPI_INT, MPI_SUM, node);
    struct { int excess, rank; } in = {node_want - d->cpus_node, d->rank}, worst;
    MPI_Allreduce(&in, &worst, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD);
    int fig[3] = {d->local_size, node_want, d->cpus_node};
    MPI_Bcast(fig, 3, MPI_INT, worst.rank, MPI_COMM_WORLD);
    d->oversubscribed = worst.excess > 0;
    d->over_ranks = fig[0];
    d->over_threads = fig[1];
    d->over_cpus = fig[2];
}

void dist_range_int(int v, int *min, int *max)
{
    int in[2] = {-v, v}, out[2];   /* one reduction: max of -v is -min */
    MPI_Allreduce(in, out, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    *min = -out[0];
    *max = out[1];
}


/* FNV-1a of the running executable's bytes (/proc/self/exe), or 0 if it cannot be read:
 * two ranks with different hashes run different binaries. */
static uint64_t exe_hash(void)
{
    FILE *f = fopen("/proc/self/exe", "rb");
    if (!f)
        return 0;
    uint64_t h = 0xcbf29ce484222325u;
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 0x100000001b3u;
    if (ferror(f))
        h = 0;
    fclose(f);
    return h;
}

/* COLLECTIVE. What every rank has: threads, its node's CPUs, ISA and executable. */
static void survey(Dist *d)
{
    dist_range_int(d->threads, &d->threads_min, &d->threads_max);
    dist_range_int(d->cpus_node, &d->cpus_node_min, &d->cpus_node_max);
    MPI_Allreduce(&d->threads_from_env, &d->threads_env_ranks, 1, MPI_INT, MPI_SUM,
                  MPI_COMM_WORLD);

    /* A hash of 0 (unreadable) counts as "unknown", not as a different binary. */
    uint64_t h = exe_hash(), hv[2] = {h ? h : UINT64_MAX, h}, hmin[2];
    MPI_Allreduce(&hv[0], &hmin[0], 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&hv[1], &hmin[1], 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    d->binaries_differ = hmin[0] != UINT64_MAX && hmin[0] != hmin[1];

    snprintf(d->isa, sizeof d->isa, "%s", buildinfo()->isa);
    const size_t w = sizeof d->isa;
    char *all = malloc((size_t)d->size * w);
    if (!all) {
        fprintf(stderr, "mlp: [rank %d] error: out of memory (%zu bytes)\n", d->rank,
                (size_t)d->size * w);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Allgather(d->isa, (int)w, MPI_CHAR, all, (int)w, MPI_CHAR, MPI_COMM_WORLD);
    d->isa_count = 0;
    d->isas[0] = '\0';
    size_t used = 0;
    for (int r = 0; r < d->size; r++) {
        const char *name = all + (size_t)r * w;
        int seen = 0;
        for (int q = 0; q < r && !seen; q++)
            seen = strncmp(name, all + (size_t)q * w, w) == 0;
        if (seen)
            continue;
        d->isa_count++;
        int n = snprintf(d->isas + used, sizeof d->isas - used, "%s%.*s",
                         used ? "; " : "", (int)w, name);
        if (n < 0 || (size_t)n >= sizeof d->isas - used) {
            snprintf(d->isas + sizeof d->isas - 4, 4, "...");
            used = sizeof d->isas - 1;
        } else {
            used += (size_t)n;
        }
    }
    free(all);
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
    survey(d);
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

static void sum_i32(int32_t *buf, size_t n)
{
    for (size_t off = 0; off < n; off += INT_MAX) {
        int cnt = n - off < INT_MAX ? (int)(n - off) : INT_MAX;
        MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_INT32_T, MPI_SUM, MPI_COMM_WORLD);
    }
}

int64_t dist_node_sum_i64(int64_t v)
{
    int rank;
    int64_t sum = v;
    MPI_Comm node;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Allreduce(&v, &sum, 1, MPI_INT64_T, MPI_SUM, node);
    MPI_Comm_free(&node);
    return sum;
}

/* Room for a window's backing file, beyond its size: Open MPI adds a page and a few
 * hundred bytes of state per rank. */
#define DIST_SHM_SLACK ((uint64_t)1 << 20)

/* The directory where Open MPI keeps a shared window's memory (its osc_sm_backing_directory,
 * read through the MPI tool interface), or 0 if this MPI has no such variable. */
static int shm_dir(char *dir, size_t len)
{
    int provided, idx, count, found = 0;
    if (MPI_T_init_thread(MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return 0;
    MPI_T_cvar_handle h;
    if (MPI_T_cvar_get_index("osc_sm_backing_directory", &idx) == MPI_SUCCESS &&
        MPI_T_cvar_handle_alloc(idx, NULL, &h, &count) == MPI_SUCCESS) {
        char *buf = count > 0 ? calloc((size_t)count + 1, 1) : NULL;
        if (buf && MPI_T_cvar_read(h, buf) == MPI_SUCCESS && buf[0])
            found = snprintf(dir, len, "%s", buf) < (int)len;
        free(buf);
        MPI_T_cvar_handle_free(&h);
    }
    MPI_T_finalize();
    return found;
}

/* The node's rank 0, before MPI_Win_allocate_shared: whether the window's backing file can
 * be made. Open MPI 4.1 does not fail cleanly when it cannot (a missing directory, or a
 * full one such as a container's small /dev/shm): rank 0's call returns an error while the
 * other ranks wait for it forever. So the directory is checked first, and a clear error
 * given in time. Returns 1 when there is room (or nothing to check), 0 with why written. */
static int shm_room(uint64_t size, char *why, size_t len)
{
    char dir[512];
    struct statvfs st;
    if (!shm_dir(dir, sizeof dir))
        return 1;
    const char *other =
        "choose another local directory (mpirun --mca osc_sm_backing_directory /tmp)";
    if (statvfs(dir, &st) != 0 || access(dir, W_OK | X_OK) != 0) {
        snprintf(why, len, "cannot share %" PRIu64 " bytes between the ranks of this node: "
                 "%s, where Open MPI keeps shared memory (osc_sm_backing_directory), is not "
                 "usable: %s; %s", size, dir, strerror(errno), other);
        return 0;
    }
    const uint64_t avail = (uint64_t)st.f_bavail * st.f_frsize;
    if (avail < size + DIST_SHM_SLACK) {
        snprintf(why, len, "cannot share %" PRIu64 " bytes between the ranks of this node: "
                 "%s, where Open MPI keeps shared memory (osc_sm_backing_directory), has %"
                 PRIu64 " bytes free; make it larger (e.g. docker run --shm-size=1g) or %s",
                 size, dir, avail, other);
        return 0;
    }
    return 1;
}

int dist_node_shared(DistShared *s, size_t bytes, char *err, size_t errlen)
{
    int rank, local;
    MPI_Comm node;
    memset(s, 0, sizeof *s);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local);
    s->leader = local == 0;
    s->comm = MPI_Comm_c2f(node);
    s->has_comm = 1;

    /* Every rank of the node takes the leader's size, so that all take the same path. */
    uint64_t size = bytes;
    MPI_Bcast(&size, 1, MPI_UINT64_T, 0, node);
    const MPI_Aint asize = (MPI_Aint)size;
    if (asize < 0 || (uint64_t)asize != size) {
        snprintf(err, errlen, "cannot share %" PRIu64 " bytes between the ranks of a node: more "
                 "than this machine or MPI (MPI_Aint) can address", size);
        return -1;
    }
    s->bytes = (size_t)size;
    if (size == 0)
        return 0;

    int local_size, room = 1;
    char why[1536] = "";
    MPI_Comm_size(node, &local_size);
    if (s->leader && local_size > 1)   /* Open MPI gives a one-rank window plain memory */
        room = shm_room(size, why, sizeof why);
    MPI_Bcast(&room, 1, MPI_INT, 0, node);
    if (!room) {
        MPI_Bcast(why, (int)sizeof why, MPI_CHAR, 0, node);
        snprintf(err, errlen, "%s", why);
        return -1;
    }

    /* Errors returned, not fatal, so that a window that cannot be had anyway (an MPI
     * without shared-memory windows, say) is a one-line error like any other. */
    MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
    MPI_Win win = MPI_WIN_NULL;
    void *base = NULL;
    int rc = MPI_Win_allocate_shared(s->leader ? asize : 0, 1, MPI_INFO_NULL, node, &base, &win);
    int mine = rc == MPI_SUCCESS ? INT_MAX : local, first = INT_MAX;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, node);
    if (first != INT_MAX) {
        /* A window made on this rank is left as it is: freeing it is collective, and some
         * rank of the node has none. The run ends with this error. */
        if (rc != MPI_SUCCESS) {
            char text[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, text, &len);
            snprintf(err, errlen, "cannot allocate %" PRIu64 " bytes of memory shared by the "
                     "ranks of this node (MPI_Win_allocate_shared: %.*s); is the shared-memory "
                     "file system (/dev/shm) large enough?", size, len, text);
        } else {
            snprintf(err, errlen, "cannot allocate %" PRIu64 " bytes of memory shared by the "
                     "ranks of this node: local rank %d's MPI_Win_allocate_shared failed",
                     size, first);
        }
        return -1;
    }
    MPI_Aint qsize = 0;
    int disp = 0;
    MPI_Win_shared_query(win, 0, &qsize, &disp, &base);
    s->win = MPI_Win_c2f(win);
    s->has_win = 1;
    /* A passive epoch for the window's life: the leader's stores, and every rank's loads,
     * are then plain memory accesses ordered by dist_node_shared_sync. */
    MPI_Win_lock_all(MPI_MODE_NOCHECK, win);
    s->base = base;
    return 0;
}

void dist_node_shared_sync(DistShared *s)
{
    if (!s->has_comm)
        return;
    MPI_Win win = s->has_win ? MPI_Win_f2c((MPI_Fint)s->win) : MPI_WIN_NULL;
    if (s->has_win)
        MPI_Win_sync(win);   /* the leader's stores reach the window ... */
    MPI_Barrier(MPI_Comm_f2c((MPI_Fint)s->comm));
    if (s->has_win)
        MPI_Win_sync(win);   /* ... before any rank reads it */
}

void dist_node_shared_free(DistShared *s)
{
    if (s == NULL)
        return;
    if (s->has_win) {
        MPI_Win win = MPI_Win_f2c((MPI_Fint)s->win);
        MPI_Win_unlock_all(win);
        MPI_Win_free(&win);
    }
    if (s->has_comm) {
        MPI_Comm node = MPI_Comm_f2c((MPI_Fint)s->comm);
        MPI_Comm_free(&node);
    }
    memset(s, 0, sizeof *s);
}

int dist_reduce_init(DistReduce *r, const Dist *d, size_t n, size_t elem, size_t block,
                     size_t mapped, size_t extra, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->n = n, r->elem = elem;
    r->local_rank = d->local_rank, r->local_size = d->local_size;
    int lmin, lmax;
    dist_range_int(d->local_size, &lmin, &lmax);
    r->shared = lmin == lmax && lmax > 1 && getenv("MLP_REDUCE_MPI") == NULL;
    if (!r->shared) {
        r->buf = kernels_calloc(n, elem);   /* the kernels write it */
        if (!r->buf)
            snprintf(err, errlen, "out of memory for the gradient buffer (%zu bytes)", n * elem);
        return r->buf ? 0 : -1;
    }
    if (d->nodes > 1) {   /* before anything that can fail on one node only */
        MPI_Comm cross;
        MPI_Comm_split(MPI_COMM_WORLD, d->local_rank, d->rank, &cross);
        r->cross = MPI_Comm_c2f(cross);
        r->has_cross = 1;
    }
    if (n > SIZE_MAX / elem - 64) {
        snprintf(err, errlen, "gradient buffer of %zu elements: too large", n);
        return -1;
    }
    r->slot = (n * elem + 63) / 64 * 64;
    r->block = block, r->mapped = mapped < n ? mapped : n;
    r->blocks = block ? (r->mapped + block - 1) / block : 0;
    r->mapb = (r->blocks + 63) / 64 * 64;
    const size_t L = (size_t)d->local_size, xb = (extra + 63) / 64 * 64;
    if (r->slot > (SIZE_MAX - 64) / (L + 1) / 4 || r->mapb > (SIZE_MAX - 64) / 4 / L ||
        extra > SIZE_MAX / 4) {
        snprintf(err, errlen, "gradient buffer of %zu elements: too large", n);
        return -1;
    }
    /* local_size slots, the result, local_size maps and the extra bytes, 64 bytes of
     * slack to align the start */
    if (dist_node_shared(&r->shm, r->slot * (L + 1) + r->mapb * L + xb + 64, err, errlen) != 0)
        return -1;
    char *base = (char *)(((uintptr_t)r->shm.base + 63) / 64 * 64);
    r->buf = base + r->slot * (size_t)d->local_rank;
    r->result = base + r->slot * L;
    r->maps = base + r->slot * (L + 1);
    r->extra = extra ? base + r->slot * (L + 1) + r->mapb * L : NULL;
    memset(r->buf, 0, r->slot);   /* each rank its own slot */
    if (r->blocks) {
        r->map = (uint8_t *)r->maps + r->mapb * (size_t)d->local_rank;
        memset(r->map, 1, r->blocks);
    }
    return 0;
}

/* Node barrier with the window's memory ordered around it. */
static void reduce_barrier(DistReduce *r)
{
    dist_node_shared_sync(&r->shm);
}

void dist_reduce_slice(const DistReduce *r, size_t *a, size_t *b)
{
    if (!r->shared) {
        *a = 0, *b = r->n;
        return;
    }
    *a = r->n * (size_t)r->local_rank / (size_t)r->local_size;
    *b = r->n * ((size_t)r->local_rank + 1) / (size_t)r->local_size;
}

void dist_reduce_sync(DistReduce *r)
{
    if (r->shared)
        reduce_barrier(r);
}

/* The element types of a sum: the buffer's (float or int64), or int32 for the first n32
 * elements of a fixed-point sum (dist_reduce_fixed). */
enum { SUM_F32, SUM_I64, SUM_I32 };

static size_t type_size(int type)
{
    return type == SUM_I64 ? sizeof(int64_t) : 4;
}

/* Elements [a, b) of the result (of one type) summed with the other nodes. */
static void cross_sum(DistReduce *r, int type, size_t a, size_t b)
{
    if (!r->has_cross || a >= b)
        return;
    MPI_Comm cross = MPI_Comm_f2c((MPI_Fint)r->cross);
    const MPI_Datatype dt = type == SUM_F32 ? MPI_FLOAT : type == SUM_I64 ? MPI_INT64_T
                                                                          : MPI_INT32_T;
    char *p = (char *)r->result + a * type_size(type);
    const size_t len = b - a;
    for (size_t off = 0; off < len; off += INT_MAX) {
        int cnt = len - off < INT_MAX ? (int)(len - off) : INT_MAX;
        MPI_Allreduce(MPI_IN_PLACE, p + off * type_size(type), cnt, dt, MPI_SUM, cross);
    }
}

/* Slot q of the node, as elements of type T. */
#define SLOT(r, q, T) ((const T *)(const void *)((const char *)(r)->result - \
                                                 (r)->slot * (size_t)((r)->local_size - (q))))

/* result[i, e) = slot q's elements (the first slot summed), or += them, as type T. */
#define ADD_SLOT(T)                                                 \
    do {                                                            \
        T *out_ = r->result;                                        \
        const T *s_ = SLOT(r, q, T);                                \
        if (first)                                                  \
            memcpy(out_ + i, s_ + i, (e - i) * sizeof *out_);       \
        else                                                        \
            for (size_t k_ = i; k_ < e; k_++)                       \
                out_[k_] += s_[k_];                                 \
    } while (0)

/* Elements [i, e) of the result, all of one type: the sum of the slots in local rank
 * order, less the slots whose map marks block blk unwritten (zero; blk >= blocks: no map
 * there). */
static void sum_typed(DistReduce *r, int type, size_t i, size_t e, size_t blk)
{
    int first = 1;
    for (int q = 0; q < r->local_size; q++) {
        if (blk < r->blocks && !((const uint8_t *)r->maps + r->mapb * (size_t)q)[blk])
            continue;
        if (type == SUM_F32)
            ADD_SLOT(float);
        else if (type == SUM_I64)
            ADD_SLOT(int64_t);
        else
            ADD_SLOT(int32_t);
        first = 0;
    }
    if (first)
        memset((char *)r->result + i * type_size(type), 0, (e - i) * type_size(type));
}

/* Elements [i, e): the int32 ones (below n32) and the others (of the buffer's type). */
static void sum_segment(DistReduce *r, int type, size_t n32, size_t i, size_t e, size_t blk)
{
    if (i < n32)
        sum_typed(r, SUM_I32, i, e < n32 ? e : n32, blk);
    if (e > n32)
        sum_typed(r, type, i > n32 ? i : n32, e, blk);
}

/* The shared path: slots summed slice by slice (local rank order; blocks a rank left
 * unwritten skipped: they are zero), the slices reduced across nodes, the result visible
 * to the node's ranks. In segments: the map's blocks below `mapped`, 4,096 elements
 * after it. */
static void *reduce_node(DistReduce *r, int type, size_t n32)
{
    reduce_barrier(r);   /* every slot written */
    size_t a, b;
    dist_reduce_slice(r, &a, &b);
    const size_t m1 = r->blocks && r->mapped > a ? (r->mapped < b ? r->mapped : b) : a;
    const size_t k0 = r->blocks ? a / r->block : 0, k1 = m1 > a ? (m1 - 1) / r->block + 1 : k0;
#pragma omp parallel for schedule(static) if (m1 - a > 16384)
    for (size_t k = k0; k < k1; k++) {   /* [a, m1): block by block */
        const size_t i = k * r->block > a ? k * r->block : a;
        const size_t e = (k + 1) * r->block < m1 ? (k + 1) * r->block : m1;
        sum_segment(r, type, n32, i, e, k);
    }
    const size_t s0 = m1 / 4096, s1 = b > m1 ? (b - 1) / 4096 + 1 : s0;
#pragma omp parallel for schedule(static) if (b - m1 > 16384)
    for (size_t k = s0; k < s1; k++) {   /* [m1, b): no map */
        const size_t i = k * 4096 > m1 ? k * 4096 : m1, e = (k + 1) * 4096 < b ? (k + 1) * 4096 : b;
        sum_segment(r, type, n32, i, e, SIZE_MAX);
    }
    cross_sum(r, SUM_I32, a, b < n32 ? b : n32);
    cross_sum(r, type, a > n32 ? a : n32, b);
    reduce_barrier(r);   /* every slice summed */
    return r->result;
}

const int64_t *dist_reduce_i64(DistReduce *r)
{
    return dist_reduce_fixed(r, 0);
}

const int64_t *dist_reduce_fixed(DistReduce *r, size_t n32)
{
    n32 = n32 < r->n ? n32 : r->n;
    if (!r->shared) {
        sum_i32(r->buf, n32);
        dist_sum_i64(NULL, (int64_t *)r->buf + n32, r->n - n32);
        return r->buf;
    }
    return reduce_node(r, SUM_I64, n32);
}

const float *dist_reduce_f32(DistReduce *r)
{
    if (!r->shared) {
        dist_sum_f32(NULL, r->buf, r->n);
        return r->buf;
    }
    return reduce_node(r, SUM_F32, 0);
}

void dist_reduce_free(DistReduce *r)
{
    if (r == NULL)
        return;
    if (r->shared) {
        if (r->has_cross) {
            MPI_Comm cross = MPI_Comm_f2c((MPI_Fint)r->cross);
            MPI_Comm_free(&cross);
        }
        dist_node_shared_free(&r->shm);
    } else {
        free(r->buf);
    }
    memset(r, 0, sizeof *r);
}
