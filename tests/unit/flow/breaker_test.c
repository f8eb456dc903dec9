#include "sluice/breaker.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define T0 5000000 /* an arbitrary start time, ms */

static sl_breaker *make(const sl_breaker_opts *opts)
{
    sl_breaker *brk = NULL;
    assert_int_equal(sl_breaker_create(opts, &brk), SL_OK);
    return brk;
}

static void fail_n(sl_breaker *brk, int n, uint64_t now_ms)
{
    for (int i = 0; i < n; i++) {
        assert_true(sl_breaker_allow(brk, now_ms));
        sl_breaker_record(brk, false, 1, now_ms);
    }
}

static void succeed_n(sl_breaker *brk, int n, uint64_t now_ms)
{
    for (int i = 0; i < n; i++) {
        assert_true(sl_breaker_allow(brk, now_ms));
        sl_breaker_record(brk, true, 1, now_ms);
    }
}

static void breaker_defaults_open_after_5_consecutive_failures(void **state)
{
    (void)state;
    sl_breaker *brk = make(NULL);
    fail_n(brk, 4, T0);
    assert_int_equal(sl_breaker_state_at(brk, T0), SL_BREAKER_STATE_CLOSED);
    fail_n(brk, 1, T0);
    assert_int_equal(sl_breaker_state_at(brk, T0), SL_BREAKER_STATE_OPEN);
    sl_breaker_destroy(brk);
}

static void breaker_success_resets_consecutive_failures(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){.failure_threshold = 3});
    for (int i = 0; i < 10; i++) {
        fail_n(brk, 2, T0);
        succeed_n(brk, 1, T0);
    }
    assert_int_equal(sl_breaker_state_at(brk, T0), SL_BREAKER_STATE_CLOSED);
    sl_breaker_destroy(brk);
}

static void breaker_open_refuses_calls_until_open_ms(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){.failure_threshold = 1});
    fail_n(brk, 1, T0);
    assert_false(sl_breaker_allow(brk, T0));
    assert_false(sl_breaker_allow(brk, T0 + 29999));
    assert_int_equal(sl_breaker_state_at(brk, T0 + 29999),
                     SL_BREAKER_STATE_OPEN);
    assert_int_equal(sl_breaker_state_at(brk, T0 + 30000),
                     SL_BREAKER_STATE_HALF_OPEN);
    sl_breaker_destroy(brk);
}

static void breaker_half_open_admits_one_probe(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){.failure_threshold = 1});
    fail_n(brk, 1, T0);
    assert_true(sl_breaker_allow(brk, T0 + 30000));
    assert_false(sl_breaker_allow(brk, T0 + 30000));
    assert_false(sl_breaker_allow(brk, T0 + 59999)); /* still outstanding */
    sl_breaker_destroy(brk);
}

static void breaker_half_open_admits_at_most_k_probes(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){
        .failure_threshold = 1, .open_ms = 100, .half_open_probes = 3});
    fail_n(brk, 1, T0);
    int admitted = 0;
    for (int i = 0; i < 10; i++) {
        admitted += sl_breaker_allow(brk, T0 + 100);
    }
    assert_int_equal(admitted, 3);
    sl_breaker_destroy(brk);
}

static void breaker_all_probes_succeeding_closes(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){
        .failure_threshold = 1, .open_ms = 100, .half_open_probes = 2});
    fail_n(brk, 1, T0);
    succeed_n(brk, 1, T0 + 100);
    assert_int_equal(sl_breaker_state_at(brk, T0 + 100),
                     SL_BREAKER_STATE_HALF_OPEN);
    succeed_n(brk, 1, T0 + 100);
    assert_int_equal(sl_breaker_state_at(brk, T0 + 100),
                     SL_BREAKER_STATE_CLOSED);
    assert_true(sl_breaker_allow(brk, T0 + 100));
    sl_breaker_destroy(brk);
}

static void breaker_probe_failure_reopens_for_a_full_period(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){
        .failure_threshold = 1, .open_ms = 100, .half_open_probes = 2});
    fail_n(brk, 1, T0);
    succeed_n(brk, 1, T0 + 150);
    fail_n(brk, 1, T0 + 150);
    assert_int_equal(sl_breaker_state_at(brk, T0 + 150), SL_BREAKER_STATE_OPEN);
    assert_false(sl_breaker_allow(brk, T0 + 249));
    assert_true(sl_breaker_allow(brk, T0 + 250));
    sl_breaker_destroy(brk);
}

static void breaker_cancel_gives_back_a_probe_slot(void **state)
{
    (void)state;
    sl_breaker *brk =
        make(&(sl_breaker_opts){.failure_threshold = 1, .open_ms = 100});
    fail_n(brk, 1, T0);
    assert_true(sl_breaker_allow(brk, T0 + 100));
    assert_false(sl_breaker_allow(brk, T0 + 100));
    sl_breaker_cancel(brk, T0 + 100); /* the call was not made after all */
    assert_int_equal(sl_breaker_state_at(brk, T0 + 100),
                     SL_BREAKER_STATE_HALF_OPEN);
    succeed_n(brk, 1, T0 + 100);
    assert_int_equal(sl_breaker_state_at(brk, T0 + 100),
                     SL_BREAKER_STATE_CLOSED);
    sl_breaker_stats st;
    sl_breaker_get_stats(brk, T0 + 100, &st);
    assert_int_equal(st.cancelled, 1);
    sl_breaker_destroy(brk);
}

static void breaker_lost_probe_slot_is_reclaimed_after_open_ms(void **state)
{
    (void)state;
    sl_breaker *brk =
        make(&(sl_breaker_opts){.failure_threshold = 1, .open_ms = 100});
    fail_n(brk, 1, T0);
    /* Looking at the breaker makes it half-open long before a probe. */
    assert_int_equal(sl_breaker_state_at(brk, T0 + 100),
                     SL_BREAKER_STATE_HALF_OPEN);
    assert_true(sl_breaker_allow(brk, T0 + 500)); /* never recorded */
    assert_false(sl_breaker_allow(brk, T0 + 599));
    assert_true(sl_breaker_allow(brk, T0 + 600));
    assert_false(sl_breaker_allow(brk, T0 + 600));
    sl_breaker_destroy(brk);
}

static void breaker_closing_forgets_earlier_failures(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){.open_ms = 100});
    fail_n(brk, 5, T0);
    succeed_n(brk, 1, T0 + 100); /* probe closes */
    fail_n(brk, 4, T0 + 100);
    assert_int_equal(sl_breaker_state_at(brk, T0 + 100),
                     SL_BREAKER_STATE_CLOSED);
    sl_breaker_destroy(brk);
}

static void breaker_retry_after_counts_down_open_time(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){.failure_threshold = 1});
    assert_int_equal(sl_breaker_retry_after_ms(brk, T0), 0);
    fail_n(brk, 1, T0);
    assert_int_equal(sl_breaker_retry_after_ms(brk, T0), 30000);
    assert_int_equal(sl_breaker_retry_after_ms(brk, T0 + 12000), 18000);
    assert_int_equal(sl_breaker_retry_after_ms(brk, T0 + 30000), 0);
    sl_breaker_destroy(brk);
}

static void breaker_window_opens_on_failure_rate(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){
        .window_size = 10, .failure_rate = 0.5, .failure_threshold = 100});
    /* Alternating outcomes never make 2 consecutive failures, yet half of
     * the window fails. */
    for (int i = 0; i < 4; i++) {
        fail_n(brk, 1, T0);
        succeed_n(brk, 1, T0);
    }
    fail_n(brk, 1, T0);
    assert_int_equal(sl_breaker_state_at(brk, T0), SL_BREAKER_STATE_CLOSED);
    succeed_n(brk, 1, T0); /* 10 calls, 5 failures: 50% */
    assert_int_equal(sl_breaker_state_at(brk, T0), SL_BREAKER_STATE_OPEN);
    sl_breaker_destroy(brk);
}

static void breaker_window_waits_for_min_calls(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){.window_size = 20,
                                              .failure_rate = 0.5,
                                              .min_calls = 6,
                                              .failure_threshold = 100});
    fail_n(brk, 5, T0); /* 100% failures, but only 5 calls */
    assert_int_equal(sl_breaker_state_at(brk, T0), SL_BREAKER_STATE_CLOSED);
    fail_n(brk, 1, T0);
    assert_int_equal(sl_breaker_state_at(brk, T0), SL_BREAKER_STATE_OPEN);
    sl_breaker_destroy(brk);
}

static void breaker_window_forgets_calls_that_slide_out(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){
        .window_size = 4, .failure_rate = 0.75, .failure_threshold = 100});
    fail_n(brk, 2, T0);
    succeed_n(brk, 2, T0); /* window F F S S: 50% */
    succeed_n(brk, 2, T0); /* window S S S S */
    fail_n(brk, 2, T0);    /* window S S F F: 50% */
    assert_int_equal(sl_breaker_state_at(brk, T0), SL_BREAKER_STATE_CLOSED);
    fail_n(brk, 1, T0); /* window S F F F: 75% */
    assert_int_equal(sl_breaker_state_at(brk, T0), SL_BREAKER_STATE_OPEN);
    sl_breaker_destroy(brk);
}

static void breaker_slow_success_counts_as_failure(void **state)
{
    (void)state;
    sl_breaker *brk =
        make(&(sl_breaker_opts){.failure_threshold = 3, .slow_call_ms = 500});
    for (int i = 0; i < 3; i++) {
        assert_true(sl_breaker_allow(brk, T0));
        sl_breaker_record(brk, true, i == 0 ? 500 : 501, T0);
    }
    /* 500 ms is not slower than the limit: only 2 consecutive slow calls. */
    assert_int_equal(sl_breaker_state_at(brk, T0), SL_BREAKER_STATE_CLOSED);
    assert_true(sl_breaker_allow(brk, T0));
    sl_breaker_record(brk, true, 10000, T0);
    assert_int_equal(sl_breaker_state_at(brk, T0), SL_BREAKER_STATE_OPEN);
    sl_breaker_stats st;
    sl_breaker_get_stats(brk, T0, &st);
    assert_int_equal(st.slow_calls, 3);
    assert_int_equal(st.failures, 3);
    assert_int_equal(st.successes, 1);
    sl_breaker_destroy(brk);
}

static void breaker_slow_probe_reopens(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){
        .failure_threshold = 1, .open_ms = 100, .slow_call_ms = 50});
    fail_n(brk, 1, T0);
    assert_true(sl_breaker_allow(brk, T0 + 100));
    sl_breaker_record(brk, true, 51, T0 + 151);
    assert_int_equal(sl_breaker_state_at(brk, T0 + 151), SL_BREAKER_STATE_OPEN);
    sl_breaker_destroy(brk);
}

static void breaker_outcomes_recorded_while_open_are_ignored(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){
        .failure_threshold = 1, .open_ms = 100, .half_open_probes = 1});
    assert_true(sl_breaker_allow(brk, T0)); /* a slow call in flight */
    fail_n(brk, 1, T0);
    sl_breaker_record(brk, true, 1, T0 + 10); /* it returns while OPEN */
    assert_int_equal(sl_breaker_state_at(brk, T0 + 10), SL_BREAKER_STATE_OPEN);
    assert_int_equal(sl_breaker_retry_after_ms(brk, T0 + 10), 90);
    sl_breaker_destroy(brk);
}

typedef struct change_log {
    int n;
    sl_breaker_state from[8];
    sl_breaker_state to[8];
    void *ctx_seen;
} change_log;

static void on_change(sl_breaker_state from, sl_breaker_state to, void *ctx)
{
    change_log *log = ctx;
    if (log->n < 8) {
        log->from[log->n] = from;
        log->to[log->n] = to;
        log->n++;
    }
    log->ctx_seen = ctx;
}

static void breaker_on_change_reports_each_transition(void **state)
{
    (void)state;
    change_log log = {0};
    sl_breaker *brk = make(&(sl_breaker_opts){.failure_threshold = 1,
                                              .open_ms = 100,
                                              .on_change = on_change,
                                              .on_change_ctx = &log});
    fail_n(brk, 1, T0);          /* closed -> open */
    fail_n(brk, 1, T0 + 100);    /* open -> half_open -> open */
    succeed_n(brk, 1, T0 + 200); /* open -> half_open -> closed */
    assert_int_equal(log.n, 5);
    const sl_breaker_state from[] = {
        SL_BREAKER_STATE_CLOSED, SL_BREAKER_STATE_OPEN,
        SL_BREAKER_STATE_HALF_OPEN, SL_BREAKER_STATE_OPEN,
        SL_BREAKER_STATE_HALF_OPEN};
    const sl_breaker_state to[] = {
        SL_BREAKER_STATE_OPEN, SL_BREAKER_STATE_HALF_OPEN,
        SL_BREAKER_STATE_OPEN, SL_BREAKER_STATE_HALF_OPEN,
        SL_BREAKER_STATE_CLOSED};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(log.from[i], from[i]);
        assert_int_equal(log.to[i], to[i]);
    }
    assert_ptr_equal(log.ctx_seen, &log);
    sl_breaker_destroy(brk);
}

static void breaker_stats_count_transitions_per_target_state(void **state)
{
    (void)state;
    sl_breaker *brk =
        make(&(sl_breaker_opts){.failure_threshold = 1, .open_ms = 100});
    fail_n(brk, 1, T0);
    assert_false(sl_breaker_allow(brk, T0 + 1));
    fail_n(brk, 1, T0 + 100);
    succeed_n(brk, 1, T0 + 200);
    sl_breaker_stats st;
    sl_breaker_get_stats(brk, T0 + 200, &st);
    assert_int_equal(st.state, SL_BREAKER_STATE_CLOSED);
    assert_int_equal(st.transitions_to_open, 2);
    assert_int_equal(st.transitions_to_half_open, 2);
    assert_int_equal(st.transitions_to_closed, 1);
    assert_int_equal(st.allowed, 3);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.failures, 2);
    assert_int_equal(st.successes, 1);
    sl_breaker_destroy(brk);
}

typedef struct worker_arg {
    sl_breaker *brk;
    int allowed;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *arg = p;
    for (int i = 0; i < 5000; i++) {
        if (sl_breaker_allow(arg->brk, T0)) {
            arg->allowed++;
            sl_breaker_record(arg->brk, false, 1, T0);
        }
    }
    return NULL;
}

static void breaker_opens_once_under_concurrent_failures(void **state)
{
    (void)state;
    sl_breaker *brk = make(&(sl_breaker_opts){.failure_threshold = 50});
    pthread_t threads[4];
    worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg){brk, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, worker, &args[i]),
                         0);
    }
    int allowed = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        allowed += args[i].allowed;
    }
    sl_breaker_stats st;
    sl_breaker_get_stats(brk, T0, &st);
    assert_int_equal(st.state, SL_BREAKER_STATE_OPEN);
    assert_int_equal(st.transitions_to_open, 1);
    /* Calls allowed before the trip may still be in flight (up to one per
     * thread), so at most threshold + 3 got through. */
    assert_in_range(allowed, 50, 53);
    assert_int_equal(st.allowed, (uint64_t)allowed);
    sl_breaker_destroy(brk);
}

static void breaker_state_str_names_states(void **state)
{
    (void)state;
    assert_string_equal(sl_breaker_state_str(SL_BREAKER_STATE_CLOSED),
                        "closed");
    assert_string_equal(sl_breaker_state_str(SL_BREAKER_STATE_OPEN), "open");
    assert_string_equal(sl_breaker_state_str(SL_BREAKER_STATE_HALF_OPEN),
                        "half_open");
    assert_string_equal(sl_breaker_state_str((sl_breaker_state)42), "unknown");
}

static void breaker_create_rejects_invalid_opts(void **state)
{
    (void)state;
    sl_breaker *brk = (sl_breaker *)&brk;
    sl_breaker *const sentinel = brk;
    const sl_breaker_opts bad[] = {
        {.window_size = 10, .failure_rate = 1.5},
        {.window_size = 10, .failure_rate = -0.1},
        {.window_size = 10, .min_calls = 11},
        {.min_calls = 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sl_breaker_create(&bad[i], &brk), SL_INVALID);
    }
    assert_int_equal(sl_breaker_create(NULL, NULL), SL_INVALID);
    assert_ptr_equal(brk, sentinel);
}

static void breaker_destroy_null_is_noop(void **state)
{
    (void)state;
    sl_breaker_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(breaker_defaults_open_after_5_consecutive_failures),
        cmocka_unit_test(breaker_success_resets_consecutive_failures),
        cmocka_unit_test(breaker_open_refuses_calls_until_open_ms),
        cmocka_unit_test(breaker_half_open_admits_one_probe),
        cmocka_unit_test(breaker_half_open_admits_at_most_k_probes),
        cmocka_unit_test(breaker_all_probes_succeeding_closes),
        cmocka_unit_test(breaker_probe_failure_reopens_for_a_full_period),
        cmocka_unit_test(breaker_cancel_gives_back_a_probe_slot),
        cmocka_unit_test(breaker_lost_probe_slot_is_reclaimed_after_open_ms),
        cmocka_unit_test(breaker_closing_forgets_earlier_failures),
        cmocka_unit_test(breaker_retry_after_counts_down_open_time),
        cmocka_unit_test(breaker_window_opens_on_failure_rate),
        cmocka_unit_test(breaker_window_waits_for_min_calls),
        cmocka_unit_test(breaker_window_forgets_calls_that_slide_out),
        cmocka_unit_test(breaker_slow_success_counts_as_failure),
        cmocka_unit_test(breaker_slow_probe_reopens),
        cmocka_unit_test(breaker_outcomes_recorded_while_open_are_ignored),
        cmocka_unit_test(breaker_on_change_reports_each_transition),
        cmocka_unit_test(breaker_stats_count_transitions_per_target_state),
        cmocka_unit_test(breaker_opens_once_under_concurrent_failures),
        cmocka_unit_test(breaker_state_str_names_states),
        cmocka_unit_test(breaker_create_rejects_invalid_opts),
        cmocka_unit_test(breaker_destroy_null_is_noop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
