#include "data_service/epoch_order.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace maximus::data {
namespace {

// SplitMix64's finaliser: a bijection on 64 bits with full avalanche.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t BigEndian64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

uint64_t ValidationThreshold(double fraction) {
  if (fraction <= 0) return 0;
  // 2^64 * fraction, computed in long double to keep the low bits.
  return static_cast<uint64_t>(std::ldexp(static_cast<long double>(fraction), 64));
}

}  // namespace

bool ParseHexId(absl::string_view hex, RawId* id) {
  if (hex.size() != 64) return false;
  for (int i = 0; i < 32; ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*id)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

std::string HexId(const RawId& id) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(64, '0');
  for (int i = 0; i < 32; ++i) {
    hex[2 * i] = kDigits[id[i] >> 4];
    hex[2 * i + 1] = kDigits[id[i] & 15];
  }
  return hex;
}

bool IdFromBytes(absl::string_view bytes, RawId* id) {
  if (bytes.size() != id->size()) return false;
  for (size_t i = 0; i < id->size(); ++i) (*id)[i] = static_cast<uint8_t>(bytes[i]);
  return true;
}

absl::Status ValidateSelection(const Selection& selection) {
  if (selection.split() != SPLIT_TRAIN && selection.split() != SPLIT_VALIDATION) {
    return absl::InvalidArgumentError("selection.split must be SPLIT_TRAIN or SPLIT_VALIDATION");
  }
  if (selection.world_size() < 1) {
    return absl::InvalidArgumentError("selection.world_size must be at least 1");
  }
  if (selection.rank() >= selection.world_size()) {
    return absl::InvalidArgumentError(absl::StrCat("selection.rank ", selection.rank(),
                                                   " must be below selection.world_size ",
                                                   selection.world_size()));
  }
  const double f = selection.validation_fraction();
  if (!(f >= 0 && f <= 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("selection.validation_fraction ", f, " outside [0, 0.5]"));
  }
  return absl::OkStatus();
}

bool InValidation(const RawId& id, double fraction) {
  return BigEndian64(id.data() + 8) < ValidationThreshold(fraction);
}

EpochOrder::EpochOrder(const Selection& selection, uint64_t epoch)
    : validation_(selection.split() == SPLIT_VALIDATION),
      validation_threshold_(ValidationThreshold(selection.validation_fraction())),
      epoch_salt_(Mix(Mix(selection.seed() ^ 0x6a09e667f3bcc908ULL) + epoch)),
      rank_(selection.rank()),
      world_size_(selection.world_size()) {}

bool EpochOrder::InSplit(const RawId& id) const {
  return (BigEndian64(id.data() + 8) < validation_threshold_) == validation_;
}

uint64_t EpochOrder::Key(const RawId& id) const {
  return Mix(BigEndian64(id.data() + 16) ^ epoch_salt_);
}

uint32_t EpochOrder::RankOf(uint64_t key) const {
  return static_cast<uint32_t>(Mix(key ^ 0xbb67ae8584caa73bULL) % world_size_);
}

bool EpochOrder::Selects(const RawId& id, uint64_t* key) const {
  if (!InSplit(id)) return false;
  *key = Key(id);
  return RankOf(*key) == rank_;
}

}  // namespace maximus::data
