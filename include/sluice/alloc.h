/* sluice — allocation wrappers.
 *
 * All of libsluice allocates through these, so that an application can
 * install its own allocator and tests can inject failures. None of them
 * aborts: they return NULL and the caller returns SL_NOMEM.
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

SL_API void *sl_malloc(size_t size);
SL_API void *sl_calloc(size_t n, size_t size); /* overflow-checked, zeroed */
SL_API void *sl_realloc(void *ptr, size_t size);
SL_API void sl_free(void *ptr);
SL_API char *sl_strdup(const char *s);              /* NULL in, NULL out */
SL_API char *sl_strndup(const char *s, size_t len); /* copies len bytes + NUL */

#ifdef __cplusplus
}
#endif
#endif
