/* checkpoint: writing (the in-memory HDF5 image, ckpt_save), the history, and the names,
 * listing and pruning of checkpoint files in a directory. The schema both the writer and
 * the reader walk is in ckpt_schema.c, reading in ckpt_read.c (src/ckpt_schema.h says how
 * the module is split); the contract is include/checkpoint.h.
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

/* ------------------------------------------------------------------ history */

int ckpt_history_init(CkptHistory *h, size_t cap)
{
    memset(h, 0, sizeof *h);
    if (cap == 0)
        return 0;
    if (cap > SIZE_MAX / sizeof(double))
        return -1;
    h->epoch = malloc(cap * sizeof *h->epoch);
    h->train_loss = malloc(cap * sizeof(double));
    h->train_acc = malloc(cap * sizeof(double));
    h->test_acc = malloc(cap * sizeof(double));
    h->seconds = malloc(cap * sizeof(double));
    h->val_loss = malloc(cap * sizeof(double));
    h->val_acc = malloc(cap * sizeof(double));
    h->test_loss = malloc(cap * sizeof(double));
    if (!h->epoch || !h->train_loss || !h->train_acc || !h->test_acc || !h->seconds ||
        !h->val_loss || !h->val_acc || !h->test_loss) {
        ckpt_history_free(h);
        return -1;
    }
    h->cap = cap;
    return 0;
}

void ckpt_history_free(CkptHistory *h)
{
    if (!h)
        return;
    free(h->epoch);
    free(h->train_loss);
    free(h->train_acc);
    free(h->test_acc);
    free(h->seconds);
    free(h->val_loss);
    free(h->val_acc);
    free(h->test_loss);
    memset(h, 0, sizeof *h);
}

/* realloc one column; the old block stays valid (and owned by h) if this fails. */
static int ckpt_grow(void **p, size_t n, size_t elem)
{
    void *q = realloc(*p, n * elem);
    if (!q)
        return -1;
    *p = q;
    return 0;
}

int ckpt_history_push(CkptHistory *h, int64_t epoch, double train_loss, double train_acc,
                      double test_acc, double seconds)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        if (cap < h->cap || cap > SIZE_MAX / sizeof(double))
            return -1;
        void *p[8] = {h->epoch, h->train_loss, h->train_acc, h->test_acc, h->seconds,
                      h->val_loss, h->val_acc, h->test_loss};
        int rc = 0;
        for (int i = 0; i < 8 && rc == 0; i++)
            rc = ckpt_grow(&p[i], cap, 8);
        /* Store every pointer back, grown or not, so nothing leaks on failure; cap only
         * moves once all eight columns have the room. */
        h->epoch = p[0];
        h->train_loss = p[1];
        h->train_acc = p[2];
        h->test_acc = p[3];
        h->seconds = p[4];
        h->val_loss = p[5];
        h->val_acc = p[6];
        h->test_loss = p[7];
        if (rc != 0)
            return -1;
        h->cap = cap;
    }
    h->epoch[h->len] = epoch;
    h->train_loss[h->len] = train_loss;
    h->train_acc[h->len] = train_acc;
    h->test_acc[h->len] = test_acc;
    h->seconds[h->len] = seconds;
    h->val_loss[h->len] = h->val_acc[h->len] = h->test_loss[h->len] = NAN;
    h->len++;
    return 0;
}

void ckpt_history_set_eval(CkptHistory *h, double val_loss, double val_acc, double test_loss)
{
    if (h->len == 0)
        return;
    h->val_loss[h->len - 1] = val_loss;
    h->val_acc[h->len - 1] = val_acc;
    h->test_loss[h->len - 1] = test_loss;
}

void ckpt_state_free(CkptState *s)
{
    if (!s)
        return;
    free(s->W1);
    free(s->b1);
    free(s->W2);
    free(s->b2);
    free(s->x_mean);
    free(s->x_std);
    free(s->vW1);
    free(s->vb1);
    free(s->vW2);
    free(s->vb2);
    free(s->config);
    ckpt_history_free(&s->history);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------ paths and files */

static int ckpt_join(char *out, size_t outlen, const char *dir, const char *name, char *err,
                     size_t errlen)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= outlen) {
        ckpt_err(err, errlen, "%s/%s: path too long (limit %zu bytes)", dir, name, outlen - 1);
        return -1;
    }
    return 0;
}

/* A checkpoint's place in training as one sortable number: completed epochs in the high
 * 32 bits, steps into the next epoch in the low 32 bits. */
static int64_t ckpt_key(int64_t epoch, int64_t epoch_step)
{
    return epoch * ((int64_t)1 << 32) + epoch_step;
}

/* The file name of a place: "epoch-NNNN.h5" at an epoch boundary, "epoch-NNNN-SSSSSS.h5"
 * after SSSSSS steps of the next epoch. */
static void ckpt_name(char *buf, size_t len, int64_t key)
{
    int64_t epoch = key >> 32, step = key & 0xffffffff;
    if (step == 0)
        snprintf(buf, len, "epoch-%04" PRId64 ".h5", epoch);
    else
        snprintf(buf, len, "epoch-%04" PRId64 "-%06" PRId64 ".h5", epoch, step);
}

static bool ckpt_parse_num(const char **p, int64_t limit, int64_t *out)
{
    int64_t v = 0;
    if (**p < '0' || **p > '9')
        return false;
    for (; **p >= '0' && **p <= '9'; (*p)++) {
        v = v * 10 + (**p - '0');
        if (v > limit)
            return false;
    }
    *out = v;
    return true;
}

/* A name -> its key. Only names exactly as ckpt_save writes them count, so a user's
 * "epoch-3.h5" or "epoch-0003.h5.bak" is never touched by pruning. */
static bool ckpt_parse_epoch_name(const char *name, int64_t *key)
{
    if (strncmp(name, "epoch-", 6) != 0)
        return false;
    const char *p = name + 6;
    int64_t epoch, step = 0;
    if (!ckpt_parse_num(&p, INT32_MAX, &epoch))
        return false;
    if (*p == '-' && (p++, !ckpt_parse_num(&p, UINT32_MAX, &step) || step == 0))
        return false;
    if (strcmp(p, ".h5") != 0)
        return false;
    char canon[64];
    ckpt_name(canon, sizeof canon, ckpt_key(epoch, step));
    if (strcmp(canon, name) != 0)
        return false;
    *key = ckpt_key(epoch, step);
    return true;
}

static int ckpt_entry_cmp_desc(const void *a, const void *b)
{
    const CkptEntry *x = a, *y = b;
    int64_t kx = ckpt_key(x->epoch, x->epoch_step), ky = ckpt_key(y->epoch, y->epoch_step);
    return (kx < ky) - (kx > ky);
}

int ckpt_list(const char *dir, CkptEntry **out, size_t *n, char *err, size_t errlen)
{
    CkptEntry *list = NULL;
    size_t len = 0, cap = 0;
    int rc = -1;
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (!dir || !out || !n) {
        ckpt_err(err, errlen, "checkpoint: ckpt_list needs a directory and two outputs");
        return -1;
    }
    DIR *dp = opendir(dir);
    if (!dp) {
        if (errno == ENOENT)
            return 0;                   /* no checkpoint written yet */
        ckpt_err(err, errlen, "%s: cannot list checkpoint directory: %s", dir,
                 strerror(errno));
        return -1;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(dp);
        if (!de) {
            if (errno != 0) {
                ckpt_err(err, errlen, "%s: cannot list directory: %s", dir, strerror(errno));
                goto done;
            }
            break;
        }
        int64_t key;
        size_t nlen = strlen(de->d_name);
        /* the parser accepts only canonical names, which are shorter than 64 bytes */
        if (nlen >= sizeof list->name || !ckpt_parse_epoch_name(de->d_name, &key))
            continue;
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 64;
            CkptEntry *p = nc > SIZE_MAX / sizeof *p ? NULL : realloc(list, nc * sizeof *p);
            if (!p) {
                ckpt_err(err, errlen, "%s: out of memory listing checkpoints (%zu entries)",
                         dir, nc);
                goto done;
            }
            list = p;
            cap = nc;
        }
        CkptEntry *e = &list[len++];
        e->epoch = key >> 32;
        e->epoch_step = key & 0xffffffff;
        memcpy(e->name, de->d_name, nlen + 1);
    }
    if (len > 1)
        qsort(list, len, sizeof *list, ckpt_entry_cmp_desc);
    *out = list;
    *n = len;
    list = NULL;
    rc = 0;
done:
    free(list);
    closedir(dp);
    return rc;
}

/* Delete the oldest checkpoint files so that at most `keep` remain at or before `current`
 * (a ckpt_key), the file just written always among them. Files of a LATER place can only
 * come from an earlier run in the same directory; they are left alone (the new run
 * overwrites them as it reaches those places) rather than deleting work we did not write.
 * A failure costs disk space, never a checkpoint: it is a warning in warn (the first one,
 * with the count of further ones), never an error. */
static void ckpt_prune(const char *dir, int64_t current, long keep, const char *written,
                       char *warn, size_t warnlen)
{
    CkptEntry *all = NULL;
    size_t n = 0, kept = 0, failed = 0;
    char first[CKPT_ERR_MAX] = "";
    if (ckpt_list(dir, &all, &n, first, sizeof first) != 0)
        failed++;
    /* Newest first: skip the later places, keep `keep` at or before current. */
    for (size_t i = 0; i < n; i++) {
        if (ckpt_key(all[i].epoch, all[i].epoch_step) > current || ++kept <= (size_t)keep)
            continue;
        char path[CKPT_PATH_MAX], msg[CKPT_ERR_MAX];
        if (ckpt_join(path, sizeof path, dir, all[i].name, msg, sizeof msg) != 0) {
            failed++;
        } else if (unlink(path) != 0 && errno != ENOENT) {
            /* Gone already (another cleaner) is what we wanted anyway. */
            ckpt_err(msg, sizeof msg, "%s: cannot remove old checkpoint: %s", path,
                     strerror(errno));
            failed++;
        } else {
            continue;
        }
        if (failed == 1)
            snprintf(first, sizeof first, "%s", msg);
    }
    /* Deletions are not fsync'd: if a crash forgets one, the next save removes it. */
    free(all);
    if (failed > 0 && warn && warnlen > 0) {
        if (failed == 1)
            ckpt_err(warn, warnlen, "%s (new checkpoint %s was written)", first, written);
        else
            ckpt_err(warn, warnlen, "%s, and %zu more old checkpoints not removed (new "
                     "checkpoint %s was written)", first, failed - 1, written);
    }
}

/* The names ckpt_save gives its temporaries: ".NAME.tmp.PID" for a checkpoint name or
 * latest.h5 (fsafe removes the dead writers' ones). */
static bool ckpt_is_temp_base(const char *name)
{
    int64_t key;
    return strcmp(name, "latest.h5") == 0 || ckpt_parse_epoch_name(name, &key);
}

/* ------------------------------------------------------------------ writing */

/* File access properties of the in-memory file ckpt_save builds. */
static hid_t ckpt_fapl(const char *path, char *err, size_t errlen)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot create file access properties");
        return H5I_INVALID_HID;
    }
    /* STRONG: closing the file also closes anything of it still open, so one missed
     * identifier cannot keep the file open behind our back. */
    if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot set file close degree");
        goto fail;
    }
#if H5_VERSION_GE(1, 10, 7) && !(H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 12 && H5_VERS_RELEASE == 0)
    /* Cluster file systems (Lustre, NFS) often lack flock(); best-effort locking lets
     * checkpoints load there instead of failing with "unable to lock file". */
    if (H5Pset_file_locking(fapl, true, true) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot set file locking");
        goto fail;
    }
#endif
    return fapl;
fail:
    /* The failure above is the one to report; a failed close could add nothing. */
    (void)H5Pclose(fapl);
    return H5I_INVALID_HID;
}

static int ckpt_write_dset(hid_t file, const char *path, const char *name, hid_t ftype,
                           hid_t mtype, int rank, const hsize_t *dims, const void *data,
                           char *err, size_t errlen)
{
    hid_t space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    int rc = -1;
    hsize_t count = 1;
    for (int i = 0; i < rank; i++)
        count *= dims[i];

    space = H5Screate_simple(rank, dims, NULL);
    if (space < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot create dataspace for %s", name);
        goto done;
    }
    dset = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (dset < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot create dataset %s", name);
        goto done;
    }
    /* An empty history (no epoch finished yet) is a valid 0-length dataset with no data. */
    if (count > 0 && H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot write dataset %s", name);
        goto done;
    }
    rc = 0;
done:
    if (dset >= 0 && H5Dclose(dset) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close dataset %s", name);
        rc = -1;
    }
    if (space >= 0 && H5Sclose(space) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close dataspace of %s", name);
        rc = -1;
    }
    return rc;
}

/* Scalar attribute on the root group. */
static int ckpt_write_attr(hid_t file, const char *path, const char *name, hid_t ftype,
                           hid_t mtype, const void *buf, char *err, size_t errlen)
{
    hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    int rc = -1;
    space = H5Screate(H5S_SCALAR);
    if (space < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot create dataspace for attribute '%s'", name);
        goto done;
    }
    attr = H5Acreate2(file, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot create attribute '%s'", name);
        goto done;
    }
    if (H5Awrite(attr, mtype, buf) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot write attribute '%s'", name);
        goto done;
    }
    rc = 0;
done:
    if (attr >= 0 && H5Aclose(attr) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close attribute '%s'", name);
        rc = -1;
    }
    if (space >= 0 && H5Sclose(space) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close dataspace of attribute '%s'", name);
        rc = -1;
    }
    return rc;
}

static size_t ckpt_add_sat(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* Room for the in-memory file in one step if we can: the data plus room for metadata. */
static size_t ckpt_image_grow(const CkptState *s)
{
    size_t grow = (size_t)64 << 10;
    /* ckpt_check_state bounded each product times sizeof(float) by SIZE_MAX */
    grow = ckpt_add_sat(grow, s->d * s->hidden * sizeof(float));
    grow = ckpt_add_sat(grow, s->hidden * s->classes * sizeof(float));
    grow = ckpt_add_sat(grow, (s->hidden + s->classes) * sizeof(float));
    grow = ckpt_add_sat(grow, s->history.len > SIZE_MAX / 40 ? SIZE_MAX : s->history.len * 40);
    grow = ckpt_add_sat(grow, s->config ? strlen(s->config) : 0);
    return grow > ((size_t)256 << 20) ? (size_t)256 << 20 : grow;
}

/* An empty HDF5 file in memory (core driver, no backing store) with room for the seal
 * block in front. *fapl and *fcpl are the caller's to close, whatever happens. */
static hid_t ckpt_image_create(const char *path, const CkptState *s, hid_t *fapl,
                               hid_t *fcpl, char *err, size_t errlen)
{
    *fapl = ckpt_fapl(path, err, errlen);
    if (*fapl < 0)
        return H5I_INVALID_HID;
    if (H5Pset_fapl_core(*fapl, ckpt_image_grow(s), false) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot select the in-memory file driver");
        return H5I_INVALID_HID;
    }
    *fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (*fcpl < 0 || H5Pset_userblock(*fcpl, FSAFE_SEAL_BYTES) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot reserve the header block");
        return H5I_INVALID_HID;
    }
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, *fcpl, *fapl);
    if (file < 0)
        ckpt_h5_fail(err, errlen, path, "cannot create HDF5 file in memory");
    return file;
}

/* The groups of the schema, left open in groups[] (the caller closes them). */
static int ckpt_write_groups(hid_t file, const char *path, hid_t *groups, char *err,
                             size_t errlen)
{
    for (size_t i = 0; i < CKPT_NGROUPS; i++) {
        groups[i] = H5Gcreate2(file, ckpt_groups[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (groups[i] < 0) {
            ckpt_h5_fail(err, errlen, path, "cannot create group %s", ckpt_groups[i]);
            return -1;
        }
    }
    return 0;
}

/* Every dataset of the schema, native values in memory, little-endian on disk. */
static int ckpt_write_dsets(hid_t file, const char *path, const CkptState *s, char *err,
                            size_t errlen)
{
    hsize_t dim[CKPT_NDIMS];
    ckpt_dims_of(s, dim);
    for (size_t i = 0; i < CKPT_NDSETS; i++) {
        const CkptDsetSpec *d = &ckpt_dsets[i];
        if (d->optional && ckpt_dset_array(s, d) == NULL)
            continue;
        hsize_t dims[2];
        if (d->optional && !ckpt_dset_array(s, d))
            continue;
        for (int j = 0; j < d->rank; j++)
            dims[j] = dim[d->dims[j]];
        if (ckpt_write_dset(file, path, d->name, ckpt_ftype(d->type, H5I_INVALID_HID),
                            ckpt_mtype(d->type, H5I_INVALID_HID), d->rank, dims,
                            ckpt_dset_array(s, d), err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* Every root attribute of the schema. strtype: the variable-length UTF-8 string type. */
static int ckpt_write_attrs(hid_t file, const char *path, const CkptState *s, hid_t strtype,
                            char *err, size_t errlen)
{
    for (size_t i = 0; i < CKPT_NATTRS; i++) {
        const CkptAttrSpec *a = &ckpt_attrs[i];
        const char *field = (const char *)s + a->off;
        const void *buf = a->constant ? a->constant : field;
        const char *str = NULL;
        if (a->type == CKPT_STR && !a->constant) {
            /* HDF5 takes a variable-length string as a pointer to its pointer. */
            str = a->cap ? field : *(char *const *)field;
            if (!str)
                str = "";               /* no config text: an empty string */
            buf = &str;
        }
        if (ckpt_write_attr(file, path, a->name, ckpt_ftype(a->type, strtype),
                            ckpt_mtype(a->type, strtype), buf, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* The flushed in-memory file as one malloc'd image, the seal block in front and sealed. */
static int ckpt_image_take(hid_t file, const char *path, void **image, size_t *len,
                           char *err, size_t errlen)
{
    if (H5Fflush(file, H5F_SCOPE_LOCAL) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot flush file");
        return -1;
    }
    ssize_t n = H5Fget_file_image(file, NULL, 0);
    if (n <= 0) {
        ckpt_h5_fail(err, errlen, path, "cannot size the file image");
        return -1;
    }
    /* The image HDF5 hands back starts at the superblock: the seal block goes first. */
    char *buf = NULL;
    if ((size_t)n > SIZE_MAX - FSAFE_SEAL_BYTES ||
        !(buf = calloc((size_t)n + FSAFE_SEAL_BYTES, 1))) {
        ckpt_err(err, errlen, "%s: out of memory for the file image (%zd bytes)", path, n);
        return -1;
    }
    if (H5Fget_file_image(file, buf + FSAFE_SEAL_BYTES, (size_t)n) != n) {
        ckpt_h5_fail(err, errlen, path, "cannot copy the file image");
        free(buf);
        return -1;
    }
    if (fsafe_seal(buf, (size_t)n + FSAFE_SEAL_BYTES, CKPT_SEAL_TAG) != 0) {
        ckpt_err(err, errlen, "%s: cannot seal the file image", path);
        free(buf);
        return -1;
    }
    *image = buf;
    *len = (size_t)n + FSAFE_SEAL_BYTES;
    return 0;
}

/* Build the whole checkpoint as an HDF5 file image in memory (the core driver, no backing
 * store); `path` (the temporary name) only labels messages. On success *image (malloc'd)
 * holds *len bytes, sealed, for fsafe_write_atomic.
 *
 * Why not let HDF5 write the file: when a write fails (disk full, quota, EFBIG), HDF5 1.10
 * cannot close the file any more (every close retries the failed flush), and the half-open
 * file then crashes the library's atexit clean-up: a training run that should exit 1 with
 * "No space left on device" would die of SIGSEGV instead. In memory HDF5 meets no I/O
 * errors; the one write to disk is ours, plain POSIX, and fully checked. The cost is a
 * transient copy of the model (about d*h*4 bytes). */
int ckpt_build_image(const char *path, const CkptState *s, void **image, size_t *len,
                            char *err, size_t errlen)
{
    hid_t fapl = H5I_INVALID_HID, fcpl = H5I_INVALID_HID, file = H5I_INVALID_HID,
          groups[CKPT_NGROUPS] = {H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID},
          strtype = H5I_INVALID_HID;
    int rc = -1;
    *image = NULL;
    *len = 0;

    file = ckpt_image_create(path, s, &fapl, &fcpl, err, errlen);
    if (file < 0 || ckpt_write_groups(file, path, groups, err, errlen) != 0 ||
        ckpt_write_dsets(file, path, s, err, errlen) != 0)
        goto done;
    /* Strings are variable-length UTF-8: h5py returns those as str (fixed-length ones come
     * back as bytes), and the config text may exceed the 64 KiB limit on a fixed-length
     * attribute's own storage (variable-length data lives in the global heap). */
    strtype = H5Tcopy(H5T_C_S1);
    if (strtype < 0 || H5Tset_size(strtype, H5T_VARIABLE) < 0 ||
        H5Tset_cset(strtype, H5T_CSET_UTF8) < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot build the string type for attributes");
        goto done;
    }
    if (ckpt_write_attrs(file, path, s, strtype, err, errlen) != 0 ||
        ckpt_image_take(file, path, image, len, err, errlen) != 0)
        goto done;
    rc = 0;
done:
    if (fcpl >= 0 && H5Pclose(fcpl) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close file creation properties");
        rc = -1;
    }
    if (strtype >= 0 && H5Tclose(strtype) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close string type");
        rc = -1;
    }
    for (int i = (int)CKPT_NGROUPS - 1; i >= 0; i--) {
        if (groups[i] >= 0 && H5Gclose(groups[i]) < 0 && rc == 0) {
            ckpt_h5_fail(err, errlen, path, "cannot close group %s", ckpt_groups[i]);
            rc = -1;
        }
    }
    if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close file");
        rc = -1;
    }
    if (fapl >= 0 && H5Pclose(fapl) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close file access properties");
        rc = -1;
    }
    if (rc != 0) {
        free(*image);
        *image = NULL;
        *len = 0;
    }
    return rc;
}

/* The state handed to ckpt_save: arrays present, then the values ckpt_load checks too. */
int ckpt_check_state(const CkptState *s, long keep, char *err, size_t errlen)
{
    if (!s->W1 || !s->b1 || !s->W2 || !s->b2) {
        ckpt_err(err, errlen, "checkpoint: model arrays missing (W1, b1, W2, b2 must be set)");
        return -1;
    }
    if ((s->x_mean == NULL) != (s->x_std == NULL)) {
        ckpt_err(err, errlen, "checkpoint: x_mean and x_std go together");
        return -1;
    }
    const int nv = !!s->vW1 + !!s->vb1 + !!s->vW2 + !!s->vb2;
    if (nv != 0 && nv != 4) {
        ckpt_err(err, errlen, "checkpoint: velocity arrays: %d of 4 set (all or none)", nv);
        return -1;
    }
    const CkptHistory *h = &s->history;
    if (h->len > 0 && (!h->epoch || !h->train_loss || !h->train_acc || !h->test_acc ||
                       !h->seconds)) {
        ckpt_err(err, errlen, "checkpoint: history has %zu entries but no arrays", h->len);
        return -1;
    }
    if (keep < 0) {
        ckpt_err(err, errlen, "checkpoint: keep %ld is negative (0 = keep all)", keep);
        return -1;
    }
    return ckpt_check_values(s, "checkpoint", err, errlen);
}

int ckpt_save(const char *dir, CkptState *s, long keep, char *path_out, size_t path_len,
              char *err, size_t errlen)
{
    return ckpt_save_warn(dir, s, keep, path_out, path_len, NULL, 0, err, errlen);
}

int ckpt_save_warn(const char *dir, CkptState *s, long keep, char *path_out, size_t path_len,
                   char *warn, size_t warnlen, char *err, size_t errlen)
{
    char d[CKPT_PATH_MAX], name[64], final[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX];
    void *image = NULL;
    size_t image_len = 0;
    int rc = -1;
    CkptH5Quiet quiet;
    ckpt_h5_quiet(&quiet);
    if (warn && warnlen > 0)
        warn[0] = '\0';

    if (!dir || !s) {
        ckpt_err(err, errlen, "checkpoint: no directory or state given");
        goto done;
    }
    if (ckpt_check_state(s, keep, err, errlen) != 0)
        goto done;

    /* Directory without trailing slashes, so that names read "dir/epoch-0003.h5". */
    size_t n = strlen(dir);
    if (n == 0) {
        ckpt_err(err, errlen, "checkpoint: empty directory name");
        goto done;
    }
    if (n >= sizeof d) {
        ckpt_err(err, errlen, "%s: path too long (limit %zu bytes)", dir, sizeof d - 1);
        goto done;
    }
    memcpy(d, dir, n + 1);
    while (n > 1 && d[n - 1] == '/')
        d[--n] = '\0';

    ckpt_name(name, sizeof name, ckpt_key(s->epoch, s->epoch_step));
    if (ckpt_join(final, sizeof final, d, name, err, errlen) != 0 ||
        fsafe_temp_path(final, tmp, sizeof tmp, err, errlen) != 0)
        goto done;
    if (path_out && strlen(final) >= path_len) {
        ckpt_err(err, errlen, "%s: path does not fit the caller's buffer (%zu bytes)", final,
                 path_len);
        goto done;
    }

    time_t now = time(NULL);
    struct tm tm;
    if (now == (time_t)-1 || !gmtime_r(&now, &tm) ||
        strftime(s->created, sizeof s->created, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        ckpt_err(err, errlen, "%s: cannot read the clock for 'created'", final);
        goto done;
    }

    /* Build first: an HDF5 failure then leaves nothing at all on disk. The temporary's
     * name only labels HDF5's in-memory file. */
    if (ckpt_build_image(tmp, s, &image, &image_len, err, errlen) != 0)
        goto done;
    if (fsafe_mkdir_p(d, err, errlen) != 0)
        goto done;
    /* Before writing, so that a disk filled by crashed writers' leftovers has room again. */
    fsafe_remove_dead_temps(d, ckpt_is_temp_base);
    if (fsafe_write_atomic(final, image, image_len, err, errlen) != 0)
        goto done;
    /* latest.h5: a relative symlink (the directory can move) switched atomically, so
     * readers always see the old or the new target. */
    if (fsafe_symlink_swap(d, "latest.h5", name, err, errlen) != 0)
        goto done;

    if (keep > 0)
        ckpt_prune(d, ckpt_key(s->epoch, s->epoch_step), keep, final, warn, warnlen);

    if (path_out)
        snprintf(path_out, path_len, "%s", final);
    rc = 0;
done:
    free(image);
    ckpt_h5_restore(&quiet);
    return rc;
}
