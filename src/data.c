/* data: the choice of reader (data_reader.h), what every format shares (the modes of
 * data_read_into, the message shape), standardisation and the per-epoch sample order.
 * The readers themselves: IDX in data_idx.c, HDF5 in data_h5.c.
 */
#include "data_reader.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The readers, tried in order by signature when the format is "auto"; the last one is
 * the fallback that reports what is wrong with a file of no known signature. A new format
 * is one line here. */
static const DataReader *const data_readers[] = {
    &data_reader_h5,
    &data_reader_idx,
};
#define DATA_NREADERS (sizeof data_readers / sizeof data_readers[0])

/* Every message has the one shape `PATH: what is wrong` so that a user sees at once which
 * file to look at; err may be NULL when the caller only wants the status. */
void data_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    int used = snprintf(err, errlen, "%s: ", path);
    if (used < 0 || (size_t)used >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + used, errlen - (size_t)used, fmt, ap);
    va_end(ap);
}

int data_dataset_path(char *out, size_t len, const char *group, const char *name)
{
    size_t g = strlen(group);
    while (g > 0 && group[g - 1] == '/')
        g--;
    const int n = name[0] == '/' ? snprintf(out, len, "%s", name)
                                 : snprintf(out, len, "%.*s/%s", (int)g, group, name);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int data_format_parse(const char *name)
{
    if (strcmp(name, "auto") == 0)
        return DATA_FORMAT_AUTO;
    for (size_t i = 0; i < DATA_NREADERS; i++)
        if (strcmp(name, data_readers[i]->name) == 0)
            return (int)data_readers[i]->format;
    return -1;
}

size_t data_type_size(DataType t)
{
    return t == DATA_F32 ? sizeof(float) : 1;
}

/* The reader for src: the one its format names, or the first whose signature the
 * features file carries. */
static const DataReader *data_reader_for(const DataSource *src)
{
    for (size_t i = 0; i < DATA_NREADERS; i++) {
        const DataReader *r = data_readers[i];
        if (src->format == DATA_FORMAT_AUTO ? r->sniff(src->x_path) : src->format == r->format)
            return r;
    }
    return data_readers[DATA_NREADERS - 1];
}

DataFormat data_format_of(const char *path)
{
    const DataSource src = {path, NULL, "", "", DATA_FORMAT_AUTO, 0};
    return data_reader_for(&src)->format;
}

static void data_clear_err(char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
}

int data_probe_source(DataShape *shape, const DataSource *src, char *err, size_t errlen)
{
    memset(shape, 0, sizeof *shape);
    data_clear_err(err, errlen);
    if (data_reader_for(src)->probe(shape, src, err, errlen) != 0) {
        memset(shape, 0, sizeof *shape);
        return -1;
    }
    return 0;
}

int data_read_into(Dataset *ds, const DataSource *src, int classes, DataType type, int own,
                   void *x, size_t bytes, char *err, size_t errlen)
{
    memset(ds, 0, sizeof *ds);
    data_clear_err(err, errlen);
    if (classes < 0) {
        data_fail(err, errlen, src->y_path ? src->y_path : src->x_path,
                  "classes must be >= 0 (0 = derive from the labels), got %d", classes);
        return -1;
    }
    if (data_reader_for(src)->read(ds, src, classes, type, own, x, bytes, err, errlen) != 0) {
        data_free(ds);
        return -1;
    }
    return 0;
}

static DataSource data_default_source(const char *images_path, const char *labels_path)
{
    return (DataSource){images_path, labels_path, "/X", "/y", DATA_FORMAT_AUTO, 0};
}

int data_probe(DataShape *shape, const char *images_path, const char *labels_path, char *err,
               size_t errlen)
{
    const DataSource src = data_default_source(images_path, labels_path);
    return data_probe_source(shape, &src, err, errlen);
}

/* The native type of a source, from its headers (data_load's choice). */
static int data_native(const DataSource *src, DataType *type, char *err, size_t errlen)
{
    DataShape shape;
    if (data_probe_source(&shape, src, err, errlen) != 0)
        return -1;
    *type = shape.native;
    return 0;
}

int data_load(Dataset *ds, const char *images_path, const char *labels_path, int classes,
              char *err, size_t errlen)
{
    const DataSource src = data_default_source(images_path, labels_path);
    DataType type;
    memset(ds, 0, sizeof *ds);
    if (data_native(&src, &type, err, errlen) != 0)
        return -1;
    return data_read_into(ds, &src, classes, type, 1, NULL, 0, err, errlen);
}

int data_load_into(Dataset *ds, const char *images_path, const char *labels_path, int classes,
                   uint8_t *pixels, size_t bytes, char *err, size_t errlen)
{
    const DataSource src = data_default_source(images_path, labels_path);
    DataType type;
    memset(ds, 0, sizeof *ds);
    if (data_native(&src, &type, err, errlen) != 0)
        return -1;
    return data_read_into(ds, &src, classes, type, 0, pixels, bytes, err, errlen);
}

void data_free(Dataset *ds)
{
    if (ds == NULL)
        return;
    if (ds->owns_images) {
        free(ds->images);
        free(ds->features);
    }
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

void data_standardize_stats(const float *x, const uint8_t *skip, size_t n, size_t d,
                            double *mean, double *std)
{
    size_t rows = 0;
    for (size_t j = 0; j < d; j++)
        mean[j] = 0.0, std[j] = 0.0;
    /* Row by row (in index order) so that x is read in memory order; each feature's sum
     * is still a plain left-to-right sum over the samples. */
    for (size_t i = 0; i < n; i++) {
        if (skip && skip[i])
            continue;
        rows++;
        for (size_t j = 0; j < d; j++)
            mean[j] += (double)x[i * d + j];
    }
    for (size_t j = 0; j < d; j++)
        mean[j] /= (double)rows;
    for (size_t i = 0; i < n; i++) {
        if (skip && skip[i])
            continue;
        for (size_t j = 0; j < d; j++) {
            const double dev = (double)x[i * d + j] - mean[j];
            std[j] += dev * dev;
        }
    }
    for (size_t j = 0; j < d; j++) {
        std[j] = sqrt(std[j] / (double)rows);
        if (!(std[j] > 0.0) || !isfinite(std[j]))
            std[j] = 1.0;
    }
}

void data_standardize_apply(float *x, size_t n, size_t d, const double *mean,
                            const double *std)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++)
            x[i * d + j] = (float)(((double)x[i * d + j] - mean[j]) / std[j]);
}

/* splitmix64's finaliser: a bijective 64-bit mix with full avalanche. Fed a counter it is the
 * splitmix64 generator, which is what makes the order stateless: draw k of epoch e is a pure
 * function of (seed, e, k), identical on every machine, rank and thread count. */
static uint64_t data_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

typedef struct {
    uint64_t state;
} DataRng;

static uint32_t data_rng_u32(DataRng *r)
{
    r->state += 0x9E3779B97F4A7C15u; /* splitmix64's increment (golden ratio) */
    return (uint32_t)(data_mix64(r->state) >> 32);
}

/* Uniform draw in [0, bound), bound >= 1, without modulo bias (Lemire 2019: multiply, and
 * reject the few low products that would favour some results). */
static uint32_t data_rng_below(DataRng *r, uint32_t bound)
{
    uint64_t m = (uint64_t)data_rng_u32(r) * bound;
    uint32_t low = (uint32_t)m;
    if (low < bound) {
        const uint32_t threshold = (uint32_t)(0u - bound) % bound; /* 2^32 mod bound */
        while (low < threshold) {
            m = (uint64_t)data_rng_u32(r) * bound;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

void data_epoch_order(uint32_t *order, size_t n, uint64_t seed, uint64_t epoch)
{
    /* Indices are uint32 and IDX counts are u32, so n always fits; anything else is a bug. */
    assert(n <= UINT32_MAX);
    /* Hash epoch before combining so that (seed, epoch) and (seed ^ 1, epoch ^ 1) and other
     * simple relations between consecutive seeds and epochs give unrelated streams. */
    DataRng rng = {data_mix64(seed ^ data_mix64(epoch + 0x9E3779B97F4A7C15u))};
    for (size_t i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    /* Fisher-Yates from the top: each of the n! orders is equally likely. */
    for (size_t i = n; i > 1; i--) {
        const uint32_t j = data_rng_below(&rng, (uint32_t)i);
        const uint32_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

