/*
 * dispatch.c — run-time choice of the kernel variant, and the public entry points for activation
 * preparation, row dot products and row axpy, which forward to the chosen variant.
 *
 * The variant is resolved once, on first use, from __builtin_cpu_supports (which also checks
 * that the OS saves the wide registers), unless the environment variable SKIPLLAMA_KERNELS
 * names one (scalar, avx2, avx512 or auto): then that one, when this CPU can run it (otherwise
 * the best it can, as for auto). That switch covers every kernel of the library — matrix,
 * attention, sparse rows and bundles — so the AVX2 or scalar paths can be run and timed on an
 * AVX-512 machine; tests and benchmarks may also force a variant with sl_kernels_select. The AVX2/AVX-512 tables live in files compiled with those instruction sets;
 * nothing from them runs unless this file picked them. Not thread-safe against a concurrent
 * sl_kernels_select, which only tests use.
 */
#include "kernels/kernels_impl.h"

#include "util/util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const sl_kernel_ops scalar_ops = {
    .name = "scalar",
    .quantize_q8 = sl_quantize_q8_scalar,
    .vec_dot = sl_vec_dot_ref,
    .vec_axpy = sl_vec_axpy_ref,
    .mm_prep_size = sl_mm_prep_size_scalar,
    .mm_prep = sl_mm_prep_scalar,
    .mm_rows = sl_mm_rows_scalar,
    .kq_vec_dot = sl_vec_dot_ref,
    .kq_vec_axpy = sl_vec_axpy_ref,
    .kq_mm_prep_size = sl_kq_mm_prep_size_scalar,
    .kq_mm_prep = sl_kq_mm_prep_scalar,
    .kq_mm_rows = sl_kq_mm_rows_scalar,
    .mt_cols = sl_mt_cols_scalar,
    .attention_group = sl_attention_group_scalar,
};

static _Atomic(const sl_kernel_ops *) current_ops;

bool sl_kernels_supported(sl_kernel_variant v) {
    switch (v) {
    case SL_KERNELS_AUTO:
    case SL_KERNELS_SCALAR: return true;
#if defined(__x86_64__)
    case SL_KERNELS_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case SL_KERNELS_AVX512:
        __builtin_cpu_init();
        return sl_kernels_supported(SL_KERNELS_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
#endif
    default: return false;
    }
}

const char *sl_kernels_name(sl_kernel_variant v) {
    switch (v) {
    case SL_KERNELS_AUTO: return "auto";
    case SL_KERNELS_SCALAR: return "scalar";
    case SL_KERNELS_AVX2: return "avx2";
    case SL_KERNELS_AVX512: return "avx512";
    }
    return "?";
}

const sl_kernel_ops *sl_kernels_ops_of(sl_kernel_variant v) {
    if (v == SL_KERNELS_AUTO) {
        if (sl_kernels_supported(SL_KERNELS_AVX512)) v = SL_KERNELS_AVX512;
        else if (sl_kernels_supported(SL_KERNELS_AVX2)) v = SL_KERNELS_AVX2;
        else v = SL_KERNELS_SCALAR;
    }
    if (!sl_kernels_supported(v)) return NULL;
    switch (v) {
#if defined(__x86_64__)
    case SL_KERNELS_AVX2: return &sl_kernels_avx2_ops;
    case SL_KERNELS_AVX512: return &sl_kernels_avx512_ops;
#endif
    case SL_KERNELS_SCALAR: return &scalar_ops;
    default: return NULL;
    }
}

bool sl_kernels_from_name(const char *name, sl_kernel_variant *out) {
    for (int v = SL_KERNELS_AUTO; v <= SL_KERNELS_AVX512; v++)
        if (name && !strcmp(name, sl_kernels_name((sl_kernel_variant)v))) {
            *out = (sl_kernel_variant)v;
            return true;
        }
    return false;
}

sl_kernel_variant sl_kernels_env(void) {
    sl_kernel_variant v = SL_KERNELS_AUTO;
    const char *e = getenv("SKIPLLAMA_KERNELS");
    if (e && *e && !sl_kernels_from_name(e, &v)) v = SL_KERNELS_AUTO;
    return v;
}

const sl_kernel_ops *sl_kernels_ops(void) {
    const sl_kernel_ops *ops = atomic_load_explicit(&current_ops, memory_order_acquire);
    if (!ops) {
        /* racing first calls all compute the same answer: SKIPLLAMA_KERNELS when this CPU
         * runs it, else the best variant it has */
        ops = sl_kernels_ops_of(sl_kernels_env());
        if (!ops) ops = sl_kernels_ops_of(SL_KERNELS_AUTO);
        atomic_store_explicit(&current_ops, ops, memory_order_release);
    }
    return ops;
}

sl_kernel_variant sl_kernels_current(void) {
    const sl_kernel_ops *ops = sl_kernels_ops();
    for (int v = SL_KERNELS_SCALAR; v <= SL_KERNELS_AVX512; v++)
        if (sl_kernels_ops_of((sl_kernel_variant)v) == ops) return (sl_kernel_variant)v;
    return SL_KERNELS_SCALAR;
}

bool sl_kernels_select(sl_kernel_variant v) {
    const sl_kernel_ops *ops = sl_kernels_ops_of(v);
    if (!ops) return false;
    atomic_store_explicit(&current_ops, ops, memory_order_release);
    return true;
}

void sl_act_prepare(sl_type wtype, const float *x, int64_t n, void *act) {
    const sl_type at = sl_act_type_of(wtype);
    if (at == SL_TYPE_Q8_0) sl_kernels_ops()->quantize_q8(x, act, n);
    else if (at == SL_TYPE_F32) memcpy(act, x, (size_t)n * sizeof(float));
    else sl_quantize_row_ref(at, x, act, n); /* Q8_1 / Q8_K: once per vector, cheap beside the rows */
}

float sl_vec_dot(sl_type wtype, const void *w, const void *act, int64_t n) {
    const sl_kernel_ops *o = sl_kernels_ops();
    return sl_kq_type(wtype) ? o->kq_vec_dot(wtype, w, act, n) : o->vec_dot(wtype, w, act, n);
}

void sl_vec_axpy(sl_type wtype, const void *w, float a, float *y, int64_t n) {
    const sl_kernel_ops *o = sl_kernels_ops();
    if (sl_kq_type(wtype)) o->kq_vec_axpy(wtype, w, a, y, n);
    else o->vec_axpy(wtype, w, a, y, n);
}

bool sl_kernels_fast_q4_0x4(void) { return sl_kernels_ops()->fast_q4_0x4; }

const char *sl_kernels_in_use(void) { return sl_kernels_name(sl_kernels_current()); }

sl_status sl_kernels_force(const char *name, sl_error *err) {
    sl_clear_error(err);
    sl_kernel_variant v;
    if (!sl_kernels_from_name(name, &v))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "kernels: unknown variant '%s' (scalar, avx2, avx512 or auto)", name ? name : "(null)");
    if (!sl_kernels_select(v)) return sl_set_error(err, SL_ERR_UNSUPPORTED, "kernels: this CPU cannot run the %s kernels", name);
    return SL_OK;
}
