/* rundir: see include/rundir.h. */
#define _GNU_SOURCE   /* F_OFD_SETLK */
#include "rundir.h"

#include "checkpoint.h"
#include "fsafe.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RUNDIR_METRICS_MAX (256u << 20)   /* a metrics file larger than this is not ours */

__attribute__((format(printf, 3, 4)))
static int rundir_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int rundir_join(char *out, size_t len, const char *dir, const char *name, char *err,
                       size_t errlen)
{
    if ((size_t)snprintf(out, len, "%s/%s", dir, name) >= len)
        return rundir_fail(err, errlen, "%s/%s: path too long", dir, name);
    return 0;
}

/* "20261201T102447Z": the stamp of side files. */
static void rundir_stamp(char *buf, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    snprintf(buf, len, "unknown");
    if (gmtime_r(&now, &tm))
        strftime(buf, len, "%Y%m%dT%H%M%SZ", &tm);
}

/* ------------------------------------------------------------------ lock and probe */

static int rundir_lock(RunDir *r, char *err, size_t errlen)
{
    char path[RUNDIR_PATH_MAX], holder[256] = "";
    if (rundir_join(path, sizeof path, r->dir, RUNDIR_LOCK, err, errlen) != 0)
        return -1;
    /* O_NONBLOCK: a FIFO planted under the name must not hang the open. */
    int fd = open(path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0)
        return rundir_fail(err, errlen, "%s: cannot open the run directory's lock file: %s",
                           path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return rundir_fail(err, errlen, "%s: the lock file is not a regular file", path);
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        int e = errno;
        if (e == EAGAIN || e == EACCES) {
            ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
            holder[n > 0 ? n : 0] = '\0';
            for (char *c = holder; *c; c++)   /* one line, nothing a terminal would obey */
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                    *c = *c == '\n' && c[1] == '\0' ? '\0' : '?';
            close(fd);
            return rundir_fail(err, errlen, "checkpoint.dir = %s is in use by another run (%s; "
                               "lock %s): wait for it to end, or choose another checkpoint.dir",
                               r->dir, holder[0] ? holder : "holder unknown", path);
        }
        close(fd);
        return rundir_fail(err, errlen, "%s: cannot lock: %s", path, strerror(e));
    }
    /* The lock counts only on the file now under the name: a run refused at start-up
     * removes the lock file of a directory it made (rundir_close), and we may have opened
     * that file just before. */
    struct stat now_st;
    if (stat(path, &now_st) != 0 || now_st.st_ino != st.st_ino || now_st.st_dev != st.st_dev) {
        close(fd);
        return rundir_fail(err, errlen, "checkpoint.dir = %s: its lock file %s changed while "
                           "another run started or ended there: try again", r->dir, path);
    }
    /* Who holds it, for the message a second run prints. */
    char host[128] = "?", when[32] = "?";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(holder, sizeof holder, "pid %ld on %s since %s\n", (long)getpid(), host,
                     when);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, holder, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return rundir_fail(err, errlen, "%s: cannot write: %s", path, strerror(e));
    }
    r->lock_fd = fd;
    return 0;
}

/* Everything a run writes goes into DIR: prove now that it can, not after the last epoch. */
static int rundir_probe(const RunDir *r, char *err, size_t errlen)
{
    char path[RUNDIR_PATH_MAX], name[64], block[4096];
    snprintf(name, sizeof name, ".probe.%ld", (long)getpid());
    if (rundir_join(path, sizeof path, r->dir, name, err, errlen) != 0)
        return -1;
    unlink(path);   /* a leftover of a killed run with our pid */
    memset(block, 'm', sizeof block);
    if (fsafe_write_new(path, block, sizeof block, err, errlen) != 0)
        return -1;
    if (unlink(path) != 0)
        return rundir_fail(err, errlen, "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

int rundir_open(RunDir *r, const char *dir, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->lock_fd = -1;
    size_t n = strlen(dir);
    if (n == 0)
        return rundir_fail(err, errlen, "checkpoint.dir is empty");
    if (n >= sizeof r->dir - 16)
        return rundir_fail(err, errlen, "checkpoint.dir = %s: path too long", dir);
    memcpy(r->dir, dir, n + 1);
    while (n > 1 && r->dir[n - 1] == '/')
        r->dir[--n] = '\0';
    struct stat st;
    const int existed = stat(r->dir, &st) == 0;
    if (existed && !S_ISDIR(st.st_mode))
        return rundir_fail(err, errlen, "checkpoint.dir = %s exists and is not a directory",
                           r->dir);
    char why[RUNDIR_PATH_MAX + 256];
    if (fsafe_mkdir_p(r->dir, why, sizeof why) != 0)
        return rundir_fail(err, errlen, "checkpoint.dir = %s: %s", r->dir, why);
    r->created = !existed;
    if (rundir_lock(r, err, errlen) != 0 || rundir_probe(r, err, errlen) != 0) {
        rundir_close(r, 1);
        return -1;
    }
    return 0;
}

void rundir_close(RunDir *r, int remove_if_unused)
{
    if (remove_if_unused && r->created && r->lock_fd >= 0) {
        char path[RUNDIR_PATH_MAX];
        if (rundir_join(path, sizeof path, r->dir, RUNDIR_LOCK, NULL, 0) == 0)
            unlink(path);
        rmdir(r->dir);   /* fails, as it should, when anything else is in it */
    }
    if (r->lock_fd >= 0)
        close(r->lock_fd);
    r->lock_fd = -1;
}

int rundir_check_regular(const char *path, const char *what, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? 0 : rundir_fail(err, errlen, "%s = %s: %s", what, path,
                                                 strerror(errno));
    if (!S_ISREG(st.st_mode))
        return rundir_fail(err, errlen, "%s = %s: %s, not a regular file", what, path,
                           fsafe_file_kind(&st));
    return 0;
}

/* ------------------------------------------------------------------ what a run left */

/* Lines after the first in a metrics file; -1 if it does not exist. */
static long rundir_count_rows(const char *path, char *err, size_t errlen, int *fail)
{
    FILE *f = fopen(path, "r");
    *fail = 0;
    if (!f) {
        if (errno != ENOENT)
            *fail = rundir_fail(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    long lines = 0;
    int c, last = '\n';
    while ((c = getc(f)) != EOF) {
        if (c == '\n')
            lines++;
        last = c;
    }
    if (last != '\n')
        lines++;
    if (ferror(f))
        *fail = rundir_fail(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    fclose(f);
    return lines > 0 ? lines - 1 : 0;
}

int rundir_scan(const char *dir, const char *metrics_path, RunFiles *f, char *err,
                size_t errlen)
{
    char path[RUNDIR_PATH_MAX];
    struct stat st;
    CkptEntry *list = NULL;
    size_t n = 0;
    memset(f, 0, sizeof *f);
    if (ckpt_list(dir, &list, &n, err, errlen) != 0)
        return -1;
    f->checkpoints = n;
    if (n > 0)
        snprintf(f->newest, sizeof f->newest, "%s", list[0].name);
    free(list);
    if (rundir_join(path, sizeof path, dir, "latest.h5", err, errlen) != 0)
        return -1;
    f->latest = lstat(path, &st) == 0;
    if (rundir_join(path, sizeof path, dir, RUNDIR_CONFIG, err, errlen) != 0)
        return -1;
    f->config = lstat(path, &st) == 0;
    int fail;
    f->metrics_rows = rundir_count_rows(metrics_path, err, errlen, &fail);
    return fail;
}

int rundir_has_run(const RunFiles *f)
{
    return f->checkpoints > 0 || f->latest || f->config || f->metrics_rows > 0;
}

void rundir_describe(const RunFiles *f, const char *metrics_path, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
#define RUNDIR_ADD(...)                                                                    \
    do {                                                                                   \
        if (used < len)                                                                    \
            used += (size_t)snprintf(buf + used, len - used, "%s", used ? ", " : "");      \
        if (used < len)                                                                    \
            used += (size_t)snprintf(buf + used, len - used, __VA_ARGS__);                 \
    } while (0)
    if (f->checkpoints > 0)
        RUNDIR_ADD("%zu checkpoint%s up to %s", f->checkpoints, f->checkpoints == 1 ? "" : "s",
                   f->newest);
    if (f->latest)
        RUNDIR_ADD("latest.h5");
    if (f->config)
        RUNDIR_ADD("%s", RUNDIR_CONFIG);
    if (f->metrics_rows > 0)
        RUNDIR_ADD("%s with %ld row%s", metrics_path, f->metrics_rows,
                   f->metrics_rows == 1 ? "" : "s");
#undef RUNDIR_ADD
}

int rundir_clear(const char *dir, int *removed, char *err, size_t errlen)
{
    CkptEntry *list = NULL;
    size_t n = 0;
    char path[RUNDIR_PATH_MAX];
    *removed = 0;
    if (ckpt_list(dir, &list, &n, err, errlen) != 0)
        return -1;
    int rc = 0;
    static const char *const others[] = {"latest.h5", "best.h5", RUNDIR_CONFIG};
    for (size_t i = 0; i < n + 3 && rc == 0; i++) {
        const char *name = i < n ? list[i].name : others[i - n];
        if (rundir_join(path, sizeof path, dir, name, err, errlen) != 0)
            rc = -1;
        else if (unlink(path) == 0)
            ++*removed;
        else if (errno != ENOENT)
            rc = rundir_fail(err, errlen, "%s: cannot remove (checkpoint.overwrite): %s", path,
                             strerror(errno));
    }
    free(list);
    return rc;
}

/* ------------------------------------------------------------------ metrics on resume */

static int rundir_read_all(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    *out = NULL;
    *len = 0;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return 0;   /* no metrics yet */
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > RUNDIR_METRICS_MAX)
        return rundir_fail(err, errlen, "%s: larger than %u MiB: not an mlp metrics file", path,
                           RUNDIR_METRICS_MAX >> 20);
    char *text = fsafe_read_file(path, len, err, errlen);
    if (!text)
        return -1;
    char *z = realloc(text, *len + 1);   /* NUL-terminated for strtoll */
    if (!z) {
        free(text);
        return rundir_fail(err, errlen, "%s: out of memory", path);
    }
    z[*len] = '\0';
    *out = z;
    return 0;
}

/* A new file PATH.aside-STAMP[-N] holding text; its name into name. */
static int rundir_write_aside(const char *path, const char *text, size_t len, char *name,
                              size_t namelen, char *err, size_t errlen)
{
    char stamp[32];
    rundir_stamp(stamp, sizeof stamp);
    for (int i = 0; i < 1000; i++) {
        int n = i == 0 ? snprintf(name, namelen, "%s.aside-%s", path, stamp)
                       : snprintf(name, namelen, "%s.aside-%s-%d", path, stamp, i);
        if (n < 0 || (size_t)n >= namelen)
            return rundir_fail(err, errlen, "%s: path too long for its side file", path);
        if (fsafe_write_new(name, text, len, err, errlen) == 0)
            return 0;
        if (errno != EEXIST) {
            name[0] = '\0';
            return -1;
        }
    }
    name[0] = '\0';
    return rundir_fail(err, errlen, "%s: no free name for its side file", path);
}

int rundir_metrics_resume(const char *path, const char *header, int64_t epoch, char *aside,
                          size_t asidelen, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    aside[0] = '\0';
    if (rundir_read_all(path, &text, &len, err, errlen) != 0)
        return -1;
    if (len == 0) {
        free(text);
        return 0;
    }
    const size_t hlen = strlen(header);
    if (len < hlen + 1 || memcmp(text, header, hlen) != 0 || text[hlen] != '\n') {
        free(text);
        return rundir_fail(err, errlen, "%s: its first line is not mlp's metrics header; it "
                           "is left as it is (choose another log.metrics)", path);
    }
    /* keep: the header and the rows up to `epoch`; moved: everything else, under a header. */
    char *keep = malloc(len + 1), *moved = malloc(len + hlen + 2);
    if (!keep || !moved) {
        free(text), free(keep), free(moved);
        return rundir_fail(err, errlen, "%s: out of memory", path);
    }
    size_t nkeep = hlen + 1, nmoved = hlen + 1;
    memcpy(keep, text, nkeep);
    memcpy(moved, text, nmoved);
    for (size_t at = hlen + 1; at < len;) {
        char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) + 1 : len;
        char *stop;
        errno = 0;
        long long e = strtoll(text + at, &stop, 10);
        int ok = nl && stop != text + at && *stop == ',' && errno == 0 && e >= 1 && e <= epoch;
        char *dst = ok ? keep + nkeep : moved + nmoved;
        memcpy(dst, text + at, end - at);
        *(ok ? &nkeep : &nmoved) += end - at;
        if (!nl)   /* a last line cut short: moved, and given the newline it lacked */
            moved[nmoved++] = '\n';
        at = end;
    }
    int rc = 0;
    /* The side file first, durable, then the rewrite: a failure anywhere leaves every row
     * in one file or the other (at worst in both), never in neither. */
    if (nmoved > hlen + 1) {
        rc = rundir_write_aside(path, moved, nmoved, aside, asidelen, err, errlen);
        if (rc == 0)
            rc = fsafe_write_atomic(path, keep, nkeep, err, errlen);
    }
    free(text), free(keep), free(moved);
    return rc;
}

int rundir_set_aside_later(const char *dir, int64_t epoch, int64_t epoch_step, int *moved,
                           char *first, size_t firstlen, char *err, size_t errlen)
{
    CkptEntry *list = NULL;
    size_t n = 0;
    char from[RUNDIR_PATH_MAX], to[RUNDIR_PATH_MAX + 64], stamp[32];
    *moved = 0;
    first[0] = '\0';
    if (ckpt_list(dir, &list, &n, err, errlen) != 0)
        return -1;
    rundir_stamp(stamp, sizeof stamp);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const CkptEntry *e = &list[i];
        if (e->epoch < epoch || (e->epoch == epoch && e->epoch_step <= epoch_step))
            continue;
        if (rundir_join(from, sizeof from, dir, e->name, err, errlen) != 0) {
            rc = -1;
            break;
        }
        for (int k = 0;; k++) {
            if (k == 0)
                snprintf(to, sizeof to, "%s.aside-%s", from, stamp);
            else
                snprintf(to, sizeof to, "%s.aside-%s-%d", from, stamp, k);
            if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
                break;
            if (errno != EEXIST || k == 999) {
                rc = rundir_fail(err, errlen, "%s: cannot move aside: %s", from, strerror(errno));
                break;
            }
        }
        if (rc == 0 && (*moved)++ == 0)
            snprintf(first, firstlen, "%s", to);
    }
    free(list);
    if (rc == 0 && *moved > 0)
        rc = fsafe_fsync_dir(dir, err, errlen);
    return rc;
}

int rundir_save_config(const char *dir, const char *text, char *err, size_t errlen)
{
    char path[RUNDIR_PATH_MAX];
    if (rundir_join(path, sizeof path, dir, RUNDIR_CONFIG, err, errlen) != 0)
        return -1;
    return fsafe_write_atomic(path, text, strlen(text), err, errlen);
}
