/* ckpt_schema.h: the checkpoint module's own header (not a public contract; see
 * include/checkpoint.h for that). The module is three files:
 *   ckpt_schema.c  the schema: one table of datasets and one of root attributes, walked by
 *                  the writer and the reader alike, the range checks both apply, and the
 *                  error reporting shared by both (HDF5's messages folded into one line);
 *   checkpoint.c   writing (the in-memory HDF5 image, ckpt_save), the history, and the
 *                  names, listing and pruning of checkpoint files in a directory;
 *   ckpt_read.c    reading and validating (ckpt_load, ckpt_reseal).
 * How the bytes reach the disk (atomic replace, fsyncs, the CRC seal) is fsafe's.
 */
#ifndef MLP_CKPT_SCHEMA_H
#define MLP_CKPT_SCHEMA_H

#include "checkpoint.h"
#include "fsafe.h"

#include <hdf5.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The first FSAFE_SEAL_BYTES bytes of a checkpoint are an HDF5 user block (HDF5 and its
 * tools skip it) holding fsafe's seal line: "mlp-checkpoint crc32 XXXXXXXX size N".
 * ckpt_load checks the size and the CRC-32 of everything after the block before HDF5
 * parses a byte, so a truncated or damaged file is one clear error, never a crash inside
 * libhdf5 (which fuzzing showed can crash or hang on damaged metadata). */
#define CKPT_SEAL_TAG CKPT_FORMAT

#define CKPT_PATH_MAX FSAFE_PATH_MAX
#define CKPT_H5_DETAIL 512             /* bytes of HDF5's own message kept */

/* HDF5 prints its whole error stack to stderr by default; we report one line instead. */
typedef struct {
    bool saved;
    H5E_auto2_t func;
    void *data;
} CkptH5Quiet;

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

/* The tables (ckpt_schema.c). */
enum { CKPT_NGROUPS = 3, CKPT_NDSETS_MAX = 32 };
extern const char *const ckpt_groups[];           /* (CKPT_NGROUPS) "/model", ... */
extern const CkptDsetSpec ckpt_dsets[];           /* (ckpt_ndsets) in file order */
extern const size_t ckpt_ndsets;
extern const CkptAttrSpec ckpt_attrs[];           /* (ckpt_nattrs) in file order */
extern const size_t ckpt_nattrs;
#define CKPT_NDSETS ckpt_ndsets
#define CKPT_NATTRS ckpt_nattrs

#define CKPT_FIELD(f) offsetof(CkptState, f)
#define CKPT_CAP(f) sizeof ((CkptState *)0)->f
#define CKPT_MAX_I32 2147483647.0           /* INT32_MAX */
#define CKPT_MAX_U32 4294967295.0           /* UINT32_MAX: steps of an epoch in a name's key */
#define CKPT_MAX_I64 9223372036854775807.0  /* INT64_MAX, as a double */
#define CKPT_MAX_U64 18446744073709551615.0

__attribute__((format(printf, 3, 4)))
void ckpt_err(char *err, size_t errlen, const char *fmt, ...);

__attribute__((format(printf, 4, 5)))
void ckpt_h5_fail(char *err, size_t errlen, const char *path, const char *fmt, ...);

void ckpt_h5_quiet(CkptH5Quiet *q);

void ckpt_h5_restore(const CkptH5Quiet *q);

hid_t ckpt_mtype(CkptType t, hid_t strtype);

hid_t ckpt_ftype(CkptType t, hid_t strtype);

size_t ckpt_type_size(CkptType t);

void *ckpt_dset_array(const CkptState *s, const CkptDsetSpec *d);

void ckpt_dims_of(const CkptState *s, hsize_t dim[CKPT_NDIMS]);

int ckpt_check_values(const CkptState *s, const char *who, char *err, size_t errlen);

int ckpt_check_state(const CkptState *s, long keep, char *err, size_t errlen);

int ckpt_build_image(const char *path, const CkptState *s, void **image, size_t *len,
                            char *err, size_t errlen);

#endif
