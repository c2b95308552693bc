/* Tests for data: IDX loading (plain and gzip), every rejection the header promises, the
 * three ways to load (own buffer, the caller's buffer, checksum only: the same checks, the
 * same messages, the same CRC), and the per-epoch order. Small IDX files are built byte by byte in a fresh /tmp directory, so each
 * test states exactly what is on disk. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"

#include <hdf5.h>
#include <math.h>

#define MAGIC_IMAGES 0x00000803u
#define MAGIC_LABELS 0x00000801u

/* The good set: 3 samples of 2 x 3 pixels, labels 2, 0, 4 (so 5 classes when derived). */
static const uint8_t good_pixels[18] = {0,   1,  2,  3,  4,  5,  /* sample 0 */
                                        10, 20, 30, 40, 50, 60,  /* sample 1 */
                                        255, 254, 128, 127, 0, 7}; /* sample 2 */
static const uint8_t good_labels[3] = {2, 0, 4};

/* ---- building files ------------------------------------------------------------------ */

typedef struct {
    uint8_t b[256];
    size_t n;
} Bytes;

static void put_u32be(Bytes *o, uint32_t v)
{
    assert_true(o->n + 4 <= sizeof o->b);
    o->b[o->n++] = (uint8_t)(v >> 24);
    o->b[o->n++] = (uint8_t)(v >> 16);
    o->b[o->n++] = (uint8_t)(v >> 8);
    o->b[o->n++] = (uint8_t)v;
}

static void put_bytes(Bytes *o, const void *p, size_t len)
{
    assert_true(o->n + len <= sizeof o->b);
    if (len == 0) /* memcpy with a NULL source is undefined even for 0 bytes */
        return;
    memcpy(o->b + o->n, p, len);
    o->n += len;
}

static Bytes idx_images(uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols,
                        const uint8_t *pixels, size_t npixels)
{
    Bytes o = {.n = 0};
    put_u32be(&o, magic);
    put_u32be(&o, count);
    put_u32be(&o, rows);
    put_u32be(&o, cols);
    put_bytes(&o, pixels, npixels);
    return o;
}

static Bytes idx_labels(uint32_t magic, uint32_t count, const uint8_t *labels, size_t nlabels)
{
    Bytes o = {.n = 0};
    put_u32be(&o, magic);
    put_u32be(&o, count);
    put_bytes(&o, labels, nlabels);
    return o;
}

static char tmpdir[64];

/* Path of a file in this run's temporary directory (a static ring, so a few can be live). */
static const char *tmp_path(const char *name)
{
    static char ring[8][256];
    static int next;
    char *p = ring[next++ % 8];
    snprintf(p, sizeof ring[0], "%s/%s", tmpdir, name);
    return p;
}

static const char *write_plain(const char *name, const void *p, size_t len)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static const char *write_gz(const char *name, const void *p, size_t len)
{
    const char *path = tmp_path(name);
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, p, (unsigned)len), (int)len);
    assert_int_equal(gzclose(g), Z_OK);
    return path;
}

static const char *good_images_file(void)
{
    Bytes b = idx_images(MAGIC_IMAGES, 3, 2, 3, good_pixels, sizeof good_pixels);
    return write_plain("good-images", b.b, b.n);
}

static const char *good_labels_file(void)
{
    Bytes b = idx_labels(MAGIC_LABELS, 3, good_labels, sizeof good_labels);
    return write_plain("good-labels", b.b, b.n);
}

/* ---- checking results ---------------------------------------------------------------- */

static void assert_zeroed(const Dataset *ds)
{
    assert_null(ds->images);
    assert_null(ds->labels);
    assert_int_equal(ds->crc, 0);
    assert_int_equal(ds->owns_images, 0);
    assert_int_equal(ds->n, 0);
    assert_int_equal(ds->d, 0);
    assert_int_equal(ds->rows, 0);
    assert_int_equal(ds->cols, 0);
    assert_int_equal(ds->classes, 0);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fail_msg("message \"%s\" does not contain \"%s\"", haystack, needle);
}

/* Load a pair that must fail; return the message after checking its common shape:
 * starts with the path named, one line, ds left empty. The same pair must fail with the
 * same message through data_load_into, both into a buffer of the probed size and in
 * checksum-only mode, and through data_probe when the fault is in a header. */
static const char *load_fails(const char *images, const char *labels, int classes,
                              const char *blamed)
{
    static char err[DATA_ERR_MAX];
    char other[DATA_ERR_MAX];
    Dataset ds;
    memset(&ds, 0xAB, sizeof ds); /* garbage in: data_load must zero it, not trust it */
    memset(err, 0, sizeof err);
    assert_int_equal(data_load(&ds, images, labels, classes, err, sizeof err), -1);
    assert_zeroed(&ds);
    data_free(&ds); /* must be harmless on a zeroed set */
    assert_true(strncmp(err, blamed, strlen(blamed)) == 0 && err[strlen(blamed)] == ':');
    assert_null(strchr(err, '\n'));

    DataShape shape;
    memset(&shape, 0xAB, sizeof shape);
    if (data_probe(&shape, images, labels, other, sizeof other) != 0) {
        assert_string_equal(other, err);
        assert_int_equal(shape.n, 0);
        assert_int_equal(shape.d, 0);
        return err;   /* a header fault: nothing to size a buffer with */
    }
    const size_t bytes = shape.n * shape.d;
    uint8_t *buf = malloc(bytes);
    assert_non_null(buf);
    memset(&ds, 0xAB, sizeof ds);
    assert_int_equal(data_load_into(&ds, images, labels, classes, buf, bytes, other, sizeof other),
                     -1);
    assert_string_equal(other, err);
    assert_zeroed(&ds);
    free(buf);

    memset(&ds, 0xAB, sizeof ds);
    assert_int_equal(data_load_into(&ds, images, labels, classes, NULL, 0, other, sizeof other), -1);
    assert_string_equal(other, err);
    assert_zeroed(&ds);
    return err;
}

static void assert_good_set(const Dataset *ds, int classes)
{
    assert_int_equal(ds->n, 3);
    assert_int_equal(ds->d, 6);
    assert_int_equal(ds->rows, 2);
    assert_int_equal(ds->cols, 3);
    assert_int_equal(ds->classes, classes);
    assert_non_null(ds->images);
    assert_non_null(ds->labels);
    assert_memory_equal(ds->images, good_pixels, sizeof good_pixels);
    assert_memory_equal(ds->labels, good_labels, sizeof good_labels);
}

/* ---- loading ------------------------------------------------------------------------- */

static void test_good_plain(void **state)
{
    (void)state;
    char err[DATA_ERR_MAX] = "";
    Dataset ds;
    assert_int_equal(data_load(&ds, good_images_file(), good_labels_file(), 0, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_good_set(&ds, 5); /* derived: 1 + max label 4 */
    data_free(&ds);
    assert_zeroed(&ds);

    /* classes given: kept as given even when larger than the labels need */
    assert_int_equal(data_load(&ds, good_images_file(), good_labels_file(), 10, err, sizeof err), 0);
    assert_good_set(&ds, 10);
    data_free(&ds);
    /* the tightest valid bound */
    assert_int_equal(data_load(&ds, good_images_file(), good_labels_file(), 5, err, sizeof err), 0);
    assert_good_set(&ds, 5);
    data_free(&ds);
}

static void test_good_gzip(void **state)
{
    (void)state;
    Bytes bi = idx_images(MAGIC_IMAGES, 3, 2, 3, good_pixels, sizeof good_pixels);
    Bytes bl = idx_labels(MAGIC_LABELS, 3, good_labels, sizeof good_labels);
    const char *gi = write_gz("good-images.gz", bi.b, bi.n);
    const char *gl = write_gz("good-labels.gz", bl.b, bl.n);
    char err[DATA_ERR_MAX] = "";
    Dataset ds;

    /* the files really are gzip: otherwise this test would only repeat the plain one */
    FILE *f = fopen(gi, "rb");
    assert_non_null(f);
    assert_int_equal(fgetc(f), 0x1f);
    assert_int_equal(fgetc(f), 0x8b);
    fclose(f);

    assert_int_equal(data_load(&ds, gi, gl, 0, err, sizeof err), 0);
    assert_good_set(&ds, 5);
    data_free(&ds);

    /* mixed: gzip images, plain labels */
    assert_int_equal(data_load(&ds, gi, good_labels_file(), 0, err, sizeof err), 0);
    assert_good_set(&ds, 5);
    data_free(&ds);
}

static void test_bad_magic(void **state)
{
    (void)state;
    Bytes b = idx_images(0x12345678u, 3, 2, 3, good_pixels, sizeof good_pixels);
    const char *img = write_plain("magic-images", b.b, b.n);
    const char *msg = load_fails(img, good_labels_file(), 0, img);
    assert_contains(msg, "0x12345678");
    assert_contains(msg, "0x00000803");

    /* files swapped: both named magics, and the hint */
    msg = load_fails(good_labels_file(), good_images_file(), 0, good_labels_file());
    assert_contains(msg, "0x00000801");
    assert_contains(msg, "0x00000803");
    assert_contains(msg, "swapped");

    Bytes l = idx_labels(0x00000901u, 3, good_labels, sizeof good_labels); /* wrong type byte */
    const char *lab = write_plain("magic-labels", l.b, l.n);
    msg = load_fails(good_images_file(), lab, 0, lab);
    assert_contains(msg, "0x00000901");
    assert_contains(msg, "0x00000801");
}

static void test_truncated_payload(void **state)
{
    (void)state;
    Bytes b = idx_images(MAGIC_IMAGES, 3, 2, 3, good_pixels, sizeof good_pixels - 1);
    const char *img = write_plain("short-images", b.b, b.n);
    const char *msg = load_fails(img, good_labels_file(), 0, img);
    assert_contains(msg, "truncated: expected 18 bytes of pixel data after the header, found 17");

    Bytes l = idx_labels(MAGIC_LABELS, 3, good_labels, 2);
    const char *lab = write_plain("short-labels", l.b, l.n);
    msg = load_fails(good_images_file(), lab, 0, lab);
    assert_contains(msg, "truncated: expected 3 bytes of label data after the header, found 2");

    /* a gzip stream cut short is a truncation too, and says so */
    Bytes big = idx_images(MAGIC_IMAGES, 3, 2, 3, good_pixels, sizeof good_pixels);
    const char *gz = write_gz("cut-images.gz", big.b, big.n);
    FILE *f = fopen(gz, "rb");
    assert_non_null(f);
    uint8_t raw[512];
    size_t len = fread(raw, 1, sizeof raw, f);
    fclose(f);
    assert_true(len > 20);
    const char *cut = write_plain("cut-images.gz", raw, len - 12); /* drop part of the deflate tail */
    msg = load_fails(cut, good_labels_file(), 0, cut);
    assert_contains(msg, "truncated");
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    uint8_t more[20];
    memcpy(more, good_pixels, sizeof good_pixels);
    more[18] = 9;
    more[19] = 9;
    Bytes b = idx_images(MAGIC_IMAGES, 3, 2, 3, more, sizeof more);
    const char *img = write_plain("long-images", b.b, b.n);
    const char *msg = load_fails(img, good_labels_file(), 0, img);
    assert_contains(msg, "2 trailing bytes after the 18 bytes of pixel data");

    const uint8_t four[4] = {2, 0, 4, 1};
    Bytes l = idx_labels(MAGIC_LABELS, 3, four, sizeof four);
    const char *lab = write_gz("long-labels.gz", l.b, l.n);
    msg = load_fails(good_images_file(), lab, 0, lab);
    assert_contains(msg, "1 trailing bytes after the 3 bytes of label data");
}

static void test_count_mismatch(void **state)
{
    (void)state;
    Bytes l = idx_labels(MAGIC_LABELS, 2, good_labels, 2);
    const char *lab = write_plain("two-labels", l.b, l.n);
    const char *img = good_images_file();
    const char *msg = load_fails(img, lab, 0, img);
    assert_contains(msg, "holds 3 images");
    assert_contains(msg, lab);
    assert_contains(msg, "holds 2 labels");
}

static void test_label_out_of_range(void **state)
{
    (void)state;
    const char *lab = good_labels_file();
    const char *msg = load_fails(good_images_file(), lab, 4, lab);
    assert_contains(msg, "label 4 at sample index 2");
    assert_contains(msg, "classes = 4");

    msg = load_fails(good_images_file(), lab, -1, lab);
    assert_contains(msg, "classes must be >= 0");
}

static void test_zero_dims(void **state)
{
    (void)state;
    Bytes b = idx_images(MAGIC_IMAGES, 0, 2, 3, NULL, 0);
    const char *img = write_plain("empty-images", b.b, b.n);
    Bytes l = idx_labels(MAGIC_LABELS, 0, NULL, 0);
    const char *lab = write_plain("empty-labels", l.b, l.n);
    const char *msg = load_fails(img, lab, 0, img);
    assert_contains(msg, "empty");
    msg = load_fails(good_images_file(), lab, 0, lab);
    assert_contains(msg, "empty");

    b = idx_images(MAGIC_IMAGES, 3, 2, 0, NULL, 0);
    img = write_plain("nocols-images", b.b, b.n);
    msg = load_fails(img, good_labels_file(), 0, img);
    assert_contains(msg, "cols = 0");
}

static void test_size_overflow(void **state)
{
    (void)state;
    /* 2^32-1 cubed overflows any 64-bit size_t: must be refused before any allocation */
    Bytes b = idx_images(MAGIC_IMAGES, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, NULL, 0);
    const char *img = write_plain("huge-images", b.b, b.n);
    const char *msg = load_fails(img, good_labels_file(), 0, img);
    assert_contains(msg, "more pixel bytes than this machine can address");
}

static void test_corrupt_gzip(void **state)
{
    (void)state;
    /* a valid 10-byte gzip member header (magic, deflate, no flags, OS unix), then garbage:
     * 0xFF starts a deflate block of reserved type 3, which zlib must reject */
    uint8_t raw[64] = {0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03};
    for (size_t i = 10; i < sizeof raw; i++)
        raw[i] = (uint8_t)(0xFF - 3 * (i - 10)); /* raw[10] = 0xFF: BFINAL 1, BTYPE 11 */
    const char *img = write_plain("corrupt-images.gz", raw, sizeof raw);
    const char *msg = load_fails(img, good_labels_file(), 0, img);
    assert_contains(msg, "cannot decompress");
    /* zlib's own words follow, once, without a second copy of the path */
    assert_contains(msg, "invalid block type");
    assert_null(strstr(msg + strlen(img) + 1, img));
    assert_null(strstr(msg, "<fd:"));  /* nor zlib's name for the descriptor */

    /* a stream that inflates to exactly the right bytes but whose CRC-32 trailer is wrong:
     * the data are damaged somewhere, so they must be refused, not trained on */
    Bytes b = idx_images(MAGIC_IMAGES, 3, 2, 3, good_pixels, sizeof good_pixels);
    const char *gz = write_gz("badcrc-images.gz", b.b, b.n);
    FILE *f = fopen(gz, "rb");
    assert_non_null(f);
    uint8_t z[512];
    size_t len = fread(z, 1, sizeof z, f);
    fclose(f);
    assert_true(len > 18 && len < sizeof z);
    z[len - 8] ^= 0x01; /* the trailer is CRC-32 then ISIZE, 4 bytes each */
    const char *bad = write_plain("badcrc-images.gz", z, len);
    msg = load_fails(bad, good_labels_file(), 0, bad);
    assert_contains(msg, "cannot decompress");
    assert_contains(msg, "incorrect data check");
}

static void test_missing_file(void **state)
{
    (void)state;
    const char *gone = tmp_path("no-such-file");
    const char *msg = load_fails(gone, good_labels_file(), 0, gone);
    assert_contains(msg, "cannot open: No such file or directory");
    msg = load_fails(good_images_file(), gone, 0, gone);
    assert_contains(msg, "cannot open");
}

/* A FIFO (no writer: opening it, or the first read, would wait forever), a device or a
 * directory, as either file of the pair: refused at once, before anything is read, by
 * data_load, data_load_into and data_probe alike (load_fails tries all of them). */
static void test_not_regular(void **state)
{
    (void)state;
    const char *fifo = tmp_path("fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *msg = load_fails(fifo, good_labels_file(), 0, fifo);
    assert_contains(msg, ": cannot read: a FIFO, not a regular file");
    msg = load_fails(good_images_file(), fifo, 0, fifo);
    assert_contains(msg, ": cannot read: a FIFO, not a regular file");
    assert_int_equal(unlink(fifo), 0);

    msg = load_fails("/dev/zero", good_labels_file(), 0, "/dev/zero");
    assert_string_equal(msg, "/dev/zero: cannot read: a character device, not a regular file");
    msg = load_fails(good_images_file(), tmpdir, 0, tmpdir);
    assert_contains(msg, ": cannot read: a directory, not a regular file");

    /* A symbolic link to a regular file is a regular file. */
    const char *link = tmp_path("link-images");
    assert_int_equal(symlink(good_images_file(), link), 0);
    char err[DATA_ERR_MAX] = "";
    Dataset ds;
    assert_int_equal(data_load(&ds, link, good_labels_file(), 0, err, sizeof err), 0);
    assert_good_set(&ds, 5);
    data_free(&ds);
    assert_int_equal(unlink(link), 0);
}

static void test_short_header(void **state)
{
    (void)state;
    Bytes b = idx_images(MAGIC_IMAGES, 3, 2, 3, NULL, 0);
    const char *img = write_plain("stub-images", b.b, 10);
    const char *msg = load_fails(img, good_labels_file(), 0, img);
    assert_contains(msg, "16-byte header, found 10 bytes");

    const char *empty = write_plain("zero-length", "", 0);
    msg = load_fails(empty, good_labels_file(), 0, empty);
    assert_contains(msg, "found 0 bytes");

    Bytes l = idx_labels(MAGIC_LABELS, 3, NULL, 0);
    const char *lab = write_plain("stub-labels", l.b, 5);
    msg = load_fails(good_images_file(), lab, 0, lab);
    assert_contains(msg, "8-byte header, found 5 bytes");
}

static void test_small_err_buffer(void **state)
{
    (void)state;
    /* a message longer than the buffer is cut, never overrun; NULL err is allowed */
    char err[8];
    memset(err, 'x', sizeof err);
    Dataset ds;
    const char *gone = tmp_path("no-such-file");
    assert_int_equal(data_load(&ds, gone, gone, 0, err, 6), -1);
    assert_int_equal(strlen(err), 5);
    assert_int_equal(err[6], 'x');
    assert_int_equal(data_load(&ds, gone, gone, 0, NULL, 0), -1);
    assert_zeroed(&ds);
}

/* ---- probing, loading into a buffer, checksum only ----------------------------------- */

/* CRC-32 of the good set as data.c defines it: the pixel payload, then the label payload. */
static uint32_t good_crc(void)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, good_pixels, sizeof good_pixels);
    return (uint32_t)crc32(crc, good_labels, sizeof good_labels);
}

static void test_probe(void **state)
{
    (void)state;
    char err[DATA_ERR_MAX] = "x";
    DataShape shape;
    assert_int_equal(data_probe(&shape, good_images_file(), good_labels_file(), err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(shape.n, 3);
    assert_int_equal(shape.d, 6);
    assert_int_equal(shape.rows, 2);
    assert_int_equal(shape.cols, 3);

    /* headers only: a payload fault is not the probe's to see (data_load_into finds it) */
    Bytes b = idx_images(MAGIC_IMAGES, 3, 2, 3, good_pixels, sizeof good_pixels);
    b.b[b.n++] = 1;
    const char *img = write_plain("probe-long-images", b.b, b.n);
    assert_int_equal(data_probe(&shape, img, good_labels_file(), err, sizeof err), 0);
    assert_int_equal(shape.n, 3);
    /* but a pair that does not match is */
    Bytes l = idx_labels(MAGIC_LABELS, 2, good_labels, 2);
    const char *lab = write_plain("probe-two-labels", l.b, l.n);
    assert_int_equal(data_probe(&shape, good_images_file(), lab, err, sizeof err), -1);
    assert_contains(err, "holds 3 images");
    assert_int_equal(data_probe(&shape, good_images_file(), lab, NULL, 0), -1);
}

static void test_crc(void **state)
{
    (void)state;
    char err[DATA_ERR_MAX];
    Dataset ds;
    assert_int_equal(data_load(&ds, good_images_file(), good_labels_file(), 0, err, sizeof err), 0);
    assert_int_equal(ds.crc, good_crc());
    assert_int_equal(ds.owns_images, 1);
    data_free(&ds);
    /* pixels and labels both count, in that order */
    uint8_t other[sizeof good_labels] = {2, 0, 3};
    Bytes l = idx_labels(MAGIC_LABELS, 3, other, sizeof other);
    const char *lab = write_plain("crc-labels", l.b, l.n);
    assert_int_equal(data_load(&ds, good_images_file(), lab, 0, err, sizeof err), 0);
    assert_int_not_equal(ds.crc, good_crc());
    data_free(&ds);
}

static void test_load_into(void **state)
{
    (void)state;
    char err[DATA_ERR_MAX] = "x";
    uint8_t buf[sizeof good_pixels + 1];
    memset(buf, 0xEE, sizeof buf);
    Dataset ds;
    assert_int_equal(data_load_into(&ds, good_images_file(), good_labels_file(), 0, buf,
                                    sizeof good_pixels, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_ptr_equal(ds.images, buf);
    assert_int_equal(ds.owns_images, 0);
    assert_good_set(&ds, 5);
    assert_int_equal(ds.crc, good_crc());
    assert_int_equal(buf[sizeof good_pixels], 0xEE); /* not one byte more */
    data_free(&ds);   /* frees the labels only: buf is on the stack (ASan would object) */
    assert_zeroed(&ds);
    assert_memory_equal(buf, good_pixels, sizeof good_pixels);

    /* a buffer of another size than the header announces is refused, one line */
    const char *img = good_images_file();
    assert_int_equal(data_load_into(&ds, img, good_labels_file(), 0, buf, sizeof buf, err,
                                    sizeof err), -1);
    assert_true(strncmp(err, img, strlen(img)) == 0);
    assert_contains(err, "18 bytes of pixel data but the buffer for them holds 19");
    assert_zeroed(&ds);
}

static void test_checksum_only(void **state)
{
    (void)state;
    char err[DATA_ERR_MAX] = "x";
    Dataset ds;
    assert_int_equal(data_load_into(&ds, good_images_file(), good_labels_file(), 10, NULL, 0, err,
                                    sizeof err), 0);
    assert_string_equal(err, "");
    assert_null(ds.images);
    assert_int_equal(ds.owns_images, 0);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.d, 6);
    assert_int_equal(ds.classes, 10);
    assert_memory_equal(ds.labels, good_labels, sizeof good_labels);
    assert_int_equal(ds.crc, good_crc());
    data_free(&ds);
    assert_zeroed(&ds);
}

/* An image file of count samples of rows x cols pixels, pixel i = a byte pattern of i, with
 * delta bytes cut from (delta < 0) or added to (delta > 0) the end of the payload, plain
 * or gzip. *expect receives the full payload it should have held. */
static const char *big_images(const char *name, uint32_t count, uint32_t rows, uint32_t cols,
                              long delta, int gzip, uint8_t **expect)
{
    const size_t bytes = (size_t)count * rows * cols, len = (size_t)((long)bytes + delta);
    uint8_t *p = malloc(bytes > len ? bytes : len);
    assert_non_null(p);
    for (size_t i = 0; i < (bytes > len ? bytes : len); i++)
        p[i] = (uint8_t)(i * 131 + (i >> 9) * 7);
    Bytes h = idx_images(MAGIC_IMAGES, count, rows, cols, NULL, 0);
    const char *path = tmp_path(name);
    if (gzip) {
        gzFile g = gzopen(path, "wb1");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, h.b, (unsigned)h.n), (int)h.n);
        assert_int_equal(gzwrite(g, p, (unsigned)len), (int)len);
        assert_int_equal(gzclose(g), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(h.b, 1, h.n, f), h.n);
        assert_int_equal(fwrite(p, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
    }
    *expect = p;
    return path;
}

static const char *labels_for(uint32_t count)
{
    uint8_t lab[16];
    assert_true(count <= sizeof lab);
    for (uint32_t i = 0; i < count; i++)
        lab[i] = (uint8_t)(i % 10);
    Bytes l = idx_labels(MAGIC_LABELS, count, lab, count);
    char name[32];
    snprintf(name, sizeof name, "labels-%u", (unsigned)count);
    return write_plain(name, l.b, l.n);
}

/* Payloads around the 1 MiB read block: all three ways give the same pixels and CRC, and
 * the same message for a file cut short (also exactly at a block boundary) or too long. */
static void test_block_sizes(void **state)
{
    (void)state;
    static const uint32_t shapes[][3] = {
        {1, 1024, 1024},   /* exactly one block */
        {7, 1, 149797},    /* one block and 3 bytes */
        {3, 1000, 700},    /* two blocks and a part */
        {5, 3, 1},         /* tiny */
    };
    char err[DATA_ERR_MAX];
    for (int gz = 0; gz < 2; gz++) {
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            const uint32_t n = shapes[k][0], rows = shapes[k][1], cols = shapes[k][2];
            const size_t bytes = (size_t)n * rows * cols;
            uint8_t *expect;
            const char *img = big_images(gz ? "big-images.gz" : "big-images", n, rows, cols, 0,
                                         gz, &expect);
            const char *lab = labels_for(n);
            Dataset own, into, sum;
            assert_int_equal(data_load(&own, img, lab, 0, err, sizeof err), 0);
            assert_memory_equal(own.images, expect, bytes);
            uint8_t *buf = malloc(bytes);
            assert_non_null(buf);
            assert_int_equal(data_load_into(&into, img, lab, 0, buf, bytes, err, sizeof err), 0);
            assert_memory_equal(buf, expect, bytes);
            assert_int_equal(data_load_into(&sum, img, lab, 0, NULL, 0, err, sizeof err), 0);
            uLong crc = crc32(0L, Z_NULL, 0);
            crc = crc32(crc, expect, (uInt)bytes);
            crc = crc32(crc, own.labels, n);
            assert_int_equal(own.crc, (uint32_t)crc);
            assert_int_equal(into.crc, own.crc);
            assert_int_equal(sum.crc, own.crc);
            data_free(&own);
            data_free(&into);
            data_free(&sum);
            free(buf);
            free(expect);

            /* short by one byte, and (when there is one) cut at the first block boundary */
            char want[160];
            long cuts[2] = {-1, bytes > (1u << 20) ? -(long)(bytes - (1u << 20)) : 0};
            for (int c = 0; c < 2 && cuts[c] != 0; c++) {
                img = big_images(gz ? "cut-big.gz" : "cut-big", n, rows, cols, cuts[c], gz, &expect);
                const char *msg = load_fails(img, lab, 0, img);
                snprintf(want, sizeof want, "truncated: expected %zu bytes of pixel data after the "
                         "header, found %zu", bytes, (size_t)((long)bytes + cuts[c]));
                assert_contains(msg, want);
                free(expect);
            }
            /* too long: a byte, and more than a block's worth of scratch */
            long extras[2] = {1, 5000};
            for (int e = 0; e < 2; e++) {
                img = big_images(gz ? "long-big.gz" : "long-big", n, rows, cols, extras[e], gz,
                                 &expect);
                const char *msg = load_fails(img, lab, 0, img);
                snprintf(want, sizeof want, "%ld trailing bytes after the %zu bytes of pixel data",
                         extras[e], bytes);
                assert_contains(msg, want);
                free(expect);
            }
        }
    }
}

/* ---- the real MNIST files, when scripts/fetch-mnist has run ------------------------- */

static void test_mnist(void **state)
{
    (void)state;
    const char *ti = "data/mnist/train-images-idx3-ubyte", *tl = "data/mnist/train-labels-idx1-ubyte";
    const char *vi = "data/mnist/t10k-images-idx3-ubyte", *vl = "data/mnist/t10k-labels-idx1-ubyte";
    if (access(ti, R_OK) != 0 || access(tl, R_OK) != 0 || access(vi, R_OK) != 0 ||
        access(vl, R_OK) != 0) {
        print_message("data/mnist absent (run scripts/fetch-mnist from the repo root)\n");
        skip();
    }
    char err[DATA_ERR_MAX] = "";
    Dataset ds;
    if (data_load(&ds, ti, tl, 0, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(ds.n, 60000);
    assert_int_equal(ds.d, 784);
    assert_int_equal(ds.rows, 28);
    assert_int_equal(ds.cols, 28);
    assert_int_equal(ds.classes, 10);
    assert_int_equal(ds.labels[0], 5); /* MNIST's well-known first training digit */
    assert_int_equal(ds.crc, 0xdf6dde61u); /* of the files whose SHA-256 fetch-mnist checks */
    data_free(&ds);
    /* checksum only: the same CRC without holding the 47 MB */
    if (data_load_into(&ds, ti, tl, 0, NULL, 0, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_null(ds.images);
    assert_int_equal(ds.crc, 0xdf6dde61u);
    data_free(&ds);

    if (data_load(&ds, vi, vl, 10, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(ds.n, 10000);
    assert_int_equal(ds.d, 784);
    assert_int_equal(ds.classes, 10);
    assert_int_equal(ds.labels[0], 7);
    assert_int_equal(ds.crc, 0x190e897bu);
    data_free(&ds);
}

/* ---- epoch order --------------------------------------------------------------------- */

static void assert_permutation(const uint32_t *order, size_t n)
{
    uint8_t *seen = calloc(n, 1);
    assert_non_null(seen);
    for (size_t i = 0; i < n; i++) {
        assert_true(order[i] < n);
        assert_int_equal(seen[order[i]], 0);
        seen[order[i]] = 1;
    }
    free(seen);
}

static void test_order_is_permutation(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 2, 3, 17, 1000};
    uint32_t order[1000];
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (uint64_t epoch = 0; epoch < 5; epoch++) {
            data_epoch_order(order, sizes[s], 42, epoch);
            assert_permutation(order, sizes[s]);
        }
    data_epoch_order(order, 0, 42, 0); /* n = 0: nothing to do, must not touch memory */
}

static int same_order(const uint32_t *a, const uint32_t *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

static void test_order_deterministic(void **state)
{
    (void)state;
    enum { N = 1000 };
    static uint32_t a[N], b[N], c[N], junk[N];
    data_epoch_order(a, N, 7, 3);
    /* other work in between, including other orders: nothing hidden may carry over */
    data_epoch_order(junk, N, 99, 12345);
    data_epoch_order(junk, 17, 7, 4);
    srand(1);
    (void)rand();
    data_epoch_order(b, N, 7, 3);
    assert_true(same_order(a, b, N));

    data_epoch_order(c, N, 7, 4);
    assert_false(same_order(a, c, N)); /* another epoch */
    data_epoch_order(c, N, 8, 3);
    assert_false(same_order(a, c, N)); /* another seed */
    /* it shuffles at all: the identity has probability 1/1000! */
    for (uint32_t i = 0; i < N; i++)
        c[i] = i;
    assert_false(same_order(a, c, N));
}

static void test_order_pinned(void **state)
{
    (void)state;
    /* The exact order is part of the contract: a checkpoint resumed by a later build must see
     * the same minibatches. If this changes, resumed runs stop being bitwise reproducible.
     * (Cross-checked against an independent Python transcription of the algorithm.) */
    static const uint32_t want[10] = {9, 4, 3, 0, 6, 8, 1, 7, 2, 5};
    uint32_t got[10];
    data_epoch_order(got, 10, 1, 0);
    assert_memory_equal(got, want, sizeof want);
}

/* ---- fixture ------------------------------------------------------------------------- */

/* ---- HDF5 input and standardisation ------------------------------------------------- */

/* An HDF5 file at tmp_path(name): /X (n, d) of xtype from x (doubles), /y (n) of ytype
 * from y, or a 3-D /X (n, d, 1) when rank3. gzip: chunked + deflate. */
static const char *write_h5(const char *name, hid_t xtype, hsize_t n, hsize_t d,
                            const double *x, hid_t ytype, const int64_t *y, int gzip,
                            int rank3)
{
    const char *path = tmp_path(name);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    const hsize_t dims[3] = {n, d, 1}, chunk[3] = {2, d, 1};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (gzip) {
        assert_true(H5Pset_chunk(dcpl, rank3 ? 3 : 2, chunk) >= 0);
        assert_true(H5Pset_deflate(dcpl, 4) >= 0);
    }
    hid_t sx = H5Screate_simple(rank3 ? 3 : 2, dims, NULL);
    hid_t dx = H5Dcreate2(f, "X", xtype, sx, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(H5Dwrite(dx, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    hid_t sy = H5Screate_simple(1, dims, NULL);
    hid_t dy = H5Dcreate2(f, "y", ytype, sy, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Dwrite(dy, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0);
    H5Dclose(dx);
    H5Dclose(dy);
    H5Sclose(sx);
    H5Sclose(sy);
    H5Pclose(dcpl);
    assert_true(H5Fclose(f) >= 0);
    return path;
}

static const double h5_x[6] = {0.5, -2.0, 1e3, 3.25, 255.0, -0.125};   /* (3, 2) */
static const int64_t h5_y[3] = {1, 0, 2};

/* float64 and gzip'd int32 features: float32 values as they are, native type float32,
 * the same CRC-32 read owned, into a buffer and checksum only; uint8 stays uint8 and
 * reads as float32 with the same values. */
static void test_h5_types(void **state)
{
    (void)state;
    char err[DATA_ERR_MAX];
    const char *f64 = write_h5("f64.h5", H5T_IEEE_F64LE, 3, 2, h5_x, H5T_STD_I32LE, h5_y, 0, 0);
    assert_int_equal(data_format_of(f64), DATA_FORMAT_HDF5);
    assert_int_equal(data_format_of(good_images_file()), DATA_FORMAT_IDX);
    DataShape shape;
    assert_int_equal(data_probe(&shape, f64, f64, err, sizeof err), 0);
    assert_int_equal(shape.n, 3);
    assert_int_equal(shape.d, 2);
    assert_int_equal(shape.native, DATA_F32);
    assert_string_equal(shape.stored, "float64");
    Dataset ds, other;
    assert_int_equal(data_load(&ds, f64, f64, 0, err, sizeof err), 0);
    assert_int_equal(ds.type, DATA_F32);
    assert_null(ds.images);
    for (int i = 0; i < 6; i++)
        assert_true(ds.features[i] == (float)h5_x[i]);
    assert_int_equal(ds.classes, 3);
    assert_memory_equal(ds.labels, ((uint8_t[]){1, 0, 2}), 3);
    const DataSource src = {f64, f64, "/X", "/y", DATA_FORMAT_AUTO, 0};
    float buf[6];
    assert_int_equal(data_read_into(&other, &src, 0, DATA_F32, 0, buf, sizeof buf, err,
                                    sizeof err), 0);
    assert_int_equal(other.crc, ds.crc);
    assert_memory_equal(buf, ds.features, sizeof buf);
    data_free(&other);
    assert_int_equal(data_read_into(&other, &src, 0, DATA_F32, 0, NULL, 0, err, sizeof err), 0);
    assert_int_equal(other.crc, ds.crc);
    assert_null(other.features);
    data_free(&other);
    /* a buffer of the wrong size is refused */
    assert_int_equal(data_read_into(&other, &src, 0, DATA_F32, 0, buf, 5 * sizeof(float), err,
                                    sizeof err), -1);
    assert_non_null(strstr(err, "did the file change"));
    /* as uint8: refused, it is not */
    assert_int_equal(data_read_into(&other, &src, 0, DATA_U8, 1, NULL, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "holds float64: cannot be held as uint8"));

    /* the same values as gzip'd int32 give the same float32 bytes only where exact */
    const double ints[6] = {0, -2, 1000, 3, 255, 7};
    const char *i32 = write_h5("i32.h5", H5T_STD_I32LE, 3, 2, ints, H5T_STD_U8LE, h5_y, 1, 0);
    Dataset di;
    assert_int_equal(data_load(&di, i32, i32, 0, err, sizeof err), 0);
    for (int i = 0; i < 6; i++)
        assert_true(di.features[i] == (float)ints[i]);
    data_free(&di);

    const double u8[6] = {0, 1, 2, 128, 254, 255};
    const char *pu8 = write_h5("u8.h5", H5T_STD_U8LE, 3, 2, u8, H5T_STD_I64LE, h5_y, 1, 0);
    assert_int_equal(data_load(&di, pu8, pu8, 0, err, sizeof err), 0);
    assert_int_equal(di.type, DATA_U8);
    assert_memory_equal(di.images, ((uint8_t[]){0, 1, 2, 128, 254, 255}), 6);
    const DataSource su8 = {pu8, pu8, "/X", "/y", DATA_FORMAT_HDF5, 0};
    assert_int_equal(data_read_into(&other, &su8, 0, DATA_F32, 1, NULL, 0, err, sizeof err), 0);
    for (int i = 0; i < 6; i++)
        assert_true(other.features[i] == (float)u8[i]);
    data_free(&other);
    data_free(&di);
    /* IDX pixels as float32: the values, and the IDX checksum of the file's bytes */
    const DataSource sidx = {good_images_file(), good_labels_file(), "", "", DATA_FORMAT_AUTO, 0};
    Dataset a, b;
    assert_int_equal(data_read_into(&a, &sidx, 0, DATA_U8, 1, NULL, 0, err, sizeof err), 0);
    assert_int_equal(data_read_into(&b, &sidx, 0, DATA_F32, 1, NULL, 0, err, sizeof err), 0);
    assert_int_equal(a.crc, b.crc);
    for (size_t i = 0; i < a.n * a.d; i++)
        assert_true(b.features[i] == (float)a.images[i]);
    data_free(&a);
    data_free(&b);
    /* no labels (predict) */
    const DataSource nolab = {f64, NULL, "/X", "/y", DATA_FORMAT_AUTO, 0};
    assert_int_equal(data_read_into(&other, &nolab, 0, DATA_F32, 1, NULL, 0, err, sizeof err), 0);
    assert_null(other.labels);
    data_free(&other);
    const DataSource optional = {f64, f64, "/X", "/nolabels", DATA_FORMAT_AUTO, 1};
    assert_int_equal(data_read_into(&other, &optional, 0, DATA_F32, 1, NULL, 0, err, sizeof err),
                     0);
    assert_null(other.labels);
    data_free(&other);
    data_free(&ds);
}

/* Each bad input: -1, one line naming the file, the dataset and the index. */
static void h5_fails(const char *path, int classes, const char *want)
{
    char err[DATA_ERR_MAX];
    Dataset ds;
    memset(&ds, 0xAB, sizeof ds);
    assert_int_equal(data_load(&ds, path, path, classes, err, sizeof err), -1);
    if (strncmp(err, path, strlen(path)) != 0 || !strstr(err, want) || strchr(err, '\n'))
        fail_msg("got '%s', want '%s: ...%s...'", err, path, want);
    assert_null(ds.labels);
    assert_null(ds.features);
}

static void test_h5_errors(void **state)
{
    (void)state;
    double x[6];
    int64_t y[3];
    memcpy(y, h5_y, sizeof y);
    memcpy(x, h5_x, sizeof x);
    x[3] = NAN;
    h5_fails(write_h5("nan.h5", H5T_IEEE_F64LE, 3, 2, x, H5T_STD_I64LE, y, 1, 0), 0,
             "dataset /X: value nan at sample index 1, feature 1 is not finite");
    memcpy(x, h5_x, sizeof x);
    x[4] = 1e39;
    h5_fails(write_h5("big.h5", H5T_IEEE_F64LE, 3, 2, x, H5T_STD_I64LE, y, 0, 0), 0,
             "value 1e+39 at sample index 2, feature 0 is beyond float32's range");
    memcpy(x, h5_x, sizeof x);
    y[1] = -3;
    h5_fails(write_h5("neg.h5", H5T_IEEE_F64LE, 3, 2, x, H5T_STD_I8LE, y, 0, 0), 0,
             "dataset /y: label -3 at sample index 1 is negative");
    y[1] = 2;
    h5_fails(write_h5("range.h5", H5T_IEEE_F64LE, 3, 2, x, H5T_STD_I64LE, y, 0, 0), 2,
             "label 2 at sample index 1 is out of range: classes = 2");
    y[1] = 256;
    h5_fails(write_h5("k.h5", H5T_IEEE_F64LE, 3, 2, x, H5T_STD_U16LE, y, 0, 0), 0,
             "label 256 at sample index 1 is out of range: mlp supports at most 256 classes");
    y[1] = 0;
    h5_fails(write_h5("r3.h5", H5T_IEEE_F64LE, 3, 2, x, H5T_STD_I64LE, y, 1, 1), 0,
             "dataset /X has 3 dimensions; the features must have 2");
    h5_fails(write_h5("fy.h5", H5T_IEEE_F64LE, 3, 2, x, H5T_IEEE_F32LE, y, 0, 0), 0,
             "dataset /y: the labels must be integers");
    h5_fails(write_h5("e.h5", H5T_IEEE_F64LE, 0, 2, x, H5T_STD_I64LE, y, 0, 0), 0,
             "dataset /X is empty (shape 0 x 2)");
    h5_fails(write_h5("e2.h5", H5T_IEEE_F64LE, 3, 0, x, H5T_STD_I64LE, y, 0, 0), 0,
             "dataset /X is empty (shape 3 x 0)");
}

static void test_dataset_path(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(data_dataset_path(out, sizeof out, "/", "X"), 0);
    assert_string_equal(out, "/X");
    assert_int_equal(data_dataset_path(out, sizeof out, "/train/", "X"), 0);
    assert_string_equal(out, "/train/X");
    assert_int_equal(data_dataset_path(out, sizeof out, "test", "y"), 0);
    assert_string_equal(out, "test/y");
    assert_int_equal(data_dataset_path(out, sizeof out, "/train", "/abs/X"), 0);
    assert_string_equal(out, "/abs/X");
    assert_int_equal(data_dataset_path(out, 5, "/train", "X"), -1);
    assert_int_equal(data_format_parse("hdf5"), DATA_FORMAT_HDF5);
    assert_int_equal(data_format_parse("idx"), DATA_FORMAT_IDX);
    assert_int_equal(data_format_parse("auto"), DATA_FORMAT_AUTO);
    assert_int_equal(data_format_parse("csv"), -1);
}

/* Against a plain long-double two-pass computation; a constant feature gets std 1. */
static void test_standardize(void **state)
{
    (void)state;
    enum { N = 7, D = 3 };
    float x[N * D];
    for (int i = 0; i < N; i++) {
        x[i * D + 0] = (float)(i * i) * 0.37f - 2.0f;
        x[i * D + 1] = 4.5f;                        /* constant */
        x[i * D + 2] = (float)(1e6 + i * 0.125);
    }
    double mean[D], sd[D];
    data_standardize_stats(x, NULL, N, D, mean, sd);
    for (int j = 0; j < D; j++) {
        long double m = 0, v = 0;
        for (int i = 0; i < N; i++)
            m += x[i * D + j];
        m /= N;
        for (int i = 0; i < N; i++)
            v += (x[i * D + j] - m) * (x[i * D + j] - m);
        const double want_sd = j == 1 ? 1.0 : (double)sqrtl(v / N);
        assert_true(fabs(mean[j] - (double)m) <= 1e-12 * fabs((double)m) + 1e-15);
        assert_true(fabs(sd[j] - want_sd) <= 1e-9 * want_sd);
    }
    float y[N * D];
    memcpy(y, x, sizeof x);
    data_standardize_apply(y, N, D, mean, sd);
    for (int i = 0; i < N * D; i++)
        assert_true(y[i] == (float)(((double)x[i] - mean[i % D]) / sd[i % D]));
    for (int i = 0; i < N; i++)
        assert_true(y[i * D + 1] == 0.0f);
    /* the same bits again (a fixed order, nothing else) */
    double mean2[D], sd2[D];
    data_standardize_stats(x, NULL, N, D, mean2, sd2);
    assert_memory_equal(mean, mean2, sizeof mean);
    assert_memory_equal(sd, sd2, sizeof sd);
    /* rows marked by skip count for nothing: the same bits as the kept rows alone */
    const uint8_t skip[N] = {0, 1, 0, 0, 1, 1, 0};
    float kept[N * D];
    size_t nk = 0;
    for (int i = 0; i < N; i++)
        if (!skip[i])
            memcpy(kept + D * nk++, x + i * D, D * sizeof *x);
    double mean3[D], sd3[D], mean4[D], sd4[D];
    data_standardize_stats(x, skip, N, D, mean3, sd3);
    data_standardize_stats(kept, NULL, nk, D, mean4, sd4);
    assert_memory_equal(mean3, mean4, sizeof mean3);
    assert_memory_equal(sd3, sd4, sizeof sd3);
    assert_true(mean3[0] != mean[0] && sd3[2] != sd[2]);
}

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mlp-test-data-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_plain),
        cmocka_unit_test(test_good_gzip),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_truncated_payload),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_label_out_of_range),
        cmocka_unit_test(test_zero_dims),
        cmocka_unit_test(test_size_overflow),
        cmocka_unit_test(test_corrupt_gzip),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_not_regular),
        cmocka_unit_test(test_short_header),
        cmocka_unit_test(test_small_err_buffer),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_crc),
        cmocka_unit_test(test_load_into),
        cmocka_unit_test(test_checksum_only),
        cmocka_unit_test(test_block_sizes),
        cmocka_unit_test(test_mnist),
        cmocka_unit_test(test_order_is_permutation),
        cmocka_unit_test(test_order_deterministic),
        cmocka_unit_test(test_order_pinned),
        cmocka_unit_test(test_h5_types),
        cmocka_unit_test(test_h5_errors),
        cmocka_unit_test(test_dataset_path),
        cmocka_unit_test(test_standardize),
    };
    return cmocka_run_group_tests_name("data", tests, make_tmpdir, remove_tmpdir);
}
