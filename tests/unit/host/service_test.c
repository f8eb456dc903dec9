/* The service declares what its configuration says: channel bounds reach
 * the engine, so its producer feels them. */
#include "sluice/config.h"
#include "sluice/engine.h"
#include "sluice/producer.h"
#include "sluice/service.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

static sl_service *service_of(const char *yaml, sl_config **cfg)
{
    sl_diag diag = {0};
    sl_service *svc = NULL;
    if (sl_config_load_string(yaml, strlen(yaml), "service_test.yaml", cfg,
                              &diag) != SL_OK ||
        sl_service_create(*cfg, &svc, &diag) != SL_OK) {
        fail_msg("service: %s", diag.msg);
    }
    return svc;
}

static sl_status try_publish(sl_service *svc, size_t data_len)
{
    static char data[4096];
    memset(data, 'd', sizeof data);
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/test", "test.event", &ev), SL_OK);
    assert_int_equal(sl_event_set_data(ev, data, data_len), SL_OK);
    sl_status st = sl_producer_try_publish(sl_service_producer(svc), "bounded",
                                           ev, NULL, NULL);
    sl_event_unref(ev);
    return st;
}

static void channel_max_bytes_from_config_bounds_publishing(void **state)
{
    (void)state;
    sl_config *cfg = NULL;
    /* Created, not started: the group holds what is published. */
    sl_service *svc = service_of("admin:\n"
                                 "  enabled: false\n"
                                 "engine:\n"
                                 "  url: 'embedded::memory:'\n"
                                 "channels:\n"
                                 "  - name: bounded\n"
                                 "    max_bytes: 10000\n"
                                 "consumers:\n"
                                 "  - channel: bounded\n"
                                 "    group: keep\n"
                                 "    handler:\n"
                                 "      kind: append\n"
                                 "      file: /dev/null\n",
                                 &cfg);
    int taken = 0;
    while (taken < 10 && try_publish(svc, 4000) == SL_OK) {
        taken++;
    }
    assert_int_equal(taken, 2); /* a third 4 000-byte event would pass it */
    assert_int_equal(try_publish(svc, 100), SL_OK); /* a small one fits */
    sl_service_destroy(svc);
    sl_config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(channel_max_bytes_from_config_bounds_publishing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
