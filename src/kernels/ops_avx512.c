/*
 * ops_avx512.c — the AVX-512 (F, BW, VL, DQ, VNNI) variant's table of kernels (kernels_impl.h), gathered from its
 * files (dot_avx512.c, matmul_avx512.c, attention_avx512.c) so that none of them refers to the others'
 * table. Chosen at run time by dispatch.c; nothing here runs unless the CPU has the instructions.
 * The transposed product (mt_cols, matmul_t_avx2.c) is the AVX2 kernel: written and measured on
 * a machine without AVX-512, it runs unchanged on one that has it.
 */
#include "kernels/simd_avx512.h"

const sl_kernel_ops sl_kernels_avx512_ops = {
    .name = "avx512",
    .fast_q4_0x4 = true,
    .quantize_q8 = sl_x5_quantize_q8,
    .vec_dot = sl_x5_vec_dot,
    .vec_axpy = sl_x5_vec_axpy,
    .mm_prep_size = sl_x5_mm_prep_size,
    .mm_prep = sl_x5_mm_prep,
    .mm_rows = sl_x5_mm_rows,
    .kq_vec_dot = sl_kq_vec_dot_avx2,
    .kq_vec_axpy = sl_kq_vec_axpy_avx2,
    .kq_mm_prep_size = sl_kq_mm_prep_size_avx2,
    .kq_mm_prep = sl_kq_mm_prep_avx2,
    .kq_mm_rows = sl_kq_mm_rows_avx2,
    .mt_cols = sl_x2_mt_cols,
    .attention_group = sl_x5_attention_group,
};
