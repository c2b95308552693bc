/* fuzz_checkpoint: ckpt_load on an arbitrary file; the input is the whole HDF5 file.
 *
 * HDF5 itself is the system library, not instrumented: AddressSanitizer still sees its
 * wild reads and writes of our buffers (through the intercepted memcpy/memset) and its
 * segfaults, but coverage counts only our code. A crash inside libhdf5 on a malformed file
 * is an HDF5 bug, not ours; see docs/robustness.md for how such inputs are kept.
 *
 * ckpt_load refuses any file without mlp's sealed 512-byte header (size and CRC-32 of the
 * rest), so raw mutations would almost all stop at the seal check. Hence an input that
 * starts with the seal tag ("mlp-checkpoint ") is taken as the whole file, which fuzzes the
 * header check; any other input is taken as the HDF5 image behind the header, and the
 * harness puts a sealed header in front, which fuzzes HDF5's parsing and the schema checks
 * (the seeds in fuzz/corpus/checkpoint are such header-less images).
 *
 * Checked beyond "no crash": the one-line error contract, and no control character in a
 * message (ckpt_escape); on success the state is what ckpt_load promises: positive shapes,
 * every weight and history entry readable (an array shorter than its shape is an
 * AddressSanitizer report here), strings terminated.
 */
#include "fuzz.h"

#include "checkpoint.h"
#include "fsafe.h"

#include <stdlib.h>

#include <string.h>

static void fuzz_checkpoint_check(const CkptState *s)
{
    if (s->d == 0 || s->hidden == 0 || s->classes == 0)
        fuzz_fail("ckpt_load accepted d=%llu hidden=%llu classes=%llu",
                  (unsigned long long)s->d, (unsigned long long)s->hidden,
                  (unsigned long long)s->classes);
    if (!s->W1 || !s->b1 || !s->W2 || !s->b2 || !s->config)
        fuzz_fail("ckpt_load succeeded with a missing array or config");
    if (!memchr(s->reduce, '\0', sizeof s->reduce) ||
        !memchr(s->created, '\0', sizeof s->created) ||
        !memchr(s->mlp_version, '\0', sizeof s->mlp_version))
        fuzz_fail("ckpt_load left a string attribute unterminated");
    float sum = 0;
    for (size_t i = 0; i < s->d * s->hidden; i++)
        sum += s->W1[i];
    for (size_t i = 0; i < s->hidden * s->classes; i++)
        sum += s->W2[i];
    for (size_t i = 0; i < s->hidden; i++)
        sum += s->b1[i];
    for (size_t i = 0; i < s->classes; i++)
        sum += s->b2[i];
    const CkptHistory *h = &s->history;
    if (h->len > h->cap)
        fuzz_fail("history len %zu > cap %zu", h->len, h->cap);
    double hsum = 0;
    for (size_t i = 0; i < h->len; i++)
        hsum += (double)h->epoch[i] + h->train_loss[i] + h->train_acc[i] + h->test_acc[i] +
                h->seconds[i];
    (void)strlen(s->config);
    (void)sum;
    (void)hsum;
}

/* HDF5 1.10 leaks a little on many malformed files (H5Fopen's error paths, for one). Each
 * leak would end a fuzzing job, so LeakSanitizer is told to ignore memory allocated inside
 * libhdf5; our own allocations are still checked. (A hook the sanitizer runtime calls;
 * unused in a build without it.) */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libhdf5\n";
}

int fuzz_checkpoint(const uint8_t *data, size_t size)
{
    static FuzzFile file = FUZZ_FILE_INIT;
    static const char tag[] = CKPT_FORMAT " ";
    if (size >= sizeof tag - 1 && memcmp(data, tag, sizeof tag - 1) == 0) {
        fuzz_file_put(&file, "checkpoint.h5", data, size);
    } else {
        if (size > SIZE_MAX - FSAFE_SEAL_BYTES)
            fuzz_fail("input of %zu bytes", size);
        unsigned char *img = calloc(size + FSAFE_SEAL_BYTES, 1);
        if (!img)
            fuzz_fail("out of memory for a %zu-byte input", size);
        if (size > 0)
            memcpy(img + FSAFE_SEAL_BYTES, data, size);
        if (fsafe_seal(img, size + FSAFE_SEAL_BYTES, CKPT_FORMAT) != 0)
            fuzz_fail("fsafe_seal failed");
        fuzz_file_put(&file, "checkpoint.h5", img, size + FSAFE_SEAL_BYTES);
        free(img);
    }
    CkptState s;
    char err[CKPT_ERR_MAX] = "";
    int rc = ckpt_load(file.path, &s, err, sizeof err);
    fuzz_check_err("ckpt_load", rc, err, sizeof err);
    for (const unsigned char *c = (const unsigned char *)err; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            fuzz_fail("ckpt_load: control byte 0x%02x in the message: %s", *c, err);
    if (rc == 0)
        fuzz_checkpoint_check(&s);
    ckpt_state_free(&s);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_checkpoint(data, size);
}
#endif
