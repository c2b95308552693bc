/* fuzz_h5data: the HDF5 data reader (data_h5.c) on an arbitrary file; the input is the
 * whole HDF5 file, features at /X and labels at /y.
 *
 * HDF5 itself is the system library, not instrumented, and crashes or loops on some
 * malformed files inside its own parsing (fuzz/known-hdf5, docs/robustness.md): fuzz/run
 * runs this harness in fork mode and fuzz/triage sorts such failures out as HDF5's, as
 * for fuzz_checkpoint.
 *
 * A file may announce a shape far larger than it stores (unwritten chunks read as the fill
 * value): the trainer bounds that by the memory check before reading, and the harness
 * skips reading announced shapes above FUZZ_H5_MAX_VALUES values.
 *
 * Checked beyond "no crash": the one-line error contract; the probe and the reads agree on
 * status, message and shape; on success every feature and label is readable, labels are
 * below classes, float32 features are finite; the CRC-32 is the same whether the features
 * are kept in an owned buffer, read into the caller's, or only checksummed; a uint8 file
 * read as float32 holds the same values.
 */
#include "fuzz.h"

#include "data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_H5_MAX_VALUES (1u << 22)

#ifndef FUZZ_REPLAY   /* the replay driver links fuzz_checkpoint.c's, the same */
/* HDF5 1.10 leaks on many malformed files (see fuzz_checkpoint.c). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libhdf5\n";
}
#endif

static void fuzz_h5_check(const Dataset *ds, const DataShape *shape, int classes)
{
    if (ds->n != shape->n || ds->d != shape->d || ds->n == 0 || ds->d == 0)
        fuzz_fail("read n=%zu d=%zu, probe n=%zu d=%zu", ds->n, ds->d, shape->n, shape->d);
    if (ds->classes < 1 || ds->classes > 256 ||
        (classes > 0 && ds->classes != classes))
        fuzz_fail("classes=%d (asked for %d)", ds->classes, classes);
    double sum = 0;
    for (size_t i = 0; i < ds->n * ds->d; i++) {
        if (ds->type == DATA_F32) {
            if (!isfinite(ds->features[i]))
                fuzz_fail("non-finite feature %g accepted at %zu", ds->features[i], i);
            sum += ds->features[i];
        } else {
            sum += ds->images[i];
        }
    }
    for (size_t i = 0; i < ds->n; i++)
        if (ds->labels[i] >= ds->classes)
            fuzz_fail("label %u at %zu not below classes=%d", ds->labels[i], i, ds->classes);
    (void)sum;
}

int fuzz_h5data(const uint8_t *data, size_t size)
{
    static FuzzFile file = FUZZ_FILE_INIT;
    fuzz_file_put(&file, "data.h5", data, size);
    const DataSource src = {file.path, file.path, "/X", "/y", DATA_FORMAT_HDF5, 0};
    const int classes = size > 0 && (data[size - 1] & 1) ? 37 : 0;
    char err[DATA_ERR_MAX] = "", again[DATA_ERR_MAX] = "";
    DataShape shape;
    int rc = data_probe_source(&shape, &src, err, sizeof err);
    fuzz_check_err("data_probe_source", rc, err, sizeof err);
    if (rc != 0 || shape.n * shape.d > FUZZ_H5_MAX_VALUES || shape.n > FUZZ_H5_MAX_VALUES)
        return 0;

    Dataset ds, other;
    rc = data_read_into(&ds, &src, classes, shape.native, 1, NULL, 0, err, sizeof err);
    fuzz_check_err("data_read_into", rc, err, sizeof err);
    if (rc == 0)
        fuzz_h5_check(&ds, &shape, classes);
    else if (ds.images || ds.features || ds.labels || ds.n)
        fuzz_fail("data_read_into failed but left memory in the dataset");

    /* checksum only, and into a buffer of the probed size: the same outcome */
    const size_t bytes = shape.n * shape.d * data_type_size(shape.native);
    void *buf = malloc(bytes);
    if (!buf)
        fuzz_fail("out of memory for %zu bytes", bytes);
    for (int mode = 0; mode < 2; mode++) {
        int r = data_read_into(&other, &src, classes, shape.native, 0, mode ? buf : NULL, bytes,
                               again, sizeof again);
        if (r != rc || (rc != 0 && strcmp(err, again) != 0) || (rc == 0 && other.crc != ds.crc))
            fuzz_fail("mode %d gave %d \"%s\" crc %08x; owned read %d \"%s\" %08x", mode, r,
                      again, (unsigned)other.crc, rc, err, (unsigned)ds.crc);
        data_free(&other);
    }
    free(buf);

    /* uint8 as float32 (standardisation does this): the same values */
    if (rc == 0 && shape.native == DATA_U8) {
        int r = data_read_into(&other, &src, classes, DATA_F32, 1, NULL, 0, again,
                               sizeof again);
        if (r != 0)
            fuzz_fail("uint8 read, float32 read failed: %s", again);
        for (size_t i = 0; i < ds.n * ds.d; i++)
            if (other.features[i] != (float)ds.images[i])
                fuzz_fail("uint8 %u read as float32 %g at %zu", ds.images[i], other.features[i], i);
        data_free(&other);
    }
    data_free(&ds);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_h5data(data, size);
}
#endif
