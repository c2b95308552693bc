/* ckpt_schema.c: the checkpoint schema, its checks and the module's error reporting; see
 * src/ckpt_schema.h for how the checkpoint module is split, include/checkpoint.h for the
 * contract.
 *
 * Every HDF5 identifier starts as H5I_INVALID_HID and is released at one cleanup label
 * per function; every HDF5 call is checked. HDF5's own error-stack printing is switched
 * off inside the public calls so that a failure reaches the user as ONE line naming the
 * path and the object, with HDF5's innermost message appended in parentheses.
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
void ckpt_err(char *err, size_t errlen, const char *fmt, ...)
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
void ckpt_h5_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
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

void ckpt_h5_quiet(CkptH5Quiet *q)
{
    q->saved = H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data) >= 0;
    /* If silencing fails HDF5 merely prints extra lines; our own message still comes. */
    (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void ckpt_h5_restore(const CkptH5Quiet *q)
{
    if (q->saved)
        (void)H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}


/* ------------------------------------------------------------------ the schema */

const char *const ckpt_groups[] = {"/model", "/history", "/optimizer"};
_Static_assert(sizeof ckpt_groups / sizeof ckpt_groups[0] == CKPT_NGROUPS, "ckpt_groups");

/* In file order. The history columns share one length, set by the first of them. */
const CkptDsetSpec ckpt_dsets[] = {
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
const size_t ckpt_ndsets = sizeof ckpt_dsets / sizeof ckpt_dsets[0];
_Static_assert(sizeof ckpt_dsets / sizeof ckpt_dsets[0] <= CKPT_NDSETS_MAX, "CKPT_NDSETS_MAX");

static const char *const ckpt_format = CKPT_FORMAT;
static const int64_t ckpt_format_version = CKPT_FORMAT_VERSION;

const CkptAttrSpec ckpt_attrs[] = {
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
const size_t ckpt_nattrs = sizeof ckpt_attrs / sizeof ckpt_attrs[0];

/* HDF5's type identifiers are run-time values (H5open), hence functions, not a table.
 * The string type is the caller's (it must be built and closed). */
hid_t ckpt_ftype(CkptType t, hid_t strtype)
{
    switch (t) {
    case CKPT_F32: return H5T_IEEE_F32LE;
    case CKPT_F64: return H5T_IEEE_F64LE;
    case CKPT_I64: return H5T_STD_I64LE;
    case CKPT_U64: return H5T_STD_U64LE;
    default: return strtype;
    }
}

hid_t ckpt_mtype(CkptType t, hid_t strtype)
{
    switch (t) {
    case CKPT_F32: return H5T_NATIVE_FLOAT;
    case CKPT_F64: return H5T_NATIVE_DOUBLE;
    case CKPT_I64: return H5T_NATIVE_INT64;
    case CKPT_U64: return H5T_NATIVE_UINT64;
    default: return strtype;
    }
}

size_t ckpt_type_size(CkptType t)
{
    return t == CKPT_F32 ? sizeof(float) : 8;
}

/* The array of dataset spec `d` in s (NULL when not allocated). */
void *ckpt_dset_array(const CkptState *s, const CkptDsetSpec *d)
{
    const char *p = (const char *)s + d->off;
    switch (d->type) {
    case CKPT_F32: return *(float *const *)p;
    case CKPT_I64: return *(int64_t *const *)p;
    default: return *(double *const *)p;
    }
}

/* The value of each dimension in s (the history's length included). */
void ckpt_dims_of(const CkptState *s, hsize_t dim[CKPT_NDIMS])
{
    dim[CKPT_DIM_D] = s->d;
    dim[CKPT_DIM_H] = s->hidden;
    dim[CKPT_DIM_K] = s->classes;
    dim[CKPT_DIM_HIST] = s->history.len;
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
int ckpt_check_values(const CkptState *s, const char *who, char *err, size_t errlen)
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
