#include "engine/dedup.h"

#include "sluice/alloc.h"

#include <string.h>

/* One remembered id. Nodes live in a ring (oldest first, for expiry) and in
 * hash chains (for lookup). */
typedef struct node {
    struct node *chain;
    const void *scope;
    uint64_t hash;
    uint64_t seen_ms;
    char id[];
} node;

struct sl_dedup {
    node **buckets;
    size_t nbuckets; /* power of two, >= 2 * max_ids */
    node **ring;
    size_t max_ids;
    size_t head; /* oldest */
    size_t count;
    uint64_t window_ms;
};

/* FNV-1a over the id, mixed with the scope pointer. */
static uint64_t hash_of(const void *scope, const char *id)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)scope;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h = (h ^ *p) * 1099511628211ull;
    }
    return h ^ (h >> 29);
}

sl_status sl__dedup_create(size_t max_ids, uint64_t window_ms, sl_dedup **out)
{
    sl_dedup *dd = sl_calloc(1, sizeof *dd);
    if (dd == NULL) {
        return SL_NOMEM;
    }
    dd->max_ids = max_ids == 0 ? 1 : max_ids;
    dd->window_ms = window_ms;
    dd->nbuckets = 16;
    while (dd->nbuckets < 2 * dd->max_ids) {
        dd->nbuckets <<= 1;
    }
    dd->buckets = sl_calloc(dd->nbuckets, sizeof *dd->buckets);
    dd->ring = sl_calloc(dd->max_ids, sizeof *dd->ring);
    if (dd->buckets == NULL || dd->ring == NULL) {
        sl__dedup_destroy(dd);
        return SL_NOMEM;
    }
    *out = dd;
    return SL_OK;
}

static void unlink_node(sl_dedup *dd, node *n)
{
    node **pp = &dd->buckets[n->hash & (dd->nbuckets - 1)];
    while (*pp != NULL && *pp != n) {
        pp = &(*pp)->chain;
    }
    if (*pp == n) {
        *pp = n->chain;
    }
}

static void drop_oldest(sl_dedup *dd)
{
    node *n = dd->ring[dd->head];
    dd->ring[dd->head] = NULL;
    dd->head = (dd->head + 1) % dd->max_ids;
    dd->count--;
    unlink_node(dd, n);
    sl_free(n);
}

static void expire(sl_dedup *dd, uint64_t now_ms)
{
    while (dd->count > 0 &&
           dd->ring[dd->head]->seen_ms + dd->window_ms <= now_ms) {
        drop_oldest(dd);
    }
}

bool sl__dedup_contains(sl_dedup *dd, const void *scope, const char *id,
                        uint64_t now_ms)
{
    expire(dd, now_ms);
    uint64_t h = hash_of(scope, id);
    for (node *n = dd->buckets[h & (dd->nbuckets - 1)]; n; n = n->chain) {
        if (n->hash == h && n->scope == scope && strcmp(n->id, id) == 0) {
            return true;
        }
    }
    return false;
}

void sl__dedup_add(sl_dedup *dd, const void *scope, const char *id,
                   uint64_t now_ms)
{
    size_t len = strlen(id);
    node *n = sl_malloc(sizeof *n + len + 1);
    if (n == NULL) {
        return;
    }
    n->scope = scope;
    n->hash = hash_of(scope, id);
    n->seen_ms = now_ms;
    memcpy(n->id, id, len + 1);
    if (dd->count == dd->max_ids) {
        drop_oldest(dd);
    }
    size_t b = n->hash & (dd->nbuckets - 1);
    n->chain = dd->buckets[b];
    dd->buckets[b] = n;
    dd->ring[(dd->head + dd->count) % dd->max_ids] = n;
    dd->count++;
}

size_t sl__dedup_size(const sl_dedup *dd)
{
    return dd->count;
}

void sl__dedup_destroy(sl_dedup *dd)
{
    if (dd == NULL) {
        return;
    }
    if (dd->ring != NULL) {
        while (dd->count > 0) {
            drop_oldest(dd);
        }
    }
    sl_free(dd->ring);
    sl_free(dd->buckets);
    sl_free(dd);
}
