/* commit_interval_ms: the embedded store waits to gather a commit, so a
 * confirm comes no sooner than the interval; without it, at once. */
#include "sluice/engine.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t confirm_ms(uint32_t interval_ms)
{
    static int n;
    char dir[256], url[300], cmd[300];
    snprintf(dir, sizeof dir, "%s/sluice-ci-%d-%d",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid(), ++n);
    snprintf(url, sizeof url, "embedded:%s", dir);
    sl_engine_opts eo = {.commit_interval_ms = interval_ms};
    sl_engine *eng = NULL;
    assert_int_equal(sl_engine_open(url, &eo, &eng, NULL), SL_OK);
    sl_channel_opts co = {.name = "c"};
    sl_group_opts go = {.channel = "c", .name = "g"};
    assert_int_equal(sl_engine_declare_channel(eng, &co, NULL), SL_OK);
    assert_int_equal(sl_engine_declare_group(eng, &go, NULL), SL_OK);
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/t", "t", &ev), SL_OK);
    uint64_t t0 = sl_time_mono_ms();
    assert_int_equal(sl_engine_publish(eng, "c", ev, 0, 5000, NULL), SL_OK);
    uint64_t took = sl_time_mono_ms() - t0;
    sl_event_unref(ev);
    sl_engine_close(eng);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return took;
}

static void commit_interval_delays_the_confirm(void **state)
{
    (void)state;
    /* A lower bound only: the confirm cannot come before the interval. */
    assert_true(confirm_ms(300) >= 250);
}

static void no_interval_confirms_without_waiting_for_one(void **state)
{
    (void)state;
    /* Generous: only shows that no 300 ms wait is built in. */
    assert_true(confirm_ms(0) < 250);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(commit_interval_delays_the_confirm),
        cmocka_unit_test(no_interval_confirms_without_waiting_for_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
