/* The embedded engine past its memory budget: committed events are kept
 * only in the store and read back when delivered, browsed or
 * dead-lettered, with nothing lost or changed. */
#include "engine/embedded/embedded.h"
#include "sluice/engine.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CH "spill.events"
#define N 200

typedef struct fx {
    char dir[256];
    sl_engine *eng;
} fx;

static int setup(void **state)
{
    static int n;
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/sluice-spill-%d-%d",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid(), ++n);
    char url[300];
    snprintf(url, sizeof url, "embedded:%s", f->dir);
    /* A budget of one byte: everything committed and waiting spills. */
    sl_engine_opts eo = {.memory_budget = 1};
    sl_diag diag = {0};
    if (sl_engine_open(url, &eo, &f->eng, &diag) != SL_OK) {
        fail_msg("open: %s", diag.msg);
    }
    sl_channel_opts co = {.name = CH};
    assert_int_equal(sl_engine_declare_channel(f->eng, &co, NULL), SL_OK);
    sl_group_opts a = {.channel = CH, .name = "a", .max_attempts = 5};
    sl_group_opts b = {.channel = CH, .name = "b", .max_attempts = 5};
    assert_int_equal(sl_engine_declare_group(f->eng, &a, NULL), SL_OK);
    assert_int_equal(sl_engine_declare_group(f->eng, &b, NULL), SL_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl_engine_close(f->eng);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void publish_all(fx *f)
{
    for (int i = 0; i < N; i++) {
        sl_event *ev = NULL;
        char id[32], data[64];
        snprintf(id, sizeof id, "ev-%03d", i);
        snprintf(data, sizeof data, "{\"i\":%d}", i);
        assert_int_equal(sl_event_create_new("/t", "t", &ev), SL_OK);
        sl_event_set(ev, SL_ATTR_ID, id);
        sl_event_set_data(ev, data, strlen(data));
        assert_int_equal(sl_engine_publish(f->eng, CH, ev, 0, 5000, NULL),
                         SL_OK);
        sl_event_unref(ev);
    }
}

static void check_event(const sl_event *ev, int i)
{
    char id[32], data[64];
    snprintf(id, sizeof id, "ev-%03d", i);
    snprintf(data, sizeof data, "{\"i\":%d}", i);
    assert_string_equal(sl_event_id(ev), id);
    size_t len = 0;
    const void *d = sl_event_data(ev, &len);
    assert_int_equal(len, strlen(data));
    assert_memory_equal(d, data, len);
}

static void spilled_events_are_delivered_intact_and_in_order(void **state)
{
    fx *f = *state;
    publish_all(f);
    /* Every event was spilled once committed: none is held in memory. */
    assert_int_equal(sl__embedded_resident_bytes(f->eng), 0);
    sl_subscription *sub = NULL;
    sl_subscribe_opts so = {.prefetch = 16};
    assert_int_equal(sl_engine_subscribe(f->eng, CH, "a", &so, &sub, NULL),
                     SL_OK);
    int next = 0;
    while (next < N) {
        sl_delivery *ds[16];
        size_t n = 0;
        assert_int_equal(sl_subscription_fetch(sub, ds, 16, 1000, &n), SL_OK);
        /* Read back for delivery. */
        assert_true(sl__embedded_resident_bytes(f->eng) > 0);
        for (size_t i = 0; i < n; i++) {
            check_event(sl_delivery_event(ds[i]), next++);
        }
        assert_int_equal(sl_delivery_ack_many(ds, n), SL_OK);
    }
    sl_subscription_close(sub);
    /* Group b still has every event, intact. */
    sl_depth d = {0};
    assert_int_equal(sl_engine_depth(f->eng, CH, "b", &d), SL_OK);
    assert_int_equal(d.ready, N);
}

static int browsed;

static bool count_browsed(const sl_event *ev, uint32_t attempts, void *ctx)
{
    (void)attempts;
    (void)ctx;
    check_event(ev, browsed++);
    return true;
}

static void spilled_events_can_be_browsed_and_dead_lettered(void **state)
{
    fx *f = *state;
    publish_all(f);
    browsed = 0;
    assert_int_equal(sl_engine_browse(f->eng, CH, "a", 0, count_browsed, NULL),
                     SL_OK);
    assert_int_equal(browsed, N);

    sl_subscription *sub = NULL;
    sl_subscribe_opts so = {.prefetch = 1};
    assert_int_equal(sl_engine_subscribe(f->eng, CH, "b", &so, &sub, NULL),
                     SL_OK);
    sl_delivery *d = NULL;
    size_t n = 0;
    assert_int_equal(sl_subscription_fetch(sub, &d, 1, 1000, &n), SL_OK);
    check_event(sl_delivery_event(d), 0);
    assert_int_equal(sl_delivery_dead_letter(&d, SL_DEAD_REJECTED, "no"),
                     SL_OK);
    sl_subscription_close(sub);
    browsed = 0;
    assert_int_equal(
        sl_engine_browse(f->eng, CH ".b.dlq", "dlq", 0, count_browsed, NULL),
        SL_OK);
    assert_int_equal(browsed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            spilled_events_are_delivered_intact_and_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(
            spilled_events_can_be_browsed_and_dead_lettered, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
