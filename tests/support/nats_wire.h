/* A nats.c message as nats.c makes it from what the server sent (an HMSG:
 * a header block "NATS/1.0\r\n<name>: <value>\r\n...\r\n" and a payload),
 * for tests and fuzzers of the NATS engine's codec that need no server.
 *
 * nats.c's public API builds messages whose headers are set one by one
 * (natsMsg_Create, natsMsgHeader_Set); received messages keep their raw
 * header block, which nats.c parses when a header is first read. That
 * parser is what real traffic goes through, so it is reached here through
 * natsMsg_create, the function nats.c's connection calls for every
 * message it receives. It is internal to nats.c (src/msg.h) but exported
 * by libnats; its signature is that of nats.c 3.x, checked below.
 */
#ifndef SLUICE_TESTS_SUPPORT_NATS_WIRE_H
#define SLUICE_TESTS_SUPPORT_NATS_WIRE_H

#include <nats/nats.h>

#include <stdlib.h>
#include <string.h>

#if NATS_VERSION_MAJOR != 3
#error "natsMsg_create's signature is that of nats.c 3.x: check src/msg.h"
#endif

natsStatus natsMsg_create(natsMsg **newMsg, const char *subject, int subjLen,
                          const char *reply, int replyLen, const char *buf,
                          int bufLen, int hdrLen);

/* A message on @p subject with header block @p hdr (@p hdr_len bytes,
 * starting "NATS/1.0") and payload @p data (@p len bytes), as received. */
static inline natsStatus nats_wire_msg(natsMsg **out, const char *subject,
                                       const char *hdr, size_t hdr_len,
                                       const void *data, size_t len)
{
    char *buf = malloc(hdr_len + len + 1);
    if (buf == NULL) {
        return NATS_NO_MEMORY;
    }
    memcpy(buf, hdr, hdr_len);
    if (len > 0) {
        memcpy(buf + hdr_len, data, len);
    }
    natsStatus s = natsMsg_create(out, subject, (int)strlen(subject), NULL, 0,
                                  buf, (int)(hdr_len + len), (int)hdr_len);
    free(buf);
    return s;
}

#endif
