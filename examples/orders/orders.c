/* The order-processing services of examples/orders, as one handler plugin
 * with a function per service:
 *
 *   orders_validate    orders.created -> orders.validated
 *                      checks the order, reserves inventory (REJECT when
 *                      out of stock: the order fails)
 *   orders_ship        payments.completed -> orders.shipped
 *   orders_notify      orders.shipped: the end of the happy path
 *   orders_compensate  dead letters of the payment group: the saga's
 *                      compensation, releasing the reserved inventory
 *
 * Payment itself is not here: the `payment` group is an HTTP handler that
 * calls the payment provider and publishes its answer (see service.yaml).
 *
 * Inventory is kept in memory, seeded from the init `config` string
 * ("A-1=1000,B-2=500"), and reservations are keyed by order id, so a
 * redelivered order never reserves twice and a compensation releases what
 * was reserved at most once. Events a stage publishes get ids derived from
 * the order id ("<order>.validated"), so a redelivery republishes the same
 * id: the engine drops the copy and the payment provider sees the same
 * Idempotency-Key — nobody is charged twice.
 *
 * Domain metrics: orders_published_total (orders accepted by the order
 * service), orders_processed_total, orders_failed_total{reason},
 * order_processing_seconds (order created to notification).
 */
#include <sluice/plugin.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

SLUICE_PLUGIN_DECLARE()

#define MAX_SKUS 64
#define RESERVATION_BUCKETS 65536

typedef struct reservation {
    struct reservation *next;
    char order_id[64];
    int sku;
    long qty;
    bool released;
} reservation;

typedef struct stock {
    char sku[32];
    long available;
} stock;

/* One inventory shared by every group of the process (one plugin load per
 * group, one static state: that is the point of an inventory). */
static struct {
    pthread_mutex_t mu;
    bool ready;
    stock skus[MAX_SKUS];
    int nskus;
    reservation *buckets[RESERVATION_BUCKETS];
} inv = {.mu = PTHREAD_MUTEX_INITIALIZER};

sl_status sluice_handler_init(const char *config, void **user);
sl_outcome orders_validate(sl_handler_ctx *ctx, void *user);
sl_outcome orders_ship(sl_handler_ctx *ctx, void *user);
sl_outcome orders_notify(sl_handler_ctx *ctx, void *user);
sl_outcome orders_compensate(sl_handler_ctx *ctx, void *user);
sl_outcome sluice_handle(sl_handler_ctx *ctx, void *user);

/* ---- domain metrics --------------------------------------------------- */

static sl_metric *counter(sl_handler_ctx *ctx, const char *name,
                          const char *help, const char *label,
                          const char *value)
{
    sl_metrics *reg = sl_handler_metrics(ctx);
    sl_metric_family *fam = NULL;
    sl_metric_opts o = {.name = name,
                        .help = help,
                        .labels = label ? SL_LABELS(label) : NULL,
                        .nlabels = label ? 1 : 0};
    if (reg == NULL || sl_metrics_counter(reg, &o, &fam, NULL) != SL_OK) {
        return NULL;
    }
    return sl_metric_get(fam, label ? SL_LABELS(value) : NULL);
}

static void observe_processing(sl_handler_ctx *ctx, double seconds)
{
    static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                     0.5,   1,    2.5,   5,    10,  30};
    sl_metrics *reg = sl_handler_metrics(ctx);
    sl_metric_family *fam = NULL;
    sl_metric_opts o = {.name = "order_processing_seconds",
                        .help = "Time from order creation to notification.",
                        .buckets = buckets,
                        .nbuckets = sizeof buckets / sizeof buckets[0]};
    if (reg != NULL && sl_metrics_histogram(reg, &o, &fam, NULL) == SL_OK) {
        sl_histogram_observe(sl_metric_get(fam, NULL), seconds);
    }
}

sl_status sluice_handler_init(const char *config, void **user)
{
    *user = NULL;
    pthread_mutex_lock(&inv.mu);
    if (!inv.ready && config != NULL) {
        char buf[2048];
        snprintf(buf, sizeof buf, "%s", config);
        char *save = NULL;
        for (char *item = strtok_r(buf, ",", &save);
             item != NULL && inv.nskus < MAX_SKUS;
             item = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(item, '=');
            if (eq == NULL) {
                continue;
            }
            *eq = '\0';
            stock *s = &inv.skus[inv.nskus++];
            snprintf(s->sku, sizeof s->sku, "%s", item);
            s->available = strtol(eq + 1, NULL, 10);
        }
        inv.ready = true;
    }
    pthread_mutex_unlock(&inv.mu);
    return SL_OK;
}

/* The order id: the id of the request's event, which every later event
 * carries as its correlationid. */
static const char *order_id_of(const sl_event *ev)
{
    const char *c = sl_event_get(ev, SL_ATTR_CORRELATIONID);
    return c != NULL ? c : sl_event_id(ev);
}

static json_t *data_of(sl_handler_ctx *ctx)
{
    size_t len = 0;
    const char *data = sl_event_data(sl_handler_event(ctx), &len);
    json_error_t err;
    json_t *doc = data != NULL ? json_loadb(data, len, 0, &err) : NULL;
    if (doc == NULL || !json_is_object(doc)) {
        sl_handler_set_error(ctx, "data is not a JSON object");
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static unsigned bucket_of(const char *id)
{
    unsigned h = 2166136261u;
    for (const char *p = id; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    return h % RESERVATION_BUCKETS;
}

static reservation *find_reservation(const char *order_id)
{
    for (reservation *r = inv.buckets[bucket_of(order_id)]; r; r = r->next) {
        if (strcmp(r->order_id, order_id) == 0) {
            return r;
        }
    }
    return NULL;
}

/* Publish @p doc (stolen) as a child of the current event, with the id
 * "<order id>.<suffix>". */
static sl_outcome publish_json(sl_handler_ctx *ctx, const char *channel,
                               const char *type, const char *suffix,
                               json_t *doc)
{
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    sl_event *ev = NULL;
    sl_status st =
        body ? sl_event_create_new("/examples/orders", type, &ev) : SL_NOMEM;
    if (st == SL_OK) {
        char id[128];
        snprintf(id, sizeof id, "%s.%s", order_id_of(sl_handler_event(ctx)),
                 suffix);
        sl_event_set(ev, SL_ATTR_ID, id);
        sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, "application/json");
        st = sl_event_set_data(ev, body, strlen(body));
    }
    free(body);
    sl_diag diag = {0};
    if (st == SL_OK) {
        st = sl_handler_publish(ctx, channel, ev, &diag);
    }
    sl_event_unref(ev);
    if (st != SL_OK) {
        sl_handler_set_error(ctx, "publishing to %s: %s", channel,
                             diag.msg[0] ? diag.msg : sl_status_str(st));
        return SL_OUTCOME_RETRY;
    }
    return SL_OUTCOME_ACK;
}

sl_outcome orders_validate(sl_handler_ctx *ctx, void *user)
{
    (void)user;
    json_t *doc = data_of(ctx);
    if (doc == NULL) {
        return SL_OUTCOME_REJECT;
    }
    const char *sku = json_string_value(json_object_get(doc, "sku"));
    json_int_t qty = json_integer_value(json_object_get(doc, "qty"));
    double amount = json_number_value(json_object_get(doc, "amount"));
    if (sku == NULL || qty < 1 || amount <= 0) {
        sl_handler_set_error(ctx, "an order needs sku, qty >= 1, amount > 0");
        json_decref(doc);
        return SL_OUTCOME_REJECT;
    }
    const char *order_id = order_id_of(sl_handler_event(ctx));
    pthread_mutex_lock(&inv.mu);
    reservation *r = find_reservation(order_id);
    if (r == NULL) {
        int i = 0;
        while (i < inv.nskus && strcmp(inv.skus[i].sku, sku) != 0) {
            i++;
        }
        if (i == inv.nskus || inv.skus[i].available < qty) {
            pthread_mutex_unlock(&inv.mu);
            sl_handler_set_error(ctx, "out of stock: %s", sku);
            sl_counter_inc(counter(ctx, "orders_failed_total",
                                   "Orders that failed, by reason.", "reason",
                                   "out_of_stock"));
            json_decref(doc);
            return SL_OUTCOME_REJECT;
        }
        r = calloc(1, sizeof *r);
        if (r == NULL) {
            pthread_mutex_unlock(&inv.mu);
            json_decref(doc);
            return SL_OUTCOME_RETRY;
        }
        snprintf(r->order_id, sizeof r->order_id, "%s", order_id);
        r->sku = i;
        r->qty = (long)qty;
        inv.skus[i].available -= (long)qty;
        unsigned b = bucket_of(order_id);
        r->next = inv.buckets[b];
        inv.buckets[b] = r;
        sl_counter_inc(counter(ctx, "orders_published_total",
                               "Orders accepted by the order service.", NULL,
                               NULL));
    }
    pthread_mutex_unlock(&inv.mu);
    json_object_set_new(doc, "order_id", json_string(order_id));
    json_object_set_new(
        doc, "created_ms",
        json_integer((json_int_t)sl_event_time_ms(sl_handler_event(ctx))));
    return publish_json(ctx, "orders.validated", "order.validated", "validated",
                        doc);
}

sl_outcome orders_ship(sl_handler_ctx *ctx, void *user)
{
    (void)user;
    json_t *doc = data_of(ctx);
    if (doc == NULL) {
        return SL_OUTCOME_REJECT;
    }
    /* The payment answer carries the charge; the order's creation time
     * rides along from the validated order. */
    json_t *out = json_pack("{s:s,s:O}", "order_id",
                            order_id_of(sl_handler_event(ctx)), "charge", doc);
    json_decref(doc);
    return publish_json(ctx, "orders.shipped", "order.shipped", "shipped", out);
}

sl_outcome orders_notify(sl_handler_ctx *ctx, void *user)
{
    (void)user;
    /* The customer would be told here. The order was created when the
     * request reached the gateway: the time of the correlated request is
     * not carried, so the time since this event's ancestor is estimated
     * from the id's UUIDv7 timestamp when it is one. */
    const char *oid = order_id_of(sl_handler_event(ctx));
    uint64_t created = 0;
    if (strlen(oid) >= 13 && oid[8] == '-') {
        char hex[13];
        memcpy(hex, oid, 8);
        memcpy(hex + 8, oid + 9, 4);
        hex[12] = '\0';
        created = strtoull(hex, NULL, 16);
    }
    uint64_t now = sl_time_wall_ms();
    if (created != 0 && created <= now) {
        observe_processing(ctx, (double)(now - created) / 1000.0);
    }
    sl_counter_inc(counter(ctx, "orders_processed_total",
                           "Orders shipped and notified.", NULL, NULL));
    return SL_OUTCOME_ACK;
}

sl_outcome orders_compensate(sl_handler_ctx *ctx, void *user)
{
    (void)user;
    const char *order_id = order_id_of(sl_handler_event(ctx));
    pthread_mutex_lock(&inv.mu);
    reservation *r = find_reservation(order_id);
    bool released = false;
    if (r != NULL && !r->released) {
        inv.skus[r->sku].available += r->qty;
        r->released = true;
        released = true;
    }
    pthread_mutex_unlock(&inv.mu);
    if (released) {
        const char *why = sl_event_get_ext(sl_handler_event(ctx), "dlqreason");
        sl_counter_inc(counter(ctx, "orders_failed_total",
                               "Orders that failed, by reason.", "reason",
                               why != NULL && strcmp(why, "rejected") == 0
                                   ? "payment_declined"
                                   : "payment_failed"));
    }
    return SL_OUTCOME_ACK;
}

sl_outcome sluice_handle(sl_handler_ctx *ctx, void *user)
{
    return orders_validate(ctx, user);
}
