/* The embedded engine's internals that tests and metrics may read. */
#ifndef SLUICE_ENGINE_EMBEDDED_H
#define SLUICE_ENGINE_EMBEDDED_H

#include "sluice/engine.h"

/** Encoded bytes of queued events held in memory (store mode; 0 for other
 * engines and for memory mode). */
size_t sl__embedded_resident_bytes(sl_engine *eng);

#endif
