/* libFuzzer target for the RabbitMQ engine's codec: an AMQP message, as
 * rabbitmq-c decodes it off the wire, to an event.
 *
 * Input: a 2-byte big-endian length n, n bytes of a basic.properties
 * header payload (property flags, then the properties, the headers table
 * among them) decoded by rabbitmq-c's own amqp_decode_properties, and the
 * rest as the body. Built with -DSLUICE_FUZZ=ON (tests/fuzz/CMakeLists.txt)
 * when the RabbitMQ engine is.
 *
 * Whatever decodes must be an event the engine can publish again, and
 * what it publishes must read back with the same id, type and data.
 */
#include "engine/amqp/amqp_int.h"

#include <amqp_framing.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) ||
           (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    size_t n = ((size_t)data[0] << 8) | data[1];
    if (n > size - 2) {
        n = size - 2;
    }
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_bytes_t enc = {.len = n, .bytes = (void *)(data + 2)};
    void *decoded = NULL;
    if (amqp_decode_properties(AMQP_BASIC_CLASS, &pool, enc, &decoded) != 0 ||
        decoded == NULL) {
        empty_amqp_pool(&pool);
        return 0;
    }
    amqp_message_t m;
    memset(&m, 0, sizeof m);
    m.properties = *(amqp_basic_properties_t *)decoded;
    m.body.len = size - 2 - n;
    m.body.bytes = (void *)(data + 2 + n);

    uint64_t uid = 0;
    uint32_t count = 0, base = 0;
    sl__amqp_read_counts(&m, &uid, &count, &base);

    sl_event *ev = NULL;
    if (sl__amqp_message_to_event(&m, "fuzz/queue", &ev) != SL_OK) {
        empty_amqp_pool(&pool);
        return 0;
    }
    if (sl_event_id(ev) == NULL) {
        abort(); /* every event the engine hands out has one (a type only
                  * when the message names one) */
    }
    apub *p = NULL;
    if (sl__amqp_pub_build(ev, "x", "r", uid, base, NULL, &p) != SL_OK) {
        abort();
    }
    amqp_table_entry_t entries[PUB_MAX_HEADERS];
    amqp_message_t again;
    memset(&again, 0, sizeof again);
    sl__amqp_pub_properties(p, &again.properties, entries);
    again.body.len = p->body_len;
    again.body.bytes = p->body;
    sl_event *back = NULL;
    if (sl__amqp_message_to_event(&again, "unused", &back) != SL_OK ||
        !same(sl_event_id(back), sl_event_id(ev)) ||
        !same(sl_event_type(back), sl_event_type(ev))) {
        abort();
    }
    size_t l1 = 0, l2 = 0;
    const void *d1 = sl_event_data(ev, &l1);
    const void *d2 = sl_event_data(back, &l2);
    if (l1 != l2 || (l1 > 0 && memcmp(d1, d2, l1) != 0)) {
        abort();
    }
    sl_event_unref(back);
    sl__amqp_pub_free(p);
    sl_event_unref(ev);
    empty_amqp_pool(&pool);
    return 0;
}
