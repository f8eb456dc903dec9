/* Recently published ids: a ring of fixed-size slots (oldest first, for
 * expiry) and an open-addressing index over it (for lookup).
 *
 * An id is kept as two independent 64-bit hashes of (scope, id) rather than
 * as a string: no allocation per publish, one cache line per slot, and a
 * false "duplicate" needs both hashes to collide (about 2^-128 per pair).
 * All memory is allocated at creation; calloc'd pages are touched only as
 * the ring fills.
 */
#include "engine/dedup.h"

#include "core/hash.h"
#include "sluice/alloc.h"

#include <string.h>

typedef struct slot {
    uint64_t h1, h2;
    const void *scope;
    uint64_t seen_ms;
} slot;

struct sl_dedup {
    slot *ring;
    size_t cap;  /* max_ids */
    size_t head; /* oldest */
    size_t count;
    uint32_t *index; /* ring position + 1; 0 = empty */
    size_t mask;     /* index size - 1, a power of two >= 2 * cap */
    uint64_t window_ms;
};

static void hash_id(const void *scope, const char *id, uint64_t *h1,
                    uint64_t *h2)
{
    /* FNV-1a, and a multiply-rotate hash with a different structure. */
    uint64_t a =
        sl__hash_fnv1a_str(id, SL_HASH_FNV1A_SEED ^ (uint64_t)(uintptr_t)scope);
    uint64_t b = 0x9e3779b97f4a7c15ull + (uint64_t)(uintptr_t)scope;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        b = (b + *p) * 0xbf58476d1ce4e5b9ull;
        b ^= b >> 31;
    }
    a ^= a >> 29;
    a *= 0x94d049bb133111ebull;
    a ^= a >> 32;
    *h1 = a;
    *h2 = b;
}

sl_status sl__dedup_create(size_t max_ids, uint64_t window_ms, sl_dedup **out)
{
    sl_dedup *dd = sl_calloc(1, sizeof *dd);
    if (dd == NULL) {
        return SL_NOMEM;
    }
    dd->cap = max_ids == 0 ? 1 : max_ids;
    if (dd->cap > UINT32_MAX / 4) {
        dd->cap = UINT32_MAX / 4;
    }
    dd->window_ms = window_ms;
    size_t n = 16;
    while (n < 2 * dd->cap) {
        n <<= 1;
    }
    dd->mask = n - 1;
    dd->ring = sl_calloc(dd->cap, sizeof *dd->ring);
    dd->index = sl_calloc(n, sizeof *dd->index);
    if (dd->ring == NULL || dd->index == NULL) {
        sl__dedup_destroy(dd);
        return SL_NOMEM;
    }
    *out = dd;
    return SL_OK;
}

/* Remove index entry @p i with backward-shift deletion, so that probe
 * sequences stay unbroken without tombstones. */
static void index_delete(sl_dedup *dd, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & dd->mask;
        if (dd->index[j] == 0) {
            break;
        }
        size_t k = dd->ring[dd->index[j] - 1].h1 & dd->mask; /* home */
        /* Move j back to i unless its home lies cyclically in (i, j]. */
        bool home_between = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!home_between) {
            dd->index[i] = dd->index[j];
            i = j;
        }
    }
    dd->index[i] = 0;
}

static void drop_oldest(sl_dedup *dd)
{
    const slot *s = &dd->ring[dd->head];
    for (size_t i = s->h1 & dd->mask; dd->index[i] != 0;
         i = (i + 1) & dd->mask) {
        if (dd->index[i] - 1 == dd->head) {
            index_delete(dd, i);
            break;
        }
    }
    dd->head = (dd->head + 1) % dd->cap;
    dd->count--;
}

static void expire(sl_dedup *dd, uint64_t now_ms)
{
    while (dd->count > 0 &&
           dd->ring[dd->head].seen_ms + dd->window_ms <= now_ms) {
        drop_oldest(dd);
    }
}

bool sl__dedup_contains(sl_dedup *dd, const void *scope, const char *id,
                        uint64_t now_ms)
{
    expire(dd, now_ms);
    uint64_t h1, h2;
    hash_id(scope, id, &h1, &h2);
    for (size_t i = h1 & dd->mask; dd->index[i] != 0; i = (i + 1) & dd->mask) {
        const slot *s = &dd->ring[dd->index[i] - 1];
        if (s->h1 == h1 && s->h2 == h2 && s->scope == scope) {
            return true;
        }
    }
    return false;
}

void sl__dedup_add(sl_dedup *dd, const void *scope, const char *id,
                   uint64_t now_ms)
{
    if (dd->count == dd->cap) {
        drop_oldest(dd);
    }
    size_t pos = (dd->head + dd->count) % dd->cap;
    slot *s = &dd->ring[pos];
    hash_id(scope, id, &s->h1, &s->h2);
    s->scope = scope;
    s->seen_ms = now_ms;
    size_t i = s->h1 & dd->mask;
    while (dd->index[i] != 0) {
        i = (i + 1) & dd->mask;
    }
    dd->index[i] = (uint32_t)pos + 1;
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
    sl_free(dd->ring);
    sl_free(dd->index);
    sl_free(dd);
}
