#include "data_service/epoch_order.h"

#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace maximus::data {
namespace {

std::vector<RawId> RandomIds(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<RawId> ids(n);
  for (RawId& id : ids) {
    for (uint8_t& b : id) b = static_cast<uint8_t>(rng());
  }
  return ids;
}

Selection Select(Split split, uint64_t seed, uint32_t rank, uint32_t world, double fraction) {
  Selection s;
  s.set_split(split);
  s.set_seed(seed);
  s.set_rank(rank);
  s.set_world_size(world);
  s.set_validation_fraction(fraction);
  return s;
}

TEST(EpochOrderTest, HexIdRoundTrip) {
  for (const RawId& id : RandomIds(20, 1)) {
    RawId back;
    ASSERT_TRUE(ParseHexId(HexId(id), &back));
    EXPECT_EQ(back, id);
    ASSERT_TRUE(IdFromBytes(IdBytes(id), &back));
    EXPECT_EQ(back, id);
  }
  RawId id;
  EXPECT_FALSE(ParseHexId("abc", &id));
  EXPECT_FALSE(ParseHexId(std::string(63, 'a') + "G", &id));
  EXPECT_FALSE(ParseHexId(std::string(64, 'A'), &id));
  EXPECT_FALSE(IdFromBytes("short", &id));
}

TEST(EpochOrderTest, ValidationShareFollowsTheFraction) {
  const std::vector<RawId> ids = RandomIds(20000, 2);
  for (double fraction : {0.0, 0.01, 0.1, 0.5}) {
    int held_out = 0;
    for (const RawId& id : ids) held_out += InValidation(id, fraction);
    const double expected = fraction * ids.size();
    EXPECT_NEAR(held_out, expected, 5 * std::sqrt(expected + 1)) << fraction;
  }
  // Nested: a larger fraction holds out a superset.
  for (const RawId& id : ids) {
    if (InValidation(id, 0.01)) EXPECT_TRUE(InValidation(id, 0.1));
  }
}

TEST(EpochOrderTest, RanksPartitionTheSplitAndEpochsReshuffle) {
  const std::vector<RawId> ids = RandomIds(3000, 3);
  const int world = 4;
  std::set<RawId> seen;
  std::vector<int> per_rank(world);
  for (int rank = 0; rank < world; ++rank) {
    const EpochOrder order(Select(SPLIT_TRAIN, 7, rank, world, 0.1), 0);
    for (const RawId& id : ids) {
      uint64_t key;
      if (order.Selects(id, &key)) {
        EXPECT_TRUE(seen.insert(id).second);
        EXPECT_EQ(key, order.Key(id));
        ++per_rank[rank];
      }
    }
  }
  int train = 0;
  for (const RawId& id : ids) train += !InValidation(id, 0.1);
  EXPECT_EQ(static_cast<int>(seen.size()), train);
  for (int n : per_rank) EXPECT_NEAR(n, train / world, 150);

  const Selection s = Select(SPLIT_TRAIN, 7, 0, 1, 0.1);
  const EpochOrder e0(s, 0), e1(s, 1), other_seed(Select(SPLIT_TRAIN, 8, 0, 1, 0.1), 0);
  int same_epoch = 0, same_seed = 0;
  for (const RawId& id : ids) {
    same_epoch += e0.Key(id) == e1.Key(id);
    same_seed += e0.Key(id) == other_seed.Key(id);
  }
  EXPECT_EQ(same_epoch, 0);
  EXPECT_EQ(same_seed, 0);
  // The order is a function of the id alone: a second object agrees.
  const EpochOrder again(s, 0);
  for (const RawId& id : ids) EXPECT_EQ(again.Key(id), e0.Key(id));
}

TEST(EpochOrderTest, ValidateSelectionNamesTheField) {
  EXPECT_TRUE(ValidateSelection(Select(SPLIT_TRAIN, 0, 0, 1, 0)).ok());
  auto message = [](const Selection& s) { return std::string(ValidateSelection(s).message()); };
  EXPECT_NE(message(Select(SPLIT_UNSPECIFIED, 0, 0, 1, 0)).find("selection.split"),
            std::string::npos);
  EXPECT_NE(message(Select(SPLIT_TRAIN, 0, 0, 0, 0)).find("selection.world_size"),
            std::string::npos);
  EXPECT_NE(message(Select(SPLIT_TRAIN, 0, 3, 3, 0)).find("selection.rank"), std::string::npos);
  EXPECT_NE(message(Select(SPLIT_TRAIN, 0, 0, 1, 0.7)).find("selection.validation_fraction"),
            std::string::npos);
  EXPECT_EQ(ValidateSelection(Select(SPLIT_TRAIN, 0, 0, 1, -0.1)).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace maximus::data
