/* Crash safety of ckpt_save: a writer killed with SIGKILL at any instant leaves a
 * directory from which a resumed run loads a complete checkpoint.
 *
 * A forked child saves epoch after epoch into one directory, every parameter of epoch E
 * equal to (float)E and a history of E entries, so that a file mixing two saves or cut
 * short shows. The parent kills it after a delay that walks (golden-ratio steps) across
 * a few save durations, so kills land while the image is built, written, fsync'd,
 * renamed, while latest.h5 is switched and while old files are pruned. The next child
 * resumes from latest.h5 in the same directory, like a re-queued job.
 *
 * SIGKILL keeps the page cache, so this proves atomicity towards readers and restarted
 * writers; durability across a power loss (what the fsyncs are for) is not testable here.
 * Kills by timing rarely land in windows of microseconds (between two renames), so a
 * second sweep kills a save deterministically at every step of its protocol (see "kill
 * points" below).
 *
 * Children never return into cmocka: they report on stderr and _exit. */
#define _XOPEN_SOURCE 700                   /* nftw() for removing test directories */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <dirent.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CRASH_ROUNDS 400        /* kills in the repeated-save test */
#define CRASH_MIN_ROUNDS 60     /* done even past the time budget */
#define CRASH_BUDGET_S 10.0     /* no new round after this (loaded or sanitised builds) */
#define CRASH_SPAN_SAVES 3.0    /* kill delays range over this many save durations */
#define CRASH_OLD_KILLS 40      /* kills in the old-file test */
#define CRASH_KEEP 2
#define CRASH_D 784             /* MNIST-sized: W1 alone is 784 KiB, a save takes a while */
#define CRASH_H 256
#define CRASH_K 10
#define CRASH_CONFIG "[train]\nepochs = 9999\nbatch = 32\n[checkpoint]\nkeep = 2\n"

/* ------------------------------------------------------------------ helpers */

static void make_tmpdir(char *buf, size_t len)
{
    assert_true(snprintf(buf, len, "/tmp/mlp-ckpt-crash-XXXXXX") < (int)len);
    if (!mkdtemp(buf))
        fail_msg("mkdtemp: %s", strerror(errno));
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void rm_rf(const char *dir)
{
    assert_int_equal(nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static void join(char *out, size_t len, const char *a, const char *b)
{
    assert_true(snprintf(out, len, "%s/%s", a, b) < (int)len);
}

static double now_s(void)
{
    struct timespec t;
    assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &t), 0);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_us(long us)
{
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&t, &t) != 0)
        assert_int_equal(errno, EINTR);
}

/* Round r -> [0, 1): r times the golden ratio, mod 1. Consecutive rounds land far apart
 * and any run of rounds covers the interval evenly. */
static double spread(int r)
{
    uint64_t x = (uint64_t)(r + 1) * UINT64_C(0x9E3779B97F4A7C15);
    return (double)(x >> 11) / (double)(UINT64_C(1) << 53);
}

/* ------------------------------------------------------------------ kill points */

/* The calls that make up ckpt_save's protocol are defined here, so that checkpoint.o,
 * linked into this program, calls these instead of libc's (ELF interposition; only this
 * test binary is affected). Each passes through to the system call; in an armed child it
 * counts a kill point before and after the call and raises SIGKILL at the chosen one. */
static long crash_points;               /* kill points passed so far */
static long crash_kill_at;              /* 0: disarmed (always, outside sweep children) */

static void crash_point(void)
{
    if (crash_kill_at > 0 && ++crash_points == crash_kill_at)
        raise(SIGKILL);
}

int fsync(int fd)
{
    crash_point();
    int rc = (int)syscall(SYS_fsync, fd);
    crash_point();
    return rc;
}

int rename(const char *from, const char *to)
{
    crash_point();
    int rc = renameat(AT_FDCWD, from, AT_FDCWD, to);
    crash_point();
    return rc;
}

int symlink(const char *target, const char *path)
{
    crash_point();
    int rc = symlinkat(target, AT_FDCWD, path);
    crash_point();
    return rc;
}

int unlink(const char *path)
{
    crash_point();
    int rc = unlinkat(AT_FDCWD, path, 0);
    crash_point();
    return rc;
}

/* ------------------------------------------------------------------ the written state */

/* The state every writer starts from: shapes, attributes and config; arrays malloc'd
 * (ckpt_state_free releases them), contents set per epoch by crash_set_epoch. */
static void crash_state(CkptState *s)
{
    memset(s, 0, sizeof *s);
    s->d = CRASH_D;
    s->hidden = CRASH_H;
    s->classes = CRASH_K;
    s->W1 = malloc(CRASH_D * CRASH_H * sizeof(float));
    s->b1 = malloc(CRASH_H * sizeof(float));
    s->W2 = malloc(CRASH_H * CRASH_K * sizeof(float));
    s->b2 = malloc(CRASH_K * sizeof(float));
    s->config = strdup(CRASH_CONFIG);
    assert_true(s->W1 && s->b1 && s->W2 && s->b2 && s->config);
    s->seed = 42;
    s->batch = 32;
    s->lr = 0.05;
    strcpy(s->reduce, "exact");
    s->ranks = 1;
    s->threads_per_rank = 1;
    strcpy(s->mlp_version, "0.1.0-crash");
    assert_int_equal(ckpt_history_init(&s->history, 0), 0);
}

/* Make s the checkpoint of epoch e: every parameter (float)e, history epochs 1..e.
 * Returns 0, or -1 when the history cannot grow (the child reports that). */
static int crash_set_epoch(CkptState *s, int64_t e)
{
    const float v = (float)e;
    for (size_t i = 0; i < CRASH_D * CRASH_H; i++)
        s->W1[i] = v;
    for (size_t i = 0; i < CRASH_H; i++)
        s->b1[i] = v;
    for (size_t i = 0; i < CRASH_H * CRASH_K; i++)
        s->W2[i] = v;
    for (size_t i = 0; i < CRASH_K; i++)
        s->b2[i] = v;
    CkptHistory *h = &s->history;
    if (h->len > (size_t)e)
        h->len = (size_t)e;             /* entries are a function of their index */
    while (h->len < (size_t)e)
        if (ckpt_history_push(h, (int64_t)h->len + 1, 1.0 / (double)(h->len + 1), 0.5, 0.5,
                              1.0) != 0)
            return -1;
    s->epoch = e;
    s->step = e * 100;
    return 0;
}

/* Load path and require a complete checkpoint exactly as some writer made it. Returns its
 * epoch. */
static int64_t check_file(const char *path)
{
    CkptState t;
    char err[CKPT_ERR_MAX] = "";
    if (ckpt_load(path, &t, err, sizeof err) != 0)
        fail_msg("%s does not load after a kill: %s", path, err);
    int64_t e = t.epoch;
    assert_true(e >= 1);
    assert_int_equal(t.d, CRASH_D);
    assert_int_equal(t.hidden, CRASH_H);
    assert_int_equal(t.classes, CRASH_K);
    const float v = (float)e;
    const struct {
        const char *name;
        const float *p;
        size_t n;
    } arrays[] = {
        {"W1", t.W1, CRASH_D * CRASH_H}, {"b1", t.b1, CRASH_H},
        {"W2", t.W2, CRASH_H * CRASH_K}, {"b2", t.b2, CRASH_K},
    };
    for (size_t a = 0; a < sizeof arrays / sizeof arrays[0]; a++)
        for (size_t i = 0; i < arrays[a].n; i++)
            if (arrays[a].p[i] != v)
                fail_msg("%s: epoch %" PRId64 " but %s[%zu] = %g", path, e, arrays[a].name, i,
                         (double)arrays[a].p[i]);
    if (t.history.len != (size_t)e)
        fail_msg("%s: epoch %" PRId64 " but %zu history entries", path, e, t.history.len);
    for (size_t i = 0; i < t.history.len; i++)
        assert_int_equal(t.history.epoch[i], (int64_t)i + 1);
    assert_int_equal(t.step, e * 100);
    assert_string_equal(t.config, CRASH_CONFIG);
    ckpt_state_free(&t);
    return e;
}

/* "epoch-NNNN.h5" -> NNNN; anything else -> -1. */
static int64_t final_epoch(const char *name)
{
    char *end;
    if (strncmp(name, "epoch-", 6) != 0 || name[6] < '0' || name[6] > '9')
        return -1;
    long long e = strtoll(name + 6, &end, 10);
    if (strcmp(end, ".h5") != 0)
        return -1;
    char canon[64];
    snprintf(canon, sizeof canon, "epoch-%04lld.h5", e);
    return strcmp(canon, name) == 0 ? e : -1;
}

typedef struct {
    int finals;                 /* epoch-NNNN.h5 files, every one loaded and checked */
    int temps;                  /* .NAME.tmp.PID leftovers */
} DirScan;

/* Every entry of dir must be latest.h5, a final checkpoint that loads and validates with
 * the epoch its name states, or a hidden temporary. */
static void scan_dir(const char *dir, DirScan *ds)
{
    memset(ds, 0, sizeof *ds);
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    struct dirent *de;
    while ((de = readdir(dp))) {
        const char *n = de->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "latest.h5"))
            continue;
        if (n[0] == '.' && strstr(n, ".tmp.")) {
            ds->temps++;
            continue;
        }
        int64_t e = final_epoch(n);
        if (e < 0)
            fail_msg("%s: unexpected entry %s after a kill", dir, n);
        char p[4096];
        join(p, sizeof p, dir, n);
        if (check_file(p) != e)
            fail_msg("%s holds another epoch than its name says", p);
        ds->finals++;
    }
    closedir(dp);
}

/* latest.h5 absent: -1. Otherwise it must be a relative link to a final name in dir whose
 * file loads and validates; returns that epoch. */
static int64_t check_latest(const char *dir)
{
    char p[4096], target[256];
    struct stat st;
    join(p, sizeof p, dir, "latest.h5");
    if (lstat(p, &st) != 0) {
        assert_int_equal(errno, ENOENT);
        return -1;
    }
    assert_true(S_ISLNK(st.st_mode));
    ssize_t n = readlink(p, target, sizeof target - 1);
    assert_true(n > 0);
    target[n] = '\0';
    int64_t named = final_epoch(target);
    if (named < 0)
        fail_msg("latest.h5 -> %s, not a checkpoint name", target);
    int64_t e = check_file(p);
    assert_int_equal(e, named);
    return e;
}

static bool exists(const char *dir, const char *name)
{
    char p[4096];
    struct stat st;
    join(p, sizeof p, dir, name);
    return lstat(p, &st) == 0;
}

/* ------------------------------------------------------------------ the writer */

/* Child: report 0 (ready), then save epochs first, first + stride, ... (stride 0: the same
 * epoch over and over), writing each epoch to fd once ckpt_save has returned. Runs until
 * killed. */
static void crash_child(const char *dir, CkptState *s, int64_t first, int64_t stride, int fd,
                        pid_t parent)
{
    char err[CKPT_ERR_MAX] = "";
    const int64_t ready = 0;
    if (write(fd, &ready, sizeof ready) != (ssize_t)sizeof ready)
        _exit(2);
    for (int64_t e = first;; e += stride) {
        if (getppid() != parent)
            _exit(0);                   /* the test died: do not write forever */
        if (crash_set_epoch(s, e) != 0) {
            fprintf(stderr, "writer: out of memory for the history of epoch %" PRId64 "\n", e);
            _exit(3);
        }
        if (ckpt_save(dir, s, CRASH_KEEP, NULL, 0, err, sizeof err) != 0) {
            fprintf(stderr, "writer: save of epoch %" PRId64 " failed: %s\n", e, err);
            _exit(1);
        }
        if (write(fd, &e, sizeof e) != (ssize_t)sizeof e)
            _exit(2);
    }
}

/* Fork a writer and wait until it runs, so that the kill delay measures time spent in
 * ckpt_save rather than in fork (slow under AddressSanitizer). *rfd receives the
 * non-blocking read end of its report pipe. */
static pid_t crash_spawn(const char *dir, CkptState *s, int64_t first, int64_t stride, int *rfd)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(p[0], F_SETFD, FD_CLOEXEC), 0);
    pid_t parent = getpid();
    fflush(stdout);                     /* or the child's copy of the buffer prints twice */
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        crash_child(dir, s, first, stride, p[1], parent);
        _exit(4);
    }
    assert_int_equal(close(p[1]), 0);
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    int64_t ready = -1;
    int n;
    while ((n = poll(&pfd, 1, 10000)) < 0 && errno == EINTR)
        ;
    if (n != 1 || read(p[0], &ready, sizeof ready) != (ssize_t)sizeof ready || ready != 0) {
        (void)kill(pid, SIGKILL);
        (void)waitpid(pid, NULL, 0);
        fail_msg("writer did not start (poll %d)", n);
    }
    *rfd = p[0];
    return pid;
}

/* SIGKILL and reap; the writer must not have ended by itself (a failed save). */
static void crash_kill(pid_t pid)
{
    int st = 0;
    pid_t w;
    assert_int_equal(kill(pid, SIGKILL), 0);
    while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
        ;
    assert_int_equal(w, pid);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        fail_msg("writer ended before the kill (exit %d; its message is above)",
                 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* Read the epochs a (dead) writer reported. Returns the last one or -1; *count += how
 * many. Reports must be consecutive from first. */
static int64_t crash_drain(int fd, int64_t first, int64_t stride, int64_t *count)
{
    int64_t e, last = -1, n = 0;
    for (;;) {
        ssize_t r = read(fd, &e, sizeof e);
        if (r == (ssize_t)sizeof e) {
            assert_int_equal(e, first + n * stride);
            last = e;
            n++;
            continue;
        }
        if (r == 0 || (r < 0 && errno == EAGAIN))
            break;
        if (r < 0 && errno == EINTR)
            continue;
        fail_msg("report pipe: read returned %zd (%s)", r, r < 0 ? strerror(errno) : "short");
    }
    assert_int_equal(close(fd), 0);
    *count += n;
    return last;
}

/* Seconds one save of s takes here (median of three), measured in a scratch directory. */
static double crash_time_save(CkptState *s)
{
    char dir[64], err[CKPT_ERR_MAX] = "";
    double t[3];
    make_tmpdir(dir, sizeof dir);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(crash_set_epoch(s, i + 1), 0);
        double t0 = now_s();
        if (ckpt_save(dir, s, CRASH_KEEP, NULL, 0, err, sizeof err) != 0)
            fail_msg("save: %s", err);
        t[i] = now_s() - t0;
    }
    rm_rf(dir);
    double lo = t[0] < t[1] ? t[0] : t[1], hi = t[0] < t[1] ? t[1] : t[0];
    return t[2] < lo ? lo : t[2] > hi ? hi : t[2];
}

/* ------------------------------------------------------------------ tests */

/* Where the kill landed, read off the directory. */
enum { PH_BUILD, PH_WRITE, PH_RENAMED, PH_LINK, PH_PRUNE, PH_DONE, PH_N };
static const char *const phase_names[PH_N] = {
    "build/idle", "write+fsync", "rename..link", "link swap", "dir fsync+prune", "returned",
};

static int classify(const char *dir, pid_t pid, int64_t inflight, int64_t latest,
                    bool inflight_preexisted)
{
    char name[128];
    snprintf(name, sizeof name, ".epoch-%04" PRId64 ".h5.tmp.%ld", inflight, (long)pid);
    if (exists(dir, name))
        return PH_WRITE;
    if (latest == inflight) {
        snprintf(name, sizeof name, "epoch-%04" PRId64 ".h5", inflight - CRASH_KEEP);
        return inflight > CRASH_KEEP && exists(dir, name) ? PH_PRUNE : PH_DONE;
    }
    snprintf(name, sizeof name, ".latest.h5.tmp.%ld", (long)pid);
    if (exists(dir, name))
        return PH_LINK;
    snprintf(name, sizeof name, "epoch-%04" PRId64 ".h5", inflight);
    if (exists(dir, name) && !inflight_preexisted)
        return PH_RENAMED;
    return PH_BUILD;
}

/* The test: many kills during repeated saves; after each, latest.h5 loads and
 * validates, is no older than the last save known complete, and no final-named file is
 * broken. */
static void test_sigkill_during_saves(void **state)
{
    (void)state;
    char dir[64];
    CkptState s;
    crash_state(&s);
    double save_s = crash_time_save(&s);
    double span_us = CRASH_SPAN_SAVES * save_s * 1e6;
    make_tmpdir(dir, sizeof dir);

    /* known: the newest epoch seen complete, reported by a writer or seen as latest.h5 */
    int64_t next = 1, known = 0, saves = 0;
    int phases[PH_N] = {0}, max_temps = 0, max_finals = 0, r, temps = 0, finals = 0;
    double t0 = now_s();
    for (r = 0; r < CRASH_ROUNDS; r++) {
        if (r >= CRASH_MIN_ROUNDS && now_s() - t0 > CRASH_BUDGET_S)
            break;
        char first_name[64];
        snprintf(first_name, sizeof first_name, "epoch-%04" PRId64 ".h5", next);
        bool preexisted = exists(dir, first_name);

        int fd;
        pid_t pid = crash_spawn(dir, &s, next, 1, &fd);
        sleep_us((long)(spread(r) * span_us));
        crash_kill(pid);
        int64_t last = crash_drain(fd, next, 1, &saves);
        if (last > known)
            known = last;
        /* The epoch being saved (or just saved, unreported) when the kill came. */
        int64_t inflight = last >= 0 ? last + 1 : next;

        DirScan ds;
        scan_dir(dir, &ds);
        int64_t latest = check_latest(dir);
        if (known > 0 && latest < known)
            fail_msg("round %d: latest.h5 is epoch %" PRId64 " but epoch %" PRId64
                     " was saved before the kill", r, latest, known);
        assert_true(latest <= inflight);
        /* A completed save leaves exactly `keep` files; the next one adds its own before
         * pruning. A writer killed before completing any adds at most the one it renamed
         * (a prune cut short leaves the rest to the next completed save). */
        int bound = last >= 0 ? CRASH_KEEP + 1 : finals + !preexisted;
        if (ds.finals > bound)
            fail_msg("round %d: %d checkpoint files with keep = %d, at most %d expected", r,
                     ds.finals, CRASH_KEEP, bound);
        int phase = classify(dir, pid, inflight, latest, preexisted && inflight == next);
        phases[phase]++;
        /* A writer that got as far as the disk removed every dead writer's temporary
         * first, so at most its own remains; one killed before that added none. */
        if ((last >= 0 || phase != PH_BUILD) ? ds.temps > 1 : ds.temps > temps)
            fail_msg("round %d (%s): %d leftover temporaries, %d before", r,
                     phase_names[phase], ds.temps, temps);
        if (ds.temps > max_temps)
            max_temps = ds.temps;
        if (ds.finals > max_finals)
            max_finals = ds.finals;
        temps = ds.temps;
        finals = ds.finals;
        if (latest > known)
            known = latest;
        next = latest >= 0 ? latest + 1 : 1;    /* resume = auto */
    }
    double elapsed = now_s() - t0;

    print_message("crash: %d rounds in %.1f s (save %.1f ms, kills within %.1f ms), %" PRId64
                  " saves completed, last epoch %" PRId64 "\n", r, elapsed, save_s * 1e3,
                  span_us * 1e-3, saves, next - 1);
    print_message("crash: kills by phase:");
    for (int i = 0; i < PH_N; i++)
        print_message(" %s %d", phase_names[i], phases[i]);
    print_message("\ncrash: leftover temporaries %d at the end (max %d), max %d checkpoint "
                  "files\n", temps, max_temps, max_finals);
    assert_true(saves > 0);
    assert_true(phases[PH_WRITE] > 0);          /* the kills did reach the disk phases */

    /* The resumed run's next save clears the last leftover. */
    char err[CKPT_ERR_MAX] = "";
    assert_int_equal(crash_set_epoch(&s, next), 0);
    if (ckpt_save(dir, &s, CRASH_KEEP, NULL, 0, err, sizeof err) != 0)
        fail_msg("save after the kills: %s", err);
    DirScan ds;
    scan_dir(dir, &ds);
    assert_int_equal(ds.temps, 0);
    assert_int_equal(ds.finals, CRASH_KEEP);
    assert_int_equal(check_latest(dir), next);

    ckpt_state_free(&s);
    rm_rf(dir);
}

/* A kill during a save, with a good checkpoint in place, never alters that file: same
 * inode, same bytes, same W1 after loading. */
static void test_sigkill_keeps_old_file(void **state)
{
    (void)state;
    char dir[64], old[4096], err[CKPT_ERR_MAX] = "";
    CkptState s, t;
    crash_state(&s);
    double save_s = crash_time_save(&s);
    double span_us = 1.5 * save_s * 1e6;
    make_tmpdir(dir, sizeof dir);
    assert_int_equal(crash_set_epoch(&s, 1), 0);
    if (ckpt_save(dir, &s, CRASH_KEEP, old, sizeof old, err, sizeof err) != 0)
        fail_msg("save: %s", err);

    struct stat st0, st1;
    assert_int_equal(stat(old, &st0), 0);
    size_t size = (size_t)st0.st_size;
    char *bytes0 = malloc(size), *bytes1 = malloc(size);
    assert_true(bytes0 && bytes1);
    FILE *f = fopen(old, "rb");
    assert_non_null(f);
    assert_int_equal(fread(bytes0, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
    if (ckpt_load(old, &t, err, sizeof err) != 0)
        fail_msg("load: %s", err);
    size_t w1 = CRASH_D * CRASH_H * sizeof(float);
    float *W1 = malloc(w1);
    assert_non_null(W1);
    memcpy(W1, t.W1, w1);
    ckpt_state_free(&t);

    int64_t saves = 0;
    for (int k = 0; k < CRASH_OLD_KILLS; k++) {
        int fd;
        pid_t pid = crash_spawn(dir, &s, 2, 0, &fd);    /* epoch 2, again and again */
        sleep_us((long)(spread(k) * span_us));
        crash_kill(pid);
        (void)crash_drain(fd, 2, 0, &saves);

        assert_int_equal(stat(old, &st1), 0);
        assert_true(st1.st_ino == st0.st_ino);
        assert_int_equal(st1.st_size, st0.st_size);
        f = fopen(old, "rb");
        assert_non_null(f);
        assert_int_equal(fread(bytes1, 1, size, f), size);
        assert_int_equal(fclose(f), 0);
        if (memcmp(bytes0, bytes1, size) != 0)
            fail_msg("kill %d: %s changed", k, old);
        if (ckpt_load(old, &t, err, sizeof err) != 0)
            fail_msg("kill %d: %s no longer loads: %s", k, old, err);
        assert_memory_equal(t.W1, W1, w1);
        ckpt_state_free(&t);
        int64_t latest = check_latest(dir);
        assert_true(latest == 1 || latest == 2);
    }
    print_message("crash: old file unchanged through %d kills (%" PRId64 " saves of epoch 2 "
                  "completed)\n", CRASH_OLD_KILLS, saves);
    free(W1);
    free(bytes0);
    free(bytes1);
    ckpt_state_free(&s);
    rm_rf(dir);
}

static pid_t dead_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return pid;                         /* a pid that certainly has no process now */
}

static void touch(const char *dir, const char *name)
{
    char p[4096];
    join(p, sizeof p, dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fputs("partial", f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Kill a save of epoch 3 (over epochs 1 and 2, keep 2, one dead writer's temporary) at
 * each kill point in turn, from a fresh directory each time: before and after every
 * fsync, rename, symlink and unlink, the stale-temporary clean-up and the prune
 * included. After each: the directory checks as in the timed test, and the resumed run's
 * save leaves exactly keep files and no temporary. */
static void test_sigkill_at_every_step(void **state)
{
    (void)state;
    char dir[64], err[CKPT_ERR_MAX] = "", stale[64];
    CkptState s;
    crash_state(&s);
    long k;
    for (k = 1;; k++) {
        make_tmpdir(dir, sizeof dir);
        for (int64_t e = 1; e <= 2; e++) {
            assert_int_equal(crash_set_epoch(&s, e), 0);
            if (ckpt_save(dir, &s, CRASH_KEEP, NULL, 0, err, sizeof err) != 0)
                fail_msg("save: %s", err);
        }
        snprintf(stale, sizeof stale, ".epoch-0003.h5.tmp.%ld", (long)dead_pid());
        touch(dir, stale);
        assert_int_equal(crash_set_epoch(&s, 3), 0);

        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            crash_points = 0;
            crash_kill_at = k;
            if (ckpt_save(dir, &s, CRASH_KEEP, NULL, 0, err, sizeof err) != 0) {
                fprintf(stderr, "writer: %s\n", err);
                _exit(1);
            }
            _exit(0);
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            rm_rf(dir);
            break;                      /* k is past the last point: the save completed */
        }
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
            fail_msg("kill point %ld: writer failed (its message is above)", k);

        DirScan ds;
        scan_dir(dir, &ds);
        int64_t latest = check_latest(dir);
        if (latest != 2 && latest != 3)
            fail_msg("kill point %ld: latest.h5 is epoch %" PRId64, k, latest);
        if (ds.temps > 2 || ds.finals > CRASH_KEEP + 1)
            fail_msg("kill point %ld: %d temporaries, %d checkpoint files", k, ds.temps,
                     ds.finals);
        assert_int_equal(crash_set_epoch(&s, latest + 1), 0);
        if (ckpt_save(dir, &s, CRASH_KEEP, NULL, 0, err, sizeof err) != 0)
            fail_msg("kill point %ld: resumed save: %s", k, err);
        scan_dir(dir, &ds);
        assert_int_equal(ds.temps, 0);
        assert_int_equal(ds.finals, CRASH_KEEP);
        assert_int_equal(check_latest(dir), latest + 1);
        rm_rf(dir);
    }
    /* Clean-up unlink, fsync, rename, fsync, unlink, symlink, rename, fsync, prune unlink:
     * 9 calls, 18 points. Fewer means the interposition is not in effect. */
    if (k - 1 < 18)
        fail_msg("only %ld kill points: are fsync/rename/symlink/unlink interposed?", k - 1);
    print_message("crash: killed a save at each of its %ld kill points\n", k - 1);
    ckpt_state_free(&s);
}

/* ckpt_save removes the temporaries of writers that are gone (and of an earlier process
 * that had our pid), and nothing else: not a live writer's, not a user's look-alikes. */
static void test_save_removes_dead_temps(void **state)
{
    (void)state;
    char dir[64], name[128], err[CKPT_ERR_MAX] = "";
    CkptState s;
    crash_state(&s);
    make_tmpdir(dir, sizeof dir);

    pid_t dead = dead_pid();
    pid_t live = fork();                /* a writer still at work */
    assert_true(live >= 0);
    if (live == 0) {
        pause();
        _exit(0);
    }

    const char *gone[] = {".epoch-0001.h5.tmp.%ld", ".epoch-0002-000050.h5.tmp.%ld",
                          ".latest.h5.tmp.%ld"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(name, sizeof name, gone[i], (long)dead);
        touch(dir, name);
    }
    snprintf(name, sizeof name, ".epoch-0007.h5.tmp.%ld", (long)getpid());
    touch(dir, name);
    const char *kept[] = {".epoch-3.h5.tmp.%ld", ".notes.tmp.%ld", ".epoch-0001.h5.tmp.%ldx",
                          ".epoch-0001.h5.bak.%ld", ".latest.h5.tmp.%ld"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(name, sizeof name, kept[i], (long)(i < 4 ? dead : live));
        touch(dir, name);
    }

    assert_int_equal(crash_set_epoch(&s, 1), 0);
    int rc = ckpt_save(dir, &s, CRASH_KEEP, NULL, 0, err, sizeof err);
    assert_int_equal(kill(live, SIGKILL), 0);
    assert_int_equal(waitpid(live, NULL, 0), live);
    if (rc != 0)
        fail_msg("save: %s", err);

    for (size_t i = 0; i < 3; i++) {
        snprintf(name, sizeof name, gone[i], (long)dead);
        if (exists(dir, name))
            fail_msg("%s (writer gone) was not removed", name);
    }
    snprintf(name, sizeof name, ".epoch-0007.h5.tmp.%ld", (long)getpid());
    assert_false(exists(dir, name));
    for (size_t i = 0; i < 5; i++) {
        snprintf(name, sizeof name, kept[i], (long)(i < 4 ? dead : live));
        if (!exists(dir, name))
            fail_msg("%s was removed", name);
    }
    assert_int_equal(check_latest(dir), 1);
    ckpt_state_free(&s);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_during_saves),
        cmocka_unit_test(test_sigkill_keeps_old_file),
        cmocka_unit_test(test_sigkill_at_every_step),
        cmocka_unit_test(test_save_removes_dead_temps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
