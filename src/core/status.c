#include "sluice/status.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    const char *name;
    const char *text;
    bool retryable;
} status_table[] = {
#define SL__STATUS_ROW(name, text, retryable) {#name, text, retryable},
    SL_STATUS_TABLE(SL__STATUS_ROW)
#undef SL__STATUS_ROW
};

static bool in_range(sl_status st)
{
    return (unsigned)st < (unsigned)SL_STATUS_COUNT_;
}

const char *sl_status_str(sl_status st)
{
    return in_range(st) ? status_table[st].text : "unknown status";
}

const char *sl_status_name(sl_status st)
{
    return in_range(st) ? status_table[st].name : "UNKNOWN";
}

bool sl_status_is_retryable(sl_status st)
{
    return in_range(st) && status_table[st].retryable;
}

sl_status sl_diag_set(sl_diag *diag, sl_status st, const char *fmt, ...)
{
    if (diag != NULL) {
        va_list ap;
        va_start(ap, fmt);
        diag->status = st;
        vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}
