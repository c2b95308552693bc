/* replay: run a fuzz harness over files without libFuzzer, built with the normal compiler
 * and flags (so `make test` needs no clang; with SAN=1 it runs under the sanitizers too).
 *
 *   build/fuzz/replay config|idx|checkpoint FILE...
 *
 * Each file is one input, exactly as the fuzzer would pass it. A harness that finds a
 * broken invariant aborts, so a non-zero exit or a signal is a failure; otherwise the exit
 * status is 0 and one line per file says it passed.
 */
#include "fuzz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLAY_MAX_INPUT (64u << 20)   /* far above any corpus file; a typo'd path to a big
                                          file fails instead of eating memory */

static int replay_file(int (*harness)(const uint8_t *, size_t), const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = malloc(REPLAY_MAX_INPUT + 1);
    if (!buf) {
        fprintf(stderr, "replay: out of memory (%u bytes)\n", REPLAY_MAX_INPUT + 1);
        fclose(f);
        return -1;
    }
    size_t n = fread(buf, 1, REPLAY_MAX_INPUT + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > REPLAY_MAX_INPUT) {
        fprintf(stderr, "replay: %s: %s\n", path,
                bad ? "read error" : "larger than 64 MiB: not a fuzz input");
        free(buf);
        return -1;
    }
    harness(buf, n);
    free(buf);
    printf("ok  %s (%zu bytes)\n", path, n);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*harness)(const uint8_t *, size_t);
    } targets[] = {
        {"config", fuzz_config},
        {"idx", fuzz_idx},
        {"checkpoint", fuzz_checkpoint},
        {"h5data", fuzz_h5data},
    };
    if (argc < 3) {
        fprintf(stderr, "usage: %s config|idx|checkpoint|h5data FILE...\n", argv[0]);
        return 2;
    }
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        if (strcmp(argv[1], targets[t].name) != 0)
            continue;
        for (int i = 2; i < argc; i++)
            if (replay_file(targets[t].harness, argv[i]) != 0)
                return 1;
        return 0;
    }
    fprintf(stderr, "replay: unknown target '%s' (config, idx, checkpoint or h5data)\n",
            argv[1]);
    return 2;
}
