#include "sluice/breaker.h"

#include "sluice/alloc.h"

#include <pthread.h>

#define DEFAULT_FAILURE_THRESHOLD 5
#define DEFAULT_OPEN_MS 30000
#define DEFAULT_HALF_OPEN_PROBES 1
#define DEFAULT_FAILURE_RATE 0.5

struct sl_breaker {
    pthread_mutex_t mu;
    sl_breaker_opts opts; /* with defaults applied */
    sl_breaker_state state;
    uint64_t opened_at_ms;
    uint64_t last_probe_ms;        /* HALF_OPEN: latest probe admitted */
    uint32_t consecutive_failures; /* CLOSED */
    uint32_t probes_admitted;      /* HALF_OPEN */
    uint32_t probe_successes;      /* HALF_OPEN */
    /* Sliding window of the last window_size outcomes (1 = failure), a
     * ring in which `pos` is the next slot to write. */
    uint32_t win_pos;
    uint32_t win_count;
    uint32_t win_failures;
    sl_breaker_stats stats;
    unsigned char window[];
};

static void transition(sl_breaker *brk, sl_breaker_state to, uint64_t now_ms)
{
    sl_breaker_state from = brk->state;
    if (from == to) {
        return;
    }
    brk->state = to;
    switch (to) {
    case SL_BREAKER_STATE_OPEN:
        brk->opened_at_ms = now_ms;
        brk->stats.transitions_to_open++;
        break;
    case SL_BREAKER_STATE_HALF_OPEN:
        brk->probes_admitted = 0;
        brk->probe_successes = 0;
        brk->stats.transitions_to_half_open++;
        break;
    case SL_BREAKER_STATE_CLOSED:
        brk->consecutive_failures = 0;
        brk->win_pos = brk->win_count = brk->win_failures = 0;
        brk->stats.transitions_to_closed++;
        break;
    }
    brk->stats.state = to;
    if (brk->opts.on_change != NULL) {
        brk->opts.on_change(from, to, brk->opts.on_change_ctx);
    }
}

static bool elapsed(uint64_t since_ms, uint64_t now_ms, uint64_t span_ms)
{
    return now_ms >= since_ms && now_ms - since_ms >= span_ms;
}

/* Time-driven changes, applied lazily whenever someone looks: OPEN becomes
 * HALF_OPEN after open_ms, and probes with no outcome open_ms after the
 * latest one was admitted are presumed lost, so that their slots cannot
 * stay taken forever. */
static void advance(sl_breaker *brk, uint64_t now_ms)
{
    if (brk->state == SL_BREAKER_STATE_OPEN &&
        elapsed(brk->opened_at_ms, now_ms, brk->opts.open_ms)) {
        transition(brk, SL_BREAKER_STATE_HALF_OPEN, now_ms);
    } else if (brk->state == SL_BREAKER_STATE_HALF_OPEN &&
               brk->probes_admitted > brk->probe_successes &&
               elapsed(brk->last_probe_ms, now_ms, brk->opts.open_ms)) {
        brk->probes_admitted = brk->probe_successes;
    }
}

static bool window_trips(sl_breaker *brk, bool failed)
{
    uint32_t size = brk->opts.window_size;
    if (size == 0) {
        return false;
    }
    if (brk->win_count == size) {
        brk->win_failures -= brk->window[brk->win_pos];
    } else {
        brk->win_count++;
    }
    brk->window[brk->win_pos] = failed;
    brk->win_failures += failed;
    brk->win_pos = (brk->win_pos + 1) % size;
    return brk->win_count >= brk->opts.min_calls &&
           (double)brk->win_failures >=
               brk->opts.failure_rate * (double)brk->win_count;
}

sl_status sl_breaker_create(const sl_breaker_opts *opts, sl_breaker **out)
{
    static const sl_breaker_opts defaults = {0};
    if (opts == NULL) {
        opts = &defaults;
    }
    if (out == NULL || !(opts->failure_rate >= 0 && opts->failure_rate <= 1) ||
        opts->min_calls > opts->window_size) {
        return SL_INVALID;
    }
    sl_breaker *brk = sl_calloc(1, sizeof *brk + opts->window_size);
    if (brk == NULL) {
        return SL_NOMEM;
    }
    if (pthread_mutex_init(&brk->mu, NULL) != 0) {
        sl_free(brk);
        return SL_NOMEM;
    }
    brk->opts = *opts;
    sl_breaker_opts *o = &brk->opts;
    if (o->failure_threshold == 0) {
        o->failure_threshold = DEFAULT_FAILURE_THRESHOLD;
    }
    if (o->open_ms == 0) {
        o->open_ms = DEFAULT_OPEN_MS;
    }
    if (o->half_open_probes == 0) {
        o->half_open_probes = DEFAULT_HALF_OPEN_PROBES;
    }
    if (o->failure_rate == 0) {
        o->failure_rate = DEFAULT_FAILURE_RATE;
    }
    if (o->min_calls == 0) {
        o->min_calls = o->window_size;
    }
    brk->state = SL_BREAKER_STATE_CLOSED;
    brk->stats.state = SL_BREAKER_STATE_CLOSED;
    *out = brk;
    return SL_OK;
}

bool sl_breaker_allow(sl_breaker *brk, uint64_t now_ms)
{
    if (brk == NULL) {
        return false;
    }
    pthread_mutex_lock(&brk->mu);
    advance(brk, now_ms);
    bool ok = brk->state == SL_BREAKER_STATE_CLOSED;
    if (brk->state == SL_BREAKER_STATE_HALF_OPEN &&
        brk->probes_admitted < brk->opts.half_open_probes) {
        brk->probes_admitted++;
        brk->last_probe_ms = now_ms;
        ok = true;
    }
    if (ok) {
        brk->stats.allowed++;
    } else {
        brk->stats.rejected++;
    }
    pthread_mutex_unlock(&brk->mu);
    return ok;
}

void sl_breaker_record(sl_breaker *brk, bool ok, uint64_t duration_ms,
                       uint64_t now_ms)
{
    if (brk == NULL) {
        return;
    }
    bool slow = ok && brk->opts.slow_call_ms != 0 &&
                duration_ms > brk->opts.slow_call_ms;
    bool failed = !ok || slow;

    pthread_mutex_lock(&brk->mu);
    brk->stats.slow_calls += slow;
    if (failed) {
        brk->stats.failures++;
    } else {
        brk->stats.successes++;
    }
    advance(brk, now_ms);
    switch (brk->state) {
    case SL_BREAKER_STATE_CLOSED:
        brk->consecutive_failures = failed ? brk->consecutive_failures + 1 : 0;
        /* The window is updated on every call, so evaluate it first. */
        if (window_trips(brk, failed) ||
            brk->consecutive_failures >= brk->opts.failure_threshold) {
            transition(brk, SL_BREAKER_STATE_OPEN, now_ms);
        }
        break;
    case SL_BREAKER_STATE_HALF_OPEN:
        if (failed) {
            transition(brk, SL_BREAKER_STATE_OPEN, now_ms);
        } else if (++brk->probe_successes >= brk->opts.half_open_probes) {
            transition(brk, SL_BREAKER_STATE_CLOSED, now_ms);
        }
        break;
    case SL_BREAKER_STATE_OPEN:
        break; /* a call from before the breaker opened: nothing to learn */
    }
    pthread_mutex_unlock(&brk->mu);
}

void sl_breaker_cancel(sl_breaker *brk, uint64_t now_ms)
{
    if (brk == NULL) {
        return;
    }
    pthread_mutex_lock(&brk->mu);
    advance(brk, now_ms);
    if (brk->state == SL_BREAKER_STATE_HALF_OPEN &&
        brk->probes_admitted > brk->probe_successes) {
        brk->probes_admitted--;
    }
    brk->stats.cancelled++;
    pthread_mutex_unlock(&brk->mu);
}

sl_breaker_state sl_breaker_state_at(sl_breaker *brk, uint64_t now_ms)
{
    if (brk == NULL) {
        return SL_BREAKER_STATE_CLOSED;
    }
    pthread_mutex_lock(&brk->mu);
    advance(brk, now_ms);
    sl_breaker_state state = brk->state;
    pthread_mutex_unlock(&brk->mu);
    return state;
}

uint64_t sl_breaker_retry_after_ms(sl_breaker *brk, uint64_t now_ms)
{
    if (brk == NULL) {
        return 0;
    }
    uint64_t wait = 0;
    pthread_mutex_lock(&brk->mu);
    advance(brk, now_ms);
    if (brk->state == SL_BREAKER_STATE_OPEN) {
        /* now_ms may be before opened_at_ms if the caller's clock readings
         * race; then the whole open period is still ahead. */
        uint64_t elapsed =
            now_ms > brk->opened_at_ms ? now_ms - brk->opened_at_ms : 0;
        wait = brk->opts.open_ms - elapsed;
    }
    pthread_mutex_unlock(&brk->mu);
    return wait;
}

void sl_breaker_get_stats(sl_breaker *brk, uint64_t now_ms,
                          sl_breaker_stats *out)
{
    if (brk == NULL || out == NULL) {
        return;
    }
    pthread_mutex_lock(&brk->mu);
    advance(brk, now_ms);
    *out = brk->stats;
    pthread_mutex_unlock(&brk->mu);
}

const char *sl_breaker_state_str(sl_breaker_state state)
{
    switch (state) {
    case SL_BREAKER_STATE_CLOSED:
        return "closed";
    case SL_BREAKER_STATE_OPEN:
        return "open";
    case SL_BREAKER_STATE_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

void sl_breaker_destroy(sl_breaker *brk)
{
    if (brk == NULL) {
        return;
    }
    pthread_mutex_destroy(&brk->mu);
    sl_free(brk);
}
