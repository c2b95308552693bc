/* config: defaults, INI parsing (libinih), strict validation and --set overrides.
 *
 * One table (config_keys) lists every key in the order of docs/design.md section 6 with its
 * type, its field in Config and its range; parsing, overrides and config_to_ini all walk
 * it, so a key cannot be known to one and forgotten by another.
 *
 * libinih as packaged by Debian calls the handler without a line number and reads lines
 * into a 200-byte buffer, so the file is fed through our own reader (config_read_line),
 * which counts lines for the error messages, refuses a line that does not fit instead
 * of letting inih cut it silently, and reads bytes, not C strings, so that a NUL or another
 * control character is refused rather than ending the line early.
 */
#include "config.h"

#include "fsafe.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "kernels.h"  /* KERNELS_MAX_CLASSES, the most classes the kernels take */

/* The longest line, without its newline, that inih's buffer holds (it needs one byte
 * for '\0'). */
#define CONFIG_LINE_MAX (INI_MAX_LINE - 1)

/* Longest accepted path value: what still fits on one INI line after the longest path
 * key, "train_images = ". Paths are held to this rather than to CONFIG_PATH_MAX so that
 * config_to_ini's output (stored in every checkpoint) always parses back; a longer path
 * could only come from --set, since a file line cannot hold it. */
#define CONFIG_VALUE_MAX (CONFIG_LINE_MAX - (int)sizeof "train_images = " + 1)

/* checkpoint.dir + "/metrics.csv", whatever the dir's length. */
#define CONFIG_METRICS_BUF (CONFIG_PATH_MAX + sizeof "/metrics.csv")

_Static_assert(CONFIG_VALUE_MAX > 0 && CONFIG_VALUE_MAX < CONFIG_PATH_MAX,
               "path values must fit both an INI line and a Config buffer");

typedef enum {
    CONFIG_LONG,     /* integer in [lo, hi] */
    CONFIG_CLASSES,  /* 0, or an integer in [lo, hi] */
    CONFIG_CHUNK,    /* "auto" (held as 0 until config_load resolves it), or [lo, hi] */
    CONFIG_BOOL,     /* true | false, held in an int */
    CONFIG_SEED,     /* any uint64_t, decimal */
    CONFIG_LR,       /* double in [FLT_MIN, 1e6]: a normal float, as the trainer uses it */
    CONFIG_PATH,     /* non-empty path */
    CONFIG_RESUME,   /* "auto", "none" or a path */
    CONFIG_INIT,     /* "xavier" */
    CONFIG_REDUCE,   /* exact | fast */
    CONFIG_KERNELS,  /* fast | reference (kernels_select's names; config links no kernels) */
    CONFIG_PROGRESS, /* auto | on | off */
    CONFIG_FORMAT,   /* auto | idx | hdf5, held as the word */
    CONFIG_NORMALIZE, /* none | standardize, held as the word */
    CONFIG_REAL,     /* finite double in [dlo, dhi], or [dlo, dhi) when hi_open */
    CONFIG_CHOICE    /* one of names[], held as its index in an enum field */
} ConfigType;

typedef struct {
    const char *section;
    const char *name;
    ConfigType type;
    size_t offset;   /* of the field in Config */
    size_t size;     /* of the field, bytes */
    long lo, hi;     /* inclusive range, CONFIG_LONG, CONFIG_CLASSES, CONFIG_CHUNK only */
    double dlo, dhi; /* CONFIG_REAL only */
    int hi_open;     /* CONFIG_REAL: dhi itself excluded */
    const char *const *names;   /* CONFIG_CHOICE: NULL-terminated */
} ConfigKey;

#define CONFIG_KEY(sec, key, type, lo, hi) \
    { #sec, #key, type, offsetof(Config, sec.key), sizeof(((Config *)0)->sec.key), lo, hi, \
      0, 0, 0, NULL }

#define CONFIG_REAL_KEY(sec, key, dlo, dhi, open) \
    { #sec, #key, CONFIG_REAL, offsetof(Config, sec.key), sizeof(((Config *)0)->sec.key), 0, 0, \
      dlo, dhi, open, NULL }
#define CONFIG_CHOICE_KEY(sec, key, names) \
    { #sec, #key, CONFIG_CHOICE, offsetof(Config, sec.key), sizeof(((Config *)0)->sec.key), 0, \
      0, 0, 0, 0, names }

static const char *const config_augment_names[] = {"none", "elastic", "affine", NULL};
static const char *const config_optimizer_names[] = {"sgd", "momentum", "nesterov", NULL};
static const char *const config_schedule_names[] = {"constant", "step", "cosine", NULL};

#define CONFIG_INT31_MAX 2147483647L  /* 2^31 - 1 */
#define CONFIG_LR_MAX 1e6     /* spelled out in config_parse_lr's message */

/* docs/design.md section 6 order: config_to_ini prints in this order. */
static const ConfigKey config_keys[] = {
    CONFIG_KEY(data, train_images, CONFIG_PATH, 0, 0),
    CONFIG_KEY(data, train_labels, CONFIG_PATH, 0, 0),
    CONFIG_KEY(data, test_images, CONFIG_PATH, 0, 0),
    CONFIG_KEY(data, test_labels, CONFIG_PATH, 0, 0),
    CONFIG_KEY(data, train_limit, CONFIG_LONG, 0, CONFIG_INT31_MAX),
    CONFIG_KEY(data, format, CONFIG_FORMAT, 0, 0),
    CONFIG_KEY(data, x_dataset, CONFIG_PATH, 0, 0),
    CONFIG_KEY(data, y_dataset, CONFIG_PATH, 0, 0),
    CONFIG_KEY(data, train_group, CONFIG_PATH, 0, 0),
    CONFIG_KEY(data, test_group, CONFIG_PATH, 0, 0),
    CONFIG_KEY(data, normalize, CONFIG_NORMALIZE, 0, 0),
    CONFIG_KEY(data, validation, CONFIG_LONG, 0, CONFIG_INT31_MAX),
    CONFIG_CHOICE_KEY(data, augment, config_augment_names),
    CONFIG_REAL_KEY(data, elastic_sigma, 0.5, 20, 0),
    CONFIG_REAL_KEY(data, elastic_alpha, 0, 100, 0),
    CONFIG_REAL_KEY(data, affine_rotate, 0, 180, 0),
    CONFIG_REAL_KEY(data, affine_scale, 0, 0.9, 0),
    CONFIG_REAL_KEY(data, affine_shift, 0, 100, 0),
    CONFIG_KEY(model, hidden, CONFIG_LONG, 1, 1048576),
    CONFIG_KEY(model, seed, CONFIG_SEED, 0, 0),
    CONFIG_KEY(model, init, CONFIG_INIT, 0, 0),
    CONFIG_KEY(model, classes, CONFIG_CLASSES, 2, KERNELS_MAX_CLASSES),
    CONFIG_KEY(train, epochs, CONFIG_LONG, 1, 1000000),
    CONFIG_KEY(train, batch, CONFIG_LONG, 1, 1048576),
    CONFIG_KEY(train, lr, CONFIG_LR, 0, 0),
    CONFIG_KEY(train, chunk, CONFIG_CHUNK, 1, 1048576),
    CONFIG_KEY(train, reduce, CONFIG_REDUCE, 0, 0),
    CONFIG_KEY(train, kernels, CONFIG_KERNELS, 0, 0),
    CONFIG_KEY(train, eval_every, CONFIG_LONG, 0, 1000000),
    CONFIG_CHOICE_KEY(train, optimizer, config_optimizer_names),
    CONFIG_REAL_KEY(train, momentum, 0, 1, 1),
    CONFIG_REAL_KEY(train, weight_decay, 0, 1, 0),
    CONFIG_KEY(train, decay_biases, CONFIG_BOOL, 0, 0),
    CONFIG_CHOICE_KEY(train, schedule, config_schedule_names),
    CONFIG_REAL_KEY(train, warmup_epochs, 0, 1000000, 0),
    CONFIG_KEY(train, step_epochs, CONFIG_LONG, 1, 1000000),
    CONFIG_REAL_KEY(train, step_gamma, 0, 1, 0),
    CONFIG_REAL_KEY(train, lr_min, 0, 1000000, 0),
    CONFIG_KEY(train, patience, CONFIG_LONG, 0, 1000000),
    CONFIG_KEY(checkpoint, dir, CONFIG_PATH, 0, 0),
    CONFIG_KEY(checkpoint, every, CONFIG_LONG, 0, 1000000),
    CONFIG_KEY(checkpoint, every_steps, CONFIG_LONG, 0, CONFIG_INT31_MAX),
    CONFIG_KEY(checkpoint, keep, CONFIG_LONG, 0, 1000000),
    CONFIG_KEY(checkpoint, resume, CONFIG_RESUME, 0, 0),
    CONFIG_KEY(checkpoint, overwrite, CONFIG_BOOL, 0, 0),
    CONFIG_KEY(checkpoint, best, CONFIG_BOOL, 0, 0),
    CONFIG_KEY(log, metrics, CONFIG_PATH, 0, 0),
    CONFIG_KEY(log, progress, CONFIG_PROGRESS, 0, 0),
    CONFIG_KEY(log, progress_seconds, CONFIG_LONG, 0, 86400),
};
#define CONFIG_NKEYS (sizeof config_keys / sizeof config_keys[0])

static const char *const config_progress_names[] = {"auto", "on", "off"};

/* State shared by the reader and the handler while one file is parsed. */
typedef struct {
    Config *c;
    const char *path;
    FILE *f;
    int lineno;               /* lines read so far = the line the handler sees */
    int long_line;            /* line that did not fit inih's buffer; 0 = none */
    int bad_line;             /* line holding a config_bad_byte; 0 = none */
    int bad_column;           /* its column, from 1 */
    int bad_byte;             /* and its value */
    int read_errno;           /* errno of a failed read; 0 = none */
    int err_line;             /* line of the first handler error; 0 = none */
    int seen[CONFIG_NKEYS];   /* line each key was set on; 0 = not yet */
    char *err;
    size_t errlen;
} ConfigParse;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void config_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* The message echoes user text (an override may hold a newline): keep it one line. */
    for (char *p = err; *p; p++)
        if (iscntrl((unsigned char)*p))
            *p = '?';
}

/* Copy s into a fixed buffer, clearing it first so that two Configs holding the same
 * values are equal byte for byte. Returns -1 (buffer untouched) if s does not fit. */
static int config_put(char *dst, size_t cap, const char *s)
{
    size_t len = strlen(s);
    if (len >= cap)
        return -1;
    memset(dst, 0, cap);
    memcpy(dst, s, len);
    return 0;
}

void config_defaults(Config *c)
{
    memset(c, 0, sizeof *c);
    config_put(c->data.train_images, sizeof c->data.train_images,
               "data/mnist/train-images-idx3-ubyte");
    config_put(c->data.train_labels, sizeof c->data.train_labels,
               "data/mnist/train-labels-idx1-ubyte");
    config_put(c->data.test_images, sizeof c->data.test_images,
               "data/mnist/t10k-images-idx3-ubyte");
    config_put(c->data.test_labels, sizeof c->data.test_labels,
               "data/mnist/t10k-labels-idx1-ubyte");
    c->data.train_limit = 0;
    config_put(c->data.format, sizeof c->data.format, "auto");
    config_put(c->data.x_dataset, sizeof c->data.x_dataset, "X");
    config_put(c->data.y_dataset, sizeof c->data.y_dataset, "y");
    config_put(c->data.train_group, sizeof c->data.train_group, "/");
    config_put(c->data.test_group, sizeof c->data.test_group, "/");
    config_put(c->data.normalize, sizeof c->data.normalize, "none");
    c->data.validation = 0;
    c->data.augment = AUGMENT_NONE;
    c->data.elastic_sigma = 4.0;      /* Simard et al. 2003 on MNIST */
    c->data.elastic_alpha = 34.0;
    c->data.affine_rotate = 10.0;
    c->data.affine_scale = 0.1;
    c->data.affine_shift = 2.0;
    c->model.hidden = 128;
    c->model.seed = 42;
    config_put(c->model.init, sizeof c->model.init, "xavier");
    c->model.classes = 0;
    c->train.epochs = 30;
    c->train.batch = 32;
    c->train.lr = 0.5;
    c->train.chunk = 0;   /* auto: CONFIG_CHUNKS_PER_BATCH chunks per minibatch */
    c->train.reduce = REDUCE_EXACT;
    config_put(c->train.kernels, sizeof c->train.kernels, "fast");
    c->train.eval_every = 1;
    c->train.optimizer = OPTIM_SGD;
    c->train.momentum = 0.9;
    c->train.weight_decay = 0.0;
    c->train.decay_biases = 0;
    c->train.schedule = SCHEDULE_CONSTANT;
    c->train.warmup_epochs = 0.0;
    c->train.step_epochs = 10;
    c->train.step_gamma = 0.1;
    c->train.lr_min = 0.0;
    c->train.patience = 0;
    config_put(c->checkpoint.dir, sizeof c->checkpoint.dir, "runs/mnist");
    c->checkpoint.every = 0;
    c->checkpoint.every_steps = 0;
    c->checkpoint.keep = 3;
    config_put(c->checkpoint.resume, sizeof c->checkpoint.resume, "none");
    c->checkpoint.overwrite = 0;
    c->checkpoint.best = 0;
    /* log.metrics stays "" (unset): config_load makes it checkpoint.dir/metrics.csv once
     * every override is in, so that --set checkpoint.dir=X moves the metrics too. */
    c->log.progress = PROGRESS_AUTO;
    c->log.progress_seconds = 30;
}

/* The default log.metrics, checkpoint.dir + "/metrics.csv" (no second '/' after a dir
 * that ends in one), into buf (CONFIG_METRICS_BUF bytes hold it whole). Returns its
 * length, or -1 if longer than CONFIG_VALUE_MAX: config_to_ini could not write it on one
 * line. */
static int config_metrics_default(const Config *c, char *buf, size_t cap)
{
    const char *dir = c->checkpoint.dir;
    size_t n = strnlen(dir, sizeof c->checkpoint.dir);
    const char *sep = n > 0 && dir[n - 1] == '/' ? "" : "/";
    int len = snprintf(buf, cap, "%.*s%smetrics.csv", (int)n, dir, sep);
    return len < 0 || len > CONFIG_VALUE_MAX || (size_t)len >= cap ? -1 : len;
}

const char *config_reduce_name(ReduceMode m)
{
    return m == REDUCE_FAST ? "fast" : "exact";
}

/* ---- value parsers: each returns NULL or the reason the value is refused ---- */

/* strtol and friends skip leading blanks and accept what a prefix of the text spells;
 * both would let a typo through, so the whole value must be consumed. *overflow: the
 * number does not fit a long (*out is then LONG_MIN or LONG_MAX). */
static const char *config_strtol(const char *s, long *out, int *overflow, char *why,
                                 size_t whylen)
{
    if (s[0] == '\0' || isspace((unsigned char)s[0]))
        return "not an integer";
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s)
        return "not an integer";
    if (*end != '\0') {
        snprintf(why, whylen, "unexpected '%s' after the number", end);
        return why;
    }
    *overflow = errno == ERANGE;
    *out = v;
    return NULL;
}

static const char *config_parse_long(const char *s, long lo, long hi, long *out,
                                     char *why, size_t whylen)
{
    long v;
    int overflow;
    const char *bad = config_strtol(s, &v, &overflow, why, whylen);
    if (bad)
        return bad;
    if (overflow || v < lo || v > hi) {
        snprintf(why, whylen, "out of range (%ld..%ld)", lo, hi);
        return why;
    }
    *out = v;
    return NULL;
}

/* 0 (derive K from the training labels), or K in [lo, hi]: one class is no classifier. */
static const char *config_parse_classes(const char *s, long lo, long hi, long *out,
                                        char *why, size_t whylen)
{
    long v;
    int overflow;
    const char *bad = config_strtol(s, &v, &overflow, why, whylen);
    if (bad)
        return bad;
    if (overflow || (v != 0 && (v < lo || v > hi))) {
        snprintf(why, whylen, "out of range (0 = from the training labels, or %ld..%ld)", lo,
                 hi);
        return why;
    }
    *out = v;
    return NULL;
}

static const char *config_parse_seed(const char *s, uint64_t *out, char *why, size_t whylen)
{
    if (s[0] == '\0' || isspace((unsigned char)s[0]))
        return "not an integer";
    char *end;
    errno = 0;
    /* strtoull accepts "-5" and returns 2^64 - 5: refuse the sign before it can. */
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s)
        return "not an integer";
    if (*end != '\0') {
        snprintf(why, whylen, "unexpected '%s' after the number", end);
        return why;
    }
    int too_big = errno == ERANGE;
#if ULLONG_MAX > UINT64_MAX
    too_big |= v > UINT64_MAX;
#endif
    if (s[0] == '-' || too_big) {
        snprintf(why, whylen, "out of range (0..%" PRIu64 ")", UINT64_MAX);
        return why;
    }
    *out = (uint64_t)v;
    return NULL;
}

static const char *config_parse_lr(const char *s, double *out, char *why, size_t whylen)
{
    if (s[0] == '\0' || isspace((unsigned char)s[0]))
        return "not a number";
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s)
        return "not a number";
    if (*end != '\0') {
        snprintf(why, whylen, "unexpected '%s' after the number", end);
        return why;
    }
    /* strtod spells out "nan" and "inf"; neither is a learning rate. */
    if (!isfinite(v) && errno != ERANGE)
        return "not a finite number";
    /* The trainer steps with (float)lr: a rate that is positive as a double can be 0
     * ("1e-50") or subnormal ("1e-40") as a float, which trains nothing or slowly and
     * imprecisely, so the floor is the smallest normal float. ERANGE: overflow ("1e400")
     * or underflow ("1e-400"), outside the range either way. The cast comes last: it is
     * only defined for a value a float can hold. */
    if (errno == ERANGE || !(v > 0.0 && v <= CONFIG_LR_MAX) || (float)v < FLT_MIN) {
        snprintf(why, whylen,
                 "out of range (%.9g..1e6: at least the smallest normal float, FLT_MIN)",
                 (double)FLT_MIN);
        return why;
    }
    *out = v;
    return NULL;
}

/* A finite double in the key's range. */
static const char *config_parse_real(const char *s, const ConfigKey *k, double *out, char *why,
                                     size_t whylen)
{
    if (s[0] == '\0' || isspace((unsigned char)s[0]))
        return "not a number";
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s)
        return "not a number";
    if (*end != '\0') {
        snprintf(why, whylen, "unexpected '%s' after the number", end);
        return why;
    }
    if (!isfinite(v) || errno == ERANGE || v < k->dlo || v > k->dhi ||
        (k->hi_open && v == k->dhi)) {
        snprintf(why, whylen, "out of range (%g <= value %s %g)", k->dlo,
                 k->hi_open ? "<" : "<=", k->dhi);
        return why;
    }
    *out = v;
    return NULL;
}

/* "must be a, b or c" for a choice key. */
static void config_choices(const char *const *names, char *why, size_t whylen)
{
    size_t used = (size_t)snprintf(why, whylen, "must be");
    for (int i = 0; names[i] && used < whylen; i++)
        used += (size_t)snprintf(why + used, whylen - used, "%s%s", i == 0 ? " " :
                                 names[i + 1] ? ", " : " or ", names[i]);
}

/* A path must survive config_to_ini -> config_load unchanged: inih would end it at a
 * ';' that follows a blank (an inline comment) and a control character would break the
 * line, so both are refused rather than altered. */
static const char *config_check_path(const char *s, char *why, size_t whylen)
{
    if (s[0] == '\0')
        return "must not be empty";
    size_t len = strlen(s);
    if (len > (size_t)CONFIG_VALUE_MAX) {
        snprintf(why, whylen, "too long (at most %d characters)", CONFIG_VALUE_MAX);
        return why;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (iscntrl(ch))
            return "contains a control character";
        if (ch == ';' && i > 0 && (s[i - 1] == ' ' || s[i - 1] == '\t'))
            return "contains ' ;', which INI reads as the start of a comment";
        /* "key =;x" reads as ";x", but config_to_ini writes "key = ;x", a comment (found
         * by fuzzing the round trip). */
        if (ch == ';' && i == 0)
            return "starts with ';', which INI reads as the start of a comment";
    }
    return NULL;
}

/* Parse value into the field of key k. Returns NULL, or the reason (in why or static). */
static const char *config_set(Config *c, const ConfigKey *k, const char *value, char *why,
                              size_t whylen)
{
    char *field = (char *)c + k->offset;
    const char *bad = NULL;
    switch (k->type) {
    case CONFIG_LONG:
        return config_parse_long(value, k->lo, k->hi, (long *)(void *)field, why, whylen);
    case CONFIG_CLASSES:
        return config_parse_classes(value, k->lo, k->hi, (long *)(void *)field, why, whylen);
    case CONFIG_CHUNK:
        if (strcmp(value, "auto") == 0) {
            *(long *)(void *)field = 0;
            return NULL;
        }
        if (config_parse_long(value, k->lo, k->hi, (long *)(void *)field, why, whylen))
            snprintf(why, whylen, "must be auto or an integer in %ld..%ld", k->lo, k->hi);
        else
            return NULL;
        return why;
    case CONFIG_BOOL:
        /* Spelled out, one way: "1", "yes" or "on" could be typos for another key's value. */
        if (strcmp(value, "true") == 0)
            *(int *)(void *)field = 1;
        else if (strcmp(value, "false") == 0)
            *(int *)(void *)field = 0;
        else
            return "must be true or false";
        return NULL;
    case CONFIG_SEED:
        return config_parse_seed(value, (uint64_t *)(void *)field, why, whylen);
    case CONFIG_LR:
        return config_parse_lr(value, (double *)(void *)field, why, whylen);
    case CONFIG_RESUME:
        /* "auto" and "none" pass the path checks too, so resume shares them. */
        if (value[0] == '\0')
            return "must be auto, none or a path";
        /* fall through */
    case CONFIG_PATH:
        bad = config_check_path(value, why, whylen);
        if (bad)
            return bad;
        if (config_put(field, k->size, value) != 0)
            return "too long";  /* unreachable: CONFIG_VALUE_MAX < CONFIG_PATH_MAX */
        return NULL;
    case CONFIG_FORMAT:
        if (strcmp(value, "auto") != 0 && strcmp(value, "idx") != 0 &&
            strcmp(value, "hdf5") != 0)
            return "must be auto, idx or hdf5";
        config_put(field, k->size, value);
        return NULL;
    case CONFIG_NORMALIZE:
        if (strcmp(value, "none") != 0 && strcmp(value, "standardize") != 0)
            return "must be none or standardize";
        config_put(field, k->size, value);
        return NULL;
    case CONFIG_INIT:
        if (strcmp(value, "xavier") != 0)
            return "must be xavier";
        config_put(field, k->size, value);
        return NULL;
    case CONFIG_KERNELS:
        if (strcmp(value, "fast") != 0 && strcmp(value, "reference") != 0)
            return "must be fast or reference";   /* kernels_select's names */
        config_put(field, k->size, value);
        return NULL;
    case CONFIG_REDUCE:
        if (strcmp(value, "exact") == 0)
            *(ReduceMode *)(void *)field = REDUCE_EXACT;
        else if (strcmp(value, "fast") == 0)
            *(ReduceMode *)(void *)field = REDUCE_FAST;
        else
            return "must be exact or fast";
        return NULL;
    case CONFIG_PROGRESS:
        for (int i = 0; i < 3; i++) {
            if (strcmp(value, config_progress_names[i]) == 0) {
                *(ProgressMode *)(void *)field = (ProgressMode)i;
                return NULL;
            }
        }
        return "must be auto, on or off";
    case CONFIG_REAL:
        return config_parse_real(value, k, (double *)(void *)field, why, whylen);
    case CONFIG_CHOICE:
        for (int i = 0; k->names[i]; i++) {
            if (strcmp(value, k->names[i]) == 0) {
                *(int *)(void *)field = i;
                return NULL;
            }
        }
        config_choices(k->names, why, whylen);
        return why;
    }
    return "unknown key type";  /* unreachable: the switch covers every ConfigType */
}

/* Apply one section/key/value. where is "file:line" or "--set ARG"; seen is NULL for
 * overrides (which may repeat a key: the last wins, as job scripts layer them). */
static int config_apply(Config *c, const char *where, const char *section, const char *name,
                        const char *value, int *seen, int lineno, char *err, size_t errlen)
{
    if (section[0] == '\0') {
        config_fail(err, errlen, "%s: key '%s' is outside any [section]", where, name);
        return -1;
    }
    int section_known = 0;
    const ConfigKey *k = NULL;
    size_t ki = 0;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        if (strcmp(config_keys[i].section, section) != 0)
            continue;
        section_known = 1;
        if (strcmp(config_keys[i].name, name) == 0) {
            k = &config_keys[i];
            ki = i;
            break;
        }
    }
    if (!section_known) {
        config_fail(err, errlen, "%s: unknown section [%s]", where, section);
        return -1;
    }
    if (!k) {
        config_fail(err, errlen, "%s: unknown key '%s' in [%s]", where, name, section);
        return -1;
    }
    if (seen && seen[ki]) {
        config_fail(err, errlen, "%s: [%s] %s = '%s': already set on line %d", where, section,
                    name, value, seen[ki]);
        return -1;
    }
    char why[160];
    const char *bad = config_set(c, k, value, why, sizeof why);
    if (bad) {
        /* A file line holds at most CONFIG_LINE_MAX characters; only an override can be
         * longer, and quoting it whole could push the reason out of err. */
        int cut = strlen(value) > CONFIG_LINE_MAX;
        config_fail(err, errlen, "%s: [%s] %s = '%.*s%s': %s", where, section, name,
                    CONFIG_LINE_MAX, value, cut ? "..." : "", bad);
        return -1;
    }
    if (seen)
        seen[ki] = lineno;
    return 0;
}

/* A byte a config may not hold, in the file or in an override: a control character other
 * than tab (the reader lets newline end a line and CR precede it), or DEL. A NUL above all:
 * to a C-string reader it ends the line, so "hidden = 16<NUL>garbage" read as 16. */
static int config_bad_byte(unsigned char ch)
{
    return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

/* Reader for ini_parse_stream, byte by byte (never as C strings, so a NUL is seen): counts
 * lines, refuses a control character and a line longer than inih's buffer (inih would
 * otherwise read its tail as a line of its own), drops the newline and a CR before it, and
 * drops leading blanks so that an indented line is an ordinary line: inih would take it
 * as a continuation of the previous key's value, and our values never span lines. */
static char *config_read_line(char *buf, int num, void *stream)
{
    ConfigParse *p = stream;
    if (p->long_line || p->bad_line || p->read_errno || num < 2)
        return NULL;
    const size_t max = (size_t)num - 1;
    size_t len = 0;
    int ch, any = 0;
    errno = 0;
    while ((ch = getc(p->f)) != EOF && ch != '\n') {
        any = 1;
        if (ch == '\r') {
            int next = getc(p->f);
            if (next == '\n' || next == EOF) {
                ch = next;
                break;
            }
            ungetc(next, p->f);
        }
        if (config_bad_byte((unsigned char)ch)) {
            p->bad_line = p->lineno + 1;
            p->bad_column = (int)len + 1;
            p->bad_byte = ch;
            return NULL;
        }
        if (len == max) {
            p->long_line = p->lineno + 1;
            return NULL;
        }
        buf[len++] = (char)ch;
    }
    if (ch == EOF && ferror(p->f)) {
        p->read_errno = errno ? errno : EIO;
        return NULL;
    }
    if (ch == EOF && !any)
        return NULL;  /* the end of the file, not an empty last line */
    p->lineno++;
    buf[len] = '\0';
    size_t skip = strspn(buf, " \t");
    memmove(buf, buf + skip, len - skip + 1);
    return buf;
}

static int config_handler(void *user, const char *section, const char *name,
                          const char *value)
{
    ConfigParse *p = user;
    if (p->err_line)
        return 1;  /* only the first error is reported; inih goes on reading regardless */
    char where[CONFIG_PATH_MAX + 32];
    snprintf(where, sizeof where, "%s:%d", p->path, p->lineno);
    if (config_apply(p->c, where, section, name, value, p->seen, p->lineno, p->err,
                     p->errlen) != 0) {
        p->err_line = p->lineno;
        return 0;
    }
    return 1;
}

/* The config file, only if it is a regular file (fsafe_open_regular: a FIFO cannot hang
 * the start). */
static FILE *config_open(const char *path, char *err, size_t errlen)
{
    struct stat st;
    char why[256];
    int fd = fsafe_open_regular(path, &st, why, sizeof why);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "r");
    if (fd < 0)
        config_fail(err, errlen, "%s: cannot %s config: %s", path, fd == -1 ? "open" : "read",
                    why);
    else if (!f) {
        config_fail(err, errlen, "%s: cannot read config: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

static int config_load_file(Config *c, const char *path, char *err, size_t errlen)
{
    ConfigParse p;
    memset(&p, 0, sizeof p);
    p.c = c;
    p.path = path;
    p.err = err;
    p.errlen = errlen;
    p.f = config_open(path, err, errlen);
    if (!p.f)
        return -1;
    int rc = ini_parse_stream(config_read_line, &p, config_handler, &p);
    fclose(p.f);

    /* Report the error that comes first in the file. inih returns the first line it
     * could not parse, or the line our handler refused; reading stops at a long line. */
    if (rc > 0 && (!p.err_line || rc < p.err_line)) {
        config_fail(err, errlen, "%s:%d: syntax error (expected [section] or key = value)",
                    path, rc);
        return -1;
    }
    if (p.err_line)
        return -1;  /* the handler wrote the message */
    if (p.long_line) {
        config_fail(err, errlen, "%s:%d: line too long (more than %d characters)", path,
                    p.long_line, CONFIG_LINE_MAX);
        return -1;
    }
    if (p.bad_line) {
        config_fail(err, errlen, "%s:%d: control character 0x%02X at column %d", path,
                    p.bad_line, (unsigned)p.bad_byte, p.bad_column);
        return -1;
    }
    if (p.read_errno) {
        config_fail(err, errlen, "%s: cannot read config: %s", path, strerror(p.read_errno));
        return -1;
    }
    if (rc != 0) {
        config_fail(err, errlen, "%s: cannot read config: out of memory", path);
        return -1;
    }
    return 0;
}

/* Copy [s, s+n) without surrounding blanks into dst (cap bytes); -1 if it does not fit. */
static int config_trim_copy(char *dst, size_t cap, const char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)s[0])) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    if (n >= cap)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* One "section.key=value" override, blanks around each part ignored as in the file. */
static int config_override(Config *c, const char *arg, char *err, size_t errlen)
{
    /* Quote the argument, shortened as config_apply shortens the value. */
    char where[CONFIG_LINE_MAX + 64];
    snprintf(where, sizeof where, "--set %.*s%s", CONFIG_LINE_MAX + 32, arg,
             strlen(arg) > CONFIG_LINE_MAX + 32 ? "..." : "");
    for (size_t i = 0; arg[i]; i++) {
        if (config_bad_byte((unsigned char)arg[i])) {
            config_fail(err, errlen, "%s: control character 0x%02X at column %zu", where,
                        (unsigned)(unsigned char)arg[i], i + 1);
            return -1;
        }
    }
    const char *eq = strchr(arg, '=');
    const char *dot = eq ? memchr(arg, '.', (size_t)(eq - arg)) : NULL;
    char section[64], name[64];
    /* A value longer than any accepted one is refused by config_set with its reason;
     * this buffer only needs to hold one more character than that. */
    char value[CONFIG_PATH_MAX];
    if (!dot || config_trim_copy(section, sizeof section, arg, (size_t)(dot - arg)) != 0 ||
        config_trim_copy(name, sizeof name, dot + 1, (size_t)(eq - dot - 1)) != 0 ||
        section[0] == '\0' || name[0] == '\0') {
        config_fail(err, errlen, "%s: expected section.key=value", where);
        return -1;
    }
    if (config_trim_copy(value, sizeof value, eq + 1, strlen(eq + 1)) != 0) {
        /* Longer than any buffer: report it without echoing kilobytes of value. */
        config_fail(err, errlen, "%s: [%s] %s: value too long", where, section, name);
        return -1;
    }
    return config_apply(c, where, section, name, value, NULL, 0, err, errlen);
}

int config_load(Config *c, const char *path, int noverrides, char *const overrides[],
                char *err, size_t errlen)
{
    config_defaults(c);
    if (err && errlen)
        err[0] = '\0';
    /* path NULL: defaults and overrides only (source stays ""). */
    if (path) {
        if (config_put(c->source, sizeof c->source, path) != 0) {
            config_fail(err, errlen, "%.64s...: config path too long (at most %d characters)",
                        path, CONFIG_PATH_MAX - 1);
            return -1;
        }
        if (config_load_file(c, path, err, errlen) != 0)
            return -1;
    }
    for (int i = 0; i < noverrides; i++)
        if (config_override(c, overrides[i], err, errlen) != 0)
            return -1;
    /* train.chunk = auto: the minibatch in CONFIG_CHUNKS_PER_BATCH chunks (docs/reduction.md),
     * a function of the batch alone, so the bits never depend on the rank count. */
    if (c->train.chunk == 0)
        c->train.chunk = (c->train.batch + CONFIG_CHUNKS_PER_BATCH - 1) / CONFIG_CHUNKS_PER_BATCH;
    /* An explicit log.metrics is never empty (config_check_path), so "" means unset. */
    if (c->log.metrics[0] == '\0') {
        char def[CONFIG_METRICS_BUF];
        if (config_metrics_default(c, def, sizeof def) < 0) {
            config_fail(err, errlen,
                        "%s%s[log] metrics = '%s' (the default, from [checkpoint] dir): too "
                        "long (at most %d characters); set log.metrics",
                        path ? path : "", path ? ": " : "", def, CONFIG_VALUE_MAX);
            return -1;
        }
        config_put(c->log.metrics, sizeof c->log.metrics, def);
    }
    return 0;
}

/* Shortest of %.15g..%.17g that reads back as exactly v (%.17g always does): the same
 * value after a round trip, and 0.1 stays "0.1" for the people reading the banner. */
static void config_format_double(double v, char *buf, size_t n)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

char *config_to_ini(const Config *c)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f)
        return NULL;
    int bad = fprintf(f, "; resolved configuration of mlp\n") < 0;
    const char *section = "";
    char metrics[CONFIG_METRICS_BUF];
    for (size_t i = 0; i < CONFIG_NKEYS && !bad; i++) {
        const ConfigKey *k = &config_keys[i];
        const char *field = (const char *)c + k->offset;
        if (strcmp(section, k->section) != 0) {
            section = k->section;
            bad |= fprintf(f, "\n[%s]\n", section) < 0;
        }
        char num[64];
        const char *shown = num;
        switch (k->type) {
        case CONFIG_LONG:
        case CONFIG_CLASSES:
            snprintf(num, sizeof num, "%ld", *(const long *)(const void *)field);
            break;
        case CONFIG_CHUNK:   /* 0 (auto) only before config_load has resolved it */
            if (*(const long *)(const void *)field == 0)
                shown = "auto";
            else
                snprintf(num, sizeof num, "%ld", *(const long *)(const void *)field);
            break;
        case CONFIG_BOOL:
            snprintf(num, sizeof num, "%s", *(const int *)(const void *)field ? "true" : "false");
            break;
        case CONFIG_SEED:
            snprintf(num, sizeof num, "%" PRIu64, *(const uint64_t *)(const void *)field);
            break;
        case CONFIG_LR:
            config_format_double(*(const double *)(const void *)field, num, sizeof num);
            break;
        case CONFIG_REDUCE:
            snprintf(num, sizeof num, "%s",
                     config_reduce_name(*(const ReduceMode *)(const void *)field));
            break;
        case CONFIG_PROGRESS: {
            ProgressMode m = *(const ProgressMode *)(const void *)field;
            snprintf(num, sizeof num, "%s",
                     config_progress_names[m >= PROGRESS_AUTO && m <= PROGRESS_OFF ? m : 0]);
            break;
        }
        case CONFIG_REAL:
            config_format_double(*(const double *)(const void *)field, num, sizeof num);
            break;
        case CONFIG_CHOICE:
            snprintf(num, sizeof num, "%s", k->names[*(const int *)(const void *)field]);
            break;
        case CONFIG_PATH:
        case CONFIG_RESUME:
        case CONFIG_INIT:
        case CONFIG_KERNELS:
        case CONFIG_FORMAT:
        case CONFIG_NORMALIZE:
            shown = field;
            /* A Config that did not come from config_load (config_defaults alone) has no
             * log.metrics yet: print the path config_load would give it. */
            if (field == c->log.metrics && field[0] == '\0') {
                config_metrics_default(c, metrics, sizeof metrics);
                shown = metrics;
            }
            break;
        }
        bad |= fprintf(f, "%s = %s\n", k->name, shown) < 0;
    }
    if (fclose(f) != 0 || bad) {
        free(text);
        return NULL;
    }
    return text;
}
