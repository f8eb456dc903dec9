/* sluice run CONFIG: host a service until SIGTERM/SIGINT, then drain. */
#include "cli.h"

#include "sluice/log.h"
#include "sluice/service.h"

#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char run_usage[] =
    "usage: sluice run [--quiet] CONFIG\n"
    "\n"
    "Host the service CONFIG declares: open the engine, declare channels and\n"
    "groups, start one consumer per group. On SIGTERM or SIGINT: stop\n"
    "fetching, give running handlers drain_timeout to finish, release the\n"
    "rest for redelivery, wait for publish confirms, exit 0. A second\n"
    "SIGTERM or SIGINT during the drain exits at once, with 128 + the\n"
    "signal's number (130 for SIGINT).\n"
    "\n"
    "  -q, --quiet   no start-up banner\n"
    "  -h, --help    this text\n";

/* drain_timeout as a person reads it: "25 s", "1.5 s". */
static void format_seconds(uint64_t ms, char *out, size_t size)
{
    if (ms % 1000 == 0) {
        snprintf(out, size, "%" PRIu64 " s", ms / 1000);
    } else {
        snprintf(out, size, "%.1f s", (double)ms / 1000.0);
    }
}

static void banner(const sl_config *cfg, const sl_service *svc)
{
    char shown[256]; /* the URL may hold credentials */
    sl_log_redact_url(cfg->engine_url, shown, sizeof shown);
    fprintf(stderr, "sluice: %s running on %s (pid %d)\n", cfg->service_name,
            shown, (int)getpid());
    if (sl_service_gateway_port(svc) != 0) {
        fprintf(stderr, "  gateway on port %u:", sl_service_gateway_port(svc));
        for (size_t i = 0; i < cfg->nroutes; i++) {
            fprintf(stderr, " %s %s -> %s;", cfg->routes[i].method,
                    cfg->routes[i].path, cfg->routes[i].channel);
        }
        fprintf(stderr, " GET /status/{id}\n");
    }
    if (sl_service_admin_port(svc) != 0) {
        fprintf(stderr,
                "  admin on port %u: /metrics /healthz /readyz "
                "/scale?group=\n",
                sl_service_admin_port(svc));
    }
    for (size_t i = 0; i < cfg->nchannels; i++) {
        const sl_config_channel *ch = &cfg->channels[i];
        fprintf(stderr, "  channel %-28s max_length %" PRIu64, ch->name,
                ch->max_length);
        if (ch->max_bytes != 0) {
            fprintf(stderr, " max_bytes %" PRIu64, ch->max_bytes);
        }
        fputc('\n', stderr);
    }
    for (size_t i = 0; i < cfg->nconsumers; i++) {
        const sl_config_consumer *cc = &cfg->consumers[i];
        fprintf(stderr,
                "  group   %-28s on %s: %s handler, prefetch %" PRIu32
                ", max_attempts %" PRIu32 "%s\n",
                cc->group, cc->channel, cc->handler.kind, cc->prefetch,
                cc->max_attempts, cc->idempotency ? ", idempotent" : "");
    }
    char drain[32];
    format_seconds(cfg->drain_timeout_ms, drain, sizeof drain);
    fprintf(stderr,
            "  stop with SIGTERM or Ctrl-C (drains for up to %s; a second "
            "one stops at once)\n",
            drain);
}

static const char *signal_name(int sig)
{
    return sig == SIGTERM ? "SIGTERM" : "SIGINT";
}

/* A second SIGTERM or SIGINT while the drain runs: whoever sent it wants
 * the process gone now (a second Ctrl-C). Deliveries still held are
 * redelivered after the engine's ack timeout, as after a crash. */
static void *force_on_second_signal(void *arg)
{
    int sig = 0;
    sigwait(arg, &sig);
    fprintf(stderr,
            "sluice: second %s: exiting now, without finishing the drain "
            "(unfinished deliveries will be redelivered)\n",
            signal_name(sig));
    _exit(128 + sig);
    return NULL;
}

/* "draining, up to 25 s (Ctrl-C again to force)"; then a thread waits
 * for the second signal. */
static void announce_drain(const sl_config *cfg, const sigset_t *sigs)
{
    char drain[32];
    format_seconds(cfg->drain_timeout_ms, drain, sizeof drain);
    fprintf(stderr, "sluice: draining, up to %s (Ctrl-C again to force)\n",
            drain);
    /* Static: the thread outlives this frame, and cmd_run's. */
    static sigset_t watched;
    watched = *sigs;
    pthread_t t;
    if (pthread_create(&t, NULL, force_on_second_signal, &watched) == 0) {
        pthread_detach(t);
    }
}

int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool quiet = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            quiet = true;
            break;
        case 'h':
            fputs(run_usage, stdout);
            return CLI_OK;
        default:
            fputs(run_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind != argc - 1) {
        fputs(run_usage, stderr);
        return CLI_USAGE;
    }
    const char *path = argv[optind];

    /* Signals are taken synchronously by this thread: block them before any
     * other thread exists so that every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    sl_config *cfg = NULL;
    sl_diag diag = {0};
    if (sl_config_load_file(path, &cfg, &diag) != SL_OK) {
        cli_error("%s", diag.msg);
        return CLI_USAGE;
    }
    sl_service *svc = NULL;
    sl_status st = sl_service_create(cfg, &svc, &diag);
    if (st != SL_OK) {
        cli_error("%s", diag.msg[0] ? diag.msg : sl_status_str(st));
        sl_config_destroy(cfg);
        return st == SL_CONFIG || st == SL_INVALID ? CLI_USAGE : CLI_ERROR;
    }
    if ((st = sl_service_start(svc, &diag)) != SL_OK) {
        cli_error("%s", diag.msg);
        sl_service_destroy(svc);
        sl_config_destroy(cfg);
        return CLI_ERROR;
    }
    if (!quiet) {
        banner(cfg, svc);
    }
    int sig = 0;
    sigwait(&sigs, &sig);
    sl_logf(SL_LOG_INFO, "service", "received %s: draining", signal_name(sig));
    announce_drain(cfg, &sigs);
    st = sl_service_stop(svc);
    if (st != SL_OK) {
        /* A handler still runs past drain_timeout: its delivery was released
         * and will be redelivered; exit without waiting for it. */
        fflush(NULL);
        _exit(CLI_OK);
    }
    sl_service_destroy(svc);
    sl_config_destroy(cfg);
    return CLI_OK;
}
