/*
 * clang_compat.h — force-included (-include) into every file of the fuzz build only, to let
 * Debian 12's clang 14 compile sources written for gcc: clang 14's __builtin_cpu_supports does
 * not know the feature "f16c" (src/kernels/dot.c asks for it) and refuses to compile. Here every
 * feature string goes through one function that answers "f16c" from CPUID (leaf 1, ECX bit 29)
 * and passes the others to the builtin. Not used by the normal build (gcc knows "f16c").
 */
#ifndef SL_FUZZ_CLANG_COMPAT_H
#define SL_FUZZ_CLANG_COMPAT_H
#if defined(__clang__) && __clang_major__ < 15 && defined(__x86_64__)
#include <cpuid.h>
#include <string.h>

static inline int sl_fuzz_cpu_supports(const char *f) {
    if (!strcmp(f, "f16c")) {
        unsigned a, b, c, d;
        return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    }
#define SL_FUZZ_FEATURE(name) if (!strcmp(f, name)) return __builtin_cpu_supports(name);
    SL_FUZZ_FEATURE("avx2") SL_FUZZ_FEATURE("fma") SL_FUZZ_FEATURE("avx512f") SL_FUZZ_FEATURE("avx512bw")
    SL_FUZZ_FEATURE("avx512vl") SL_FUZZ_FEATURE("avx512dq") SL_FUZZ_FEATURE("avx512vnni") SL_FUZZ_FEATURE("avx512bf16")
    SL_FUZZ_FEATURE("avx") SL_FUZZ_FEATURE("sse4.2") SL_FUZZ_FEATURE("avx512cd")
#undef SL_FUZZ_FEATURE
    return 0;
}
#define __builtin_cpu_supports(f) sl_fuzz_cpu_supports(f)
#endif
#endif
