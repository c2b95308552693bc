/* fuzz_config: config_load on arbitrary INI text and --set overrides.
 *
 * Input: byte 0 holds the number of overrides n (its low 2 bits, so 0..3); the next n
 * lines (each ended by '\n', or by the end of the input) are the --set arguments; the rest
 * is the INI file. A seed is "\0" followed by an INI file.
 *
 * Checked beyond "no crash": the one-line error contract, and on success the documented
 * round trip: config_to_ini's text (stored in every checkpoint) must load back to the same
 * Config, field for field.
 */
#include "fuzz.h"

#include "config.h"

#include <stdlib.h>
#include <string.h>

#define FUZZ_CONFIG_MAX_OVERRIDES 3

/* Field by field, so that padding bytes never decide the answer; source is where each
 * was read from and differs by design. */
static void fuzz_config_compare(const Config *a, const Config *b, const char *ini)
{
    const char *bad = NULL;
    if (strcmp(a->data.train_images, b->data.train_images) != 0) bad = "data.train_images";
    else if (strcmp(a->data.train_labels, b->data.train_labels) != 0) bad = "data.train_labels";
    else if (strcmp(a->data.test_images, b->data.test_images) != 0) bad = "data.test_images";
    else if (strcmp(a->data.test_labels, b->data.test_labels) != 0) bad = "data.test_labels";
    else if (a->data.train_limit != b->data.train_limit) bad = "data.train_limit";
    else if (a->model.hidden != b->model.hidden) bad = "model.hidden";
    else if (a->model.seed != b->model.seed) bad = "model.seed";
    else if (strcmp(a->model.init, b->model.init) != 0) bad = "model.init";
    else if (a->model.classes != b->model.classes) bad = "model.classes";
    else if (a->train.epochs != b->train.epochs) bad = "train.epochs";
    else if (a->train.batch != b->train.batch) bad = "train.batch";
    else if (memcmp(&a->train.lr, &b->train.lr, sizeof a->train.lr) != 0) bad = "train.lr";
    else if (a->train.chunk != b->train.chunk) bad = "train.chunk";
    else if (a->train.reduce != b->train.reduce) bad = "train.reduce";
    else if (a->train.eval_every != b->train.eval_every) bad = "train.eval_every";
    else if (strcmp(a->checkpoint.dir, b->checkpoint.dir) != 0) bad = "checkpoint.dir";
    else if (a->checkpoint.every != b->checkpoint.every) bad = "checkpoint.every";
    else if (a->checkpoint.every_steps != b->checkpoint.every_steps) bad = "checkpoint.every_steps";
    else if (a->checkpoint.keep != b->checkpoint.keep) bad = "checkpoint.keep";
    else if (strcmp(a->checkpoint.resume, b->checkpoint.resume) != 0) bad = "checkpoint.resume";
    else if (a->checkpoint.overwrite != b->checkpoint.overwrite) bad = "checkpoint.overwrite";
    else if (strcmp(a->log.metrics, b->log.metrics) != 0) bad = "log.metrics";
    else if (a->log.progress != b->log.progress) bad = "log.progress";
    if (bad)
        fuzz_fail("config_to_ini round trip changed %s; text:\n%s", bad, ini);
}

int fuzz_config(const uint8_t *data, size_t size)
{
    static FuzzFile file = FUZZ_FILE_INIT, again = FUZZ_FILE_INIT;
    if (size == 0)
        return 0;
    const uint8_t *p = data + 1, *end = data + size;
    int n = data[0] & FUZZ_CONFIG_MAX_OVERRIDES;
    char *overrides[FUZZ_CONFIG_MAX_OVERRIDES] = {NULL};
    for (int i = 0; i < n; i++) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        overrides[i] = malloc(len + 1);
        if (!overrides[i])
            fuzz_fail("out of memory for an override of %zu bytes", len);
        memcpy(overrides[i], p, len);
        overrides[i][len] = '\0';    /* an embedded NUL ends the argument, as in argv */
        p = nl ? nl + 1 : end;
    }
    fuzz_file_put(&file, "config.ini", p, (size_t)(end - p));

    Config c;
    char err[CONFIG_ERR_MAX] = "";
    int rc = config_load(&c, file.path, n, overrides, err, sizeof err);
    fuzz_check_err("config_load", rc, err, sizeof err);
    if (rc == 0) {
        char *ini = config_to_ini(&c);
        if (!ini)
            fuzz_fail("config_to_ini returned NULL");
        fuzz_file_put(&again, "config-again.ini", ini, strlen(ini));
        Config back;
        char err2[CONFIG_ERR_MAX] = "";
        if (config_load(&back, again.path, 0, NULL, err2, sizeof err2) != 0)
            fuzz_fail("config_to_ini's text does not load back: %s\ntext:\n%s", err2, ini);
        fuzz_config_compare(&c, &back, ini);
        free(ini);
    }
    for (int i = 0; i < n; i++)
        free(overrides[i]);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_config(data, size);
}
#endif
