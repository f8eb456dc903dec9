/* "Did you mean": the closest of a set of names to a word a user typed.
 *
 * Shared by the configuration loader (unknown keys, enum values, channels)
 * and the CLI (channel and group names). Internal: not part of the public
 * API.
 */
#ifndef SLUICE_CORE_SUGGEST_H
#define SLUICE_CORE_SUGGEST_H

#include <stddef.h>

/** The name of item @p i of @p items; NULL to skip it. */
typedef const char *(*sl_name_at_fn)(const void *items, size_t i);

/**
 * The name among @p n items (read through @p get) closest to @p word, if it
 * is within edit distance 2 and not @p word itself; else NULL. Ties go to
 * the first. The result points into @p items.
 */
const char *sl__closest_name(const char *word, const void *items, size_t n,
                             sl_name_at_fn get);

#endif
