#include "sluice/token_bucket.h"

#include "sluice/alloc.h"
#include "sluice/clock.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#define DEFAULT_RATE_PER_S 20.0
#define DEFAULT_BURST 40.0
#define DEFAULT_MAX_KEYS 10000
#define MIN_SLOTS 64

/* What the plain and the keyed bucket share: the limits and the state of
 * one bucket, and the arithmetic on them. */
typedef struct bucket_params {
    double rate_per_s;
    double burst;
} bucket_params;

/* The state changes only when tokens are taken: tokens_at() computes the
 * refill from it on demand, so looking at a bucket (or a refused take)
 * never changes it, and the wait that wait_ms() computes through the same
 * expression is exactly when a later take passes. Values stay small (at
 * most burst), which keeps the doubles precise. */
typedef struct bucket_state {
    double tokens;    /* tokens at last_ms */
    uint64_t last_ms; /* time of the last take (or of creation) */
} bucket_state;

static sl_status params_init(bucket_params *p, double rate_per_s, double burst)
{
    if (!(rate_per_s >= 0 && rate_per_s < INFINITY) ||
        !(burst >= 0 && burst < INFINITY)) {
        return SL_INVALID;
    }
    p->rate_per_s = rate_per_s > 0 ? rate_per_s : DEFAULT_RATE_PER_S;
    p->burst = burst > 0 ? burst : DEFAULT_BURST;
    return SL_OK;
}

static double tokens_at(const bucket_params *p, const bucket_state *s,
                        uint64_t at_ms)
{
    uint64_t elapsed = at_ms > s->last_ms ? at_ms - s->last_ms : 0;
    double t = s->tokens + (double)elapsed * p->rate_per_s / 1000.0;
    return t < p->burst ? t : p->burst;
}

static bool state_try_take(const bucket_params *p, bucket_state *s, double n,
                           uint64_t now_ms)
{
    if (isnan(n)) {
        return false;
    }
    if (n <= 0) {
        return true;
    }
    double have = tokens_at(p, s, now_ms);
    if (n > have) {
        return false;
    }
    s->tokens = have - n;
    if (now_ms > s->last_ms) {
        s->last_ms = now_ms;
    }
    return true;
}

static uint64_t state_wait_ms(const bucket_params *p, const bucket_state *s,
                              double n, uint64_t now_ms)
{
    if (isnan(n) || n > p->burst) {
        return UINT64_MAX;
    }
    if (now_ms < s->last_ms) {
        now_ms = s->last_ms; /* earlier than the last take: no time passed */
    }
    if (n <= tokens_at(p, s, now_ms)) {
        return 0;
    }
    double guess = ceil((n - tokens_at(p, s, now_ms)) * 1000.0 / p->rate_per_s);
    if (!(guess < 1e15)) {
        return UINT64_MAX; /* over 30000 years: as good as never */
    }
    /* Rounding may put the guess a millisecond off either way; settle on
     * the first millisecond at which tokens_at() really reaches n. */
    uint64_t wait = guess > 1 ? (uint64_t)guess : 1;
    while (tokens_at(p, s, now_ms + wait) < n) {
        wait++;
    }
    while (wait > 1 && tokens_at(p, s, now_ms + wait - 1) >= n) {
        wait--;
    }
    return wait;
}

struct sl_token_bucket {
    bucket_params params;
    bucket_state state;
};

sl_status sl_token_bucket_create(const sl_token_bucket_opts *opts,
                                 uint64_t now_ms, sl_token_bucket **out)
{
    static const sl_token_bucket_opts defaults = {0};
    if (opts == NULL) {
        opts = &defaults;
    }
    bucket_params params;
    if (out == NULL ||
        params_init(&params, opts->rate_per_s, opts->burst) != SL_OK) {
        return SL_INVALID;
    }
    sl_token_bucket *tb = sl_malloc(sizeof *tb);
    if (tb == NULL) {
        return SL_NOMEM;
    }
    tb->params = params;
    tb->state = (bucket_state){params.burst, now_ms};
    *out = tb;
    return SL_OK;
}

bool sl_token_bucket_try_take(sl_token_bucket *tb, double n, uint64_t now_ms)
{
    return tb != NULL && state_try_take(&tb->params, &tb->state, n, now_ms);
}

uint64_t sl_token_bucket_wait_ms(const sl_token_bucket *tb, double n,
                                 uint64_t now_ms)
{
    if (tb == NULL) {
        return UINT64_MAX;
    }
    return state_wait_ms(&tb->params, &tb->state, n, now_ms);
}

double sl_token_bucket_tokens(const sl_token_bucket *tb, uint64_t now_ms)
{
    if (tb == NULL) {
        return 0;
    }
    return tokens_at(&tb->params, &tb->state, now_ms);
}

void sl_token_bucket_destroy(sl_token_bucket *tb)
{
    sl_free(tb);
}

/* Keyed buckets: a chained hash table for lookup plus a doubly linked list
 * in recency order (head = most recently used) for eviction. */
typedef struct key_node {
    struct key_node *chain;       /* next node in the same hash slot */
    struct key_node *prev, *next; /* LRU neighbours */
    uint64_t hash;
    bucket_state state;
    char key[]; /* NUL-terminated copy */
} key_node;

struct sl_keyed_bucket {
    pthread_mutex_t mu;
    bucket_params params;
    size_t max_keys;
    key_node **slots;
    size_t nslots;    /* a power of two */
    size_t max_slots; /* growth stops here: the power of two >= max_keys */
    key_node *head, *tail;
    uint64_t hash_seed;
    sl_keyed_bucket_stats stats;
};

/* FNV-1a, 64 bits, started from a per-instance seed: keys come from
 * clients, and a seed they cannot know keeps precomputed collisions from
 * piling keys into one chain. (Not a keyed PRF like SipHash; the chains are
 * also bounded by max_keys.) */
static uint64_t hash_key(uint64_t seed, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h = (h ^ *p) * 0x100000001b3ULL;
    }
    return h;
}

static void lru_unlink(sl_keyed_bucket *kb, key_node *node)
{
    *(node->prev != NULL ? &node->prev->next : &kb->head) = node->next;
    *(node->next != NULL ? &node->next->prev : &kb->tail) = node->prev;
}

static void lru_push_front(sl_keyed_bucket *kb, key_node *node)
{
    node->prev = NULL;
    node->next = kb->head;
    *(kb->head != NULL ? &kb->head->prev : &kb->tail) = node;
    kb->head = node;
}

static key_node **slot_of(sl_keyed_bucket *kb, uint64_t hash)
{
    return &kb->slots[hash & (kb->nslots - 1)];
}

static key_node *lookup(sl_keyed_bucket *kb, const char *key, uint64_t hash)
{
    for (key_node *node = *slot_of(kb, hash); node; node = node->chain) {
        if (node->hash == hash && strcmp(node->key, key) == 0) {
            return node;
        }
    }
    return NULL;
}

static void evict_lru(sl_keyed_bucket *kb)
{
    key_node *victim = kb->tail;
    key_node **link = slot_of(kb, victim->hash);
    while (*link != victim) {
        link = &(*link)->chain;
    }
    *link = victim->chain;
    lru_unlink(kb, victim);
    sl_free(victim);
    kb->stats.keys--;
    kb->stats.evictions++;
}

/* Double the slot array. On allocation failure the table keeps working,
 * only with longer chains. */
static void grow(sl_keyed_bucket *kb)
{
    size_t n = kb->nslots * 2;
    key_node **slots = sl_calloc(n, sizeof *slots);
    if (slots == NULL) {
        return;
    }
    for (size_t i = 0; i < kb->nslots; i++) {
        key_node *node = kb->slots[i];
        while (node != NULL) {
            key_node *next = node->chain;
            key_node **slot = &slots[node->hash & (n - 1)];
            node->chain = *slot;
            *slot = node;
            node = next;
        }
    }
    sl_free(kb->slots);
    kb->slots = slots;
    kb->nslots = n;
}

static key_node *insert(sl_keyed_bucket *kb, const char *key, uint64_t hash,
                        uint64_t now_ms)
{
    if (kb->stats.keys >= kb->max_keys) {
        evict_lru(kb);
    }
    if (kb->stats.keys >= kb->nslots && kb->nslots < kb->max_slots) {
        grow(kb);
    }
    size_t len = strlen(key);
    key_node *node = sl_malloc(sizeof *node + len + 1);
    if (node == NULL) {
        return NULL;
    }
    memcpy(node->key, key, len + 1);
    node->hash = hash;
    node->state = (bucket_state){kb->params.burst, now_ms};
    key_node **slot = slot_of(kb, hash);
    node->chain = *slot;
    *slot = node;
    lru_push_front(kb, node);
    kb->stats.keys++;
    return node;
}

sl_status sl_keyed_bucket_create(const sl_keyed_bucket_opts *opts,
                                 sl_keyed_bucket **out)
{
    static const sl_keyed_bucket_opts defaults = {0};
    if (opts == NULL) {
        opts = &defaults;
    }
    bucket_params params;
    if (out == NULL ||
        params_init(&params, opts->rate_per_s, opts->burst) != SL_OK) {
        return SL_INVALID;
    }
    sl_keyed_bucket *kb = sl_calloc(1, sizeof *kb);
    if (kb == NULL) {
        return SL_NOMEM;
    }
    kb->params = params;
    kb->hash_seed = sl_time_mono_ns() ^ (uintptr_t)kb;
    kb->max_keys = opts->max_keys != 0 ? opts->max_keys : DEFAULT_MAX_KEYS;
    kb->max_slots = MIN_SLOTS;
    while (kb->max_slots < kb->max_keys && kb->max_slots <= SIZE_MAX / 4) {
        kb->max_slots *= 2;
    }
    kb->nslots = MIN_SLOTS;
    kb->slots = sl_calloc(kb->nslots, sizeof *kb->slots);
    if (kb->slots == NULL) {
        goto free_kb;
    }
    if (pthread_mutex_init(&kb->mu, NULL) != 0) {
        goto free_slots;
    }
    *out = kb;
    return SL_OK;

free_slots:
    sl_free(kb->slots);
free_kb:
    sl_free(kb);
    return SL_NOMEM;
}

bool sl_keyed_bucket_try_take(sl_keyed_bucket *kb, const char *key, double n,
                              uint64_t now_ms, uint64_t *retry_after_ms)
{
    if (kb == NULL || key == NULL) {
        return false;
    }
    uint64_t hash = hash_key(kb->hash_seed, key);
    uint64_t retry_after = 0;
    bool ok = false;

    pthread_mutex_lock(&kb->mu);
    key_node *node = lookup(kb, key, hash);
    if (node != NULL) {
        lru_unlink(kb, node);
        lru_push_front(kb, node);
    } else {
        node = insert(kb, key, hash, now_ms);
    }
    if (node == NULL) {
        kb->stats.alloc_failed++;
    } else {
        ok = state_try_take(&kb->params, &node->state, n, now_ms);
        if (!ok) {
            retry_after = state_wait_ms(&kb->params, &node->state, n, now_ms);
        }
    }
    if (ok) {
        kb->stats.allowed++;
    } else {
        kb->stats.refused++;
    }
    pthread_mutex_unlock(&kb->mu);

    if (!ok && retry_after_ms != NULL) {
        *retry_after_ms = retry_after;
    }
    return ok;
}

void sl_keyed_bucket_get_stats(sl_keyed_bucket *kb, sl_keyed_bucket_stats *out)
{
    if (kb == NULL || out == NULL) {
        return;
    }
    pthread_mutex_lock(&kb->mu);
    *out = kb->stats;
    pthread_mutex_unlock(&kb->mu);
}

void sl_keyed_bucket_destroy(sl_keyed_bucket *kb)
{
    if (kb == NULL) {
        return;
    }
    key_node *node = kb->head;
    while (node != NULL) {
        key_node *next = node->next;
        sl_free(node);
        node = next;
    }
    pthread_mutex_destroy(&kb->mu);
    sl_free(kb->slots);
    sl_free(kb);
}
