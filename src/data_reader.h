/* data_reader: the interface between data.c and one file format's reader (data_idx.c,
 * data_h5.c). Private to the data module.
 *
 * A reader checks everything about its files and reports errors through data_fail, so
 * that every message has one shape: `PATH: what is wrong`. data.c does the rest: mode
 * handling common to all formats (zeroing, the classes argument) and the choice of reader.
 */
#ifndef MLP_DATA_READER_H
#define MLP_DATA_READER_H

#include "data.h"

#include <stddef.h>

typedef struct {
    const char *name;                 /* "idx", "hdf5": data.format's value */
    DataFormat format;
    /* 1 if the file at path starts with this format's signature, 0 if not (or unreadable:
     * the probe then reports why). */
    int (*sniff)(const char *path);
    /* Both headers checked; shape filled. 0, or -1 with err. */
    int (*probe)(DataShape *shape, const DataSource *src, char *err, size_t errlen);
    /* data_read_into's contract (ds zeroed on entry, classes >= 0, type allowed for the
     * file): 0, or -1 with err, leaving in ds only what data_free releases. */
    int (*read)(Dataset *ds, const DataSource *src, int classes, DataType type, int own,
                void *x, size_t bytes, char *err, size_t errlen);
} DataReader;

extern const DataReader data_reader_idx;
extern const DataReader data_reader_h5;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
void data_fail(char *err, size_t errlen, const char *path, const char *fmt, ...);

#endif
