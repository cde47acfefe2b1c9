/* faultvfs.c - the fault-injecting SQLite VFS of faultvfs.h: every method
 * passes through to the wrapped default VFS, except that xWrite, xSync and
 * xTruncate consult the shared control block and may return an error
 * instead of doing the work (so a failed write writes nothing). */
#include "faultvfs.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Our VFS object: SQLite's struct first, then what the methods need. It is
 * allocated once by fv_register and lives as long as the process (SQLite
 * keeps a pointer to it and offers no unregister-and-free hook). */
typedef struct fv_vfs {
    sqlite3_vfs base;
    sqlite3_vfs *real;
    fv_ctl *ctl;
} fv_vfs;

/* An open file: our header, then the wrapped VFS's own file object. */
typedef struct fv_file {
    sqlite3_file base;
    fv_vfs *vfs;
    sqlite3_file *real;
} fv_file;

fv_ctl *fv_ctl_map(const char *path, int create)
{
    int fd = open(path, create ? O_RDWR | O_CREAT | O_TRUNC : O_RDWR, 0600);
    if (fd < 0)
        return NULL;
    if (create && ftruncate(fd, (off_t)sizeof(fv_ctl)) != 0) {
        close(fd);
        return NULL;
    }
    void *p = mmap(NULL, sizeof(fv_ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int saved = errno;
    close(fd);
    if (p == MAP_FAILED) {
        errno = saved;
        return NULL;
    }
    fv_ctl *c = p;
    if (create) {
        memset(c, 0, sizeof *c);
        __atomic_store_n(&c->magic, FV_MAGIC, __ATOMIC_RELEASE);
    } else if (__atomic_load_n(&c->magic, __ATOMIC_ACQUIRE) != FV_MAGIC) {
        munmap(p, sizeof(fv_ctl));
        errno = EINVAL;
        return NULL;
    }
    return c;
}

void fv_ctl_unmap(fv_ctl *c)
{
    if (c)
        munmap(c, sizeof *c);
}

void fv_arm(fv_ctl *c, uint32_t ops, int32_t skip, int32_t count, int32_t errcode)
{
    /* Disarm while the parameters change so the other side never sees a
     * half-written set. */
    __atomic_store_n(&c->armed, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->ops, ops, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->skip, skip, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->remaining, count, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->errcode, errcode, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->armed, 1, __ATOMIC_SEQ_CST);
}

void fv_clear(fv_ctl *c)
{
    __atomic_store_n(&c->armed, 0, __ATOMIC_SEQ_CST);
}

uint64_t fv_injected(fv_ctl *c)
{
    return __atomic_load_n(&c->injected, __ATOMIC_SEQ_CST);
}

uint64_t fv_seen(fv_ctl *c, int op)
{
    return __atomic_load_n(&c->seen[op], __ATOMIC_SEQ_CST);
}

/* 0 to let the operation through, or the error to return instead. */
static int should_fail(fv_ctl *c, int op)
{
    __atomic_fetch_add(&c->seen[op], 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&c->armed, __ATOMIC_SEQ_CST))
        return 0;
    if (!(__atomic_load_n(&c->ops, __ATOMIC_SEQ_CST) & (1u << op)))
        return 0;
    if (__atomic_fetch_sub(&c->skip, 1, __ATOMIC_SEQ_CST) > 0)
        return 0;
    /* Keep skip from drifting towards overflow on long persistent runs. */
    __atomic_store_n(&c->skip, 0, __ATOMIC_SEQ_CST);
    int32_t left = __atomic_load_n(&c->remaining, __ATOMIC_SEQ_CST);
    if (left == 0)
        return 0;
    if (left > 0 && __atomic_fetch_sub(&c->remaining, 1, __ATOMIC_SEQ_CST) <= 0)
        return 0;
    __atomic_fetch_add(&c->injected, 1, __ATOMIC_SEQ_CST);
    int rc = __atomic_load_n(&c->errcode, __ATOMIC_SEQ_CST);
    return rc ? rc : SQLITE_IOERR;
}

/* ---- file methods ---- */

static int f_close(sqlite3_file *f)
{
    fv_file *p = (fv_file *)f;
    int rc = p->real->pMethods ? p->real->pMethods->xClose(p->real) : SQLITE_OK;
    p->real->pMethods = NULL;
    return rc;
}

static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xRead(p->real, buf, n, off);
}

static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    fv_file *p = (fv_file *)f;
    int rc = should_fail(p->vfs->ctl, FV_OP_WRITE);
    if (rc)
        return rc;
    return p->real->pMethods->xWrite(p->real, buf, n, off);
}

static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    fv_file *p = (fv_file *)f;
    int rc = should_fail(p->vfs->ctl, FV_OP_TRUNCATE);
    if (rc)
        return rc;
    return p->real->pMethods->xTruncate(p->real, size);
}

static int f_sync(sqlite3_file *f, int flags)
{
    fv_file *p = (fv_file *)f;
    int rc = should_fail(p->vfs->ctl, FV_OP_SYNC);
    if (rc)
        return rc;
    return p->real->pMethods->xSync(p->real, flags);
}

static int f_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xFileSize(p->real, size);
}

static int f_lock(sqlite3_file *f, int lock)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xLock(p->real, lock);
}

static int f_unlock(sqlite3_file *f, int lock)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xUnlock(p->real, lock);
}

static int f_check_reserved(sqlite3_file *f, int *out)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xCheckReservedLock(p->real, out);
}

static int f_file_control(sqlite3_file *f, int op, void *arg)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xFileControl(p->real, op, arg);
}

static int f_sector_size(sqlite3_file *f)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xSectorSize(p->real);
}

static int f_device_chars(sqlite3_file *f)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xDeviceCharacteristics(p->real);
}

static int f_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xShmMap(p->real, pg, pgsz, extend, pp);
}

static int f_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xShmLock(p->real, off, n, flags);
}

static void f_shm_barrier(sqlite3_file *f)
{
    fv_file *p = (fv_file *)f;
    p->real->pMethods->xShmBarrier(p->real);
}

static int f_shm_unmap(sqlite3_file *f, int del)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xShmUnmap(p->real, del);
}

static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xFetch(p->real, off, n, pp);
}

static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *ptr)
{
    fv_file *p = (fv_file *)f;
    return p->real->pMethods->xUnfetch(p->real, off, ptr);
}

static const sqlite3_io_methods fv_io = {
    3,
    f_close,
    f_read,
    f_write,
    f_truncate,
    f_sync,
    f_file_size,
    f_lock,
    f_unlock,
    f_check_reserved,
    f_file_control,
    f_sector_size,
    f_device_chars,
    f_shm_map,
    f_shm_lock,
    f_shm_barrier,
    f_shm_unmap,
    f_fetch,
    f_unfetch,
};

/* ---- VFS methods ---- */

static int v_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    fv_vfs *fv = (fv_vfs *)v;
    fv_file *p = (fv_file *)f;
    memset(p, 0, sizeof *p);
    p->vfs = fv;
    p->real = (sqlite3_file *)(p + 1);
    int rc = fv->real->xOpen(fv->real, name, p->real, flags, out_flags);
    /* SQLite calls xClose only if pMethods is set, also after a failed
     * open (the real file may need closing then). */
    p->base.pMethods = p->real->pMethods ? &fv_io : NULL;
    return rc;
}

static int v_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    fv_vfs *fv = (fv_vfs *)v;
    return fv->real->xDelete(fv->real, name, sync_dir);
}

static int v_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    fv_vfs *fv = (fv_vfs *)v;
    return fv->real->xAccess(fv->real, name, flags, out);
}

static int v_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    fv_vfs *fv = (fv_vfs *)v;
    return fv->real->xFullPathname(fv->real, name, n, out);
}

static void *v_dlopen(sqlite3_vfs *v, const char *name)
{
    fv_vfs *fv = (fv_vfs *)v;
    return fv->real->xDlOpen(fv->real, name);
}

static void v_dlerror(sqlite3_vfs *v, int n, char *msg)
{
    fv_vfs *fv = (fv_vfs *)v;
    fv->real->xDlError(fv->real, n, msg);
}

static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    fv_vfs *fv = (fv_vfs *)v;
    return fv->real->xDlSym(fv->real, h, sym);
}

static void v_dlclose(sqlite3_vfs *v, void *h)
{
    fv_vfs *fv = (fv_vfs *)v;
    fv->real->xDlClose(fv->real, h);
}

static int v_randomness(sqlite3_vfs *v, int n, char *out)
{
    fv_vfs *fv = (fv_vfs *)v;
    return fv->real->xRandomness(fv->real, n, out);
}

static int v_sleep(sqlite3_vfs *v, int us)
{
    fv_vfs *fv = (fv_vfs *)v;
    return fv->real->xSleep(fv->real, us);
}

static int v_current_time(sqlite3_vfs *v, double *out)
{
    fv_vfs *fv = (fv_vfs *)v;
    return fv->real->xCurrentTime(fv->real, out);
}

static int v_get_last_error(sqlite3_vfs *v, int n, char *out)
{
    fv_vfs *fv = (fv_vfs *)v;
    return fv->real->xGetLastError ? fv->real->xGetLastError(fv->real, n, out) : 0;
}

static int v_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    fv_vfs *fv = (fv_vfs *)v;
    return fv->real->xCurrentTimeInt64(fv->real, out);
}

int fv_register(fv_ctl *ctl)
{
    if (!ctl)
        return SQLITE_MISUSE;
    int rc = sqlite3_initialize();
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_vfs *real = sqlite3_vfs_find(NULL);
    if (!real || real->iVersion < 2 || !real->xCurrentTimeInt64)
        return SQLITE_ERROR;
    fv_vfs *fv = sqlite3_malloc(sizeof *fv);
    if (!fv)
        return SQLITE_NOMEM;
    memset(fv, 0, sizeof *fv);
    fv->real = real;
    fv->ctl = ctl;
    fv->base.iVersion = 2;
    fv->base.szOsFile = (int)sizeof(fv_file) + real->szOsFile;
    fv->base.mxPathname = real->mxPathname;
    fv->base.zName = "faultvfs";
    fv->base.xOpen = v_open;
    fv->base.xDelete = v_delete;
    fv->base.xAccess = v_access;
    fv->base.xFullPathname = v_full_pathname;
    fv->base.xDlOpen = v_dlopen;
    fv->base.xDlError = v_dlerror;
    fv->base.xDlSym = v_dlsym;
    fv->base.xDlClose = v_dlclose;
    fv->base.xRandomness = v_randomness;
    fv->base.xSleep = v_sleep;
    fv->base.xCurrentTime = v_current_time;
    fv->base.xGetLastError = v_get_last_error;
    fv->base.xCurrentTimeInt64 = v_current_time64;
    rc = sqlite3_vfs_register(&fv->base, 1);
    if (rc != SQLITE_OK)
        sqlite3_free(fv);
    return rc;
}
