/* make-seeds: write the seed corpora fuzz/corpus/{config,idx,checkpoint,h5data}/
 * (`make fuzz-seeds`).
 *
 *   build/fuzz/make-seeds OUTDIR
 *
 * The seeds are small valid inputs in each harness's input format (see the comment at the
 * top of each fuzz/fuzz_*.c) plus a few broken variants, so that the fuzzer starts past
 * the first checks. Checkpoints are written by ckpt_save itself with tiny shapes; their
 * 'created' attribute makes each run's bytes differ, so rerun this only to change the
 * seeds, not as part of a build.
 */
#define _GNU_SOURCE                 /* memmem */
#include "checkpoint.h"
#include "config.h"

#include <hdf5.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define SEEDS_MAX (64u << 10)

__attribute__((format(printf, 1, 2), noreturn))
static void seeds_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("make-seeds: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void seeds_write(const char *dir, const char *sub, const char *name, const void *data,
                        size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        seeds_die("%s: cannot create: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        seeds_die("%s: cannot create: %s", path, strerror(errno));
    if (fwrite(data, 1, len, f) != len || fclose(f) != 0)
        seeds_die("%s: write failed: %s", path, strerror(errno));
    printf("%s (%zu bytes)\n", path, len);
}

static size_t seeds_read(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        seeds_die("%s: cannot open: %s", path, strerror(errno));
    size_t n = fread(buf, 1, cap, f);
    if (ferror(f) || n == cap)
        seeds_die("%s: read error or larger than %zu bytes", path, cap);
    fclose(f);
    return n;
}

/* ------------------------------------------------------------------ config */

/* A config seed: byte 0 = number of --set lines that follow, then the INI text. */
static void seeds_config_one(const char *dir, const char *name, int noverrides,
                             const char *overrides, const char *ini)
{
    char buf[SEEDS_MAX];
    int n = snprintf(buf, sizeof buf, "%c%s%s", noverrides, overrides, ini);
    if (n < 0 || (size_t)n >= sizeof buf)
        seeds_die("config seed %s too long", name);
    seeds_write(dir, "config", name, buf, (size_t)n);
}

static void seeds_config(const char *dir)
{
    static unsigned char mnist[SEEDS_MAX];
    size_t n = seeds_read("configs/mnist.ini", mnist, sizeof mnist - 1);
    mnist[n] = '\0';
    seeds_config_one(dir, "mnist.ini", 0, "", (const char *)mnist);

    Config c;
    config_defaults(&c);
    char *ini = config_to_ini(&c);
    if (!ini)
        seeds_die("config_to_ini failed");
    seeds_config_one(dir, "resolved.ini", 0, "", ini);
    free(ini);

    seeds_config_one(dir, "overrides.ini", 2, "train.lr = 0.25\nlog.progress=off\n",
                     "# colon syntax, inline comments, CRLF, indentation\r\n"
                     "[model]\r\n"
                     "hidden: 7 ; few\r\n"
                     "   seed = 18446744073709551615\r\n"
                     "[train]\n"
                     "reduce = fast\n"
                     "eval_every = 0\n"
                     "[checkpoint]\n"
                     "resume = auto\n");
    seeds_config_one(dir, "errors.ini", 1, "data.train_limit=-1\n",
                     "[train]\nepochs = 3\nepochs = 4\nlr = 1e400\n[nope]\nx = 1\n");
}

/* ------------------------------------------------------------------ IDX */

/* An IDX seed: flags, label length (u16 LE), label file, image file. */
static void seeds_idx_one(const char *dir, const char *name, unsigned flags,
                          const unsigned char *lab, size_t nlab, const unsigned char *img,
                          size_t nimg)
{
    unsigned char buf[SEEDS_MAX];
    if (3 + nlab + nimg > sizeof buf || nlab > 0xffff)
        seeds_die("IDX seed %s too long", name);
    buf[0] = (unsigned char)flags;
    buf[1] = (unsigned char)(nlab & 0xff);
    buf[2] = (unsigned char)(nlab >> 8);
    memcpy(buf + 3, lab, nlab);
    memcpy(buf + 3 + nlab, img, nimg);
    seeds_write(dir, "idx", name, buf, 3 + nlab + nimg);
}

static size_t seeds_gzip(const unsigned char *in, size_t n, unsigned char *out, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        seeds_die("deflateInit2 failed");
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
        seeds_die("deflate failed");
    size_t len = (size_t)zs.total_out;
    deflateEnd(&zs);
    return len;
}

static void seeds_idx(const char *dir)
{
    /* 4 samples of 3x2 pixels, labels 0..3 */
    unsigned char lab[8 + 4] = {0, 0, 8, 1, 0, 0, 0, 4, 0, 1, 2, 3};
    unsigned char img[16 + 4 * 6] = {0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 2};
    for (int i = 0; i < 4 * 6; i++)
        img[16 + i] = (unsigned char)(i * 11);
    seeds_idx_one(dir, "plain", 0, lab, sizeof lab, img, sizeof img);
    /* the harness gzips both files and asks for 10 classes */
    seeds_idx_one(dir, "gzip-both", 7, lab, sizeof lab, img, sizeof img);
    /* gzip bytes given as they are: the fuzzer mutates the stream itself */
    unsigned char zlab[256], zimg[256];
    size_t nzl = seeds_gzip(lab, sizeof lab, zlab, sizeof zlab);
    size_t nzi = seeds_gzip(img, sizeof img, zimg, sizeof zimg);
    seeds_idx_one(dir, "raw-gzip", 0, zlab, nzl, zimg, nzi);
    /* swapped files, and an image file one byte short with a label out of range */
    seeds_idx_one(dir, "swapped", 0, img, sizeof img, lab, sizeof lab);
    lab[11] = 200;
    seeds_idx_one(dir, "short-badlabel", 4, lab, sizeof lab, img, sizeof img - 1);
}

/* ------------------------------------------------------------------ checkpoint */

/* ckpt_save a tiny state into tmpdir and return the file's bytes. */
static size_t seeds_ckpt_make(const char *tmpdir, uint64_t d, uint64_t h, uint64_t k,
                              int64_t epoch, int64_t epoch_step, const char *config,
                              unsigned char *out, size_t cap)
{
    CkptState s;
    memset(&s, 0, sizeof s);
    s.d = d;
    s.hidden = h;
    s.classes = k;
    float w[64];
    if (d * h > 64 || h * k > 64)
        seeds_die("seed shape too large");
    for (int i = 0; i < 64; i++)
        w[i] = (float)(i % 7) * 0.125f - 0.375f;
    s.W1 = w;
    s.b1 = w + 1;
    s.W2 = w + 2;
    s.b2 = w + 3;
    s.epoch = epoch;
    s.step = epoch * 5 + epoch_step;
    s.epoch_step = epoch_step;
    s.epoch_correct = epoch_step * 3;
    s.epoch_loss = 0.5 * (double)epoch_step;
    s.epoch_seconds = 0.25;
    s.seed = 42;
    s.batch = 4;
    s.lr = 0.5;
    snprintf(s.reduce, sizeof s.reduce, "exact");
    s.ranks = 2;
    s.threads_per_rank = 1;
    s.config = (char *)config;
    snprintf(s.mlp_version, sizeof s.mlp_version, "fuzz-seed");
    if (ckpt_history_init(&s.history, 0) != 0)
        seeds_die("out of memory");
    for (int64_t e = 1; e <= epoch; e++)
        if (ckpt_history_push(&s.history, e, 1.0 / (double)e, 0.5, e % 2 ? 0.75 : NAN,
                              0.125) != 0)
            seeds_die("out of memory");
    char path[4096], err[CKPT_ERR_MAX];
    if (ckpt_save(tmpdir, &s, 0, path, sizeof path, err, sizeof err) != 0)
        seeds_die("%s", err);
    ckpt_history_free(&s.history);
    size_t n = seeds_read(path, out, cap);
    if (unlink(path) != 0)
        seeds_die("%s: cannot remove: %s", path, strerror(errno));
    return n;
}

static void seeds_checkpoint(const char *dir)
{
    char tmpdir[] = "/tmp/mlp-seeds-XXXXXX";
    if (!mkdtemp(tmpdir))
        seeds_die("mkdtemp: %s", strerror(errno));
    static unsigned char a[SEEDS_MAX], b[SEEDS_MAX];

    size_t na = seeds_ckpt_make(tmpdir, 2, 3, 2, 0, 0, "[model]\nhidden = 3\n", a, sizeof a);
    seeds_write(dir, "checkpoint", "tiny-epoch0.h5", a, na);

    Config c;
    config_defaults(&c);
    char *ini = config_to_ini(&c);
    if (!ini)
        seeds_die("config_to_ini failed");
    size_t nb = seeds_ckpt_make(tmpdir, 3, 2, 3, 2, 1, ini, b, sizeof b);
    free(ini);
    seeds_write(dir, "checkpoint", "tiny-epoch2-step1.h5", b, nb);

    /* cut in the middle: the superblock is fine, the objects it points to are not */
    seeds_write(dir, "checkpoint", "truncated.h5", b, nb / 2);

    /* another format: the name is stored once, in the global heap */
    unsigned char *f = memmem(a, na, CKPT_FORMAT, strlen(CKPT_FORMAT));
    if (!f)
        seeds_die("format string not found in the seed checkpoint");
    f[0] = 'M';
    seeds_write(dir, "checkpoint", "wrong-format.h5", a, na);
    f[0] = 'm';

    /* /model/b2 deleted with the HDF5 API */
    char path[4096];
    snprintf(path, sizeof path, "%s/missing.h5", tmpdir);
    FILE *out = fopen(path, "wb");
    if (!out || fwrite(a, 1, na, out) != na || fclose(out) != 0)
        seeds_die("%s: cannot write", path);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (file < 0 || H5Ldelete(file, "/model/b2", H5P_DEFAULT) < 0 || H5Fclose(file) < 0)
        seeds_die("%s: cannot delete /model/b2", path);
    size_t nm = seeds_read(path, b, sizeof b);
    seeds_write(dir, "checkpoint", "missing-b2.h5", b, nm);
    if (unlink(path) != 0)
        seeds_die("%s: cannot remove: %s", path, strerror(errno));

    /* ckpt_save left latest.h5 pointing at the last file, now removed */
    snprintf(path, sizeof path, "%s/latest.h5", tmpdir);
    if (unlink(path) != 0 || rmdir(tmpdir) != 0)
        seeds_die("%s: cannot clean up: %s", tmpdir, strerror(errno));
}

/* ------------------------------------------------------------------ h5data */

/* One HDF5 data file: /X (n, d) of xtype from x (as double), /y (n) of ytype from y
 * (as int64, omitted when y is NULL); chunked + gzip when gzip. */
static void seeds_h5data_one(const char *dir, const char *name, hid_t xtype, hsize_t n,
                             hsize_t d, const double *x, hid_t ytype, const int64_t *y,
                             int gzip)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/h5data-seed.h5", dir);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t dims[2] = {n, d}, chunk[2] = {n > 1 ? n / 2 : 1, d};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (file < 0 || dcpl < 0 || (gzip && (H5Pset_chunk(dcpl, 2, chunk) < 0 ||
                                          H5Pset_deflate(dcpl, 6) < 0)))
        seeds_die("%s: cannot create", path);
    hid_t sx = H5Screate_simple(2, dims, NULL), sy = H5Screate_simple(1, dims, NULL);
    hid_t dx = H5Dcreate2(file, "X", xtype, sx, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dx < 0 || H5Dwrite(dx, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        seeds_die("%s: cannot write /X", path);
    H5Dclose(dx);
    if (y) {
        hid_t dy = H5Dcreate2(file, "y", ytype, sy, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (dy < 0 || H5Dwrite(dy, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) < 0)
            seeds_die("%s: cannot write /y", path);
        H5Dclose(dy);
    }
    H5Sclose(sx);
    H5Sclose(sy);
    H5Pclose(dcpl);
    if (H5Fclose(file) < 0)
        seeds_die("%s: cannot close", path);
    unsigned char b[SEEDS_MAX];
    size_t len = seeds_read(path, b, sizeof b);
    seeds_write(dir, "h5data", name, b, len);
    if (unlink(path) != 0)
        seeds_die("%s: cannot remove: %s", path, strerror(errno));
}

/* Inputs of fuzz_h5data: whole HDF5 files, /X and /y. */
static void seeds_h5data(const char *dir)
{
    const double x[12] = {0, 1, 2, 3, 250, 5, 6, 7, 8, 9, 10, 255};
    const int64_t y[4] = {2, 0, 1, 2}, bad[4] = {0, -1, 3, 300};
    const int64_t y12[12] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2};
    const double nan_x[6] = {0, 1, NAN, 3, 4, 5};
    seeds_h5data_one(dir, "f64.h5", H5T_IEEE_F64LE, 4, 3, x, H5T_STD_I64LE, y, 0);
    seeds_h5data_one(dir, "f32-gzip.h5", H5T_IEEE_F32LE, 4, 3, x, H5T_STD_I32LE, y, 1);
    seeds_h5data_one(dir, "u8.h5", H5T_STD_U8LE, 4, 3, x, H5T_STD_U8LE, y, 0);
    seeds_h5data_one(dir, "u8-gzip.h5", H5T_STD_U8LE, 6, 2, x, H5T_STD_I16LE, y12, 1);
    seeds_h5data_one(dir, "i64-d1.h5", H5T_STD_I64LE, 12, 1, x, H5T_STD_U16LE, y12, 0);
    seeds_h5data_one(dir, "bad-labels.h5", H5T_STD_U16LE, 4, 3, x, H5T_STD_I64LE, bad, 0);
    seeds_h5data_one(dir, "nan.h5", H5T_IEEE_F64LE, 2, 3, nan_x, H5T_STD_I64LE, y, 1);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR   (run from the repository root)\n", argv[0]);
        return 2;
    }
    seeds_config(argv[1]);
    seeds_idx(argv[1]);
    seeds_checkpoint(argv[1]);
    seeds_h5data(argv[1]);
    return 0;
}
