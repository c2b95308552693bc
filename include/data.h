/* data: IDX files (plain or gzip, read through zlib) and the per-epoch sample order.
 *
 * Owns: Dataset memory (data_free releases it): the labels always, the pixels only when
 * data_load allocated them (owns_images); pixels read into a caller's buffer stay the
 * caller's. Knows nothing of ranks: a trainer that shares one copy of the pixels between
 * processes probes the sizes, allocates the buffer itself and calls data_load_into.
 * Every header field is checked against the file: magic, dimensions, counts, label range,
 * and the file length (a short file or trailing bytes are errors, never a silent short read).
 * A path that is not a regular file (a FIFO, a device, a directory) is refused when opened,
 * before anything is read, so that nothing can block.
 * Errors: -1 with one line in err naming the file and what is wrong.
 */
#ifndef MLP_DATA_H
#define MLP_DATA_H

#include <stddef.h>
#include <stdint.h>

#define DATA_ERR_MAX 1024

typedef struct {
    uint8_t *images;   /* (n, d) row-major, raw pixels 0..255 (scaled by 1/255 in the kernels) */
    uint8_t *labels;   /* (n) */
    size_t n;          /* samples */
    size_t d;          /* rows * cols */
    uint32_t rows, cols;
    int classes;       /* K: given to data_load, or 1 + the largest label when derived */
    uint32_t crc;      /* CRC-32 (zlib) of the whole pixel payload, then the whole label
                        * payload, as read from the files: the same whether or not the
                        * pixels were kept */
    int owns_images;   /* 1: data_free frees images; 0: the caller's buffer, or NULL */
} Dataset;

/* What a pair of headers announces. */
typedef struct {
    size_t n;          /* samples: images = labels */
    size_t d;          /* rows * cols */
    uint32_t rows, cols;
} DataShape;

/* Load an image file (IDX magic 0x00000803, u8, 3 dimensions) and a label file
 * (0x00000801, u8, 1 dimension) with the same count. classes > 0: every label must be
 * < classes; classes == 0: derive it as 1 + the largest label.
 * Returns 0, or -1 with a message in err. On error ds holds nothing to free. */
int data_load(Dataset *ds, const char *images_path, const char *labels_path, int classes,
              char *err, size_t errlen);

/* Read and check both headers only (the same checks and messages as data_load, up to the
 * payloads), so that the pixel buffer can be sized before anything is read.
 * Returns 0, or -1 with a message in err (shape then zeroed). */
int data_probe(DataShape *shape, const char *images_path, const char *labels_path, char *err,
               size_t errlen);

/* data_load, with the pixels put where the caller says:
 *   pixels != NULL: read into pixels[0..bytes), and bytes must be exactly n * d (an error
 *                   otherwise, e.g. when the file changed after data_probe); ds->images =
 *                   pixels, not owned. On error the buffer's content is undefined.
 *   pixels == NULL: checksum only: the pixels are streamed in 1 MiB blocks into ds->crc
 *                   and not kept (ds->images = NULL); labels are kept.
 * Every check and every message is data_load's, and ds->crc is the same in all modes. */
int data_load_into(Dataset *ds, const char *images_path, const char *labels_path, int classes,
                   uint8_t *pixels, size_t bytes, char *err, size_t errlen);

/* Frees the labels, and the images if owned; leaves ds zeroed. NULL and zeroed are fine. */
void data_free(Dataset *ds);

/* order[0..n) = a permutation of 0..n-1 that depends only on (seed, epoch): the same on
 * every rank and for every rank count. */
void data_epoch_order(uint32_t *order, size_t n, uint64_t seed, uint64_t epoch);

#endif
