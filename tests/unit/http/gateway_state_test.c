/* The gateway's SQLite state: idempotency records (claim, replay,
 * mismatch, abandoned claims, TTL) and the status projection. */
#include "http/gateway_state.h"

#include "sluice/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T0 1700000000000ull
#define LEASE_MS 10000

typedef struct fixture {
    sl_manual_clock clock;
    sl_gateway_state *gs;
} fixture;

static int setup(void **state)
{
    fixture *fx = sl_calloc(1, sizeof *fx);
    sl_manual_clock_init(&fx->clock, T0);
    sl_gateway_state_opts o = {.idempotency_ttl_ms = 60000,
                               .status_ttl_ms = 60000,
                               .clock = &fx->clock.clock};
    assert_int_equal(sl_gateway_state_open(":memory:", &o, &fx->gs, NULL),
                     SL_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    sl_gateway_state_close(fx->gs);
    sl_free(fx);
    return 0;
}

static const uint64_t FP_A[2] = {1, 2};
static const uint64_t FP_B[2] = {1, 3};

static void idem_first_claim_records_the_new_event_id(void **state)
{
    fixture *fx = *state;
    sl_gw_idem rec;
    assert_int_equal(
        sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-1", LEASE_MS, &rec), SL_OK);
    assert_int_equal(rec.outcome, SL_GW_IDEM_CLAIMED);
    assert_string_equal(rec.event_id, "ev-1");
}

static void idem_second_claim_while_held_is_in_progress(void **state)
{
    fixture *fx = *state;
    sl_gw_idem rec;
    sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-1", LEASE_MS, &rec);
    assert_int_equal(
        sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-2", LEASE_MS, &rec), SL_OK);
    assert_int_equal(rec.outcome, SL_GW_IDEM_IN_PROGRESS);
}

static void idem_abandoned_claim_is_taken_over_with_the_same_id(void **state)
{
    fixture *fx = *state;
    sl_gw_idem rec;
    sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-1", LEASE_MS, &rec);
    atomic_fetch_add(&fx->clock.now_ms, LEASE_MS);
    assert_int_equal(
        sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-2", LEASE_MS, &rec), SL_OK);
    assert_int_equal(rec.outcome, SL_GW_IDEM_CLAIMED);
    assert_string_equal(rec.event_id, "ev-1");
}

static void idem_released_claim_is_claimed_again_with_the_same_id(void **state)
{
    fixture *fx = *state;
    sl_gw_idem rec;
    sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-1", LEASE_MS, &rec);
    assert_int_equal(sl__gw_idem_release(fx->gs, "k"), SL_OK);
    sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-2", LEASE_MS, &rec);
    assert_int_equal(rec.outcome, SL_GW_IDEM_CLAIMED);
    assert_string_equal(rec.event_id, "ev-1");
}

static void idem_finished_key_replays_the_answer(void **state)
{
    fixture *fx = *state;
    sl_gw_idem rec;
    const char body[] = "{\"id\":\"ev-1\"}";
    sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-1", LEASE_MS, &rec);
    assert_int_equal(sl__gw_idem_finish(fx->gs, "k", 202, body, strlen(body)),
                     SL_OK);
    assert_int_equal(
        sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-9", LEASE_MS, &rec), SL_OK);
    assert_int_equal(rec.outcome, SL_GW_IDEM_REPLAY);
    assert_int_equal(rec.http_status, 202);
    assert_string_equal(rec.body, body);
    assert_int_equal(rec.body_len, strlen(body));
    assert_string_equal(rec.event_id, "ev-1");
    sl_free(rec.body);
}

static void idem_other_request_with_the_key_is_a_mismatch(void **state)
{
    fixture *fx = *state;
    sl_gw_idem rec;
    sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-1", LEASE_MS, &rec);
    sl__gw_idem_finish(fx->gs, "k", 202, "{}", 2);
    sl__gw_idem_claim(fx->gs, "k", FP_B, "ev-2", LEASE_MS, &rec);
    assert_int_equal(rec.outcome, SL_GW_IDEM_MISMATCH);
}

static void idem_expired_record_is_replaced(void **state)
{
    fixture *fx = *state;
    sl_gw_idem rec;
    sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-1", LEASE_MS, &rec);
    sl__gw_idem_finish(fx->gs, "k", 202, "{}", 2);
    atomic_fetch_add(&fx->clock.now_ms, 60000);
    sl__gw_idem_claim(fx->gs, "k", FP_B, "ev-2", LEASE_MS, &rec);
    assert_int_equal(rec.outcome, SL_GW_IDEM_CLAIMED);
    assert_string_equal(rec.event_id, "ev-2");
}

static void idem_forgotten_claim_frees_the_key(void **state)
{
    fixture *fx = *state;
    sl_gw_idem rec;
    sl__gw_idem_claim(fx->gs, "k", FP_A, "ev-1", LEASE_MS, &rec);
    assert_int_equal(sl__gw_idem_forget(fx->gs, "k"), SL_OK);
    sl__gw_idem_claim(fx->gs, "k", FP_B, "ev-2", LEASE_MS, &rec);
    assert_int_equal(rec.outcome, SL_GW_IDEM_CLAIMED);
    assert_string_equal(rec.event_id, "ev-2");
}

static void status_reads_back_what_was_written(void **state)
{
    fixture *fx = *state;
    sl_gateway_status_row row;
    assert_int_equal(sl_gateway_status_get(fx->gs, "ev-1", &row), SL_NOT_FOUND);
    assert_int_equal(
        sl_gateway_status_set(fx->gs, "ev-1", "failed", "payment declined"),
        SL_OK);
    assert_int_equal(sl_gateway_status_get(fx->gs, "ev-1", &row), SL_OK);
    assert_string_equal(row.status, "failed");
    assert_string_equal(row.detail, "payment declined");
    assert_int_equal(row.updated_ms, T0);
}

static void status_refuses_unknown_statuses_and_bad_ids(void **state)
{
    fixture *fx = *state;
    char long_id[300];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    assert_int_equal(sl_gateway_status_set(fx->gs, "ev", "done", NULL),
                     SL_INVALID);
    assert_int_equal(sl_gateway_status_set(fx->gs, "", "failed", NULL),
                     SL_INVALID);
    assert_int_equal(sl_gateway_status_set(fx->gs, long_id, "failed", NULL),
                     SL_INVALID);
}

static void status_pending_does_not_overwrite_a_consumer(void **state)
{
    fixture *fx = *state;
    sl_gateway_status_row row;
    sl_gateway_status_set(fx->gs, "ev-1", "completed", NULL);
    const char *ids[] = {"ev-1", "ev-2"};
    assert_int_equal(sl__gw_status_pending(fx->gs, ids, 2), SL_OK);
    sl_gateway_status_get(fx->gs, "ev-1", &row);
    assert_string_equal(row.status, "completed");
    sl_gateway_status_get(fx->gs, "ev-2", &row);
    assert_string_equal(row.status, "pending");
    assert_string_equal(row.detail, "");
}

static void status_pending_is_committed_by_close(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-gwstate-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    sl_gateway_state *a = NULL, *b = NULL;
    assert_int_equal(sl_gateway_state_open(path, NULL, &a, NULL), SL_OK);
    const char *ids[] = {"ev-1", "ev-2", "ev-3"};
    assert_int_equal(sl__gw_status_pending(a, ids, 3), SL_OK);
    sl_gateway_state_close(a);
    /* Another handle on the file sees every queued id once the first one
     * closed (the queue is committed, not dropped). */
    assert_int_equal(sl_gateway_state_open(path, NULL, &b, NULL), SL_OK);
    for (size_t i = 0; i < 3; i++) {
        sl_gateway_status_row row;
        assert_int_equal(sl_gateway_status_get(b, ids[i], &row), SL_OK);
        assert_string_equal(row.status, "pending");
    }
    sl_gateway_state_close(b);
    char aux[sizeof path + 8];
    unlink(path);
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
}

static void status_pending_many_ids_all_read_pending(void **state)
{
    fixture *fx = *state;
    /* Enough ids that the writer commits several batches while they are
     * queued: each reads pending whether queued or committed. */
    char buf[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(buf, sizeof buf, "ev-%d", i);
        const char *id = buf;
        assert_int_equal(sl__gw_status_pending(fx->gs, &id, 1), SL_OK);
        sl_gateway_status_row row;
        snprintf(buf, sizeof buf, "ev-%d", i / 2);
        assert_int_equal(sl_gateway_status_get(fx->gs, buf, &row), SL_OK);
        assert_string_equal(row.status, "pending");
    }
}

static void status_queued_reads_back_at_once(void **state)
{
    fixture *fx = *state;
    sl_gateway_status_row row;
    assert_int_equal(
        sl__gw_status_queue(fx->gs, "ev-1", "failed", "payment declined"),
        SL_OK);
    assert_int_equal(sl_gateway_status_get(fx->gs, "ev-1", &row), SL_OK);
    assert_string_equal(row.status, "failed");
    assert_string_equal(row.detail, "payment declined");
    assert_int_equal(row.updated_ms, T0);
    assert_int_equal(sl__gw_status_queue(fx->gs, "ev", "done", NULL),
                     SL_INVALID);
    assert_int_equal(sl__gw_status_queue(fx->gs, "", "failed", NULL),
                     SL_INVALID);
}

/* Queued statuses replace (last write wins); "pending" fills only an id
 * without a status, whether that status is queued or in the table; the
 * same before the batch commits (read through the queue) and after
 * (another handle reads the file once the first closed). */
static void status_queued_writes_keep_their_order_with_pending(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-gwstate-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    sl_gateway_state *gs = NULL;
    assert_int_equal(sl_gateway_state_open(path, NULL, &gs, NULL), SL_OK);
    const char *a = "ev-a", *b = "ev-b", *c = "ev-c";
    /* A consumer before the gateway's pending row. */
    sl__gw_status_queue(gs, a, "processing", NULL);
    sl__gw_status_pending(gs, &a, 1);
    /* The gateway first, then the consumer, twice. */
    sl__gw_status_pending(gs, &b, 1);
    sl__gw_status_queue(gs, b, "processing", NULL);
    sl__gw_status_queue(gs, b, "completed", "shipped");
    /* A status in the table, then a queued pending row. */
    assert_int_equal(sl_gateway_status_set(gs, c, "failed", NULL), SL_OK);
    sl__gw_status_pending(gs, &c, 1);
    for (int pass = 0; pass < 2; pass++) {
        sl_gateway_status_row row;
        assert_int_equal(sl_gateway_status_get(gs, a, &row), SL_OK);
        assert_string_equal(row.status, "processing");
        assert_int_equal(sl_gateway_status_get(gs, b, &row), SL_OK);
        assert_string_equal(row.status, "completed");
        assert_string_equal(row.detail, "shipped");
        assert_int_equal(sl_gateway_status_get(gs, c, &row), SL_OK);
        assert_string_equal(row.status, "failed");
        sl_gateway_state_close(gs);
        gs = NULL;
        if (pass == 0) {
            assert_int_equal(sl_gateway_state_open(path, NULL, &gs, NULL),
                             SL_OK);
        }
    }
    char aux[sizeof path + 8];
    unlink(path);
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
}

static void status_queued_is_committed_for_other_handles(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-gwstate-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    sl_gateway_state *a = NULL, *b = NULL;
    assert_int_equal(sl_gateway_state_open(path, NULL, &a, NULL), SL_OK);
    const char *id = "ev-1";
    assert_int_equal(sl__gw_status_pending(a, &id, 1), SL_OK);
    assert_int_equal(sl__gw_status_queue(a, id, "completed", "done"), SL_OK);
    sl_gateway_state_close(a);
    assert_int_equal(sl_gateway_state_open(path, NULL, &b, NULL), SL_OK);
    sl_gateway_status_row row;
    assert_int_equal(sl_gateway_status_get(b, id, &row), SL_OK);
    assert_string_equal(row.status, "completed");
    assert_string_equal(row.detail, "done");
    sl_gateway_state_close(b);
    char aux[sizeof path + 8];
    unlink(path);
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
}

static void state_file_is_shared_between_handles(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-gwstate-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    sl_gateway_state *a = NULL, *b = NULL;
    assert_int_equal(sl_gateway_state_open(path, NULL, &a, NULL), SL_OK);
    assert_int_equal(sl_gateway_state_open(path, NULL, &b, NULL), SL_OK);
    assert_int_equal(sl_gateway_status_set(a, "ev", "processing", NULL), SL_OK);
    sl_gateway_status_row row;
    assert_int_equal(sl_gateway_status_get(b, "ev", &row), SL_OK);
    assert_string_equal(row.status, "processing");
    sl_gateway_state_close(a);
    sl_gateway_state_close(b);
    char aux[sizeof path + 8];
    unlink(path);
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
}

static void state_open_refuses_a_file_that_is_not_a_database(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-gwstate-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char junk[4096];
    memset(junk, 'j', sizeof junk);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    sl_gateway_state *gs = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl_gateway_state_open(path, NULL, &gs, &diag), SL_IO);
    assert_null(gs);
    assert_non_null(strstr(diag.msg, path));
    unlink(path);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(idem_first_claim_records_the_new_event_id),
        T(idem_second_claim_while_held_is_in_progress),
        T(idem_abandoned_claim_is_taken_over_with_the_same_id),
        T(idem_released_claim_is_claimed_again_with_the_same_id),
        T(idem_finished_key_replays_the_answer),
        T(idem_other_request_with_the_key_is_a_mismatch),
        T(idem_expired_record_is_replaced),
        T(idem_forgotten_claim_frees_the_key),
        T(status_reads_back_what_was_written),
        T(status_refuses_unknown_statuses_and_bad_ids),
        T(status_pending_does_not_overwrite_a_consumer),
        T(status_pending_is_committed_by_close),
        T(status_pending_many_ids_all_read_pending),
        T(status_queued_reads_back_at_once),
        cmocka_unit_test(status_queued_writes_keep_their_order_with_pending),
        cmocka_unit_test(status_queued_is_committed_for_other_handles),
        cmocka_unit_test(state_file_is_shared_between_handles),
        cmocka_unit_test(state_open_refuses_a_file_that_is_not_a_database),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
