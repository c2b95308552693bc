/* data: training and test inputs from files (IDX, plain or gzip; HDF5), standardisation,
 * and the per-epoch sample order.
 *
 * Formats: one reader per file format behind the small DataReader interface of
 * src/data_reader.h (IDX in data_idx.c, HDF5 in data_h5.c); data.c picks one by the
 * features file's signature or by an explicit format name. A new format is one new file
 * and one line in data.c's reader table.
 *
 * What is held: the features as uint8 (raw pixels or HDF5 uint8 values, scaled by 1/255
 * in the kernels) or as float32 (every other HDF5 type, converted once at load; uint8 too
 * when standardised), labels as uint8 (K <= 256).
 * Owns: Dataset memory (data_free releases it): the labels always, the features only when
 * data_load allocated them (owns_images); features read into a caller's buffer stay the
 * caller's. Knows nothing of ranks: a trainer that shares one copy of the features between
 * processes probes the sizes, allocates the buffer itself and calls data_read_into.
 * Every header field is checked against the file: magic or type, dimensions, counts,
 * label range, finite values, and the file length (a short file or trailing bytes are
 * errors, never a silent short read). A path that is not a regular file (a FIFO, a
 * device, a directory) is refused when opened, before anything is read.
 * Errors: -1 with one line in err naming the file, the dataset (HDF5) and what is wrong.
 */
#ifndef MLP_DATA_H
#define MLP_DATA_H

#include <stddef.h>
#include <stdint.h>

#define DATA_ERR_MAX 1024

/* The element type features are held in. */
typedef enum { DATA_U8 = 0, DATA_F32 = 1 } DataType;

typedef struct {
    uint8_t *images;   /* (n, d) row-major, DATA_U8: raw values 0..255 (1/255 in the kernels) */
    float *features;   /* (n, d) row-major, DATA_F32: values as used; exactly one of the two
                        * pointers is set once the features are read */
    uint8_t *labels;   /* (n); NULL when read without labels (data_read_into, y_path NULL) */
    size_t n;          /* samples */
    size_t d;          /* features per sample (rows * cols for IDX) */
    uint32_t rows, cols;   /* IDX image shape; HDF5: 1 x d */
    DataType type;
    int classes;       /* K: given to data_load, or 1 + the largest label when derived */
    uint32_t crc;      /* CRC-32 (zlib) of the whole feature payload, then the whole label
                        * payload (IDX: the file's bytes; HDF5: the converted values held
                        * in memory, then the uint8 labels): the same whether or not the
                        * features were kept */
    int owns_images;   /* 1: data_free frees the features; 0: the caller's buffer, or NULL */
} Dataset;

/* What the files announce, before any payload is read. */
typedef struct {
    size_t n;          /* samples: features = labels */
    size_t d;          /* features per sample */
    uint32_t rows, cols;
    DataType native;   /* the type the features are held in when nothing forces float32:
                        * DATA_U8 for IDX and HDF5 uint8, DATA_F32 for the rest */
    char stored[16];   /* the file's element type: "u8", "float64", "int32", ... */
} DataShape;

typedef enum { DATA_FORMAT_AUTO = 0, DATA_FORMAT_IDX, DATA_FORMAT_HDF5 } DataFormat;

/* Where one data set lives. IDX: x_path holds the images, y_path the labels; the names are
 * ignored. HDF5: x_name and y_name are dataset paths ("/X", "/train/y") in x_path and
 * y_path (often the same file). y_path NULL: features only (mlp predict).
 * y_optional (HDF5): a y_name absent from y_path means no labels, not an error. */
typedef struct {
    const char *x_path, *y_path;
    const char *x_name, *y_name;
    DataFormat format;
    int y_optional;
} DataSource;

/* The HDF5 path of dataset `name` in `group`: "/" + "X" -> "/X", "/train" + "X" ->
 * "/train/X"; a name that starts with '/' is taken as it is. Returns 0, or -1 if it does
 * not fit out (len bytes). */
int data_dataset_path(char *out, size_t len, const char *group, const char *name);

/* The format of the file at path by its signature (DATA_FORMAT_IDX, the fallback, for a
 * file of no known signature or one that cannot be read). */
DataFormat data_format_of(const char *path);

/* "auto", "idx", "hdf5" -> DataFormat; -1 for any other name. */
int data_format_parse(const char *name);

/* Read and check the headers only (the same checks and messages as data_read_into up to
 * the payloads), so that the feature buffer can be sized before anything is read.
 * Returns 0, or -1 with a message in err (shape then zeroed). */
int data_probe_source(DataShape *shape, const DataSource *src, char *err, size_t errlen);

/* Read one data set, the features as `type` (DATA_U8 only when the shape's native type is
 * DATA_U8; DATA_F32 always works: values converted to float32, each checked finite):
 *   own = 1:        the features are allocated (ds->owns_images = 1); x and bytes unused.
 *   x != NULL:      read into x[0..bytes), and bytes must be exactly n * d * element size
 *                   (an error otherwise, e.g. when the file changed after the probe).
 *   x == NULL:      checksum only: the features are streamed in blocks into ds->crc and
 *                   not kept. Labels are kept in every mode.
 * classes > 0: every label must be < classes; 0: K = 1 + the largest label (at most 256).
 * Every check and every message is the same in all modes, and so is ds->crc.
 * Returns 0, or -1 with a message in err; on error ds holds nothing to free. */
int data_read_into(Dataset *ds, const DataSource *src, int classes, DataType type, int own,
                   void *x, size_t bytes, char *err, size_t errlen);

/* IDX or HDF5 by signature, with the default dataset names /X and /y, features in their
 * native type: the forms the unit tests and fuzzers of the IDX reader use.
 * data_load owns the features; data_load_into as data_read_into with x = pixels. */
int data_load(Dataset *ds, const char *images_path, const char *labels_path, int classes,
              char *err, size_t errlen);
int data_probe(DataShape *shape, const char *images_path, const char *labels_path, char *err,
               size_t errlen);
int data_load_into(Dataset *ds, const char *images_path, const char *labels_path, int classes,
                   uint8_t *pixels, size_t bytes, char *err, size_t errlen);

/* Bytes of one element of type t. */
size_t data_type_size(DataType t);

/* Frees the labels, and the features if owned; leaves ds zeroed. NULL and zeroed are fine. */
void data_free(Dataset *ds);

/* Per-feature mean and standard deviation (population) of the rows of x (n, d) row-major
 * that skip does not mark (skip (n), nonzero = left out, e.g. held out for validation; NULL
 * = every row), computed in double in a fixed order: sums over samples in index order, then
 * the squared deviations likewise. The same bits for the same x on any rank. A feature
 * whose deviation is 0 (constant) gets std = 1, so that it stays finite (it becomes 0).
 * At least one row must be counted. mean, std (d). */
void data_standardize_stats(const float *x, const uint8_t *skip, size_t n, size_t d,
                            double *mean, double *std);

/* x[i,j] = (float)((x[i,j] - mean[j]) / std[j]) for i < n. x (n, d); mean, std (d). */
void data_standardize_apply(float *x, size_t n, size_t d, const double *mean,
                            const double *std);

/* order[0..n) = a permutation of 0..n-1 that depends only on (seed, epoch): the same on
 * every rank and for every rank count. */
void data_epoch_order(uint32_t *order, size_t n, uint64_t seed, uint64_t epoch);

#endif
