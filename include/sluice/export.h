/* sluice — which symbols the shared library exports.
 *
 * libsluice is built with -fvisibility=hidden: a function is part of the
 * library's ABI only when its declaration in a public header carries
 * SL_API. Everything else, the internal sl__* functions included, stays
 * inside the library, so applications cannot come to depend on it and the
 * dynamic linker has fewer symbols to resolve. A test compares the shared
 * library's dynamic symbols with the declarations of include/sluice/.
 */
#ifndef SLUICE_EXPORT_H
#define SLUICE_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define SL_API __attribute__((visibility("default")))
#else
#define SL_API
#endif

#endif
