/* checkpoint: the HDF5 schema of mlp checkpoints (one table of datasets and one of root
 * attributes, walked by both the writer and the reader), their validation, and the naming,
 * listing and pruning of checkpoint files in a directory. Contract and layout:
 * include/checkpoint.h.
 *
 * The file-safety layer (atomic replace, latest.h5 symlink swap, directory fsync, dead
 * writers' temporaries, the CRC seal) is fsafe's; this file decides WHAT is written and
 * accepted, fsafe HOW it reaches the disk.
 *
 * Every HDF5 identifier starts as H5I_INVALID_HID and is released at one cleanup label
 * per function; every HDF5 call is checked. HDF5's own error-stack printing is switched
 * off inside the public calls so that a failure reaches the user as ONE line naming the
 * path and the object, with HDF5's innermost message appended in parentheses.
 */
#include "checkpoint.h"

#include "fsafe.h"

#include <hdf5.h>
#include <hdf5_hl.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The first FSAFE_SEAL_BYTES bytes of a checkpoint are an HDF5 user block (HDF5 and its
 * tools skip it) holding fsafe's seal line: "mlp-checkpoint crc32 XXXXXXXX size N".
 * ckpt_load checks the size and the CRC-32 of everything after the block before HDF5
 * parses a byte, so a truncated or damaged file is one clear error, never a crash inside
 * libhdf5 (which fuzzing showed can crash or hang on damaged metadata). */
#define CKPT_SEAL_TAG CKPT_FORMAT

#define CKPT_PATH_MAX FSAFE_PATH_MAX
#define CKPT_H5_DETAIL 512             /* bytes of HDF5's own message kept */
#define CKPT_MAX_EXPANSION 1032u       /* deflate's largest ratio: data bytes per file byte */
/* ------------------------------------------------------------------ errors */

__attribute__((format(printf, 3, 4)))
static void ckpt_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* Messages quote text from the file (a foreign 'format'): keep them one line, so that
     * a forged newline cannot add a line of its own to the log (fuzz/regressions). */
    for (char *c = err; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = '?';
}

static herr_t ckpt_h5_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    /* Walking upward, entry 0 is the innermost (most specific) message. */
    if (n == 0 && e && e->desc)
        snprintf((char *)data, CKPT_H5_DETAIL, "%s", e->desc);
    return 0;
}

/* Make HDF5's innermost message fit on our one line. I/O failures carry a long record
 * (time stamp with a newline, file descriptor, buffer address) around the useful part,
 * "error message = 'No space left on device'": keep just that when present. */
static void ckpt_h5_tidy(char *detail)
{
    const char *key = "error message = '";
    char *p = strstr(detail, key);
    if (p) {
        p += strlen(key);
        char *q = strchr(p, '\'');
        if (q) {
            memmove(detail, p, (size_t)(q - p));
            detail[q - p] = '\0';
        }
    }
    for (char *c = detail; *c; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
}

/* "PATH: WHAT (innermost HDF5 message)". Must be called right after the failed HDF5 call:
 * the next API call clears the error stack. */
__attribute__((format(printf, 4, 5)))
static void ckpt_h5_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
    char what[512], detail[CKPT_H5_DETAIL] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, ckpt_h5_walk, detail) < 0)
        detail[0] = '\0';
    ckpt_h5_tidy(detail);
    if (detail[0])
        ckpt_err(err, errlen, "%s: %s (%s)", path, what, detail);
    else
        ckpt_err(err, errlen, "%s: %s", path, what);
}

/* HDF5 prints its whole error stack to stderr by default; we report one line instead. */
typedef struct {
    bool saved;
    H5E_auto2_t func;
    void *data;
} CkptH5Quiet;

static void ckpt_h5_quiet(CkptH5Quiet *q)
{
    q->saved = H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data) >= 0;
    /* If silencing fails HDF5 merely prints extra lines; our own message still comes. */
    (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void ckpt_h5_restore(const CkptH5Quiet *q)
{
    if (q->saved)
        (void)H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

/* File access properties shared by save and load. */
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
    if (!h->epoch || !h->train_loss || !h->train_acc || !h->test_acc || !h->seconds) {
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
        void *p[5] = {h->epoch, h->train_loss, h->train_acc, h->test_acc, h->seconds};
        int rc = 0;
        for (int i = 0; i < 5 && rc == 0; i++)
            rc = ckpt_grow(&p[i], cap, 8);
        /* Store every pointer back, grown or not, so nothing leaks on failure; cap only
         * moves once all five columns have the room. */
        h->epoch = p[0];
        h->train_loss = p[1];
        h->train_acc = p[2];
        h->test_acc = p[3];
        h->seconds = p[4];
        if (rc != 0)
            return -1;
        h->cap = cap;
    }
    h->epoch[h->len] = epoch;
    h->train_loss[h->len] = train_loss;
    h->train_acc[h->len] = train_acc;
    h->test_acc[h->len] = test_acc;
    h->seconds[h->len] = seconds;
    h->len++;
    return 0;
}

void ckpt_state_free(CkptState *s)
{
    if (!s)
        return;
    free(s->W1);
    free(s->b1);
    free(s->W2);
    free(s->b2);
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
 * overwrites them as it reaches those places) rather than deleting work we did not write. */
static int ckpt_prune(const char *dir, int64_t current, long keep, const char *written,
                      char *err, size_t errlen)
{
    CkptEntry *all = NULL;
    size_t n = 0;
    if (ckpt_list(dir, &all, &n, err, errlen) != 0)
        return -1;
    /* Newest first: skip the later places, keep `keep` at or before current. */
    size_t kept = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (ckpt_key(all[i].epoch, all[i].epoch_step) > current || ++kept <= (size_t)keep)
            continue;
        char path[CKPT_PATH_MAX];
        if (ckpt_join(path, sizeof path, dir, all[i].name, err, errlen) != 0) {
            rc = -1;
            break;
        }
        /* Gone already (another cleaner) is what we wanted anyway. */
        if (unlink(path) != 0 && errno != ENOENT) {
            ckpt_err(err, errlen, "%s: cannot remove old checkpoint: %s (new checkpoint %s was "
                     "written)", path, strerror(errno), written);
            rc = -1;
        }
    }
    /* Deletions are not fsync'd: if a crash forgets one, the next save removes it. */
    free(all);
    return rc;
}

/* The names ckpt_save gives its temporaries: ".NAME.tmp.PID" for a checkpoint name or
 * latest.h5 (fsafe removes the dead writers' ones). */
static bool ckpt_is_temp_base(const char *name)
{
    int64_t key;
    return strcmp(name, "latest.h5") == 0 || ckpt_parse_epoch_name(name, &key);
}

/* ------------------------------------------------------------------ the schema */

/* Every value of a checkpoint has one of these types: the file type is fixed
 * little-endian whatever the host, the memory type native. */
typedef enum { CKPT_F32, CKPT_F64, CKPT_I64, CKPT_U64, CKPT_STR } CkptType;

/* Dimensions a dataset's shape is made of: the model's, or the history's length. */
typedef enum { CKPT_DIM_D, CKPT_DIM_H, CKPT_DIM_K, CKPT_DIM_HIST, CKPT_NDIMS } CkptDim;

typedef struct {
    const char *name;           /* full path: "/model/W1" */
    const char *group;
    CkptType type;              /* CKPT_F32, CKPT_F64 or CKPT_I64 */
    int rank;
    CkptDim dims[2];            /* (rank) */
    size_t off;                 /* offset in CkptState of the array's pointer */
} CkptDsetSpec;

static const char *const ckpt_groups[] = {"/model", "/history"};

/* In file order. The history columns share one length, set by the first of them. */
static const CkptDsetSpec ckpt_dsets[] = {
    {"/model/W1", "/model", CKPT_F32, 2, {CKPT_DIM_D, CKPT_DIM_H}, offsetof(CkptState, W1)},
    {"/model/b1", "/model", CKPT_F32, 1, {CKPT_DIM_H}, offsetof(CkptState, b1)},
    {"/model/W2", "/model", CKPT_F32, 2, {CKPT_DIM_H, CKPT_DIM_K}, offsetof(CkptState, W2)},
    {"/model/b2", "/model", CKPT_F32, 1, {CKPT_DIM_K}, offsetof(CkptState, b2)},
    {"/history/epoch", "/history", CKPT_I64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.epoch)},
    {"/history/train_loss", "/history", CKPT_F64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.train_loss)},
    {"/history/train_acc", "/history", CKPT_F64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.train_acc)},
    {"/history/test_acc", "/history", CKPT_F64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.test_acc)},
    {"/history/seconds", "/history", CKPT_F64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.seconds)},
};
#define CKPT_NDSETS (sizeof ckpt_dsets / sizeof ckpt_dsets[0])

/* Root attributes, scalar, in file order. A constant (format, format_version) is written
 * from `constant` and checked against it on load; the rest live in CkptState at `off`,
 * strings either in a char array of `cap` bytes or, when cap is 0, as a char *. */
typedef struct {
    const char *name;
    CkptType type;
    const void *constant;
    size_t off;
    size_t cap;
} CkptAttrSpec;

static const char *const ckpt_format = CKPT_FORMAT;
static const int64_t ckpt_format_version = CKPT_FORMAT_VERSION;

#define CKPT_FIELD(f) offsetof(CkptState, f)
static const CkptAttrSpec ckpt_attrs[] = {
    {"format", CKPT_STR, &ckpt_format, 0, 0},
    {"format_version", CKPT_I64, &ckpt_format_version, 0, 0},
    {"d", CKPT_U64, NULL, CKPT_FIELD(d), 0},
    {"hidden", CKPT_U64, NULL, CKPT_FIELD(hidden), 0},
    {"classes", CKPT_U64, NULL, CKPT_FIELD(classes), 0},
    {"epoch", CKPT_I64, NULL, CKPT_FIELD(epoch), 0},
    {"step", CKPT_I64, NULL, CKPT_FIELD(step), 0},
    {"epoch_step", CKPT_I64, NULL, CKPT_FIELD(epoch_step), 0},
    {"epoch_loss", CKPT_F64, NULL, CKPT_FIELD(epoch_loss), 0},
    {"epoch_correct", CKPT_I64, NULL, CKPT_FIELD(epoch_correct), 0},
    {"epoch_seconds", CKPT_F64, NULL, CKPT_FIELD(epoch_seconds), 0},
    {"seed", CKPT_U64, NULL, CKPT_FIELD(seed), 0},
    {"batch", CKPT_I64, NULL, CKPT_FIELD(batch), 0},
    {"lr", CKPT_F64, NULL, CKPT_FIELD(lr), 0},
    {"reduce", CKPT_STR, NULL, CKPT_FIELD(reduce), sizeof ((CkptState *)0)->reduce},
    {"ranks", CKPT_I64, NULL, CKPT_FIELD(ranks), 0},
    {"threads_per_rank", CKPT_I64, NULL, CKPT_FIELD(threads_per_rank), 0},
    {"config", CKPT_STR, NULL, CKPT_FIELD(config), 0},
    {"created", CKPT_STR, NULL, CKPT_FIELD(created), sizeof ((CkptState *)0)->created},
    {"mlp_version", CKPT_STR, NULL, CKPT_FIELD(mlp_version),
     sizeof ((CkptState *)0)->mlp_version},
};
#define CKPT_NATTRS (sizeof ckpt_attrs / sizeof ckpt_attrs[0])

/* HDF5's type identifiers are run-time values (H5open), hence functions, not a table.
 * The string type is the caller's (it must be built and closed). */
static hid_t ckpt_ftype(CkptType t, hid_t strtype)
{
    switch (t) {
    case CKPT_F32: return H5T_IEEE_F32LE;
    case CKPT_F64: return H5T_IEEE_F64LE;
    case CKPT_I64: return H5T_STD_I64LE;
    case CKPT_U64: return H5T_STD_U64LE;
    default: return strtype;
    }
}

static hid_t ckpt_mtype(CkptType t, hid_t strtype)
{
    switch (t) {
    case CKPT_F32: return H5T_NATIVE_FLOAT;
    case CKPT_F64: return H5T_NATIVE_DOUBLE;
    case CKPT_I64: return H5T_NATIVE_INT64;
    case CKPT_U64: return H5T_NATIVE_UINT64;
    default: return strtype;
    }
}

static size_t ckpt_type_size(CkptType t)
{
    return t == CKPT_F32 ? sizeof(float) : 8;
}

/* The array of dataset spec `d` in s (NULL when not allocated). */
static void *ckpt_dset_array(const CkptState *s, const CkptDsetSpec *d)
{
    const char *p = (const char *)s + d->off;
    switch (d->type) {
    case CKPT_F32: return *(float *const *)p;
    case CKPT_I64: return *(int64_t *const *)p;
    default: return *(double *const *)p;
    }
}

/* The value of each dimension in s (the history's length included). */
static void ckpt_dims_of(const CkptState *s, hsize_t dim[CKPT_NDIMS])
{
    dim[CKPT_DIM_D] = s->d;
    dim[CKPT_DIM_H] = s->hidden;
    dim[CKPT_DIM_K] = s->classes;
    dim[CKPT_DIM_HIST] = s->history.len;
}

/* ------------------------------------------------------------------ writing */

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
    for (size_t i = 0; i < sizeof ckpt_groups / sizeof ckpt_groups[0]; i++) {
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
        hsize_t dims[2];
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
static int ckpt_build_image(const char *path, const CkptState *s, void **image, size_t *len,
                            char *err, size_t errlen)
{
    hid_t fapl = H5I_INVALID_HID, fcpl = H5I_INVALID_HID, file = H5I_INVALID_HID,
          groups[2] = {H5I_INVALID_HID, H5I_INVALID_HID}, strtype = H5I_INVALID_HID;
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
    for (int i = 1; i >= 0; i--) {
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

static bool ckpt_terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static int ckpt_check_state(const CkptState *s, long keep, char *err, size_t errlen)
{
    if (s->d == 0 || s->hidden == 0 || s->classes == 0) {
        ckpt_err(err, errlen, "checkpoint: bad shape d=%" PRIu64 " hidden=%" PRIu64
                 " classes=%" PRIu64 " (all must be positive)", s->d, s->hidden, s->classes);
        return -1;
    }
    if (s->d > SIZE_MAX / sizeof(float) / s->hidden ||
        s->classes > SIZE_MAX / sizeof(float) / s->hidden) {
        ckpt_err(err, errlen, "checkpoint: shape d=%" PRIu64 " hidden=%" PRIu64 " classes=%"
                 PRIu64 " too large", s->d, s->hidden, s->classes);
        return -1;
    }
    if (!s->W1 || !s->b1 || !s->W2 || !s->b2) {
        ckpt_err(err, errlen, "checkpoint: model arrays missing (W1, b1, W2, b2 must be set)");
        return -1;
    }
    const CkptHistory *h = &s->history;
    if (h->len > 0 && (!h->epoch || !h->train_loss || !h->train_acc || !h->test_acc ||
                       !h->seconds)) {
        ckpt_err(err, errlen, "checkpoint: history has %zu entries but no arrays", h->len);
        return -1;
    }
    if (s->epoch < 0) {
        ckpt_err(err, errlen, "checkpoint: epoch %" PRId64 " is negative", s->epoch);
        return -1;
    }
    if (s->epoch > INT32_MAX || s->epoch_step < 0 || s->epoch_step > UINT32_MAX) {
        ckpt_err(err, errlen, "checkpoint: position epoch %" PRId64 " step %" PRId64
                 " out of range", s->epoch, s->epoch_step);
        return -1;
    }
    if (keep < 0) {
        ckpt_err(err, errlen, "checkpoint: keep %ld is negative (0 = keep all)", keep);
        return -1;
    }
    if (!ckpt_terminated(s->reduce, sizeof s->reduce) ||
        !ckpt_terminated(s->mlp_version, sizeof s->mlp_version)) {
        ckpt_err(err, errlen, "checkpoint: reduce or mlp_version string not terminated");
        return -1;
    }
    return 0;
}

int ckpt_save(const char *dir, CkptState *s, long keep, char *path_out, size_t path_len,
              char *err, size_t errlen)
{
    char d[CKPT_PATH_MAX], name[64], final[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX];
    void *image = NULL;
    size_t image_len = 0;
    int rc = -1;
    CkptH5Quiet quiet;
    ckpt_h5_quiet(&quiet);

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

    if (keep > 0 &&
        ckpt_prune(d, ckpt_key(s->epoch, s->epoch_step), keep, final, err, errlen) != 0)
        goto done;

    if (path_out)
        snprintf(path_out, path_len, "%s", final);
    rc = 0;
done:
    free(image);
    ckpt_h5_restore(&quiet);
    return rc;
}

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
 * lets a dataset's shape exceed what is stored (unwritten chunks read as the fill value),
 * so a 13 KB file could make us allocate and fill gigabytes (fuzz/regressions). Refuse
 * more data than the file could hold even if deflate-compressed (at most 1032 bytes per
 * stored byte); ckpt_save stores everything uncompressed. */
static int ckpt_check_size(const char *path, const char *name, hsize_t count, size_t elem,
                           uint64_t file_size, char *err, size_t errlen)
{
    const uint64_t most = file_size > UINT64_MAX / CKPT_MAX_EXPANSION
                              ? UINT64_MAX : file_size * CKPT_MAX_EXPANSION;
    if (count > most / elem || count > SIZE_MAX / elem) {
        ckpt_err(err, errlen, "%s: %s has %llu entries, more than this %" PRIu64 "-byte file "
                 "can hold (corrupt?)", path, name, (unsigned long long)count, file_size);
        return -1;
    }
    return 0;
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
    if (ckpt_check_size(path, d->name, n, ckpt_type_size(d->type), file_size, err,
                        errlen) != 0)
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
    hsize_t count[CKPT_NDSETS];
    for (size_t i = 0; i < CKPT_NDSETS; i++)
        if (ckpt_check_dset(file, path, file_size, &ckpt_dsets[i], &sh, &count[i], err,
                            errlen) != 0)
            return -1;
    const hsize_t len = sh.dim[CKPT_DIM_HIST];
    if (len > SIZE_MAX / sizeof(double) || ckpt_history_init(&t->history, (size_t)len) != 0) {
        ckpt_err(err, errlen, "%s: out of memory for a history of %llu epochs", path,
                 (unsigned long long)len);
        return -1;
    }
    for (size_t i = 0; i < CKPT_NDSETS; i++) {
        const CkptDsetSpec *d = &ckpt_dsets[i];
        if (!ckpt_dset_in_history(d)) {
            /* model arrays: float32, count bounded by ckpt_check_size */
            float *buf = malloc((size_t)count[i] * sizeof *buf);
            if (!buf) {
                ckpt_err(err, errlen, "%s: out of memory for %s (%zu bytes)", path, d->name,
                         (size_t)count[i] * sizeof *buf);
                return -1;
            }
            *(float **)((char *)t + d->off) = buf;
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

static int ckpt_read_version(hid_t file, const char *path, char *err, size_t errlen)
{
    int64_t version = 0;
    if (ckpt_read_num(file, path, "format_version", H5T_NATIVE_INT64, false, &version, err,
                      errlen) != 0)
        return -1;
    if (version != CKPT_FORMAT_VERSION) {
        ckpt_err(err, errlen, "%s: format_version %" PRId64 " not supported (this mlp reads %d)",
                 path, version, CKPT_FORMAT_VERSION);
        return -1;
    }
    return 0;
}

/* Every root attribute of the schema into t; the constants (format first) checked. */
static int ckpt_read_attrs(hid_t file, const char *path, CkptState *t, char *err,
                           size_t errlen)
{
    if (ckpt_read_format(file, path, err, errlen) != 0 ||
        ckpt_read_version(file, path, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < CKPT_NATTRS; i++) {
        const CkptAttrSpec *a = &ckpt_attrs[i];
        char *field = (char *)t + a->off;
        int rc;
        if (a->constant)
            continue;                   /* checked above */
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
    if (t->d == 0 || t->hidden == 0 || t->classes == 0 ||
        t->d > SIZE_MAX / sizeof(float) / t->hidden ||
        t->classes > SIZE_MAX / sizeof(float) / t->hidden) {
        ckpt_err(err, errlen, "%s: bad shape attributes d=%" PRIu64 " hidden=%" PRIu64
                 " classes=%" PRIu64, path, t->d, t->hidden, t->classes);
        return -1;
    }
    return ckpt_read_dsets(file, path, file_size, t, err, errlen);
}

/* The seal's size and CRC-32 against the file (see CKPT_SEAL_TAG). A file without the
 * seal line (not written by ckpt_save) is left to HDF5's own checks. */
static int ckpt_check_seal(int fd, const char *path, char *err, size_t errlen)
{
    FsafeSealInfo in;
    switch (fsafe_seal_check(fd, path, CKPT_SEAL_TAG, &in, err, errlen)) {
    case FSAFE_SEAL_OK:
    case FSAFE_SEAL_MISSING:
        return 0;
    case FSAFE_SEAL_SIZE:
        ckpt_err(err, errlen, "%s: truncated or corrupt HDF5 file (%" PRIu64 " bytes; its "
                 "header says %" PRIu64 ")", path, in.size_file, in.size_sealed);
        return -1;
    case FSAFE_SEAL_CRC:
        ckpt_err(err, errlen, "%s: truncated or corrupt HDF5 file (CRC-32 %08" PRIx32 "; its "
                 "header says %08" PRIx32 ")", path, in.crc_file, in.crc_sealed);
        return -1;
    default:
        return -1;                      /* FSAFE_SEAL_IO: err is set */
    }
}

int ckpt_load(const char *path, CkptState *s, char *err, size_t errlen)
{
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID;
    CkptState t;
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
    /* Plain checks first: HDF5's messages for these cases are long and indirect. */
    struct stat st;
    if (stat(path, &st) != 0) {
        ckpt_err(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        ckpt_err(err, errlen, "%s: is a directory, not a checkpoint file", path);
        goto done;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ckpt_err(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    int sealed = ckpt_check_seal(fd, path, err, errlen);
    close(fd);
    if (sealed != 0)
        goto done;
    fapl = ckpt_fapl(path, err, errlen);
    if (fapl < 0)
        goto done;
#if H5_VERSION_GE(1, 12, 0)
    htri_t ok = H5Fis_accessible(path, fapl);
#else
    htri_t ok = H5Fis_hdf5(path);          /* H5Fis_accessible arrived in 1.12 */
#endif
    if (ok < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot check whether this is an HDF5 file");
        goto done;
    }
    if (ok == 0) {
        ckpt_err(err, errlen, "%s: not an HDF5 file", path);
        goto done;
    }
    file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (file < 0) {
        ckpt_h5_fail(err, errlen, path, "cannot open: truncated or corrupt HDF5 file");
        goto done;
    }
    if (ckpt_read_all(file, path, (uint64_t)st.st_size, &t, err, errlen) != 0)
        goto done;
    rc = 0;
done:
    if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close file");
        rc = -1;
    }
    if (fapl >= 0 && H5Pclose(fapl) < 0 && rc == 0) {
        ckpt_h5_fail(err, errlen, path, "cannot close file access properties");
        rc = -1;
    }
    ckpt_h5_restore(&quiet);
    if (rc == 0)
        *s = t;
    else
        ckpt_state_free(&t);
    return rc;
}
