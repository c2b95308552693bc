/* fuzz_idx: data_load on an arbitrary pair of IDX files, plain or gzip.
 *
 * Input: a 3-byte header, then the label file, then the image file.
 *   byte 0   flags: bit 0 gzip the image file, bit 1 gzip the label file (with zlib, so the
 *            fuzzer's mutations reach the IDX parser behind a valid gzip stream), bit 2
 *            classes = 10 (otherwise 0: derived from the labels)
 *   byte 1-2 length of the label file, little-endian (clipped to what is there)
 * Unflagged parts are written as they are, so a corpus entry holding gzip bytes fuzzes
 * the gzip reader itself.
 *
 * Checked beyond "no crash": the one-line error contract; on success every pixel and
 * label is readable, labels are below classes, and data_epoch_order gives a permutation;
 * data_probe + data_load_into (into a buffer, and checksum only) give the same status, the
 * same message and the same CRC-32 as data_load.
 */
#include "fuzz.h"

#include "data.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define FUZZ_IDX_HEADER 3
#define FUZZ_IDX_ORDER_MAX 4096  /* samples checked by data_epoch_order per input */

/* data[0..size) as one gzip member (zlib's deflate with the gzip wrapper), written to f. */
static void fuzz_idx_put_gzip(FuzzFile *f, const char *name, const uint8_t *data, size_t size)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        fuzz_fail("deflateInit2 failed");
    uLong cap = deflateBound(&zs, (uLong)size);
    unsigned char *out = malloc(cap);
    if (!out)
        fuzz_fail("out of memory for %lu gzip bytes", (unsigned long)cap);
    zs.next_in = (Bytef *)(uintptr_t)data;  /* zlib's API is not const-correct */
    zs.avail_in = (uInt)size;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
        fuzz_fail("deflate did not finish in deflateBound's %lu bytes", (unsigned long)cap);
    fuzz_file_put(f, name, out, (size_t)zs.total_out);
    deflateEnd(&zs);
    free(out);
}

static void fuzz_idx_put(FuzzFile *f, const char *name, const uint8_t *data, size_t size,
                         int gzip)
{
    if (gzip)
        fuzz_idx_put_gzip(f, name, data, size);
    else
        fuzz_file_put(f, name, data, size);
}

static void fuzz_idx_check(const Dataset *ds, int classes)
{
    if (ds->n == 0 || ds->d == 0 || ds->d != (size_t)ds->rows * ds->cols)
        fuzz_fail("data_load accepted n=%zu d=%zu rows=%u cols=%u", ds->n, ds->d,
                  (unsigned)ds->rows, (unsigned)ds->cols);
    if (ds->classes < 1 || ds->classes > 256 || (classes > 0 && ds->classes != classes))
        fuzz_fail("data_load gave classes=%d (asked for %d)", ds->classes, classes);
    /* Touch every byte: a buffer shorter than n*d is an AddressSanitizer report here. */
    unsigned sum = 0;
    for (size_t i = 0; i < ds->n * ds->d; i++)
        sum += ds->images[i];
    for (size_t i = 0; i < ds->n; i++) {
        if (ds->labels[i] >= ds->classes)
            fuzz_fail("label %u at %zu not below classes=%d", ds->labels[i], i, ds->classes);
        sum += ds->labels[i];
    }
    (void)sum;

    if (ds->n > FUZZ_IDX_ORDER_MAX)
        return;
    uint32_t order[FUZZ_IDX_ORDER_MAX];
    unsigned char seen[FUZZ_IDX_ORDER_MAX] = {0};
    data_epoch_order(order, ds->n, 42, ds->n);
    for (size_t i = 0; i < ds->n; i++) {
        if (order[i] >= ds->n || seen[order[i]])
            fuzz_fail("data_epoch_order(n=%zu) is not a permutation at %zu", ds->n, i);
        seen[order[i]] = 1;
    }
}

/* The other ways to load must agree with data_load's status rc, message want and CRC. */
static void fuzz_idx_modes(const char *images, const char *labels, int classes, int rc,
                           const char *want, uint32_t crc)
{
    char err[DATA_ERR_MAX] = "";
    DataShape shape;
    Dataset ds;
    if (data_probe(&shape, images, labels, err, sizeof err) != 0) {
        if (rc == 0 || strcmp(err, want) != 0)
            fuzz_fail("data_probe said \"%s\", data_load %d \"%s\"", err, rc, want);
        return;
    }
    uint8_t *buf = malloc(shape.n * shape.d);  /* bounded by the file size (data_idx_open) */
    if (!buf)
        fuzz_fail("out of memory for %zu pixels", shape.n * shape.d);
    for (int checksum_only = 0; checksum_only < 2; checksum_only++) {
        int r = data_load_into(&ds, images, labels, classes, checksum_only ? NULL : buf,
                               shape.n * shape.d, err, sizeof err);
        if (r != rc || (rc != 0 && strcmp(err, want) != 0) || (rc == 0 && ds.crc != crc))
            fuzz_fail("data_load_into (%s) gave %d \"%s\" crc %08x; data_load %d \"%s\" %08x",
                      checksum_only ? "checksum only" : "buffer", r, err, (unsigned)ds.crc, rc,
                      want, (unsigned)crc);
        data_free(&ds);
    }
    free(buf);
}

int fuzz_idx(const uint8_t *data, size_t size)
{
    static FuzzFile images = FUZZ_FILE_INIT, labels = FUZZ_FILE_INIT;
    if (size < FUZZ_IDX_HEADER)
        return 0;
    const unsigned flags = data[0];
    size_t label_len = (size_t)data[1] | (size_t)data[2] << 8;
    const uint8_t *p = data + FUZZ_IDX_HEADER;
    size_t rest = size - FUZZ_IDX_HEADER;
    if (label_len > rest)
        label_len = rest;
    fuzz_idx_put(&labels, "labels", p, label_len, flags & 2);
    fuzz_idx_put(&images, "images", p + label_len, rest - label_len, flags & 1);

    const int classes = flags & 4 ? 10 : 0;
    Dataset ds;
    char err[DATA_ERR_MAX] = "";
    int rc = data_load(&ds, images.path, labels.path, classes, err, sizeof err);
    fuzz_check_err("data_load", rc, err, sizeof err);
    if (rc == 0)
        fuzz_idx_check(&ds, classes);
    else if (ds.images || ds.labels || ds.n)
        fuzz_fail("data_load failed but left memory in the dataset");
    fuzz_idx_modes(images.path, labels.path, classes, rc, err, rc == 0 ? ds.crc : 0);
    data_free(&ds);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_idx(data, size);
}
#endif
