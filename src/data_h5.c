/* data_h5: the HDF5 reader, one DataReader (data_reader.h).
 *
 * Layout: features a 2-D dataset (N, d) of any integer type of 1 to 8 bytes or float32 /
 * float64, in any storage (contiguous, chunked, compressed: HDF5 expands it while reading);
 * labels a 1-D integer dataset (N). uint8 features are held as they are (1/255 in the
 * kernels) unless the caller asks for float32; every other type is converted to float32
 * here, once, a block of rows at a time (through double, so that a float64 beyond float32's
 * range is reported, never silently turned into infinity), and each value must be finite.
 * The file is the user's, not ours: nothing in it is trusted, HDF5's own error stack is
 * silenced and its innermost message carried on our one line.
 */
#include "data_reader.h"

#include "fsafe.h"

#include <float.h>
#include <hdf5.h>
#include <hdf5_hl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define DATA_H5_BLOCK (1u << 20)   /* bytes of doubles per block of rows read */
#define DATA_H5_DETAIL 256

/* The HDF5 signature; the superblock may also sit after a user block of 512, 1024, ...
 * bytes. */
static const unsigned char data_h5_magic[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

static int data_h5_sniff(const char *path)
{
    char why[256];
    struct stat st;
    const int fd = fsafe_open_regular(path, &st, why, sizeof why);
    if (fd < 0)
        return 0;
    int found = 0;
    for (off_t at = 0; !found && at <= 8192 && at + 8 <= st.st_size; at = at ? 2 * at : 512) {
        unsigned char head[8];
        found = pread(fd, head, sizeof head, at) == (ssize_t)sizeof head &&
                memcmp(head, data_h5_magic, sizeof head) == 0;
    }
    close(fd);
    return found;
}

static herr_t data_h5_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    if (n == 0 && e && e->desc)
        snprintf((char *)data, DATA_H5_DETAIL, "%s", e->desc);
    return 0;
}

/* "PATH: WHAT (innermost HDF5 message)", right after the failed call. */
__attribute__((format(printf, 4, 5)))
static void data_h5_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
    char what[512], detail[DATA_H5_DETAIL] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, data_h5_walk, detail) < 0)
        detail[0] = '\0';
    for (char *c = detail; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            *c = ' ';
    if (detail[0])
        data_fail(err, errlen, path, "%s (HDF5: %s)", what, detail);
    else
        data_fail(err, errlen, path, "%s", what);
}

/* File access properties for every open of a data file: the same for all (HDF5 refuses to
 * open a file twice with different close degrees). STRONG: closing the file closes
 * anything of it still open. Best-effort locking, as for checkpoints (Lustre, NFS). */
static hid_t data_h5_fapl(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0)
        return H5I_INVALID_HID;
    if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0
#if H5_VERSION_GE(1, 10, 7) && !(H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 12 && H5_VERS_RELEASE == 0)
        || H5Pset_file_locking(fapl, true, true) < 0
#endif
    ) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

/* One open dataset of a file, and what its header says. */
typedef struct {
    const char *path, *name;
    hid_t file, dset, space, type;
    int rank;
    hsize_t dims[2];
    H5T_class_t cls;
    size_t size;        /* bytes per element in the file */
    H5T_sign_t sign;
} DataH5Set;

static void data_h5_close(DataH5Set *s)
{
    if (s->type >= 0)
        H5Tclose(s->type);
    if (s->space >= 0)
        H5Sclose(s->space);
    if (s->dset >= 0)
        H5Dclose(s->dset);
    if (s->file >= 0)
        H5Fclose(s->file);
    s->file = s->dset = s->space = s->type = H5I_INVALID_HID;
}

static const char *data_h5_type_name(const DataH5Set *s)
{
    if (s->cls == H5T_FLOAT)
        return s->size == 4 ? "float32" : s->size == 8 ? "float64" : "float";
    static const char *const u[] = {"uint8", "uint16", "uint32", "uint64"};
    static const char *const i[] = {"int8", "int16", "int32", "int64"};
    const int k = s->size == 1 ? 0 : s->size == 2 ? 1 : s->size == 4 ? 2 : 3;
    return s->sign == H5T_SGN_NONE ? u[k] : i[k];
}

/* An integer type's bits must lie within its bytes, and a float type must be IEEE 754
 * binary32 or binary64 (either byte order). A file may declare, say, a 1-byte integer of
 * 145 bits of precision: HDF5 converts it to uint8 as 255 and to double as 7e41, so the
 * file would read as different data held as uint8 and as float32. Integers of fewer bits
 * than their bytes hold (12-bit data in a uint16) are read as HDF5 converts them. */
static int data_h5_check_type(const DataH5Set *s, const char *what, char *err, size_t errlen)
{
    if (s->cls == H5T_INTEGER) {
        const size_t bits = H5Tget_precision(s->type);
        const int from = H5Tget_offset(s->type);
        if (bits == 0 || from < 0 || bits + (size_t)from > 8 * s->size) {
            data_fail(err, errlen, s->path, "dataset %s: the %s' integer type declares %zu bits "
                      "of precision from bit %d in %zu byte%s: not a valid type", s->name,
                      what, bits, from, s->size, s->size == 1 ? "" : "s");
            return -1;
        }
        return 0;
    }
    const hid_t ieee[] = {H5T_IEEE_F32LE, H5T_IEEE_F32BE, H5T_IEEE_F64LE, H5T_IEEE_F64BE};
    for (size_t i = 0; i < sizeof ieee / sizeof ieee[0]; i++)
        if (H5Tequal(s->type, ieee[i]) > 0)
            return 0;
    data_fail(err, errlen, s->path, "dataset %s: the %s' float type is not IEEE 754 binary32 or "
              "binary64 (its fields or padding differ): store them as float32 or float64",
              s->name, what);
    return -1;
}

/* Values never written read as the fill value or, where there is none (fill time 'never',
 * or the fill value declared undefined), as whatever the caller's buffer held: HDF5 leaves
 * it untouched. A dataset without fill values must therefore be stored in full: contiguous
 * or compact with its storage allocated, chunked with every chunk stored (counted, since
 * HDF5's space status compares bytes, which compression and edge chunks change); virtual
 * ones are refused. Values kept in external files (H5Pset_external: any path, a FIFO or a
 * device included) are refused outright, as for checkpoints. The readers zero their
 * buffers before every read all the same. */
static int data_h5_check_stored(const DataH5Set *s, int rank, const char *what, char *err,
                                size_t errlen)
{
    const hid_t dcpl = H5Dget_create_plist(s->dset);
    const H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    const int external = dcpl >= 0 ? H5Pget_external_count(dcpl) : -1;
    H5D_fill_time_t when;
    H5D_fill_value_t fill;
    hsize_t chunk[2] = {0, 0};
    const int ok = layout >= 0 && external >= 0 && H5Pget_fill_time(dcpl, &when) >= 0 &&
                   H5Pfill_value_defined(dcpl, &fill) >= 0 &&
                   (layout != H5D_CHUNKED || H5Pget_chunk(dcpl, rank, chunk) == rank);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (!ok) {
        data_h5_fail(err, errlen, s->path, "cannot read the storage properties of dataset %s",
                     s->name);
        return -1;
    }
    if (external > 0) {
        data_fail(err, errlen, s->path, "dataset %s (the %s) keeps its values in %d external "
                  "file%s: not read by mlp (h5repack copies them into the file)", s->name,
                  what, external, external == 1 ? "" : "s");
        return -1;
    }
    if (when != H5D_FILL_TIME_NEVER && fill != H5D_FILL_VALUE_UNDEFINED)
        return 0;
    char missing[96] = "";
    if (layout == H5D_CHUNKED) {
        hsize_t want = 1, have = 0;
        for (int j = 0; j < rank; j++)
            if (chunk[j] == 0 ||
                __builtin_mul_overflow(want, (s->dims[j] + chunk[j] - 1) / chunk[j], &want))
                want = HSIZE_UNDEF;
        /* (the dataspace, all selected: HDF5 1.10.8 fails on H5S_ALL here) */
        if (H5Dget_num_chunks(s->dset, s->space, &have) < 0) {
            data_h5_fail(err, errlen, s->path, "cannot count the stored chunks of dataset %s",
                         s->name);
            return -1;
        }
        if (have < want)
            snprintf(missing, sizeof missing, "%llu of its %llu chunks stored",
                     (unsigned long long)have, (unsigned long long)want);
    } else if (layout == H5D_CONTIGUOUS || layout == H5D_COMPACT) {
        H5D_space_status_t status;
        if (H5Dget_space_status(s->dset, &status) < 0 || status != H5D_SPACE_STATUS_ALLOCATED)
            snprintf(missing, sizeof missing, "no storage allocated");
    } else {
        snprintf(missing, sizeof missing, "a virtual layout (values in other files)");
    }
    if (missing[0]) {
        data_fail(err, errlen, s->path, "dataset %s (the %s) has no fill values (%s) and %s: "
                  "values never written are undefined", s->name, what,
                  when == H5D_FILL_TIME_NEVER ? "fill time 'never'" : "fill value undefined",
                  missing);
        return -1;
    }
    return 0;
}

/* Open dataset `name` of file `path` and check its shape: `rank` dimensions, none 0, and an
 * integer (labels: integers only) or floating-point type. what: "features" or "labels". */
static int data_h5_open(DataH5Set *s, const char *path, const char *name, int rank,
                        const char *what, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    s->name = name;
    s->file = s->dset = s->space = s->type = H5I_INVALID_HID;
    char why[256];
    struct stat st;
    const int fd = fsafe_open_regular(path, &st, why, sizeof why);
    if (fd < 0) {
        data_fail(err, errlen, path, "cannot %s: %s", fd == -1 ? "open" : "read", why);
        return -1;
    }
    close(fd);
    hid_t fapl = data_h5_fapl();
    if (fapl < 0) {
        data_h5_fail(err, errlen, path, "cannot create file access properties");
        return -1;
    }
    s->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (s->file < 0) {
        data_h5_fail(err, errlen, path, "cannot open as HDF5");
        return -1;
    }
    if (name[0] == '\0' || H5LTpath_valid(s->file, name, true) <= 0) {
        data_fail(err, errlen, path, "no dataset '%s' for the %s (data.x_dataset, "
                  "data.y_dataset and the data.*_group keys name them)", name, what);
        goto fail;
    }
    hid_t obj = H5Oopen(s->file, name, H5P_DEFAULT);
    const H5I_type_t kind = obj >= 0 ? H5Iget_type(obj) : H5I_BADID;
    if (obj >= 0)
        H5Oclose(obj);
    if (kind != H5I_DATASET) {
        data_fail(err, errlen, path, "'%s' is not a dataset (the %s must be one)", name, what);
        goto fail;
    }
    if ((s->dset = H5Dopen2(s->file, name, H5P_DEFAULT)) < 0 ||
        (s->space = H5Dget_space(s->dset)) < 0 || (s->type = H5Dget_type(s->dset)) < 0) {
        data_h5_fail(err, errlen, path, "cannot open dataset %s", name);
        goto fail;
    }
    s->rank = H5Sget_simple_extent_ndims(s->space);
    if (s->rank < 0 || H5Sget_simple_extent_type(s->space) != H5S_SIMPLE) {
        data_fail(err, errlen, path, "dataset %s is not an array (scalar or null dataspace)",
                  name);
        goto fail;
    }
    if (s->rank != rank) {
        data_fail(err, errlen, path, "dataset %s has %d dimension%s; the %s must have %d (%s)",
                  name, s->rank, s->rank == 1 ? "" : "s", what, rank,
                  rank == 2 ? "samples x features: reshape to (N, d)" : "one label per sample");
        goto fail;
    }
    if (H5Sget_simple_extent_dims(s->space, s->dims, NULL) < 0) {
        data_h5_fail(err, errlen, path, "cannot read the shape of %s", name);
        goto fail;
    }
    s->cls = H5Tget_class(s->type);
    s->size = H5Tget_size(s->type);
    s->sign = s->cls == H5T_INTEGER ? H5Tget_sign(s->type) : H5T_SGN_2;
    const bool integer = s->cls == H5T_INTEGER && s->sign != H5T_SGN_ERROR &&
                         (s->size == 1 || s->size == 2 || s->size == 4 || s->size == 8);
    const bool real = s->cls == H5T_FLOAT && (s->size == 4 || s->size == 8);
    if (!integer && !(real && rank == 2)) {
        data_fail(err, errlen, path, "dataset %s: the %s must be %s", name, what,
                  rank == 2 ? "integers of 1 to 8 bytes or float32/float64"
                            : "integers (of 1 to 8 bytes)");
        goto fail;
    }
    if (data_h5_check_type(s, what, err, errlen) != 0)
        goto fail;
    for (int j = 0; j < rank; j++) {
        if (s->dims[j] == 0) {
            data_fail(err, errlen, path, "dataset %s is empty (shape %llu%s%llu)", name,
                      (unsigned long long)s->dims[0], rank == 2 ? " x " : "",
                      rank == 2 ? (unsigned long long)s->dims[1] : 0ull);
            goto fail;
        }
        if (s->dims[j] > UINT32_MAX) {
            data_fail(err, errlen, path, "dataset %s: dimension %d is %llu; mlp indexes "
                      "samples and features with 32 bits", name, j,
                      (unsigned long long)s->dims[j]);
            goto fail;
        }
    }
    if (data_h5_check_stored(s, rank, what, err, errlen) != 0)
        goto fail;
    if (rank == 1)   /* written out in messages as "(N)" */
        s->dims[1] = 1;
    return 0;

fail:
    data_h5_close(s);
    return -1;
}

/* HDF5 prints its whole error stack to stderr by default; we report one line instead. */
typedef struct {
    bool saved;
    H5E_auto2_t func;
    void *data;
} DataH5Quiet;

static void data_h5_quiet(DataH5Quiet *q)
{
    q->saved = H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data) >= 0;
    (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void data_h5_restore(const DataH5Quiet *q)
{
    if (q->saved)
        (void)H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

/* Whether `name` is a link in the HDF5 file at path (1 when the file does not open: the
 * caller's open of it then says why). */
static int data_h5_exists(const char *path, const char *name)
{
    hid_t fapl = data_h5_fapl();
    hid_t file = fapl >= 0 ? H5Fopen(path, H5F_ACC_RDONLY, fapl) : H5I_INVALID_HID;
    if (fapl >= 0)
        H5Pclose(fapl);
    if (file < 0)
        return 1;   /* let data_h5_open report the file */
    const int found = name[0] != '\0' && H5LTpath_valid(file, name, true) > 0;
    H5Fclose(file);
    return found;
}

/* Open the features (and the labels, when src has them) and check that they pair up. */
static int data_h5_open_pair(DataH5Set *x, DataH5Set *y, const DataSource *src, char *err,
                             size_t errlen)
{
    memset(y, 0, sizeof *y);
    y->file = y->dset = y->space = y->type = H5I_INVALID_HID;
    if (data_h5_open(x, src->x_path, src->x_name, 2, "features", err, errlen) != 0)
        return -1;
    if (src->y_path == NULL)
        return 0;
    if (src->y_optional && !data_h5_exists(src->y_path, src->y_name))
        return 0;   /* no labels: the caller sees ds->labels == NULL */
    if (data_h5_open(y, src->y_path, src->y_name, 1, "labels", err, errlen) != 0) {
        data_h5_close(x);
        return -1;
    }
    if (x->dims[0] != y->dims[0]) {
        data_fail(err, errlen, src->x_path, "dataset %s holds %llu samples but %s in %s holds "
                  "%llu labels: not a pair", src->x_name, (unsigned long long)x->dims[0],
                  src->y_name, src->y_path, (unsigned long long)y->dims[0]);
        data_h5_close(x);
        data_h5_close(y);
        return -1;
    }
    return 0;
}

static void data_h5_shape(DataShape *shape, const DataH5Set *x)
{
    shape->n = (size_t)x->dims[0];
    shape->d = (size_t)x->dims[1];
    shape->rows = 1;
    shape->cols = (uint32_t)x->dims[1];
    shape->native = x->cls == H5T_INTEGER && x->size == 1 && x->sign == H5T_SGN_NONE
                        ? DATA_U8 : DATA_F32;
    snprintf(shape->stored, sizeof shape->stored, "%s", data_h5_type_name(x));
}

static int data_h5_probe(DataShape *shape, const DataSource *src, char *err, size_t errlen)
{
    DataH5Quiet q;
    DataH5Set x, y;
    data_h5_quiet(&q);
    int rc = data_h5_open_pair(&x, &y, src, err, errlen);
    if (rc == 0) {
        data_h5_shape(shape, &x);
        if (shape->n > SIZE_MAX / shape->d / sizeof(float)) {
            data_fail(err, errlen, src->x_path, "dataset %s: %zu x %zu values overflow this "
                      "machine's sizes", src->x_name, shape->n, shape->d);
            rc = -1;
        }
        data_h5_close(&x);
        data_h5_close(&y);
    }
    data_h5_restore(&q);
    return rc;
}

/* Rows [r0, r0 + rows) of the features into buf, as mtype. */
static int data_h5_rows(const DataH5Set *x, hsize_t r0, hsize_t rows, hid_t mtype, void *buf,
                        char *err, size_t errlen)
{
    const hsize_t start[2] = {r0, 0}, count[2] = {rows, x->dims[1]};
    hid_t mem = H5Screate_simple(2, count, NULL);
    int rc = -1;
    /* zeroed first: see data_h5_check_stored */
    memset(buf, 0, (size_t)rows * (size_t)x->dims[1] * H5Tget_size(mtype));
    if (mem < 0 || H5Sselect_hyperslab(x->space, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(x->dset, mtype, mem, x->space, H5P_DEFAULT, buf) < 0)
        data_h5_fail(err, errlen, x->path, "cannot read dataset %s (samples %llu to %llu)",
                     x->name, (unsigned long long)r0, (unsigned long long)(r0 + rows - 1));
    else
        rc = 0;
    if (mem >= 0)
        H5Sclose(mem);
    return rc;
}

/* The labels: read as int64, checked, held as uint8. */
static int data_h5_labels(Dataset *ds, const DataH5Set *y, int classes, char *err,
                          size_t errlen)
{
    const size_t n = (size_t)y->dims[0];
    int64_t *raw = malloc(n * sizeof *raw);
    ds->labels = malloc(n);
    if (raw == NULL || ds->labels == NULL) {
        data_fail(err, errlen, y->path, "cannot allocate %zu bytes for the labels of %s",
                  n * sizeof *raw, y->name);
        free(raw);
        return -1;
    }
    memset(raw, 0, n * sizeof *raw);   /* see data_h5_check_stored */
    if (H5Dread(y->dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) {
        data_h5_fail(err, errlen, y->path, "cannot read dataset %s", y->name);
        free(raw);
        return -1;
    }
    int64_t maxlabel = 0;
    const int64_t limit = classes > 0 ? classes : 256;
    for (size_t i = 0; i < n; i++) {
        const int64_t v = raw[i];
        if (v < 0 || v >= limit) {
            if (v < 0)
                data_fail(err, errlen, y->path, "dataset %s: label %lld at sample index %zu is "
                          "negative (labels must be 0..K-1)", y->name, (long long)v, i);
            else if (classes > 0)
                data_fail(err, errlen, y->path, "dataset %s: label %lld at sample index %zu is "
                          "out of range: classes = %d (labels must be 0..%d)", y->name,
                          (long long)v, i, classes, classes - 1);
            else
                data_fail(err, errlen, y->path, "dataset %s: label %lld at sample index %zu is "
                          "out of range: mlp supports at most 256 classes (labels 0..255)",
                          y->name, (long long)v, i);
            free(raw);
            return -1;
        }
        if (v > maxlabel)
            maxlabel = v;
        ds->labels[i] = (uint8_t)v;
    }
    free(raw);
    ds->classes = classes > 0 ? classes : (int)maxlabel + 1;
    return 0;
}

static int data_h5_read(Dataset *ds, const DataSource *src, int classes, DataType type,
                        int own, void *x, size_t bytes, char *err, size_t errlen)
{
    DataH5Quiet q;
    DataH5Set fx, fy;
    DataShape shape = {0};
    void *scratch = NULL;
    int rc = -1;
    data_h5_quiet(&q);
    if (data_h5_open_pair(&fx, &fy, src, err, errlen) != 0) {
        data_h5_restore(&q);
        return -1;
    }
    data_h5_shape(&shape, &fx);
    const size_t n = shape.n, d = shape.d, elem = data_type_size(type);
    ds->n = n, ds->d = d, ds->rows = shape.rows, ds->cols = shape.cols, ds->type = type;
    if (type == DATA_U8 && shape.native != DATA_U8) {
        data_fail(err, errlen, src->x_path, "dataset %s holds %s: cannot be held as uint8",
                  src->x_name, shape.stored);
        goto out;
    }
    if (n > SIZE_MAX / d / sizeof(double)) {
        data_fail(err, errlen, src->x_path, "dataset %s: %zu x %zu values overflow this "
                  "machine's sizes", src->x_name, n, d);
        goto out;
    }
    /* Labels first: small, and a bad label is caught before the features are read. */
    if (fy.dset >= 0 && data_h5_labels(ds, &fy, classes, err, errlen) != 0)
        goto out;

    const size_t total = n * d * elem;
    uint8_t *dst = NULL;
    if (own) {
        if ((dst = malloc(total)) == NULL) {
            data_fail(err, errlen, src->x_path, "cannot allocate %zu bytes for dataset %s",
                      total, src->x_name);
            goto out;
        }
        ds->owns_images = 1;
    } else if (x != NULL) {
        if (bytes != total) {
            data_fail(err, errlen, src->x_path, "dataset %s is %zu x %zu = %zu bytes as held, "
                      "but the buffer for it holds %zu (did the file change while it was "
                      "being read?)", src->x_name, n, d, total, bytes);
            goto out;
        }
        dst = x;
    }
    if (type == DATA_U8)
        ds->images = dst;
    else
        ds->features = (float *)(void *)dst;

    /* A block of rows at a time: read (as uint8, or as double to be converted), checked,
     * checksummed while in cache, and stored or dropped (checksum only). */
    size_t block = DATA_H5_BLOCK / (d * sizeof(double));
    if (block == 0)
        block = 1;
    if (block > n)
        block = n;
    const size_t scratch_bytes = block * d * (sizeof(double) + sizeof(float));
    if ((scratch = malloc(scratch_bytes)) == NULL) {
        data_fail(err, errlen, src->x_path, "cannot allocate %zu bytes to read dataset %s",
                  scratch_bytes, src->x_name);
        goto out;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t r0 = 0; r0 < n; r0 += block) {
        const size_t rows = n - r0 < block ? n - r0 : block, count = rows * d;
        if (type == DATA_U8) {
            uint8_t *out = dst != NULL ? dst + r0 * d : scratch;
            if (data_h5_rows(&fx, r0, rows, H5T_NATIVE_UINT8, out, err, errlen) != 0)
                goto out;
            crc = crc32(crc, out, (uInt)count);   /* count * 8 <= DATA_H5_BLOCK or one row */
            continue;
        }
        double *v = scratch;
        if (data_h5_rows(&fx, r0, rows, H5T_NATIVE_DOUBLE, v, err, errlen) != 0)
            goto out;
        float *f = (float *)(void *)(v + block * d);   /* (rows, d) after the doubles */
        for (size_t i = 0; i < count; i++) {
            const double val = v[i];
            if (!isfinite(val) || fabs(val) > FLT_MAX) {
                data_fail(err, errlen, src->x_path, "dataset %s: value %g at sample index %zu, "
                          "feature %zu is %s", src->x_name, val, r0 + i / d, i % d,
                          isfinite(val) ? "beyond float32's range" : "not finite");
                goto out;
            }
            f[i] = (float)val;
        }
        crc = crc32(crc, (const Bytef *)f, (uInt)(count * sizeof(float)));
        if (dst != NULL)
            memcpy(dst + r0 * d * sizeof(float), f, count * sizeof(float));
    }
    if (ds->labels != NULL)
        crc = crc32(crc, ds->labels, (uInt)n);   /* n < 2^32 */
    ds->crc = (uint32_t)crc;
    rc = 0;
out:
    free(scratch);
    data_h5_close(&fx);
    data_h5_close(&fy);
    data_h5_restore(&q);
    return rc;
}

const DataReader data_reader_h5 = {"hdf5", DATA_FORMAT_HDF5, data_h5_sniff, data_h5_probe,
                                   data_h5_read};
