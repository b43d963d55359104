/* temporary */
#include "kernels_impl.h"
const sl_kernel_ops sl_kernels_avx2_ops = {
    .name = "avx2",
    .quantize_q8 = sl_quantize_q8_scalar,
    .vec_dot = sl_vec_dot_ref,
    .vec_axpy = sl_vec_axpy_ref,
    .mm_prep_size = sl_mm_prep_size_scalar,
    .mm_prep = sl_mm_prep_scalar,
    .mm_rows = sl_mm_rows_scalar,
    .attention_group = sl_attention_group_scalar,
};
