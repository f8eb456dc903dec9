/* sluice — allocation wrappers.
 *
 * All of libsluice allocates through these, so that an application can
 * install its own allocator and tests can inject failures. None of them
 * aborts: they return NULL and the caller returns SL_NOMEM.
 *
 * Ownership: memory from sl_malloc, sl_calloc, sl_realloc, sl_strdup and
 * sl_strndup, and every buffer the library documents as "freed with
 * sl_free", is owned by the caller and freed with sl_free (not free(), so
 * that an installed allocator sees it).
 *
 * Thread safety: the allocation functions are thread-safe when the
 * installed allocator is; sl_alloc_set is not (see there).
 */
#ifndef SLUICE_ALLOC_H
#define SLUICE_ALLOC_H

#include "sluice/export.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_allocator {
    void *(*malloc_fn)(size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} sl_allocator;

/** Install an allocator (NULL restores the C library's). Call before any
 * other libsluice function; not thread-safe against concurrent allocation. */
SL_API void sl_alloc_set(const sl_allocator *alloc);

/** As malloc; NULL when out of memory. */
SL_API void *sl_malloc(size_t size);
/** As calloc, overflow-checked and zeroed; NULL when out of memory. */
SL_API void *sl_calloc(size_t n, size_t size);
/** As realloc; NULL when out of memory (@p ptr is then left alone). */
SL_API void *sl_realloc(void *ptr, size_t size);
/** As free; NULL is a no-op. */
SL_API void sl_free(void *ptr);
/** A copy of @p s (NULL in, NULL out), freed with sl_free. */
SL_API char *sl_strdup(const char *s);
/** A copy of @p len bytes of @p s plus a NUL, freed with sl_free. */
SL_API char *sl_strndup(const char *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif
