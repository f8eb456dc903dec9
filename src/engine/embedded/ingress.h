/* Publishing into an embedded store that another process owns.
 *
 * An embedded store belongs to one process (it keeps the queues in
 * memory). Other processes — `sluice publish`, `sluice dlq list` next to a
 * running `sluice run` — open it in client mode: they append events to
 * "<dir>/ingress.db", which the owner drains into its channels, and they
 * read depth and dead letters from the store's database, read-only.
 * A client's publish is confirmed once the event is durably in the ingress;
 * the ingress holds at most SL_INGRESS_MAX events, beyond which a client
 * publish fails with SL_FULL.
 */
#ifndef SLUICE_ENGINE_EMBEDDED_INGRESS_H
#define SLUICE_ENGINE_EMBEDDED_INGRESS_H

#include "engine/driver.h"

#define SL_INGRESS_MAX 10000

typedef struct emb_ingress emb_ingress;

/** One event waiting in the ingress; owned by the reader's buffer. */
typedef struct emb_ingress_row {
    int64_t seq;
    char *channel;
    uint8_t *body;
    size_t len;
    unsigned flags;
} emb_ingress_row;

/* Owner side. */
sl_status sl__emb_ingress_open(const char *dir, emb_ingress **out,
                               sl_diag *diag);
/** Read up to @p max oldest rows; free them with sl__emb_ingress_rows_free. */
sl_status sl__emb_ingress_read(emb_ingress *in, emb_ingress_row *rows,
                               size_t max, size_t *n);
void sl__emb_ingress_rows_free(emb_ingress_row *rows, size_t n);
/** Remove every row up to and including @p seq. */
sl_status sl__emb_ingress_delete_upto(emb_ingress *in, int64_t seq);
void sl__emb_ingress_close(emb_ingress *in);

/* Client side: an engine that only publishes (into the ingress) and reads. */
extern const sl_driver sl__embedded_client_driver;
sl_status sl__embedded_client_open(const char *dir, const sl_engine_opts *opts,
                                   sl_engine **out, sl_diag *diag);

#endif
