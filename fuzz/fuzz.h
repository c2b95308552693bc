/* fuzz: libFuzzer harnesses for the three parsers of untrusted files (INI config, IDX data,
 * HDF5 checkpoint), and the helpers they share.
 *
 * Each harness is one function, fuzz_config / fuzz_idx / fuzz_checkpoint, taking the raw
 * fuzzer input. Built with clang -fsanitize=fuzzer (fuzz/fuzz.mk) each file also defines
 * LLVMFuzzerTestOneInput; built with -DFUZZ_REPLAY and the normal compiler the same
 * functions are driven by fuzz/replay.c over files, which is how `make test` replays the
 * seed corpora and every regression input without clang.
 *
 * A harness returns 0 for any input the code under test handles (accepted or refused with
 * a message); a broken invariant is reported on stderr and abort()s, which libFuzzer
 * counts as a crash and replay as a failure.
 */
#ifndef MLP_FUZZ_H
#define MLP_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* A per-process file, $TMPDIR/mlp-fuzz-PID-NAME (default /tmp), that the code under test
 * opens by path like any other. Created on first use, rewritten for each input (the same
 * path every time), removed when the process exits normally. Not a memfd: HDF5 1.10 wants
 * the real path of the file it opens, which /proc/self/fd/N does not have. */
typedef struct {
    int fd;          /* -1 until first use */
    char path[256];
} FuzzFile;

#define FUZZ_FILE_INIT { -1, "" }

/* Replace the file's contents with data[0..size). Aborts if the file cannot be written:
 * that is a broken harness, not a finding. */
void fuzz_file_put(FuzzFile *f, const char *name, const void *data, size_t size);

/* Report a broken invariant (printf-style) and abort. */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2), noreturn))
#endif
void fuzz_fail(const char *fmt, ...);

/* The error message contract shared by the three loaders: on failure a non-empty, single
 * line that fits the buffer. Aborts otherwise. With FUZZ_VERBOSE=1 in the environment it
 * also prints the outcome to stderr. */
void fuzz_check_err(const char *who, int rc, const char *err, size_t errlen);

int fuzz_config(const uint8_t *data, size_t size);
int fuzz_idx(const uint8_t *data, size_t size);
int fuzz_checkpoint(const uint8_t *data, size_t size);
int fuzz_h5data(const uint8_t *data, size_t size);   /* the HDF5 data reader */

#endif
