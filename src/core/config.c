/* sluice — the service configuration file (YAML).
 *
 * Every option is a row in a declarative table, one table per section. One
 * generic walker applies a table to a YAML mapping (types, bounds, unknown
 * and duplicate keys, required keys, defaults), the same tables free the
 * result and write the Markdown reference, so parsing, validation and
 * documentation cannot drift apart. Checks that relate several options
 * (declared channels, unique groups, handler kinds) run once the walk is
 * done, in finish().
 *
 * The file is loaded with libyaml's document API because its nodes keep
 * their start marks: every error names FILE:LINE:COLUMN and the key path.
 */
#include "sluice/config.h"

#include "core/secret.h"
#include "core/suggest.h"
#include "sluice/alloc.h"
#include "sluice/duration.h"

#include <yaml.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Longest channel, group or service name: names end up inside derived names
 * ("<channel>.<group>.dlq") and broker identifiers, which have limits. */
#define NAME_MAX_LEN 200

/* A configuration file is small; refusing huge ones keeps the loader
 * bounded when it is pointed at the wrong file. */
#define FILE_MAX_SIZE (16u * 1024u * 1024u)

/* Longest key path or value quoted in a message. */
#define PATH_MAX_LEN 256
#define QUOTE_MAX_LEN 60

/* The walker writes enum options as an int. */
_Static_assert(sizeof(sl_sync_mode) == sizeof(int),
               "enum options are stored as int");

/* ---- option tables ------------------------------------------------------- */

typedef enum opt_type {
    OPT_STRING,        /* char *, owned */
    OPT_UINT32,        /* uint32_t */
    OPT_UINT64,        /* uint64_t */
    OPT_DOUBLE,        /* double; bounds are min..max as whole numbers */
    OPT_BOOL,          /* bool */
    OPT_DURATION,      /* uint64_t milliseconds */
    OPT_SIZE,          /* uint64_t bytes */
    OPT_ENUM,          /* int-sized enum, values from `choices` */
    OPT_DURATION_LIST, /* uint64_t * at offset, size_t at count_offset */
    OPT_SECTION,       /* mapping applied with `sub` to base + offset */
    OPT_LIST,          /* list of mappings: element array at offset,
                          size_t count at count_offset, elements `sub` */
    OPT_NUMBER,        /* double, any finite value, no default; bool at
                          count_offset says whether it was given */
    OPT_STRING_LIST,   /* char ** at offset, size_t at count_offset */
} opt_type;

enum {
    OPT_REQUIRED = 1u << 0,      /* a missing key is an error */
    OPT_NAME = 1u << 1,          /* string of [A-Za-z0-9._-], at most
                                    NAME_MAX_LEN */
    OPT_KIND_REQUIRED = 1u << 2, /* handler: required when the handler's
                                    kind is `kind` */
};

typedef struct opt_choice {
    const char *name;
    int value;
} opt_choice;

struct opt_table;

/* One option. Unset fields are zero, so rows list only what applies. */
typedef struct opt_desc {
    const char *key;
    opt_type type;
    unsigned flags;
    size_t offset;
    size_t count_offset; /* OPT_DURATION_LIST, OPT_LIST */
    const char *def;     /* default, written as in the file; parsed by the
                            same code as the file's value. NULL: none. */
    const char *def_doc; /* reference text for a computed default */
    uint64_t min;        /* numbers, durations (ms), sizes (bytes) */
    uint64_t max;
    size_t max_items;            /* lists */
    const opt_choice *choices;   /* OPT_ENUM, or allowed strings; ends
                                    with {NULL, 0} */
    const struct opt_table *sub; /* OPT_SECTION, OPT_LIST */
    const char *kind;            /* handler option: the kind it serves */
    const char *doc;             /* one line for the reference */
} opt_desc;

#define NO_POS SIZE_MAX

typedef struct opt_table {
    const char *path; /* "consumers[].handler"; "" is the top level */
    const char *doc;  /* paragraph for the reference */
    const opt_desc *opts;
    size_t nopts;
    size_t elem_size;  /* element size when used by an OPT_LIST */
    size_t pos_offset; /* sl_config_pos of the mapping, or NO_POS */
} opt_table;

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

#define HOUR_MS UINT64_C(3600000)

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

static const opt_table handler_table = {
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
     .sub = &handler_table,
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

static const opt_table root_table = {
    .path = "",
    .doc = "The file is one YAML mapping with these keys. Every key is "
           "optional unless marked required.",
    .opts = root_opts,
    .nopts = ARRAY_LEN(root_opts),
    .pos_offset = NO_POS,
};

/* Engine URL schemes the engines understand (docs/configuration.md). */
static const char *const url_schemes[] = {
    "embedded:", "memory://", "amqp://", "amqps://", "nats://", "tls://",
};

/* ---- small text helpers -------------------------------------------------- */

/* A fixed buffer that truncates instead of overflowing. */
typedef struct textbuf {
    char *buf;
    size_t cap;
    size_t len;
} textbuf;

__attribute__((format(printf, 2, 3))) static void tb_add(textbuf *tb,
                                                         const char *fmt, ...)
{
    if (tb->len + 1 >= tb->cap) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tb->buf + tb->len, tb->cap - tb->len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        tb->len += (size_t)n;
        if (tb->len >= tb->cap) {
            tb->len = tb->cap - 1;
        }
    }
}

static textbuf tb_init(char *buf, size_t cap)
{
    buf[0] = '\0';
    return (textbuf){buf, cap, 0};
}

static void *field_at(void *base, size_t offset)
{
    return (char *)base + offset;
}

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

/* The accepted range of a numeric option: "1..100000", ">= 1ms". */
static void format_range(textbuf *tb, const opt_desc *o)
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

static void format_choices(textbuf *tb, const opt_choice *choices,
                           const char *quote)
{
    for (const opt_choice *c = choices; c->name != NULL; c++) {
        tb_add(tb, "%s%s%s%s", c == choices ? "" : ", ", quote, c->name, quote);
    }
}

/* What a value of option @p o must look like, for "expected ..." in
 * messages. @p syntax: the value did not parse at all, so show examples
 * rather than bounds. */
static void describe_expected(textbuf *tb, const opt_desc *o, bool syntax)
{
    switch (o->type) {
    case OPT_STRING:
        if (o->choices != NULL) {
            tb_add(tb, "one of ");
            format_choices(tb, o->choices, "");
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
            format_range(tb, o);
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
            format_range(tb, o);
        }
        break;
    case OPT_ENUM:
        tb_add(tb, "one of ");
        format_choices(tb, o->choices, "");
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

static const char *opt_key_at(const void *items, size_t i)
{
    return ((const opt_desc *)items)[i].key;
}

static const char *choice_at(const void *items, size_t i)
{
    return ((const opt_choice *)items)[i].name;
}

static const char *channel_name_at(const void *items, size_t i)
{
    return ((const sl_config_channel *)items)[i].name;
}

static size_t choice_count(const opt_choice *choices)
{
    size_t n = 0;
    while (choices[n].name != NULL) {
        n++;
    }
    return n;
}

static bool is_name(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return n >= 1 && n <= NAME_MAX_LEN;
}

/* ---- scalar parsing, shared by file values and built-in defaults --------- */

typedef enum parse_result {
    PARSE_OK,
    PARSE_SYNTAX, /* not of the option's type at all */
    PARSE_RANGE,  /* of the type, out of bounds */
    PARSE_NOMEM,
} parse_result;

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Decimal digits only; a sign or blank is a syntax error. */
static parse_result parse_u64(const char *text, const char **end, uint64_t *out)
{
    const char *p = text;
    uint64_t v = 0;
    if (!is_digit(*p)) {
        return PARSE_SYNTAX;
    }
    bool overflow = false;
    for (; is_digit(*p); p++) {
        uint64_t digit = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            overflow = true;
        } else {
            v = v * 10 + digit;
        }
    }
    *end = p;
    *out = v;
    return overflow ? PARSE_RANGE : PARSE_OK;
}

static parse_result parse_size(const char *text, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t scale;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"KiB", UINT64_C(1) << 10},
        {"MiB", UINT64_C(1) << 20},
        {"GiB", UINT64_C(1) << 30},
    };
    const char *p = NULL;
    uint64_t n = 0;
    parse_result res = parse_u64(text, &p, &n);
    if (res == PARSE_SYNTAX) {
        return res;
    }
    while (*p == ' ') {
        p++;
    }
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (strcmp(p, units[i].unit) == 0) {
            if (res != PARSE_OK || n > UINT64_MAX / units[i].scale) {
                return PARSE_RANGE;
            }
            *out = n * units[i].scale;
            return PARSE_OK;
        }
    }
    return PARSE_SYNTAX;
}

static parse_result parse_duration(const opt_desc *o, const char *text,
                                   uint64_t *out)
{
    uint64_t ms = 0;
    if (sl_duration_parse_ms(text, &ms) != SL_OK) {
        /* The shared parser refuses overflow and bad syntax alike; a long
         * run of digits is almost surely the former. */
        const char *end = NULL;
        uint64_t ignored = 0;
        return parse_u64(text, &end, &ignored) == PARSE_RANGE ? PARSE_RANGE
                                                              : PARSE_SYNTAX;
    }
    if (ms < o->min || ms > o->max) {
        return PARSE_RANGE;
    }
    *out = ms;
    return PARSE_OK;
}

static parse_result parse_bool(const char *text, bool *out)
{
    /* YAML 1.1 spellings, which is what libyaml users expect. */
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return PARSE_OK;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return PARSE_OK;
        }
    }
    return PARSE_SYNTAX;
}

static parse_result parse_double(const opt_desc *o, const char *text,
                                 double *out)
{
    /* strtod also takes "inf", "nan" and hex floats; none is a rate. */
    if (text[0] == '\0' || strspn(text, "0123456789.eE+-") != strlen(text)) {
        return PARSE_SYNTAX;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0') {
        return PARSE_SYNTAX;
    }
    if (errno == ERANGE || !isfinite(v) || v < (double)o->min ||
        v > (double)o->max) {
        return PARSE_RANGE;
    }
    *out = v;
    return PARSE_OK;
}

static const opt_choice *find_choice(const opt_choice *choices,
                                     const char *text)
{
    for (const opt_choice *c = choices; c->name != NULL; c++) {
        if (strcmp(c->name, text) == 0) {
            return c;
        }
    }
    return NULL;
}

/* Parse @p text as option @p o and store it at @p field. Strings are
 * copied; the previous string (if any) is freed. */
static parse_result parse_scalar(const opt_desc *o, const char *text,
                                 void *field)
{
    uint64_t u = 0;
    const char *end = NULL;
    parse_result res = PARSE_OK;

    switch (o->type) {
    case OPT_STRING: {
        if (o->choices != NULL && find_choice(o->choices, text) == NULL) {
            return PARSE_SYNTAX;
        }
        if ((o->flags & OPT_NAME) && !is_name(text)) {
            return PARSE_SYNTAX;
        }
        char *copy = sl_strdup(text);
        if (copy == NULL) {
            return PARSE_NOMEM;
        }
        sl_free(*(char **)field);
        *(char **)field = copy;
        return PARSE_OK;
    }
    case OPT_UINT32:
    case OPT_UINT64:
        res = parse_u64(text, &end, &u);
        if (res == PARSE_OK && *end != '\0') {
            return PARSE_SYNTAX;
        }
        if (res != PARSE_OK) {
            return res;
        }
        if (u < o->min || u > o->max) {
            return PARSE_RANGE;
        }
        if (o->type == OPT_UINT32) {
            *(uint32_t *)field = (uint32_t)u;
        } else {
            *(uint64_t *)field = u;
        }
        return PARSE_OK;
    case OPT_DOUBLE:
        return parse_double(o, text, (double *)field);
    case OPT_BOOL:
        return parse_bool(text, (bool *)field);
    case OPT_DURATION:
        return parse_duration(o, text, (uint64_t *)field);
    case OPT_SIZE:
        res = parse_size(text, &u);
        if (res != PARSE_OK) {
            return res;
        }
        if (u < o->min || u > o->max) {
            return PARSE_RANGE;
        }
        *(uint64_t *)field = u;
        return PARSE_OK;
    case OPT_ENUM: {
        const opt_choice *c = find_choice(o->choices, text);
        if (c == NULL) {
            return PARSE_SYNTAX;
        }
        memcpy(field, &c->value, sizeof c->value);
        return PARSE_OK;
    }
    case OPT_NUMBER: {
        /* Like OPT_DOUBLE but signed and unbounded (validation limits). */
        if (text[0] == '\0' ||
            strspn(text, "0123456789.eE+-") != strlen(text)) {
            return PARSE_SYNTAX;
        }
        char *e = NULL;
        errno = 0;
        double v = strtod(text, &e);
        if (e == text || *e != '\0') {
            return PARSE_SYNTAX;
        }
        if (errno == ERANGE || !isfinite(v)) {
            return PARSE_RANGE;
        }
        *(double *)field = v;
        return PARSE_OK;
    }
    case OPT_DURATION_LIST:
    case OPT_SECTION:
    case OPT_LIST:
    case OPT_STRING_LIST:
        break;
    }
    return PARSE_SYNTAX;
}

/* A built-in duration list default ("1s, 5s, 10s"). */
static parse_result parse_default_list(const opt_desc *o, void *base)
{
    size_t n = 1;
    for (const char *p = o->def; *p != '\0'; p++) {
        n += *p == ',';
    }
    uint64_t *arr = sl_calloc(n, sizeof *arr);
    if (arr == NULL) {
        return PARSE_NOMEM;
    }
    const char *p = o->def;
    for (size_t i = 0; i < n; i++) {
        char item[32];
        size_t len = strcspn(p, ",");
        if (len >= sizeof item) {
            sl_free(arr);
            return PARSE_SYNTAX;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        parse_result res = parse_duration(o, item, &arr[i]);
        if (res != PARSE_OK) {
            sl_free(arr);
            return res;
        }
        p += len + (p[len] == ',');
    }
    uint64_t **slot = field_at(base, o->offset);
    sl_free(*slot);
    *slot = arr;
    *(size_t *)field_at(base, o->count_offset) = n;
    return PARSE_OK;
}

/* ---- the walker ---------------------------------------------------------- */

/* Where each value read from the file came from, keyed by the address of
 * the field it was stored in, so that checks after the walk can cite the
 * exact value. List arrays are allocated once at their final size, so the
 * addresses stay valid. */
struct sl_config_value_pos {
    const void *field;
    sl_config_pos pos;
};
typedef struct sl_config_value_pos value_pos;

typedef struct parse_ctx {
    const char *name; /* the file, for messages */
    yaml_document_t *doc;
    sl_diag *diag;
    sl_config_pos root_pos;
    value_pos *pos;
    size_t npos;
    size_t pos_cap;
} parse_ctx;

static sl_config_pos node_pos(const yaml_node_t *node)
{
    sl_config_pos pos = {(int)node->start_mark.line + 1,
                         (int)node->start_mark.column + 1};
    return pos;
}

__attribute__((format(printf, 4, 5))) static sl_status
fail(parse_ctx *ctx, sl_config_pos at, const char *path, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (path != NULL && path[0] != '\0') {
        return sl_diag_set(ctx->diag, SL_CONFIG, "%s:%d:%d: %s: %s", ctx->name,
                           at.line, at.column, path, msg);
    }
    return sl_diag_set(ctx->diag, SL_CONFIG, "%s:%d:%d: %s", ctx->name, at.line,
                       at.column, msg);
}

static sl_status fail_nomem(parse_ctx *ctx)
{
    return sl_diag_set(ctx->diag, SL_NOMEM, "%s: out of memory", ctx->name);
}

static sl_status remember_pos(parse_ctx *ctx, const void *field,
                              sl_config_pos pos)
{
    if (ctx->npos == ctx->pos_cap) {
        size_t cap = ctx->pos_cap ? 2 * ctx->pos_cap : 64;
        value_pos *grown = sl_realloc(ctx->pos, cap * sizeof *grown);
        if (grown == NULL) {
            return fail_nomem(ctx);
        }
        ctx->pos = grown;
        ctx->pos_cap = cap;
    }
    ctx->pos[ctx->npos++] = (value_pos){field, pos};
    return SL_OK;
}

/* Position of the value stored at @p field, or @p fallback when it was not
 * read from the file. */
static sl_config_pos pos_of(const parse_ctx *ctx, const void *field,
                            sl_config_pos fallback)
{
    for (size_t i = 0; i < ctx->npos; i++) {
        if (ctx->pos[i].field == field) {
            return ctx->pos[i].pos;
        }
    }
    return fallback;
}

static bool from_file(const parse_ctx *ctx, const void *field)
{
    sl_config_pos none = {0, 0};
    return pos_of(ctx, field, none).line != 0;
}

static bool is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE ||
        node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return false;
    }
    const char *v = (const char *)node->data.scalar.value;
    return strcmp(v, "") == 0 || strcmp(v, "~") == 0 ||
           strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* What was found, for "got ..." in messages. */
static void describe_got(textbuf *tb, const yaml_node_t *node)
{
    if (node->type == YAML_MAPPING_NODE) {
        tb_add(tb, "a mapping");
    } else if (node->type == YAML_SEQUENCE_NODE) {
        tb_add(tb, "a list");
    } else if (is_null(node)) {
        tb_add(tb, "nothing");
    } else {
        const char *v = (const char *)node->data.scalar.value;
        size_t len = strlen(v);
        tb_add(tb, "\"");
        for (size_t i = 0; i < len && i < QUOTE_MAX_LEN; i++) {
            unsigned char c = (unsigned char)v[i];
            tb_add(tb, "%c", c < 0x20 || c == 0x7f ? '?' : (char)c);
        }
        tb_add(tb, "%s\"", len > QUOTE_MAX_LEN ? "..." : "");
    }
}

static const char *scalar_text(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

static void join_key(textbuf *tb, const char *path, const char *key)
{
    tb_add(tb, "%s%s%s", path, path[0] != '\0' ? "." : "", key);
}

static sl_status fail_expected(parse_ctx *ctx, const opt_desc *o,
                               const yaml_node_t *node, const char *path,
                               bool syntax)
{
    char want[200];
    char got[100];
    textbuf tw = tb_init(want, sizeof want);
    textbuf tg = tb_init(got, sizeof got);
    describe_expected(&tw, o, syntax);
    describe_got(&tg, node);
    const char *hint = NULL;
    if (syntax && o->choices != NULL && node->type == YAML_SCALAR_NODE) {
        hint = sl__closest_name(scalar_text(node), o->choices,
                                choice_count(o->choices), choice_at);
    }
    if (hint != NULL) {
        return fail(ctx, node_pos(node), path,
                    "expected %s, got %s (did you mean \"%s\"?)", want, got,
                    hint);
    }
    return fail(ctx, node_pos(node), path, "expected %s, got %s", want, got);
}

static const yaml_node_pair_t *find_pair(parse_ctx *ctx, const yaml_node_t *map,
                                         const char *key)
{
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(ctx->doc, p->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE &&
            strcmp(scalar_text(k), key) == 0) {
            return p;
        }
    }
    return NULL;
}

static sl_status walk_table(parse_ctx *ctx, const opt_table *tab,
                            const yaml_node_t *map, sl_config_pos where,
                            void *base, const char *path);

static sl_status apply_list(parse_ctx *ctx, const opt_desc *o,
                            const yaml_node_t *val, void *base,
                            const char *path)
{
    if (is_null(val)) {
        return SL_OK; /* "channels:" with nothing under it: no channels */
    }
    if (val->type != YAML_SEQUENCE_NODE) {
        return fail_expected(ctx, o, val, path, true);
    }
    const yaml_node_item_t *items = val->data.sequence.items.start;
    size_t n = (size_t)(val->data.sequence.items.top - items);
    if (n > o->max_items) {
        return fail(ctx, node_pos(val), path,
                    "expected at most %zu entries, got %zu", o->max_items, n);
    }
    if (n == 0) {
        return SL_OK;
    }
    void *arr = sl_calloc(n, o->sub->elem_size);
    if (arr == NULL) {
        return fail_nomem(ctx);
    }
    /* The array is handed to the config at once, so that sl_config_destroy
     * cleans up whatever a failure below leaves half-filled. */
    memcpy(field_at(base, o->offset), &arr, sizeof arr);
    *(size_t *)field_at(base, o->count_offset) = n;

    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(ctx->doc, items[i]);
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s[%zu]", path, i);
        if (item->type != YAML_MAPPING_NODE) {
            char got[100];
            textbuf tg = tb_init(got, sizeof got);
            describe_got(&tg, item);
            return fail(ctx, node_pos(item), sub, "expected a mapping, got %s",
                        got);
        }
        void *elem = (char *)arr + i * o->sub->elem_size;
        sl_status st = walk_table(ctx, o->sub, item, node_pos(item), elem, sub);
        if (st != SL_OK) {
            return st;
        }
    }
    return SL_OK;
}

static sl_status apply_duration_list(parse_ctx *ctx, const opt_desc *o,
                                     const yaml_node_t *val, void *base,
                                     const char *path)
{
    if (val->type != YAML_SEQUENCE_NODE) {
        char got[100];
        textbuf tg = tb_init(got, sizeof got);
        describe_got(&tg, val);
        return fail(ctx, node_pos(val), path,
                    "expected a list of durations such as [1s, 5s, 10s], "
                    "got %s",
                    got);
    }
    const yaml_node_item_t *items = val->data.sequence.items.start;
    size_t n = (size_t)(val->data.sequence.items.top - items);
    if (n == 0) {
        return fail(ctx, node_pos(val), path,
                    "expected at least one duration, got an empty list");
    }
    if (n > o->max_items) {
        return fail(ctx, node_pos(val), path,
                    "expected at most %zu durations, got %zu", o->max_items, n);
    }
    uint64_t *arr = sl_calloc(n, sizeof *arr);
    if (arr == NULL) {
        return fail_nomem(ctx);
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(ctx->doc, items[i]);
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s[%zu]", path, i);
        parse_result res = PARSE_SYNTAX;
        if (item->type == YAML_SCALAR_NODE && !is_null(item)) {
            res = parse_duration(o, scalar_text(item), &arr[i]);
        }
        if (res != PARSE_OK) {
            sl_free(arr);
            return fail_expected(ctx, o, item, sub, res == PARSE_SYNTAX);
        }
    }
    uint64_t **slot = field_at(base, o->offset);
    sl_free(*slot);
    *slot = arr;
    *(size_t *)field_at(base, o->count_offset) = n;
    return remember_pos(ctx, slot, node_pos(val));
}

static sl_status apply_string_list(parse_ctx *ctx, const opt_desc *o,
                                   const yaml_node_t *val, void *base,
                                   const char *path)
{
    if (val->type != YAML_SEQUENCE_NODE) {
        return fail_expected(ctx, o, val, path, true);
    }
    const yaml_node_item_t *items = val->data.sequence.items.start;
    size_t n = (size_t)(val->data.sequence.items.top - items);
    if (n == 0 || n > o->max_items) {
        return fail(ctx, node_pos(val), path,
                    "expected 1 to %zu strings, got %zu", o->max_items, n);
    }
    char **arr = sl_calloc(n, sizeof *arr);
    if (arr == NULL) {
        return fail_nomem(ctx);
    }
    /* Handed over at once: sl_config_destroy cleans up a half-filled list. */
    char ***slot = field_at(base, o->offset);
    *slot = arr;
    *(size_t *)field_at(base, o->count_offset) = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(ctx->doc, items[i]);
        if (item->type != YAML_SCALAR_NODE || is_null(item)) {
            char sub[PATH_MAX_LEN];
            textbuf ts = tb_init(sub, sizeof sub);
            tb_add(&ts, "%s[%zu]", path, i);
            return fail_expected(ctx, o, item, sub, true);
        }
        if ((arr[i] = sl_strdup(scalar_text(item))) == NULL) {
            return fail_nomem(ctx);
        }
    }
    return remember_pos(ctx, slot, node_pos(val));
}

/* Apply one value from the file. */
static sl_status apply_value(parse_ctx *ctx, const opt_desc *o,
                             const yaml_node_t *val, void *base,
                             const char *path)
{
    void *field = field_at(base, o->offset);
    switch (o->type) {
    case OPT_SECTION:
        if (is_null(val)) {
            return walk_table(ctx, o->sub, NULL, node_pos(val), field, path);
        }
        if (val->type != YAML_MAPPING_NODE) {
            return fail_expected(ctx, o, val, path, true);
        }
        return walk_table(ctx, o->sub, val, node_pos(val), field, path);
    case OPT_LIST:
        return apply_list(ctx, o, val, base, path);
    case OPT_DURATION_LIST:
        return apply_duration_list(ctx, o, val, base, path);
    case OPT_STRING_LIST:
        return apply_string_list(ctx, o, val, base, path);
    case OPT_NUMBER:
        *(bool *)field_at(base, o->count_offset) = true;
        break;
    default:
        break;
    }

    if (val->type != YAML_SCALAR_NODE || is_null(val)) {
        return fail_expected(ctx, o, val, path, true);
    }
    if (strlen(scalar_text(val)) != val->data.scalar.length) {
        return fail(ctx, node_pos(val), path, "contains a NUL character");
    }
    switch (parse_scalar(o, scalar_text(val), field)) {
    case PARSE_OK:
        return remember_pos(ctx, field, node_pos(val));
    case PARSE_SYNTAX:
        return fail_expected(ctx, o, val, path, true);
    case PARSE_RANGE:
        return fail_expected(ctx, o, val, path, false);
    case PARSE_NOMEM:
        break;
    }
    return fail_nomem(ctx);
}

/* Apply the default of an option absent from the file. */
static sl_status apply_default(parse_ctx *ctx, const opt_desc *o, void *base,
                               const char *path, sl_config_pos where)
{
    void *field = field_at(base, o->offset);
    parse_result res = PARSE_OK;
    if (o->type == OPT_SECTION) {
        return walk_table(ctx, o->sub, NULL, where, field, path);
    }
    if (o->def == NULL) {
        return SL_OK; /* zero, NULL, or computed in finish() */
    }
    if (o->type == OPT_DURATION_LIST) {
        res = parse_default_list(o, base);
    } else {
        res = parse_scalar(o, o->def, field);
    }
    if (res == PARSE_NOMEM) {
        return fail_nomem(ctx);
    }
    if (res != PARSE_OK) {
        /* A table bug; the unit tests load every default. */
        return sl_diag_set(ctx->diag, SL_INTERNAL,
                           "%s: built-in default \"%s\" does not parse", path,
                           o->def);
    }
    return SL_OK;
}

static const opt_desc *find_opt(const opt_table *tab, const char *key)
{
    for (size_t i = 0; i < tab->nopts; i++) {
        if (strcmp(tab->opts[i].key, key) == 0) {
            return &tab->opts[i];
        }
    }
    return NULL;
}

/* Apply one key of a mapping: refuse non-scalar, duplicate and unknown
 * keys, then apply the value. */
static sl_status apply_pair(parse_ctx *ctx, const opt_table *tab,
                            const yaml_node_t *map, const yaml_node_pair_t *p,
                            void *base, const char *path)
{
    yaml_node_t *key = yaml_document_get_node(ctx->doc, p->key);
    if (key->type != YAML_SCALAR_NODE) {
        char got[100];
        textbuf tg = tb_init(got, sizeof got);
        describe_got(&tg, key);
        return fail(ctx, node_pos(key), path, "expected a key, got %s", got);
    }
    const char *name = scalar_text(key);
    char sub[PATH_MAX_LEN];
    textbuf ts = tb_init(sub, sizeof sub);
    join_key(&ts, path, name);

    const yaml_node_pair_t *first = find_pair(ctx, map, name);
    if (first != p) {
        yaml_node_t *k = yaml_document_get_node(ctx->doc, first->key);
        sl_config_pos at = node_pos(k);
        return fail(ctx, node_pos(key), sub, "duplicate key (first at %d:%d)",
                    at.line, at.column);
    }
    const opt_desc *o = find_opt(tab, name);
    if (o == NULL) {
        const char *hint =
            sl__closest_name(name, tab->opts, tab->nopts, opt_key_at);
        if (hint != NULL) {
            return fail(ctx, node_pos(key), sub,
                        "unknown key (did you mean \"%s\"?)", hint);
        }
        return fail(ctx, node_pos(key), sub, "unknown key");
    }
    yaml_node_t *val = yaml_document_get_node(ctx->doc, p->value);
    return apply_value(ctx, o, val, base, sub);
}

/* Apply @p tab to the mapping @p map (NULL: the section is absent, so only
 * defaults apply and missing required keys are cited at @p where). Keys are
 * applied in file order, so the first error reported is the first in the
 * file; then defaults fill what the file left out. */
static sl_status walk_table(parse_ctx *ctx, const opt_table *tab,
                            const yaml_node_t *map, sl_config_pos where,
                            void *base, const char *path)
{
    sl_status st = SL_OK;
    if (tab->pos_offset != NO_POS) {
        *(sl_config_pos *)field_at(base, tab->pos_offset) = where;
    }
    if (map != NULL) {
        for (const yaml_node_pair_t *p = map->data.mapping.pairs.start;
             p < map->data.mapping.pairs.top; p++) {
            st = apply_pair(ctx, tab, map, p, base, path);
            if (st != SL_OK) {
                return st;
            }
        }
    }
    for (size_t i = 0; i < tab->nopts; i++) {
        const opt_desc *o = &tab->opts[i];
        if (map != NULL && find_pair(ctx, map, o->key) != NULL) {
            continue;
        }
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        join_key(&ts, path, o->key);
        if (o->flags & OPT_REQUIRED) {
            return fail(ctx, where, sub, "missing required key");
        }
        st = apply_default(ctx, o, base, sub, where);
        if (st != SL_OK) {
            return st;
        }
    }
    return SL_OK;
}

/* ---- checks across options ----------------------------------------------- */

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The directory part of "embedded:DIR?query"; length 0 when absent. */
static const char *embedded_dir(const char *url, size_t *len)
{
    const char *dir = url + strlen("embedded:");
    *len = strcspn(dir, "?");
    return dir;
}

static sl_status check_engine(parse_ctx *ctx, sl_config *cfg)
{
    sl_config_pos at = pos_of(ctx, &cfg->engine_url, ctx->root_pos);
    bool known = false;
    for (size_t i = 0; i < ARRAY_LEN(url_schemes) && !known; i++) {
        known = has_prefix(cfg->engine_url, url_schemes[i]);
    }
    if (!known) {
        char shown[256]; /* the URL may hold credentials */
        sl__secret_redact_url(cfg->engine_url, shown, sizeof shown);
        return fail(ctx, at, "engine.url",
                    "unknown engine \"%s\" (expected embedded:DIR, "
                    "memory://, amqp://, amqps://, nats:// or tls://)",
                    shown);
    }
    size_t len = 1;
    if (has_prefix(cfg->engine_url, "embedded:")) {
        embedded_dir(cfg->engine_url, &len);
    }
    if (len == 0) {
        return fail(ctx, at, "engine.url",
                    "\"%s\" names no directory (expected embedded:DIR or "
                    "memory://)",
                    cfg->engine_url);
    }
    return SL_OK;
}

static sl_status check_channels(parse_ctx *ctx, sl_config *cfg)
{
    for (size_t i = 0; i < cfg->nchannels; i++) {
        const sl_config_channel *ch = &cfg->channels[i];
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->channels[j].name, ch->name) != 0) {
                continue;
            }
            char path[PATH_MAX_LEN];
            textbuf tp = tb_init(path, sizeof path);
            tb_add(&tp, "channels[%zu].name", i);
            sl_config_pos first =
                pos_of(ctx, &cfg->channels[j].name, cfg->channels[j].pos);
            return fail(ctx, pos_of(ctx, &ch->name, ch->pos), path,
                        "duplicate channel \"%s\" (first declared at %d:%d)",
                        ch->name, first.line, first.column);
        }
    }
    return SL_OK;
}

static const sl_config_channel *find_channel(const sl_config *cfg,
                                             const char *name)
{
    for (size_t i = 0; i < cfg->nchannels; i++) {
        if (strcmp(cfg->channels[i].name, name) == 0) {
            return &cfg->channels[i];
        }
    }
    return NULL;
}

static sl_status fail_undeclared(parse_ctx *ctx, const sl_config *cfg,
                                 sl_config_pos at, const char *path,
                                 const char *name)
{
    const char *hint =
        sl__closest_name(name, cfg->channels, cfg->nchannels, channel_name_at);
    if (hint != NULL) {
        return fail(ctx, at, path,
                    "channel \"%s\" is not declared in channels (did you "
                    "mean \"%s\"?)",
                    name, hint);
    }
    return fail(ctx, at, path, "channel \"%s\" is not declared in channels",
                name);
}

static sl_status check_handler(parse_ctx *ctx, const sl_config *cfg,
                               sl_config_consumer *c, const char *path)
{
    sl_config_handler *h = &c->handler;
    for (size_t i = 0; i < handler_table.nopts; i++) {
        const opt_desc *o = &handler_table.opts[i];
        if (o->kind == NULL) {
            continue;
        }
        void *field = field_at(h, o->offset);
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.handler.%s", path, o->key);
        if (strcmp(o->kind, h->kind) != 0) {
            if (from_file(ctx, field)) {
                return fail(ctx, pos_of(ctx, field, h->pos), sub,
                            "not used by kind %s (only by kind %s)", h->kind,
                            o->kind);
            }
            /* Defaults of other kinds ("symbol") would only mislead. */
            if (o->type == OPT_STRING) {
                sl_free(*(char **)field);
                *(char **)field = NULL;
            }
        } else if ((o->flags & OPT_KIND_REQUIRED) && o->type == OPT_STRING &&
                   *(char **)field == NULL) {
            return fail(ctx, h->pos, sub,
                        "missing required key (kind %s needs it)", h->kind);
        }
    }
    if (strcmp(h->kind, "http") == 0 && h->reply_to != NULL &&
        find_channel(cfg, h->reply_to) == NULL) {
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.handler.reply_to", path);
        return fail_undeclared(ctx, cfg, pos_of(ctx, &h->reply_to, h->pos), sub,
                               h->reply_to);
    }
    if (strcmp(h->kind, "forward") == 0) {
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.handler.to", path);
        sl_config_pos at = pos_of(ctx, &h->to, h->pos);
        if (find_channel(cfg, h->to) == NULL) {
            return fail_undeclared(ctx, cfg, at, sub, h->to);
        }
        if (strcmp(h->to, c->channel) == 0) {
            return fail(ctx, at, sub,
                        "forwarding to the consumed channel \"%s\" would "
                        "loop forever",
                        h->to);
        }
    }
    return SL_OK;
}

static sl_status check_consumer(parse_ctx *ctx, sl_config *cfg, size_t i)
{
    sl_config_consumer *c = &cfg->consumers[i];
    char path[PATH_MAX_LEN];
    char sub[PATH_MAX_LEN];
    textbuf tp = tb_init(path, sizeof path);
    tb_add(&tp, "consumers[%zu]", i);

    if (find_channel(cfg, c->channel) == NULL) {
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.channel", path);
        return fail_undeclared(ctx, cfg, pos_of(ctx, &c->channel, c->pos), sub,
                               c->channel);
    }
    for (size_t j = 0; j < i; j++) {
        const sl_config_consumer *prev = &cfg->consumers[j];
        if (strcmp(prev->channel, c->channel) != 0 ||
            strcmp(prev->group, c->group) != 0) {
            continue;
        }
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.group", path);
        sl_config_pos first = pos_of(ctx, &prev->group, prev->pos);
        return fail(ctx, pos_of(ctx, &c->group, c->pos), sub,
                    "duplicate group \"%s\" on channel \"%s\" (first at "
                    "consumers[%zu], %d:%d)",
                    c->group, c->channel, j, first.line, first.column);
    }
    if (c->concurrency == 0) {
        c->concurrency = c->prefetch;
    } else if (c->concurrency > c->prefetch) {
        /* More handlers than held deliveries could never all be busy. */
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.concurrency", path);
        return fail(ctx, pos_of(ctx, &c->concurrency, c->pos), sub,
                    "%" PRIu32 " exceeds prefetch %" PRIu32
                    " (concurrency must be <= prefetch)",
                    c->concurrency, c->prefetch);
    }
    return check_handler(ctx, cfg, c, path);
}

/* inbox: "nats-kv" / "nats-kv:BUCKET" (JetStream KV, shared by every
 * process of a group) needs the NATS engine, and cannot hold a
 * transactional handler's effects (SQLite only). */
static sl_status check_inbox(parse_ctx *ctx, sl_config *cfg)
{
    const char *in = cfg->inbox_path;
    if (in == NULL || !has_prefix(in, "nats-kv") ||
        (in[7] != '\0' && in[7] != ':')) {
        return SL_OK;
    }
    sl_config_pos at = pos_of(ctx, &cfg->inbox_path, ctx->root_pos);
    if (!has_prefix(cfg->engine_url, "nats://") &&
        !has_prefix(cfg->engine_url, "tls://")) {
        return fail(ctx, at, "inbox",
                    "\"%s\" keeps idempotency records in JetStream KV: it "
                    "needs the NATS engine (engine.url nats:// or tls://)",
                    in);
    }
    if (in[7] == ':') {
        const char *b = in + 8;
        bool ok = *b != '\0';
        for (const char *c = b; *c && ok; c++) {
            ok = isalnum((unsigned char)*c) || *c == '_' || *c == '-';
        }
        if (!ok) {
            return fail(ctx, at, "inbox",
                        "\"%s\": a bucket name is [A-Za-z0-9_-]+ "
                        "(nats-kv:NAME)",
                        in);
        }
    }
    for (size_t i = 0; i < cfg->nconsumers; i++) {
        const sl_config_consumer *c = &cfg->consumers[i];
        if (!c->idempotency || c->handler.kind == NULL ||
            strcmp(c->handler.kind, "record") != 0) {
            continue;
        }
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "consumers[%zu].handler.kind", i);
        return fail(ctx, pos_of(ctx, &c->handler.kind, c->handler.pos), sub,
                    "'record' commits its effects with the inbox record in "
                    "one SQLite transaction, which cannot work with inbox: "
                    "%s (JetStream KV); use an SQLite inbox file for this "
                    "service, or another handler kind",
                    in);
    }
    return SL_OK;
}

static sl_status derive_inbox(parse_ctx *ctx, sl_config *cfg)
{
    if (cfg->inbox_path != NULL) {
        return SL_OK;
    }
    char *inbox = NULL;
    if (has_prefix(cfg->engine_url, "memory://")) {
        inbox = sl_strdup(":memory:");
    } else if (has_prefix(cfg->engine_url, "embedded:")) {
        size_t len = 0;
        const char *dir = embedded_dir(cfg->engine_url, &len);
        if (len == strlen(":memory:") && has_prefix(dir, ":memory:")) {
            /* No directory to put it in, and idempotency still needs a
             * store: keep it in memory like the engine. */
            inbox = sl_strdup(":memory:");
        } else {
            const char *sep = dir[len - 1] == '/' ? "" : "/";
            size_t size = len + strlen(sep) + strlen("inbox.db") + 1;
            inbox = sl_malloc(size);
            if (inbox != NULL) {
                snprintf(inbox, size, "%.*s%sinbox.db", (int)len, dir, sep);
            }
        }
    } else {
        inbox = sl_strdup("./sluice-inbox.db");
    }
    if (inbox == NULL) {
        return fail_nomem(ctx);
    }
    cfg->inbox_path = inbox;
    return SL_OK;
}

static sl_status check_routes(parse_ctx *ctx, sl_config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        sl_config_route *r = &cfg->routes[i];
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "gateway.routes[%zu].path", i);
        if (r->path[0] != '/') {
            return fail(ctx, pos_of(ctx, &r->path, r->pos), sub,
                        "a path starts with '/', got \"%s\"", r->path);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->routes[j].path, r->path) == 0 &&
                strcmp(cfg->routes[j].method, r->method) == 0) {
                return fail(ctx, pos_of(ctx, &r->path, r->pos), sub,
                            "duplicate route %s %s (first at "
                            "gateway.routes[%zu])",
                            r->method, r->path, j);
            }
        }
        if (find_channel(cfg, r->channel) == NULL) {
            textbuf tc = tb_init(sub, sizeof sub);
            tb_add(&tc, "gateway.routes[%zu].channel", i);
            return fail_undeclared(ctx, cfg, pos_of(ctx, &r->channel, r->pos),
                                   sub, r->channel);
        }
        for (size_t k = 0; k < r->nfields; k++) {
            sl_config_field *f = &r->fields[k];
            if (f->has_minimum && f->has_maximum && f->minimum > f->maximum) {
                textbuf tf = tb_init(sub, sizeof sub);
                tb_add(&tf, "gateway.routes[%zu].fields[%zu].maximum", i, k);
                return fail(ctx, pos_of(ctx, &f->maximum, f->pos), sub,
                            "maximum %g is below minimum %g", f->maximum,
                            f->minimum);
            }
        }
    }
    if (cfg->scale_min > cfg->scale_max) {
        return fail(ctx, pos_of(ctx, &cfg->scale_min, (sl_config_pos){0, 0}),
                    "admin.scale_min",
                    "%" PRIu32 " is above scale_max %" PRIu32, cfg->scale_min,
                    cfg->scale_max);
    }
    return SL_OK;
}

/* The gateway's SQLite state goes next to the inbox. */
static sl_status derive_gateway_state(parse_ctx *ctx, sl_config *cfg)
{
    if (cfg->gateway_state != NULL) {
        return SL_OK;
    }
    const char *inbox = cfg->inbox_path;
    const char *slash = strrchr(inbox, '/');
    char *state = NULL;
    if (strcmp(inbox, ":memory:") == 0) {
        state = sl_strdup(":memory:");
    } else if (slash != NULL) {
        size_t dir = (size_t)(slash - inbox) + 1;
        size_t size = dir + strlen("gateway.db") + 1;
        if ((state = sl_malloc(size)) != NULL) {
            snprintf(state, size, "%.*sgateway.db", (int)dir, inbox);
        }
    } else {
        state = sl_strdup("./sluice-gateway.db");
    }
    if (state == NULL) {
        return fail_nomem(ctx);
    }
    cfg->gateway_state = state;
    return SL_OK;
}

static sl_status finish(parse_ctx *ctx, sl_config *cfg)
{
    sl_status st = check_engine(ctx, cfg);
    if (st == SL_OK) {
        st = check_channels(ctx, cfg);
    }
    for (size_t i = 0; i < cfg->nconsumers && st == SL_OK; i++) {
        st = check_consumer(ctx, cfg, i);
    }
    if (st == SL_OK) {
        st = check_routes(ctx, cfg);
    }
    if (st == SL_OK) {
        st = check_inbox(ctx, cfg);
    }
    if (st != SL_OK) {
        return st;
    }
    if (cfg->burst == 0 && cfg->rate_per_s > 0) {
        /* rate <= 1e9, so 2 x rate fits in 32 bits. */
        cfg->burst = (uint32_t)ceil(2.0 * cfg->rate_per_s);
    }
    if (cfg->gateway_client_burst == 0) {
        cfg->gateway_client_burst = 2.0 * cfg->gateway_client_rate;
    }
    if ((st = derive_inbox(ctx, cfg)) != SL_OK) {
        return st;
    }
    return derive_gateway_state(ctx, cfg);
}

/* ---- loading ------------------------------------------------------------- */

static sl_config_pos offset_pos(const char *text, size_t len, size_t offset)
{
    sl_config_pos pos = {1, 1};
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            pos.line++;
            pos.column = 1;
        } else {
            pos.column++;
        }
    }
    return pos;
}

/* The line of @p text around byte @p offset contains @p word. */
static bool line_has(const char *text, size_t len, size_t offset,
                     const char *word)
{
    if (offset > len) {
        return false;
    }
    size_t start = offset;
    while (start > 0 && text[start - 1] != '\n') {
        start--;
    }
    size_t end = offset;
    while (end < len && text[end] != '\n') {
        end++;
    }
    size_t n = strlen(word);
    for (size_t i = start; i + n <= end; i++) {
        if (memcmp(text + i, word, n) == 0) {
            return true;
        }
    }
    return false;
}

static sl_status parser_failure(parse_ctx *ctx, const yaml_parser_t *parser,
                                const char *text, size_t len)
{
    sl_config_pos at = {(int)parser->problem_mark.line + 1,
                        (int)parser->problem_mark.column + 1};
    const char *problem = parser->problem ? parser->problem : "unknown error";
    switch (parser->error) {
    case YAML_MEMORY_ERROR:
        return fail_nomem(ctx);
    case YAML_READER_ERROR:
        /* Reader errors carry a byte offset, not a mark. */
        return fail(ctx, offset_pos(text, len, parser->problem_offset), NULL,
                    "invalid input: %s", problem);
    default:
        break;
    }
    if (parser->context != NULL) {
        return fail(ctx, at, NULL, "syntax error: %s (%s at %d:%d)", problem,
                    parser->context, (int)parser->context_mark.line + 1,
                    (int)parser->context_mark.column + 1);
    }
    if (line_has(text, len, parser->problem_mark.index, "embedded::memory:")) {
        /* The old spelling of the in-memory engine ends with a colon. */
        return fail(ctx, at, NULL,
                    "syntax error: %s (an unquoted embedded::memory: reads "
                    "as a mapping: write memory://, or quote it)",
                    problem);
    }
    return fail(ctx, at, NULL, "syntax error: %s", problem);
}

static sl_status check_single_document(parse_ctx *ctx, yaml_parser_t *parser,
                                       const char *text, size_t len)
{
    yaml_document_t next;
    if (!yaml_parser_load(parser, &next)) {
        return parser_failure(ctx, parser, text, len);
    }
    yaml_node_t *root = yaml_document_get_root_node(&next);
    sl_status st = SL_OK;
    if (root != NULL) {
        st = fail(ctx, node_pos(root), NULL,
                  "expected one YAML document, found another");
    }
    yaml_document_delete(&next);
    return st;
}

static const char *node_kind(const yaml_node_t *node)
{
    return node->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
}

sl_status sl_config_load_string(const char *yaml, size_t len, const char *name,
                                sl_config **out, sl_diag *diag)
{
    if ((yaml == NULL && len != 0) || out == NULL) {
        return sl_diag_set(diag, SL_INVALID,
                           "sl_config_load_string: NULL argument");
    }
    if (yaml == NULL) {
        yaml = "";
    }
    parse_ctx ctx = {.name = name != NULL ? name : "<string>", .diag = diag};
    yaml_parser_t parser;
    yaml_document_t doc;
    sl_config *cfg = NULL;
    sl_status st = SL_OK;

    if (!yaml_parser_initialize(&parser)) {
        return fail_nomem(&ctx);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        st = parser_failure(&ctx, &parser, yaml, len);
        goto cleanup_parser;
    }
    ctx.doc = &doc;

    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        sl_config_pos start = {1, 1};
        st = fail(&ctx, start, NULL,
                  "empty configuration (expected a mapping with keys such as "
                  "engine, channels and consumers)");
        goto cleanup_doc;
    }
    ctx.root_pos = node_pos(root);
    if (root->type != YAML_MAPPING_NODE) {
        st = fail(&ctx, ctx.root_pos, NULL,
                  "expected a mapping at the top level, got %s",
                  node_kind(root));
        goto cleanup_doc;
    }
    st = check_single_document(&ctx, &parser, yaml, len);
    if (st != SL_OK) {
        goto cleanup_doc;
    }

    cfg = sl_calloc(1, sizeof *cfg);
    if (cfg == NULL || (cfg->path = sl_strdup(ctx.name)) == NULL) {
        st = fail_nomem(&ctx);
        goto cleanup_cfg;
    }
    st = walk_table(&ctx, &root_table, root, ctx.root_pos, cfg, "");
    if (st == SL_OK) {
        st = finish(&ctx, cfg);
    }
    if (st == SL_OK) {
        /* The positions stay with the configuration: checks made when the
         * service is built (engine URL, listen addresses, plugins) cite the
         * value too. */
        cfg->value_pos = ctx.pos;
        cfg->nvalue_pos = ctx.npos;
        ctx.pos = NULL;
        *out = cfg;
        cfg = NULL;
    }

cleanup_cfg:
    sl_config_destroy(cfg);
    sl_free(ctx.pos);
cleanup_doc:
    yaml_document_delete(&doc);
cleanup_parser:
    yaml_parser_delete(&parser);
    return st;
}

sl_status sl_config_load_file(const char *path, sl_config **out, sl_diag *diag)
{
    if (path == NULL || out == NULL) {
        return sl_diag_set(diag, SL_INVALID,
                           "sl_config_load_file: NULL argument");
    }
    sl_status st = SL_OK;
    char *text = NULL;
    size_t len = 0;
    size_t cap = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return sl_diag_set(diag, SL_IO, "%s: cannot open: %s", path,
                           strerror(errno));
    }
    for (;;) {
        if (len == cap) {
            if (cap >= FILE_MAX_SIZE) {
                st = sl_diag_set(diag, SL_CONFIG,
                                 "%s: larger than %u bytes; not a "
                                 "configuration file?",
                                 path, FILE_MAX_SIZE);
                goto cleanup_text;
            }
            cap = cap ? 2 * cap : 4096;
            char *grown = sl_realloc(text, cap);
            if (grown == NULL) {
                st = sl_diag_set(diag, SL_NOMEM, "%s: out of memory", path);
                goto cleanup_text;
            }
            text = grown;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(f)) {
        st = sl_diag_set(diag, SL_IO, "%s: cannot read: %s", path,
                         strerror(errno));
        goto cleanup_text;
    }
    st = sl_config_load_string(text, len, path, out, diag);

cleanup_text:
    sl_free(text);
    fclose(f);
    return st;
}

static void free_table(const opt_table *tab, void *base)
{
    for (size_t i = 0; i < tab->nopts; i++) {
        const opt_desc *o = &tab->opts[i];
        void *field = field_at(base, o->offset);
        switch (o->type) {
        case OPT_STRING:
            sl_free(*(char **)field);
            break;
        case OPT_DURATION_LIST:
            sl_free(*(uint64_t **)field);
            break;
        case OPT_STRING_LIST: {
            char **arr = *(char ***)field;
            size_t n = *(size_t *)field_at(base, o->count_offset);
            for (size_t j = 0; arr != NULL && j < n; j++) {
                sl_free(arr[j]);
            }
            sl_free(arr);
            break;
        }
        case OPT_SECTION:
            free_table(o->sub, field);
            break;
        case OPT_LIST: {
            void *arr = NULL;
            memcpy(&arr, field, sizeof arr);
            size_t n = *(size_t *)field_at(base, o->count_offset);
            for (size_t j = 0; j < n; j++) {
                free_table(o->sub, (char *)arr + j * o->sub->elem_size);
            }
            sl_free(arr);
            break;
        }
        default:
            break;
        }
    }
}

void sl_config_destroy(sl_config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    free_table(&root_table, cfg);
    sl_free(cfg->path);
    sl_free(cfg->value_pos);
    sl_free(cfg);
}

sl_config_pos sl_config_pos_of(const sl_config *cfg, const void *field)
{
    sl_config_pos none = {0, 0};
    if (cfg == NULL) {
        return none;
    }
    for (size_t i = 0; i < cfg->nvalue_pos; i++) {
        if (cfg->value_pos[i].field == field) {
            return cfg->value_pos[i].pos;
        }
    }
    return none;
}

sl_status sl_config_fail(const sl_config *cfg, const void *field,
                         sl_config_pos fallback, const char *key, sl_status st,
                         sl_diag *diag, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *file = cfg != NULL && cfg->path != NULL ? cfg->path : "config";
    sl_config_pos at = sl_config_pos_of(cfg, field);
    if (at.line == 0) {
        at = fallback;
    }
    if (at.line == 0) {
        /* A default value: there is no line to point at, only the key. */
        return sl_diag_set(diag, st, "%s: %s: %s", file, key, msg);
    }
    return sl_diag_set(diag, st, "%s:%d:%d: %s: %s", file, at.line, at.column,
                       key, msg);
}

/* ---- reference ----------------------------------------------------------- */

static void write_type(FILE *out, const opt_desc *o)
{
    char buf[200];
    textbuf tb = tb_init(buf, sizeof buf);
    switch (o->type) {
    case OPT_STRING:
        if (o->choices != NULL) {
            format_choices(&tb, o->choices, "`");
        } else {
            tb_add(&tb, "%s", (o->flags & OPT_NAME) ? "name" : "string");
        }
        break;
    case OPT_UINT32:
    case OPT_UINT64:
        tb_add(&tb, "integer, ");
        format_range(&tb, o);
        break;
    case OPT_DOUBLE:
        tb_add(&tb, "number, ");
        format_range(&tb, o);
        break;
    case OPT_BOOL:
        tb_add(&tb, "bool");
        break;
    case OPT_DURATION:
        tb_add(&tb, "duration, ");
        format_range(&tb, o);
        break;
    case OPT_SIZE:
        tb_add(&tb, "size, ");
        format_range(&tb, o);
        break;
    case OPT_ENUM:
        format_choices(&tb, o->choices, "`");
        break;
    case OPT_DURATION_LIST:
        tb_add(&tb, "list of 1 to %zu durations, each ", o->max_items);
        format_range(&tb, o);
        break;
    case OPT_SECTION:
        tb_add(&tb, "mapping, see `%s`", o->sub->path);
        break;
    case OPT_LIST:
        tb_add(&tb, "list of mappings (at most %zu), see `%s`", o->max_items,
               o->sub->path);
        break;
    case OPT_NUMBER:
        tb_add(&tb, "number");
        break;
    case OPT_STRING_LIST:
        tb_add(&tb, "list of 1 to %zu strings", o->max_items);
        break;
    }
    fputs(buf, out);
}

static void write_default(FILE *out, const opt_desc *o)
{
    if (o->flags & OPT_REQUIRED) {
        fputs("**required**", out);
    } else if (o->flags & OPT_KIND_REQUIRED) {
        fprintf(out, "**required** for `%s`", o->kind);
    } else if (o->type == OPT_DURATION_LIST && o->def != NULL) {
        fprintf(out, "`[%s]`", o->def);
    } else if (o->def != NULL) {
        fprintf(out, "`%s`", o->def);
    } else if (o->def_doc != NULL) {
        fputs(o->def_doc, out);
    } else if (o->type == OPT_LIST) {
        fputs("`[]`", out);
    } else if (o->type == OPT_SECTION) {
        fputs("see section", out);
    } else {
        fputs("none", out);
    }
}

static void write_table(FILE *out, const opt_table *tab)
{
    if (tab->path[0] == '\0') {
        fputs("### Top level\n\n", out);
    } else {
        fprintf(out, "### `%s`\n\n", tab->path);
    }
    fprintf(out, "%s\n\n", tab->doc);
    fputs("| key | type | default | doc |\n", out);
    fputs("|---|---|---|---|\n", out);
    for (size_t i = 0; i < tab->nopts; i++) {
        const opt_desc *o = &tab->opts[i];
        fprintf(out, "| `%s` | ", o->key);
        write_type(out, o);
        fputs(" | ", out);
        write_default(out, o);
        fputs(" | ", out);
        if (o->kind != NULL) {
            fprintf(out, "*%s:* ", o->kind);
        }
        fprintf(out, "%s |\n", o->doc);
    }
    fputs("\n", out);
    for (size_t i = 0; i < tab->nopts; i++) {
        if (tab->opts[i].sub != NULL) {
            write_table(out, tab->opts[i].sub);
        }
    }
}

void sl_config_write_reference(FILE *out)
{
    if (out == NULL) {
        return;
    }
    fputs("## Option reference\n\n"
          "Generated from the option tables in `src/core/config.c` by "
          "`sl_config_write_reference()`.\n"
          "Durations are written `250ms`, `5s`, `1.5m`, `2h`; a plain "
          "number is milliseconds.\n"
          "Sizes are written `1048576`, `512KiB`, `1MiB`, `1GiB`.\n\n",
          out);
    write_table(out, &root_table);
}
