/* fsafe: crash-safe file primitives (atomic replace, symlink swap, directory fsync, dead
 * writers' temporaries, the CRC seal). Contract: include/fsafe.h.
 *
 * Every system call is checked; a message names the path and carries strerror. The order
 * of the calls in fsafe_write_atomic and fsafe_symlink_swap is the crash-safety argument:
 * data fsync'd before the rename publishes it, the directory fsync'd after.
 */
#include "fsafe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FSAFE_LINK_HOPS 40              /* symlinks followed before giving up (as ELOOP) */
#define FSAFE_CRC_PIECE ((size_t)1 << 30)   /* zlib's crc32 takes a uInt length */

__attribute__((format(printf, 3, 4)))
static void fsafe_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* Paths may hold a newline: keep the message one line. */
    for (char *c = err; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = '?';
}

static int fsafe_join(char *out, size_t outlen, const char *dir, const char *name, char *err,
                      size_t errlen)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= outlen) {
        fsafe_err(err, errlen, "%s/%s: path too long (limit %zu bytes)", dir, name,
                  outlen - 1);
        return -1;
    }
    return 0;
}

/* path -> its directory ("." when it has none) and the offset of its last component. */
static int fsafe_split(const char *path, char *dir, size_t dirlen, size_t *base, char *err,
                       size_t errlen)
{
    size_t n = strlen(path);
    if (n == 0 || path[n - 1] == '/') {
        fsafe_err(err, errlen, "'%s': not a file name", path);
        return -1;
    }
    if (n >= dirlen) {
        fsafe_err(err, errlen, "%s: path too long (limit %zu bytes)", path, dirlen - 1);
        return -1;
    }
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, dirlen, ".");
        *base = 0;
    } else if (slash == path) {
        snprintf(dir, dirlen, "/");
        *base = 1;
    } else {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
        *base = (size_t)(slash - path) + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ directories */

static int fsafe_mkdir_one(const char *p, const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(p, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        fsafe_err(err, errlen, "cannot create %s: %s exists and is not a directory", dir, p);
        return -1;
    }
    if (errno != ENOENT) {
        fsafe_err(err, errlen, "cannot create %s: %s: %s", dir, p, strerror(errno));
        return -1;
    }
    if (mkdir(p, 0777) == 0)
        return 0;
    /* Another process may have created it between stat and mkdir. */
    if (errno == EEXIST && stat(p, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    fsafe_err(err, errlen, "cannot create %s: %s: %s", dir, p, strerror(errno));
    return -1;
}

int fsafe_mkdir_p(const char *dir, char *err, size_t errlen)
{
    char buf[FSAFE_PATH_MAX];
    size_t n = strlen(dir);
    if (n >= sizeof buf) {
        fsafe_err(err, errlen, "%s: path too long (limit %zu bytes)", dir, sizeof buf - 1);
        return -1;
    }
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (buf[i - 1] == '/')
            continue;                       /* "a//b" */
        char c = buf[i];
        buf[i] = '\0';
        if (fsafe_mkdir_one(buf, dir, err, errlen) != 0)
            return -1;
        buf[i] = c;
    }
    return 0;
}

int fsafe_fsync_dir(const char *dir, char *err, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        fsafe_err(err, errlen, "%s: cannot open directory for fsync: %s", dir, strerror(errno));
        return -1;
    }
    /* Some file systems cannot sync a directory and say EINVAL; there is nothing more we
     * can do for durability there, and the rename itself is still atomic. */
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        fsafe_err(err, errlen, "%s: fsync of directory failed: %s", dir, strerror(e));
        return -1;
    }
    if (close(fd) != 0) {
        fsafe_err(err, errlen, "%s: close failed: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ atomic write */

int fsafe_temp_path(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    char dir[FSAFE_PATH_MAX];
    size_t base;
    if (fsafe_split(path, dir, sizeof dir, &base, err, errlen) != 0)
        return -1;
    int n = snprintf(out, outlen, "%.*s.%s.tmp.%ld", (int)base, path, path + base,
                     (long)getpid());
    if (n < 0 || (size_t)n >= outlen) {
        fsafe_err(err, errlen, "%s: path too long for its temporary (limit %zu bytes)", path,
                  outlen - 1);
        return -1;
    }
    return 0;
}

/* The file a write to path lands in: path itself, or the end of its chain of symlinks
 * (relative targets resolve against the link's directory). */
static int fsafe_resolve(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    if (strlen(path) >= outlen) {
        fsafe_err(err, errlen, "%s: path too long (limit %zu bytes)", path, outlen - 1);
        return -1;
    }
    snprintf(out, outlen, "%s", path);
    for (int hop = 0;; hop++) {
        struct stat st;
        if (lstat(out, &st) != 0) {
            if (errno == ENOENT)
                return 0;                   /* a new file, or a dangling link's target */
            fsafe_err(err, errlen, "%s: %s", out, strerror(errno));
            return -1;
        }
        if (!S_ISLNK(st.st_mode))
            return 0;
        if (hop == FSAFE_LINK_HOPS) {
            fsafe_err(err, errlen, "%s: %s", path, strerror(ELOOP));
            return -1;
        }
        char target[FSAFE_PATH_MAX], next[FSAFE_PATH_MAX];
        ssize_t n = readlink(out, target, sizeof target - 1);
        if (n < 0) {
            fsafe_err(err, errlen, "%s: cannot read symlink: %s", out, strerror(errno));
            return -1;
        }
        target[n] = '\0';
        const char *slash = strrchr(out, '/');
        int m = target[0] == '/' || !slash
                    ? snprintf(next, sizeof next, "%s", target)
                    : snprintf(next, sizeof next, "%.*s/%s", (int)(slash - out), out, target);
        if (m < 0 || (size_t)m >= outlen) {
            fsafe_err(err, errlen, "%s: symlink target path too long", out);
            return -1;
        }
        memcpy(out, next, (size_t)m + 1);
    }
}

/* Write the bytes to `path` and fsync it. *created tells the caller whether a file now
 * exists there that it must remove on failure. */
static int fsafe_write_fsync(const char *path, const void *buf, size_t len, int excl,
                             int *created, char *err, size_t errlen)
{
    *created = 0;
    /* A temporary is opened O_TRUNC, not O_EXCL: a stale one left by a crashed writer
     * whose pid we now share (common in containers) is ours to overwrite; a new file
     * (excl) must not exist. O_NOFOLLOW: never write through a link planted under the
     * name. A directory of that name makes open fail, and is left alone. */
    int fd = open(path, O_WRONLY | O_CREAT | (excl ? O_EXCL : O_TRUNC) | O_NOFOLLOW | O_CLOEXEC,
                  0666);
    if (fd < 0) {
        fsafe_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    *created = 1;
    const char *p = buf;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fsafe_err(err, errlen, "%s: write failed after %zu of %zu bytes: %s", path,
                      len - left, len, w < 0 ? strerror(errno) : "no progress");
            close(fd);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    /* The data must be on disk BEFORE the rename publishes it; otherwise a crash could
     * leave the final name on a file whose blocks were never written. */
    if (fsync(fd) != 0) {
        fsafe_err(err, errlen, "%s: fsync failed: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    /* close() can report a deferred write error (NFS): only now is the data known good. */
    if (close(fd) != 0) {
        fsafe_err(err, errlen, "%s: close failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int fsafe_write_atomic(const char *path, const void *buf, size_t len, char *err,
                       size_t errlen)
{
    char final[FSAFE_PATH_MAX], tmp[FSAFE_PATH_MAX], dir[FSAFE_PATH_MAX];
    size_t base;
    int created = 0;
    if (!path || (!buf && len > 0)) {
        fsafe_err(err, errlen, "fsafe: no path or data given");
        return -1;
    }
    if (fsafe_resolve(path, final, sizeof final, err, errlen) != 0 ||
        fsafe_split(final, dir, sizeof dir, &base, err, errlen) != 0 ||
        fsafe_temp_path(final, tmp, sizeof tmp, err, errlen) != 0)
        return -1;
    if (fsafe_write_fsync(tmp, buf, len, 0, &created, err, errlen) != 0)
        goto fail;
    if (rename(tmp, final) != 0) {
        fsafe_err(err, errlen, "%s: cannot rename to %s: %s", tmp, final, strerror(errno));
        goto fail;
    }
    /* A rename is only durable once the directory itself is on disk: without this, after a
     * power loss the directory may not yet show the new name. */
    return fsafe_fsync_dir(dir, err, errlen);
fail:
    /* Only what this call created goes; a pre-existing object under the temporary name
     * (which made the create fail) is not ours to delete. */
    if (created)
        unlink(tmp);
    return -1;
}

int fsafe_write_new(const char *path, const void *buf, size_t len, char *err, size_t errlen)
{
    int created;
    if (fsafe_write_fsync(path, buf, len, 1, &created, err, errlen) == 0)
        return 0;
    const int e = errno;
    if (created)
        unlink(path);
    errno = e;
    return -1;
}

int fsafe_symlink_swap(const char *dir, const char *link_name, const char *target,
                       char *err, size_t errlen)
{
    char link[FSAFE_PATH_MAX], tmp[FSAFE_PATH_MAX];
    if (fsafe_join(link, sizeof link, dir, link_name, err, errlen) != 0 ||
        fsafe_temp_path(link, tmp, sizeof tmp, err, errlen) != 0)
        return -1;
    if (unlink(tmp) != 0 && errno != ENOENT) {
        fsafe_err(err, errlen, "%s: cannot remove stale link: %s", tmp, strerror(errno));
        return -1;
    }
    if (symlink(target, tmp) != 0) {
        fsafe_err(err, errlen, "%s: cannot create symlink: %s", tmp, strerror(errno));
        return -1;
    }
    if (rename(tmp, link) != 0) {
        fsafe_err(err, errlen, "%s: cannot replace with a link to %s: %s", link, target,
                  strerror(errno));
        unlink(tmp);
        return -1;
    }
    return fsafe_fsync_dir(dir, err, errlen);
}

/* The pid in a temporary's name ".NAME.tmp.PID" when is_ours(NAME); 0 for any other name
 * (a user's file is never touched). */
static pid_t fsafe_parse_temp(const char *name, bool (*is_ours)(const char *))
{
    if (name[0] != '.')
        return 0;
    const char *tmp = strstr(name + 1, ".tmp.");
    if (!tmp)
        return 0;
    char base[256];
    size_t n = (size_t)(tmp - (name + 1));
    if (n == 0 || n >= sizeof base)
        return 0;
    memcpy(base, name + 1, n);
    base[n] = '\0';
    if (!is_ours(base))
        return 0;
    const char *p = tmp + 5;
    int64_t pid = 0;
    if (*p < '1' || *p > '9')
        return 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        pid = pid * 10 + (*p - '0');
        if (pid > INT32_MAX)
            return 0;
    }
    return *p == '\0' ? (pid_t)pid : 0;
}

/* A writer killed mid-write (SIGKILL, OOM killer, job time limit) leaves its temporary, as
 * large as the file, under a name no later run reuses: without this they pile up with
 * every pre-emption. kill(pid, 0) only speaks for this host; two hosts writing one
 * directory at once is not supported anyway. */
void fsafe_remove_dead_temps(const char *dir, bool (*is_ours)(const char *name))
{
    DIR *dp = opendir(dir);
    if (!dp)
        return;                         /* the write that follows reports a real problem */
    const pid_t self = getpid();
    struct dirent *de;
    while ((de = readdir(dp))) {
        pid_t pid = fsafe_parse_temp(de->d_name, is_ours);
        if (pid == 0 || (pid != self && (kill(pid, 0) == 0 || errno != ESRCH)))
            continue;                   /* not ours, or its writer may still be running */
        char path[FSAFE_PATH_MAX];
        if (fsafe_join(path, sizeof path, dir, de->d_name, NULL, 0) == 0)
            (void)unlink(path);         /* ENOENT: another cleaner was faster */
    }
    closedir(dp);
}

/* ------------------------------------------------------------------ the seal */

static uint32_t fsafe_crc(uint32_t crc, const unsigned char *p, size_t n)
{
    uLong c = crc;
    for (size_t off = 0; off < n; off += FSAFE_CRC_PIECE) {
        size_t piece = n - off < FSAFE_CRC_PIECE ? n - off : FSAFE_CRC_PIECE;
        c = crc32(c, p + off, (uInt)piece);
    }
    return (uint32_t)c;
}

/* The whole block fsafe_seal writes for these values. Returns 0, or -1 if it does not fit. */
static int fsafe_seal_block(char *block, const char *tag, uint32_t crc, uint64_t size)
{
    memset(block, 0, FSAFE_SEAL_BYTES);
    int n = snprintf(block, FSAFE_SEAL_BYTES, "%s crc32 %08" PRIx32 " size %" PRIu64 "\n", tag,
                     crc, size);
    return n > 0 && n < FSAFE_SEAL_BYTES ? 0 : -1;
}

int fsafe_seal(void *image, size_t len, const char *tag)
{
    if (len < FSAFE_SEAL_BYTES)
        return -1;
    unsigned char *p = image;
    uint32_t crc = fsafe_crc((uint32_t)crc32(0L, Z_NULL, 0), p + FSAFE_SEAL_BYTES,
                             len - FSAFE_SEAL_BYTES);
    return fsafe_seal_block(image, tag, crc, (uint64_t)len);
}

/* The sealed values of a block, if it is exactly a seal line of tag (else -1). */
static int fsafe_seal_parse(const char *block, const char *tag, uint32_t *crc, uint64_t *size)
{
    char want[FSAFE_SEAL_BYTES];
    size_t t = strlen(tag);
    if (t + 7 >= FSAFE_SEAL_BYTES || memcmp(block, tag, t) != 0 ||
        memcmp(block + t, " crc32 ", 7) != 0)
        return -1;
    const char *p = block + t + 7;
    uint32_t c = 0;
    for (int i = 0; i < 8; i++, p++) {
        int v = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        c = c << 4 | (uint32_t)v;
    }
    if (strncmp(p, " size ", 6) != 0)
        return -1;
    p += 6;
    uint64_t s = 0;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (s > (UINT64_MAX - 9) / 10)
            return -1;
        s = s * 10 + (uint64_t)(*p - '0');
    }
    /* Rebuilt from the values, the block must be byte for byte the one read: a leading
     * zero, an upper-case digit or a stray byte in the padding is damage, not a seal. */
    if (fsafe_seal_block(want, tag, c, s) != 0 || memcmp(want, block, FSAFE_SEAL_BYTES) != 0)
        return -1;
    *crc = c;
    *size = s;
    return 0;
}

/* pread all of n bytes at off; short only at end of file. Returns bytes read or -1. */
static ssize_t fsafe_pread_full(int fd, void *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

FsafeSealStatus fsafe_seal_check(const void *image, size_t len, const char *tag,
                                 FsafeSealInfo *info)
{
    const unsigned char *p = image;
    FsafeSealInfo z = {0, (uint64_t)len, 0, 0};
    *info = z;
    if (len < FSAFE_SEAL_BYTES ||
        fsafe_seal_parse(image, tag, &info->crc_sealed, &info->size_sealed) != 0)
        return FSAFE_SEAL_MISSING;
    if (info->size_sealed != info->size_file)
        return FSAFE_SEAL_SIZE;
    info->crc_file = fsafe_crc((uint32_t)crc32(0L, Z_NULL, 0), p + FSAFE_SEAL_BYTES,
                               len - FSAFE_SEAL_BYTES);
    return info->crc_file == info->crc_sealed ? FSAFE_SEAL_OK : FSAFE_SEAL_CRC;
}

int fsafe_reseal_image(void *image, size_t len, const char *tag, const char *path, char *err,
                       size_t errlen)
{
    const unsigned char *buf = image;
    if (len < FSAFE_SEAL_BYTES) {
        fsafe_err(err, errlen, "%s: %zu bytes, too short to hold a %d-byte seal block", path,
                  len, FSAFE_SEAL_BYTES);
        return -1;
    }
    /* Only a block that is ours (a seal line of tag, intact or stale) or blank may be
     * overwritten: anything else may be the start of the file's own data (an HDF5 file
     * without a user block has its superblock there). */
    size_t t = strlen(tag);
    bool blank = true;
    for (size_t i = 0; i < FSAFE_SEAL_BYTES && blank; i++)
        blank = buf[i] == 0;
    if (!blank && (t + 7 > FSAFE_SEAL_BYTES || memcmp(buf, tag, t) != 0 ||
                   memcmp(buf + t, " crc32 ", 7) != 0)) {
        fsafe_err(err, errlen, "%s: the first %d bytes are not a '%s' seal block; not "
                  "resealing a file of another kind", path, FSAFE_SEAL_BYTES, tag);
        return -1;
    }
    if (fsafe_seal(image, len, tag) != 0) {
        fsafe_err(err, errlen, "%s: cannot build the seal line", path);
        return -1;
    }
    return 0;
}

const char *fsafe_file_kind(const struct stat *st)
{
    return S_ISDIR(st->st_mode) ? "a directory" : S_ISFIFO(st->st_mode) ? "a FIFO"
         : S_ISCHR(st->st_mode) ? "a character device" : S_ISBLK(st->st_mode) ? "a block device"
         : S_ISSOCK(st->st_mode) ? "a socket" : "a special file";
}

int fsafe_open_regular(const char *path, struct stat *st, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        const int e = errno;
        char cwd[FSAFE_PATH_MAX];
        /* A relative path that is not there: say where it was looked for (a job script's
         * working directory is often not the one the user thinks of). */
        if (e == ENOENT && path[0] != '/' && getcwd(cwd, sizeof cwd))
            snprintf(why, whylen, "%s (relative to %s)", strerror(e), cwd);
        else
            snprintf(why, whylen, "%s", strerror(e));
        errno = e;
        return -1;
    }
    int flags;
    if (fstat(fd, st) != 0 || (S_ISREG(st->st_mode) && ((flags = fcntl(fd, F_GETFL)) < 0 ||
                               fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0))) {
        snprintf(why, whylen, "%s", strerror(errno));
        close(fd);
        return -2;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(why, whylen, "%s, not a regular file", fsafe_file_kind(st));
        close(fd);
        return -2;
    }
    return fd;
}

void *fsafe_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    unsigned char *buf = NULL;
    *len = 0;
    struct stat st;
    char why[256];
    int fd = fsafe_open_regular(path, &st, why, sizeof why);
    if (fd < 0) {
        fsafe_err(err, errlen, "%s: %s", path, why);   /* as ckpt_load's messages read */
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    if ((off_t)n != st.st_size || !(buf = malloc(n ? n : 1))) {
        fsafe_err(err, errlen, "%s: out of memory for its %lld bytes", path,
                  (long long)st.st_size);
        goto done;
    }
    ssize_t got = fsafe_pread_full(fd, buf, n, 0);
    if (got < 0 || (size_t)got != n) {
        fsafe_err(err, errlen, "%s: cannot read: %s", path,
                  got < 0 ? strerror(errno) : "the file changed size while read");
        free(buf);
        buf = NULL;
        goto done;
    }
    *len = n;
done:
    close(fd);
    return buf;
}

int fsafe_reseal_file(const char *path, const char *tag, char *err, size_t errlen)
{
    size_t len;
    void *buf = fsafe_read_file(path, &len, err, errlen);
    if (!buf)
        return -1;
    int rc = fsafe_reseal_image(buf, len, tag, path, err, errlen) == 0
                 ? fsafe_write_atomic(path, buf, len, err, errlen) : -1;
    free(buf);
    return rc;
}
