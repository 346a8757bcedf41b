#include "trainer/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <set>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace maximus::trainer {
namespace {

// The reference implementation's limit; a larger header is hostile or corrupt.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr char kMetadataKey[] = "__metadata__";
// Tensor bytes are converted in chunks of this size, so that neither reading
// nor writing holds a second copy of a tensor.
constexpr size_t kChunkBytes = 1 << 20;

// Every dtype of the format, so that a valid file of a type we do not read is
// told apart from a corrupt one. Sizes in bits: F4 and F6 pack below a byte.
struct KnownDType {
  const char* name;
  int bits;
};
constexpr KnownDType kKnownDTypes[] = {
    {"BOOL", 8},    {"U8", 8},   {"I8", 8},   {"F8_E5M2", 8}, {"F8_E4M3", 8},
    {"F8_E8M0", 8}, {"U16", 16}, {"I16", 16}, {"F16", 16},    {"BF16", 16},
    {"U32", 32},    {"I32", 32}, {"F32", 32}, {"U64", 64},    {"I64", 64},
    {"F64", 64},    {"C64", 64}, {"F4", 4},   {"F6_E2M3", 6}, {"F6_E3M2", 6},
};

int DTypeBits(absl::string_view name) {
  for (const KnownDType& d : kKnownDTypes) {
    if (name == d.name) return d.bits;
  }
  return 0;
}

int DTypeBytes(TensorDType dtype) { return dtype == TensorDType::kF32 ? 4 : 2; }

uint32_t FloatBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

float BitsFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

uint16_t FloatToBf16(float f) {
  const uint32_t bits = FloatBits(f);
  // Keep NaN a NaN: truncation could clear every mantissa bit left.
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t rounding_bias = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

float Bf16ToFloat(uint16_t h) { return BitsFloat(static_cast<uint32_t>(h) << 16); }

uint16_t FloatToF16(float f) {
  uint32_t bits = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  bits &= 0x7FFFFFFFu;
  if (bits > 0x7F800000u) {  // NaN: quiet, keeps the top payload bits
    return static_cast<uint16_t>(sign | 0x7E00u | ((bits >> 13) & 0x3FFu));
  }
  // At or past 65520 (the midpoint between 65504 and 2^16) rounds to infinity.
  if (bits >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);
  if (bits >= 0x38800000u) {  // normal in half precision
    // Re-bias the exponent (127 -> 15) and round to nearest even on the
    // 13 mantissa bits dropped; a carry correctly bumps the exponent.
    const uint32_t odd = (bits >> 13) & 1u;
    bits += 0xC8000FFFu + odd;
    return static_cast<uint16_t>(sign | (bits >> 13));
  }
  // Subnormal or zero: adding 0.5 aligns the value's bits to the half's
  // 2^-24 quantum, and the FPU rounds to nearest even.
  const float aligned = BitsFloat(bits) + 0.5f;
  return static_cast<uint16_t>(sign | (FloatBits(aligned) - 0x3F000000u));
}

float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return BitsFloat(sign | FloatBits(magnitude));
  }
  if (exponent == 31) return BitsFloat(sign | 0x7F800000u | (mantissa << 13));
  return BitsFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (static_cast<size_t>(extra) > s.size() - i - 1) return false;
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMinForLength[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

// A name for an error message: quoted, and cut short if long.
std::string Quoted(absl::string_view name) {
  constexpr size_t kMax = 80;
  if (name.size() <= kMax) return absl::StrCat("\"", name, "\"");
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat("\"", name.substr(0, cut), "...\" (", name.size(), " bytes)");
}

std::string JsonString(const std::string& s) {
  // Callers check UTF-8 first, so dump() cannot throw.
  return nlohmann::json(s).dump();
}

absl::Status ErrnoStatus(absl::string_view what, absl::string_view path) {
  const int error = errno;
  const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::UnavailableError(message);
  }
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now, reporting the error that a deferred write may surface here.
  bool Close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0;
  }

 private:
  int fd_;
};

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Reads exactly `size` bytes at `offset`; false with errno 0 at end of file.
bool PreadAll(int fd, char* data, size_t size, uint64_t offset) {
  while (size > 0) {
    const ssize_t n = ::pread(fd, data, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) {
      errno = 0;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void PutU64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// Appends `count` floats from `data` to `out` in the on-disk encoding.
void EncodeFloats(const float* data, size_t count, TensorDType dtype, std::string* out) {
  const size_t start = out->size();
  out->resize(start + count * DTypeBytes(dtype));
  unsigned char* p = reinterpret_cast<unsigned char*>(&(*out)[start]);
  for (size_t i = 0; i < count; ++i) {
    switch (dtype) {
      case TensorDType::kF32: {
        const uint32_t v = FloatBits(data[i]);
        for (int b = 0; b < 4; ++b) *p++ = static_cast<unsigned char>(v >> (8 * b));
        break;
      }
      case TensorDType::kBF16:
      case TensorDType::kF16: {
        const uint16_t v = dtype == TensorDType::kBF16 ? FloatToBf16(data[i]) : FloatToF16(data[i]);
        *p++ = static_cast<unsigned char>(v);
        *p++ = static_cast<unsigned char>(v >> 8);
        break;
      }
    }
  }
}

absl::Status ValidateTensors(absl::Span<const TensorView> tensors,
                             const std::map<std::string, std::string>& metadata, TensorDType dtype,
                             std::vector<uint64_t>* counts) {
  absl::flat_hash_set<absl::string_view> names;
  uint64_t total_bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorView& t = tensors[i];
    if (t.name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", i, " has an empty name"));
    }
    if (!IsValidUtf8(t.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", i, ": name ", Quoted(t.name), " is not valid UTF-8"));
    }
    if (absl::string_view(t.name).substr(0, 2) == "__") {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", i, ": name ", Quoted(t.name), " starts with \"__\", reserved by the format"));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", i, ": duplicate name ", Quoted(t.name)));
    }
    uint64_t count = 1;
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (t.shape[d] < 0) {
        return absl::InvalidArgumentError(absl::StrCat("tensor ", Quoted(t.name), ": dimension ", d,
                                                       " is negative (", t.shape[d], ")"));
      }
      if (__builtin_mul_overflow(count, static_cast<uint64_t>(t.shape[d]), &count)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor ", Quoted(t.name), ": element count overflows"));
      }
    }
    uint64_t bytes;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(DTypeBytes(dtype)), &bytes) ||
        __builtin_add_overflow(total_bytes, bytes, &total_bytes) ||
        total_bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", Quoted(t.name), ": data size overflows"));
    }
    if (count > 0 && t.data == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", Quoted(t.name), ": null data for ", count, " elements"));
    }
    counts->push_back(count);
  }
  for (const auto& [key, value] : metadata) {
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("metadata entry ", Quoted(key), " is not valid UTF-8"));
    }
  }
  return absl::OkStatus();
}

std::string HeaderJson(absl::Span<const TensorView> tensors, const std::vector<uint64_t>& counts,
                       const std::map<std::string, std::string>& metadata, TensorDType dtype) {
  std::string json = "{";
  if (!metadata.empty()) {
    absl::StrAppend(&json, "\"", kMetadataKey, "\":{");
    bool first = true;
    for (const auto& [key, value] : metadata) {
      absl::StrAppend(&json, first ? "" : ",", JsonString(key), ":", JsonString(value));
      first = false;
    }
    json += "}";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (json.size() > 1) json += ",";
    const uint64_t end = offset + counts[i] * DTypeBytes(dtype);
    absl::StrAppend(&json, JsonString(tensors[i].name), ":{\"dtype\":\"", TensorDTypeName(dtype),
                    "\",\"shape\":[");
    for (size_t d = 0; d < tensors[i].shape.size(); ++d) {
      absl::StrAppend(&json, d == 0 ? "" : ",", tensors[i].shape[d]);
    }
    absl::StrAppend(&json, "],\"data_offsets\":[", offset, ",", end, "]}");
    offset = end;
  }
  json += "}";
  // The data section starts 8-byte aligned, so it can be mapped and used as is.
  json.append((8 - json.size() % 8) % 8, ' ');
  return json;
}

// ---------------------------------------------------------------- reading

struct TensorEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint64_t> offsets;  // [begin, end] once parsed
  bool has_dtype = false;
  bool has_shape = false;
  bool has_offsets = false;
  int bits = 0;
  uint64_t count = 0;
};

struct Header {
  std::map<std::string, std::string> metadata;
  std::vector<TensorEntry> tensors;  // in the header's order
  uint64_t data_start = 0;           // file offset of the data section
};

// Builds a Header from SAX events, refusing anything but the format's shape as
// soon as it appears: hostile nesting or huge arrays cost nothing.
class HeaderParser : public nlohmann::json::json_sax_t {
 public:
  explicit HeaderParser(Header* header) : header_(header) {}

  const std::string& error() const { return error_; }
  bool done() const { return state_ == State::kDone; }

  bool null() override { return Unexpected("null"); }
  bool boolean(bool) override { return Unexpected("a boolean"); }
  bool number_integer(number_integer_t v) override {
    if (v >= 0) return number_unsigned(static_cast<number_unsigned_t>(v));
    if (state_ == State::kShape) {
      return Fail(absl::StrCat("tensor ", Quoted(key_), ": negative dimension ", v));
    }
    if (state_ == State::kOffsets) {
      return Fail(absl::StrCat("tensor ", Quoted(key_), ": negative data offset ", v));
    }
    return Unexpected("a number");
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (state_ == State::kShape) {
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Fail(absl::StrCat("tensor ", Quoted(key_), ": dimension ", v, " is too large"));
      }
      tensor_.shape.push_back(static_cast<int64_t>(v));
      return true;
    }
    if (state_ == State::kOffsets) {
      if (tensor_.offsets.size() == 2) {
        return Fail(absl::StrCat("tensor ", Quoted(key_), ": data_offsets has more than 2 values"));
      }
      tensor_.offsets.push_back(v);
      return true;
    }
    return Unexpected("a number");
  }
  bool number_float(number_float_t, const string_t& text) override {
    if (state_ == State::kShape || state_ == State::kOffsets) {
      return Fail(absl::StrCat("tensor ", Quoted(key_), ": ", field_, " holds ", text,
                               ", not a non-negative integer"));
    }
    return Unexpected("a number");
  }
  bool string(string_t& s) override {
    if (state_ == State::kMetadata) {
      header_->metadata.emplace(field_, s);
      return true;
    }
    if (state_ == State::kTensor && field_ == "dtype") {
      tensor_.dtype = s;
      return true;
    }
    return Unexpected("a string");
  }
  bool binary(binary_t&) override { return Unexpected("binary"); }

  bool start_object(std::size_t) override {
    switch (state_) {
      case State::kStart:
        state_ = State::kTop;
        return true;
      case State::kTop:
        if (key_ == kMetadataKey) {
          if (seen_metadata_) return Fail("duplicate \"__metadata__\"");
          seen_metadata_ = true;
          state_ = State::kMetadata;
        } else {
          tensor_ = TensorEntry();
          tensor_.name = key_;
          state_ = State::kTensor;
        }
        return true;
      default:
        return Unexpected("an object");
    }
  }
  bool key(string_t& k) override {
    switch (state_) {
      case State::kTop:
        if (k != kMetadataKey && !names_.insert(k).second) {
          return Fail(absl::StrCat("duplicate tensor name ", Quoted(k)));
        }
        key_ = k;
        return true;
      case State::kMetadata:
        if (header_->metadata.count(k) != 0) {
          return Fail(absl::StrCat("duplicate metadata key ", Quoted(k)));
        }
        field_ = k;
        return true;
      case State::kTensor: {
        bool* seen = k == "dtype"          ? &tensor_.has_dtype
                     : k == "shape"        ? &tensor_.has_shape
                     : k == "data_offsets" ? &tensor_.has_offsets
                                           : nullptr;
        if (seen == nullptr) {
          return Fail(absl::StrCat("tensor ", Quoted(key_), ": unknown field ", Quoted(k)));
        }
        if (*seen) return Fail(absl::StrCat("tensor ", Quoted(key_), ": duplicate field ", k));
        *seen = true;
        field_ = k;
        return true;
      }
      default:
        return Fail("unexpected key");  // the JSON grammar allows keys only in objects
    }
  }
  bool end_object() override {
    switch (state_) {
      case State::kTop:
        state_ = State::kDone;
        return true;
      case State::kMetadata:
        state_ = State::kTop;
        return true;
      case State::kTensor:
        if (!tensor_.has_dtype || !tensor_.has_shape || !tensor_.has_offsets) {
          return Fail(absl::StrCat("tensor ", Quoted(key_), " lacks ",
                                   !tensor_.has_dtype   ? "dtype"
                                   : !tensor_.has_shape ? "shape"
                                                        : "data_offsets"));
        }
        header_->tensors.push_back(std::move(tensor_));
        state_ = State::kTop;
        return true;
      default:
        return Fail("unexpected end of object");
    }
  }
  bool start_array(std::size_t) override {
    if (state_ == State::kTensor && field_ == "shape") {
      state_ = State::kShape;
      return true;
    }
    if (state_ == State::kTensor && field_ == "data_offsets") {
      state_ = State::kOffsets;
      return true;
    }
    return Unexpected("an array");
  }
  bool end_array() override {
    if (state_ == State::kShape) {
      state_ = State::kTensor;
      return true;
    }
    if (state_ == State::kOffsets) {
      if (tensor_.offsets.size() != 2) {
        return Fail(absl::StrCat("tensor ", Quoted(key_), ": data_offsets has ",
                                 tensor_.offsets.size(), " values, not 2"));
      }
      state_ = State::kTensor;
      return true;
    }
    return Fail("unexpected end of array");
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) override {
    return Fail(absl::StrCat("header is not valid JSON: ", e.what()));
  }

 private:
  enum class State { kStart, kTop, kMetadata, kTensor, kShape, kOffsets, kDone };

  bool Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }

  // A value of the wrong JSON type where the format expects `state_`'s.
  bool Unexpected(absl::string_view what) {
    switch (state_) {
      case State::kStart:
        return Fail(absl::StrCat("header is ", what, ", not a JSON object"));
      case State::kTop:
        if (key_ == kMetadataKey) {
          return Fail(absl::StrCat("\"__metadata__\" is ", what, ", not an object"));
        }
        return Fail(absl::StrCat("entry ", Quoted(key_), " is ", what,
                                 ", not a tensor description (an object)"));
      case State::kMetadata:
        return Fail(
            absl::StrCat("metadata value for ", Quoted(field_), " is ", what, ", not a string"));
      case State::kTensor:
        return Fail(absl::StrCat("tensor ", Quoted(key_), ": ", field_, " is ", what, ", not ",
                                 field_ == "dtype" ? "a string" : "an array"));
      case State::kShape:
      case State::kOffsets:
        return Fail(absl::StrCat("tensor ", Quoted(key_), ": ", field_, " holds ", what,
                                 ", not a non-negative integer"));
      case State::kDone:
        break;
    }
    return Fail(absl::StrCat("unexpected ", what));
  }

  Header* header_;
  State state_ = State::kStart;
  std::string key_;    // the current top-level key
  std::string field_;  // the current key inside a tensor or the metadata
  TensorEntry tensor_;
  std::set<std::string> names_;
  bool seen_metadata_ = false;
  std::string error_;  // the first fault found
};

// Checks dtypes, sizes and offsets: the tensors must tile the data section.
absl::Status ValidateLayout(const std::string& path, uint64_t data_size, Header* header) {
  for (TensorEntry& t : header->tensors) {
    t.bits = DTypeBits(t.dtype);
    if (t.bits == 0) {
      return absl::DataLossError(
          absl::StrCat(path, ": tensor ", Quoted(t.name), " has unknown dtype ", Quoted(t.dtype)));
    }
    uint64_t count = 1;
    for (int64_t dim : t.shape) {
      if (__builtin_mul_overflow(count, static_cast<uint64_t>(dim), &count)) {
        return absl::DataLossError(
            absl::StrCat(path, ": tensor ", Quoted(t.name), ": element count overflows"));
      }
    }
    t.count = count;
    uint64_t bits;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(t.bits), &bits)) {
      return absl::DataLossError(
          absl::StrCat(path, ": tensor ", Quoted(t.name), ": size in bytes overflows"));
    }
    if (bits % 8 != 0) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", Quoted(t.name), " of ", count, " ",
                                              t.dtype, " elements is not a whole number of bytes"));
    }
    const uint64_t begin = t.offsets[0];
    const uint64_t end = t.offsets[1];
    if (begin > end) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", Quoted(t.name), ": data_offsets [",
                                              begin, ", ", end, "] are reversed"));
    }
    if (end > data_size) {
      return absl::DataLossError(
          absl::StrCat(path, ": tensor ", Quoted(t.name), ": data_offsets [", begin, ", ", end,
                       "] lie outside the data section of ", data_size, " bytes"));
    }
    if (end - begin != bits / 8) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", Quoted(t.name), " has ",
                                              end - begin, " bytes, its shape and dtype ", t.dtype,
                                              " need ", bits / 8));
    }
  }
  std::vector<size_t> by_offset(header->tensors.size());
  std::iota(by_offset.begin(), by_offset.end(), 0);
  std::sort(by_offset.begin(), by_offset.end(), [&](size_t a, size_t b) {
    return header->tensors[a].offsets < header->tensors[b].offsets;
  });
  uint64_t covered = 0;
  const TensorEntry* previous = nullptr;
  for (size_t i : by_offset) {
    const TensorEntry& t = header->tensors[i];
    if (t.offsets[0] < covered) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", Quoted(t.name),
                                              " overlaps tensor ", Quoted(previous->name)));
    }
    if (t.offsets[0] > covered) {
      return absl::DataLossError(absl::StrCat(path, ": bytes [", covered, ", ", t.offsets[0],
                                              ") of the data section belong to no tensor"));
    }
    covered = t.offsets[1];
    previous = &t;
  }
  if (covered != data_size) {
    return absl::DataLossError(
        absl::StrCat(path, ": ", data_size - covered, " trailing bytes after the last tensor"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Header> ReadHeader(const std::string& path, const Fd& fd) {
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat", path);
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    return absl::DataLossError(
        absl::StrCat(path, ": file is ", file_size, " bytes, too short for the header length"));
  }
  unsigned char prefix[8];
  if (!PreadAll(fd.get(), reinterpret_cast<char*>(prefix), 8, 0)) {
    if (errno == 0) return absl::DataLossError(absl::StrCat(path, ": file shrank during the read"));
    return ErrnoStatus("read", path);
  }
  uint64_t header_size = 0;
  for (int i = 0; i < 8; ++i) header_size |= static_cast<uint64_t>(prefix[i]) << (8 * i);
  if (header_size > kMaxHeaderBytes) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", header_size,
                                            " is over the limit of ", kMaxHeaderBytes, " bytes"));
  }
  if (header_size > file_size - 8) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", header_size,
                                            " runs past the end of the file (", file_size,
                                            " bytes)"));
  }
  std::string text(header_size, '\0');
  if (!PreadAll(fd.get(), text.data(), text.size(), 8)) {
    if (errno == 0) return absl::DataLossError(absl::StrCat(path, ": file shrank during the read"));
    return ErrnoStatus("read", path);
  }
  if (text.empty() || text[0] != '{') {
    return absl::DataLossError(
        absl::StrCat(path, ": header is not a JSON object (it does not start with '{')"));
  }
  // JSON text never holds a raw NUL, and the parser would take one for the end.
  if (const size_t nul = text.find('\0'); nul != std::string::npos) {
    return absl::DataLossError(
        absl::StrCat(path, ": header is not valid JSON: NUL byte at offset ", nul));
  }
  Header header;
  header.data_start = 8 + header_size;
  HeaderParser parser(&header);
  const bool ok = nlohmann::json::sax_parse(text.begin(), text.end(), &parser);
  if (!ok || !parser.done()) {
    return absl::DataLossError(
        absl::StrCat(path, ": ", parser.error().empty() ? "malformed header" : parser.error()));
  }
  if (absl::Status s = ValidateLayout(path, file_size - header.data_start, &header); !s.ok()) {
    return s;
  }
  return header;
}

absl::StatusOr<int> OpenForReading(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) return fd;
  if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no safetensors file at ", path));
  return ErrnoStatus("open", path);
}

// Reads tensor `t` of a file of type F32, BF16 or F16 into `out`.
absl::Status ReadTensor(const std::string& path, const Fd& fd, uint64_t data_start,
                        const TensorEntry& t, LoadedTensor* out) {
  const size_t element_bytes = t.bits / 8;
  out->shape = t.shape;
  out->data.resize(t.count);  // t.count * element_bytes bytes lie in the file
  std::string chunk;
  uint64_t done = 0;
  while (done < t.count) {
    const uint64_t n = std::min<uint64_t>(t.count - done, kChunkBytes / element_bytes);
    chunk.resize(n * element_bytes);
    if (!PreadAll(fd.get(), chunk.data(), chunk.size(),
                  data_start + t.offsets[0] + done * element_bytes)) {
      if (errno == 0)
        return absl::DataLossError(absl::StrCat(path, ": file shrank during the read"));
      return ErrnoStatus("read", path);
    }
    const unsigned char* p = reinterpret_cast<const unsigned char*>(chunk.data());
    float* dst = out->data.data() + done;
    switch (out->stored_dtype) {
      case TensorDType::kF32:
        for (uint64_t i = 0; i < n; ++i, p += 4) {
          dst[i] = BitsFloat(static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                             static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24);
        }
        break;
      case TensorDType::kBF16:
        for (uint64_t i = 0; i < n; ++i, p += 2) {
          dst[i] = Bf16ToFloat(static_cast<uint16_t>(p[0] | p[1] << 8));
        }
        break;
      case TensorDType::kF16:
        for (uint64_t i = 0; i < n; ++i, p += 2) {
          dst[i] = F16ToFloat(static_cast<uint16_t>(p[0] | p[1] << 8));
        }
        break;
    }
    done += n;
  }
  return absl::OkStatus();
}

}  // namespace

const char* TensorDTypeName(TensorDType dtype) {
  switch (dtype) {
    case TensorDType::kF32:
      return "F32";
    case TensorDType::kBF16:
      return "BF16";
    case TensorDType::kF16:
      return "F16";
  }
  return "?";
}

absl::Status WriteSafetensors(const std::string& path, absl::Span<const TensorView> tensors,
                              const std::map<std::string, std::string>& metadata,
                              TensorDType dtype) {
  std::vector<uint64_t> counts;
  if (absl::Status s = ValidateTensors(tensors, metadata, dtype, &counts); !s.ok()) return s;
  const std::string header = HeaderJson(tensors, counts, metadata, dtype);

  // A unique temporary name: concurrent writers of one path do not collide.
  std::string tmp = path + ".tmp.XXXXXX";
  const int raw_fd = ::mkstemp(tmp.data());
  if (raw_fd < 0) return ErrnoStatus("create a temporary file for", path);
  Fd fd(raw_fd);
  bool renamed = false;
  auto fail = [&](absl::string_view what, const std::string& where) {
    absl::Status status = ErrnoStatus(what, where);
    if (!renamed) ::unlink(tmp.c_str());
    return status;
  };
  if (::fchmod(fd.get(), 0644) != 0) return fail("chmod", tmp);

  std::string buffer;
  buffer.reserve(kChunkBytes + 16);
  PutU64(header.size(), &buffer);
  buffer += header;
  const size_t chunk_elements = kChunkBytes / DTypeBytes(dtype);
  for (size_t i = 0; i < tensors.size(); ++i) {
    for (uint64_t done = 0; done < counts[i];) {
      const uint64_t n = std::min<uint64_t>(counts[i] - done, chunk_elements);
      EncodeFloats(tensors[i].data + done, n, dtype, &buffer);
      done += n;
      if (buffer.size() >= kChunkBytes) {
        if (!WriteAll(fd.get(), buffer.data(), buffer.size())) return fail("write", tmp);
        buffer.clear();
      }
    }
  }
  if (!WriteAll(fd.get(), buffer.data(), buffer.size())) return fail("write", tmp);
  if (::fsync(fd.get()) != 0) return fail("fsync", tmp);
  if (!fd.Close()) return fail("close", tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename", tmp);
  renamed = true;
  // Makes the rename itself durable.
  const std::string dir = DirectoryOf(path);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return fail("open", dir);
  Fd dir_holder(dir_fd);
  if (::fsync(dir_fd) != 0) return fail("fsync", dir);
  return absl::OkStatus();
}

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path) {
  absl::StatusOr<int> raw_fd = OpenForReading(path);
  if (!raw_fd.ok()) return raw_fd.status();
  const Fd fd(*raw_fd);
  absl::StatusOr<Header> header = ReadHeader(path, fd);
  if (!header.ok()) return header.status();
  for (const TensorEntry& t : header->tensors) {
    if (t.dtype != "F32" && t.dtype != "BF16" && t.dtype != "F16") {
      return absl::FailedPreconditionError(absl::StrCat(path, ": tensor ", Quoted(t.name),
                                                        " has dtype ", t.dtype,
                                                        "; only F32, BF16 and F16 are read"));
    }
  }
  SafetensorsFile file;
  file.metadata = std::move(header->metadata);
  for (const TensorEntry& t : header->tensors) {
    LoadedTensor& loaded = file.tensors[t.name];
    loaded.stored_dtype = t.dtype == "F32"    ? TensorDType::kF32
                          : t.dtype == "BF16" ? TensorDType::kBF16
                                              : TensorDType::kF16;
    if (absl::Status s = ReadTensor(path, fd, header->data_start, t, &loaded); !s.ok()) return s;
    file.order.push_back(t.name);
  }
  return file;
}

absl::StatusOr<std::map<std::string, std::vector<int64_t>>> ReadSafetensorsShapes(
    const std::string& path) {
  absl::StatusOr<int> raw_fd = OpenForReading(path);
  if (!raw_fd.ok()) return raw_fd.status();
  const Fd fd(*raw_fd);
  absl::StatusOr<Header> header = ReadHeader(path, fd);
  if (!header.ok()) return header.status();
  std::map<std::string, std::vector<int64_t>> shapes;
  for (TensorEntry& t : header->tensors) shapes[t.name] = std::move(t.shape);
  return shapes;
}

}  // namespace maximus::trainer
