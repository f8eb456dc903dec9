/* A handler plugin: greets people.
 *
 * Consumes `hello.names` events whose data is {"name": "..."}; publishes a
 * `hello.greeted` event with {"greeting": "Hello, ...!"} as a child of the
 * original (same trace, same deadline) and appends the greeting to the file
 * named in the handler's `config`. Data that is not such an object is
 * REJECTed and ends in the dead-letter channel with the reason; a name of
 * "flaky" fails its first two attempts to show retries.
 */
#include <sluice/plugin.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

SLUICE_PLUGIN_DECLARE()

typedef struct greeter {
    FILE *out;
    pthread_mutex_t mu;
} greeter;

sl_status sluice_handler_init(const char *config, void **user);
sl_outcome sluice_handle(sl_handler_ctx *ctx, void *user);
void sluice_handler_fini(void *user);

/* mkdir -p of the directories leading to @p path. */
static void make_parents(const char *path)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
                return;
            }
            *p = '/';
        }
    }
}

sl_status sluice_handler_init(const char *config, void **user)
{
    greeter *g = calloc(1, sizeof *g);
    if (g == NULL) {
        return SL_NOMEM;
    }
    const char *path = config != NULL ? config : "greetings.log";
    make_parents(path);
    g->out = fopen(path, "a");
    if (g->out == NULL) {
        free(g);
        return SL_IO;
    }
    pthread_mutex_init(&g->mu, NULL);
    *user = g;
    return SL_OK;
}

void sluice_handler_fini(void *user)
{
    greeter *g = user;
    fclose(g->out);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

sl_outcome sluice_handle(sl_handler_ctx *ctx, void *user)
{
    greeter *g = user;
    const sl_event *ev = sl_handler_event(ctx);
    size_t len = 0;
    const char *data = sl_event_data(ev, &len);
    json_error_t err;
    json_t *doc = data ? json_loadb(data, len, 0, &err) : NULL;
    const char *name = json_string_value(json_object_get(doc, "name"));
    if (name == NULL || name[0] == '\0') {
        sl_handler_set_error(ctx, "data must be {\"name\": \"...\"}");
        json_decref(doc);
        return SL_OUTCOME_REJECT;
    }
    if (strcmp(name, "flaky") == 0 && sl_handler_attempt(ctx) < 3) {
        sl_handler_set_error(ctx, "flaky on attempt %u",
                             (unsigned)sl_handler_attempt(ctx));
        sl_handler_retry_after(ctx, 200);
        json_decref(doc);
        return SL_OUTCOME_RETRY;
    }
    char greeting[300];
    snprintf(greeting, sizeof greeting, "Hello, %.256s!", name);
    json_decref(doc);

    json_t *out = json_pack("{s:s}", "greeting", greeting);
    char *body = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    sl_event *child = NULL;
    sl_status st =
        sl_event_create_new("/examples/hello", "hello.greeted", &child);
    if (st == SL_OK) {
        sl_event_set(child, SL_ATTR_DATACONTENTTYPE, "application/json");
        st = sl_event_set_data(child, body, strlen(body));
    }
    free(body);
    sl_diag diag = {0};
    if (st == SL_OK) {
        st = sl_handler_publish(ctx, "hello.greeted", child, &diag);
    }
    sl_event_unref(child);
    if (st != SL_OK) {
        sl_handler_set_error(ctx, "publishing the greeting: %s", diag.msg);
        return SL_OUTCOME_RETRY;
    }
    pthread_mutex_lock(&g->mu);
    fprintf(g->out, "%s %s\n", sl_event_id(ev), greeting);
    fflush(g->out);
    pthread_mutex_unlock(&g->mu);
    return SL_OUTCOME_ACK;
}
