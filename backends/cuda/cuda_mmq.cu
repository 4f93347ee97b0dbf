/*
 * cuda_mmq.cu — quantized weights x a small batch of tokens on tensor cores (see cuda_common.h).
 *
 * Not implemented yet: ggx_cuda_mmq_supported() answers false for every case, so ggx_cuda_mv
 * keeps its matvec kernels (up to 16 tokens) and the backend its dequantize + cuBLAS GEMM path.
 */
#include "cuda_common.h"

bool ggx_cuda_mmq_supported(enum ggx_type, int64_t, int) { return false; }

cudaError_t ggx_cuda_mmq(cudaStream_t, enum ggx_type, const ggx_cuda_mv_mat *, int, const float *,
                         const float *, int, int, int) {
    return cudaErrorNotSupported;
}
