/* sluice — everything public, in one include. */
#ifndef SLUICE_H
#define SLUICE_H

#include "sluice/alloc.h"
#include "sluice/breaker.h"
#include "sluice/clock.h"
#include "sluice/config.h"
#include "sluice/consumer.h"
#include "sluice/duration.h"
#include "sluice/engine.h"
#include "sluice/event.h"
#include "sluice/export.h"
#include "sluice/gateway.h"
#include "sluice/http_handler.h"
#include "sluice/limiter.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/plugin.h"
#include "sluice/producer.h"
#include "sluice/queue.h"
#include "sluice/retry.h"
#include "sluice/service.h"
#include "sluice/status.h"
#include "sluice/token_bucket.h"

#endif
