/* A small sluice client for the RabbitMQ integration tests
 * (amqp_chaos_test.sh, amqp_interop_test.sh).
 *
 *   amqp_tool declare URL CHANNEL GROUP [MAX_LENGTH]
 *       declare the channel (with max_length MAX_LENGTH) and the group
 *       (quorum queue), then exit; on failure print the engine's message
 *       ("amqp_tool: declare: STATUS: MESSAGE") and exit 1.
 *   amqp_tool produce URL CHANNEL N CONFIRMED_FILE [PREFIX]
 *       publish events "ev-0" .. "ev-<N-1>" (PREFIX instead of "ev-"
 *       when given; 512 bytes of data) with a
 *       window of 500; every id whose publish is confirmed is appended to
 *       CONFIRMED_FILE. A refused or failed publish (broker down: "full",
 *       unavailable, outcome unknown) is tried again with the same id after
 *       50 ms, until every id is confirmed; the producer never restarts.
 *       Prints "produce: confirmed N errors E" (E = refusals and failed
 *       confirms seen), then "produce: full F" (F of them SL_FULL: window,
 *       room or a blocked connection), and exits 0; exits 1 after 120 s.
 *       With AMQP_TOOL_PACE_MS=P in the environment it waits P ms after
 *       each accepted publish (a steady producer rather than a burst).
 *   amqp_tool consume URL CHANNEL GROUP OUT_FILE [ATTRS]
 *       run a consumer (prefetch 100, concurrency 2) until SIGTERM or
 *       SIGINT; each handled event appends a line to OUT_FILE: its id, or
 *       with ATTRS = "attrs" the tab-separated id, type, source, time (ms),
 *       datacontenttype, correlationid and data.
 *   amqp_tool publish-one URL CHANNEL ID TYPE SOURCE CORRELATIONID DATA
 *       publish one event (datacontenttype text/plain) and wait for its
 *       confirm.
 *   amqp_tool watch URL [CHANNEL]
 *       open the engine, then print "ready T" or "unready T" (T: wall-clock
 *       ms) each time sl_engine_is_ready() changes (sampled every 10 ms),
 *       until SIGTERM or SIGINT. With CHANNEL, also publish 64 KiB events
 *       to it as fast as the engine takes them (so that writes block when
 *       the broker stops reading); prints "published N refused M" at the
 *       end.
 *   amqp_tool delete-queue URL QUEUE
 *       delete QUEUE with rabbitmq-c itself (not through sluice), as an
 *       operator would.
 */
#include "sluice/consumer.h"
#include "sluice/engine.h"
#include "sluice/log.h"
#include "sluice/producer.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>

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
    uint64_t full; /* of the errors: SL_FULL (window, room, blocked) */
    int fd;
    const char *prefix; /* of the ids */
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
            int n = snprintf(line, sizeof line, "%s%" PRIu64 "\n", ps->prefix,
                             o->i);
            if (write(ps->fd, line, (size_t)n) != n) {
                perror("write");
                exit(1);
            }
            ps->confirmed++;
        }
        ps->state[o->i] = ST_DONE;
    } else {
        ps->errors++;
        ps->full += st == SL_FULL;
        ps->state[o->i] = ST_TODO; /* outcome unknown or refused: again */
    }
    pthread_mutex_unlock(&ps->mu);
    free(o);
}

static int cmd_produce(const char *url, const char *channel, uint64_t n,
                       const char *path, const char *prefix)
{
    prod_state ps = {.fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644),
                     .prefix = prefix};
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
    const char *pace_env = getenv("AMQP_TOOL_PACE_MS");
    unsigned pace_ms =
        pace_env != NULL ? (unsigned)strtoul(pace_env, NULL, 10) : 0;
    time_t give_up = time(NULL) + 120;
    for (;;) {
        pthread_mutex_lock(&ps.mu);
        bool all = ps.confirmed == n;
        pthread_mutex_unlock(&ps.mu);
        if (all) {
            break;
        }
        if (time(NULL) > give_up) {
            fprintf(stderr,
                    "produce: gave up: %" PRIu64 " of %" PRIu64 " confirmed\n",
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
            snprintf(id, sizeof id, "%s%" PRIu64, prefix, i);
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
                ps.full += st == SL_FULL;
                ps.state[i] = ST_TODO;
                pthread_mutex_unlock(&ps.mu);
                sleep_ms(50); /* broker down or window full: later */
                if (time(NULL) > give_up) {
                    break;
                }
                continue;
            }
            sent_any = true;
            if (pace_ms > 0) {
                sleep_ms(pace_ms);
            }
        }
        if (!sent_any) {
            sleep_ms(20);
        }
    }
    sl_producer_destroy(prod);
    sl_engine_close(eng);
    printf("produce: confirmed %" PRIu64 " errors %" PRIu64 "\n", ps.confirmed,
           ps.errors);
    printf("produce: full %" PRIu64 "\n", ps.full);
    close(ps.fd);
    free(ps.state);
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
        n = snprintf(line, sizeof line,
                     "%s\t%s\t%s\t%" PRIu64 "\t%s\t%s\t%.*s\n", sl_event_id(ev),
                     sl_event_type(ev), sl_event_get(ev, SL_ATTR_SOURCE),
                     sl_event_time_ms(ev), ct ? ct : "-", corr ? corr : "-",
                     (int)(len > 512 ? 512 : len), data ? data : "");
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

/* ---- watch --------------------------------------------------------------- */

typedef struct flood_state {
    atomic_uint_fast64_t confirmed;
    atomic_uint_fast64_t failed;
} flood_state;

static void on_flood_confirm(sl_status st, void *ctx)
{
    flood_state *fs = ctx;
    if (st == SL_OK) {
        atomic_fetch_add(&fs->confirmed, 1);
    } else {
        atomic_fetch_add(&fs->failed, 1);
    }
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int cmd_watch(const char *url, const char *channel)
{
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    sl_engine *eng = open_engine(url);
    flood_state fs = {0};
    uint64_t published = 0, refused = 0;
    static char data[64 * 1024];
    memset(data, 'f', sizeof data);
    int ready = -1;
    while (!g_stop) {
        int now = sl_engine_is_ready(eng) ? 1 : 0;
        if (now != ready) {
            printf("%s %" PRIu64 "\n", now ? "ready" : "unready", wall_ms());
            ready = now;
        }
        if (channel == NULL) {
            sleep_ms(10);
            continue;
        }
        /* Flood: as fast as the engine takes events. */
        sl_event *ev = NULL;
        if (sl_event_create_new("/watch", "watch.event", &ev) != SL_OK ||
            sl_event_set_data(ev, data, sizeof data) != SL_OK) {
            die("event", SL_NOMEM, NULL);
        }
        sl_status st =
            sl_engine_publish_async(eng, channel, ev, 0, on_flood_confirm, &fs);
        sl_event_unref(ev);
        if (st == SL_OK) {
            published++;
        } else {
            refused++;
            sleep_ms(10);
        }
    }
    sl_engine_close(eng);
    if (channel != NULL) {
        printf("published %" PRIu64 " refused %" PRIu64 " confirmed %" PRIu64
               " failed %" PRIu64 "\n",
               published, refused, (uint64_t)atomic_load(&fs.confirmed),
               (uint64_t)atomic_load(&fs.failed));
    }
    return 0;
}

/* ---- delete-queue (raw rabbitmq-c) --------------------------------------- */

static int cmd_delete_queue(const char *url, const char *queue)
{
    char *copy = strdup(url);
    struct amqp_connection_info ci;
    amqp_default_connection_info(&ci);
    char *q = copy ? strchr(copy, '?') : NULL;
    if (q != NULL) {
        *q = '\0';
    }
    if (copy == NULL || amqp_parse_url(copy, &ci) != AMQP_STATUS_OK) {
        fprintf(stderr, "amqp_tool: delete-queue: bad URL\n");
        return 1;
    }
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    if (sock == NULL || amqp_socket_open(sock, ci.host, ci.port) != 0) {
        fprintf(stderr, "amqp_tool: delete-queue: cannot connect\n");
        return 1;
    }
    amqp_rpc_reply_t r =
        amqp_login(conn, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                   ci.user, ci.password);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        amqp_channel_open(conn, 1);
        r = amqp_get_rpc_reply(conn);
    }
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        amqp_queue_delete(conn, 1, amqp_cstring_bytes(queue), 0, 0);
        r = amqp_get_rpc_reply(conn);
    }
    int rc = r.reply_type == AMQP_RESPONSE_NORMAL ? 0 : 1;
    if (rc != 0) {
        fprintf(stderr, "amqp_tool: delete-queue %s failed\n", queue);
    }
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    free(copy);
    return rc;
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The tests read the engine's information lines too (reconnected,
     * subscribed again). */
    sl_log_set_sink(sl_log_json_sink, stderr, SL_LOG_INFO);
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "declare") == 0) {
        sl_engine *eng = open_engine(argv[2]);
        sl_diag diag = {0};
        sl_channel_opts co = {.name = argv[3],
                              .max_length =
                                  argc == 6 ? strtoull(argv[5], NULL, 10) : 0};
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
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "watch") == 0) {
        return cmd_watch(argv[2], argc == 4 ? argv[3] : NULL);
    }
    if (argc == 4 && strcmp(argv[1], "delete-queue") == 0) {
        return cmd_delete_queue(argv[2], argv[3]);
    }
    if ((argc == 6 || argc == 7) && strcmp(argv[1], "produce") == 0) {
        return cmd_produce(argv[2], argv[3], strtoull(argv[4], NULL, 10),
                           argv[5], argc == 7 ? argv[6] : "ev-");
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
