/* alloc.h - replaceable allocator for proto/ (and cJSON beneath it), so tests
 * can count allocations and fail the Nth one. */
#ifndef SS_ALLOC_H
#define SS_ALLOC_H

#include <stddef.h>

typedef struct ss_allocator {
    void *(*malloc_fn)(size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} ss_allocator;

/* Replaces the allocator used by proto/ and by cJSON (cJSON_InitHooks).
 * Process-wide, like uv_replace_allocator: call it from main() or a test's
 * setup before any other proto/ call, never concurrently. NULL restores libc. */
void ss_set_allocator(const ss_allocator *a);

void *ss_malloc(size_t size);
void *ss_realloc(void *ptr, size_t size);
void ss_free(void *ptr);
/* Overwrites memory in a way the compiler may not remove (for secrets). */
void ss_zeroize(void *ptr, size_t len);

#endif
