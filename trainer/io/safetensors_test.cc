#include "trainer/io/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace maximus::trainer {
namespace {

std::string FreshDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/safetensors_", name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string U64Le(uint64_t v) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return out;
}

// A file made by hand: length prefix, header text as given, data.
std::string HandMade(const std::string& header, const std::string& data) {
  return U64Le(header.size()) + header + data;
}

std::string F32Bytes(const std::vector<float>& values) {
  std::string out;
  for (float f : values) {
    uint32_t v;
    std::memcpy(&v, &f, 4);
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
  return out;
}

std::string U16Bytes(const std::vector<uint16_t>& values) {
  std::string out;
  for (uint16_t v : values) {
    out.push_back(static_cast<char>(v & 0xFF));
    out.push_back(static_cast<char>(v >> 8));
  }
  return out;
}

uint32_t Bits(float f) {
  uint32_t v;
  std::memcpy(&v, &f, 4);
  return v;
}

float FromBits(uint32_t v) {
  float f;
  std::memcpy(&f, &v, 4);
  return f;
}

// The data section of a file: its header length read from the prefix.
std::string DataSection(const std::string& file) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(file[i])) << (8 * i);
  return file.substr(8 + n);
}

std::vector<uint16_t> U16s(const std::string& bytes) {
  std::vector<uint16_t> out;
  for (size_t i = 0; i + 1 < bytes.size(); i += 2) {
    out.push_back(static_cast<uint16_t>(static_cast<unsigned char>(bytes[i]) |
                                        static_cast<unsigned char>(bytes[i + 1]) << 8));
  }
  return out;
}

// Reference decoders in double arithmetic, independent of the bit tricks under
// test. The all-ones exponent decodes as if the range went on (2^128, 2^16):
// rounding to infinity is rounding to that value.
double Bf16Value(uint16_t h) {
  const int exponent = (h >> 7) & 0xFF;
  const int mantissa = h & 0x7F;
  const double magnitude = exponent == 0 ? std::ldexp(mantissa, -133)
                                         : std::ldexp(1.0 + mantissa / 128.0, exponent - 127);
  return (h & 0x8000) ? -magnitude : magnitude;
}

double F16Value(uint16_t h) {
  const int exponent = (h >> 10) & 0x1F;
  const int mantissa = h & 0x3FF;
  const double magnitude = exponent == 0 ? std::ldexp(mantissa, -24)
                                         : std::ldexp(1.0 + mantissa / 1024.0, exponent - 15);
  return (h & 0x8000) ? -magnitude : magnitude;
}

// Round to nearest, ties to even, by search: `inf` is the code of +infinity.
uint16_t ReferenceRound(float x, uint16_t inf, double (*value)(uint16_t)) {
  const double a = std::fabs(static_cast<double>(x));
  // Largest code in [0, inf] whose value is <= a.
  uint32_t lo = 0, hi = inf;
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) / 2;
    if (value(static_cast<uint16_t>(mid)) <= a) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  uint16_t code = static_cast<uint16_t>(lo);
  if (code != inf && value(code) != a) {
    const double below = a - value(code);
    const double above = value(code + 1) - a;
    if (above < below || (above == below && code % 2 == 1)) ++code;
  }
  return static_cast<uint16_t>(code | (std::signbit(x) ? 0x8000 : 0));
}

uint16_t ReferenceBf16(float x) { return ReferenceRound(x, 0x7F80, Bf16Value); }
uint16_t ReferenceF16(float x) { return ReferenceRound(x, 0x7C00, F16Value); }

float DecodedReference(uint16_t code, uint16_t inf, double (*value)(uint16_t)) {
  if ((code & 0x7FFF) == inf) {
    return (code & 0x8000) ? -std::numeric_limits<float>::infinity()
                           : std::numeric_limits<float>::infinity();
  }
  return static_cast<float>(value(code));
}

bool IsNanCode(uint16_t code, uint16_t inf) {
  return (code & inf) == inf && (code & 0x7FFF) != inf;
}

// Floats that exercise rounding: specials, ties, random bit patterns.
std::vector<float> RoundingProbe(bool f16_ties, uint32_t seed) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               -1.0f,
                               inf,
                               -inf,
                               std::numeric_limits<float>::max(),
                               std::numeric_limits<float>::lowest(),
                               std::numeric_limits<float>::min(),
                               std::numeric_limits<float>::denorm_min(),
                               FromBits(0x3F808000),      // BF16 tie 0x3F80|0x3F81: to even 0x3F80
                               FromBits(0x3F818000),      // BF16 tie 0x3F81|0x3F82: to even 0x3F82
                               FromBits(0xBF818000),      // the same, negative
                               FromBits(0x3F808001),      // just past the tie: up
                               FromBits(0x3F807FFF),      // just below the tie: down
                               FromBits(0x7F7F8000),      // BF16 tie at the top: to infinity
                               65504.0f,                  // largest F16
                               65519.99f,                 // F16: rounds down to 65504
                               65520.0f,                  // F16 tie at the top: to infinity
                               1.0f + 1.0f / 2048,        // F16 tie 1|1+2^-10: to even, 1
                               1.0f + 3.0f / 2048,        // F16 tie: to even, 1+2^-9
                               std::ldexp(1.0f, -24),     // smallest F16 subnormal
                               std::ldexp(1.0f, -25),     // F16 tie 0|2^-24: to even, 0
                               std::ldexp(3.0f, -25),     // F16 tie 2^-24|2^-23: to 2^-23
                               std::ldexp(1.0f, -14),     // smallest F16 normal
                               std::ldexp(1023.5f, -24),  // F16 tie at the subnormal top
                               3.14159265f,
                               -2.718281828f,
                               1e-30f,
                               -1e30f};
  std::mt19937 rng(seed);
  for (int i = 0; i < 3000; ++i) {
    uint32_t bits = rng();
    if (i % 3 == 0) {
      // Exponents near 1.0 and in F16's range, where most values live.
      bits = (bits & 0x807FFFFFu) | ((100u + rng() % 50u) << 23);
    }
    if ((bits & 0x7F800000u) == 0x7F800000u) continue;  // NaN/inf listed above
    values.push_back(FromBits(bits));
  }
  for (int i = 0; i < 500; ++i) {  // exact BF16 ties
    const uint32_t high = rng() % 0x7F7Fu;
    values.push_back(FromBits((high << 16) | 0x8000u | (i % 2 ? 0x80000000u : 0)));
  }
  if (f16_ties) {
    for (int i = 0; i < 500; ++i) {  // exact F16 ties (midpoints are floats)
      const uint16_t code = static_cast<uint16_t>(rng() % 0x7BFFu);
      values.push_back(static_cast<float>((F16Value(code) + F16Value(code + 1)) / 2));
    }
  }
  return values;
}

std::vector<float> Iota(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>(i) - 1.5f;
  return v;
}

void ExpectBitsEqual(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(Bits(got[i]), Bits(want[i]))
        << "element " << i << ": " << got[i] << " vs " << want[i];
  }
}

TEST(SafetensorsTest, F32RoundTripIsExact) {
  const std::string path = FreshDir("f32") + "/model.safetensors";
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> scalar = {3.5f};
  const std::vector<float> vector = {-0.0f,
                                     std::numeric_limits<float>::denorm_min(),
                                     std::numeric_limits<float>::infinity(),
                                     nan,
                                     FromBits(0x7FC12345),  // NaN with a payload
                                     std::numeric_limits<float>::max(),
                                     0.1f};
  const std::vector<float> cube = Iota(2 * 3 * 4, 0.37f);
  const std::vector<TensorView> tensors = {
      {"z.scalar", {}, scalar.data()},    {"model.layers.0.vector", {7}, vector.data()},
      {"a.cube", {2, 3, 4}, cube.data()}, {"empty", {0}, nullptr},
      {"empty.3d", {2, 0, 3}, nullptr},
  };
  ASSERT_TRUE(WriteSafetensors(path, tensors, {}).ok());

  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->metadata.empty());
  EXPECT_EQ(file->order, (std::vector<std::string>{"z.scalar", "model.layers.0.vector", "a.cube",
                                                   "empty", "empty.3d"}));
  ASSERT_EQ(file->tensors.size(), 5u);
  const LoadedTensor& s = file->tensors.at("z.scalar");
  EXPECT_EQ(s.shape, std::vector<int64_t>{});
  EXPECT_EQ(s.stored_dtype, TensorDType::kF32);
  ExpectBitsEqual(s.data, scalar);
  EXPECT_EQ(file->tensors.at("model.layers.0.vector").shape, std::vector<int64_t>{7});
  ExpectBitsEqual(file->tensors.at("model.layers.0.vector").data, vector);
  EXPECT_EQ(file->tensors.at("a.cube").shape, (std::vector<int64_t>{2, 3, 4}));
  ExpectBitsEqual(file->tensors.at("a.cube").data, cube);
  EXPECT_EQ(file->tensors.at("empty").shape, std::vector<int64_t>{0});
  EXPECT_TRUE(file->tensors.at("empty").data.empty());
  EXPECT_EQ(file->tensors.at("empty.3d").shape, (std::vector<int64_t>{2, 0, 3}));
  EXPECT_TRUE(file->tensors.at("empty.3d").data.empty());

  // The data section is the tensors' little-endian bytes in the order given.
  EXPECT_EQ(DataSection(ReadBytes(path)), F32Bytes(scalar) + F32Bytes(vector) + F32Bytes(cube));

  absl::StatusOr<std::map<std::string, std::vector<int64_t>>> shapes = ReadSafetensorsShapes(path);
  ASSERT_TRUE(shapes.ok()) << shapes.status();
  EXPECT_EQ(*shapes, (std::map<std::string, std::vector<int64_t>>{{"z.scalar", {}},
                                                                  {"model.layers.0.vector", {7}},
                                                                  {"a.cube", {2, 3, 4}},
                                                                  {"empty", {0}},
                                                                  {"empty.3d", {2, 0, 3}}}));
}

TEST(SafetensorsTest, TensorsLargerThanOneChunk) {
  const std::string dir = FreshDir("large");
  // 1.2 MB in F32: crosses the 1 MiB conversion chunks of reader and writer.
  const std::vector<float> big = Iota(300'001, 1e-3f);
  const std::vector<float> small = {1, 2, 3};
  const std::vector<TensorView> tensors = {{"small", {3}, small.data()},
                                           {"big", {300'001}, big.data()}};
  for (TensorDType dtype : {TensorDType::kF32, TensorDType::kBF16, TensorDType::kF16}) {
    const std::string path = absl::StrCat(dir, "/", TensorDTypeName(dtype), ".safetensors");
    ASSERT_TRUE(WriteSafetensors(path, tensors, {}, dtype).ok());
    absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
    ASSERT_TRUE(file.ok()) << file.status();
    const std::vector<float>& got = file->tensors.at("big").data;
    ASSERT_EQ(got.size(), big.size());
    for (size_t i = 0; i < big.size(); ++i) {
      const float want = dtype == TensorDType::kF32 ? big[i]
                         : dtype == TensorDType::kBF16
                             ? DecodedReference(ReferenceBf16(big[i]), 0x7F80, Bf16Value)
                             : DecodedReference(ReferenceF16(big[i]), 0x7C00, F16Value);
      ASSERT_EQ(Bits(got[i]), Bits(want)) << TensorDTypeName(dtype) << " element " << i;
    }
    EXPECT_EQ(file->tensors.at("small").data, small);
  }
}

TEST(SafetensorsTest, Bf16RoundsToNearestEven) {
  const std::string path = FreshDir("bf16") + "/export.safetensors";
  std::vector<float> values = RoundingProbe(/*f16_ties=*/false, 7);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  values.push_back(nan);
  values.push_back(-nan);
  values.push_back(FromBits(0x7F800001));  // signalling NaN: truncation would make it inf
  values.push_back(FromBits(0xFF80FFFF));  // NaN whose rounding would carry
  ASSERT_TRUE(WriteSafetensors(path, {{"x", {static_cast<int64_t>(values.size())}, values.data()}},
                               {}, TensorDType::kBF16)
                  .ok());
  const std::vector<uint16_t> codes = U16s(DataSection(ReadBytes(path)));
  ASSERT_EQ(codes.size(), values.size());
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const LoadedTensor& x = file->tensors.at("x");
  EXPECT_EQ(x.stored_dtype, TensorDType::kBF16);
  ASSERT_EQ(x.data.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isnan(values[i])) {
      EXPECT_TRUE(IsNanCode(codes[i], 0x7F80)) << std::hex << codes[i];
      EXPECT_EQ(codes[i] & 0x8000, (Bits(values[i]) >> 16) & 0x8000);
      EXPECT_TRUE(std::isnan(x.data[i]));
      continue;
    }
    const uint16_t want = ReferenceBf16(values[i]);
    ASSERT_EQ(codes[i], want) << "value " << values[i] << " (bits " << std::hex << Bits(values[i])
                              << ")";
    ASSERT_EQ(Bits(x.data[i]), Bits(DecodedReference(want, 0x7F80, Bf16Value)));
  }
  // The documented ties, spelled out.
  EXPECT_EQ(ReferenceBf16(FromBits(0x3F808000)), 0x3F80);
  EXPECT_EQ(ReferenceBf16(FromBits(0x3F818000)), 0x3F82);
}

TEST(SafetensorsTest, F16RoundsToNearestEven) {
  const std::string path = FreshDir("f16") + "/export.safetensors";
  std::vector<float> values = RoundingProbe(/*f16_ties=*/true, 11);
  values.push_back(std::numeric_limits<float>::quiet_NaN());
  values.push_back(FromBits(0xFF800001));
  ASSERT_TRUE(WriteSafetensors(path, {{"x", {static_cast<int64_t>(values.size())}, values.data()}},
                               {}, TensorDType::kF16)
                  .ok());
  const std::vector<uint16_t> codes = U16s(DataSection(ReadBytes(path)));
  ASSERT_EQ(codes.size(), values.size());
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const LoadedTensor& x = file->tensors.at("x");
  EXPECT_EQ(x.stored_dtype, TensorDType::kF16);
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isnan(values[i])) {
      EXPECT_TRUE(IsNanCode(codes[i], 0x7C00)) << std::hex << codes[i];
      EXPECT_EQ(codes[i] & 0x8000, (Bits(values[i]) >> 16) & 0x8000);
      EXPECT_TRUE(std::isnan(x.data[i]));
      continue;
    }
    const uint16_t want = ReferenceF16(values[i]);
    ASSERT_EQ(codes[i], want) << "value " << values[i] << " (bits " << std::hex << Bits(values[i])
                              << ")";
    ASSERT_EQ(Bits(x.data[i]), Bits(DecodedReference(want, 0x7C00, F16Value)));
  }
  EXPECT_EQ(ReferenceF16(65520.0f), 0x7C00);
  EXPECT_EQ(ReferenceF16(std::ldexp(1.0f, -25)), 0x0000);
}

// Every 16-bit code that is not a NaN survives float and back unchanged.
TEST(SafetensorsTest, EveryHalfCodeRoundTrips) {
  const std::string dir = FreshDir("codes");
  struct Case {
    TensorDType dtype;
    uint16_t inf;
    double (*value)(uint16_t);
  };
  for (const Case& c :
       {Case{TensorDType::kBF16, 0x7F80, Bf16Value}, Case{TensorDType::kF16, 0x7C00, F16Value}}) {
    std::vector<uint16_t> codes;
    std::vector<float> floats;
    for (uint32_t code = 0; code <= 0xFFFF; ++code) {
      if (IsNanCode(static_cast<uint16_t>(code), c.inf)) continue;
      codes.push_back(static_cast<uint16_t>(code));
      floats.push_back(DecodedReference(static_cast<uint16_t>(code), c.inf, c.value));
    }
    const std::string path = absl::StrCat(dir, "/", TensorDTypeName(c.dtype), ".safetensors");
    ASSERT_TRUE(WriteSafetensors(path,
                                 {{"codes", {static_cast<int64_t>(floats.size())}, floats.data()}},
                                 {}, c.dtype)
                    .ok());
    EXPECT_EQ(U16s(DataSection(ReadBytes(path))), codes) << TensorDTypeName(c.dtype);
    absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
    ASSERT_TRUE(file.ok()) << file.status();
    ExpectBitsEqual(file->tensors.at("codes").data, floats);
  }
}

TEST(SafetensorsTest, MetadataRoundTrip) {
  const std::string path = FreshDir("metadata") + "/m.safetensors";
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"config", R"({"hidden": 640, "layers": 18})"},
      {"quotes \" and \\ backslash", "line\nbreak\ttab\x01control"},
      {"unicode ▁ été", "日本語"},
      {"empty", ""},
      {"", "empty key"},
  };
  const std::vector<float> w = {1, 2};
  ASSERT_TRUE(WriteSafetensors(path, {{"w", {2}, w.data()}}, metadata).ok());
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata, metadata);
  EXPECT_EQ(file->tensors.at("w").data, w);
}

TEST(SafetensorsTest, DataSectionIsEightByteAlignedAndPaddedWithSpaces) {
  const std::string dir = FreshDir("aligned");
  const std::vector<float> v = {1, 2, 3};
  for (int length = 1; length <= 17; ++length) {
    const std::string path = absl::StrCat(dir, "/", length, ".safetensors");
    const std::string name(length, 'n');
    const std::map<std::string, std::string> metadata = {{"k", std::string(length % 5, 'v')}};
    ASSERT_TRUE(WriteSafetensors(path, {{name, {3}, v.data()}}, metadata).ok());
    const std::string bytes = ReadBytes(path);
    const uint64_t header_size = bytes.size() - 8 - 12;
    EXPECT_EQ(bytes.substr(0, 8), U64Le(header_size));
    EXPECT_EQ((8 + header_size) % 8, 0u) << "name length " << length;
    const std::string header = bytes.substr(8, header_size);
    const size_t close = header.find_last_of('}');
    EXPECT_LT(header_size - (close + 1), 8u);
    EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos) << header;
    EXPECT_EQ(bytes.substr(8 + header_size), F32Bytes(v));
  }
}

// The exact bytes of small files, spelled out by hand: the standard format.
TEST(SafetensorsTest, GoldenBytes) {
  const std::string dir = FreshDir("golden");
  const std::vector<float> a = {1.0f, -2.0f};
  const std::vector<float> s = {0.5f};
  ASSERT_TRUE(WriteSafetensors(dir + "/f32.safetensors",
                               {{"a", {2}, a.data()}, {"s", {}, s.data()}}, {{"format", "pt"}})
                  .ok());
  const std::string f32_header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("s":{"dtype":"F32","shape":[],"data_offsets":[8,12]}})"
      "      ";  // 138 bytes of JSON + 6 spaces = 144 = 0x90
  const std::string f32_golden = std::string("\x90\0\0\0\0\0\0\0", 8) + f32_header +
                                 std::string(
                                     "\x00\x00\x80\x3f"   // 1.0f
                                     "\x00\x00\x00\xc0"   // -2.0f
                                     "\x00\x00\x00\x3f",  // 0.5f
                                     12);
  EXPECT_EQ(ReadBytes(dir + "/f32.safetensors"), f32_golden);

  const std::vector<float> b = {1.0f, -2.0f, 3.0f};
  ASSERT_TRUE(
      WriteSafetensors(dir + "/bf16.safetensors", {{"b", {3}, b.data()}}, {}, TensorDType::kBF16)
          .ok());
  const std::string bf16_golden =
      std::string("\x38\0\0\0\0\0\0\0", 8) +
      R"({"b":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]}} )" +  // 55 + 1 = 56 = 0x38
      std::string("\x80\x3f\x00\xc0\x40\x40", 6);                      // 0x3F80 0xC000 0x4040
  EXPECT_EQ(ReadBytes(dir + "/bf16.safetensors"), bf16_golden);

  // And the golden bytes read back.
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(dir + "/f32.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_EQ(file->tensors.at("a").data, a);
  EXPECT_EQ(file->tensors.at("s").data, s);
}

TEST(SafetensorsTest, ReadsHandMadeF16File) {
  const std::string path = FreshDir("handmade_f16") + "/h.safetensors";
  // Unpadded header, __metadata__ last: both valid.
  WriteBytes(path, HandMade(R"({"h":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},)"
                            R"("__metadata__":{"source":"hand"}})",
                            U16Bytes({0x3C00, 0xC000, 0x0001, 0x7C00, 0xFBFF, 0x3555})));
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata.at("source"), "hand");
  const LoadedTensor& h = file->tensors.at("h");
  EXPECT_EQ(h.stored_dtype, TensorDType::kF16);
  EXPECT_EQ(h.shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(h.data.size(), 6u);
  EXPECT_EQ(h.data[0], 1.0f);
  EXPECT_EQ(h.data[1], -2.0f);
  EXPECT_EQ(h.data[2], std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(h.data[3], std::numeric_limits<float>::infinity());
  EXPECT_EQ(h.data[4], -65504.0f);
  EXPECT_EQ(h.data[5], 0.333251953125f);  // 0x3555, the F16 nearest 1/3

  const std::string nan_path = FreshDir("handmade_f16_nan") + "/n.safetensors";
  WriteBytes(nan_path, HandMade(R"({"n":{"dtype":"F16","shape":[],"data_offsets":[0,2]}})",
                                U16Bytes({0xFE00})));
  file = ReadSafetensors(nan_path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(std::isnan(file->tensors.at("n").data[0]));
  EXPECT_TRUE(std::signbit(file->tensors.at("n").data[0]));
}

TEST(SafetensorsTest, OrderFollowsTheHeaderNotTheOffsets) {
  const std::string path = FreshDir("order") + "/o.safetensors";
  WriteBytes(path, HandMade(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                            R"("a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})",
                            U16Bytes({0x3F80, 0x4000}) + F32Bytes({7.0f})));
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->order, (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(file->tensors.at("a").data, (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(file->tensors.at("a").stored_dtype, TensorDType::kBF16);
  EXPECT_EQ(file->tensors.at("b").data, std::vector<float>{7.0f});
}

TEST(SafetensorsTest, OtherDtypesAreFailedPrecondition) {
  const std::string dir = FreshDir("other_dtypes");
  struct Case {
    const char* dtype;
    int bytes;
  };
  for (const Case& c : {Case{"I64", 8}, Case{"F64", 8}, Case{"BOOL", 1}, Case{"I32", 4}}) {
    const std::string path = absl::StrCat(dir, "/", c.dtype, ".safetensors");
    WriteBytes(path,
               HandMade(absl::StrCat(R"({"ok":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)",
                                     R"("step":{"dtype":")", c.dtype,
                                     R"(","shape":[2],"data_offsets":[4,)", 4 + 2 * c.bytes, "]}}"),
                        F32Bytes({1.0f}) + std::string(2 * c.bytes, '\x01')));
    absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
    EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition) << file.status();
    EXPECT_NE(file.status().message().find("\"step\""), std::string::npos) << file.status();
    EXPECT_NE(file.status().message().find(c.dtype), std::string::npos) << file.status();
    // The header alone is fine.
    absl::StatusOr<std::map<std::string, std::vector<int64_t>>> shapes =
        ReadSafetensorsShapes(path);
    ASSERT_TRUE(shapes.ok()) << shapes.status();
    EXPECT_EQ(shapes->at("step"), std::vector<int64_t>{2});
  }
}

struct Corruption {
  const char* what;
  std::string bytes;
  const char* message;  // a part of the expected message
};

std::vector<Corruption> Corruptions() {
  const std::string f4 = F32Bytes({1.0f});
  auto one = [&](const std::string& entry) {
    return HandMade(absl::StrCat(R"({"t":)", entry, "}"), f4);
  };
  std::string deep = R"({"t":{"dtype":"F32","shape":)";
  for (int i = 0; i < 100000; ++i) deep += "[";
  std::string deep_meta = R"({"__metadata__":)";
  for (int i = 0; i < 100000; ++i) deep_meta += "{\"a\":";
  return {
      {"empty file", "", "too short"},
      {"seven bytes", std::string(7, '\x02'), "too short"},
      {"header past the end", U64Le(100) + "{}", "past the end"},
      {"header over the cap", U64Le(uint64_t{1} << 62) + "{}", "over the limit"},
      {"header of 100000001 bytes", U64Le(100'000'001) + "{}", "over the limit"},
      {"max header length", U64Le(~uint64_t{0}) + "{}", "over the limit"},
      {"empty header", U64Le(0), "not a JSON object"},
      {"header cut short", HandMade(R"({"t":)", ""), "not valid JSON"},
      {"header an array", HandMade("[]", ""), "not a JSON object"},
      {"header a string", HandMade(R"("x")", ""), "not a JSON object"},
      {"header a number", HandMade("3", ""), "not a JSON object"},
      {"header with a leading space", HandMade(" {}", ""), "not a JSON object"},
      {"text after the object", HandMade("{} x", ""), "not valid JSON"},
      {"zero padding", HandMade(std::string("{}\0\0\0\0\0\0", 8), ""), "not valid JSON"},
      {"NUL then garbage", HandMade(std::string("{}\0garbage", 10), ""), "NUL byte"},
      {"two objects", HandMade("{}{}", ""), "not valid JSON"},
      {"invalid UTF-8 name",
       one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})").replace(10, 1, "\xff"),
       "not valid JSON"},
      {"metadata an array", HandMade(R"({"__metadata__":[]})", ""), "__metadata__"},
      {"metadata null", HandMade(R"({"__metadata__":null})", ""), "__metadata__"},
      {"metadata value a number", HandMade(R"({"__metadata__":{"a":1}})", ""), "metadata value"},
      {"metadata value an object", HandMade(R"({"__metadata__":{"a":{}}})", ""), "metadata value"},
      {"metadata twice", HandMade(R"({"__metadata__":{},"__metadata__":{}})", ""), "duplicate"},
      {"duplicate metadata key", HandMade(R"({"__metadata__":{"a":"1","a":"2"}})", ""),
       "duplicate metadata key"},
      {"deeply nested metadata", HandMade(deep_meta, ""), "metadata value"},
      {"tensor a number", one("1"), "not a tensor description"},
      {"tensor null", one("null"), "not a tensor description"},
      {"tensor an array", one("[]"), "not a tensor description"},
      {"dtype a number", one(R"({"dtype":1,"shape":[1],"data_offsets":[0,4]})"), "dtype is"},
      {"unknown dtype", one(R"({"dtype":"F33","shape":[1],"data_offsets":[0,4]})"),
       "unknown dtype"},
      {"lowercase dtype", one(R"({"dtype":"f32","shape":[1],"data_offsets":[0,4]})"),
       "unknown dtype"},
      {"negative dimension", one(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"),
       "negative dimension"},
      {"fractional dimension", one(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})"),
       "non-negative integer"},
      {"huge dimension", one(R"({"dtype":"F32","shape":[1e30],"data_offsets":[0,4]})"),
       "non-negative integer"},
      {"dimension past int64",
       one(R"({"dtype":"F32","shape":[9223372036854775808],)"
           R"("data_offsets":[0,4]})"),
       "too large"},
      {"shape a number", one(R"({"dtype":"F32","shape":1,"data_offsets":[0,4]})"), "shape is"},
      {"shape a string", one(R"({"dtype":"F32","shape":"1","data_offsets":[0,4]})"), "shape is"},
      {"shape nested", one(R"({"dtype":"F32","shape":[[1]],"data_offsets":[0,4]})"), "shape holds"},
      {"deeply nested shape", HandMade(deep, f4), "shape holds"},
      {"element count overflows",
       one(R"({"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]})"),
       "overflows"},
      {"byte count overflows",
       one(R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]})"), "overflows"},
      {"sub-byte size", one(R"({"dtype":"F4","shape":[3],"data_offsets":[0,4]})"), "whole"},
      {"one offset", one(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), "has 1 values"},
      {"three offsets", one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,4]})"),
       "more than 2"},
      {"negative offset", one(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"),
       "negative data offset"},
      {"fractional offset", one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4.0]})"),
       "non-negative integer"},
      {"offsets a string", one(R"({"dtype":"F32","shape":[1],"data_offsets":"0,4"})"),
       "data_offsets is"},
      {"reversed offsets", one(R"({"dtype":"F32","shape":[0],"data_offsets":[4,0]})"), "reversed"},
      {"offsets past uint64",
       one(R"({"dtype":"F32","shape":[1],)"
           R"("data_offsets":[0,18446744073709551616]})"),
       "non-negative integer"},
      {"missing dtype", one(R"({"shape":[1],"data_offsets":[0,4]})"), "lacks dtype"},
      {"missing shape", one(R"({"dtype":"F32","data_offsets":[0,4]})"), "lacks shape"},
      {"missing offsets", one(R"({"dtype":"F32","shape":[1]})"), "lacks data_offsets"},
      {"unknown field", one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":0})"),
       "unknown field"},
      {"duplicate field", one(R"({"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]})"),
       "duplicate field"},
      {"duplicate tensor",
       HandMade(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                F32Bytes({1, 2})),
       "duplicate tensor name"},
      {"overlapping tensors",
       HandMade(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                F32Bytes({1, 2, 3})),
       "overlaps"},
      {"same offsets twice",
       HandMade(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                F32Bytes({1, 2})),
       "overlaps"},
      {"empty tensor inside another",
       HandMade(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                F32Bytes({1, 2})),
       "overlaps"},
      {"offsets past the data", one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})"),
       "outside the data section"},
      {"offsets far past the data",
       one(R"({"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]})"),
       "outside the data section"},
      {"size not matching the shape", one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,4]})"),
       "need 12"},
      {"size not matching the dtype", one(R"({"dtype":"F64","shape":[1],"data_offsets":[0,4]})"),
       "need 8"},
      {"gap between tensors",
       HandMade(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                F32Bytes({1, 2, 3})),
       "belong to no tensor"},
      {"gap at the start", one(R"({"dtype":"BF16","shape":[1],"data_offsets":[2,4]})"),
       "belong to no tensor"},
      {"trailing garbage",
       HandMade(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f4 + "junk"),
       "trailing"},
      {"data with no tensors", HandMade("{}", f4), "trailing"},
  };
}

TEST(SafetensorsTest, CorruptFilesAreDataLoss) {
  const std::string dir = FreshDir("corrupt");
  int index = 0;
  for (const Corruption& c : Corruptions()) {
    const std::string path = absl::StrCat(dir, "/case", index++, ".safetensors");
    WriteBytes(path, c.bytes);
    absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
    EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss) << c.what << ": " << file.status();
    EXPECT_NE(file.status().message().find(path), std::string::npos)
        << c.what << ": " << file.status();
    EXPECT_NE(file.status().message().find(c.message), std::string::npos)
        << c.what << ": " << file.status();
    absl::StatusOr<std::map<std::string, std::vector<int64_t>>> shapes =
        ReadSafetensorsShapes(path);
    EXPECT_EQ(shapes.status(), file.status()) << c.what;
  }
}

std::string ValidFile(const std::string& dir) {
  const std::vector<float> a = {1.5f, -2.25f, 3.0f};
  const std::vector<float> b = Iota(6, 0.5f);
  const std::vector<float> s = {42.0f};
  const std::string path = dir + "/valid.safetensors";
  EXPECT_TRUE(WriteSafetensors(path,
                               {{"a", {3}, a.data()}, {"b", {2, 3}, b.data()}, {"s", {}, s.data()}},
                               {{"step", "12"}, {"model", "tiny"}})
                  .ok());
  return ReadBytes(path);
}

TEST(SafetensorsTest, EveryTruncationIsDataLoss) {
  const std::string dir = FreshDir("truncated");
  const std::string valid = ValidFile(dir);
  ASSERT_GT(valid.size(), 100u);
  const std::string path = dir + "/cut.safetensors";
  for (size_t length = 0; length < valid.size(); ++length) {
    WriteBytes(path, valid.substr(0, length));
    absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
    ASSERT_EQ(file.status().code(), absl::StatusCode::kDataLoss)
        << "length " << length << ": " << file.status();
    ASSERT_EQ(ReadSafetensorsShapes(path).status().code(), absl::StatusCode::kDataLoss)
        << "length " << length;
  }
  for (size_t extra = 1; extra <= 16; ++extra) {
    WriteBytes(path, valid + std::string(extra, ' '));
    ASSERT_EQ(ReadSafetensors(path).status().code(), absl::StatusCode::kDataLoss) << extra;
  }
  WriteBytes(path, valid);
  ASSERT_TRUE(ReadSafetensors(path).ok());
}

// Whatever a reader accepts must be self-consistent.
void ExpectConsistent(const SafetensorsFile& file) {
  ASSERT_EQ(file.order.size(), file.tensors.size());
  for (const auto& [name, tensor] : file.tensors) {
    int64_t count = 1;
    for (int64_t dim : tensor.shape) {
      ASSERT_GE(dim, 0);
      count *= dim;
    }
    ASSERT_EQ(static_cast<int64_t>(tensor.data.size()), count) << name;
  }
}

TEST(SafetensorsTest, RandomHeaderByteFlipsNeverCrash) {
  const std::string dir = FreshDir("flips");
  const std::string valid = ValidFile(dir);
  uint64_t header_size = 0;
  for (int i = 0; i < 8; ++i) {
    header_size |= static_cast<uint64_t>(static_cast<unsigned char>(valid[i])) << (8 * i);
  }
  const std::string path = dir + "/flipped.safetensors";
  std::mt19937 rng(1234);
  std::map<absl::StatusCode, int> outcomes;
  for (int iteration = 0; iteration < 2000; ++iteration) {
    std::string bytes = valid;
    const int flips = 1 + iteration % 3;
    bool length_flipped = false;
    for (int f = 0; f < flips; ++f) {
      const size_t pos = rng() % (8 + header_size);
      bytes[pos] = static_cast<char>(bytes[pos] ^ (1 + rng() % 255));
      length_flipped |= pos < 8;
    }
    WriteBytes(path, bytes);
    absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
    const absl::StatusCode code = file.status().code();
    ++outcomes[code];
    ASSERT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kDataLoss ||
                code == absl::StatusCode::kFailedPrecondition)
        << file.status();
    if (length_flipped) {
      ASSERT_EQ(code, absl::StatusCode::kDataLoss) << file.status();
    }
    if (file.ok()) ExpectConsistent(*file);
  }
  // Most flips break the JSON or the layout; some only rename things.
  EXPECT_GT(outcomes[absl::StatusCode::kDataLoss], 1500);
  EXPECT_GT(outcomes[absl::StatusCode::kOk], 0);
}

TEST(SafetensorsTest, RandomTokenSoupHeadersNeverCrash) {
  const std::string path = FreshDir("soup") + "/soup.safetensors";
  const std::vector<std::string> tokens = {"{",
                                           "}",
                                           "[",
                                           "]",
                                           ":",
                                           ",",
                                           "\"t\"",
                                           "\"u\"",
                                           "\"dtype\"",
                                           "\"F32\"",
                                           "\"BF16\"",
                                           "\"shape\"",
                                           "\"data_offsets\"",
                                           "\"__metadata__\"",
                                           "0",
                                           "1",
                                           "2",
                                           "4",
                                           "8",
                                           "-1",
                                           "1.5",
                                           "null",
                                           "true",
                                           "\"x\"",
                                           "18446744073709551615"};
  std::mt19937 rng(99);
  int accepted = 0;
  for (int iteration = 0; iteration < 6000; ++iteration) {
    std::string header = "{";
    const int n = rng() % 30;
    for (int i = 0; i < n; ++i) header += tokens[rng() % tokens.size()];
    if (rng() % 2) header += "}";
    WriteBytes(path, HandMade(header, std::string(rng() % 12, '\0')));
    absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
    ASSERT_TRUE(file.ok() || file.status().code() == absl::StatusCode::kDataLoss)
        << header << ": " << file.status();
    if (file.ok()) {
      ++accepted;
      ExpectConsistent(*file);
    }
  }
  EXPECT_GT(accepted, 0);  // the soup does make valid files now and then
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  const std::string dir = FreshDir("missing");
  EXPECT_EQ(ReadSafetensors(dir + "/nope.safetensors").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadSafetensorsShapes(dir + "/nope.safetensors").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadSafetensors(dir).status().code(), absl::StatusCode::kFailedPrecondition);
  const std::vector<float> v = {1};
  EXPECT_EQ(WriteSafetensors(dir + "/no/such/dir/x.safetensors", {{"v", {1}, v.data()}}, {}).code(),
            absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, WriteReplacesAtomicallyAndLeavesNoTemporaryFile) {
  const std::string dir = FreshDir("atomic");
  const std::string path = dir + "/ckpt.safetensors";
  const std::vector<float> old_values = {1, 2, 3, 4};
  const std::vector<float> new_values = {5, 6};
  ASSERT_TRUE(WriteSafetensors(path, {{"w", {4}, old_values.data()}}, {{"step", "1"}}).ok());
  ASSERT_TRUE(WriteSafetensors(path, {{"w", {2}, new_values.data()}, {"v", {}, new_values.data()}},
                               {{"step", "2"}})
                  .ok());
  EXPECT_EQ(DirEntries(dir), std::vector<std::string>{"ckpt.safetensors"});
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata.at("step"), "2");
  EXPECT_EQ(file->tensors.at("w").data, new_values);
  EXPECT_EQ(file->tensors.at("v").data, std::vector<float>{5});
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::owner_read,
            std::filesystem::perms::owner_read);
  EXPECT_NE(std::filesystem::status(path).permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::none);

  // A refused write leaves the old file exactly as it was.
  const std::string before = ReadBytes(path);
  EXPECT_EQ(WriteSafetensors(path, {{"", {1}, new_values.data()}}, {}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadBytes(path), before);
  EXPECT_EQ(DirEntries(dir), std::vector<std::string>{"ckpt.safetensors"});

  // A write that fails at the rename (the target is a directory) removes its
  // temporary file.
  std::filesystem::create_directories(dir + "/taken.safetensors/inside");
  EXPECT_FALSE(
      WriteSafetensors(dir + "/taken.safetensors", {{"w", {2}, new_values.data()}}, {}).ok());
  EXPECT_EQ(DirEntries(dir), (std::vector<std::string>{"ckpt.safetensors", "taken.safetensors"}));
}

TEST(SafetensorsTest, InvalidArgumentsAreRefused) {
  const std::string dir = FreshDir("invalid");
  const std::string path = dir + "/x.safetensors";
  const std::vector<float> v = {1, 2, 3, 4};
  struct Case {
    const char* what;
    std::vector<TensorView> tensors;
    std::map<std::string, std::string> metadata;
  };
  const std::vector<Case> cases = {
      {"empty name", {{"", {1}, v.data()}}, {}},
      {"duplicate names", {{"a", {1}, v.data()}, {"b", {1}, v.data()}, {"a", {2}, v.data()}}, {}},
      {"reserved name", {{"__metadata__", {1}, v.data()}}, {}},
      {"reserved prefix", {{"__x", {1}, v.data()}}, {}},
      {"negative dimension", {{"a", {2, -2}, v.data()}}, {}},
      {"null data", {{"a", {2, 2}, nullptr}}, {}},
      {"overflowing shape", {{"a", {int64_t{1} << 40, int64_t{1} << 40}, v.data()}}, {}},
      {"name not UTF-8", {{"a\xff", {1}, v.data()}}, {}},
      {"name a lone surrogate", {{"a\xed\xa0\x80", {1}, v.data()}}, {}},
      {"name overlong UTF-8", {{"\xc0\xaf", {1}, v.data()}}, {}},
      {"name cut UTF-8", {{"ab\xe6\x97", {1}, v.data()}}, {}},
      {"metadata not UTF-8", {{"a", {1}, v.data()}}, {{"k", "\xff"}}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(WriteSafetensors(path, c.tensors, c.metadata).code(),
              absl::StatusCode::kInvalidArgument)
        << c.what;
  }
  EXPECT_TRUE(DirEntries(dir).empty());
  // Null data is fine for an empty tensor, and "_x" is not reserved.
  EXPECT_TRUE(WriteSafetensors(path, {{"_x", {0, 5}, nullptr}, {"é", {1}, v.data()}}, {}).ok());
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->order, (std::vector<std::string>{"_x", "é"}));
}

TEST(SafetensorsTest, EmptyFileOfNoTensors) {
  const std::string path = FreshDir("none") + "/none.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, {}, {}).ok());
  EXPECT_EQ(ReadBytes(path), U64Le(8) + "{}      ");
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->tensors.empty());
  EXPECT_TRUE(file->order.empty());
}

}  // namespace
}  // namespace maximus::trainer
