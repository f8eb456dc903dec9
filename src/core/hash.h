/* FNV-1a, 64 bits: the one non-cryptographic hash of sluice.
 *
 * For hash tables and short stable digests of names (queue and stream keys,
 * dedup ids, inbox keys). Not keyed: where clients choose the keys, start
 * from a per-instance seed (SL_HASH_FNV1A_OFFSET ^ seed) so that collisions
 * cannot be precomputed. A hash of several strings chains the calls, with
 * a separator byte between them so that ("ab", "c") and ("a", "bc")
 * differ:
 *
 *     uint64_t h = sl__hash_fnv1a_str(stream, SL_HASH_FNV1A_SEED);
 *     h = sl__hash_fnv1a_byte('/', h);
 *     h = sl__hash_fnv1a_str(durable, h);
 */
#ifndef SLUICE_CORE_HASH_H
#define SLUICE_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

/** FNV-1a's 64-bit offset basis: the usual starting value. */
#define SL_HASH_FNV1A_OFFSET 14695981039346656037ULL
/** The starting value sluice's engines have always used, a digit short of
 * the offset basis. It hashes as well; what matters is that digests which
 * outlive a process keep it: NATS inbox subjects of durable consumers and
 * NATS KV inbox keys are made from it, and a new value would orphan them. */
#define SL_HASH_FNV1A_SEED 1469598103934665603ULL
/** FNV-1a's 64-bit prime. */
#define SL_HASH_FNV1A_PRIME 1099511628211ULL

/** Fold one byte into @p h. */
static inline uint64_t sl__hash_fnv1a_byte(unsigned char byte, uint64_t h)
{
    return (h ^ byte) * SL_HASH_FNV1A_PRIME;
}

/** Fold @p len bytes at @p data into @p h (SL_HASH_FNV1A_OFFSET to start). */
static inline uint64_t sl__hash_fnv1a(const void *data, size_t len, uint64_t h)
{
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < len; i++) {
        h = sl__hash_fnv1a_byte(p[i], h);
    }
    return h;
}

/** Fold the bytes of the string @p s (without its NUL) into @p h. */
static inline uint64_t sl__hash_fnv1a_str(const char *s, uint64_t h)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        h = sl__hash_fnv1a_byte(*p, h);
    }
    return h;
}

#endif
