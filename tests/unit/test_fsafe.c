/* Unit tests for fsafe: atomic replace (plain, through symlinks, failure leaves the old
 * file and no temporary), mkdir -p, the symlink swap, dead writers' temporaries, and the
 * seal (every damaged byte of the block or the body is caught; reseal after an edit). */
#define _XOPEN_SOURCE 700                   /* nftw() for removing test directories */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fsafe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAG "mlp-test"

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}

static void make_tmpdir(char *buf, size_t len)
{
    assert_true(snprintf(buf, len, "/tmp/mlp-fsafe-test-XXXXXX") < (int)len);
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

/* The whole file, NUL-terminated; *n its size. */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    *n = fread(buf, 1, (1 << 16) - 1, f);
    buf[*n] = '\0';
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void put(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
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

static void assert_file(const char *path, const char *want)
{
    size_t n;
    char *got = slurp(path, &n);
    assert_int_equal(n, strlen(want));
    assert_string_equal(got, want);
    free(got);
}

/* ------------------------------------------------------------------ atomic write */

static void test_write_atomic(void **state)
{
    (void)state;
    char dir[64], p[4096], err[512] = "";
    make_tmpdir(dir, sizeof dir);
    join(p, sizeof p, dir, "config.ini");
    assert_int_equal(fsafe_write_atomic(p, "a = 1\n", 6, err, sizeof err), 0);
    assert_file(p, "a = 1\n");
    assert_int_equal(fsafe_write_atomic(p, "b = 22\n", 7, err, sizeof err), 0);
    assert_file(p, "b = 22\n");
    assert_int_equal(fsafe_write_atomic(p, "", 0, err, sizeof err), 0);
    assert_file(p, "");
    assert_int_equal(count_entries(dir), 1);          /* no temporary left */

    /* a missing directory: an error naming the temporary, nothing created */
    join(p, sizeof p, dir, "none/x.csv");
    assert_int_equal(fsafe_write_atomic(p, "x", 1, err, sizeof err), -1);
    assert_contains(err, "none/.x.csv.tmp.");
    assert_contains(err, "No such file or directory");
    /* a trailing slash names no file */
    join(p, sizeof p, dir, "dir/");
    assert_int_equal(fsafe_write_atomic(p, "x", 1, err, sizeof err), -1);
    assert_contains(err, "not a file name");
    assert_int_equal(count_entries(dir), 1);
    rm_rf(dir);
}

/* A symlinked target is replaced through the link: the link stays a link, also through a
 * chain of relative links across directories and to a not-yet-existing file. */
static void test_write_through_symlink(void **state)
{
    (void)state;
    char dir[64], sub[4096], p[4096], q[4096], err[512] = "", buf[256];
    make_tmpdir(dir, sizeof dir);
    join(sub, sizeof sub, dir, "real");
    assert_int_equal(mkdir(sub, 0700), 0);
    join(p, sizeof p, sub, "metrics.csv");
    put(p, "old\n", 4);
    join(q, sizeof q, dir, "hop.csv");
    assert_int_equal(symlink("real/metrics.csv", q), 0);
    join(q, sizeof q, dir, "metrics.csv");
    assert_int_equal(symlink("hop.csv", q), 0);

    assert_int_equal(fsafe_write_atomic(q, "new\n", 4, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(lstat(q, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    ssize_t n = readlink(q, buf, sizeof buf - 1);
    assert_int_equal(n, 7);
    assert_file(p, "new\n");
    assert_int_equal(count_entries(sub), 1);

    /* dangling: the target is created */
    join(q, sizeof q, dir, "dangling");
    assert_int_equal(symlink("real/later.txt", q), 0);
    assert_int_equal(fsafe_write_atomic(q, "made\n", 5, err, sizeof err), 0);
    join(p, sizeof p, sub, "later.txt");
    assert_file(p, "made\n");
    assert_int_equal(lstat(q, &st), 0);
    assert_true(S_ISLNK(st.st_mode));

    /* a loop is an error, not a hang */
    join(q, sizeof q, dir, "loop");
    assert_int_equal(symlink("loop", q), 0);
    assert_int_equal(fsafe_write_atomic(q, "x", 1, err, sizeof err), -1);
    assert_contains(err, "loop");
    rm_rf(dir);
}

static void test_mkdir_p_and_fsync_dir(void **state)
{
    (void)state;
    char dir[64], p[4096], err[512] = "";
    make_tmpdir(dir, sizeof dir);
    join(p, sizeof p, dir, "a//b/c/");
    assert_int_equal(fsafe_mkdir_p(p, err, sizeof err), 0);
    assert_int_equal(fsafe_mkdir_p(p, err, sizeof err), 0);    /* exists: fine */
    assert_int_equal(fsafe_fsync_dir(p, err, sizeof err), 0);
    join(p, sizeof p, dir, "a/b/c/file");
    put(p, "x", 1);
    join(p, sizeof p, dir, "a/b/c/file/d");
    assert_int_equal(fsafe_mkdir_p(p, err, sizeof err), -1);
    assert_contains(err, "exists and is not a directory");
    join(p, sizeof p, dir, "nowhere");
    assert_int_equal(fsafe_fsync_dir(p, err, sizeof err), -1);
    assert_contains(err, "nowhere");
    rm_rf(dir);
}

static void test_symlink_swap(void **state)
{
    (void)state;
    char dir[64], p[4096], buf[64], err[512] = "";
    make_tmpdir(dir, sizeof dir);
    assert_int_equal(fsafe_symlink_swap(dir, "latest.h5", "epoch-0001.h5", err, sizeof err), 0);
    assert_int_equal(fsafe_symlink_swap(dir, "latest.h5", "epoch-0002.h5", err, sizeof err), 0);
    join(p, sizeof p, dir, "latest.h5");
    ssize_t n = readlink(p, buf, sizeof buf - 1);
    assert_int_equal(n, 13);
    buf[n] = '\0';
    assert_string_equal(buf, "epoch-0002.h5");
    assert_int_equal(count_entries(dir), 1);
    rm_rf(dir);
}

static bool ours(const char *name)
{
    return strcmp(name, "x.csv") == 0;
}

static void test_remove_dead_temps(void **state)
{
    (void)state;
    char dir[64], p[4096], name[64];
    make_tmpdir(dir, sizeof dir);
    /* our own pid counts as dead (an earlier process's); pid 1 is alive; a huge pid and
     * other names are never touched */
    snprintf(name, sizeof name, ".x.csv.tmp.%ld", (long)getpid());
    const char *keep[] = {".x.csv.tmp.1", ".y.csv.tmp.77", ".x.csv.tmp.99999999999",
                          ".x.csv.tmp.12a", ".x.csv.tmp.", "x.csv.tmp.5", ".x.csv.tmp.0"};
    join(p, sizeof p, dir, name);
    put(p, "", 0);
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        join(p, sizeof p, dir, keep[i]);
        put(p, "", 0);
    }
    fsafe_remove_dead_temps(dir, ours);
    join(p, sizeof p, dir, name);
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(count_entries(dir), (int)(sizeof keep / sizeof *keep));
    rm_rf(dir);
}

/* ------------------------------------------------------------------ seal */

static FsafeSealStatus check(const char *path, FsafeSealInfo *in)
{
    char err[512] = "";
    size_t len;
    void *buf = fsafe_read_file(path, &len, err, sizeof err);
    if (!buf)
        fail_msg("read: %s", err);
    FsafeSealStatus st = fsafe_seal_check(buf, len, TAG, in);
    free(buf);
    return st;
}

/* fsafe_read_file: a FIFO is refused at once, never waited on; so are devices and
 * directories, each named. */
static void test_read_file(void **state)
{
    (void)state;
    char dir[64], p[4096], err[512] = "";
    size_t len = 99;
    make_tmpdir(dir, sizeof dir);
    join(p, sizeof p, dir, "fifo");
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_null(fsafe_read_file(p, &len, err, sizeof err));   /* no writer: would block */
    assert_contains(err, "a FIFO, not a regular file");
    assert_int_equal(len, 0);
    assert_null(fsafe_read_file("/dev/null", &len, err, sizeof err));
    assert_contains(err, "a character device, not a regular file");
    assert_null(fsafe_read_file(dir, &len, err, sizeof err));
    assert_contains(err, "a directory, not a regular file");
    join(p, sizeof p, dir, "empty");
    put(p, "", 0);
    void *buf = fsafe_read_file(p, &len, err, sizeof err);
    assert_non_null(buf);
    assert_int_equal(len, 0);
    free(buf);
    rm_rf(dir);
}

static void test_seal(void **state)
{
    (void)state;
    char dir[64], p[4096], err[512] = "";
    enum { LEN = FSAFE_SEAL_BYTES + 333 };
    static unsigned char img[LEN];
    make_tmpdir(dir, sizeof dir);
    join(p, sizeof p, dir, "f");
    for (size_t i = FSAFE_SEAL_BYTES; i < LEN; i++)
        img[i] = (unsigned char)(i * 7);
    assert_int_equal(fsafe_seal(img, FSAFE_SEAL_BYTES - 1, TAG), -1);
    assert_int_equal(fsafe_seal(img, LEN, TAG), 0);
    assert_int_equal(strncmp((char *)img, TAG " crc32 ", strlen(TAG) + 7), 0);
    put(p, img, LEN);
    FsafeSealInfo in;
    assert_int_equal(check(p, &in), FSAFE_SEAL_OK);
    assert_int_equal(in.size_file, LEN);

    /* every byte of the block, changed, is refused (never "no seal, trust it") */
    for (size_t i = 0; i < FSAFE_SEAL_BYTES; i++) {
        unsigned char c = img[i];
        img[i] = (unsigned char)(c ^ (c == '0' ? 0x01 : 0x20));
        put(p, img, LEN);
        FsafeSealStatus st = check(p, &in);
        if (st == FSAFE_SEAL_OK)
            fail_msg("a change at byte %zu of the seal block was accepted", i);
        img[i] = c;
    }
    /* a body byte: CRC mismatch with both values */
    img[LEN - 1] ^= 1;
    put(p, img, LEN);
    assert_int_equal(check(p, &in), FSAFE_SEAL_CRC);
    assert_true(in.crc_file != in.crc_sealed);
    /* appended or cut: size mismatch */
    img[LEN - 1] ^= 1;
    put(p, img, LEN - 1);
    assert_int_equal(check(p, &in), FSAFE_SEAL_SIZE);
    assert_int_equal(in.size_sealed, LEN);
    assert_int_equal(in.size_file, LEN - 1);
    put(p, img, 10);
    assert_int_equal(check(p, &in), FSAFE_SEAL_MISSING);

    /* reseal after an edit; a blank block is resealed too; a foreign block is not */
    img[LEN - 1] ^= 1;
    put(p, img, LEN);
    assert_int_equal(fsafe_reseal_file(p, TAG, err, sizeof err), 0);
    assert_int_equal(check(p, &in), FSAFE_SEAL_OK);
    memset(img, 0, FSAFE_SEAL_BYTES);
    put(p, img, LEN);
    assert_int_equal(fsafe_reseal_file(p, TAG, err, sizeof err), 0);
    assert_int_equal(check(p, &in), FSAFE_SEAL_OK);
    memcpy(img, "\x89HDF\r\n\x1a\n", 8);
    put(p, img, LEN);
    assert_int_equal(fsafe_reseal_file(p, TAG, err, sizeof err), -1);
    assert_contains(err, "not a 'mlp-test' seal block");
    size_t n;
    char *back = slurp(p, &n);
    assert_int_equal(memcmp(back, img, LEN), 0);            /* untouched */
    free(back);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_atomic),
        cmocka_unit_test(test_write_through_symlink),
        cmocka_unit_test(test_mkdir_p_and_fsync_dir),
        cmocka_unit_test(test_symlink_swap),
        cmocka_unit_test(test_remove_dead_temps),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_seal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
