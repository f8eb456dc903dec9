/* Unit tests of the configuration loader: every error cites the exact
 * FILE:LINE:COLUMN and key path a user would look up. */
#include "sluice/config.h"

#include "sluice/alloc.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* A file that sets every option to something other than its default. */
static const char full_yaml[] =
    "service:\n"                                       /*  1 */
    "  name: orders\n"                                 /*  2 */
    "engine:\n"                                        /*  3 */
    "  url: embedded:./state?sync=full\n"              /*  4 */
    "  sync: full\n"                                   /*  5 */
    "  dedup_window: 3m\n"                             /*  6 */
    "  max_event_size: 512KiB\n"                       /*  7 */
    "producer:\n"                                      /*  8 */
    "  max_in_flight: 500\n"                           /*  9 */
    "  publish_timeout: 2s\n"                          /* 10 */
    "  rate: 20.5\n"                                   /* 11 */
    "  burst: 7\n"                                     /* 12 */
    "  breaker:\n"                                     /* 13 */
    "    failure_threshold: 3\n"                       /* 14 */
    "    open: 10s\n"                                  /* 15 */
    "channels:\n"                                      /* 16 */
    "  - name: orders.created\n"                       /* 17 */
    "    max_length: 100000\n"                         /* 18 */
    "  - name: orders.audit\n"                         /* 19 */
    "consumers:\n"                                     /* 20 */
    "  - channel: orders.created\n"                    /* 21 */
    "    group: billing\n"                             /* 22 */
    "    prefetch: 20\n"                               /* 23 */
    "    concurrency: 8\n"                             /* 24 */
    "    handler_timeout: 1m\n"                        /* 25 */
    "    max_attempts: 7\n"                            /* 26 */
    "    backoff: [250ms, 2s]\n"                       /* 27 */
    "    idempotency: true\n"                          /* 28 */
    "    idempotency_ttl: 48h\n"                       /* 29 */
    "    handler:\n"                                   /* 30 */
    "      kind: plugin\n"                             /* 31 */
    "      path: ./build/examples/libhello.so\n"       /* 32 */
    "      symbol: hello_handle\n"                     /* 33 */
    "      init: hello_init\n"                         /* 34 */
    "      config: \"greeting=hi\"\n"                  /* 35 */
    "  - channel: orders.created\n"                    /* 36 */
    "    group: audit\n"                               /* 37 */
    "    handler:\n"                                   /* 38 */
    "      kind: forward\n"                            /* 39 */
    "      to: orders.audit\n"                         /* 40 */
    "  - channel: orders.audit\n"                      /* 41 */
    "    group: archive\n"                             /* 42 */
    "    handler: {kind: append, file: ./audit.log}\n" /* 43 */
    "drain_timeout: 10s\n"                             /* 44 */
    "inbox: ./inbox.db\n";                             /* 45 */

/* One declared channel, which most tests consume. */
#define BASE_CHANNELS                                                          \
    "channels:\n"                                                              \
    "  - name: orders.created\n"

static sl_config *load_ok(const char *yaml)
{
    sl_diag diag = {0};
    sl_config *cfg = NULL;
    sl_status st =
        sl_config_load_string(yaml, strlen(yaml), "service.yaml", &cfg, &diag);
    if (st != SL_OK) {
        print_message("unexpected error: %s\n", diag.msg);
    }
    assert_int_equal(st, SL_OK);
    assert_non_null(cfg);
    return cfg;
}

/* Loading @p yaml fails with @p want and exactly @p msg, and leaves the
 * out-parameter alone. */
static void assert_load_fails(const char *yaml, sl_status want, const char *msg)
{
    sl_diag diag = {0};
    static sl_config sentinel;
    sl_config *cfg = &sentinel;
    sl_status st =
        sl_config_load_string(yaml, strlen(yaml), "service.yaml", &cfg, &diag);
    assert_int_equal(st, want);
    assert_int_equal(diag.status, want);
    assert_string_equal(diag.msg, msg);
    assert_ptr_equal(cfg, &sentinel);
}

static void assert_config_error(const char *yaml, const char *msg)
{
    assert_load_fails(yaml, SL_CONFIG, msg);
}

/* ---- valid files -------------------------------------------------------- */

static void config_full_file_sets_every_field(void **state)
{
    (void)state;
    sl_config *cfg = load_ok(full_yaml);

    assert_string_equal(cfg->path, "service.yaml");
    assert_string_equal(cfg->service_name, "orders");
    assert_string_equal(cfg->engine_url, "embedded:./state?sync=full");
    assert_int_equal(cfg->sync, SL_SYNC_FULL);
    assert_int_equal(cfg->dedup_window_ms, 180000);
    assert_int_equal(cfg->max_event_size, 512 * 1024);
    assert_int_equal(cfg->max_in_flight, 500);
    assert_int_equal(cfg->publish_timeout_ms, 2000);
    assert_true(cfg->rate_per_s == 20.5);
    assert_int_equal(cfg->burst, 7);
    assert_int_equal(cfg->breaker_failures, 3);
    assert_int_equal(cfg->breaker_open_ms, 10000);
    assert_int_equal(cfg->drain_timeout_ms, 10000);
    assert_string_equal(cfg->inbox_path, "./inbox.db");

    assert_int_equal(cfg->nchannels, 2);
    assert_string_equal(cfg->channels[0].name, "orders.created");
    assert_int_equal(cfg->channels[0].max_length, 100000);
    assert_int_equal(cfg->channels[0].pos.line, 17);
    assert_int_equal(cfg->channels[0].pos.column, 5);
    assert_string_equal(cfg->channels[1].name, "orders.audit");
    assert_int_equal(cfg->channels[1].max_length, 0);

    assert_int_equal(cfg->nconsumers, 3);
    const sl_config_consumer *c = &cfg->consumers[0];
    assert_string_equal(c->channel, "orders.created");
    assert_string_equal(c->group, "billing");
    assert_int_equal(c->prefetch, 20);
    assert_int_equal(c->concurrency, 8);
    assert_int_equal(c->handler_timeout_ms, 60000);
    assert_int_equal(c->max_attempts, 7);
    assert_int_equal(c->backoff_len, 2);
    assert_int_equal(c->backoff_ms[0], 250);
    assert_int_equal(c->backoff_ms[1], 2000);
    assert_true(c->idempotency);
    assert_int_equal(c->idempotency_ttl_ms, 48 * 3600 * 1000);
    assert_int_equal(c->pos.line, 21);
    assert_int_equal(c->pos.column, 5);
    assert_string_equal(c->handler.kind, "plugin");
    assert_string_equal(c->handler.path, "./build/examples/libhello.so");
    assert_string_equal(c->handler.symbol, "hello_handle");
    assert_string_equal(c->handler.init, "hello_init");
    assert_string_equal(c->handler.config, "greeting=hi");
    assert_int_equal(c->handler.pos.line, 31);
    assert_int_equal(c->handler.pos.column, 7);

    c = &cfg->consumers[1];
    assert_string_equal(c->group, "audit");
    assert_string_equal(c->handler.kind, "forward");
    assert_string_equal(c->handler.to, "orders.audit");
    assert_null(c->handler.path);
    assert_null(c->handler.symbol);

    c = &cfg->consumers[2];
    assert_string_equal(c->channel, "orders.audit");
    assert_string_equal(c->handler.kind, "append");
    assert_string_equal(c->handler.file, "./audit.log");
    assert_int_equal(c->handler.pos.line, 43);
    assert_int_equal(c->handler.pos.column, 14);

    sl_config_destroy(cfg);
}

static void config_channel_max_bytes_is_read(void **state)
{
    (void)state;
    sl_config *cfg = load_ok("channels:\n"
                             "  - name: uploads\n"
                             "    max_bytes: 67108864\n");
    assert_int_equal(cfg->channels[0].max_bytes, 64 * 1024 * 1024);
    assert_int_equal(cfg->channels[0].max_length, 0);
    sl_config_destroy(cfg);
}

static void config_omitted_keys_take_defaults(void **state)
{
    (void)state;
    sl_config *cfg = load_ok(BASE_CHANNELS "consumers:\n"
                                           "  - channel: orders.created\n"
                                           "    group: billing\n"
                                           "    handler:\n"
                                           "      kind: plugin\n"
                                           "      path: ./libh.so\n");

    assert_string_equal(cfg->service_name, "sluice");
    assert_string_equal(cfg->engine_url, "embedded:./data");
    assert_int_equal(cfg->sync, SL_SYNC_NORMAL);
    assert_int_equal(cfg->dedup_window_ms, 120000);
    assert_int_equal(cfg->max_event_size, 1024 * 1024);
    assert_int_equal(cfg->memory_budget, 256 * 1024);
    assert_int_equal(cfg->commit_interval_ms, 0);
    assert_int_equal(cfg->max_in_flight, 1000);
    assert_int_equal(cfg->publish_timeout_ms, 5000);
    assert_true(cfg->rate_per_s == 0.0);
    assert_int_equal(cfg->burst, 0);
    assert_int_equal(cfg->breaker_failures, 0);
    assert_int_equal(cfg->breaker_open_ms, 30000);
    assert_int_equal(cfg->drain_timeout_ms, 25000);
    assert_string_equal(cfg->inbox_path, "./data/inbox.db");
    assert_int_equal(cfg->channels[0].max_length, 0);
    assert_int_equal(cfg->channels[0].max_bytes, 0);

    const sl_config_consumer *c = &cfg->consumers[0];
    assert_int_equal(c->prefetch, 10);
    assert_int_equal(c->concurrency, 10);
    assert_int_equal(c->handler_timeout_ms, 30000);
    assert_int_equal(c->max_attempts, 5);
    assert_int_equal(c->backoff_len, 3);
    assert_int_equal(c->backoff_ms[0], 1000);
    assert_int_equal(c->backoff_ms[1], 5000);
    assert_int_equal(c->backoff_ms[2], 10000);
    assert_false(c->idempotency);
    assert_int_equal(c->idempotency_ttl_ms, 24 * 3600 * 1000);
    assert_string_equal(c->handler.symbol, "sluice_handle");
    assert_null(c->handler.init);
    assert_null(c->handler.config);
    sl_config_destroy(cfg);
}

static void config_empty_mapping_is_a_valid_service(void **state)
{
    (void)state;
    sl_config *cfg = load_ok("{}\n");
    assert_int_equal(cfg->nchannels, 0);
    assert_null(cfg->channels);
    assert_int_equal(cfg->nconsumers, 0);
    assert_null(cfg->consumers);
    sl_config_destroy(cfg);
}

static void config_empty_sections_take_defaults(void **state)
{
    (void)state;
    sl_config *cfg = load_ok("engine:\nproducer:\nchannels:\nconsumers:\n");
    assert_string_equal(cfg->engine_url, "embedded:./data");
    assert_int_equal(cfg->max_in_flight, 1000);
    assert_int_equal(cfg->breaker_open_ms, 30000);
    assert_int_equal(cfg->nchannels, 0);
    sl_config_destroy(cfg);
}

static void config_concurrency_defaults_to_prefetch(void **state)
{
    (void)state;
    sl_config *cfg = load_ok(BASE_CHANNELS "consumers:\n"
                                           "  - channel: orders.created\n"
                                           "    group: billing\n"
                                           "    prefetch: 64\n"
                                           "    handler: {kind: record}\n");
    assert_int_equal(cfg->consumers[0].concurrency, 64);
    sl_config_destroy(cfg);
}

static void config_burst_defaults_to_twice_rate(void **state)
{
    (void)state;
    sl_config *cfg = load_ok("producer:\n  rate: 20\n");
    assert_int_equal(cfg->burst, 40);
    sl_config_destroy(cfg);

    cfg = load_ok("producer:\n  rate: 0.25\n");
    assert_int_equal(cfg->burst, 1); /* rounded up: a bucket holds >= 1 */
    sl_config_destroy(cfg);
}

static void config_inbox_follows_embedded_directory(void **state)
{
    (void)state;
    sl_config *cfg =
        load_ok("engine: {url: \"embedded:/var/lib/x/?sync=off\"}");
    assert_string_equal(cfg->inbox_path, "/var/lib/x/inbox.db");
    sl_config_destroy(cfg);
}

static void config_inbox_in_memory_for_memory_engine(void **state)
{
    (void)state;
    sl_config *cfg = load_ok("engine: {url: \"embedded::memory:\"}");
    assert_string_equal(cfg->inbox_path, ":memory:");
    sl_config_destroy(cfg);
}

static void config_inbox_in_working_directory_for_brokers(void **state)
{
    (void)state;
    sl_config *cfg = load_ok("engine: {url: \"amqp://guest@localhost\"}");
    assert_string_equal(cfg->inbox_path, "./sluice-inbox.db");
    sl_config_destroy(cfg);
}

static void config_inbox_nats_kv_with_nats_engine(void **state)
{
    (void)state;
    sl_config *cfg = load_ok("engine: {url: \"nats://127.0.0.1:4222\"}\n"
                             "inbox: nats-kv\n");
    assert_string_equal(cfg->inbox_path, "nats-kv");
    sl_config_destroy(cfg);
    cfg = load_ok("engine: {url: \"tls://127.0.0.1:4222\"}\n"
                  "inbox: \"nats-kv:orders-inbox\"\n");
    assert_string_equal(cfg->inbox_path, "nats-kv:orders-inbox");
    sl_config_destroy(cfg);
}

static void config_inbox_nats_kv_needs_nats_engine(void **state)
{
    (void)state;
    assert_config_error(
        "engine: {url: \"embedded:./data\"}\n"
        "inbox: nats-kv\n",
        "service.yaml:2:8: inbox: \"nats-kv\" keeps idempotency records in "
        "JetStream KV: it needs the NATS engine (engine.url nats:// or "
        "tls://)");
}

static void config_inbox_nats_kv_bucket_name_is_checked(void **state)
{
    (void)state;
    assert_config_error(
        "engine: {url: \"nats://127.0.0.1:4222\"}\n"
        "inbox: \"nats-kv:a.b\"\n",
        "service.yaml:2:8: inbox: \"nats-kv:a.b\": a bucket name is "
        "[A-Za-z0-9_-]+ (nats-kv:NAME)");
}

static void config_record_handler_refused_with_nats_kv_inbox(void **state)
{
    (void)state;
    assert_config_error(
        "engine: {url: \"nats://127.0.0.1:4222\"}\n"
        "inbox: nats-kv\n"
        "channels: [{name: a}]\n"
        "consumers:\n"
        "  - channel: a\n"
        "    group: g\n"
        "    idempotency: true\n"
        "    handler: {kind: record}\n",
        "service.yaml:8:21: consumers[0].handler.kind: 'record' commits its "
        "effects with the inbox record in one SQLite transaction, which "
        "cannot work with inbox: nats-kv (JetStream KV); use an SQLite "
        "inbox file for this service, or another handler kind");
}

static void config_accepts_every_duration_and_size_form(void **state)
{
    (void)state;
    sl_config *cfg = load_ok("engine:\n"
                             "  dedup_window: 1.5m\n"
                             "  max_event_size: 512KiB\n"
                             "producer: {publish_timeout: 250}\n"
                             "drain_timeout: 0\n");
    assert_int_equal(cfg->dedup_window_ms, 90000);
    assert_int_equal(cfg->max_event_size, 512 * 1024);
    assert_int_equal(cfg->publish_timeout_ms, 250);
    assert_int_equal(cfg->drain_timeout_ms, 0);
    sl_config_destroy(cfg);

    cfg = load_ok("engine: {max_event_size: 1048576}\n");
    assert_int_equal(cfg->max_event_size, 1048576);
    sl_config_destroy(cfg);
}

/* ---- errors: shape of the file ----------------------------------------- */

static void config_empty_file_is_refused(void **state)
{
    (void)state;
    assert_config_error("", "service.yaml:1:1: empty configuration (expected "
                            "a mapping with keys such as engine, channels "
                            "and consumers)");
    assert_config_error("# only a comment\n",
                        "service.yaml:1:1: empty configuration (expected "
                        "a mapping with keys such as engine, channels "
                        "and consumers)");
}

static void config_top_level_must_be_a_mapping(void **state)
{
    (void)state;
    assert_config_error("- engine\n", "service.yaml:1:1: expected a mapping "
                                      "at the top level, got a list");
    assert_config_error("\n  hello\n", "service.yaml:2:3: expected a mapping "
                                       "at the top level, got a scalar");
}

static void config_syntax_error_cites_problem_position(void **state)
{
    (void)state;
    assert_config_error("engine:\n"
                        "  url: embedded:./data\n"
                        " sync: full\n",
                        "service.yaml:3:2: syntax error: did not find "
                        "expected key (while parsing a block mapping at "
                        "1:1)");
    assert_config_error("consumers:\n"
                        "  - backoff: [1s, 5s\n",
                        "service.yaml:3:1: syntax error: did not find "
                        "expected ',' or ']' (while parsing a flow sequence "
                        "at 2:14)");
}

static void config_second_document_is_refused(void **state)
{
    (void)state;
    assert_config_error("service: {name: a}\n---\nservice: {name: b}\n",
                        "service.yaml:3:1: expected one YAML document, "
                        "found another");
}

static void config_duplicate_key_is_refused(void **state)
{
    (void)state;
    assert_config_error("engine:\n"
                        "  url: embedded:./a\n"
                        "  sync: off\n"
                        "  url: embedded:./b\n",
                        "service.yaml:4:3: engine.url: duplicate key (first "
                        "at 2:3)");
}

static void config_unknown_key_suggests_nearest(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    prefetc: 10\n"
                                      "    handler: {kind: record}\n",
                        "service.yaml:6:5: consumers[0].prefetc: unknown key "
                        "(did you mean \"prefetch\"?)");
}

static void config_unknown_key_without_near_match(void **state)
{
    (void)state;
    assert_config_error("engine:\n  colour: blue\n",
                        "service.yaml:2:3: engine.colour: unknown key");
    assert_config_error("frontdoor: {port: 8080}\n",
                        "service.yaml:1:1: frontdoor: unknown key");
}

static void config_missing_required_key_is_refused(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    handler: {kind: record}\n",
                        "service.yaml:4:5: consumers[0].group: missing "
                        "required key");
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n",
                        "service.yaml:4:5: consumers[0].handler: missing "
                        "required key");
}

/* ---- errors: values ---------------------------------------------------- */

static void config_wrong_type_cites_value_position(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    prefetch: ten\n"
                                      "    handler: {kind: record}\n",
                        "service.yaml:6:15: consumers[0].prefetch: expected "
                        "an integer in 1..100000, got \"ten\"");
    assert_config_error("engine: [embedded:./data]\n",
                        "service.yaml:1:9: engine: expected a mapping, got "
                        "a list");
    assert_config_error("channels: {name: a}\n",
                        "service.yaml:1:11: channels: expected a list of "
                        "mappings, got a mapping");
    assert_config_error("channels: [orders]\n",
                        "service.yaml:1:12: channels[0]: expected a "
                        "mapping, got \"orders\"");
    assert_config_error("service:\n  name:\n",
                        "service.yaml:2:8: service.name: expected a name of "
                        "1 to 200 letters, digits, '.', '_' and '-', got "
                        "nothing");
    assert_config_error("consumers:\n"
                        "  - idempotency: maybe\n",
                        "service.yaml:2:18: consumers[0].idempotency: "
                        "expected true or false, got \"maybe\"");
    assert_config_error("producer: {rate: fast}\n",
                        "service.yaml:1:18: producer.rate: expected a "
                        "number in 0..1000000000, got \"fast\"");
}

static void config_out_of_range_cites_value_position(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    prefetch: 100001\n"
                                      "    handler: {kind: record}\n",
                        "service.yaml:6:15: consumers[0].prefetch: expected "
                        "an integer in 1..100000, got \"100001\"");
    assert_config_error("producer:\n  max_in_flight: 0\n",
                        "service.yaml:2:18: producer.max_in_flight: expected "
                        "an integer in 1..1000000, got \"0\"");
    assert_config_error("channels:\n"
                        "  - name: a\n"
                        "    max_length: 99999999999999999999\n",
                        "service.yaml:3:17: channels[0].max_length: expected "
                        "a non-negative integer, got "
                        "\"99999999999999999999\"");
    assert_config_error("engine:\n  max_event_size: 1GiB\n",
                        "service.yaml:2:19: engine.max_event_size: expected "
                        "a size in 1KiB..1MiB, got \"1GiB\"");
    assert_config_error("producer: {rate: -1}\n",
                        "service.yaml:1:18: producer.rate: expected a "
                        "number in 0..1000000000, got \"-1\"");
}

static void config_bad_duration_cites_value_position(void **state)
{
    (void)state;
    assert_config_error("drain_timeout: 5 parsecs\n",
                        "service.yaml:1:16: drain_timeout: expected a "
                        "duration such as 250ms, 5s, 1m or 2h, got \"5 "
                        "parsecs\"");
    assert_config_error("producer:\n"
                        "  breaker:\n"
                        "    open: 2d\n",
                        "service.yaml:3:11: producer.breaker.open: expected "
                        "a duration such as 250ms, 5s, 1m or 2h, got \"2d\"");
    assert_config_error("drain_timeout: 2h\n",
                        "service.yaml:1:16: drain_timeout: expected a "
                        "duration in 0..1h, got \"2h\"");
}

static void config_bad_size_cites_value_position(void **state)
{
    (void)state;
    assert_config_error("engine:\n  max_event_size: 1MB\n",
                        "service.yaml:2:19: engine.max_event_size: expected "
                        "a size such as 1048576, 512KiB or 1MiB, got "
                        "\"1MB\"");
}

static void config_bad_enum_suggests_nearest(void **state)
{
    (void)state;
    assert_config_error("engine:\n  sync: ful\n",
                        "service.yaml:2:9: engine.sync: expected one of "
                        "full, normal, off, got \"ful\" (did you mean "
                        "\"full\"?)");
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    handler: {kind: grpc}\n",
                        "service.yaml:6:21: consumers[0].handler.kind: "
                        "expected one of plugin, forward, append, record, "
                        "fail, http, got \"grpc\"");
}

static void config_bad_name_is_refused(void **state)
{
    (void)state;
    assert_config_error("channels:\n  - name: orders created\n",
                        "service.yaml:2:11: channels[0].name: expected a "
                        "name of 1 to 200 letters, digits, '.', '_' and "
                        "'-', got \"orders created\"");
}

static void config_empty_backoff_is_refused(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    backoff: []\n"
                                      "    handler: {kind: record}\n",
                        "service.yaml:6:14: consumers[0].backoff: expected "
                        "at least one duration, got an empty list");
}

static void config_zero_backoff_step_is_refused(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    backoff: [1s, 0s, 5s]\n"
                                      "    handler: {kind: record}\n",
                        "service.yaml:6:19: consumers[0].backoff[1]: "
                        "expected a duration in 1ms..24h, got \"0s\"");
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    backoff: 5s\n",
                        "service.yaml:5:14: consumers[0].backoff: expected a "
                        "list of durations such as [1s, 5s, 10s], got "
                        "\"5s\"");
}

static void config_unknown_engine_scheme_is_refused(void **state)
{
    (void)state;
    assert_config_error("engine:\n  url: redis://localhost\n",
                        "service.yaml:2:8: engine.url: unknown engine "
                        "\"redis://localhost\" (expected embedded:DIR, "
                        "memory://, amqp://, amqps://, nats:// or tls://)");
    /* No Kafka engine exists: the scheme must not pass the check. */
    assert_config_error("engine:\n  url: kafka://127.0.0.1:9092\n",
                        "service.yaml:2:8: engine.url: unknown engine "
                        "\"kafka://127.0.0.1:9092\" (expected embedded:DIR, "
                        "memory://, amqp://, amqps://, nats:// or tls://)");
    assert_config_error("engine:\n  url: embedded:?sync=off\n",
                        "service.yaml:2:8: engine.url: \"embedded:?sync=off\" "
                        "names no directory (expected embedded:DIR or "
                        "memory://)");
}

/* Checks made after loading (engine URL, listen addresses, plugins) cite
 * the value's position and key like the loader's own errors. */
static void config_keeps_value_positions_for_later_checks(void **state)
{
    (void)state;
    sl_config *cfg = load_ok("engine:\n"
                             "  url: memory://\n"
                             "gateway:\n"
                             "  listen: 127.0.0.1:80800\n");
    sl_config_pos at = sl_config_pos_of(cfg, &cfg->gateway_listen);
    assert_int_equal(at.line, 4);
    assert_int_equal(at.column, 11);
    sl_diag diag = {0};
    assert_int_equal(sl_config_fail(cfg, &cfg->gateway_listen,
                                    (sl_config_pos){0, 0}, "gateway.listen",
                                    SL_CONFIG, &diag, "bad port '%s'", "80800"),
                     SL_CONFIG);
    assert_string_equal(diag.msg,
                        "service.yaml:4:11: gateway.listen: bad port '80800'");
    /* A default has no position: the message names the file and key. */
    assert_int_equal(sl_config_pos_of(cfg, &cfg->admin_listen).line, 0);
    sl_config_fail(cfg, &cfg->admin_listen, (sl_config_pos){0, 0},
                   "admin.listen", SL_IO, &diag, "in use");
    assert_string_equal(diag.msg, "service.yaml: admin.listen: in use");
    sl_config_destroy(cfg);
}

/* "memory://" is the in-memory engine's spelling that YAML takes without
 * quotes ("embedded::memory:" unquoted is a YAML syntax error). */
static void config_memory_url_loads_unquoted(void **state)
{
    (void)state;
    sl_config *cfg = load_ok("engine:\n  url: memory://\n");
    assert_string_equal(cfg->engine_url, "memory://");
    assert_string_equal(cfg->inbox_path, ":memory:");
    assert_string_equal(cfg->gateway_state, ":memory:");
    sl_config_destroy(cfg);
    /* The old spelling unquoted is a YAML error, which says what to do. */
    assert_config_error("engine:\n  url: embedded::memory:\n",
                        "service.yaml:2:24: syntax error: mapping values are "
                        "not allowed in this context (an unquoted "
                        "embedded::memory: reads as a mapping: write "
                        "memory://, or quote it)");
    cfg = load_ok("engine:\n  url: \"embedded::memory:\"\n");
    assert_string_equal(cfg->inbox_path, ":memory:");
    sl_config_destroy(cfg);
}

/* ---- errors: relations between options --------------------------------- */

static void config_undeclared_channel_cites_consumer_channel(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.craeted\n"
                                      "    group: billing\n"
                                      "    handler: {kind: record}\n",
                        "service.yaml:4:14: consumers[0].channel: channel "
                        "\"orders.craeted\" is not declared in channels (did "
                        "you mean \"orders.created\"?)");
    assert_config_error("consumers:\n"
                        "  - channel: payments\n"
                        "    group: billing\n"
                        "    handler: {kind: record}\n",
                        "service.yaml:2:14: consumers[0].channel: channel "
                        "\"payments\" is not declared in channels");
}

static void config_duplicate_channel_is_refused(void **state)
{
    (void)state;
    assert_config_error("channels:\n"
                        "  - name: a\n"
                        "  - name: b\n"
                        "  - name: a\n",
                        "service.yaml:4:11: channels[2].name: duplicate "
                        "channel \"a\" (first declared at 2:11)");
}

static void config_duplicate_group_is_refused(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    handler: {kind: record}\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    handler: {kind: fail}\n",
                        "service.yaml:8:12: consumers[1].group: duplicate "
                        "group \"billing\" on channel \"orders.created\" "
                        "(first at consumers[0], 5:12)");
}

static void config_same_group_on_two_channels_is_allowed(void **state)
{
    (void)state;
    sl_config *cfg = load_ok("channels: [{name: a}, {name: b}]\n"
                             "consumers:\n"
                             "  - {channel: a, group: g, handler: {kind: "
                             "record}}\n"
                             "  - {channel: b, group: g, handler: {kind: "
                             "record}}\n");
    assert_int_equal(cfg->nconsumers, 2);
    sl_config_destroy(cfg);
}

static void config_concurrency_above_prefetch_is_refused(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    prefetch: 10\n"
                                      "    concurrency: 20\n"
                                      "    handler: {kind: record}\n",
                        "service.yaml:7:18: consumers[0].concurrency: 20 "
                        "exceeds prefetch 10 (concurrency must be <= "
                        "prefetch)");
}

static void config_plugin_handler_needs_path(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    handler:\n"
                                      "      kind: plugin\n"
                                      "      symbol: handle\n",
                        "service.yaml:7:7: consumers[0].handler.path: "
                        "missing required key (kind plugin needs it)");
}

static void config_forward_handler_needs_to(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    handler: {kind: forward}\n",
                        "service.yaml:6:14: consumers[0].handler.to: "
                        "missing required key (kind forward needs it)");
}

static void config_append_handler_needs_file(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    handler:\n"
                                      "      kind: append\n",
                        "service.yaml:7:7: consumers[0].handler.file: "
                        "missing required key (kind append needs it)");
}

static void config_forward_to_undeclared_channel_is_refused(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    handler:\n"
                                      "      kind: forward\n"
                                      "      to: orders.shipped\n",
                        "service.yaml:8:11: consumers[0].handler.to: channel "
                        "\"orders.shipped\" is not declared in channels");
}

static void config_forward_to_own_channel_is_refused(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    handler:\n"
                                      "      kind: forward\n"
                                      "      to: orders.created\n",
                        "service.yaml:8:11: consumers[0].handler.to: "
                        "forwarding to the consumed channel "
                        "\"orders.created\" would loop forever");
}

static void config_handler_key_of_other_kind_is_refused(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    handler:\n"
                                      "      kind: record\n"
                                      "      path: ./libh.so\n",
                        "service.yaml:8:13: consumers[0].handler.path: not "
                        "used by kind record (only by kind plugin)");
}

/* ---- files -------------------------------------------------------------- */

static void config_load_file_cites_the_file_name(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-config-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "engine:\n  sync: sometimes\n";
    assert_int_equal(write(fd, text, sizeof text - 1), sizeof text - 1);
    close(fd);

    sl_diag diag = {0};
    sl_config *cfg = NULL;
    assert_int_equal(sl_config_load_file(path, &cfg, &diag), SL_CONFIG);
    char want[256];
    snprintf(want, sizeof want,
             "%s:2:9: engine.sync: expected one of full, normal, off, got "
             "\"sometimes\"",
             path);
    assert_string_equal(diag.msg, want);
    assert_null(cfg);

    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, full_yaml, sizeof full_yaml - 1),
                     sizeof full_yaml - 1);
    close(fd);
    assert_int_equal(sl_config_load_file(path, &cfg, &diag), SL_OK);
    assert_string_equal(cfg->path, path);
    assert_int_equal(cfg->nconsumers, 3);
    sl_config_destroy(cfg);
    unlink(path);
}

static void config_load_file_missing_file_is_io_error(void **state)
{
    (void)state;
    sl_diag diag = {0};
    sl_config *cfg = NULL;
    assert_int_equal(
        sl_config_load_file("/nonexistent/sluice.yaml", &cfg, &diag), SL_IO);
    assert_string_equal(diag.msg, "/nonexistent/sluice.yaml: cannot open: "
                                  "No such file or directory");
    assert_null(cfg);
}

static void config_null_arguments_are_invalid(void **state)
{
    (void)state;
    sl_config *cfg = NULL;
    assert_int_equal(sl_config_load_string("a: 1", 4, "x", NULL, NULL),
                     SL_INVALID);
    assert_int_equal(sl_config_load_string(NULL, 4, "x", &cfg, NULL),
                     SL_INVALID);
    assert_int_equal(sl_config_load_file(NULL, &cfg, NULL), SL_INVALID);
    assert_null(cfg);
    sl_config_destroy(NULL);
}

/* ---- memory ------------------------------------------------------------- */

static long allocs_left;

static void *failing_malloc(size_t size)
{
    return allocs_left-- > 0 ? malloc(size) : NULL;
}

static void *failing_realloc(void *ptr, size_t size)
{
    return allocs_left-- > 0 ? realloc(ptr, size) : NULL;
}

static void config_every_allocation_failure_is_reported(void **state)
{
    (void)state;
    const sl_allocator failing = {failing_malloc, failing_realloc, free};
    sl_status st = SL_NOMEM;
    long n = 0;
    /* Fail the first, second, ... allocation until none fails; ASan checks
     * that no path leaks. */
    for (; st != SL_OK && n < 10000; n++) {
        allocs_left = n;
        sl_alloc_set(&failing);
        sl_diag diag = {0};
        sl_config *cfg = NULL;
        st = sl_config_load_string(full_yaml, sizeof full_yaml - 1,
                                   "service.yaml", &cfg, &diag);
        sl_alloc_set(NULL);
        if (st == SL_OK) {
            sl_config_destroy(cfg);
        } else {
            assert_int_equal(st, SL_NOMEM);
            assert_string_equal(diag.msg, "service.yaml: out of memory");
            assert_null(cfg);
        }
    }
    assert_int_equal(st, SL_OK);
    assert_true(n > 20); /* the loop did exercise many failure points */
}

/* ---- reference ---------------------------------------------------------- */

static char *reference_text(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    sl_config_write_reference(f);
    assert_int_equal(fclose(f), 0);
    return text;
}

static void config_reference_mentions_every_key(void **state)
{
    (void)state;
    static const char *const sections[] = {
        "### Top level",          "### `service`",
        "### `engine`",           "### `producer`",
        "### `producer.breaker`", "### `channels[]`",
        "### `consumers[]`",      "### `consumers[].handler`",
    };
    static const char *const keys[] = {
        "service",
        "engine",
        "producer",
        "channels",
        "consumers",
        "drain_timeout",
        "inbox",
        "name",
        "url",
        "sync",
        "dedup_window",
        "max_event_size",
        "max_in_flight",
        "publish_timeout",
        "rate",
        "burst",
        "breaker",
        "failure_threshold",
        "open",
        "max_length",
        "channel",
        "group",
        "prefetch",
        "concurrency",
        "handler_timeout",
        "max_attempts",
        "backoff",
        "idempotency",
        "idempotency_ttl",
        "handler",
        "kind",
        "path",
        "symbol",
        "init",
        "config",
        "to",
        "file",
    };
    char *text = reference_text();
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        if (strstr(text, sections[i]) == NULL) {
            fail_msg("reference lacks section %s", sections[i]);
        }
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char row[64];
        snprintf(row, sizeof row, "\n| `%s` |", keys[i]);
        if (strstr(text, row) == NULL) {
            fail_msg("reference lacks a row for key %s", keys[i]);
        }
    }
    assert_non_null(strstr(text, "| `prefetch` | integer, 1..100000 | `10` |"));
    assert_non_null(strstr(text, "| `backoff` | list of 1 to 100 durations, "
                                 "each 1ms..24h | `[1s, 5s, 10s]` |"));
    free(text);
}

/* Other tools (the CLI) ask the configuration what comes close to a
 * channel or group a user typed. */
static void config_suggests_the_closest_channel_and_group(void **state)
{
    (void)state;
    sl_config *cfg = load_ok(full_yaml);
    assert_string_equal(sl_config_suggest_channel(cfg, "orders.creatd"),
                        "orders.created");
    assert_null(sl_config_suggest_channel(cfg, "orders.created"));
    assert_null(sl_config_suggest_channel(cfg, "payments"));
    /* Only the groups of the channel asked about count. */
    assert_string_equal(sl_config_suggest_group(cfg, "orders.audit", "archiv"),
                        "archive");
    assert_null(sl_config_suggest_group(cfg, "orders.created", "archiv"));
    assert_null(sl_config_suggest_group(cfg, "orders.audit", "archive"));
    assert_null(sl_config_suggest_channel(NULL, "x"));
    assert_null(sl_config_suggest_group(cfg, NULL, "x"));
    sl_config_destroy(cfg);
}

/* The path of a file in the source tree, found from this file's path. */
static void source_path(char *buf, size_t size, const char *rel)
{
    const char *me = __FILE__;
    const char *tail = strstr(me, "tests/unit/host/config_test.c");
    assert_non_null(tail);
    snprintf(buf, size, "%.*s%s", (int)(tail - me), me, rel);
}

/* Read a whole (small) file into a static buffer. */
static char *read_source(const char *rel)
{
    static char text[256 * 1024];
    char path[1024];
    source_path(path, sizeof path, rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fail_msg("cannot open %s", path);
    }
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    return text;
}

/* Every ```yaml block of docs/configuration.md is a valid file. */
static void config_docs_examples_load(void **state)
{
    (void)state;
    static const char open_fence[] = "```yaml\n";
    char *doc = read_source("docs/configuration.md");
    int examples = 0;
    for (char *p = strstr(doc, open_fence); p != NULL;
         p = strstr(p, open_fence)) {
        p += strlen(open_fence);
        char *close_fence = strstr(p, "```");
        assert_non_null(close_fence);
        *close_fence = '\0';
        sl_config_destroy(load_ok(p));
        p = close_fence + 1;
        examples++;
    }
    assert_true(examples >= 2);
}

/* docs/configuration.md embeds the reference; it must be the generated
 * text, so that the page never documents an option that does not exist. */
static void config_reference_in_docs_is_current(void **state)
{
    (void)state;
    static const char begin[] = "<!-- BEGIN GENERATED REFERENCE -->\n";
    static const char end[] = "<!-- END GENERATED REFERENCE -->";
    char *doc = read_source("docs/configuration.md");
    char *from = strstr(doc, begin);
    char *to = strstr(doc, end);
    assert_non_null(from);
    assert_non_null(to);
    from += strlen(begin);
    *to = '\0';
    char *text = reference_text();
    bool current = strcmp(from, text) == 0;
    free(text);
    if (!current) {
        fail_msg("docs/configuration.md is out of date: replace the text "
                 "between the markers with the output of "
                 "sl_config_write_reference()");
    }
}

static void config_gateway_routes_carry_their_validation_rules(void **state)
{
    (void)state;
    sl_config *cfg = load_ok(
        BASE_CHANNELS
        "gateway:\n"
        "  listen: 127.0.0.1:18080\n"
        "  client_rate: 50\n"
        "  routes:\n"
        "    - path: /orders\n"
        "      channel: orders.created\n"
        "      type: order.created\n"
        "      fields:\n"
        "        - {name: qty, type: integer, required: true, minimum: 1}\n"
        "        - {name: delta, type: number, minimum: -10.5, maximum: 3}\n"
        "        - {name: currency, type: string, enum: [EUR, USD]}\n"
        "admin:\n"
        "  listen: 127.0.0.1:19090\n");
    assert_string_equal(cfg->gateway_listen, "127.0.0.1:18080");
    assert_true(cfg->gateway_client_burst == 100.0);
    assert_int_equal(cfg->nroutes, 1);
    const sl_config_route *r = &cfg->routes[0];
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->source, "/gateway");
    assert_int_equal(r->nfields, 3);
    assert_true(r->fields[0].required && r->fields[0].has_minimum);
    assert_false(r->fields[0].has_maximum);
    assert_true(r->fields[0].minimum == 1.0);
    assert_true(r->fields[1].minimum == -10.5 && r->fields[1].maximum == 3.0);
    assert_int_equal(r->fields[2].nenum, 2);
    assert_string_equal(r->fields[2].enum_values[1], "USD");
    assert_string_equal(cfg->admin_listen, "127.0.0.1:19090");
    assert_true(cfg->admin_enabled);
    assert_string_equal(cfg->gateway_state, "./data/gateway.db");
    sl_config_destroy(cfg);
}

static void config_route_to_undeclared_channel_is_refused(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS
                        "gateway:\n"
                        "  routes:\n"
                        "    - {path: /orders, channel: orders.craeted, "
                        "type: t}\n",
                        "service.yaml:5:32: gateway.routes[0].channel: "
                        "channel \"orders.craeted\" is not declared in "
                        "channels (did you mean \"orders.created\"?)");
}

static void config_duplicate_route_is_refused(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS
                        "gateway:\n"
                        "  routes:\n"
                        "    - {path: /o, channel: orders.created, type: t}\n"
                        "    - {path: /o, channel: orders.created, type: u}\n",
                        "service.yaml:6:14: gateway.routes[1].path: "
                        "duplicate route POST /o (first at "
                        "gateway.routes[0])");
}

static void config_http_handler_needs_a_url(void **state)
{
    (void)state;
    assert_config_error(BASE_CHANNELS "consumers:\n"
                                      "  - channel: orders.created\n"
                                      "    group: billing\n"
                                      "    handler: {kind: http}\n",
                        "service.yaml:6:14: consumers[0].handler.url: "
                        "missing required key (kind http needs it)");
    sl_config *cfg =
        load_ok(BASE_CHANNELS "consumers:\n"
                              "  - channel: orders.created\n"
                              "    group: billing\n"
                              "    handler: {kind: http, url: "
                              "\"http://127.0.0.1:1/x\", timeout: 2s}\n");
    assert_int_equal(cfg->consumers[0].handler.timeout_ms, 2000);
    assert_int_equal(cfg->consumers[0].handler.max_concurrency, 16);
    assert_int_equal(cfg->consumers[0].handler.breaker_failures, 5);
    sl_config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_full_file_sets_every_field),
        cmocka_unit_test(config_omitted_keys_take_defaults),
        cmocka_unit_test(config_channel_max_bytes_is_read),
        cmocka_unit_test(config_empty_mapping_is_a_valid_service),
        cmocka_unit_test(config_empty_sections_take_defaults),
        cmocka_unit_test(config_concurrency_defaults_to_prefetch),
        cmocka_unit_test(config_burst_defaults_to_twice_rate),
        cmocka_unit_test(config_inbox_follows_embedded_directory),
        cmocka_unit_test(config_inbox_in_memory_for_memory_engine),
        cmocka_unit_test(config_inbox_in_working_directory_for_brokers),
        cmocka_unit_test(config_inbox_nats_kv_with_nats_engine),
        cmocka_unit_test(config_inbox_nats_kv_needs_nats_engine),
        cmocka_unit_test(config_inbox_nats_kv_bucket_name_is_checked),
        cmocka_unit_test(config_record_handler_refused_with_nats_kv_inbox),
        cmocka_unit_test(config_accepts_every_duration_and_size_form),
        cmocka_unit_test(config_empty_file_is_refused),
        cmocka_unit_test(config_top_level_must_be_a_mapping),
        cmocka_unit_test(config_syntax_error_cites_problem_position),
        cmocka_unit_test(config_second_document_is_refused),
        cmocka_unit_test(config_duplicate_key_is_refused),
        cmocka_unit_test(config_unknown_key_suggests_nearest),
        cmocka_unit_test(config_unknown_key_without_near_match),
        cmocka_unit_test(config_missing_required_key_is_refused),
        cmocka_unit_test(config_wrong_type_cites_value_position),
        cmocka_unit_test(config_out_of_range_cites_value_position),
        cmocka_unit_test(config_bad_duration_cites_value_position),
        cmocka_unit_test(config_bad_size_cites_value_position),
        cmocka_unit_test(config_bad_enum_suggests_nearest),
        cmocka_unit_test(config_gateway_routes_carry_their_validation_rules),
        cmocka_unit_test(config_route_to_undeclared_channel_is_refused),
        cmocka_unit_test(config_duplicate_route_is_refused),
        cmocka_unit_test(config_http_handler_needs_a_url),
        cmocka_unit_test(config_bad_name_is_refused),
        cmocka_unit_test(config_empty_backoff_is_refused),
        cmocka_unit_test(config_zero_backoff_step_is_refused),
        cmocka_unit_test(config_unknown_engine_scheme_is_refused),
        cmocka_unit_test(config_keeps_value_positions_for_later_checks),
        cmocka_unit_test(config_memory_url_loads_unquoted),
        cmocka_unit_test(config_undeclared_channel_cites_consumer_channel),
        cmocka_unit_test(config_duplicate_channel_is_refused),
        cmocka_unit_test(config_duplicate_group_is_refused),
        cmocka_unit_test(config_same_group_on_two_channels_is_allowed),
        cmocka_unit_test(config_concurrency_above_prefetch_is_refused),
        cmocka_unit_test(config_plugin_handler_needs_path),
        cmocka_unit_test(config_forward_handler_needs_to),
        cmocka_unit_test(config_append_handler_needs_file),
        cmocka_unit_test(config_forward_to_undeclared_channel_is_refused),
        cmocka_unit_test(config_forward_to_own_channel_is_refused),
        cmocka_unit_test(config_handler_key_of_other_kind_is_refused),
        cmocka_unit_test(config_load_file_cites_the_file_name),
        cmocka_unit_test(config_load_file_missing_file_is_io_error),
        cmocka_unit_test(config_null_arguments_are_invalid),
        cmocka_unit_test(config_every_allocation_failure_is_reported),
        cmocka_unit_test(config_reference_mentions_every_key),
        cmocka_unit_test(config_reference_in_docs_is_current),
        cmocka_unit_test(config_docs_examples_load),
        cmocka_unit_test(config_suggests_the_closest_channel_and_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
