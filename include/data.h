/* data: IDX files (plain or gzip, read through zlib) and the per-epoch sample order.
 *
 * Owns: Dataset memory (data_free releases it). Knows nothing of ranks.
 * Every header field is checked against the file: magic, dimensions, counts, label range,
 * and the file length (a short file or trailing bytes are errors, never a silent short read).
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
} Dataset;

/* Load an image file (IDX magic 0x00000803, u8, 3 dimensions) and a label file
 * (0x00000801, u8, 1 dimension) with the same count. classes > 0: every label must be
 * < classes; classes == 0: derive it as 1 + the largest label.
 * Returns 0, or -1 with a message in err. On error ds holds nothing to free. */
int data_load(Dataset *ds, const char *images_path, const char *labels_path, int classes,
              char *err, size_t errlen);

void data_free(Dataset *ds);

/* order[0..n) = a permutation of 0..n-1 that depends only on (seed, epoch): the same on
 * every rank and for every rank count. */
void data_epoch_order(uint32_t *order, size_t n, uint64_t seed, uint64_t epoch);

#endif
