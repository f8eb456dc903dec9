#include "sluice/clock.h"

#include "core/waiter.h"

#include <time.h>

static uint64_t read_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t sl_time_wall_ms(void)
{
    return read_ns(CLOCK_REALTIME) / 1000000u;
}

uint64_t sl_time_mono_ms(void)
{
    return read_ns(CLOCK_MONOTONIC) / 1000000u;
}

uint64_t sl_time_mono_ns(void)
{
    return read_ns(CLOCK_MONOTONIC);
}

static uint64_t system_now(void *ctx)
{
    (void)ctx;
    return sl_time_wall_ms();
}

static const sl_clock system_clock = {system_now, NULL};

const sl_clock *sl_clock_system(void)
{
    return &system_clock;
}

uint64_t sl_clock_now_ms(const sl_clock *clk)
{
    return clk == NULL ? sl_time_wall_ms() : clk->now_ms(clk->ctx);
}

static uint64_t manual_now(void *ctx)
{
    return atomic_load(&((sl_manual_clock *)ctx)->now_ms);
}

void sl_manual_clock_init(sl_manual_clock *mc, uint64_t start_ms)
{
    mc->clock.now_ms = manual_now;
    mc->clock.ctx = mc;
    atomic_init(&mc->now_ms, start_ms);
}

bool sl__clock_is_manual(const sl_clock *clk)
{
    return clk != NULL && clk->now_ms == manual_now;
}

void sl_manual_clock_advance(sl_manual_clock *mc, uint64_t ms)
{
    atomic_fetch_add(&mc->now_ms, ms);
    sl__clock_waiters_wake();
}
