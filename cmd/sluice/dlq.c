/* sluice dlq list|show|replay: a group's dead letters. */
#include "cli.h"

#include "sluice/alloc.h"
#include "sluice/log.h"
#include "sluice/producer.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char dlq_usage[] =
    "usage: sluice dlq list|show|replay [OPTIONS] --channel CH --group G\n"
    "\n"
    "Dead letters of group G on channel CH live in the channel\n"
    "CH.G.dlq, each with its reason (rejected, max_attempts, expired;\n"
    "max_deliveries on NATS when the server stopped delivering it), the\n"
    "attempt count, the last error and its origin.\n"
    "\n"
    "  list      one line per dead letter: id, reason, attempts, time, error\n"
    "  show      the dead letters as CloudEvents JSON (--id for one)\n"
    "  replay    publish dead letters back to their original channel,\n"
    "            keeping their ids, at a bounded rate, then remove them\n"
    "\n"
    "  -e, --engine URL     engine (default: the config's, else\n"
    "                       embedded:./data)\n"
    "  -c, --config FILE    take the engine URL from a service config\n"
    "  -C, --channel NAME   the group's channel (required)\n"
    "  -g, --group NAME     the group (required)\n"
    "  -i, --id ID          only this event id, or the one dead letter\n"
    "                       whose dlqid is ID (an event dead-lettered\n"
    "                       twice has two, each with its own dlqid)\n"
    "  -n, --limit N        at most N dead letters (default: list 100,\n"
    "                       replay all)\n"
    "  -r, --rate R         replay at most R events per second (default 100)\n"
    "  -h, --help           this text\n"
    "\n"
    "With the embedded engine, the store must not be in use by a running\n"
    "service (stop it first, or read its dead letters with list/show on a\n"
    "copy).\n";

typedef struct dlq_args {
    const char *engine;
    const char *config;
    const char *channel;
    const char *group;
    const char *id;
    double limit;
    double rate;
} dlq_args;

static const char *ext_or(const sl_event *ev, const char *name)
{
    const char *v = sl_event_get_ext(ev, name);
    return v ? v : "-";
}

typedef struct visit {
    const dlq_args *a;
    bool json;
    size_t shown;
    int rc;
} visit;

/* --id matches the event's id or the dead letter's own (dlqid). */
static bool id_matches(const dlq_args *a, const sl_event *dead)
{
    const char *dlqid = sl_event_get_ext(dead, "dlqid");
    return a->id == NULL || strcmp(a->id, sl_event_id(dead)) == 0 ||
           (dlqid != NULL && strcmp(a->id, dlqid) == 0);
}

static bool visit_one(const sl_event *ev, uint32_t attempts, void *ctx)
{
    (void)attempts;
    visit *v = ctx;
    if (!id_matches(v->a, ev)) {
        return true;
    }
    if (v->json) {
        char *json = NULL;
        if (sl_event_to_json(ev, &json) == SL_OK) {
            printf("%s\n", json);
            sl_free(json);
        }
    } else {
        printf("%s  %-12s attempts=%-3s %s  %s\n", sl_event_id(ev),
               ext_or(ev, "dlqreason"), ext_or(ev, "dlqattempts"),
               ext_or(ev, "dlqtime"), ext_or(ev, "dlqerror"));
    }
    v->shown++;
    return v->a->limit <= 0 || v->shown < (size_t)v->a->limit;
}

/* What the configuration declares that comes close to the channel or group
 * asked for: "channel 'orders'" or "group 'payments'"; "" when nothing
 * does or there is no configuration. */
static void suggest(const dlq_args *a, const sl_config *cfg, char *buf,
                    size_t size)
{
    buf[0] = '\0';
    if (cfg == NULL) {
        return;
    }
    bool declared = false;
    for (size_t i = 0; i < cfg->nchannels; i++) {
        declared = declared || strcmp(cfg->channels[i].name, a->channel) == 0;
    }
    const char *hint = NULL;
    const char *what = "channel";
    if (!declared) {
        hint = sl_config_suggest_channel(cfg, a->channel);
    } else {
        hint = sl_config_suggest_group(cfg, a->channel, a->group);
        what = "group";
    }
    if (hint != NULL) {
        snprintf(buf, size, " (did you mean %s '%s'?)", what, hint);
    }
}

/* "no group": where it was looked for (the engine URL, credentials
 * hidden), why when the engine said, what is close in the configuration,
 * and how to look in a service's engine instead. */
static int no_group(const dlq_args *a, const char *url, const sl_config *cfg,
                    const char *why)
{
    char shown[256];
    sl_log_redact_url(url, shown, sizeof shown);
    char hint[300];
    suggest(a, cfg, hint, sizeof hint);
    cli_error("no group '%s' on channel '%s' in %s%s%s%s%s", a->group,
              a->channel, shown, why[0] ? ": " : "", why, hint,
              a->config == NULL ? "; to look in a service's engine, pass "
                                  "-c CONFIG (its configuration file)"
                                : "");
    return CLI_USAGE;
}

/* Strip the dead-letter extensions: the replayed event is the original. */
static sl_status undead(const sl_event *dead, sl_event **out)
{
    sl_event *ev = NULL;
    sl_status st = sl_event_clone(dead, &ev);
    static const char *const exts[] = {"dlqid",    "dlqreason",  "dlqattempts",
                                       "dlqerror", "dlqchannel", "dlqgroup",
                                       "dlqtime"};
    for (size_t i = 0; st == SL_OK && i < sizeof exts / sizeof exts[0]; i++) {
        st = sl_event_set_ext(ev, exts[i], NULL);
    }
    if (st != SL_OK) {
        sl_event_unref(ev);
        return st;
    }
    *out = ev;
    return SL_OK;
}

/* How many dead letters replay --id holds while it looks past them. */
#define REPLAY_SCAN 1024

static int replay(sl_engine *eng, const dlq_args *a, const char *dlq)
{
    /* Dead letters that --id does not select are held, not released, until
     * the scan ends: a released one may come straight back (the embedded
     * engine hands it out again first), and would hide the rest. Holding
     * them needs prefetch credit for each. */
    sl_delivery **held = NULL;
    size_t nheld = 0;
    sl_subscription *sub = NULL;
    sl_diag diag = {0};
    sl_subscribe_opts so = {.prefetch = a->id != NULL ? REPLAY_SCAN : 1};
    if (a->id != NULL &&
        (held = sl_calloc(REPLAY_SCAN, sizeof *held)) == NULL) {
        cli_error("out of memory");
        return CLI_ERROR;
    }
    if (sl_engine_subscribe(eng, dlq, SL_DLQ_GROUP, &so, &sub, &diag) !=
        SL_OK) {
        cli_error("%s", diag.msg);
        sl_free(held);
        return CLI_ERROR;
    }
    uint64_t gap_ns = (uint64_t)(1e9 / a->rate);
    uint64_t start = sl_time_mono_ns();
    uint64_t replayed = 0;
    bool scan_full = false;
    int rc = CLI_OK;
    while (a->limit <= 0 || replayed < (uint64_t)a->limit) {
        sl_delivery *d = NULL;
        size_t n = 0;
        sl_status st = sl_subscription_fetch(sub, &d, 1, 500, &n);
        if (st != SL_OK || n == 0) {
            break;
        }
        const sl_event *dead = sl_delivery_event(d);
        if (!id_matches(a, dead)) {
            held[nheld++] = d;
            if (nheld + 1 == REPLAY_SCAN) {
                scan_full = true;
                break;
            }
            continue;
        }
        const char *origin = sl_event_get_ext(dead, "dlqchannel");
        sl_event *ev = NULL;
        if (origin == NULL || undead(dead, &ev) != SL_OK) {
            cli_error("dead letter %s has no origin channel; left in place",
                      sl_event_id(dead));
            sl_delivery_release(&d);
            rc = CLI_ERROR;
            break;
        }
        cli_sleep_until_ns(start + replayed * gap_ns);
        /* Same id, past the dedup window: the original was consumed. */
        st = sl_engine_publish(eng, origin, ev, SL_PUBLISH_NO_DEDUP, 5000,
                               &diag);
        sl_event_unref(ev);
        if (st != SL_OK) {
            sl_delivery_release(&d);
            cli_error("replaying %s to %s: %s", sl_event_id(dead), origin,
                      diag.msg);
            rc = st == SL_FULL ? CLI_FULL : CLI_ERROR;
            break;
        }
        printf("%s -> %s\n", sl_event_id(dead), origin);
        sl_delivery_ack(&d);
        replayed++;
    }
    for (size_t i = 0; i < nheld; i++) {
        sl_delivery_release(&held[i]);
    }
    sl_free(held);
    sl_subscription_close(sub);
    fprintf(stderr, "sluice: replayed %" PRIu64 " dead letter(s) from %s\n",
            replayed, dlq);
    if (rc == CLI_OK && scan_full) {
        cli_error("looked at %d dead letters that --id '%s' does not select "
                  "and stopped; replay or remove those first",
                  REPLAY_SCAN - 1, a->id);
        rc = CLI_ERROR;
    } else if (rc == CLI_OK && a->id != NULL && replayed == 0) {
        cli_error("no dead letter with id '%s' in %s", a->id, dlq);
        rc = CLI_ERROR;
    }
    return rc;
}

int cmd_dlq(int argc, char **argv)
{
    static const struct option opts[] = {
        {"engine", required_argument, NULL, 'e'},
        {"config", required_argument, NULL, 'c'},
        {"channel", required_argument, NULL, 'C'},
        {"group", required_argument, NULL, 'g'},
        {"id", required_argument, NULL, 'i'},
        {"limit", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (cli_wants_help(argc, argv)) {
        fputs(dlq_usage, stdout);
        return CLI_OK;
    }
    if (argc < 2) {
        fputs(dlq_usage, stderr);
        return CLI_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0 &&
        strcmp(sub, "replay") != 0) {
        cli_error("dlq: unknown subcommand '%s' (list, show, replay)", sub);
        return CLI_USAGE;
    }
    dlq_args a = {.rate = 100, .limit = -1};
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "e:c:C:g:i:n:r:h", opts,
                            NULL)) != -1) {
        switch (c) {
        case 'e':
            a.engine = optarg;
            break;
        case 'c':
            a.config = optarg;
            break;
        case 'C':
            a.channel = optarg;
            break;
        case 'g':
            a.group = optarg;
            break;
        case 'i':
            a.id = optarg;
            break;
        case 'n':
            if ((rc = cli_number("--limit", optarg, 1, 1e12, &a.limit))) {
                return rc;
            }
            break;
        case 'r':
            if ((rc = cli_number("--rate", optarg, 0.001, 1e6, &a.rate))) {
                return rc;
            }
            break;
        case 'h':
            fputs(dlq_usage, stdout);
            return CLI_OK;
        default:
            fputs(dlq_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (a.channel == NULL || a.group == NULL) {
        cli_error("dlq %s: --channel and --group are required", sub);
        return CLI_USAGE;
    }
    char dlq[512];
    if (sl_dlq_channel_name(a.channel, a.group, dlq, sizeof dlq) != SL_OK) {
        cli_error("dlq: names too long");
        return CLI_USAGE;
    }
    const char *url = NULL;
    sl_config *cfg = NULL;
    if ((rc = cli_engine_url(a.engine, a.config, &url, &cfg)) != CLI_OK) {
        return rc;
    }
    /* Dead letters are read from a store that exists: none of these
     * commands may create one (a mistyped path would leave an empty store
     * behind, and list would then report an empty group). */
    sl_engine_opts eo = {.open_existing = true};
    sl_engine *eng = NULL;
    sl_diag diag = {0};
    sl_status st = sl_engine_open(url, &eo, &eng, &diag);
    if (st == SL_NOT_FOUND) {
        rc = no_group(&a, url, cfg, diag.msg);
        sl_config_destroy(cfg);
        return rc;
    }
    if (st != SL_OK) {
        cli_error("%s", diag.msg);
        sl_config_destroy(cfg);
        return st == SL_INVALID ? CLI_USAGE : CLI_ERROR;
    }
    if (strcmp(sub, "replay") == 0) {
        rc = replay(eng, &a, dlq);
    } else {
        bool json = strcmp(sub, "show") == 0;
        dlq_args la = a;
        if (!json && la.limit <= 0) {
            la.limit = 100;
        }
        visit v = {&la, json, 0, CLI_OK};
        st = sl_engine_browse(eng, dlq, SL_DLQ_GROUP, 0, visit_one, &v);
        if (st == SL_NOT_FOUND) {
            rc = no_group(&a, url, cfg, "");
        } else if (a.id != NULL && v.shown == 0) {
            cli_error("no dead letter with id '%s' in %s", a.id, dlq);
            rc = CLI_ERROR;
        } else {
            rc = v.rc;
        }
    }
    sl_engine_close(eng);
    sl_config_destroy(cfg);
    return rc;
}
