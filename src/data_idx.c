/* data_idx: the IDX reader (plain or gzip through zlib), one DataReader (data_reader.h).
 *
 * IDX layout (big-endian header, then the raw payload):
 *   images  0x00000803  count rows cols  then count*rows*cols u8 pixels
 *   labels  0x00000801  count            then count u8 labels
 * The header is trusted for nothing: every field is checked, and the payload must be
 * exactly as long as the header says (a short file and trailing bytes are both errors),
 * because a silently short read would train on zeros and a mismatched pair of files would
 * train on wrong labels. Both headers are read and compared before the big pixel buffer
 * is allocated, so a wrong pairing fails fast and cheaply; data_probe stops there, so that
 * a caller can size a buffer of its own (a node-shared one) and read into it later.
 */
#include "data_reader.h"

#include "fsafe.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define DATA_MAGIC_IMAGES 0x00000803u /* type 0x08 = u8, 3 dimensions */
#define DATA_MAGIC_LABELS 0x00000801u /* type 0x08 = u8, 1 dimension */
#define DATA_GZ_BUFFER (1u << 18)      /* zlib's default 8 KiB makes 47 MB reads syscall-bound */
#define DATA_READ_CHUNK (1u << 30)     /* gzread takes an unsigned length and returns an int */
#define DATA_BLOCK (1u << 20)          /* payloads are read (and checksummed) 1 MiB at a time */
#define DATA_GZ_MAX_RATIO 1032u        /* deflate never expands one input byte to more */


/* One open IDX file: what its header announced and how big its payload must be. */
typedef struct {
    gzFile gz;
    const char *path;
    const char *what;  /* "pixel" or "label": used in messages */
    char gzname[32];   /* the name zlib gives the descriptor ("<fd:N>") and puts in
                        * front of its messages */
    uint32_t dims[3];  /* count, rows, cols (images) or count (labels) */
    size_t payload;    /* bytes after the header, from the dims, overflow-checked */
} DataIdx;

/* Every message has the one shape `PATH: what is wrong` so that a user sees at once which
 * file to look at; err may be NULL when the caller only wants the status. */
static uint32_t data_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* gzerror prefixes its text with the name zlib knows the file by ("<fd:N>" after
 * gzdopen); we print the path ourselves, so strip it to keep the message to one mention of
 * the file. */
static const char *data_gz_text(gzFile gz, const char *name, int *errnum)
{
    const char *msg = gzerror(gz, errnum);
    size_t plen = strlen(name);
    if (msg != NULL && strncmp(msg, name, plen) == 0 && msg[plen] == ':' && msg[plen + 1] == ' ')
        msg += plen + 2;
    return msg != NULL ? msg : "unknown zlib error";
}

/* path, only if it is a regular file (fsafe_open_regular: a FIFO cannot hang the start,
 * and zlib never sees O_NONBLOCK). Returns the descriptor, or -1 with the message written. */
static int data_open_regular(const char *path, struct stat *st, char *err, size_t errlen)
{
    char why[256];
    int fd = fsafe_open_regular(path, st, why, sizeof why);
    if (fd < 0)
        data_fail(err, errlen, path, "cannot %s: %s", fd == -1 ? "open" : "read", why);
    return fd < 0 ? -1 : fd;
}

/* Read up to len bytes into buf, in chunks gzread can take. *got is what arrived.
 * Returns -1 (message written) on a hard read or decompression error, 0 otherwise; a short
 * *got with 0 means the data ended, and *ended_early tells whether the gzip stream itself
 * was cut (zlib reports that as Z_BUF_ERROR rather than as a hard error). */
static int data_gz_read(const DataIdx *f, void *buf, size_t len, size_t *got, int *ended_early,
                        char *err, size_t errlen)
{
    unsigned char *p = buf;
    *got = 0;
    *ended_early = 0;
    while (*got < len) {
        size_t want = len - *got;
        if (want > DATA_READ_CHUNK)
            want = DATA_READ_CHUNK;
        int r = gzread(f->gz, p + *got, (unsigned)want);
        if (r > 0)
            *got += (size_t)r;
        int errnum = Z_OK;
        const char *msg = data_gz_text(f->gz, f->gzname, &errnum);
        if (r < 0 || (errnum != Z_OK && errnum != Z_BUF_ERROR)) {
            if (errnum == Z_ERRNO) /* zlib's text is then strerror's, taken when it failed */
                data_fail(err, errlen, f->path, "cannot read: %s", msg);
            else
                data_fail(err, errlen, f->path, "cannot decompress (corrupt gzip data?): %s", msg);
            return -1;
        }
        if (errnum == Z_BUF_ERROR)
            *ended_early = 1;
        if ((size_t)r < want)
            break;
    }
    return 0;
}

static void data_idx_close(DataIdx *f)
{
    /* gzclose on a read handle only releases memory; read errors were caught by gzread. */
    if (f->gz != NULL)
        gzclose(f->gz);
    f->gz = NULL;
}

/* Open path, read and check its header (magic, dimensions, payload size). On success the
 * handle is positioned at the first payload byte. On failure it is closed. */
static int data_idx_open(DataIdx *f, const char *path, uint32_t magic, char *err, size_t errlen)
{
    const int ndims = magic == DATA_MAGIC_IMAGES ? 3 : 1;
    const char *kind = ndims == 3 ? "image" : "label";
    memset(f, 0, sizeof *f);
    f->path = path;
    f->what = ndims == 3 ? "pixel" : "label";

    struct stat st;
    const int fd = data_open_regular(path, &st, err, errlen);
    if (fd < 0)
        return -1;
    snprintf(f->gzname, sizeof f->gzname, "<fd:%d>", fd);
    f->gz = gzdopen(fd, "rb");
    if (f->gz == NULL) {
        /* gzdopen fails only when it cannot allocate its state; the descriptor is ours */
        data_fail(err, errlen, path, "cannot open: out of memory");
        close(fd);
        return -1;
    }
    if (gzbuffer(f->gz, DATA_GZ_BUFFER) != 0) {
        data_fail(err, errlen, path, "cannot set the zlib buffer size");
        goto fail;
    }

    /* The magic is read and checked on its own first: a file of the wrong kind (labels given
     * as images, say) is often shorter than the header we expect, and "wrong magic" is the
     * message that tells the user what happened. */
    unsigned char hdr[16];
    const size_t hdrlen = 4 + 4 * (size_t)ndims;
    size_t got;
    int early;
    if (data_gz_read(f, hdr, 4, &got, &early, err, errlen) != 0)
        goto fail;
    if (got == 4) {
        const uint32_t found = data_be32(hdr);
        if (found != magic) {
            /* Name the likely mistake for the common cases: the files given in the wrong
             * order, and an IDX file of another element type. */
            const uint32_t other = magic == DATA_MAGIC_IMAGES ? DATA_MAGIC_LABELS : DATA_MAGIC_IMAGES;
            const char *hint = "";
            if (found == other)
                hint = magic == DATA_MAGIC_IMAGES
                           ? " (this is an IDX label file: images and labels swapped?)"
                           : " (this is an IDX image file: images and labels swapped?)";
            else if ((found >> 16) == 0 && ((found >> 8) & 0xFF) != 0x08)
                hint = " (an IDX file of another element type; only unsigned bytes, type 0x08, are supported)";
            else if ((found >> 16) != 0)
                hint = " (not an IDX file)";
            data_fail(err, errlen, path, "bad magic number 0x%08X, expected 0x%08X for an IDX u8 %s file%s",
                      (unsigned)found, (unsigned)magic, kind, hint);
            goto fail;
        }
        size_t more;
        if (data_gz_read(f, hdr + 4, hdrlen - 4, &more, &early, err, errlen) != 0)
            goto fail;
        got += more;
    }
    if (got < hdrlen) {
        data_fail(err, errlen, path,
                  "truncated header: an IDX %s file starts with a %zu-byte header, found %zu bytes%s",
                  kind, hdrlen, got, early ? " (the gzip stream ends early)" : "");
        goto fail;
    }

    static const char *const names[3] = {"count", "rows", "cols"};
    size_t payload = 1;
    for (int i = 0; i < ndims; i++) {
        f->dims[i] = data_be32(hdr + 4 + 4 * i);
        if (f->dims[i] == 0) {
            if (i == 0)
                data_fail(err, errlen, path, "empty: the header announces 0 %ss", kind);
            else
                data_fail(err, errlen, path, "the header gives %s = 0: an image has no pixels", names[i]);
            goto fail;
        }
        /* The product must fit a size_t: it sizes the allocation and the read. */
        if (payload > SIZE_MAX / f->dims[i]) {
            data_fail(err, errlen, path,
                      "header dimensions %u x %u x %u give more %s bytes than this machine can address",
                      (unsigned)f->dims[0], (unsigned)f->dims[1], (unsigned)f->dims[2], f->what);
            goto fail;
        }
        payload *= f->dims[i];
    }
    /* The caller allocates `payload` bytes before reading them, so a corrupt or cut header
     * in a tiny file must not decide that size alone (found by fuzzing: a 40-byte file
     * asked malloc for 6 TB and was reported as out of memory, not as truncated). Bound it
     * by what the file can hold: the bytes after the header if plain, and 1032 bytes per
     * byte if gzip (deflate's largest expansion). The exact length is checked on reading. */
    const size_t size = (size_t)st.st_size; /* a regular file: data_open_regular */
    if (gzdirect(f->gz)) {
        const size_t after = size > hdrlen ? size - hdrlen : 0;
        if (payload > after) {
            data_fail(err, errlen, path,
                      "truncated: expected %zu bytes of %s data after the header, found %zu",
                      payload, f->what, after);
            goto fail;
        }
    } else if (payload / DATA_GZ_MAX_RATIO > size) {
        data_fail(err, errlen, path,
                  "truncated: the header announces %zu bytes of %s data, more than a "
                  "%zu-byte gzip file can hold", payload, f->what, size);
        goto fail;
    }
    f->payload = payload;
    return 0;

fail:
    data_idx_close(f);
    return -1;
}

/* Read exactly f->payload bytes and require the file to end right there. buf == NULL
 * streams them through one scratch block instead (checksum only, or converted into fout
 * when fout is not NULL). A block at a time either
 * way, so that crc (when not NULL) is updated while the block is still in cache, and so
 * that both ways meet every error at the same byte with the same message. */
static int data_idx_payload(DataIdx *f, uint8_t *buf, float *fout, uLong *crc, char *err,
                            size_t errlen)
{
    const size_t block = f->payload < DATA_BLOCK ? f->payload : DATA_BLOCK;
    uint8_t *scratch = NULL;
    if (buf == NULL && (scratch = malloc(block)) == NULL) {
        data_fail(err, errlen, f->path, "cannot allocate %zu bytes to read the %s data", block,
                  f->what);
        return -1;
    }
    int rc = -1, early = 0;
    size_t total = 0;
    while (total < f->payload) {
        const size_t want = f->payload - total < block ? f->payload - total : block;
        uint8_t *dst = buf != NULL ? buf + total : scratch;
        size_t got;
        if (data_gz_read(f, dst, want, &got, &early, err, errlen) != 0)
            goto out;
        if (crc != NULL)
            *crc = crc32(*crc, dst, (uInt)got); /* got <= DATA_BLOCK fits a uInt */
        if (fout != NULL)   /* float32 wanted: each byte as its value, exactly */
            for (size_t i = 0; i < got; i++)
                fout[total + i] = (float)dst[i];
        total += got;
        if (got < want)
            break;
    }
    if (total < f->payload) {
        data_fail(err, errlen, f->path,
                  "truncated: expected %zu bytes of %s data after the header, found %zu%s", f->payload,
                  f->what, total, early ? " (the gzip stream ends early)" : "");
        goto out;
    }

    /* Count every trailing byte: "N bytes too many" tells a user more than "too long". */
    unsigned char extra[4096];
    size_t trailing = 0, n;
    do {
        if (data_gz_read(f, extra, sizeof extra, &n, &early, err, errlen) != 0)
            goto out;
        trailing += n;
    } while (n == sizeof extra);
    if (trailing > 0) {
        data_fail(err, errlen, f->path,
                  "%zu trailing bytes after the %zu bytes of %s data the header announces", trailing,
                  f->payload, f->what);
        goto out;
    }
    rc = 0;
out:
    free(scratch);
    return rc;
}

/* Open both files and check each header and that they pair up. On failure both are closed. */
static int data_open_pair(DataIdx *img, DataIdx *lab, const char *images_path,
                          const char *labels_path, char *err, size_t errlen)
{
    if (data_idx_open(img, images_path, DATA_MAGIC_IMAGES, err, errlen) != 0)
        return -1;
    if (labels_path == NULL)
        return 0;   /* features only (mlp predict) */
    if (data_idx_open(lab, labels_path, DATA_MAGIC_LABELS, err, errlen) != 0) {
        data_idx_close(img);
        return -1;
    }
    if (img->dims[0] != lab->dims[0]) {
        data_fail(err, errlen, images_path, "holds %u images but %s holds %u labels: not a pair",
                  (unsigned)img->dims[0], labels_path, (unsigned)lab->dims[0]);
        data_idx_close(img);
        data_idx_close(lab);
        return -1;
    }
    return 0;
}


static int data_idx_sniff(const char *path)
{
    (void)path;
    return 1;   /* the fallback: whatever is not another format is read as IDX */
}

static int data_idx_probe(DataShape *shape, const DataSource *src, char *err, size_t errlen)
{
    DataIdx img = {0}, lab = {0};
    if (data_open_pair(&img, &lab, src->x_path, src->y_path, err, errlen) != 0)
        return -1;
    shape->n = img.dims[0];
    shape->rows = img.dims[1];
    shape->cols = img.dims[2];
    shape->d = (size_t)img.dims[1] * img.dims[2]; /* cannot overflow: img.payload = n * d fit */
    shape->native = DATA_U8;
    snprintf(shape->stored, sizeof shape->stored, "u8");
    data_idx_close(&img);
    data_idx_close(&lab);
    return 0;
}

static int data_idx_read(Dataset *ds, const DataSource *src, int classes, DataType type,
                         int own, void *x, size_t bytes, char *err, size_t errlen)
{
    const char *images_path = src->x_path, *labels_path = src->y_path;
    DataIdx img = {0}, lab = {0};
    if (data_open_pair(&img, &lab, images_path, labels_path, err, errlen) != 0)
        return -1;

    ds->n = img.dims[0];
    ds->rows = img.dims[1];
    ds->cols = img.dims[2];
    ds->d = (size_t)img.dims[1] * img.dims[2]; /* cannot overflow: img.payload = n * d fit */
    ds->type = type;
    const size_t elem = data_type_size(type);
    uLong crc = crc32(0L, Z_NULL, 0);

    /* Labels first: small, and a bad label is caught before 47 MB of pixels are read. */
    if (labels_path != NULL) {
        ds->labels = malloc(lab.payload);
        if (ds->labels == NULL) {
            data_fail(err, errlen, labels_path, "cannot allocate %zu bytes for the labels",
                      lab.payload);
            goto fail;
        }
        if (data_idx_payload(&lab, ds->labels, NULL, NULL, err, errlen) != 0)
            goto fail;
        data_idx_close(&lab);

        int maxlabel = 0;
        for (size_t i = 0; i < ds->n; i++) {
            const int y = ds->labels[i];
            if (classes > 0 && y >= classes) {
                data_fail(err, errlen, labels_path,
                          "label %d at sample index %zu is out of range: classes = %d (labels must be 0..%d)",
                          y, i, classes, classes - 1);
                goto fail;
            }
            if (y > maxlabel)
                maxlabel = y;
        }
        ds->classes = classes > 0 ? classes : maxlabel + 1;
    }

    void *dst = NULL;
    if (img.payload > SIZE_MAX / elem) {
        data_fail(err, errlen, images_path, "%zu pixels as float32 overflow this machine's sizes",
                  img.payload);
        goto fail;
    }
    if (own) {
        dst = malloc(img.payload * elem);
        if (dst == NULL) {
            data_fail(err, errlen, images_path, "cannot allocate %zu bytes for the pixels",
                      img.payload * elem);
            goto fail;
        }
        ds->owns_images = 1;
    } else if (x != NULL) {
        if (bytes != img.payload * elem) {
            data_fail(err, errlen, images_path,
                      "the header announces %zu bytes of pixel data but the buffer for them holds "
                      "%zu (did the file change while it was being read?)", img.payload * elem,
                      bytes);
            goto fail;
        }
        dst = x;
    }
    if (type == DATA_U8)
        ds->images = dst;
    else
        ds->features = dst;
    /* The checksum covers the file's pixels then the labels, whole files' worth (a
     * train_limit applies later), so that every rank can compare what it read with rank 0. */
    if (data_idx_payload(&img, type == DATA_U8 ? ds->images : NULL, ds->features, &crc, err,
                         errlen) != 0)
        goto fail;
    data_idx_close(&img);
    if (ds->labels != NULL)
        crc = crc32(crc, ds->labels, (uInt)lab.payload); /* n <= 2^32 - 1 */
    ds->crc = (uint32_t)crc;
    return 0;

fail:
    data_idx_close(&img);
    data_idx_close(&lab);
    return -1;
}

const DataReader data_reader_idx = {"idx", DATA_FORMAT_IDX, data_idx_sniff, data_idx_probe,
                                    data_idx_read};
