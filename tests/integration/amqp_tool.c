/* A small sluice client for the RabbitMQ integration tests
 * (amqp_chaos_test.sh, amqp_interop_test.sh).
 *
 *   amqp_tool declare URL CHANNEL GROUP
 *       declare the channel and the group (quorum queue), then exit.
 *   amqp_tool produce URL CHANNEL N CONFIRMED_FILE
 *       publish events "ev-0" .. "ev-<N-1>" (512 bytes of data) with a
 *       window of 500; every id whose publish is confirmed is appended to
 *       CONFIRMED_FILE. A refused or failed publish (broker down: "full",
 *       unavailable, outcome unknown) is tried again with the same id after
 *       50 ms, until every id is confirmed; the producer never restarts.
 *       Prints "produce: confirmed N errors E" (E = refusals and failed
 *       confirms seen) and exits 0; exits 1 after 120 s.
 *   amqp_tool consume URL CHANNEL GROUP OUT_FILE [ATTRS]
 *       run a consumer (prefetch 100, concurrency 2) until SIGTERM or
 *       SIGINT; each handled event appends a line to OUT_FILE: its id, or
 *       with ATTRS = "attrs" the tab-separated id, type, source, time (ms),
 *       datacontenttype, correlationid and data.
 *   amqp_tool publish-one URL CHANNEL ID TYPE SOURCE CORRELATIONID DATA
 *       publish one event (datacontenttype text/plain) and wait for its
 *       confirm.
 */
#include "sluice/consumer.h"
#include "sluice/engine.h"
#include "sluice/log.h"
#include "sluice/producer.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, sl_status st, const sl_diag *diag)
{
    fprintf(stderr, "amqp_tool: %s: %s%s%s\n", what, sl_status_str(st),
            diag && diag->msg[0] ? ": " : "", diag ? diag->msg : "");
    exit(1);
}

static sl_engine *open_engine(const char *url)
{
    sl_engine *eng = NULL;
    sl_diag diag = {0};
    sl_status st = sl_engine_open(url, NULL, &eng, &diag);
    if (st != SL_OK) {
        die("open", st, &diag);
    }
    return eng;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- produce ------------------------------------------------------------ */

enum { ST_TODO, ST_SENT, ST_DONE };

typedef struct prod_state {
    pthread_mutex_t mu;
    unsigned char *state; /* per id */
    uint64_t confirmed;
    uint64_t errors;
    int fd;
} prod_state;

typedef struct one {
    prod_state *ps;
    uint64_t i;
} one;

static void on_confirm(sl_status st, void *ctx)
{
    one *o = ctx;
    prod_state *ps = o->ps;
    pthread_mutex_lock(&ps->mu);
    if (st == SL_OK) {
        if (ps->state[o->i] != ST_DONE) {
            char line[32];
            int n = snprintf(line, sizeof line, "ev-%" PRIu64 "\n", o->i);
            if (write(ps->fd, line, (size_t)n) != n) {
                perror("write");
                exit(1);
            }
            ps->confirmed++;
        }
        ps->state[o->i] = ST_DONE;
    } else {
        ps->errors++;
        ps->state[o->i] = ST_TODO; /* outcome unknown or refused: again */
    }
    pthread_mutex_unlock(&ps->mu);
    free(o);
}

static int cmd_produce(const char *url, const char *channel, uint64_t n,
                       const char *path)
{
    prod_state ps = {.fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644)};
    pthread_mutex_init(&ps.mu, NULL);
    ps.state = calloc(n, 1);
    if (ps.fd < 0 || ps.state == NULL) {
        perror(path);
        return 1;
    }
    sl_engine *eng = open_engine(url);
    sl_producer *prod = NULL;
    sl_producer_opts po = {.max_in_flight = 500, .publish_timeout_ms = 200};
    sl_status st = sl_producer_create(eng, &po, &prod);
    if (st != SL_OK) {
        die("producer", st, NULL);
    }
    char data[512];
    memset(data, 'x', sizeof data);
    time_t give_up = time(NULL) + 120;
    for (;;) {
        pthread_mutex_lock(&ps.mu);
        bool all = ps.confirmed == n;
        pthread_mutex_unlock(&ps.mu);
        if (all) {
            break;
        }
        if (time(NULL) > give_up) {
            fprintf(stderr, "produce: gave up: %" PRIu64 " of %" PRIu64
                            " confirmed\n",
                    ps.confirmed, n);
            return 1;
        }
        bool sent_any = false;
        for (uint64_t i = 0; i < n; i++) {
            pthread_mutex_lock(&ps.mu);
            bool todo = ps.state[i] == ST_TODO;
            if (todo) {
                ps.state[i] = ST_SENT;
            }
            pthread_mutex_unlock(&ps.mu);
            if (!todo) {
                continue;
            }
            char id[32];
            snprintf(id, sizeof id, "ev-%" PRIu64, i);
            sl_event *ev = NULL;
            if (sl_event_create_new("/chaos", "chaos.event", &ev) != SL_OK ||
                sl_event_set(ev, SL_ATTR_ID, id) != SL_OK ||
                sl_event_set_data(ev, data, sizeof data) != SL_OK) {
                die("event", SL_NOMEM, NULL);
            }
            one *o = malloc(sizeof *o);
            *o = (one){&ps, i};
            st = sl_producer_publish_async(prod, channel, ev, on_confirm, o);
            sl_event_unref(ev);
            if (st != SL_OK) {
                free(o);
                pthread_mutex_lock(&ps.mu);
                ps.errors++;
                ps.state[i] = ST_TODO;
                pthread_mutex_unlock(&ps.mu);
                sleep_ms(50); /* broker down or window full: later */
                if (time(NULL) > give_up) {
                    break;
                }
                continue;
            }
            sent_any = true;
        }
        if (!sent_any) {
            sleep_ms(20);
        }
    }
    sl_producer_destroy(prod);
    sl_engine_close(eng);
    printf("produce: confirmed %" PRIu64 " errors %" PRIu64 "\n", ps.confirmed,
           ps.errors);
    close(ps.fd);
    return 0;
}

/* ---- consume ------------------------------------------------------------ */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct cons_state {
    int fd;
    bool attrs;
} cons_state;

static sl_outcome handler(sl_handler_ctx *ctx, void *user)
{
    cons_state *cs = user;
    const sl_event *ev = sl_handler_event(ctx);
    char line[2048];
    int n;
    if (cs->attrs) {
        size_t len = 0;
        const char *data = sl_event_data(ev, &len);
        const char *ct = sl_event_get(ev, SL_ATTR_DATACONTENTTYPE);
        const char *corr = sl_event_get(ev, SL_ATTR_CORRELATIONID);
        n = snprintf(line, sizeof line, "%s\t%s\t%s\t%" PRIu64 "\t%s\t%s\t%.*s\n",
                     sl_event_id(ev), sl_event_type(ev),
                     sl_event_get(ev, SL_ATTR_SOURCE), sl_event_time_ms(ev),
                     ct ? ct : "-", corr ? corr : "-", (int)(len > 512 ? 512 : len),
                     data ? data : "");
    } else {
        n = snprintf(line, sizeof line, "%s\n", sl_event_id(ev));
    }
    if (n > 0 && write(cs->fd, line, (size_t)n) != n) {
        return SL_OUTCOME_RETRY;
    }
    return SL_OUTCOME_ACK;
}

static int cmd_consume(const char *url, const char *channel, const char *group,
                       const char *path, bool attrs)
{
    cons_state cs = {.fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644),
                     .attrs = attrs};
    if (cs.fd < 0) {
        perror(path);
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    sl_engine *eng = open_engine(url);
    sl_consumer *c = NULL;
    sl_diag diag = {0};
    sl_consumer_opts co = {.channel = channel,
                           .group = group,
                           .prefetch = 100,
                           .concurrency = 2,
                           .handler = handler,
                           .handler_ctx = &cs,
                           .service = "amqp_tool"};
    sl_status st = sl_consumer_create(eng, &co, &c, &diag);
    if (st == SL_OK) {
        st = sl_consumer_start(c);
    }
    if (st != SL_OK) {
        die("consumer", st, &diag);
    }
    printf("consume: started\n");
    fflush(stdout);
    while (!g_stop) {
        sleep_ms(20);
    }
    sl_consumer_stop(c, 5000);
    sl_consumer_destroy(c);
    sl_engine_close(eng);
    close(cs.fd);
    return 0;
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 5 && strcmp(argv[1], "declare") == 0) {
        sl_engine *eng = open_engine(argv[2]);
        sl_diag diag = {0};
        sl_channel_opts co = {.name = argv[3]};
        sl_group_opts go = {.channel = argv[3], .name = argv[4]};
        sl_status st = sl_engine_declare_channel(eng, &co, &diag);
        if (st == SL_OK) {
            st = sl_engine_declare_group(eng, &go, &diag);
        }
        if (st != SL_OK) {
            die("declare", st, &diag);
        }
        sl_engine_close(eng);
        return 0;
    }
    if (argc == 6 && strcmp(argv[1], "produce") == 0) {
        return cmd_produce(argv[2], argv[3], strtoull(argv[4], NULL, 10),
                           argv[5]);
    }
    if ((argc == 6 || argc == 7) && strcmp(argv[1], "consume") == 0) {
        return cmd_consume(argv[2], argv[3], argv[4], argv[5],
                           argc == 7 && strcmp(argv[6], "attrs") == 0);
    }
    if (argc == 9 && strcmp(argv[1], "publish-one") == 0) {
        sl_engine *eng = open_engine(argv[2]);
        sl_producer *prod = NULL;
        sl_event *ev = NULL;
        sl_status st = sl_producer_create(eng, NULL, &prod);
        if (st == SL_OK) {
            st = sl_event_create_new(argv[6], argv[5], &ev);
        }
        if (st == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_ID, argv[4]);
        }
        if (st == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_CORRELATIONID, argv[7]);
        }
        if (st == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, "text/plain");
        }
        if (st == SL_OK) {
            st = sl_event_set_data(ev, argv[8], strlen(argv[8]));
        }
        if (st == SL_OK) {
            st = sl_producer_publish(prod, argv[3], ev, NULL);
        }
        if (st != SL_OK) {
            die("publish-one", st, NULL);
        }
        sl_event_unref(ev);
        sl_producer_destroy(prod);
        sl_engine_close(eng);
        return 0;
    }
    fprintf(stderr, "usage: see the comment at the top of amqp_tool.c\n");
    return 2;
}
