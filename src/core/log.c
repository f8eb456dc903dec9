#include "sluice/log.h"

#include "core/secret.h"
#include "sluice/clock.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    sl_log_sink_fn fn;
    void *ctx;
    sl_log_level min_level;
} sink = {sl_log_json_sink, NULL, SL_LOG_WARN};

static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;

const char *sl_log_level_str(sl_log_level level)
{
    switch (level) {
    case SL_LOG_DEBUG:
        return "debug";
    case SL_LOG_INFO:
        return "info";
    case SL_LOG_WARN:
        return "warn";
    case SL_LOG_ERROR:
        return "error";
    }
    return "unknown";
}

void sl_log_set_sink(sl_log_sink_fn fn, void *ctx, sl_log_level min_level)
{
    if (fn == NULL) {
        sink.fn = sl_log_json_sink;
        sink.ctx = NULL;
        sink.min_level = SL_LOG_WARN;
        return;
    }
    sink.fn = fn;
    sink.ctx = ctx;
    sink.min_level = min_level;
}

int sl_log_enabled(sl_log_level level)
{
    return level >= sink.min_level;
}

void sl_log_fields(sl_log_level level, const char *component, const char *msg,
                   const sl_log_field *fields, size_t nfields)
{
    if (!sl_log_enabled(level)) {
        return;
    }
    sl_log_record rec = {level,  sl_time_wall_ms(), component, msg, fields,
                         nfields};
    sink.fn(&rec, sink.ctx);
}

void sl_logf(sl_log_level level, const char *component, const char *fmt, ...)
{
    if (!sl_log_enabled(level)) {
        return;
    }
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sl_log_fields(level, component, buf, NULL, 0);
}

/* A JSON string for any bytes: text that is not valid UTF-8 (an error
 * message quoting bad input) is kept, with its invalid bytes as '?', rather
 * than lost. */
static json_t *text_value(const char *s)
{
    json_t *v = json_string(s);
    if (v != NULL) {
        return v;
    }
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        return NULL;
    }
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)s[i];
        copy[i] = c < 0x80 ? (char)c : '?';
    }
    v = json_string(copy);
    free(copy);
    return v;
}

static bool is_record_key(const char *key)
{
    return strcmp(key, "ts") == 0 || strcmp(key, "level") == 0 ||
           strcmp(key, "component") == 0 || strcmp(key, "msg") == 0;
}

void sl_log_json_sink(const sl_log_record *rec, void *ctx)
{
    FILE *out = ctx != NULL ? (FILE *)ctx : stderr;
    json_t *obj = json_object();
    if (obj == NULL) {
        return;
    }
    json_object_set_new(obj, "ts", json_integer((json_int_t)rec->time_ms));
    json_object_set_new(obj, "level",
                        json_string(sl_log_level_str(rec->level)));
    if (rec->component != NULL) {
        json_object_set_new(obj, "component", json_string(rec->component));
    }
    json_object_set_new(obj, "msg", text_value(rec->msg ? rec->msg : ""));
    for (size_t i = 0; i < rec->nfields; i++) {
        const sl_log_field *f = &rec->fields[i];
        /* A field never replaces the record's own keys. */
        if (f->key != NULL && f->value != NULL && !is_record_key(f->key)) {
            json_object_set_new(obj, f->key, text_value(f->value));
        }
    }
    char *line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (line == NULL) {
        return;
    }
    pthread_mutex_lock(&file_lock);
    fputs(line, out);
    fputc('\n', out);
    fflush(out);
    pthread_mutex_unlock(&file_lock);
    free(line);
}

char *sl_log_redact_url(const char *url, char *buf, size_t size)
{
    return sl__secret_redact_url(url, buf, size);
}
