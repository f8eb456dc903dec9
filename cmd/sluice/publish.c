/* sluice publish: publish events to a channel, confirmed. */
#include "cli.h"

#include "sluice/producer.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char publish_usage[] =
    "usage: sluice publish [OPTIONS] --channel CHANNEL [DATA]\n"
    "\n"
    "Publish events and wait for the engine's confirm. The data comes from\n"
    "DATA, --data-file, or standard input (one event; with --lines, one\n"
    "event per line).\n"
    "\n"
    "  -e, --engine URL        engine (default: the config's, else\n"
    "                          embedded:./data)\n"
    "  -c, --config FILE       take the engine URL from a service config\n"
    "  -C, --channel NAME      target channel (required)\n"
    "  -t, --type TYPE         CloudEvents type (default sluice.event)\n"
    "  -s, --source URI        CloudEvents source (default /sluice/cli)\n"
    "  -i, --id ID             event id (default: a new UUIDv7); with\n"
    "                          --count, ID-1, ID-2, ...\n"
    "      --content-type CT   datacontenttype (default application/json)\n"
    "      --deadline DURATION deadline, relative to now (e.g. 30s)\n"
    "      --data-file FILE    read the data from FILE\n"
    "  -l, --lines             one event per line of standard input\n"
    "  -n, --count N           publish N events (default 1)\n"
    "  -r, --rate R            at most R events per second\n"
    "      --timeout DURATION  publish timeout (default 5s)\n"
    "  -q, --quiet             do not print event ids\n"
    "  -h, --help              this text\n"
    "\n"
    "Exit status 3 means the engine stayed full for the whole timeout\n"
    "(backpressure); 4 means no confirm came in time (outcome unknown:\n"
    "publishing the same id again is safe).\n";

typedef struct pub_args {
    const char *engine;
    const char *config;
    const char *channel;
    const char *type;
    const char *source;
    const char *id;
    const char *content_type;
    const char *data_file;
    const char *data;
    uint64_t deadline_ms;
    uint64_t timeout_ms;
    bool lines;
    bool quiet;
    double count;
    double rate;
} pub_args;

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            break;
        }
        if (n == cap) {
            char *b = realloc(buf, cap * 2);
            if (b == NULL) {
                free(buf);
                return NULL;
            }
            buf = b;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

static int publish_one(sl_producer *p, const pub_args *a, const char *data,
                       size_t len, uint64_t index)
{
    sl_event *ev = NULL;
    if (sl_event_create_new(a->source, a->type, &ev) != SL_OK) {
        cli_error("out of memory");
        return CLI_ERROR;
    }
    char id[256];
    if (a->id != NULL) {
        if (a->count > 1 || a->lines) {
            snprintf(id, sizeof id, "%s-%" PRIu64, a->id, index + 1);
        } else {
            snprintf(id, sizeof id, "%s", a->id);
        }
        sl_event_set(ev, SL_ATTR_ID, id);
    }
    if (a->content_type[0] != '\0') {
        sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, a->content_type);
    }
    if (len > 0) {
        sl_event_set_data(ev, data, len);
    }
    if (a->deadline_ms > 0) {
        sl_event_set_deadline_ms(ev, sl_time_wall_ms() + a->deadline_ms);
    }
    sl_diag diag = {0};
    sl_status st = sl_event_validate(ev, 0, &diag);
    if (st == SL_OK) {
        st = sl_producer_publish(p, a->channel, ev, &diag);
    }
    if (st == SL_OK && !a->quiet) {
        printf("%s\n", sl_event_id(ev));
    }
    sl_event_unref(ev);
    switch (st) {
    case SL_OK:
        return CLI_OK;
    case SL_FULL:
        cli_error("channel %s is full: %s", a->channel, diag.msg);
        return CLI_FULL;
    case SL_TIMEOUT:
        cli_error("%s", diag.msg);
        return CLI_TIMEOUT;
    case SL_NOT_FOUND:
        cli_error("channel '%s' is not declared on this engine", a->channel);
        return CLI_USAGE;
    case SL_TOO_LARGE:
    case SL_INVALID:
        cli_error("event refused: %s", diag.msg);
        return CLI_USAGE;
    default:
        cli_error("%s", diag.msg[0] ? diag.msg : sl_status_str(st));
        return CLI_ERROR;
    }
}

int cmd_publish(int argc, char **argv)
{
    enum { OPT_CT = 256, OPT_DEADLINE, OPT_DATA_FILE, OPT_TIMEOUT };
    static const struct option opts[] = {
        {"engine", required_argument, NULL, 'e'},
        {"config", required_argument, NULL, 'c'},
        {"channel", required_argument, NULL, 'C'},
        {"type", required_argument, NULL, 't'},
        {"source", required_argument, NULL, 's'},
        {"id", required_argument, NULL, 'i'},
        {"content-type", required_argument, NULL, OPT_CT},
        {"deadline", required_argument, NULL, OPT_DEADLINE},
        {"data-file", required_argument, NULL, OPT_DATA_FILE},
        {"lines", no_argument, NULL, 'l'},
        {"count", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    pub_args a = {.type = "sluice.event",
                  .source = "/sluice/cli",
                  .content_type = "application/json",
                  .timeout_ms = 5000,
                  .count = 1};
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "e:c:C:t:s:i:ln:r:qh", opts, NULL)) !=
           -1) {
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
        case 't':
            a.type = optarg;
            break;
        case 's':
            a.source = optarg;
            break;
        case 'i':
            a.id = optarg;
            break;
        case OPT_CT:
            a.content_type = optarg;
            break;
        case OPT_DEADLINE:
            if ((rc = cli_duration("--deadline", optarg, &a.deadline_ms))) {
                return rc;
            }
            break;
        case OPT_DATA_FILE:
            a.data_file = optarg;
            break;
        case 'l':
            a.lines = true;
            break;
        case 'n':
            if ((rc = cli_number("--count", optarg, 1, 1e12, &a.count))) {
                return rc;
            }
            break;
        case 'r':
            if ((rc = cli_number("--rate", optarg, 0.001, 1e9, &a.rate))) {
                return rc;
            }
            break;
        case OPT_TIMEOUT:
            if ((rc = cli_duration("--timeout", optarg, &a.timeout_ms))) {
                return rc;
            }
            break;
        case 'q':
            a.quiet = true;
            break;
        case 'h':
            fputs(publish_usage, stdout);
            return CLI_OK;
        default:
            fputs(publish_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (a.channel == NULL) {
        cli_error("publish: --channel is required");
        return CLI_USAGE;
    }
    if (optind < argc) {
        a.data = argv[optind++];
    }
    if (optind < argc) {
        cli_error("publish: unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }

    /* The data: argument, file or standard input. */
    char *buf = NULL;
    size_t len = 0;
    if (a.data != NULL) {
        len = strlen(a.data);
    } else if (a.data_file != NULL) {
        FILE *f = fopen(a.data_file, "rb");
        if (f == NULL) {
            cli_error("--data-file %s: %s", a.data_file, strerror(errno));
            return CLI_USAGE;
        }
        buf = read_all(f, &len);
        fclose(f);
    } else if (!a.lines) {
        buf = read_all(stdin, &len);
    }

    const char *url = NULL;
    sl_config *cfg = NULL;
    if ((rc = cli_engine_url(a.engine, a.config, &url, &cfg)) != CLI_OK) {
        free(buf);
        return rc;
    }
    sl_engine *eng = NULL;
    if ((rc = cli_open_engine(url, &eng)) != CLI_OK) {
        free(buf);
        sl_config_destroy(cfg);
        return rc;
    }
    sl_producer *p = NULL;
    sl_producer_opts po = {.publish_timeout_ms = a.timeout_ms};
    if (sl_producer_create(eng, &po, &p) != SL_OK) {
        cli_error("cannot create a producer");
        rc = CLI_ERROR;
        goto done;
    }

    uint64_t start_ns = sl_time_mono_ns();
    uint64_t gap_ns = a.rate > 0 ? (uint64_t)(1e9 / a.rate) : 0;
    uint64_t sent = 0;
    rc = CLI_OK;
    if (a.lines) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while (rc == CLI_OK && (n = getline(&line, &cap, stdin)) > 0) {
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
                line[--n] = '\0';
            }
            if (n == 0) {
                continue;
            }
            if (gap_ns) {
                cli_sleep_until_ns(start_ns + sent * gap_ns);
            }
            rc = publish_one(p, &a, line, (size_t)n, sent);
            sent += rc == CLI_OK;
        }
        free(line);
    } else {
        const char *data = a.data ? a.data : buf;
        for (uint64_t i = 0; rc == CLI_OK && i < (uint64_t)a.count; i++) {
            if (gap_ns) {
                cli_sleep_until_ns(start_ns + i * gap_ns);
            }
            rc = publish_one(p, &a, data, len, i);
            sent += rc == CLI_OK;
        }
    }
    double secs = (double)(sl_time_mono_ns() - start_ns) / 1e9;
    if (sent > 1 || rc != CLI_OK) {
        fprintf(stderr,
                "sluice: published %" PRIu64 " event(s) to %s in %.3f s "
                "(%.0f/s)\n",
                sent, a.channel, secs, secs > 0 ? (double)sent / secs : 0.0);
    }
done:
    sl_producer_destroy(p);
    sl_engine_close(eng);
    sl_config_destroy(cfg);
    free(buf);
    return rc;
}
