/* fsafe: crash-safe file primitives. Owns the POSIX side of writing a file so that a crash
 * (SIGKILL, power loss, full disk) at any instant leaves either the old or the new content
 * under a name, never a mix: mkdir -p, fsync of a directory, atomic replacement of a file
 * by an in-memory image, the atomic switch of a symlink, clean-up of the temporaries of
 * writers that died, and the 512-byte "seal" (a header line carrying the size and CRC-32
 * of the rest of a file) that lets a reader refuse a damaged file before parsing it.
 *
 * Knows nothing of HDF5, MPI or checkpoints: checkpoint.c (the HDF5 schema) and the run
 * directory's config.ini and metrics CSV use it. No allocation survives a call; nothing
 * here is collective: call from one process (rank 0) per file.
 *
 * Errors: -1 with ONE line in err (may be NULL) naming the path and what failed, with
 * strerror text.
 *
 * Temporaries are named DIR/.NAME.tmp.PID for a target DIR/NAME, in the target's own
 * directory (rename is atomic only within one file system).
 */
#ifndef MLP_FSAFE_H
#define MLP_FSAFE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <stdint.h>

#define FSAFE_PATH_MAX 4096
#define FSAFE_SEAL_BYTES 512            /* the sealed header block at the start of a file */

/* mkdir -p: dir and its missing parents (mode 0777 less the umask). An existing directory
 * is success; an existing non-directory an error naming it. */
int fsafe_mkdir_p(const char *dir, char *err, size_t errlen);

/* What st is, for a message when it is not a regular file: "a FIFO", "a directory", ... */
const char *fsafe_file_kind(const struct stat *st);

/* Open path read-only only if it is a regular file (following symlinks), and fill *st:
 * O_NONBLOCK, so that opening a FIFO cannot wait for a writer (and hang a trainer at
 * start-up), then fstat refuses a FIFO, a device or a directory before anything is read,
 * and the flag is cleared again for the reads. Returns the descriptor; or -1 when the open
 * failed, -2 when the file is not one to read, with why (no path in it) = the reason, e.g.
 * "No such file or directory" or "a FIFO, not a regular file", for the caller's message
 * ("cannot open" for -1, "cannot read" for -2); a missing relative path adds the directory
 * it was resolved against: "No such file or directory (relative to /home/u)". */
int fsafe_open_regular(const char *path, struct stat *st, char *why, size_t whylen);

/* fsync a directory, making the entries created, renamed or removed in it durable. A file
 * system that cannot sync directories (EINVAL) counts as success. */
int fsafe_fsync_dir(const char *dir, char *err, size_t errlen);

/* Replace the file at path by the len bytes at buf, atomically: write a temporary in the
 * same directory, fsync it, rename it over path, fsync the directory. Readers see the old
 * or the new content, never a part. If path is a symlink (or a chain of them), the file it
 * points to is replaced and the link is kept (a dangling link's target is created). The
 * directory must exist. On a failure before the rename the temporary is removed and path is
 * untouched; a failure to fsync the directory AFTER the rename is reported too (-1), but
 * path then already holds the new bytes. */
int fsafe_write_atomic(const char *path, const void *buf, size_t len, char *err,
                       size_t errlen);

/* Create path, which must not exist (O_EXCL; errno EEXIST then), write the len bytes and
 * fsync them; on failure nothing is left at path (unless it existed). */
int fsafe_write_new(const char *path, const void *buf, size_t len, char *err, size_t errlen);

/* Make DIR/link_name a symlink to target (stored as given, so a relative target keeps
 * working when DIR moves), atomically: a fresh link under a temporary name is renamed over
 * the old entry, then DIR is fsync'd. Readers see the old or the new link. */
int fsafe_symlink_swap(const char *dir, const char *link_name, const char *target,
                       char *err, size_t errlen);

/* The temporary name fsafe uses for DIR/NAME: DIR/.NAME.tmp.PID of this process. */
int fsafe_temp_path(const char *path, char *out, size_t outlen, char *err, size_t errlen);

/* Remove DIR/.NAME.tmp.PID files whose writer is gone (no process PID on this host, or
 * PID is our own: one process never runs two writes at once, so such a file is an earlier
 * process's) and for which is_ours(NAME) is true; nothing else is touched. Best effort:
 * failures only cost disk space and are not reported. */
void fsafe_remove_dead_temps(const char *dir, bool (*is_ours)(const char *name));

/* ---- the seal: the first FSAFE_SEAL_BYTES bytes of a file hold one text line
 *      "TAG crc32 XXXXXXXX size N\n", zero-padded, where N is the whole file's size and
 *      XXXXXXXX the CRC-32 (zlib) of the bytes after the block. */

/* Write the seal line for tag into image[0, FSAFE_SEAL_BYTES), zeroing the rest of the
 * block, from the len - FSAFE_SEAL_BYTES bytes after it. Returns 0, or -1 if len is shorter
 * than the block or the line does not fit. */
int fsafe_seal(void *image, size_t len, const char *tag);

typedef enum {
    FSAFE_SEAL_OK = 0,
    FSAFE_SEAL_MISSING = 1,             /* no valid seal line (absent, damaged, or not ours) */
    FSAFE_SEAL_SIZE = 2,                /* file size differs from the sealed size */
    FSAFE_SEAL_CRC = 3,                 /* CRC-32 differs from the sealed one */
} FsafeSealStatus;

/* What fsafe_seal_check found: sealed values and the file's own (0 where not known). */
typedef struct {
    uint64_t size_sealed, size_file;
    uint32_t crc_sealed, crc_file;
} FsafeSealInfo;

/* Check the seal of a whole file's bytes (image, len; read with fsafe_read_file, so that
 * what is checked is exactly what is parsed next). The seal line must be exactly what
 * fsafe_seal writes for tag: any other byte in the block (a damaged digit, a stray
 * character) is FSAFE_SEAL_MISSING or a mismatch, never "no seal, trust the file". */
FsafeSealStatus fsafe_seal_check(const void *image, size_t len, const char *tag,
                                 FsafeSealInfo *info);

/* Reseal an image after a deliberate edit: recompute its seal for tag. Refuses an image
 * shorter than the block or whose block holds anything but a seal line of tag (intact or
 * stale) or zeros. path only labels messages. */
int fsafe_reseal_image(void *image, size_t len, const char *tag, const char *path, char *err,
                       size_t errlen);

/* The whole regular file at path, malloc'd (the caller frees), *len bytes; NULL + err.
 * Opened without blocking: a FIFO, device or socket is refused ("not a regular file (a
 * FIFO)"), never waited on; a directory is "is a directory". */
void *fsafe_read_file(const char *path, size_t *len, char *err, size_t errlen);

/* fsafe_reseal_image on the file at path, then replace it with fsafe_write_atomic. */
int fsafe_reseal_file(const char *path, const char *tag, char *err, size_t errlen);

#endif
