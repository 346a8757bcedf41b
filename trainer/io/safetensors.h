// Reading and writing tensors in the safetensors format
// (https://huggingface.co/docs/safetensors), the trainer's checkpoint format.
//
// File layout:
//   u64 N (little-endian)   length of the header
//   N bytes                 UTF-8 JSON object:
//                             {"__metadata__": {"key": "value", ...},
//                              "<name>": {"dtype": "F32", "shape": [2, 3],
//                                         "data_offsets": [begin, end]}, ...}
//                           padded with spaces so that 8 + N is a multiple of 8
//   data section            each tensor's bytes, little-endian, row-major;
//                           offsets are relative to the start of this section.
// The writer emits compact JSON with "__metadata__" first (omitted when there is
// no metadata) and the tensors in the order given, as the reference
// implementation does. The reader is strict: the tensors must tile the data
// section exactly (no overlaps, gaps or trailing bytes), as the reference
// implementation requires.

#ifndef MAXIMUS_TRAINER_IO_SAFETENSORS_H_
#define MAXIMUS_TRAINER_IO_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace maximus::trainer {

// On disk "F32", "BF16", "F16". Narrow types round to nearest, ties to even;
// NaN stays NaN and infinities stay infinite (values past the type's range
// round to infinity).
enum class TensorDType { kF32, kBF16, kF16 };

// The on-disk name of `dtype`: "F32", "BF16" or "F16".
const char* TensorDTypeName(TensorDType dtype);

struct TensorView {
  std::string name;
  std::vector<int64_t> shape;  // [] is a scalar
  const float* data;           // product(shape) floats, row-major
};

// Writes `tensors` to `path` atomically and durably: a temporary file in the
// same directory, fsync, rename over `path`, fsync of the directory. `path`
// holds either its old contents or all of the new ones. `dtype` is the on-disk
// type of every tensor: F32 for exact checkpoints, BF16 or F16 for export.
// INVALID_ARGUMENT for empty, duplicate or non-UTF-8 names, names starting with
// "__", negative dimensions, null data with a nonzero size, non-UTF-8 metadata.
absl::Status WriteSafetensors(const std::string& path, absl::Span<const TensorView> tensors,
                              const std::map<std::string, std::string>& metadata,
                              TensorDType dtype = TensorDType::kF32);

struct LoadedTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;  // product(shape) floats, row-major
  TensorDType stored_dtype = TensorDType::kF32;
};

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  std::map<std::string, LoadedTensor> tensors;
  std::vector<std::string> order;  // tensor names in the header's order
};

// Reads F32, BF16 and F16 tensors, converted to float. A tensor of another
// known dtype (I64, F64, ...) is FAILED_PRECONDITION naming the tensor and
// dtype. A malformed file (short, header length past the end or over
// 100 MB, header not a JSON object, bad dtype, shape or offsets, overlapping
// tensors, tensors outside the data section or not filling it, sizes not
// matching shape and dtype) is DATA_LOSS naming the file and the fault; a
// missing file is NOT_FOUND. Allocations are bounded by the file's size.
absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path);

// Reads and validates only the header (against the file's size): the shape of
// every tensor, whatever its dtype. For refusing a checkpoint of another model
// configuration without reading its data.
absl::StatusOr<std::map<std::string, std::vector<int64_t>>> ReadSafetensorsShapes(
    const std::string& path);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_IO_SAFETENSORS_H_
