/* faultvfs.h - a test-only SQLite VFS that wraps the default one and fails
 * chosen file operations (the Nth sync or write, once or persistently), in
 * the manner of SQLite's own src/test_vfs.c. Linked only into test programs
 * (faultd, the iofault tests); the production daemon never contains it.
 *
 * The controls live in a small file that both the faulty process and the
 * test map MAP_SHARED, so a test can arm and clear faults in a running
 * daemon without signals or sockets. */
#ifndef FAULTVFS_H
#define FAULTVFS_H

#include <stdint.h>

/* Operations that can be failed (bit numbers in fv_ctl.ops). */
enum { FV_OP_WRITE = 0, FV_OP_SYNC = 1, FV_OP_TRUNCATE = 2, FV_OP__COUNT = 3 };

#define FV_MAGIC 0x46564331u /* "FVC1" */

/* The shared control block. Fields are read and written with __atomic
 * builtins on both sides (two processes share it). */
typedef struct fv_ctl {
    uint32_t magic;
    uint32_t armed;    /* 0: pass everything through */
    uint32_t ops;      /* mask of 1 << FV_OP_* to fail */
    int32_t skip;      /* matching operations let through before the first failure */
    int32_t remaining; /* failures left to inject; -1: every matching operation */
    int32_t errcode;   /* SQLite result code returned, e.g. SQLITE_IOERR_FSYNC, SQLITE_FULL */
    uint64_t seen[FV_OP__COUNT]; /* operations seen, armed or not */
    uint64_t injected;           /* failures injected so far */
} fv_ctl;

/* Maps (creating and zeroing when create is set) the control file.
 * Returns the mapping or NULL (errno set). */
fv_ctl *fv_ctl_map(const char *path, int create);
void fv_ctl_unmap(fv_ctl *c);

/* Arms a fault: after `skip` more matching operations, fail `count` of them
 * (-1: all) with errcode. */
void fv_arm(fv_ctl *c, uint32_t ops, int32_t skip, int32_t count, int32_t errcode);
/* Stops injecting (the operations in progress are unaffected). */
void fv_clear(fv_ctl *c);
uint64_t fv_injected(fv_ctl *c);
uint64_t fv_seen(fv_ctl *c, int op);

/* Registers the fault VFS as SQLite's default, wrapping the current
 * default, with the given control block (which must outlive every SQLite
 * handle). Returns an SQLite result code. Call once per process before the
 * first sqlite3_open. */
int fv_register(fv_ctl *ctl);

#endif
