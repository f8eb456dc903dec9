/* The configuration's options: one declarative table per section of the
 * file. A row gives the key, the type, the field it fills, the default
 * (written as in the file), the bounds and one line of documentation; the
 * loader (config_load.c), the checks (config_check.c) and the reference
 * (config_reference.c) all read these tables, so parsing, validation and
 * documentation cannot drift apart.
 *
 * Also here: how an option's type and range are written, for the loader's
 * messages and the reference alike.
 */
#include "host/config_int.h"

#include <inttypes.h>

/* The walker writes enum options as an int. */
_Static_assert(sizeof(sl_sync_mode) == sizeof(int),
               "enum options are stored as int");

/* ---- option tables ------------------------------------------------------- */

static const opt_choice sync_choices[] = {
    {"full", SL_SYNC_FULL},
    {"normal", SL_SYNC_NORMAL},
    {"off", SL_SYNC_OFF},
    {NULL, 0},
};

static const opt_choice kind_choices[] = {
    {"plugin", 0}, {"forward", 0}, {"append", 0}, {"record", 0},
    {"fail", 0},   {"http", 0},    {NULL, 0},
};

static const opt_desc handler_opts[] = {
    {.key = "kind",
     .type = OPT_STRING,
     .flags = OPT_REQUIRED,
     .offset = offsetof(sl_config_handler, kind),
     .choices = kind_choices,
     .doc = "What handles each delivery: `plugin` (a C function in a shared "
            "object), `forward` (publish to another channel), `append` "
            "(write the event id to a file), `record` (record the id in the "
            "idempotency inbox's transaction: exactly-once effects), `fail` "
            "(retry every delivery; for tests), `http` (POST each event to "
            "a URL)."},
    {.key = "path",
     .type = OPT_STRING,
     .flags = OPT_KIND_REQUIRED,
     .kind = "plugin",
     .offset = offsetof(sl_config_handler, path),
     .doc = "Shared object to load (dlopen)."},
    {.key = "symbol",
     .type = OPT_STRING,
     .kind = "plugin",
     .offset = offsetof(sl_config_handler, symbol),
     .def = "sluice_handle",
     .doc = "Handler function in the shared object."},
    {.key = "init",
     .type = OPT_STRING,
     .kind = "plugin",
     .offset = offsetof(sl_config_handler, init),
     .def_doc = "`sluice_handler_init`, if the object defines it",
     .doc = "Function called once with `config` before the first delivery."},
    {.key = "config",
     .type = OPT_STRING,
     .kind = "plugin",
     .offset = offsetof(sl_config_handler, config),
     .def_doc = "none",
     .doc = "String handed to the init function."},
    {.key = "to",
     .type = OPT_STRING,
     .flags = OPT_KIND_REQUIRED | OPT_NAME,
     .kind = "forward",
     .offset = offsetof(sl_config_handler, to),
     .doc = "Channel that receives each event; must be declared in "
            "`channels` and differ from the consumed channel."},
    {.key = "file",
     .type = OPT_STRING,
     .flags = OPT_KIND_REQUIRED,
     .kind = "append",
     .offset = offsetof(sl_config_handler, file),
     .doc = "File that receives one event id per line."},
    {.key = "url",
     .type = OPT_STRING,
     .flags = OPT_KIND_REQUIRED,
     .kind = "http",
     .offset = offsetof(sl_config_handler, url),
     .doc = "URL each event is POSTed to, in CloudEvents binary mode."},
    {.key = "timeout",
     .type = OPT_DURATION,
     .kind = "http",
     .offset = offsetof(sl_config_handler, timeout_ms),
     .def = "30s",
     .min = 1,
     .max = 24 * HOUR_MS,
     .doc = "Request timeout; never beyond the event's remaining deadline."},
    {.key = "max_concurrency",
     .type = OPT_UINT32,
     .kind = "http",
     .offset = offsetof(sl_config_handler, max_concurrency),
     .def = "16",
     .min = 1,
     .max = 10000,
     .doc = "Requests in flight to the target at most (the upper bound when "
            "`adaptive`)."},
    {.key = "adaptive",
     .type = OPT_BOOL,
     .kind = "http",
     .offset = offsetof(sl_config_handler, adaptive),
     .def = "false",
     .doc = "Adapt the concurrency limit to the target's latency."},
    {.key = "breaker_failures",
     .type = OPT_UINT32,
     .kind = "http",
     .offset = offsetof(sl_config_handler, breaker_failures),
     .def = "5",
     .min = 1,
     .max = 1000000,
     .doc = "Consecutive failures that open the target's circuit breaker."},
    {.key = "breaker_open",
     .type = OPT_DURATION,
     .kind = "http",
     .offset = offsetof(sl_config_handler, breaker_open_ms),
     .def = "30s",
     .min = 1,
     .max = 24 * HOUR_MS,
     .doc = "How long the breaker stays open before a probe."},
    {.key = "reply_to",
     .type = OPT_STRING,
     .flags = OPT_NAME,
     .kind = "http",
     .offset = offsetof(sl_config_handler, reply_to),
     .def_doc = "none",
     .doc = "Channel that receives each 2xx answer's body as a child event "
            "(request-reply); must be declared."},
    {.key = "reply_type",
     .type = OPT_STRING,
     .kind = "http",
     .offset = offsetof(sl_config_handler, reply_type),
     .def = "http.response",
     .doc = "CloudEvents type of the reply events."},
};

const opt_table sl__config_handler_table = {
    .path = "consumers[].handler",
    .doc = "The code that processes each delivery of a consumer group. "
           "`kind` selects which other keys apply; a key of another kind "
           "is an error.",
    .opts = handler_opts,
    .nopts = ARRAY_LEN(handler_opts),
    .pos_offset = offsetof(sl_config_handler, pos),
};

static const opt_choice status_choices[] = {
    {"pending", 0}, {"processing", 0}, {"completed", 0},
    {"failed", 0},  {NULL, 0},
};

static const opt_desc status_opts[] = {
    {.key = "start",
     .type = OPT_STRING,
     .offset = offsetof(sl_config_consumer, status_start),
     .choices = status_choices,
     .doc = "Status reported when a handler starts on the event."},
    {.key = "ack",
     .type = OPT_STRING,
     .offset = offsetof(sl_config_consumer, status_ack),
     .choices = status_choices,
     .doc = "Status reported after the handler's ACK."},
    {.key = "dead_letter",
     .type = OPT_STRING,
     .offset = offsetof(sl_config_consumer, status_dead),
     .choices = status_choices,
     .doc = "Status reported when the event is dead-lettered (the detail "
            "carries the reason and error)."},
};

static const opt_table status_table = {
    .path = "consumers[].status",
    .doc = "What a group reports to the gateway's status projection "
           "(`GET /status/{id}`) for the request behind each event: the "
           "event's `correlationid`, or its id.",
    .opts = status_opts,
    .nopts = ARRAY_LEN(status_opts),
    .pos_offset = NO_POS,
};

static const opt_desc consumer_opts[] = {
    {.key = "channel",
     .type = OPT_STRING,
     .flags = OPT_REQUIRED | OPT_NAME,
     .offset = offsetof(sl_config_consumer, channel),
     .doc = "Channel to consume; must be declared in `channels`."},
    {.key = "group",
     .type = OPT_STRING,
     .flags = OPT_REQUIRED | OPT_NAME,
     .offset = offsetof(sl_config_consumer, group),
     .doc = "Durable group name; unique per channel. Every group gets every "
            "event; inside a group each event goes to one consumer."},
    {.key = "prefetch",
     .type = OPT_UINT32,
     .offset = offsetof(sl_config_consumer, prefetch),
     .def = "10",
     .min = 1,
     .max = 100000,
     .doc = "Unacknowledged deliveries held at most by this process."},
    {.key = "concurrency",
     .type = OPT_UINT32,
     .offset = offsetof(sl_config_consumer, concurrency),
     .def_doc = "`prefetch`",
     .min = 1,
     .max = 100000,
     .doc = "Handlers running at once; at most `prefetch`."},
    {.key = "handler_timeout",
     .type = OPT_DURATION,
     .offset = offsetof(sl_config_consumer, handler_timeout_ms),
     .def = "30s",
     .min = 1,
     .max = 24 * HOUR_MS,
     .doc = "A handler still running after this counts as RETRY."},
    {.key = "max_attempts",
     .type = OPT_UINT32,
     .offset = offsetof(sl_config_consumer, max_attempts),
     .def = "5",
     .min = 1,
     .max = 1000,
     .doc = "Deliveries of one event before it is dead-lettered "
            "(`<channel>.<group>.dlq`, reason `max_attempts`)."},
    {.key = "backoff",
     .type = OPT_DURATION_LIST,
     .offset = offsetof(sl_config_consumer, backoff_ms),
     .count_offset = offsetof(sl_config_consumer, backoff_len),
     .def = "1s, 5s, 10s",
     .min = 1,
     .max = 24 * HOUR_MS,
     .max_items = 100,
     .doc = "Delay before attempt n+1 is `backoff[n-1]`; the last value "
            "repeats. Waiting retries hold no prefetch slot."},
    {.key = "idempotency",
     .type = OPT_BOOL,
     .offset = offsetof(sl_config_consumer, idempotency),
     .def = "false",
     .doc = "Record each acknowledged event id in the inbox and skip ids "
            "already recorded."},
    {.key = "idempotency_ttl",
     .type = OPT_DURATION,
     .offset = offsetof(sl_config_consumer, idempotency_ttl_ms),
     .def = "24h",
     .min = 1000,
     .max = 8760 * HOUR_MS,
     .doc = "How long an inbox record is kept."},
    {.key = "handler",
     .type = OPT_SECTION,
     .flags = OPT_REQUIRED,
     .offset = offsetof(sl_config_consumer, handler),
     .sub = &sl__config_handler_table,
     .doc = "The group's handler."},
    {.key = "status",
     .type = OPT_SECTION,
     .sub = &status_table,
     .doc = "Status projection updates."},
};

static const opt_table consumer_table = {
    .path = "consumers[]",
    .doc = "One entry per consumer group this service runs.",
    .opts = consumer_opts,
    .nopts = ARRAY_LEN(consumer_opts),
    .elem_size = sizeof(sl_config_consumer),
    .pos_offset = offsetof(sl_config_consumer, pos),
};

static const opt_desc channel_opts[] = {
    {.key = "name",
     .type = OPT_STRING,
     .flags = OPT_REQUIRED | OPT_NAME,
     .offset = offsetof(sl_config_channel, name),
     .doc = "Channel name, unique; letters, digits, `.`, `_` and `-`."},
    {.key = "max_length",
     .type = OPT_UINT64,
     .offset = offsetof(sl_config_channel, max_length),
     .def = "0",
     .max = UINT64_MAX,
     .doc = "Events held per group (ready, delayed and in flight) before "
            "publishing fails with FULL; 0 = unbounded."},
    {.key = "max_bytes",
     .type = OPT_UINT64,
     .offset = offsetof(sl_config_channel, max_bytes),
     .def = "0",
     .max = UINT64_MAX,
     .doc = "Bytes of events held per group (ready, delayed and in "
            "flight) beyond which publishing fails with FULL, as the "
            "engine measures an event (docs/engines); 0 = unbounded."},
};

static const opt_table channel_table = {
    .path = "channels[]",
    .doc = "Channels this service declares. Consumers and `forward` "
           "handlers may only name declared channels.",
    .opts = channel_opts,
    .nopts = ARRAY_LEN(channel_opts),
    .elem_size = sizeof(sl_config_channel),
    .pos_offset = offsetof(sl_config_channel, pos),
};

static const opt_desc breaker_opts[] = {
    {.key = "failure_threshold",
     .type = OPT_UINT32,
     .offset = offsetof(sl_config, breaker_failures),
     .def = "0",
     .max = 1000000,
     .doc = "Consecutive failed publishes that open the breaker; 0 = no "
            "breaker."},
    {.key = "open",
     .type = OPT_DURATION,
     .offset = offsetof(sl_config, breaker_open_ms),
     .def = "30s",
     .min = 1,
     .max = 24 * HOUR_MS,
     .doc = "Time the breaker stays open before it lets a probe through."},
};

static const opt_table breaker_table = {
    .path = "producer.breaker",
    .doc = "Circuit breaker in front of the engine: while open, publishing "
           "fails at once with BREAKER_OPEN.",
    .opts = breaker_opts,
    .nopts = ARRAY_LEN(breaker_opts),
    .pos_offset = NO_POS,
};

static const opt_desc producer_opts[] = {
    {.key = "max_in_flight",
     .type = OPT_UINT32,
     .offset = offsetof(sl_config, max_in_flight),
     .def = "1000",
     .min = 1,
     .max = 1000000,
     .doc = "Unconfirmed publishes at most; a full window makes publish "
            "wait."},
    {.key = "publish_timeout",
     .type = OPT_DURATION,
     .offset = offsetof(sl_config, publish_timeout_ms),
     .def = "5s",
     .min = 1,
     .max = HOUR_MS,
     .doc = "Longest wait for window space and the engine's confirm."},
    {.key = "rate",
     .type = OPT_DOUBLE,
     .offset = offsetof(sl_config, rate_per_s),
     .def = "0",
     .max = 1000000000,
     .doc = "Token-bucket limit in events per second; 0 = unlimited."},
    {.key = "burst",
     .type = OPT_UINT32,
     .offset = offsetof(sl_config, burst),
     .def_doc = "2 x `rate`",
     .max = UINT32_MAX,
     .doc = "Token-bucket capacity; 0 selects 2 x `rate`."},
    {.key = "breaker",
     .type = OPT_SECTION,
     .offset = 0,
     .sub = &breaker_table,
     .doc = "Circuit breaker."},
};

static const opt_table producer_table = {
    .path = "producer",
    .doc = "How this service publishes: confirm window, rate limit, "
           "circuit breaker.",
    .opts = producer_opts,
    .nopts = ARRAY_LEN(producer_opts),
    .pos_offset = NO_POS,
};

static const opt_desc engine_opts[] = {
    {.key = "url",
     .type = OPT_STRING,
     .offset = offsetof(sl_config, engine_url),
     .def = "embedded:./data",
     .doc = "`embedded:DIR` (SQLite store in DIR), `memory://` (in memory, "
            "no store; also `embedded::memory:`), `amqp://`, `amqps://`, "
            "`nats://` or `tls://`."},
    {.key = "sync",
     .type = OPT_ENUM,
     .offset = offsetof(sl_config, sync),
     .def = "normal",
     .choices = sync_choices,
     .doc = "Embedded store durability: `full` survives a power cut, "
            "`normal` a process crash, `off` neither."},
    {.key = "dedup_window",
     .type = OPT_DURATION,
     .offset = offsetof(sl_config, dedup_window_ms),
     .def = "2m",
     .min = 1,
     .max = 168 * HOUR_MS,
     .doc = "A republished event id within this window is dropped."},
    {.key = "memory_budget",
     .type = OPT_SIZE,
     .offset = offsetof(sl_config, memory_budget),
     .def = "256KiB",
     .min = 1024,
     .max = 64ull * 1024 * 1024 * 1024,
     .doc = "Embedded store: bytes of queued events kept in memory; past "
            "it, events live only in the store and are read back when "
            "delivered, so a backlog costs little memory."},
    {.key = "commit_interval",
     .type = OPT_DURATION,
     .offset = offsetof(sl_config, commit_interval_ms),
     .def = "0",
     .min = 0,
     .max = 10000,
     .doc = "Embedded store: wait this long after a change to gather a "
            "larger commit (fewer fsyncs with `sync: full`, more latency); "
            "0 commits at once, batching what arrives meanwhile."},
    {.key = "max_event_size",
     .type = OPT_SIZE,
     .offset = offsetof(sl_config, max_event_size),
     .def = "1MiB",
     .min = 1024,
     .max = 1024u * 1024u,
     .doc = "Largest encoded event, at most 1MiB (larger payloads: store "
            "them elsewhere and send a link); larger ones are refused with "
            "TOO_LARGE."},
};

static const opt_table engine_table = {
    .path = "engine",
    .doc = "Where channels and groups live.",
    .opts = engine_opts,
    .nopts = ARRAY_LEN(engine_opts),
    .pos_offset = NO_POS,
};

static const opt_desc service_opts[] = {
    {.key = "name",
     .type = OPT_STRING,
     .flags = OPT_NAME,
     .offset = offsetof(sl_config, service_name),
     .def = "sluice",
     .doc = "Name of this service."},
};

static const opt_table service_table = {
    .path = "service",
    .doc = "The service itself.",
    .opts = service_opts,
    .nopts = ARRAY_LEN(service_opts),
    .pos_offset = NO_POS,
};

static const opt_choice json_type_choices[] = {
    {"string", 0}, {"integer", 0}, {"number", 0}, {"boolean", 0},
    {"object", 0}, {"array", 0},   {NULL, 0},
};

static const opt_desc field_opts[] = {
    {.key = "name",
     .type = OPT_STRING,
     .flags = OPT_REQUIRED,
     .offset = offsetof(sl_config_field, name),
     .doc = "Field of the JSON body: a top-level key or a dotted path "
            "(`customer.id`)."},
    {.key = "type",
     .type = OPT_STRING,
     .flags = OPT_REQUIRED,
     .offset = offsetof(sl_config_field, type),
     .choices = json_type_choices,
     .doc = "JSON type the value must have."},
    {.key = "required",
     .type = OPT_BOOL,
     .offset = offsetof(sl_config_field, required),
     .def = "false",
     .doc = "The field must be present."},
    {.key = "minimum",
     .type = OPT_NUMBER,
     .offset = offsetof(sl_config_field, minimum),
     .count_offset = offsetof(sl_config_field, has_minimum),
     .doc = "Numbers: smallest value allowed."},
    {.key = "maximum",
     .type = OPT_NUMBER,
     .offset = offsetof(sl_config_field, maximum),
     .count_offset = offsetof(sl_config_field, has_maximum),
     .doc = "Numbers: largest value allowed."},
    {.key = "min_length",
     .type = OPT_UINT64,
     .offset = offsetof(sl_config_field, min_length),
     .def = "0",
     .max = UINT32_MAX,
     .doc = "Strings (characters) and arrays (items): shortest allowed."},
    {.key = "max_length",
     .type = OPT_UINT64,
     .offset = offsetof(sl_config_field, max_length),
     .def = "0",
     .max = UINT32_MAX,
     .doc = "Strings and arrays: longest allowed; 0 = no limit."},
    {.key = "enum",
     .type = OPT_STRING_LIST,
     .offset = offsetof(sl_config_field, enum_values),
     .count_offset = offsetof(sl_config_field, nenum),
     .max_items = 256,
     .doc = "Strings: the values allowed."},
};

static const opt_table field_table = {
    .path = "gateway.routes[].fields[]",
    .doc = "A rule on one field of a route's JSON body; a request that "
           "breaks one is answered 422 and publishes nothing.",
    .opts = field_opts,
    .nopts = ARRAY_LEN(field_opts),
    .elem_size = sizeof(sl_config_field),
    .pos_offset = offsetof(sl_config_field, pos),
};

static const opt_choice method_choices[] = {
    {"POST", 0},
    {"PUT", 0},
    {"PATCH", 0},
    {NULL, 0},
};

static const opt_desc route_opts[] = {
    {.key = "method",
     .type = OPT_STRING,
     .offset = offsetof(sl_config_route, method),
     .def = "POST",
     .choices = method_choices,
     .doc = "HTTP method."},
    {.key = "path",
     .type = OPT_STRING,
     .flags = OPT_REQUIRED,
     .offset = offsetof(sl_config_route, path),
     .doc = "Request path, e.g. `/orders`."},
    {.key = "channel",
     .type = OPT_STRING,
     .flags = OPT_REQUIRED | OPT_NAME,
     .offset = offsetof(sl_config_route, channel),
     .doc = "Declared channel the events go to."},
    {.key = "type",
     .type = OPT_STRING,
     .flags = OPT_REQUIRED,
     .offset = offsetof(sl_config_route, type),
     .doc = "CloudEvents `type` of events made from JSON bodies."},
    {.key = "source",
     .type = OPT_STRING,
     .offset = offsetof(sl_config_route, source),
     .def = "/gateway",
     .doc = "CloudEvents `source` of events made from JSON bodies."},
    {.key = "fields",
     .type = OPT_LIST,
     .offset = offsetof(sl_config_route, fields),
     .count_offset = offsetof(sl_config_route, nfields),
     .max_items = 256,
     .sub = &field_table,
     .doc = "Validation rules for JSON bodies."},
    {.key = "deadline",
     .type = OPT_DURATION,
     .offset = offsetof(sl_config_route, deadline_ms),
     .def = "30s",
     .min = 1,
     .max = 24 * HOUR_MS,
     .doc = "Every accepted event carries the `deadline` extension: the "
            "time of acceptance plus this (a client's earlier "
            "`ce-deadline` is kept). Past it, consumers dead-letter the "
            "event as expired instead of handling it."},
    {.key = "max_queue_wait",
     .type = OPT_DURATION,
     .offset = offsetof(sl_config_route, max_queue_wait_ms),
     .def = "0",
     .max = 24 * HOUR_MS,
     .doc = "Refuse (503) a request whose predicted wait is longer than "
            "this, even within its deadline; 0 = the deadline alone "
            "bounds the wait."},
    {.key = "admit_by_wait",
     .type = OPT_BOOL,
     .offset = offsetof(sl_config_route, admit_by_wait),
     .def = "true",
     .doc = "Refuse (503, with Retry-After) a request whose events are "
            "predicted to wait past their deadline, from the work ahead "
            "and the measured drain rate of the channel's groups "
            "(docs/gateway.md); `false` admits up to the channel's "
            "`max_length`."},
};

static const opt_table route_table = {
    .path = "gateway.routes[]",
    .doc = "One HTTP route: requests become events on a channel, answered "
           "202 once the engine confirmed them.",
    .opts = route_opts,
    .nopts = ARRAY_LEN(route_opts),
    .elem_size = sizeof(sl_config_route),
    .pos_offset = offsetof(sl_config_route, pos),
};

static const opt_desc gateway_opts[] = {
    {.key = "listen",
     .type = OPT_STRING,
     .offset = offsetof(sl_config, gateway_listen),
     .def = "127.0.0.1:8080",
     .doc = "Address and port of the HTTP gateway."},
    {.key = "max_body",
     .type = OPT_SIZE,
     .offset = offsetof(sl_config, gateway_max_body),
     .def = "1MiB",
     .min = 1,
     .max = 1024u * 1024u,
     .doc = "Largest request body; larger ones are answered 413."},
    {.key = "threads",
     .type = OPT_UINT32,
     .offset = offsetof(sl_config, gateway_threads),
     .def = "8",
     .min = 1,
     .max = 1024,
     .doc = "HTTP worker threads. A request does not hold one while its "
            "publish is confirmed (the connection is suspended), so a few "
            "per core suffice (docs/benchmarks.md)."},
    {.key = "client_rate",
     .type = OPT_DOUBLE,
     .offset = offsetof(sl_config, gateway_client_rate),
     .def = "0",
     .max = 1000000000,
     .doc = "Requests per second per client (token bucket); beyond it 429 "
            "with Retry-After; 0 = no limit."},
    {.key = "client_burst",
     .type = OPT_DOUBLE,
     .offset = offsetof(sl_config, gateway_client_burst),
     .def = "0",
     .def_doc = "2 x `client_rate`",
     .max = 1000000000,
     .doc = "Token-bucket capacity per client."},
    {.key = "client_header",
     .type = OPT_STRING,
     .offset = offsetof(sl_config, gateway_client_header),
     .def = "X-API-Key",
     .doc = "Header that identifies a client; without it, the remote "
            "address does."},
    {.key = "max_clients",
     .type = OPT_UINT32,
     .offset = offsetof(sl_config, gateway_max_clients),
     .def = "10000",
     .min = 1,
     .max = 10000000,
     .doc = "Clients tracked by the rate limiter at most (least recently "
            "seen forgotten first)."},
    {.key = "idempotency_ttl",
     .type = OPT_DURATION,
     .offset = offsetof(sl_config, gateway_idempotency_ttl_ms),
     .def = "24h",
     .min = 1000,
     .max = 8760 * HOUR_MS,
     .doc = "How long an `Idempotency-Key` answer is kept."},
    {.key = "state",
     .type = OPT_STRING,
     .offset = offsetof(sl_config, gateway_state),
     .def_doc = "`DIR/gateway.db` for `embedded:DIR`, else "
                "`./sluice-gateway.db`",
     .doc = "SQLite file of idempotency keys and the status projection."},
    {.key = "routes",
     .type = OPT_LIST,
     .offset = offsetof(sl_config, routes),
     .count_offset = offsetof(sl_config, nroutes),
     .max_items = 256,
     .sub = &route_table,
     .doc = "Routes; the gateway starts when there is at least one."},
};

static const opt_table gateway_table = {
    .path = "gateway",
    .doc = "The HTTP front end that turns requests into events.",
    .opts = gateway_opts,
    .nopts = ARRAY_LEN(gateway_opts),
    .pos_offset = NO_POS,
};

static const opt_desc admin_opts[] = {
    {.key = "enabled",
     .type = OPT_BOOL,
     .offset = offsetof(sl_config, admin_enabled),
     .def = "true",
     .doc = "Serve the admin endpoints."},
    {.key = "listen",
     .type = OPT_STRING,
     .offset = offsetof(sl_config, admin_listen),
     .def = "127.0.0.1:9090",
     .doc = "Address and port of `/metrics`, `/healthz`, `/readyz` and "
            "`/scale`."},
    {.key = "scale_target",
     .type = OPT_UINT64,
     .offset = offsetof(sl_config, scale_target),
     .def = "5000",
     .min = 1,
     .max = UINT32_MAX,
     .doc = "Ready events one replica should have: `/scale` answers "
            "ceil(depth / scale_target) replicas."},
    {.key = "scale_min",
     .type = OPT_UINT32,
     .offset = offsetof(sl_config, scale_min),
     .def = "2",
     .max = 10000,
     .doc = "Fewest replicas `/scale` asks for."},
    {.key = "scale_max",
     .type = OPT_UINT32,
     .offset = offsetof(sl_config, scale_max),
     .def = "20",
     .min = 1,
     .max = 10000,
     .doc = "Most replicas `/scale` asks for."},
};

static const opt_table admin_table = {
    .path = "admin",
    .doc = "The admin listener: metrics, health, readiness, scaling signal.",
    .opts = admin_opts,
    .nopts = ARRAY_LEN(admin_opts),
    .pos_offset = NO_POS,
};

static const opt_desc root_opts[] = {
    {.key = "service",
     .type = OPT_SECTION,
     .sub = &service_table,
     .doc = "The service itself."},
    {.key = "engine",
     .type = OPT_SECTION,
     .sub = &engine_table,
     .doc = "Engine URL and store settings."},
    {.key = "producer",
     .type = OPT_SECTION,
     .sub = &producer_table,
     .doc = "Publishing limits."},
    {.key = "channels",
     .type = OPT_LIST,
     .offset = offsetof(sl_config, channels),
     .count_offset = offsetof(sl_config, nchannels),
     .max_items = 1000,
     .sub = &channel_table,
     .doc = "Channels to declare."},
    {.key = "consumers",
     .type = OPT_LIST,
     .offset = offsetof(sl_config, consumers),
     .count_offset = offsetof(sl_config, nconsumers),
     .max_items = 1000,
     .sub = &consumer_table,
     .doc = "Consumer groups to run."},
    {.key = "gateway",
     .type = OPT_SECTION,
     .sub = &gateway_table,
     .doc = "HTTP gateway."},
    {.key = "admin",
     .type = OPT_SECTION,
     .sub = &admin_table,
     .doc = "Admin listener."},
    {.key = "drain_timeout",
     .type = OPT_DURATION,
     .offset = offsetof(sl_config, drain_timeout_ms),
     .def = "25s",
     .max = HOUR_MS,
     .doc = "On SIGTERM, time in-flight handlers get to finish before their "
            "deliveries are released for redelivery."},
    {.key = "inbox",
     .type = OPT_STRING,
     .offset = offsetof(sl_config, inbox_path),
     .def_doc = "`DIR/inbox.db` for `embedded:DIR`, `:memory:` for "
                "`memory://`, else `./sluice-inbox.db`",
     .doc = "Idempotency store: an SQLite file (local to the process), or "
            "with the NATS engine `nats-kv` (JetStream KV, one bucket per "
            "group, shared by every process of the group; its TTL is the "
            "group's `idempotency_ttl`) or `nats-kv:NAME` (one named bucket "
            "for every group of the service; they need one "
            "`idempotency_ttl`). Handlers of kind `record` need SQLite."},
};

const opt_table sl__config_root_table = {
    .path = "",
    .doc = "The file is one YAML mapping with these keys. Every key is "
           "optional unless marked required.",
    .opts = root_opts,
    .nopts = ARRAY_LEN(root_opts),
    .pos_offset = NO_POS,
};

/* ---- how types and ranges read ------------------------------------------- */

/* "ms" as the largest unit that divides it ("30s", "24h", "1500ms"). */
static void format_ms(textbuf *tb, uint64_t ms)
{
    if (ms == 0) {
        tb_add(tb, "0");
    } else if (ms % HOUR_MS == 0) {
        tb_add(tb, "%" PRIu64 "h", ms / HOUR_MS);
    } else if (ms % 60000 == 0) {
        tb_add(tb, "%" PRIu64 "m", ms / 60000);
    } else if (ms % 1000 == 0) {
        tb_add(tb, "%" PRIu64 "s", ms / 1000);
    } else {
        tb_add(tb, "%" PRIu64 "ms", ms);
    }
}

static void format_size(textbuf *tb, uint64_t n)
{
    static const char *const units[] = {"GiB", "MiB", "KiB"};
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        uint64_t scale = UINT64_C(1) << (10 * (3 - i));
        if (n != 0 && n % scale == 0) {
            tb_add(tb, "%" PRIu64 "%s", n / scale, units[i]);
            return;
        }
    }
    tb_add(tb, "%" PRIu64, n);
}

static uint64_t type_max(const opt_desc *o)
{
    return o->type == OPT_UINT32 ? UINT32_MAX : UINT64_MAX;
}

void sl__config_format_range(textbuf *tb, const opt_desc *o)
{
    void (*fmt)(textbuf *, uint64_t) = NULL;
    if (o->type == OPT_DURATION || o->type == OPT_DURATION_LIST) {
        fmt = format_ms;
    } else if (o->type == OPT_SIZE) {
        fmt = format_size;
    }
    if (o->max == type_max(o)) {
        tb_add(tb, ">= ");
        if (fmt != NULL) {
            fmt(tb, o->min);
        } else {
            tb_add(tb, "%" PRIu64, o->min);
        }
        return;
    }
    if (fmt != NULL) {
        fmt(tb, o->min);
        tb_add(tb, "..");
        fmt(tb, o->max);
    } else {
        tb_add(tb, "%" PRIu64 "..%" PRIu64, o->min, o->max);
    }
}

void sl__config_format_choices(textbuf *tb, const opt_choice *choices,
                               const char *quote)
{
    for (const opt_choice *c = choices; c->name != NULL; c++) {
        tb_add(tb, "%s%s%s%s", c == choices ? "" : ", ", quote, c->name, quote);
    }
}

/* What a value of option @p o must look like, for "expected ..." in
 * messages. @p syntax: the value did not parse at all, so show examples
 * rather than bounds. */
void sl__config_describe_expected(textbuf *tb, const opt_desc *o, bool syntax)
{
    switch (o->type) {
    case OPT_STRING:
        if (o->choices != NULL) {
            tb_add(tb, "one of ");
            sl__config_format_choices(tb, o->choices, "");
        } else if (o->flags & OPT_NAME) {
            tb_add(tb, "a name of 1 to %d letters, digits, '.', '_' and '-'",
                   NAME_MAX_LEN);
        } else {
            tb_add(tb, "a string");
        }
        break;
    case OPT_UINT32:
    case OPT_UINT64:
        if (o->max == type_max(o) && o->min == 0) {
            tb_add(tb, "a non-negative integer");
        } else if (o->max == type_max(o)) {
            tb_add(tb, "an integer >= %" PRIu64, o->min);
        } else {
            tb_add(tb, "an integer in %" PRIu64 "..%" PRIu64, o->min, o->max);
        }
        break;
    case OPT_DOUBLE:
        tb_add(tb, "a number in %" PRIu64 "..%" PRIu64, o->min, o->max);
        break;
    case OPT_BOOL:
        tb_add(tb, "true or false");
        break;
    case OPT_DURATION:
    case OPT_DURATION_LIST:
        if (syntax) {
            tb_add(tb, "a duration such as 250ms, 5s, 1m or 2h");
        } else {
            tb_add(tb, "a duration ");
            if (o->max != UINT64_MAX) {
                tb_add(tb, "in ");
            }
            sl__config_format_range(tb, o);
        }
        break;
    case OPT_SIZE:
        if (syntax) {
            tb_add(tb, "a size such as 1048576, 512KiB or 1MiB");
        } else {
            tb_add(tb, "a size ");
            if (o->max != UINT64_MAX) {
                tb_add(tb, "in ");
            }
            sl__config_format_range(tb, o);
        }
        break;
    case OPT_ENUM:
        tb_add(tb, "one of ");
        sl__config_format_choices(tb, o->choices, "");
        break;
    case OPT_SECTION:
        tb_add(tb, "a mapping");
        break;
    case OPT_LIST:
        tb_add(tb, "a list of mappings");
        break;
    case OPT_NUMBER:
        tb_add(tb, "a number");
        break;
    case OPT_STRING_LIST:
        tb_add(tb, "a list of strings such as [a, b]");
        break;
    }
}
