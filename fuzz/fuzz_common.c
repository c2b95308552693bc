/* fuzz_common: the in-memory input files and checks shared by the harnesses (fuzz.h). */
#include "fuzz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: invariant broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* Every file made, for removal at exit. */
static FuzzFile *fuzz_files[8];
static int fuzz_nfiles;

static void fuzz_files_remove(void)
{
    for (int i = 0; i < fuzz_nfiles; i++)
        (void)unlink(fuzz_files[i]->path);
}

void fuzz_file_put(FuzzFile *f, const char *name, const void *data, size_t size)
{
    if (f->fd < 0) {
        if (fuzz_nfiles == (int)(sizeof fuzz_files / sizeof fuzz_files[0]))
            fuzz_fail("more than %d fuzz files", fuzz_nfiles);
        const char *tmp = getenv("TMPDIR");
        int n = snprintf(f->path, sizeof f->path, "%s/mlp-fuzz-%ld-%s",
                         tmp && tmp[0] ? tmp : "/tmp", (long)getpid(), name);
        if (n < 0 || (size_t)n >= sizeof f->path)
            fuzz_fail("temporary path for %s too long", name);
        f->fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (f->fd < 0)
            fuzz_fail("%s: cannot create: %s", f->path, strerror(errno));
        if (fuzz_nfiles == 0)
            atexit(fuzz_files_remove);
        fuzz_files[fuzz_nfiles++] = f;
    }
    if (ftruncate(f->fd, 0) != 0)
        fuzz_fail("%s: ftruncate: %s", f->path, strerror(errno));
    const char *p = data;
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(f->fd, p + done, size - done, (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            fuzz_fail("%s: write of %zu bytes: %s", f->path, size,
                      w < 0 ? strerror(errno) : "no progress");
        done += (size_t)w;
    }
}

void fuzz_check_err(const char *who, int rc, const char *err, size_t errlen)
{
    if (rc != 0 && rc != -1)
        fuzz_fail("%s returned %d (expected 0 or -1)", who, rc);
    size_t len = strnlen(err, errlen);
    if (len == errlen)
        fuzz_fail("%s: error message not terminated", who);
    if (rc != 0 && len == 0)
        fuzz_fail("%s failed without a message", who);
    if (rc != 0 && strchr(err, '\n'))
        fuzz_fail("%s: message spans lines: %s", who, err);
    /* FUZZ_VERBOSE=1 shows what each input came to (replay; too slow for fuzzing). */
    const char *verbose = getenv("FUZZ_VERBOSE");
    if (verbose && verbose[0] == '1')
        fprintf(stderr, "%s: %s\n", who, rc == 0 ? "accepted" : err);
}
