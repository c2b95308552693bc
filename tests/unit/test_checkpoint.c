/* Unit tests for checkpoint: save/load round trips (bitwise), latest.h5 and keep, atomicity
 * on failure, and every load error the user can meet. Broken files are built with the
 * HDF5 API from a good checkpoint. Run from the repository root (the h5py check runs
 * tests/integration/checkpoint-h5py.py). */
#define _XOPEN_SOURCE 700                   /* nftw() for removing test directories */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "checkpoint.h"
#include "cli.h"
#include "fsafe.h"

#include <hdf5.h>
#include <hdf5_hl.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <ftw.h>
#include <stdbool.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define H5PY_SCRIPT "tests/integration/checkpoint-h5py.py"

/* ------------------------------------------------------------------ helpers */

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}

static void make_tmpdir(char *buf, size_t len)
{
    assert_true(snprintf(buf, len, "/tmp/mlp-ckpt-test-XXXXXX") < (int)len);
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

static double nan_payload(uint64_t bits)
{
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* A state owning malloc'd arrays (so ckpt_state_free releases it), with awkward values:
 * -0, subnormals, extremes, NaN, and a history with NaNs for "not measured". */
static void make_state(CkptState *s, uint64_t d, uint64_t h, uint64_t k, int64_t epoch,
                       size_t nhist, size_t config_len)
{
    memset(s, 0, sizeof *s);
    s->d = d;
    s->hidden = h;
    s->classes = k;
    s->W1 = malloc(d * h * sizeof(float));
    s->b1 = malloc(h * sizeof(float));
    s->W2 = malloc(h * k * sizeof(float));
    s->b2 = malloc(k * sizeof(float));
    assert_non_null(s->W1);
    assert_non_null(s->b1);
    assert_non_null(s->W2);
    assert_non_null(s->b2);
    for (size_t i = 0; i < d * h; i++)
        s->W1[i] = (float)sin((double)i * 1.37 + 0.1) / 3.0f;
    for (size_t i = 0; i < h; i++)
        s->b1[i] = (float)i * -0.25f;
    for (size_t i = 0; i < h * k; i++)
        s->W2[i] = (float)cos((double)i * 0.71) * 1e-3f;
    for (size_t i = 0; i < k; i++)
        s->b2[i] = 1.0f / (float)(i + 3);
    s->W1[0] = -0.0f;
    if (d * h > 1)
        s->W1[d * h - 1] = 1e-42f;          /* subnormal */
    if (h * k > 2) {
        s->W2[1] = FLT_MAX;
        s->W2[2] = NAN;
    }
    s->epoch = epoch;
    s->step = epoch * 937 + 11;
    s->seed = UINT64_C(0xfedcba9876543210);  /* above INT64_MAX: must stay unsigned */
    s->batch = 64;
    s->lr = 0.1;
    strcpy(s->reduce, "exact");
    s->ranks = 8;
    s->threads_per_rank = 3;
    s->config = malloc(config_len + 1);
    assert_non_null(s->config);
    for (size_t i = 0; i < config_len; i++)
        s->config[i] = (i % 61 == 60) ? '\n' : (char)('a' + i % 26);
    s->config[config_len] = '\0';
    strcpy(s->mlp_version, "0.1.0-test");
    assert_int_equal(ckpt_history_init(&s->history, 0), 0);
    for (size_t i = 0; i < nhist; i++) {
        double test = (i % 2) ? 0.5 + (double)i / 100 : NAN;
        assert_int_equal(ckpt_history_push(&s->history, (int64_t)i + 1, 2.0 / (double)(i + 1),
                                           0.9, test, 1.5 * (double)i), 0);
    }
    if (nhist > 0)
        s->history.seconds[0] = nan_payload(UINT64_C(0x7ff8000000000123));
}

static void assert_states_equal(const CkptState *a, const CkptState *b)
{
    assert_int_equal(a->d, b->d);
    assert_int_equal(a->hidden, b->hidden);
    assert_int_equal(a->classes, b->classes);
    assert_memory_equal(a->W1, b->W1, a->d * a->hidden * sizeof(float));
    assert_memory_equal(a->b1, b->b1, a->hidden * sizeof(float));
    assert_memory_equal(a->W2, b->W2, a->hidden * a->classes * sizeof(float));
    assert_memory_equal(a->b2, b->b2, a->classes * sizeof(float));
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->step, b->step);
    assert_true(a->seed == b->seed);
    assert_int_equal(a->batch, b->batch);
    assert_memory_equal(&a->lr, &b->lr, sizeof a->lr);
    assert_string_equal(a->reduce, b->reduce);
    assert_int_equal(a->ranks, b->ranks);
    assert_int_equal(a->threads_per_rank, b->threads_per_rank);
    assert_string_equal(a->config, b->config);
    assert_string_equal(a->created, b->created);
    assert_string_equal(a->mlp_version, b->mlp_version);
    assert_int_equal(a->history.len, b->history.len);
    size_t n = a->history.len;
    if (n > 0) {
        assert_memory_equal(a->history.epoch, b->history.epoch, n * sizeof(int64_t));
        assert_memory_equal(a->history.train_loss, b->history.train_loss, n * sizeof(double));
        assert_memory_equal(a->history.train_acc, b->history.train_acc, n * sizeof(double));
        assert_memory_equal(a->history.test_acc, b->history.test_acc, n * sizeof(double));
        assert_memory_equal(a->history.seconds, b->history.seconds, n * sizeof(double));
    }
}

static void assert_zeroed(const CkptState *s)
{
    CkptState z;
    memset(&z, 0, sizeof z);
    assert_memory_equal(s, &z, sizeof z);
}

static void assert_created_iso(const char *c)
{
    /* 2026-11-28T12:00:00Z */
    assert_int_equal(strlen(c), 20);
    assert_int_equal(c[4], '-');
    assert_int_equal(c[7], '-');
    assert_int_equal(c[10], 'T');
    assert_int_equal(c[13], ':');
    assert_int_equal(c[16], ':');
    assert_int_equal(c[19], 'Z');
}

/* Entries of dir starting with '.' other than . and .. (leftover temporaries). */
static int count_hidden(const char *dir)
{
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dp)))
        if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(dp);
    return n;
}

static int count_entries(const char *dir)
{
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dp)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(dp);
    return n;
}

static bool exists(const char *dir, const char *name)
{
    char p[4096];
    struct stat st;
    join(p, sizeof p, dir, name);
    return lstat(p, &st) == 0;
}

static void assert_latest(const char *dir, const char *target)
{
    char p[4096], buf[256];
    struct stat st;
    join(p, sizeof p, dir, "latest.h5");
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    ssize_t n = readlink(p, buf, sizeof buf - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, target);
}

static int run(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && n < (int)sizeof cmd);
    int st = system(cmd);
    assert_true(st != -1);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Save a standard good checkpoint (d=3, h=17, K=5, epoch 1) in a fresh dir. */
static void save_good(char *dir, size_t dlen, char *file, size_t flen, CkptState *s)
{
    char err[CKPT_ERR_MAX] = "";
    make_tmpdir(dir, dlen);
    make_state(s, 3, 17, 5, 1, 1, 200);
    if (ckpt_save(dir, s, 0, file, flen, err, sizeof err) != 0)
        fail_msg("save: %s", err);
}

static void copy_file(const char *from, const char *to, long limit)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    assert_int_equal(fseek(in, 0, SEEK_END), 0);
    long size = ftell(in);
    assert_true(size > 0);
    rewind(in);
    long n = limit >= 0 && limit < size ? limit : size;
    char *buf = malloc((size_t)size);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, in), (size_t)size);
    assert_int_equal(fwrite(buf, 1, (size_t)n, out), (size_t)n);
    free(buf);
    assert_int_equal(fclose(in), 0);
    assert_int_equal(fclose(out), 0);
}

/* Load must fail with a message naming the path and containing `want`, leaving s zeroed. */
static void assert_load_fails(const char *path, const char *want)
{
    CkptState s;
    char err[CKPT_ERR_MAX] = "";
    memset(&s, 0xA5, sizeof s);             /* garbage in: load must zero it */
    assert_int_equal(ckpt_load(path, &s, err, sizeof err), -1);
    assert_contains(err, path);
    assert_contains(err, want);
    assert_null(strchr(err, '\n'));         /* one line */
    assert_zeroed(&s);
}

/* ------------------------------------------------------------------ history */

static void test_history_grows(void **state)
{
    (void)state;
    CkptHistory h;
    assert_int_equal(ckpt_history_init(&h, 2), 0);
    assert_int_equal(h.cap, 2);
    assert_int_equal(h.len, 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(ckpt_history_push(&h, i, i * 0.5, i * 0.25, -i, i * 2.0), 0);
    assert_int_equal(h.len, 100);
    assert_true(h.cap >= 100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(h.epoch[i], i);
        assert_true(h.train_loss[i] == i * 0.5);
        assert_true(h.train_acc[i] == i * 0.25);
        assert_true(h.test_acc[i] == -i);
        assert_true(h.seconds[i] == i * 2.0);
    }
    ckpt_history_free(&h);
    assert_null(h.epoch);
    assert_int_equal(h.len, 0);
    assert_int_equal(h.cap, 0);
}

/* ------------------------------------------------------------------ round trips */

static void roundtrip(uint64_t d, uint64_t h, uint64_t k, int64_t epoch, size_t nhist,
                      size_t config_len)
{
    char dir[64], path[4096], want[4096], err[CKPT_ERR_MAX] = "";
    CkptState s, t;
    make_tmpdir(dir, sizeof dir);
    make_state(&s, d, h, k, epoch, nhist, config_len);
    if (ckpt_save(dir, &s, 0, path, sizeof path, err, sizeof err) != 0)
        fail_msg("save: %s", err);
    char name[64];
    snprintf(name, sizeof name, "epoch-%04" PRId64 ".h5", epoch);
    join(want, sizeof want, dir, name);
    assert_string_equal(path, want);
    assert_created_iso(s.created);
    assert_latest(dir, name);
    assert_int_equal(count_hidden(dir), 0);

    if (ckpt_load(path, &t, err, sizeof err) != 0)
        fail_msg("load: %s", err);
    assert_states_equal(&s, &t);
    ckpt_state_free(&t);
    assert_zeroed(&t);

    /* Through the symlink too. */
    join(want, sizeof want, dir, "latest.h5");
    if (ckpt_load(want, &t, err, sizeof err) != 0)
        fail_msg("load latest: %s", err);
    assert_states_equal(&s, &t);
    ckpt_state_free(&t);
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* data.normalize = standardize: the statistics and the data attributes round-trip; a
 * checkpoint without them loads with NULL; bad statistics are refused on save. */
static void test_standardize_roundtrip(void **state)
{
    (void)state;
    char dir[64], path[4096], err[CKPT_ERR_MAX] = "";
    CkptState s, t;
    make_tmpdir(dir, sizeof dir);
    make_state(&s, 3, 17, 5, 1, 1, 200);
    if (ckpt_save(dir, &s, 0, path, sizeof path, err, sizeof err) != 0)
        fail_msg("save: %s", err);
    if (ckpt_load(path, &t, err, sizeof err) != 0)
        fail_msg("load: %s", err);
    assert_null(t.x_mean);
    assert_null(t.x_std);
    ckpt_state_free(&t);

    s.x_mean = malloc(3 * sizeof *s.x_mean);
    s.x_std = malloc(3 * sizeof *s.x_std);
    assert_non_null(s.x_mean);
    assert_non_null(s.x_std);
    const double mean[3] = {-1.5, 0.0, 1e30}, sd[3] = {0.25, 1.0, 3e-300};
    memcpy(s.x_mean, mean, sizeof mean);
    memcpy(s.x_std, sd, sizeof sd);
    s.train_samples = 1000, s.test_samples = 7, s.train_crc = 0xdeadbeef;
    snprintf(s.input_type, sizeof s.input_type, "float32");
    snprintf(s.normalize, sizeof s.normalize, "standardize");
    s.epoch = 2;
    if (ckpt_save(dir, &s, 0, path, sizeof path, err, sizeof err) != 0)
        fail_msg("save: %s", err);
    if (ckpt_load(path, &t, err, sizeof err) != 0)
        fail_msg("load: %s", err);
    assert_non_null(t.x_mean);
    assert_memory_equal(t.x_mean, mean, sizeof mean);
    assert_memory_equal(t.x_std, sd, sizeof sd);
    assert_int_equal(t.train_samples, 1000);
    assert_int_equal(t.test_samples, 7);
    assert_int_equal(t.train_crc, 0xdeadbeef);
    assert_string_equal(t.input_type, "float32");
    assert_string_equal(t.normalize, "standardize");
    ckpt_state_free(&t);

    s.x_std[1] = 0.0;   /* a standard deviation must be > 0 */
    s.epoch = 3;
    assert_int_equal(ckpt_save(dir, &s, 0, path, sizeof path, err, sizeof err), -1);
    assert_contains(err, "at feature 1");
    free(s.x_std);
    s.x_std = NULL;     /* one without the other */
    assert_int_equal(ckpt_save(dir, &s, 0, path, sizeof path, err, sizeof err), -1);
    assert_contains(err, "x_mean and x_std go together");
    ckpt_state_free(&s);
    rm_rf(dir);
}

static void test_roundtrip_odd(void **state)
{
    (void)state;
    /* config longer than the 64 KiB a fixed-size attribute could hold */
    roundtrip(3, 17, 5, 7, 4, 100000);
}

static void test_roundtrip_tiny(void **state)
{
    (void)state;
    roundtrip(1, 1, 1, 0, 0, 0);            /* empty history: 0-length datasets */
}

static void test_epoch_name_wide(void **state)
{
    (void)state;
    roundtrip(2, 3, 2, 12345, 1, 10);       /* epoch-12345.h5: more than 4 digits */
}

static void test_save_trailing_slash_and_mkdir_p(void **state)
{
    (void)state;
    char dir[64], sub[4096], path[4096], want[4096], err[CKPT_ERR_MAX] = "";
    CkptState s;
    make_tmpdir(dir, sizeof dir);
    join(sub, sizeof sub, dir, "a/b/c/");
    make_state(&s, 2, 2, 2, 5, 0, 0);
    if (ckpt_save(sub, &s, 0, path, sizeof path, err, sizeof err) != 0)
        fail_msg("save: %s", err);
    join(want, sizeof want, dir, "a/b/c/epoch-0005.h5");
    assert_string_equal(path, want);
    ckpt_state_free(&s);
    rm_rf(dir);
}

static void test_null_config_saves_empty(void **state)
{
    (void)state;
    char dir[64], path[4096], err[CKPT_ERR_MAX] = "";
    CkptState s, t;
    make_tmpdir(dir, sizeof dir);
    make_state(&s, 2, 2, 2, 1, 0, 0);
    free(s.config);
    s.config = NULL;
    if (ckpt_save(dir, &s, 0, path, sizeof path, err, sizeof err) != 0)
        fail_msg("save: %s", err);
    if (ckpt_load(path, &t, err, sizeof err) != 0)
        fail_msg("load: %s", err);
    assert_non_null(t.config);
    assert_string_equal(t.config, "");
    ckpt_state_free(&t);
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* ------------------------------------------------------------------ latest and keep */

static void test_latest_and_keep(void **state)
{
    (void)state;
    char dir[64], path[4096], err[CKPT_ERR_MAX] = "";
    CkptState s, t;
    make_tmpdir(dir, sizeof dir);
    make_state(&s, 3, 4, 2, 1, 0, 10);
    for (int64_t e = 1; e <= 4; e++) {
        char name[32];
        s.epoch = e;
        assert_int_equal(ckpt_history_push(&s.history, e, 1.0 / (double)e, 0.5, 0.5, 1.0), 0);
        if (ckpt_save(dir, &s, 2, path, sizeof path, err, sizeof err) != 0)
            fail_msg("save epoch %" PRId64 ": %s", e, err);
        snprintf(name, sizeof name, "epoch-%04" PRId64 ".h5", e);
        assert_latest(dir, name);
        assert_int_equal(count_hidden(dir), 0);
    }
    assert_false(exists(dir, "epoch-0001.h5"));
    assert_false(exists(dir, "epoch-0002.h5"));
    assert_true(exists(dir, "epoch-0003.h5"));
    assert_true(exists(dir, "epoch-0004.h5"));
    assert_true(exists(dir, "latest.h5"));
    assert_int_equal(count_entries(dir), 3);

    join(path, sizeof path, dir, "latest.h5");
    if (ckpt_load(path, &t, err, sizeof err) != 0)
        fail_msg("load: %s", err);
    assert_int_equal(t.epoch, 4);
    assert_int_equal(t.history.len, 4);
    assert_int_equal(t.history.epoch[3], 4);
    ckpt_state_free(&t);
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* Files with a higher epoch (an earlier run in the same dir) and foreign names survive
 * pruning; keep=1 leaves only the file just written among epochs <= current. */
static void test_keep_spares_foreign_files(void **state)
{
    (void)state;
    char dir[64], path[4096], err[CKPT_ERR_MAX] = "";
    CkptState s;
    make_tmpdir(dir, sizeof dir);
    const char *foreign[] = {"epoch-0009.h5", "epoch-1.h5", "epoch-0001.h5.bak", "notes.txt"};
    for (size_t i = 0; i < 4; i++) {
        join(path, sizeof path, dir, foreign[i]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fclose(f), 0);
    }
    make_state(&s, 2, 2, 2, 1, 0, 0);
    for (int64_t e = 1; e <= 3; e++) {
        s.epoch = e;
        if (ckpt_save(dir, &s, 1, path, sizeof path, err, sizeof err) != 0)
            fail_msg("save: %s", err);
    }
    assert_false(exists(dir, "epoch-0001.h5"));
    assert_false(exists(dir, "epoch-0002.h5"));
    assert_true(exists(dir, "epoch-0003.h5"));
    for (size_t i = 0; i < 4; i++)
        assert_true(exists(dir, foreign[i]));
    assert_int_equal(count_entries(dir), 6);
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* ckpt_list: only names exactly as ckpt_save writes them, newest (epoch, step) first. */
static void touch(const char *dir, const char *name)
{
    char p[4096];
    join(p, sizeof p, dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fclose(f), 0);
}

static void test_list(void **state)
{
    (void)state;
    char dir[64], sub[4096], err[CKPT_ERR_MAX] = "";
    CkptEntry *e = (CkptEntry *)&e;         /* garbage in: must be reset */
    size_t n = 99;
    make_tmpdir(dir, sizeof dir);

    /* missing directory: no entries, no error */
    join(sub, sizeof sub, dir, "none");
    assert_int_equal(ckpt_list(sub, &e, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_null(e);
    /* empty directory */
    assert_int_equal(ckpt_list(dir, &e, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);

    const char *good[] = {"epoch-0002.h5", "epoch-0010.h5", "epoch-0002-000300.h5",
                          "epoch-0000-000007.h5", "epoch-12345.h5", "epoch-0002-1000000.h5"};
    const char *bad[] = {
        "latest.h5", ".epoch-0003.h5.tmp.123", ".latest.h5.tmp.9", "epoch-1.h5",
        "epoch-0001.h5x", "epoch-0001.h5.bak", "epoch-0001.H5", "epoch-0001-000000.h5",
        "epoch-0001-12.h5", "epoch-00001.h5", "epoch--001.h5", "epoch-0001-.h5",
        "epoch-0001", "Epoch-0004.h5", "epoch-+001.h5", "xepoch-0004.h5", "epoch-0004.h5 ",
        "epoch-99999999999.h5", "notes.txt",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        touch(dir, good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        touch(dir, bad[i]);
    join(sub, sizeof sub, dir, "epoch-0099.h5.d");
    assert_int_equal(mkdir(sub, 0700), 0);

    if (ckpt_list(dir, &e, &n, err, sizeof err) != 0)
        fail_msg("list: %s", err);
    const struct {
        int64_t epoch, step;
        const char *name;
    } want[] = {
        {12345, 0, "epoch-12345.h5"},
        {10, 0, "epoch-0010.h5"},
        {2, 1000000, "epoch-0002-1000000.h5"},
        {2, 300, "epoch-0002-000300.h5"},
        {2, 0, "epoch-0002.h5"},
        {0, 7, "epoch-0000-000007.h5"},
    };
    assert_int_equal(n, sizeof want / sizeof *want);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(e[i].epoch, want[i].epoch);
        assert_int_equal(e[i].epoch_step, want[i].step);
        assert_string_equal(e[i].name, want[i].name);
    }
    free(e);

    /* not a directory: an error naming it */
    join(sub, sizeof sub, dir, "notes.txt");
    assert_int_equal(ckpt_list(sub, &e, &n, err, sizeof err), -1);
    assert_contains(err, sub);
    assert_int_equal(n, 0);
    rm_rf(dir);
}

/* ------------------------------------------------------------------ external readers */

static void test_h5dump_and_h5py(void **state)
{
    (void)state;
    char dir[64], path[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    assert_int_equal(run("h5dump -H '%s' >/dev/null", path), 0);
    if (access(H5PY_SCRIPT, R_OK) != 0)
        fail_msg("%s not found: run the tests from the repository root", H5PY_SCRIPT);
    assert_int_equal(run("/usr/bin/python3 %s '%s' >/dev/null", H5PY_SCRIPT, path), 0);
    /* and the script really can fail: a text file is not a checkpoint */
    char bad[4096];
    join(bad, sizeof bad, dir, "bad.h5");
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    assert_true(fputs("not hdf5\n", f) >= 0);
    assert_int_equal(fclose(f), 0);
    assert_int_not_equal(run("/usr/bin/python3 %s '%s' >/dev/null 2>&1", H5PY_SCRIPT, bad), 0);
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* Rewrite the "reduce" attribute as a FIXED-length ASCII string (what H5LT and older
 * tools write): load still accepts it. */
/* Edit a saved checkpoint with the HDF5 API, as a user with h5py might (HDF5 keeps the
 * 512-byte user block holding the seal line), then reseal it as `mlp reseal` does, so that
 * the loader's own validation is what the test sees rather than the CRC mismatch. */
static hid_t open_edit(const char *path)
{
    return H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
}

static void close_edit(hid_t f, const char *path)
{
    char err[CKPT_ERR_MAX] = "";
    assert_true(H5Fclose(f) >= 0);
    if (fsafe_reseal_file(path, CKPT_FORMAT, err, sizeof err) != 0)
        fail_msg("reseal: %s", err);
}

static void test_load_accepts_fixed_strings(void **state)
{
    (void)state;
    char dir[64], path[4096], err[CKPT_ERR_MAX] = "";
    CkptState s, t;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    hid_t f = open_edit(path);
    assert_true(f >= 0);
    assert_true(H5Adelete(f, "reduce") >= 0);
    assert_true(H5LTset_attribute_string(f, "/", "reduce", "fast") >= 0);
    close_edit(f, path);
    if (ckpt_load(path, &t, err, sizeof err) != 0)
        fail_msg("load: %s", err);
    assert_string_equal(t.reduce, "fast");
    ckpt_state_free(&t);
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* ------------------------------------------------------------------ load errors */

static void test_load_missing(void **state)
{
    (void)state;
    char dir[64], path[4096];
    make_tmpdir(dir, sizeof dir);
    join(path, sizeof path, dir, "nope.h5");
    assert_load_fails(path, "No such file or directory");
    assert_load_fails(dir, "a directory, not a regular file");
    rm_rf(dir);
}

static void test_load_not_hdf5(void **state)
{
    (void)state;
    char dir[64], path[4096];
    make_tmpdir(dir, sizeof dir);
    join(path, sizeof path, dir, "text.h5");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs("[train]\nlr = 0.1\n", f) >= 0);
    assert_int_equal(fclose(f), 0);
    assert_load_fails(path, "not an HDF5 file");
    join(path, sizeof path, dir, "empty.h5");
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fclose(f), 0);
    assert_load_fails(path, "not an HDF5 file");
    rm_rf(dir);
}

static void test_load_truncated(void **state)
{
    (void)state;
    char dir[64], path[4096], cut[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    join(cut, sizeof cut, dir, "cut.h5");
    copy_file(path, cut, (long)st.st_size / 2);
    assert_load_fails(cut, "truncated or corrupt HDF5 file");
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* One flipped byte anywhere after the header block: refused by the CRC-32 before HDF5
 * parses anything. */
static void test_load_flipped_byte(void **state)
{
    (void)state;
    char dir[64], path[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, st.st_size / 2, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, st.st_size / 2, SEEK_SET), 0);
    fputc(c ^ 0x10, f);
    assert_int_equal(fclose(f), 0);
    assert_load_fails(path, "truncated or corrupt HDF5 file, or changed since mlp wrote it: "
                            "CRC-32 ");
    ckpt_state_free(&s);
    rm_rf(dir);
}

static void set_string_attr(const char *path, const char *name, const char *value)
{
    hid_t f = open_edit(path);
    assert_true(f >= 0);
    assert_true(H5Adelete(f, name) >= 0);
    assert_true(H5LTset_attribute_string(f, "/", name, value) >= 0);
    close_edit(f, path);
}

static void test_load_wrong_format(void **state)
{
    (void)state;
    char dir[64], path[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    set_string_attr(path, "format", "keras-weights");
    assert_load_fails(path, "not an mlp checkpoint (format 'keras-weights')");

    /* No format attribute at all: some other HDF5 file. */
    hid_t f = open_edit(path);
    assert_true(f >= 0);
    assert_true(H5Adelete(f, "format") >= 0);
    close_edit(f, path);
    assert_load_fails(path, "not an mlp checkpoint (no 'format' attribute)");
    ckpt_state_free(&s);
    rm_rf(dir);
}

static void test_load_wrong_version(void **state)
{
    (void)state;
    char dir[64], path[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    hid_t f = open_edit(path);
    assert_true(f >= 0);
    assert_true(H5Adelete(f, "format_version") >= 0);
    const int v = 3;                         /* int32 on purpose: any integer type loads */
    assert_true(H5LTset_attribute_int(f, "/", "format_version", &v, 1) >= 0);
    close_edit(f, path);
    assert_load_fails(path, "format_version 3 not supported (this mlp reads 1 to 2)");
    ckpt_state_free(&s);
    rm_rf(dir);
}

static void test_load_missing_attribute(void **state)
{
    (void)state;
    char dir[64], path[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    hid_t f = open_edit(path);
    assert_true(f >= 0);
    assert_true(H5Adelete(f, "step") >= 0);
    close_edit(f, path);
    assert_load_fails(path, "attribute 'step' missing");
    ckpt_state_free(&s);
    rm_rf(dir);
}

static void test_load_missing_dataset(void **state)
{
    (void)state;
    char dir[64], path[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    hid_t f = open_edit(path);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "/model/b2", H5P_DEFAULT) >= 0);
    close_edit(f, path);
    assert_load_fails(path, "/model/b2 missing");
    ckpt_state_free(&s);
    rm_rf(dir);
}

static void test_load_wrong_shape(void **state)
{
    (void)state;
    char dir[64], path[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);   /* d=3 h=17 */
    hid_t f = open_edit(path);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "/model/W1", H5P_DEFAULT) >= 0);
    float w[4 * 17] = {0};
    const hsize_t dims[2] = {4, 17};
    assert_true(H5LTmake_dataset_float(f, "/model/W1", 2, dims, w) >= 0);
    close_edit(f, path);
    assert_load_fails(path, "/model/W1 has shape [4,17], expected [3,17]");
    ckpt_state_free(&s);
    rm_rf(dir);
}

static void test_load_history_mismatch(void **state)
{
    (void)state;
    char dir[64], path[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);   /* 1 epoch of history */
    hid_t f = open_edit(path);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "/history/test_acc", H5P_DEFAULT) >= 0);
    const double v[2] = {0.1, 0.2};
    const hsize_t dims[1] = {2};
    assert_true(H5LTmake_dataset_double(f, "/history/test_acc", 1, dims, v) >= 0);
    close_edit(f, path);
    assert_load_fails(path, "/history/test_acc has length 2 but /history/epoch has length 1");
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* ------------------------------------------------------------------ loading trusts nothing */

static void set_attr_i64(const char *path, const char *name, long long v)
{
    hid_t f = open_edit(path);
    assert_true(f >= 0);
    assert_true(H5Adelete(f, name) >= 0);
    assert_true(H5LTset_attribute_long_long(f, "/", name, &v, 1) >= 0);
    close_edit(f, path);
}

static void set_attr_f64(const char *path, const char *name, double v)
{
    hid_t f = open_edit(path);
    assert_true(f >= 0);
    assert_true(H5Adelete(f, name) >= 0);
    assert_true(H5LTset_attribute_double(f, "/", name, &v, 1) >= 0);
    close_edit(f, path);
}

/* Every attribute out of its range is refused on load with a message naming it and the
 * value, and the same state is refused by ckpt_save with the same words (one check). */
static void test_load_range_checks(void **state)
{
    (void)state;
    char dir[64], path[4096], bad[4096], err[CKPT_ERR_MAX] = "";
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);    /* epoch 1, 1 history entry */
    join(bad, sizeof bad, dir, "bad.h5");
    const struct {
        const char *name;
        long long v;
        const char *want;
    } ints[] = {
        {"epoch", -3, "attribute 'epoch' = -3"},
        {"epoch", 1LL << 31, "attribute 'epoch' = 2147483648"},
        {"epoch", 0, "history has 1 epoch"},                /* more history than epochs */
        {"step", -1, "attribute 'step' = -1"},
        {"epoch_step", -1, "attribute 'epoch_step' = -1"},
        {"epoch_step", 1LL << 40, "attribute 'epoch_step' = 1099511627776"},
        {"epoch_correct", -1, "attribute 'epoch_correct' = -1"},
        {"epoch_correct", 5, "attribute 'epoch_correct' = 5"},  /* epoch_step 0: none seen */
        {"batch", 0, "attribute 'batch' = 0"},
        {"ranks", 0, "attribute 'ranks' = 0"},
        {"threads_per_rank", -2, "attribute 'threads_per_rank' = -2"},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        copy_file(path, bad, -1);
        set_attr_i64(bad, ints[i].name, ints[i].v);
        assert_load_fails(bad, ints[i].want);
    }
    const struct {
        const char *name;
        double v;
        const char *want;
    } reals[] = {
        {"lr", 0.0, "attribute 'lr' = 0"},
        {"lr", -0.5, "attribute 'lr' = -0.5"},
        {"lr", NAN, "attribute 'lr' = nan"},
        {"lr", INFINITY, "attribute 'lr' = inf"},
        {"epoch_loss", -1.0, "attribute 'epoch_loss' = -1"},
        {"epoch_seconds", NAN, "attribute 'epoch_seconds' = nan"},
    };
    for (size_t i = 0; i < sizeof reals / sizeof *reals; i++) {
        copy_file(path, bad, -1);
        set_attr_f64(bad, reals[i].name, reals[i].v);
        assert_load_fails(bad, reals[i].want);
    }
    copy_file(path, bad, -1);
    set_string_attr(bad, "reduce", "median");
    assert_load_fails(bad, "attribute 'reduce' = 'median' (exact or fast)");

    /* history epochs must rise within 1..epoch */
    copy_file(path, bad, -1);
    hid_t f = open_edit(bad);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "/history/epoch", H5P_DEFAULT) >= 0);
    const long long he[1] = {7};
    const hsize_t dims[1] = {1};
    assert_true(H5LTmake_dataset_long(f, "/history/epoch", 1, dims, (const long *)he) >= 0);
    close_edit(f, bad);
    assert_load_fails(bad, "/history/epoch[0] = 7");

    /* the same words on save */
    s.epoch = -3;
    assert_int_equal(ckpt_save(dir, &s, 0, NULL, 0, err, sizeof err), -1);
    assert_contains(err, "attribute 'epoch' = -3");
    s.epoch = 1;
    s.lr = NAN;
    assert_int_equal(ckpt_save(dir, &s, 0, NULL, 0, err, sizeof err), -1);
    assert_contains(err, "attribute 'lr' = nan");
    s.lr = 0.1;
    strcpy(s.reduce, "fastest");
    assert_int_equal(ckpt_save(dir, &s, 0, NULL, 0, err, sizeof err), -1);
    assert_contains(err, "attribute 'reduce' = 'fastest'");
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* Any damaged byte in the 512-byte header block refuses the file; it never turns the
 * CRC check off. A header-less HDF5 file (not written by mlp) is refused too. */
static void test_load_damaged_header(void **state)
{
    (void)state;
    char dir[64], path[4096], bad[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    join(bad, sizeof bad, dir, "bad.h5");
    const struct {
        long off;
        int x;
        const char *want;
    } cases[] = {
        {0, 0x20, "no valid mlp-checkpoint header"},      /* 'm' -> 'M' */
        {16, 0x01, "no valid mlp-checkpoint header"},     /* inside "crc32" */
        {21, 0, "CRC-32"},                                /* a hex digit -> another one */
        {37, 0, "bytes, its sealed header says"},         /* a size digit -> another one */
        {31, 0x20, "no valid mlp-checkpoint header"},     /* "size" */
        {300, 0x41, "no valid mlp-checkpoint header"},    /* the padding */
        {511, 0x01, "no valid mlp-checkpoint header"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        copy_file(path, bad, -1);
        FILE *f = fopen(bad, "r+b");
        assert_non_null(f);
        assert_int_equal(fseek(f, cases[i].off, SEEK_SET), 0);
        int c = fgetc(f);
        assert_int_equal(fseek(f, cases[i].off, SEEK_SET), 0);
        if (cases[i].x == 0)
            c = c == '0' ? '1' : '0';       /* another digit, still a valid line */
        else
            c ^= cases[i].x;
        fputc(c, f);
        assert_int_equal(fclose(f), 0);
        assert_load_fails(bad, cases[i].want);
    }
    /* the whole line blanked */
    copy_file(path, bad, -1);
    FILE *f = fopen(bad, "r+b");
    assert_non_null(f);
    char zeros[64] = {0};
    assert_int_equal(fwrite(zeros, 1, sizeof zeros, f), sizeof zeros);
    assert_int_equal(fclose(f), 0);
    assert_load_fails(bad, "no valid mlp-checkpoint header");
    /* an HDF5 file of the right schema but written without the header */
    hid_t h = H5Fcreate(bad, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(h >= 0);
    assert_true(H5LTset_attribute_string(h, "/", "format", CKPT_FORMAT) >= 0);
    assert_true(H5Fclose(h) >= 0);
    assert_load_fails(bad, "no valid mlp-checkpoint header");
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* A dataset replaced by a chunked, deflate-compressed one of the declared shape. */
static void put_deflated(hid_t f, const char *name, hsize_t rows, hsize_t cols)
{
    const hsize_t dims[2] = {rows, cols}, chunk[2] = {rows < 64 ? rows : 64, cols};
    int rank = cols ? 2 : 1;
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    assert_true(sp >= 0 && dcpl >= 0);
    assert_true(H5Pset_chunk(dcpl, rank, chunk) >= 0);
    assert_true(H5Pset_deflate(dcpl, 9) >= 0);
    assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    hid_t ds = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(ds >= 0);
    size_t n = (size_t)rows * (cols ? (size_t)cols : 1);
    float *zero = calloc(n, sizeof *zero);
    assert_non_null(zero);
    assert_true(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zero) >= 0);
    free(zero);
    assert_true(H5Dclose(ds) >= 0 && H5Pclose(dcpl) >= 0 && H5Sclose(sp) >= 0);
}

/* Only mlp's own layout loads: contiguous, unfiltered, stored in full. A small file of
 * compressed zeros declaring a big model must not make the loader allocate the model. */
static void test_load_filtered_dataset(void **state)
{
    (void)state;
    char dir[64], path[4096], bad[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);   /* d=3 h=17 K=5 */
    join(bad, sizeof bad, dir, "bad.h5");
    copy_file(path, bad, -1);
    hid_t f = open_edit(bad);
    assert_true(f >= 0);
    put_deflated(f, "/model/W1", 3, 17);
    close_edit(f, bad);
    assert_load_fails(bad, "/model/W1 is stored chunked");

    /* d = 2000, h = 1000: 8 MB of W1 in a file of a few KB */
    copy_file(path, bad, -1);
    f = open_edit(bad);
    assert_true(f >= 0);
    const unsigned long long d = 2000, h = 1000;
    assert_true(H5Adelete(f, "d") >= 0 && H5Adelete(f, "hidden") >= 0);
    assert_true(H5LTset_attribute_ulong(f, "/", "d", (const unsigned long *)&d, 1) >= 0);
    assert_true(H5LTset_attribute_ulong(f, "/", "hidden", (const unsigned long *)&h, 1) >= 0);
    put_deflated(f, "/model/W1", 2000, 1000);
    put_deflated(f, "/model/b1", 1000, 0);
    put_deflated(f, "/model/W2", 1000, 5);
    close_edit(f, bad);
    struct stat st;
    assert_int_equal(stat(bad, &st), 0);
    assert_true(st.st_size < 2000 * 1000 * 4 / 16);
    assert_load_fails(bad, "/model/W1 has 2000000 entries, more than this");

    /* contiguous data of another width is still mlp's layout: an int32 history loads */
    copy_file(path, bad, -1);
    f = open_edit(bad);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "/history/epoch", H5P_DEFAULT) >= 0);
    const int e1[1] = {1};
    const hsize_t dims[1] = {1};
    assert_true(H5LTmake_dataset_int(f, "/history/epoch", 1, dims, e1) >= 0);
    close_edit(f, bad);
    CkptState t;
    char err[CKPT_ERR_MAX] = "";
    if (ckpt_load(bad, &t, err, sizeof err) != 0)
        fail_msg("int32 history: %s", err);
    assert_int_equal(t.history.epoch[0], 1);
    ckpt_state_free(&t);
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* stdout or stderr (fd) of fn(argc, argv) into a malloc'd string; *rc its status. */
static char *capture(int fd, int (*fn)(int, char **), int argc, char **argv, int *rc)
{
    char tmpl[] = "/tmp/mlp-ckpt-capture-XXXXXX";
    int out = mkstemp(tmpl);
    assert_true(out >= 0);
    fflush(stdout);
    fflush(stderr);
    int saved = dup(fd);
    assert_true(saved >= 0);
    assert_true(dup2(out, fd) >= 0);
    *rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    assert_true(dup2(saved, fd) >= 0);
    close(saved);
    off_t n = lseek(out, 0, SEEK_END);
    assert_true(n >= 0);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(pread(out, buf, (size_t)n, 0), n);
    buf[n] = '\0';
    close(out);
    unlink(tmpl);
    return buf;
}

static void assert_no_controls(const char *s, const char *what)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f)
            fail_msg("%s holds control byte 0x%02x at offset %td", what, *p,
                     (const char *)p - s);
}

/* ckpt_escape: controls and invalid UTF-8 escaped, printable UTF-8 kept, truncation
 * never splits an escape or a character. */
static void test_escape(void **state)
{
    (void)state;
    char out[64];
    ckpt_escape(out, sizeof out, "a\x1b[2J\x07\n\r\t\x7f b");
    assert_string_equal(out, "a\\x1b[2J\\x07\\n\\r\\t\\x7f b");
    /* e-acute, euro sign, an emoji */
    ckpt_escape(out, sizeof out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    assert_string_equal(out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    /* C1 CSI as UTF-8 (U+009B), a raw 0x9b, overlong '/', a lone continuation, a cut
     * sequence at the end */
    ckpt_escape(out, sizeof out, "\xc2\x9b|\x9b|\xc0\xaf|\x80|\xe2\x82");
    assert_string_equal(out, "\\xc2\\x9b|\\x9b|\\xc0\\xaf|\\x80|\\xe2\\x82");
    assert_int_equal(ckpt_escape(out, 6, "ab\x1b"), 2);       /* "\x1b" would not fit */
    assert_string_equal(out, "ab");
    assert_int_equal(ckpt_escape(out, 4, "a\xc3\xa9"), 3);
    assert_int_equal(ckpt_escape(out, 3, "a\xc3\xa9"), 1);    /* not half of the e-acute */
    assert_int_equal(ckpt_escape(out, 1, "abc"), 0);
    assert_string_equal(out, "");
}

/* A file cannot send terminal escape sequences through inspect or an error message. */
static void test_inspect_escapes_controls(void **state)
{
    (void)state;
    char dir[64], path[4096], bad[4096], err[CKPT_ERR_MAX] = "";
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    set_string_attr(path, "mlp_version", "0.1\x1b]0;title\x07\x1b[2J");
    set_string_attr(path, "config", "[train]\nlr = 0.1 ; caf\xc3\xa9 \x1b]0;owned\x07\x9b" "2J\n");
    char *argv[] = {"inspect", path, NULL};
    int rc = -1;
    char *out = capture(STDOUT_FILENO, cli_inspect, 2, argv, &rc);
    assert_int_equal(rc, 0);
    assert_no_controls(out, "inspect output");
    assert_contains(out, "0.1\\x1b]0;title\\x07\\x1b[2J");
    assert_contains(out, "caf\xc3\xa9 \\x1b]0;owned\\x07\\x9b" "2J");   /* UTF-8 kept */
    free(out);

    join(bad, sizeof bad, dir, "bad.h5");
    copy_file(path, bad, -1);
    set_string_attr(bad, "format", "x\x1b[2J\r\n");
    CkptState t;
    assert_int_equal(ckpt_load(bad, &t, err, sizeof err), -1);
    assert_no_controls(err, "the error message");
    assert_contains(err, "format 'x\\x1b[2J\\r\\n'");
    char *argv2[] = {"inspect", bad, NULL};
    out = capture(STDERR_FILENO, cli_inspect, 2, argv2, &rc);
    assert_int_equal(rc, 1);
    assert_no_controls(out, "inspect's error line");
    free(out);
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* eval refuses a model with NaN/Inf weights (save_good's W2 holds a NaN): a warning
 * naming the count, exit status 1, before the test set is even needed. */
static void test_eval_nonfinite(void **state)
{
    (void)state;
    char dir[64], path[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    char *argv[] = {"eval", path, NULL};
    int rc = -1;
    char *out = capture(STDERR_FILENO, cli_eval, 2, argv, &rc);
    assert_int_equal(rc, 1);
    assert_contains(out, "warning");
    assert_contains(out, "1 non-finite weight");
    assert_contains(out, "W2 1");
    free(out);
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* A file changed with h5py after mlp sealed it: refused, saying what changed and how to
 * reseal after a deliberate edit. */
static void test_load_edited_names_reseal(void **state)
{
    (void)state;
    char dir[64], path[4096];
    CkptState s;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    assert_int_equal(run("/usr/bin/python3 -c \"import h5py; f = h5py.File('%s', 'r+'); "
                         "f.attrs['lr'] = 0.25; f.close()\"", path), 0);
    assert_load_fails(path, "CRC-32");
    assert_load_fails(path, "changed since mlp wrote it");
    assert_load_fails(path, "mlp reseal");

    /* mlp reseal: the edit loads afterwards */
    char err[CKPT_ERR_MAX] = "";
    CkptState t;
    char *argv[] = {"reseal", path, NULL};
    int rc = -1;
    char *out = capture(STDOUT_FILENO, cli_reseal, 2, argv, &rc);
    assert_int_equal(rc, 0);
    assert_contains(out, "resealed");
    free(out);
    if (ckpt_load(path, &t, err, sizeof err) != 0)
        fail_msg("load after reseal: %s", err);
    assert_true(t.lr == 0.25);
    ckpt_state_free(&t);

    /* an edit mlp would refuse is not resealed, and the file stays refused */
    assert_int_equal(run("/usr/bin/python3 -c \"import h5py; f = h5py.File('%s', 'r+'); "
                         "f.attrs['lr'] = -1.0; f.close()\"", path), 0);
    assert_int_equal(ckpt_reseal(path, err, sizeof err), -1);
    assert_contains(err, "attribute 'lr' = -1");
    assert_load_fails(path, "mlp reseal");
    /* nor is a file that is not mlp's (no seal block) */
    char foreign[4096];
    join(foreign, sizeof foreign, dir, "foreign.h5");
    hid_t h = H5Fcreate(foreign, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(h >= 0 && H5Fclose(h) >= 0);
    assert_int_equal(ckpt_reseal(foreign, err, sizeof err), -1);
    assert_contains(err, "not a checkpoint written by mlp");
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* A FIFO, a device or a directory: refused at once (a FIFO must not block the loader). */
static void test_load_not_regular(void **state)
{
    (void)state;
    char dir[64], fifo[4096];
    make_tmpdir(dir, sizeof dir);
    join(fifo, sizeof fifo, dir, "fifo.h5");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(5);                       /* a blocked open ends the child with SIGALRM */
        CkptState t;
        char err[CKPT_ERR_MAX] = "";
        int ok = ckpt_load(fifo, &t, err, sizeof err) == -1 &&
                 strstr(err, "not a regular file") != NULL;
        if (!ok)
            fprintf(stderr, "fifo: %s\n", err);
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st))
        fail_msg("ckpt_load on a FIFO did not return (signal %d)", WTERMSIG(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_load_fails("/dev/null", "not a regular file");
    assert_load_fails(dir, "a directory, not a regular file");
    rm_rf(dir);
}

/* An old checkpoint that cannot be deleted is a warning: the new one is saved. */
static void test_prune_failure_is_not_fatal(void **state)
{
    (void)state;
    char dir[64], p[4096], err[CKPT_ERR_MAX] = "";
    CkptState s;
    make_tmpdir(dir, sizeof dir);
    make_state(&s, 2, 2, 2, 1, 0, 0);
    join(p, sizeof p, dir, "epoch-0001.h5");
    assert_int_equal(mkdir(p, 0700), 0);            /* unlink fails: EISDIR */
    join(p, sizeof p, dir, "epoch-0001.h5/keep");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fclose(f), 0);
    s.epoch = 2;
    if (ckpt_save(dir, &s, 1, p, sizeof p, err, sizeof err) != 0)
        fail_msg("save failed on a prune failure: %s", err);
    assert_true(exists(dir, "epoch-0002.h5"));
    assert_latest(dir, "epoch-0002.h5");
    assert_true(exists(dir, "epoch-0001.h5"));

    /* ckpt_save_warn hands the warning back; empty when there is none */
    char warn[CKPT_ERR_MAX] = "stale";
    s.epoch = 3;
    if (ckpt_save_warn(dir, &s, 1, NULL, 0, warn, sizeof warn, err, sizeof err) != 0)
        fail_msg("save: %s", err);
    assert_contains(warn, "epoch-0001.h5: cannot remove old checkpoint: Is a directory");
    assert_contains(warn, "new checkpoint");
    assert_null(strchr(warn, '\n'));
    assert_false(exists(dir, "epoch-0002.h5"));     /* the removable one went */
    assert_true(exists(dir, "epoch-0003.h5"));
    /* nothing to warn about: warn comes back empty */
    join(p, sizeof p, dir, "epoch-0001.h5/keep");
    assert_int_equal(unlink(p), 0);
    join(p, sizeof p, dir, "epoch-0001.h5");
    assert_int_equal(rmdir(p), 0);
    s.epoch = 4;
    strcpy(warn, "stale");
    if (ckpt_save_warn(dir, &s, 1, NULL, 0, warn, sizeof warn, err, sizeof err) != 0)
        fail_msg("save: %s", err);
    assert_string_equal(warn, "");
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* ------------------------------------------------------------------ save errors */

static void test_save_unwritable(void **state)
{
    (void)state;
    char dir[64], path[4096], blocker[4096], bad[4096], err[CKPT_ERR_MAX] = "";
    CkptState s, t;
    save_good(dir, sizeof dir, path, sizeof path, &s);

    /* A directory "under" a regular file cannot be created. */
    join(blocker, sizeof blocker, dir, "plain-file");
    FILE *f = fopen(blocker, "w");
    assert_non_null(f);
    assert_int_equal(fclose(f), 0);
    join(bad, sizeof bad, blocker, "ckpt");
    s.epoch = 2;
    assert_int_equal(ckpt_save(bad, &s, 0, NULL, 0, err, sizeof err), -1);
    assert_contains(err, blocker);
    assert_contains(err, "not a directory");

    /* The temporary name is taken by a directory, so the temporary cannot be created.
     * The earlier checkpoint and latest.h5 must be untouched, and the directory (not
     * ours) must survive. */
    char tmpname[128], tmp[4096];
    snprintf(tmpname, sizeof tmpname, ".epoch-0002.h5.tmp.%ld", (long)getpid());
    join(tmp, sizeof tmp, dir, tmpname);
    assert_int_equal(mkdir(tmp, 0700), 0);
    err[0] = '\0';
    assert_int_equal(ckpt_save(dir, &s, 1, NULL, 0, err, sizeof err), -1);
    assert_contains(err, tmp);
    assert_contains(err, "cannot create: Is a directory");
    assert_null(strchr(err, '\n'));
    assert_false(exists(dir, "epoch-0002.h5"));
    assert_true(exists(dir, tmpname));
    assert_latest(dir, "epoch-0001.h5");
    assert_int_equal(rmdir(tmp), 0);

    char latest[4096];
    join(latest, sizeof latest, dir, "latest.h5");
    if (ckpt_load(latest, &t, err, sizeof err) != 0)
        fail_msg("earlier checkpoint no longer loads: %s", err);
    assert_int_equal(t.epoch, 1);
    ckpt_state_free(&t);
    if (ckpt_load(path, &t, err, sizeof err) != 0)
        fail_msg("earlier checkpoint no longer loads: %s", err);
    ckpt_state_free(&t);
    assert_int_equal(count_hidden(dir), 0);
    ckpt_state_free(&s);
    rm_rf(dir);
}

/* The disk fills up half-way through the write (simulated with RLIMIT_FSIZE, which any
 * user may lower): -1 with the system's reason, no temporary left, the earlier checkpoint
 * and latest.h5 untouched, and the process still healthy (HDF5 writing to disk itself
 * would crash at exit after such a failure). */
static void test_save_disk_full(void **state)
{
    (void)state;
    char dir[64], path[4096], latest[4096], err[CKPT_ERR_MAX] = "";
    CkptState s, t;
    save_good(dir, sizeof dir, path, sizeof path, &s);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)st.st_size / 2;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);   /* EFBIG instead of a signal */
    assert_true(oldsig != SIG_ERR);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    s.epoch = 2;
    int rc = ckpt_save(dir, &s, 1, NULL, 0, err, sizeof err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_true(signal(SIGXFSZ, oldsig) != SIG_ERR);

    assert_int_equal(rc, -1);
    assert_contains(err, ".epoch-0002.h5.tmp.");
    assert_contains(err, "write failed");
    assert_contains(err, strerror(EFBIG));
    assert_int_equal(count_hidden(dir), 0);
    assert_false(exists(dir, "epoch-0002.h5"));
    assert_latest(dir, "epoch-0001.h5");
    join(latest, sizeof latest, dir, "latest.h5");
    if (ckpt_load(latest, &t, err, sizeof err) != 0)
        fail_msg("earlier checkpoint no longer loads: %s", err);
    assert_int_equal(t.epoch, 1);
    ckpt_state_free(&t);

    /* and the next save, with room again, works */
    if (ckpt_save(dir, &s, 1, NULL, 0, err, sizeof err) != 0)
        fail_msg("save after failure: %s", err);
    assert_latest(dir, "epoch-0002.h5");
    assert_false(exists(dir, "epoch-0001.h5"));
    ckpt_state_free(&s);
    rm_rf(dir);
}

static void test_save_bad_state(void **state)
{
    (void)state;
    char dir[64], err[CKPT_ERR_MAX] = "";
    CkptState s;
    make_tmpdir(dir, sizeof dir);
    make_state(&s, 2, 2, 2, 1, 0, 0);
    float *w = s.W2;
    s.W2 = NULL;
    assert_int_equal(ckpt_save(dir, &s, 0, NULL, 0, err, sizeof err), -1);
    assert_contains(err, "W2");
    s.W2 = w;
    s.hidden = 0;
    assert_int_equal(ckpt_save(dir, &s, 0, NULL, 0, err, sizeof err), -1);
    assert_contains(err, "hidden=0");
    s.hidden = 2;
    assert_int_equal(ckpt_save(dir, &s, -1, NULL, 0, err, sizeof err), -1);
    assert_contains(err, "keep");
    char small[8];
    assert_int_equal(ckpt_save(dir, &s, 0, small, sizeof small, err, sizeof err), -1);
    assert_contains(err, "buffer");
    assert_int_equal(count_entries(dir), 0);
    ckpt_state_free(&s);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_history_grows),
        cmocka_unit_test(test_roundtrip_odd),
        cmocka_unit_test(test_standardize_roundtrip),
        cmocka_unit_test(test_roundtrip_tiny),
        cmocka_unit_test(test_epoch_name_wide),
        cmocka_unit_test(test_save_trailing_slash_and_mkdir_p),
        cmocka_unit_test(test_null_config_saves_empty),
        cmocka_unit_test(test_latest_and_keep),
        cmocka_unit_test(test_keep_spares_foreign_files),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_h5dump_and_h5py),
        cmocka_unit_test(test_load_accepts_fixed_strings),
        cmocka_unit_test(test_load_missing),
        cmocka_unit_test(test_load_not_hdf5),
        cmocka_unit_test(test_load_truncated),
        cmocka_unit_test(test_load_flipped_byte),
        cmocka_unit_test(test_load_wrong_format),
        cmocka_unit_test(test_load_wrong_version),
        cmocka_unit_test(test_load_missing_attribute),
        cmocka_unit_test(test_load_missing_dataset),
        cmocka_unit_test(test_load_wrong_shape),
        cmocka_unit_test(test_load_history_mismatch),
        cmocka_unit_test(test_load_range_checks),
        cmocka_unit_test(test_load_damaged_header),
        cmocka_unit_test(test_load_filtered_dataset),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_inspect_escapes_controls),
        cmocka_unit_test(test_eval_nonfinite),
        cmocka_unit_test(test_load_edited_names_reseal),
        cmocka_unit_test(test_load_not_regular),
        cmocka_unit_test(test_prune_failure_is_not_fatal),
        cmocka_unit_test(test_save_unwritable),
        cmocka_unit_test(test_save_disk_full),
        cmocka_unit_test(test_save_bad_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
