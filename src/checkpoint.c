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
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
/* ------------------------------------------------------------------ errors */

/* Length of the valid UTF-8 sequence of a printable character (U+00A0 and up) at p, or 0
 * (ASCII, a C1 control U+0080..U+009F, an overlong form, a surrogate, a stray byte). */
static size_t ckpt_utf8_len(const unsigned char *p)
{
    size_t n;
    uint32_t cp;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2, cp = p[0] & 0x1fu;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3, cp = p[0] & 0x0fu;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4, cp = p[0] & 0x07u;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;                   /* also stops at the terminating NUL */
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if (cp < 0xa0 || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

size_t ckpt_escape(char *out, size_t outlen, const char *in)
{
    size_t o = 0;
    if (outlen == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)in; *p;) {
        char buf[8];
        size_t n = ckpt_utf8_len(p), k;
        if (*p >= 0x20 && *p < 0x7f) {
            buf[0] = (char)*p, k = 1;
        } else if (n > 0) {
            memcpy(buf, p, n), k = n;
        } else {
            const char *name = *p == '\n' ? "\\n"
                               : *p == '\r' ? "\\r"
                               : *p == '\t' ? "\\t" : NULL;
            if (name)
                k = (size_t)snprintf(buf, sizeof buf, "%s", name);
            else
                k = (size_t)snprintf(buf, sizeof buf, "\\x%02x", *p);
        }
        if (o + k >= outlen)
            break;                      /* never half an escape or half a character */
        memcpy(out + o, buf, k);
        o += k;
        p += n > 0 ? n : 1;
    }
    out[o] = '\0';
    return o;
}

__attribute__((format(printf, 3, 4)))
static void ckpt_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    char raw[2 * CKPT_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* Messages quote text from the file (a foreign 'format', a path): keep them one line
     * of printable text, so that a forged newline cannot add a line of its own to the log
     * and an escape sequence cannot reach the terminal (fuzz/regressions). */
    ckpt_escape(err, errlen, raw);
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
    bool optional;              /* written when its array is set; may be absent on load
                                 * (files of an older mlp, or an optimizer without state):
                                 * the pointer then stays NULL */
} CkptDsetSpec;

static const char *const ckpt_groups[] = {"/model", "/history", "/optimizer"};
#define CKPT_NGROUPS (sizeof ckpt_groups / sizeof ckpt_groups[0])

/* In file order. The history columns share one length, set by the first of them. */
static const CkptDsetSpec ckpt_dsets[] = {
    {"/model/W1", "/model", CKPT_F32, 2, {CKPT_DIM_D, CKPT_DIM_H}, offsetof(CkptState, W1),
     false},
    {"/model/b1", "/model", CKPT_F32, 1, {CKPT_DIM_H}, offsetof(CkptState, b1), false},
    {"/model/W2", "/model", CKPT_F32, 2, {CKPT_DIM_H, CKPT_DIM_K}, offsetof(CkptState, W2),
     false},
    {"/model/b2", "/model", CKPT_F32, 1, {CKPT_DIM_K}, offsetof(CkptState, b2), false},
    {"/history/epoch", "/history", CKPT_I64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.epoch), false},
    {"/history/train_loss", "/history", CKPT_F64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.train_loss), false},
    {"/history/train_acc", "/history", CKPT_F64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.train_acc), false},
    {"/history/test_acc", "/history", CKPT_F64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.test_acc), false},
    {"/history/seconds", "/history", CKPT_F64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.seconds), false},
    /* data.normalize = standardize (since mlp 0.3): the training set's statistics */
    {"/model/x_mean", "/model", CKPT_F64, 1, {CKPT_DIM_D}, offsetof(CkptState, x_mean), true},
    {"/model/x_std", "/model", CKPT_F64, 1, {CKPT_DIM_D}, offsetof(CkptState, x_std), true},
    /* format_version 2: the validation split's columns and the test loss (NaN where not
     * measured; filled with NaN when a version 1 file lacks them) */
    {"/history/val_loss", "/history", CKPT_F64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.val_loss), true},
    {"/history/val_acc", "/history", CKPT_F64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.val_acc), true},
    {"/history/test_loss", "/history", CKPT_F64, 1, {CKPT_DIM_HIST},
     offsetof(CkptState, history.test_loss), true},
    /* format_version 2: the velocity of momentum / nesterov */
    {"/optimizer/W1", "/optimizer", CKPT_F32, 2, {CKPT_DIM_D, CKPT_DIM_H},
     offsetof(CkptState, vW1), true},
    {"/optimizer/b1", "/optimizer", CKPT_F32, 1, {CKPT_DIM_H}, offsetof(CkptState, vb1), true},
    {"/optimizer/W2", "/optimizer", CKPT_F32, 2, {CKPT_DIM_H, CKPT_DIM_K},
     offsetof(CkptState, vW2), true},
    {"/optimizer/b2", "/optimizer", CKPT_F32, 1, {CKPT_DIM_K}, offsetof(CkptState, vb2), true},
};
#define CKPT_NDSETS (sizeof ckpt_dsets / sizeof ckpt_dsets[0])

/* Root attributes, scalar, in file order. A constant (format, format_version) is written
 * from `constant` and checked against it on load; the rest live in CkptState at `off`,
 * strings either in a char array of `cap` bytes or, when cap is 0, as a char *. A number
 * must lie in [lo, hi] (in (lo, hi] when `above`), floating-point ones also be finite;
 * ckpt_check_values applies this on save and on load alike. An `optional` attribute, added
 * after format_version 1 files were written, may be missing from a file. */
typedef struct {
    const char *name;
    CkptType type;
    const void *constant;
    size_t off;
    size_t cap;
    double lo, hi;
    bool above;
    bool optional;    /* may be absent (files of an older mlp): left 0 or "" on load */
} CkptAttrSpec;

static const char *const ckpt_format = CKPT_FORMAT;
static const int64_t ckpt_format_version = CKPT_FORMAT_VERSION;

#define CKPT_FIELD(f) offsetof(CkptState, f)
#define CKPT_CAP(f) sizeof ((CkptState *)0)->f
#define CKPT_MAX_I32 2147483647.0           /* INT32_MAX */
#define CKPT_MAX_U32 4294967295.0           /* UINT32_MAX: steps of an epoch in a name's key */
#define CKPT_MAX_I64 9223372036854775807.0  /* INT64_MAX, as a double */
#define CKPT_MAX_U64 18446744073709551615.0
static const CkptAttrSpec ckpt_attrs[] = {
    {"format", CKPT_STR, &ckpt_format, 0, 0, 0, 0, false, false},
    {"format_version", CKPT_I64, &ckpt_format_version, 0, 0, 0, 0, false, false},
    {"d", CKPT_U64, NULL, CKPT_FIELD(d), 0, 1, CKPT_MAX_U64, false, false},
    {"hidden", CKPT_U64, NULL, CKPT_FIELD(hidden), 0, 1, CKPT_MAX_U64, false, false},
    {"classes", CKPT_U64, NULL, CKPT_FIELD(classes), 0, 1, CKPT_MAX_U64, false, false},
    {"epoch", CKPT_I64, NULL, CKPT_FIELD(epoch), 0, 0, CKPT_MAX_I32, false, false},
    {"step", CKPT_I64, NULL, CKPT_FIELD(step), 0, 0, CKPT_MAX_I64, false, false},
    {"epoch_step", CKPT_I64, NULL, CKPT_FIELD(epoch_step), 0, 0, CKPT_MAX_U32, false, false},
    {"epoch_loss", CKPT_F64, NULL, CKPT_FIELD(epoch_loss), 0, 0, HUGE_VAL, false, false},
    {"epoch_correct", CKPT_I64, NULL, CKPT_FIELD(epoch_correct), 0, 0, CKPT_MAX_I64, false,
     false},
    {"epoch_seconds", CKPT_F64, NULL, CKPT_FIELD(epoch_seconds), 0, 0, HUGE_VAL, false, false},
    {"seed", CKPT_U64, NULL, CKPT_FIELD(seed), 0, 0, CKPT_MAX_U64, false, false},
    {"batch", CKPT_I64, NULL, CKPT_FIELD(batch), 0, 1, CKPT_MAX_I32, false, false},
    {"lr", CKPT_F64, NULL, CKPT_FIELD(lr), 0, 0, HUGE_VAL, true, false},
    {"reduce", CKPT_STR, NULL, CKPT_FIELD(reduce), CKPT_CAP(reduce), 0, 0, false, false},
    {"ranks", CKPT_I64, NULL, CKPT_FIELD(ranks), 0, 1, CKPT_MAX_I32, false, false},
    {"threads_per_rank", CKPT_I64, NULL, CKPT_FIELD(threads_per_rank), 0, 1, CKPT_MAX_I32,
     false, false},
    {"config", CKPT_STR, NULL, CKPT_FIELD(config), 0, 0, 0, false, false},
    {"created", CKPT_STR, NULL, CKPT_FIELD(created), CKPT_CAP(created), 0, 0, false, false},
    {"mlp_version", CKPT_STR, NULL, CKPT_FIELD(mlp_version), CKPT_CAP(mlp_version), 0, 0,
     false, false},
    /* Provenance (since mlp 0.2): which binary on which CPU; absent from older files. */
    {"build_commit", CKPT_STR, NULL, CKPT_FIELD(build_commit), CKPT_CAP(build_commit), 0, 0,
     false, true},
    {"build_compiler", CKPT_STR, NULL, CKPT_FIELD(build_compiler), CKPT_CAP(build_compiler), 0,
     0, false, true},
    {"build_flags", CKPT_STR, NULL, CKPT_FIELD(build_flags), CKPT_CAP(build_flags), 0, 0,
     false, true},
    {"build_isa", CKPT_STR, NULL, CKPT_FIELD(build_isa), CKPT_CAP(build_isa), 0, 0, false,
     true},
    {"cpu_model", CKPT_STR, NULL, CKPT_FIELD(cpu_model), CKPT_CAP(cpu_model), 0, 0, false,
     true},
    {"nodes", CKPT_I64, NULL, CKPT_FIELD(nodes), 0, 0, CKPT_MAX_I32, false, true},
    /* The data (since mlp 0.3): absent from older files. */
    {"train_samples", CKPT_I64, NULL, CKPT_FIELD(train_samples), 0, 0, CKPT_MAX_U32, false,
     true},
    {"test_samples", CKPT_I64, NULL, CKPT_FIELD(test_samples), 0, 0, CKPT_MAX_U32, false,
     true},
    {"train_crc", CKPT_I64, NULL, CKPT_FIELD(train_crc), 0, 0, CKPT_MAX_U32, false, true},
    {"input_type", CKPT_STR, NULL, CKPT_FIELD(input_type), CKPT_CAP(input_type), 0, 0, false,
     true},
    {"normalize", CKPT_STR, NULL, CKPT_FIELD(normalize), CKPT_CAP(normalize), 0, 0, false,
     true},
    /* format_version 2: the best validation epoch so far (0 = none) and its accuracy */
    {"best_val_acc", CKPT_F64, NULL, CKPT_FIELD(best_val_acc), 0, 0, 1, false, true},
    {"best_epoch", CKPT_I64, NULL, CKPT_FIELD(best_epoch), 0, 0, CKPT_MAX_I32, false, true},
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
static int ckpt_build_image(const char *path, const CkptState *s, void **image, size_t *len,
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

static bool ckpt_terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

/* One numeric attribute against its range in the table. */
static int ckpt_check_number(const CkptState *s, const CkptAttrSpec *a, const char *who,
                             char *err, size_t errlen)
{
    const char *field = (const char *)s + a->off;
    char shown[64];
    double v;
    if (a->type == CKPT_I64) {
        int64_t x;
        memcpy(&x, field, sizeof x);
        v = (double)x;
        snprintf(shown, sizeof shown, "%" PRId64, x);
    } else if (a->type == CKPT_U64) {
        uint64_t x;
        memcpy(&x, field, sizeof x);
        v = (double)x;
        snprintf(shown, sizeof shown, "%" PRIu64, x);
    } else {
        memcpy(&v, field, sizeof v);
        snprintf(shown, sizeof shown, "%.17g", v);
    }
    /* (double) of a 64-bit integer rounds, but never across a bound below 2^53 */
    if (isfinite(v) && v >= a->lo && v <= a->hi && !(a->above && v == a->lo))
        return 0;
    char range[96];
    if (a->type == CKPT_F64)
        snprintf(range, sizeof range, "finite and %s %g", a->above ? ">" : ">=", a->lo);
    else
        snprintf(range, sizeof range, "%.0f to %.0f", a->lo, a->hi);
    ckpt_err(err, errlen, "%s: attribute '%s' = %s out of range (%s)", who, a->name, shown,
             range);
    return -1;
}

/* The values of a checkpoint, the same on save and on load (who: "checkpoint" or the
 * path): shapes, every numeric attribute's range, the mid-epoch position's consistency,
 * reduce, and a history of at most `epoch` rising epochs. Arrays must be present. */
static int ckpt_check_values(const CkptState *s, const char *who, char *err, size_t errlen)
{
    if (s->d == 0 || s->hidden == 0 || s->classes == 0) {
        ckpt_err(err, errlen, "%s: bad shape d=%" PRIu64 " hidden=%" PRIu64
                 " classes=%" PRIu64 " (all must be positive)", who, s->d, s->hidden,
                 s->classes);
        return -1;
    }
    if (s->d > SIZE_MAX / sizeof(float) / s->hidden ||
        s->classes > SIZE_MAX / sizeof(float) / s->hidden) {
        ckpt_err(err, errlen, "%s: shape d=%" PRIu64 " hidden=%" PRIu64 " classes=%"
                 PRIu64 " too large", who, s->d, s->hidden, s->classes);
        return -1;
    }
    for (size_t i = 0; i < CKPT_NATTRS; i++)
        if (!ckpt_attrs[i].constant && ckpt_attrs[i].type != CKPT_STR &&
            ckpt_check_number(s, &ckpt_attrs[i], who, err, errlen) != 0)
            return -1;
    for (uint64_t j = 0; s->x_mean && s->x_std && j < s->d; j++) {
        if (!isfinite(s->x_mean[j]) || !(s->x_std[j] > 0.0) || !isfinite(s->x_std[j])) {
            ckpt_err(err, errlen, "%s: /model/x_mean, x_std at feature %" PRIu64 " are %g, %g "
                     "(a mean must be finite, a standard deviation finite and > 0)", who, j,
                     s->x_mean[j], s->x_std[j]);
            return -1;
        }
    }
    if (s->epoch_step > s->step) {
        ckpt_err(err, errlen, "%s: attribute 'epoch_step' = %" PRId64 " exceeds 'step' = %"
                 PRId64, who, s->epoch_step, s->step);
        return -1;
    }
    /* each step of the partial epoch saw one global batch: epoch_step <= 2^32, batch < 2^31 */
    if (s->epoch_correct > s->epoch_step * s->batch) {
        ckpt_err(err, errlen, "%s: attribute 'epoch_correct' = %" PRId64 " out of range (at "
                 "most epoch_step %" PRId64 " x batch %" PRId64 " samples were seen)", who,
                 s->epoch_correct, s->epoch_step, s->batch);
        return -1;
    }
    if (!ckpt_terminated(s->reduce, sizeof s->reduce) ||
        !ckpt_terminated(s->mlp_version, sizeof s->mlp_version) ||
        !ckpt_terminated(s->created, sizeof s->created)) {
        ckpt_err(err, errlen, "%s: reduce, created or mlp_version string not terminated", who);
        return -1;
    }
    if (strcmp(s->reduce, "exact") != 0 && strcmp(s->reduce, "fast") != 0) {
        ckpt_err(err, errlen, "%s: attribute 'reduce' = '%s' (exact or fast)", who, s->reduce);
        return -1;
    }
    const CkptHistory *h = &s->history;
    if (h->len > (uint64_t)s->epoch) {
        ckpt_err(err, errlen, "%s: the history has %zu epoch%s, more than attribute 'epoch' = %"
                 PRId64, who, h->len, h->len == 1 ? "" : "s", s->epoch);
        return -1;
    }
    for (size_t i = 0; i < h->len; i++) {
        int64_t lo = i ? h->epoch[i - 1] + 1 : 1;
        if (h->epoch[i] < lo || h->epoch[i] > s->epoch) {
            ckpt_err(err, errlen, "%s: /history/epoch[%zu] = %" PRId64 " out of range (%" PRId64
                     " to %" PRId64 ": epochs rise and are at most 'epoch')", who, i,
                     h->epoch[i], lo, s->epoch);
            return -1;
        }
    }
    return 0;
}

/* The state handed to ckpt_save: arrays present, then the values ckpt_load checks too. */
static int ckpt_check_state(const CkptState *s, long keep, char *err, size_t errlen)
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
    hsize_t count[CKPT_NDSETS];
    bool absent[CKPT_NDSETS];
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

static int ckpt_read_version(hid_t file, const char *path, char *err, size_t errlen)
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
