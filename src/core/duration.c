#include "sluice/duration.h"

#include <stddef.h>

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

sl_status sl_duration_parse_ms(const char *text, uint64_t *out)
{
    if (text == NULL || out == NULL) {
        return SL_INVALID;
    }
    const char *p = skip_blanks(text);
    if (!is_digit(*p)) {
        return SL_INVALID;
    }

    uint64_t whole = 0;
    for (; is_digit(*p); p++) {
        uint64_t digit = (uint64_t)(*p - '0');
        if (whole > (UINT64_MAX - digit) / 10) {
            return SL_INVALID;
        }
        whole = whole * 10 + digit;
    }

    /* The fraction is kept as frac / frac_scale, exactly, so that "1.5s"
     * is 1500 ms with no floating-point rounding. */
    uint64_t frac = 0;
    uint64_t frac_scale = 1;
    if (*p == '.') {
        p++;
        if (!is_digit(*p)) {
            return SL_INVALID;
        }
        for (int n = 0; is_digit(*p); p++, n++) {
            if (n == 9) {
                return SL_INVALID;
            }
            frac = frac * 10 + (uint64_t)(*p - '0');
            frac_scale *= 10;
        }
    }

    p = skip_blanks(p);
    uint64_t unit_ms = 1;
    if (p[0] == 'm' && p[1] == 's') {
        p += 2;
    } else if (p[0] == 's') {
        unit_ms = 1000;
        p++;
    } else if (p[0] == 'm') {
        unit_ms = 60 * 1000;
        p++;
    } else if (p[0] == 'h') {
        unit_ms = 60 * 60 * 1000;
        p++;
    }
    if (*skip_blanks(p) != '\0') {
        return SL_INVALID;
    }

    /* frac < 1e9 and unit_ms <= 3.6e6, so the product fits in 64 bits. */
    uint64_t frac_units = frac * unit_ms;
    if (frac_units % frac_scale != 0) {
        return SL_INVALID; /* finer than one millisecond */
    }
    uint64_t frac_ms = frac_units / frac_scale;
    if (whole > (UINT64_MAX - frac_ms) / unit_ms) {
        return SL_INVALID;
    }
    *out = whole * unit_ms + frac_ms;
    return SL_OK;
}
