// Inner products of one query with many stored rows: the scan of vector
// search (stage 1 over 64-dimensional prefixes, stage 2 and exact search over
// whole vectors).
//
//   out[i] = sum_{j < dims} query[j] * rows[i * stride + j],   i < n
//
// Rows are fp32 or fp16 (IEEE half, kernels/fp16.h); `stride` >= dims lets a
// scan read a prefix of longer rows. InnerProductScan* use AVX2 and FMA when
// the CPU has them and the plain reference otherwise; the references are
// what the vectorised versions are tested against (inner_product_scan_test).

#ifndef MAXIMUS_KERNELS_INNER_PRODUCT_SCAN_H_
#define MAXIMUS_KERNELS_INNER_PRODUCT_SCAN_H_

#include <cstdint>

#include "kernels/fp16.h"

namespace maximus::kernels {

// True when this CPU runs the AVX2 + FMA (+ F16C) versions.
bool CpuHasAvx2();

void InnerProductScanReference(const float* query, int64_t dims, const float* rows, int64_t n,
                               int64_t stride, float* out);
void InnerProductScanFp16Reference(const float* query, int64_t dims, const Fp16Bits* rows,
                                   int64_t n, int64_t stride, float* out);

void InnerProductScan(const float* query, int64_t dims, const float* rows, int64_t n,
                      int64_t stride, float* out);
void InnerProductScanFp16(const float* query, int64_t dims, const Fp16Bits* rows, int64_t n,
                          int64_t stride, float* out);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_INNER_PRODUCT_SCAN_H_
