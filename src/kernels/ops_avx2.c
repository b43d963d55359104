/*
 * ops_avx2.c — the AVX2 (+FMA, F16C) variant's table of kernels (kernels_impl.h), gathered from its
 * files (dot_avx2.c, matmul_avx2.c, attention_avx2.c) so that none of them refers to the others'
 * table. Chosen at run time by dispatch.c; nothing here runs unless the CPU has the instructions.
 */
#include "kernels/simd_avx2.h"

const sl_kernel_ops sl_kernels_avx2_ops = {
    .name = "avx2",
    .fast_q4_0x4 = true,
    .quantize_q8 = sl_x2_quantize_q8,
    .vec_dot = sl_x2_vec_dot,
    .vec_axpy = sl_x2_vec_axpy,
    .mm_prep_size = sl_x2_mm_prep_size,
    .mm_prep = sl_x2_mm_prep,
    .mm_rows = sl_x2_mm_rows,
    .kq_vec_dot = sl_kq_vec_dot_avx2,
    .kq_vec_axpy = sl_kq_vec_axpy_avx2,
    .kq_mm_prep_size = sl_kq_mm_prep_size_avx2,
    .kq_mm_prep = sl_kq_mm_prep_avx2,
    .kq_mm_rows = sl_kq_mm_rows_avx2,
    .mt_cols = sl_x2_mt_cols,
    .attention_group = sl_x2_attention_group,
};
