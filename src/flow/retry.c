#include "sluice/retry.h"

#include "sluice/alloc.h"
#include "sluice/duration.h"

#include <stdatomic.h>
#include <string.h>

#define DEFAULT_BASE_MS 100
#define DEFAULT_CAP_MS 30000
#define DEFAULT_SEED 0x5eed5eed5eed5eedULL
#define GOLDEN_GAMMA 0x9e3779b97f4a7c15ULL

static const uint64_t default_ladder[] = {1000, 5000, 10000};

struct sl_retry_schedule {
    sl_retry_kind kind;
    uint64_t base_ms;
    uint64_t cap_ms;
    /* splitmix64: the state is a counter advanced by a constant, so one
     * atomic add makes the generator safe to share between threads. */
    _Atomic uint64_t rng_state;
    size_t ladder_len;
    uint64_t ladder_ms[]; /* ladder_len entries */
};

static uint64_t splitmix64_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

sl_status sl_retry_create(const sl_retry_opts *opts, sl_retry_schedule **out)
{
    static const sl_retry_opts defaults = {0};
    if (opts == NULL) {
        opts = &defaults;
    }
    if (out == NULL ||
        (opts->kind != SL_RETRY_LADDER && opts->kind != SL_RETRY_EXPONENTIAL) ||
        (opts->ladder_len > 0 && opts->ladder_ms == NULL)) {
        return SL_INVALID;
    }

    const uint64_t *ladder = opts->ladder_ms;
    size_t len = opts->ladder_len;
    if (len == 0) {
        ladder = default_ladder;
        len = sizeof default_ladder / sizeof default_ladder[0];
    }
    if (len > (SIZE_MAX - sizeof(sl_retry_schedule)) / sizeof(uint64_t)) {
        return SL_NOMEM;
    }
    sl_retry_schedule *sched =
        sl_malloc(sizeof *sched + len * sizeof sched->ladder_ms[0]);
    if (sched == NULL) {
        return SL_NOMEM;
    }
    sched->kind = opts->kind;
    sched->base_ms = opts->base_ms != 0 ? opts->base_ms : DEFAULT_BASE_MS;
    sched->cap_ms = opts->cap_ms != 0 ? opts->cap_ms : DEFAULT_CAP_MS;
    atomic_init(&sched->rng_state, opts->seed != 0 ? opts->seed : DEFAULT_SEED);
    sched->ladder_len = len;
    memcpy(sched->ladder_ms, ladder, len * sizeof ladder[0]);
    *out = sched;
    return SL_OK;
}

uint64_t sl_retry_delay_ms(sl_retry_schedule *sched, uint32_t attempt)
{
    if (sched == NULL) {
        return 0;
    }
    if (attempt == 0) {
        attempt = 1;
    }
    if (sched->kind == SL_RETRY_LADDER) {
        size_t i =
            attempt <= sched->ladder_len ? attempt - 1 : sched->ladder_len - 1;
        return sched->ladder_ms[i];
    }

    /* ceiling = min(cap, base * 2^(attempt-1)), without overflowing. */
    uint64_t ceiling = sched->base_ms;
    for (uint32_t i = 1; i < attempt && ceiling < sched->cap_ms; i++) {
        ceiling = ceiling > UINT64_MAX / 2 ? UINT64_MAX : ceiling * 2;
    }
    if (ceiling > sched->cap_ms) {
        ceiling = sched->cap_ms;
    }
    uint64_t r = splitmix64_mix(
        atomic_fetch_add(&sched->rng_state, GOLDEN_GAMMA) + GOLDEN_GAMMA);
    /* The modulo bias is below ceiling / 2^64: irrelevant for delays. */
    return ceiling == UINT64_MAX ? r : r % (ceiling + 1);
}

void sl_retry_destroy(sl_retry_schedule *sched)
{
    sl_free(sched);
}

sl_status sl_retry_parse_ladder(const char *text, uint64_t **out,
                                size_t *out_len, sl_diag *diag)
{
    if (text == NULL || out == NULL || out_len == NULL) {
        return sl_diag_set(diag, SL_INVALID, "retry ladder: NULL argument");
    }
    size_t n = 1;
    for (const char *p = text; *p != '\0'; p++) {
        n += *p == ',';
    }
    uint64_t *ladder = sl_calloc(n, sizeof *ladder);
    char *item = sl_malloc(strlen(text) + 1);
    sl_status st = SL_NOMEM;
    if (ladder == NULL || item == NULL) {
        sl_diag_set(diag, st, "retry ladder: out of memory");
        goto cleanup;
    }

    const char *p = text;
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(p, ",");
        size_t lead = strspn(p, " \t");
        lead = lead < len ? lead : len;
        size_t trimmed = len - lead;
        while (trimmed > 0 && (p[lead + trimmed - 1] == ' ' ||
                               p[lead + trimmed - 1] == '\t')) {
            trimmed--;
        }
        memcpy(item, p + lead, trimmed);
        item[trimmed] = '\0';
        st = sl_duration_parse_ms(item, &ladder[i]);
        if (st != SL_OK) {
            if (item[0] == '\0') {
                st = sl_diag_set(diag, SL_INVALID,
                                 "retry ladder \"%s\": item %zu is empty", text,
                                 i + 1);
            } else {
                st =
                    sl_diag_set(diag, SL_INVALID,
                                "retry ladder \"%s\": item %zu (\"%s\") is "
                                "not a duration; expected a whole number of "
                                "milliseconds written like 250ms, 2s, 1m or 1h",
                                text, i + 1, item);
            }
            goto cleanup;
        }
        p += len + 1;
    }
    *out = ladder;
    *out_len = n;
    ladder = NULL;
    st = SL_OK;

cleanup:
    sl_free(item);
    sl_free(ladder);
    return st;
}
