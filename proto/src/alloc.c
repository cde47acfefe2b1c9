/* alloc.c - the replaceable allocator behind every proto/ allocation and
 * cJSON's, so tests can count allocations and fail the Nth one. */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "proto/alloc.h"

/* The one piece of process-wide state in proto/: like uv_replace_allocator,
 * the hooks must be reachable from cJSON's own allocations, which take no
 * context pointer. It is written only by ss_set_allocator, which the header
 * restricts to main() or a test's setup. */
static ss_allocator ss__alloc = { malloc, realloc, free };

void ss_set_allocator(const ss_allocator *a)
{
    /* A partial table cannot be honoured safely (memory from one allocator
     * must go back to the same one), so anything incomplete restores libc. */
    if (a == NULL || a->malloc_fn == NULL || a->realloc_fn == NULL || a->free_fn == NULL) {
        ss__alloc.malloc_fn = malloc;
        ss__alloc.realloc_fn = realloc;
        ss__alloc.free_fn = free;
        cJSON_InitHooks(NULL);
        return;
    }
    ss__alloc = *a;
    cJSON_Hooks hooks = { a->malloc_fn, a->free_fn };
    cJSON_InitHooks(&hooks);
}

void *ss_malloc(size_t size)
{
    /* malloc(0) may return NULL, which callers would take for a failure. */
    return ss__alloc.malloc_fn(size ? size : 1);
}

void *ss_realloc(void *ptr, size_t size)
{
    /* realloc(p, 0) is implementation-defined (and may free p): never ask. */
    return ss__alloc.realloc_fn(ptr, size ? size : 1);
}

void ss_free(void *ptr)
{
    if (ptr != NULL)
        ss__alloc.free_fn(ptr);
}

void ss_zeroize(void *ptr, size_t len)
{
    /* Stores through a volatile pointer are observable behaviour, so the
     * compiler may not drop them as dead stores before a free(). */
    volatile unsigned char *p = ptr;
    while (len--)
        *p++ = 0;
}
