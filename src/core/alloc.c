#include "sluice/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static sl_allocator current = {malloc, realloc, free};

void sl_alloc_set(const sl_allocator *alloc)
{
    if (alloc == NULL) {
        current = (sl_allocator){malloc, realloc, free};
    } else {
        current = *alloc;
    }
}

void *sl_malloc(size_t size)
{
    return current.malloc_fn(size == 0 ? 1 : size);
}

void *sl_calloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        return NULL;
    }
    void *p = sl_malloc(n * size);
    if (p != NULL) {
        memset(p, 0, n * size);
    }
    return p;
}

void *sl_realloc(void *ptr, size_t size)
{
    return current.realloc_fn(ptr, size == 0 ? 1 : size);
}

void sl_free(void *ptr)
{
    if (ptr != NULL) {
        current.free_fn(ptr);
    }
}

char *sl_strndup(const char *s, size_t len)
{
    if (s == NULL) {
        return NULL;
    }
    char *p = sl_malloc(len + 1);
    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

char *sl_strdup(const char *s)
{
    return s == NULL ? NULL : sl_strndup(s, strlen(s));
}
