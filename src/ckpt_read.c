/* ckpt_read: reading and validating checkpoints (ckpt_load, ckpt_reseal), trusting
 * nothing in the file; see src/ckpt_schema.h for how the checkpoint module is split and
 * include/checkpoint.h for the contract.
 */
#include "ckpt_schema.h"

#include <hdf5_hl.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ reading */

static int ckpt_open_attr(hid_t file, const char *path, const char *name, hid_t *attr,
                          char *err, size_t errlen)
{
    htri_t ex = H5Aexists(file, name);
    if (ex < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot look up attribute '%s'", name);
        return -1;
    }
    if (ex == 0) {
        ckpt_err(err, errlen, "%s: attribute '%s' missing", path, name);
        return -1;
    }
    *attr = H5Aopen(file, name, H5P_DEFAULT);
    if (*attr < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot open attribute '%s'", name);
        return -1;
    }
    return 0;
}

/* Check the attribute is one value of class `want` (or, if `also` is not H5T_NO_CLASS, of
 * that class). */
static int ckpt_check_attr(hid_t attr, const char *path, const char *name, H5T_class_t want,
                           H5T_class_t also, const char *what, char *err, size_t errlen)
{
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    int rc = -1;
    type = H5Aget_type(attr);
    if (type < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot read the type of attribute '%s'", name);
        goto done;
    }
    H5T_class_t cls = H5Tget_class(type);
    if (cls == H5T_NO_CLASS) {
        ckpt_h5_fail(err, errlen, path, "cannot read the type class of attribute '%s'", name);
        goto done;
    }
    if (cls != want && (also == H5T_NO_CLASS || cls != also)) {
        ckpt_err(err, errlen, "%s: attribute '%s' is not %s", path, name, what);
        goto done;
    }
    space = H5Aget_space(attr);
    if (space < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot read the dataspace of attribute '%s'", name);
        goto done;
    }
    hssize_t np = H5Sget_simple_extent_npoints(space);
    if (np < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot read the size of attribute '%s'", name);
        goto done;
    }
    if (np != 1) {
        ckpt_err(err, errlen, "%s: attribute '%s' holds %lld values, expected 1", path, name,
                 (long long)np);
        goto done;
    }
    rc = 0;
done:
    if (space >= 0 && H5Sclose(space) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close dataspace of attribute '%s'", name);
        rc = -1;
    }
    if (type >= 0 && H5Tclose(type) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close type of attribute '%s'", name);
        rc = -1;
    }
    return rc;
}

/* A numeric root attribute converted by HDF5 to mtype (so int32/int64/uint64 all load). */
static int ckpt_read_num(hid_t file, const char *path, const char *name, hid_t mtype,
                         bool is_float, void *out, char *err, size_t errlen)
{
    hid_t attr = H5I_INVALID_HID;
    int rc = -1;
    if (ckpt_open_attr(file, path, name, &attr, err, errlen) != 0)
        goto done;
    if (ckpt_check_attr(attr, path, name, is_float ? H5T_FLOAT : H5T_INTEGER,
                        is_float ? H5T_INTEGER : H5T_NO_CLASS,
                        is_float ? "a number" : "an integer", err, errlen) != 0)
        goto done;
    if (H5Aread(attr, mtype, out) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot read attribute '%s'", name);
        goto done;
    }
    rc = 0;
done:
    if (attr >= 0 && H5Aclose(attr) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close attribute '%s'", name);
        rc = -1;
    }
    return rc;
}

/* A string root attribute into a new heap string. Fixed- and variable-length strings in
 * either character set load, so files rewritten by h5py or H5LT stay readable. */
static int ckpt_read_str(hid_t file, const char *path, const char *name, char **out,
                         char *err, size_t errlen)
{
    hid_t attr = H5I_INVALID_HID, ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
    char *vbuf = NULL, *res = NULL;
    int rc = -1;
    *out = NULL;
    if (ckpt_open_attr(file, path, name, &attr, err, errlen) != 0)
        goto done;
    if (ckpt_check_attr(attr, path, name, H5T_STRING, H5T_NO_CLASS, "a string", err,
                        errlen) != 0)
        goto done;
    ftype = H5Aget_type(attr);
    if (ftype < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot read the type of attribute '%s'", name);
        goto done;
    }
    htri_t vl = H5Tis_variable_str(ftype);
    H5T_cset_t cset = H5Tget_cset(ftype);
    size_t fsize = H5Tget_size(ftype);
    if (vl < 0 || cset < 0 || fsize == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot inspect the string type of attribute '%s'",
                     name);
        goto done;
    }
    /* HDF5 refuses to convert between ASCII and UTF-8, so read in the stored set. */
    mtype = H5Tcopy(H5T_C_S1);
    if (mtype < 0 || H5Tset_cset(mtype, cset) < 0 ||
        H5Tset_size(mtype, vl ? H5T_VARIABLE : fsize + 1) < 0 ||
        H5Tset_strpad(mtype, H5T_STR_NULLTERM) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot build a string type for attribute '%s'", name);
        goto done;
    }
    if (vl) {
        if (H5Aread(attr, mtype, &vbuf) < 0) {
            ckpt_h5_fail(err, errlen, path, "cannot read attribute '%s'", name);
            goto done;
        }
        res = strdup(vbuf ? vbuf : "");
        if (!res) {
            ckpt_err(err, errlen, "%s: out of memory reading attribute '%s'", path, name);
            goto done;
        }
    } else {
        res = calloc(fsize + 1, 1);
        if (!res) {
            ckpt_err(err, errlen, "%s: out of memory reading attribute '%s' (%zu bytes)", path,
                     name, fsize + 1);
            goto done;
        }
        if (H5Aread(attr, mtype, res) < 0) {
            ckpt_h5_fail(err, errlen, path, "cannot read attribute '%s'", name);
            goto done;
        }
        res[fsize] = '\0';
    }
    *out = res;
    res = NULL;
    rc = 0;
done:
    free(res);
    if (vbuf && H5free_memory(vbuf) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot free attribute '%s'", name);
        rc = -1;
    }
    if (mtype >= 0 && H5Tclose(mtype) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close string type of attribute '%s'", name);
        rc = -1;
    }
    if (ftype >= 0 && H5Tclose(ftype) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close type of attribute '%s'", name);
        rc = -1;
    }
    if (attr >= 0 && H5Aclose(attr) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close attribute '%s'", name);
        rc = -1;
    }
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* A string attribute into a fixed buffer of the state (reduce, created, mlp_version). */
static int ckpt_read_str_into(hid_t file, const char *path, const char *name, char *dst,
                              size_t cap, char *err, size_t errlen)
{
    char *v = NULL;
    if (ckpt_read_str(file, path, name, &v, err, errlen) != 0)
        return -1;
    size_t n = strlen(v);
    if (n >= cap) {
        ckpt_err(err, errlen, "%s: attribute '%s' is %zu bytes long, at most %zu allowed",
                 path, name, n, cap - 1);
        free(v);
        return -1;
    }
    memcpy(dst, v, n + 1);
    free(v);
    return 0;
}

/* "[3,4]" */
static void ckpt_fmt_shape(char *buf, size_t len, int rank, const hsize_t *dims)
{
    size_t off = 0;
    off += (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < rank && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%llu", i ? "," : "",
                                (unsigned long long)dims[i]);
    if (off < len)
        snprintf(buf + off, len - off, "]");
}

/* Does the group `group` exist, and `name` in it? Missing → message naming the object.
 * (H5Lexists on "/a/b" fails rather than answering when "/a" itself is missing.) */
static int ckpt_require(hid_t file, const char *path, const char *group, const char *name,
                        char *err, size_t errlen)
{
    htri_t ex = H5Lexists(file, group, H5P_DEFAULT);
    if (ex < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot look up %s", group);
        return -1;
    }
    if (ex == 0) {
        ckpt_err(err, errlen, "%s: group %s missing", path, group);
        return -1;
    }
    ex = H5Lexists(file, name, H5P_DEFAULT);
    if (ex < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot look up %s", name);
        return -1;
    }
    if (ex == 0) {
        ckpt_err(err, errlen, "%s: %s missing", path, name);
        return -1;
    }
    return 0;
}

/* Shape and type class of dataset `name` (which must exist). */
static int ckpt_dset_info(hid_t file, const char *path, const char *group, const char *name,
                          int *rank, hsize_t *dims, H5T_class_t *cls, size_t *tsize,
                          char *err, size_t errlen)
{
    if (ckpt_require(file, path, group, name, err, errlen) != 0)
        return -1;
    if (H5LTget_dataset_ndims(file, name, rank) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot open %s as a dataset", name);
        return -1;
    }
    if (*rank < 0 || *rank > H5S_MAX_RANK) {
        ckpt_err(err, errlen, "%s: %s has rank %d", path, name, *rank);
        return -1;
    }
    if (H5LTget_dataset_info(file, name, dims, cls, tsize) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot read the shape of %s", name);
        return -1;
    }
    return 0;
}

/* A dataset of `count` values of `elem` bytes is about to be allocated and read. HDF5
 * lets a dataset's shape exceed what is stored (unwritten chunks read as the fill value,
 * compressed chunks expand up to 1032-fold), so a 13 KB file could make us allocate and
 * fill gigabytes (fuzz/regressions). mlp stores every dataset contiguous and unfiltered
 * (ckpt_check_layout), so its bytes are in the file: refuse more than the file holds. */
static int ckpt_check_size(const char *path, const char *name, hsize_t count, size_t elem,
                           uint64_t file_size, char *err, size_t errlen)
{
    if (count > file_size / elem || count > SIZE_MAX / elem) {
        ckpt_err(err, errlen, "%s: %s has %llu entries, more than this %" PRIu64 "-byte file "
                 "can hold (corrupt?)", path, name, (unsigned long long)count, file_size);
        return -1;
    }
    return 0;
}

/* Dataset `name` has mlp's own layout: contiguous, no filters (compression), no external
 * files, and all `bytes` of it stored; anything else is refused before a byte is read. */
static int ckpt_check_layout(hid_t file, const char *path, const char *name, uint64_t bytes,
                             char *err, size_t errlen)
{
    hid_t dset = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    int rc = -1;
    dset = H5Dopen2(file, name, H5P_DEFAULT);
    if (dset < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot open %s", name);
        goto done;
    }
    dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot read the storage properties of %s", name);
        goto done;
    }
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int nfilters = H5Pget_nfilters(dcpl), nexternal = H5Pget_external_count(dcpl);
    if (layout < 0 || nfilters < 0 || nexternal < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot read the storage properties of %s", name);
        goto done;
    }
    if (layout != H5D_CONTIGUOUS) {
        ckpt_err(err, errlen, "%s: %s is stored %s; mlp writes contiguous datasets only "
                 "(rewrite it without chunking or compression)", path, name,
                 layout == H5D_CHUNKED ? "chunked" : layout == H5D_COMPACT ? "compact"
                 : "in a non-contiguous layout");
        goto done;
    }
    if (nfilters > 0 || nexternal > 0) {
        ckpt_err(err, errlen, "%s: %s uses %s; mlp writes plain contiguous datasets only",
                 path, name, nfilters > 0 ? "filters (compression)" : "external files");
        goto done;
    }
    /* Unwritten contiguous data has no storage and reads as the fill value. */
    if (bytes > 0 && H5Dget_storage_size(dset) != bytes) {
        ckpt_err(err, errlen, "%s: %s is not stored in full (%llu of %" PRIu64 " bytes)", path,
                 name, (unsigned long long)H5Dget_storage_size(dset), bytes);
        goto done;
    }
    rc = 0;
done:
    if (dcpl >= 0 && H5Pclose(dcpl) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close the storage properties of %s", name);
        rc = -1;
    }
    if (dset >= 0 && H5Dclose(dset) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close %s", name);
        rc = -1;
    }
    return rc;
}

static bool ckpt_dset_in_history(const CkptDsetSpec *d)
{
    return d->dims[0] == CKPT_DIM_HIST;
}

/* What the reader knows of the dimensions: D, H, K from the attributes; the history's
 * length from the first history dataset (`by` names the dataset that set a dimension). */
typedef struct {
    hsize_t dim[CKPT_NDIMS];
    bool known[CKPT_NDIMS];
    const char *by[CKPT_NDIMS];
} CkptShapes;

static void ckpt_shape_mismatch(const char *path, const CkptDsetSpec *d, const CkptShapes *sh,
                                int rank, const hsize_t *dims, char *err, size_t errlen)
{
    char got[128], exp[128];
    hsize_t want[2];
    bool all_known = true;
    for (int j = 0; j < d->rank; j++) {
        want[j] = sh->dim[d->dims[j]];
        all_known = all_known && sh->known[d->dims[j]];
    }
    ckpt_fmt_shape(got, sizeof got, rank, dims);
    if (all_known)
        ckpt_fmt_shape(exp, sizeof exp, d->rank, want);
    else
        snprintf(exp, sizeof exp, "%d-D", d->rank);
    ckpt_err(err, errlen, "%s: %s has shape %s, expected %s", path, d->name, got, exp);
}

/* Dataset d exists with the schema's rank, dimensions and type class, and the file could
 * hold it; sets the dimensions it is the first to show. Nothing is allocated. */
static int ckpt_check_dset(hid_t file, const char *path, uint64_t file_size,
                           const CkptDsetSpec *d, CkptShapes *sh, hsize_t *count, char *err,
                           size_t errlen)
{
    int rank = 0;
    hsize_t dims[H5S_MAX_RANK];
    H5T_class_t cls;
    size_t tsize;
    if (ckpt_dset_info(file, path, d->group, d->name, &rank, dims, &cls, &tsize, err,
                       errlen) != 0)
        return -1;
    if (rank != d->rank) {
        ckpt_shape_mismatch(path, d, sh, rank, dims, err, errlen);
        return -1;
    }
    for (int j = 0; j < rank; j++) {
        CkptDim k = d->dims[j];
        if (!sh->known[k]) {
            sh->dim[k] = dims[j];
            sh->known[k] = true;
            sh->by[k] = d->name;
        } else if (dims[j] != sh->dim[k]) {
            if (sh->by[k])
                ckpt_err(err, errlen, "%s: %s has length %llu but %s has length %llu", path,
                         d->name, (unsigned long long)dims[j], sh->by[k],
                         (unsigned long long)sh->dim[k]);
            else
                ckpt_shape_mismatch(path, d, sh, rank, dims, err, errlen);
            return -1;
        }
    }
    /* float64 weights would load, but silently rounded: a resumed run could no longer be
     * bitwise equal to an uninterrupted one. */
    const char *want = NULL;
    if (d->type == CKPT_F32 && (cls != H5T_FLOAT || tsize != 4))
        want = "float32";
    else if (d->type == CKPT_F64 && cls != H5T_FLOAT)
        want = "floating point";
    else if (d->type == CKPT_I64 && cls != H5T_INTEGER)
        want = "an integer";
    if (want) {
        ckpt_err(err, errlen, "%s: %s is not %s", path, d->name, want);
        return -1;
    }
    hsize_t n = 1;
    for (int j = 0; j < rank; j++) {
        if (dims[j] != 0 && n > UINT64_MAX / dims[j])
            n = UINT64_MAX;
        else
            n *= dims[j];
    }
    /* bytes in the file: the file's element size (an int32 history is fine) */
    const uint64_t stored = tsize && n > UINT64_MAX / tsize ? UINT64_MAX : n * tsize;
    if (ckpt_check_size(path, d->name, n, ckpt_type_size(d->type), file_size, err,
                        errlen) != 0 ||
        ckpt_check_layout(file, path, d->name, stored, err, errlen) != 0)
        return -1;
    *count = n;
    return 0;
}

/* Every dataset of the schema into t: all checked first, then allocated and read. t's
 * d, hidden and classes are the attributes' (already checked). */
static int ckpt_read_dsets(hid_t file, const char *path, uint64_t file_size, CkptState *t,
                           char *err, size_t errlen)
{
    CkptShapes sh;
    memset(&sh, 0, sizeof sh);
    ckpt_dims_of(t, sh.dim);
    sh.known[CKPT_DIM_D] = sh.known[CKPT_DIM_H] = sh.known[CKPT_DIM_K] = true;
    hsize_t count[CKPT_NDSETS_MAX];
    bool absent[CKPT_NDSETS_MAX];
    for (size_t i = 0; i < CKPT_NDSETS; i++) {
        absent[i] = false;
        if (ckpt_dsets[i].optional) {
            htri_t ex = H5Lexists(file, ckpt_dsets[i].group, H5P_DEFAULT);
            if (ex > 0)
                ex = H5Lexists(file, ckpt_dsets[i].name, H5P_DEFAULT);
            if (ex < 0) {
                ckpt_h5_fail(err, errlen, path, "cannot look up %s", ckpt_dsets[i].name);
                return -1;
            }
            absent[i] = ex == 0;
        }
        if (!absent[i] && ckpt_check_dset(file, path, file_size, &ckpt_dsets[i], &sh,
                                          &count[i], err, errlen) != 0)
            return -1;
    }
    /* the velocity is all or nothing */
    bool some = false, all = true;
    for (size_t i = 0; i < CKPT_NDSETS; i++)
        if (ckpt_dsets[i].optional && !strcmp(ckpt_dsets[i].group, "/optimizer")) {
            some = some || !absent[i];
            all = all && !absent[i];
        }
    if (some && !all) {
        ckpt_err(err, errlen, "%s: /optimizer holds only some of W1, b1, W2, b2", path);
        return -1;
    }
    const hsize_t len = sh.dim[CKPT_DIM_HIST];
    if (len > SIZE_MAX / sizeof(double) || ckpt_history_init(&t->history, (size_t)len) != 0) {
        ckpt_err(err, errlen, "%s: out of memory for a history of %llu epochs", path,
                 (unsigned long long)len);
        return -1;
    }
    for (size_t i = 0; i < CKPT_NDSETS; i++) {
        const CkptDsetSpec *d = &ckpt_dsets[i];
        if (absent[i] && ckpt_dset_in_history(d)) {
            double *col = ckpt_dset_array(t, d);
            for (hsize_t j = 0; j < len; j++)
                col[j] = NAN;   /* not measured (an older file) */
            continue;
        }
        if (absent[i])
            continue;
        if (!ckpt_dset_in_history(d)) {
            /* model arrays: float32 (statistics: float64), count bounded by
             * ckpt_check_size */
            const size_t bytes = (size_t)count[i] * ckpt_type_size(d->type);
            void *buf = malloc(bytes > 0 ? bytes : 1);
            if (!buf) {
                ckpt_err(err, errlen, "%s: out of memory for %s (%zu bytes)", path, d->name,
                         bytes);
                return -1;
            }
            *(void **)((char *)t + d->off) = buf;
        }
        if (count[i] > 0 &&
            H5LTread_dataset(file, d->name, ckpt_mtype(d->type, H5I_INVALID_HID),
                             ckpt_dset_array(t, d)) < 0) {
            ckpt_h5_fail(err, errlen, path, "cannot read %s", d->name);
            return -1;
        }
    }
    t->history.len = (size_t)len;
    return 0;
}

/* 'format' names an mlp checkpoint, so that a foreign HDF5 file is reported as such
 * rather than as a pile of missing attributes. */
static int ckpt_read_format(hid_t file, const char *path, char *err, size_t errlen)
{
    char *format = NULL;
    htri_t ex = H5Aexists(file, "format");
    if (ex < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot look up attribute 'format'");
        return -1;
    }
    if (ex == 0) {
        ckpt_err(err, errlen, "%s: not an mlp checkpoint (no 'format' attribute)", path);
        return -1;
    }
    if (ckpt_read_str(file, path, "format", &format, err, errlen) != 0)
        return -1;
    int rc = 0;
    if (strcmp(format, CKPT_FORMAT) != 0) {
        ckpt_err(err, errlen, "%s: not an mlp checkpoint (format '%.64s')", path, format);
        rc = -1;
    }
    free(format);
    return rc;
}

static int ckpt_read_version(hid_t file, const char *path, int64_t *out, char *err,
                             size_t errlen)
{
    int64_t version = 0;
    if (ckpt_read_num(file, path, "format_version", H5T_NATIVE_INT64, false, &version, err,
                      errlen) != 0)
        return -1;
    if (version < CKPT_FORMAT_VERSION_MIN || version > CKPT_FORMAT_VERSION) {
        ckpt_err(err, errlen, "%s: format_version %" PRId64 " not supported (this mlp reads "
                 "%d to %d)", path, version, CKPT_FORMAT_VERSION_MIN, CKPT_FORMAT_VERSION);
        return -1;
    }
    *out = version;
    return 0;
}

/* Every root attribute of the schema into t; the constants (format first) checked. */
static int ckpt_read_attrs(hid_t file, const char *path, CkptState *t, char *err,
                           size_t errlen)
{
    if (ckpt_read_format(file, path, err, errlen) != 0 ||
        ckpt_read_version(file, path, &t->format_version, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < CKPT_NATTRS; i++) {
        const CkptAttrSpec *a = &ckpt_attrs[i];
        char *field = (char *)t + a->off;
        int rc;
        if (a->constant)
            continue;                   /* checked above */
        if (a->optional) {
            htri_t ex = H5Aexists(file, a->name);
            if (ex < 0) {
                ckpt_h5_fail(err, errlen, path, "cannot look up attribute '%s'", a->name);
                return -1;
            }
            if (ex == 0)
                continue;               /* an older file: the field stays 0 or "" */
        }
        if (a->type == CKPT_STR && a->cap)
            rc = ckpt_read_str_into(file, path, a->name, field, a->cap, err, errlen);
        else if (a->type == CKPT_STR)
            rc = ckpt_read_str(file, path, a->name, (char **)field, err, errlen);
        else
            rc = ckpt_read_num(file, path, a->name, ckpt_mtype(a->type, H5I_INVALID_HID),
                               a->type == CKPT_F64, field, err, errlen);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Everything after the file is open: the attributes, then the datasets they shape. */
static int ckpt_read_all(hid_t file, const char *path, uint64_t file_size, CkptState *t,
                         char *err, size_t errlen)
{
    if (ckpt_read_attrs(file, path, t, err, errlen) != 0)
        return -1;
    /* The shapes bound the datasets about to be read: checked before reading them, and
     * everything again (the history too) with the same rules as ckpt_save. */
    if (t->d == 0 || t->hidden == 0 || t->classes == 0 ||
        t->d > SIZE_MAX / sizeof(float) / t->hidden ||
        t->classes > SIZE_MAX / sizeof(float) / t->hidden) {
        ckpt_err(err, errlen, "%s: bad shape attributes d=%" PRIu64 " hidden=%" PRIu64
                 " classes=%" PRIu64, path, t->d, t->hidden, t->classes);
        return -1;
    }
    if (ckpt_read_dsets(file, path, file_size, t, err, errlen) != 0)
        return -1;
    return ckpt_check_values(t, path, err, errlen);
}

/* Does the file carry HDF5's signature where HDF5 looks first (offset 0, or after a
 * 512-byte user block)? Only to word the refusal of a file without our header. */
static bool ckpt_has_hdf5_signature(const unsigned char *image, size_t len)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    for (size_t off = 0; off <= FSAFE_SEAL_BYTES; off += FSAFE_SEAL_BYTES)
        if (len >= off + sizeof sig && !memcmp(image + off, sig, sizeof sig))
            return true;
    return false;
}

/* The seal's size and CRC-32 against the file's bytes (see CKPT_SEAL_TAG). mlp writes the
 * seal on every checkpoint, so a file without a valid seal line is refused: not written by
 * mlp, or its header damaged. A mismatch says how to proceed after a deliberate edit. */
static int ckpt_check_seal(const void *image, size_t len, const char *path, char *err,
                           size_t errlen)
{
    FsafeSealInfo in;
    switch (fsafe_seal_check(image, len, CKPT_SEAL_TAG, &in)) {
    case FSAFE_SEAL_OK:
        return 0;
    case FSAFE_SEAL_MISSING:
        if (!ckpt_has_hdf5_signature(image, len))
            ckpt_err(err, errlen, "%s: not an HDF5 file", path);
        else
            ckpt_err(err, errlen, "%s: no valid " CKPT_SEAL_TAG " header in its first %d "
                     "bytes (not written by mlp, or the header is damaged): refusing to load "
                     "it", path, FSAFE_SEAL_BYTES);
        return -1;
    case FSAFE_SEAL_SIZE:
        ckpt_err(err, errlen, "%s: truncated or corrupt HDF5 file, or changed since mlp wrote "
                 "it: %" PRIu64 " bytes, its sealed header says %" PRIu64 " (size and CRC-32 "
                 "of the sealed image differ); after a deliberate edit (h5py) run 'mlp reseal "
                 "%s'", path, in.size_file, in.size_sealed, path);
        return -1;
    default:
        ckpt_err(err, errlen, "%s: truncated or corrupt HDF5 file, or changed since mlp wrote "
                 "it: CRC-32 %08" PRIx32 ", its sealed header says %08" PRIx32 "; after a "
                 "deliberate edit (h5py) run 'mlp reseal %s'", path, in.crc_file,
                 in.crc_sealed, path);
        return -1;
    }
}

/* HDF5 on the bytes in memory (the core driver on a copy of the image, read-only): the
 * bytes the seal vouched for are exactly the bytes parsed, even if the file is replaced
 * meanwhile. (H5LTopen_file_image without a copy leaks its bookkeeping in HDF5 1.10.) */
static hid_t ckpt_open_image(const void *image, size_t len, const char *path, char *err,
                             size_t errlen)
{
    static unsigned long opened;            /* distinct names: HDF5 tracks open files */
    char name[64];
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID;
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, (size_t)64 << 10, false) < 0 ||
        H5Pset_file_image(fapl, (void *)image, len) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot hand the file's bytes to HDF5");
        goto done;
    }
    snprintf(name, sizeof name, "mlp-checkpoint-image-%lu", ++opened);
    file = H5Fopen(name, H5F_ACC_RDONLY, fapl);
    if (file < 0)
        ckpt_h5_fail(err, errlen, path, "cannot open: truncated or corrupt HDF5 file");
done:
    /* The failure above is the one to report; a failed close could add nothing. */
    if (fapl >= 0)
        (void)H5Pclose(fapl);
    return file;
}

int ckpt_load(const char *path, CkptState *s, char *err, size_t errlen)
{
    hid_t file = H5I_INVALID_HID;
    CkptState t;
    void *image = NULL;
    size_t len = 0;
    int rc = -1;
    CkptH5Quiet quiet;
    memset(&t, 0, sizeof t);
    if (s)
        memset(s, 0, sizeof *s);
    ckpt_h5_quiet(&quiet);

    if (!path || !s) {
        ckpt_err(err, errlen, "checkpoint: no path or state given");
        goto done;
    }
    /* Plain checks first: HDF5's messages for these cases are long and indirect, and HDF5
     * never parses a byte the seal does not vouch for. The whole file is read once (a FIFO
     * or device refused without blocking), checked, and parsed from memory. */
    image = fsafe_read_file(path, &len, err, errlen);
    if (!image)
        goto done;
    if (ckpt_check_seal(image, len, path, err, errlen) != 0)
        goto done;
    file = ckpt_open_image(image, len, path, err, errlen);
    free(image);                        /* HDF5 holds its own copy */
    image = NULL;
    if (file < 0)
        goto done;
    if (ckpt_read_all(file, path, (uint64_t)len, &t, err, errlen) != 0)
        goto done;
    rc = 0;
done:
    if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close file");
        rc = -1;
    }
    free(image);
    ckpt_h5_restore(&quiet);
    if (rc == 0)
        *s = t;
    else
        ckpt_state_free(&t);
    return rc;
}

int ckpt_reseal(const char *path, char *err, size_t errlen)
{
    hid_t file = H5I_INVALID_HID;
    CkptState t;
    int rc = -1;
    size_t len = 0;
    CkptH5Quiet quiet;
    memset(&t, 0, sizeof t);
    ckpt_h5_quiet(&quiet);
    void *image = fsafe_read_file(path, &len, err, errlen);
    if (!image)
        goto done;
    if (fsafe_reseal_image(image, len, CKPT_SEAL_TAG, path, err, errlen) != 0) {
        /* fsafe's wording names no checkpoint: say what the file is not */
        char why[CKPT_ERR_MAX];
        snprintf(why, sizeof why, "%s", err ? err : "");
        ckpt_err(err, errlen, "%s (not a checkpoint written by mlp)", why);
        goto done;
    }
    /* Validate the edited file exactly as ckpt_load would, from memory, before anything
     * on disk changes: a reseal must never bless a file mlp would not have written. */
    file = ckpt_open_image(image, len, path, err, errlen);
    if (file < 0)
        goto done;
    if (ckpt_read_all(file, path, (uint64_t)len, &t, err, errlen) != 0)
        goto done;
    if (H5Fclose(file) < 0) {
        file = H5I_INVALID_HID;
        ckpt_h5_fail(err, errlen, path, "cannot close file");
        goto done;
    }
    file = H5I_INVALID_HID;
    if (fsafe_write_atomic(path, image, len, err, errlen) != 0)
        goto done;
    rc = 0;
done:
    if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close file");
        rc = -1;
    }
    ckpt_state_free(&t);
    free(image);
    ckpt_h5_restore(&quiet);
    return rc;
}

int ckpt_save_as(const char *path, CkptState *s, char *err, size_t errlen)
{
    char tmp[CKPT_PATH_MAX];
    void *image = NULL;
    size_t image_len = 0;
    int rc = -1;
    CkptH5Quiet quiet;
    ckpt_h5_quiet(&quiet);
    if (!path || !s) {
        ckpt_err(err, errlen, "checkpoint: no path or state given");
        goto done;
    }
    if (ckpt_check_state(s, 0, err, errlen) != 0 ||
        fsafe_temp_path(path, tmp, sizeof tmp, err, errlen) != 0)
        goto done;
    time_t now = time(NULL);
    struct tm tm;
    if (now == (time_t)-1 || !gmtime_r(&now, &tm) ||
        strftime(s->created, sizeof s->created, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        ckpt_err(err, errlen, "%s: cannot read the clock for 'created'", path);
        goto done;
    }
    if (ckpt_build_image(tmp, s, &image, &image_len, err, errlen) != 0 ||
        fsafe_write_atomic(path, image, image_len, err, errlen) != 0)
        goto done;
    rc = 0;
done:
    free(image);
    ckpt_h5_restore(&quiet);
    return rc;
}
