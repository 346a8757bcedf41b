// The generated messages of common.proto: wire round trip and field layout.

#include <string>

#include "gtest/gtest.h"
#include "proto/common.pb.h"

namespace maximus {
namespace {

TEST(CommonProtoTest, TokenSequenceRoundTrips) {
  TokenSequence sequence;
  for (int id : {2, 262143, 0, 17}) sequence.add_ids(id);
  sequence.set_loss_mask(std::string("\x00\x01\x01\x01", 4));
  const std::string wire = sequence.SerializeAsString();
  TokenSequence parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  ASSERT_EQ(parsed.ids_size(), 4);
  EXPECT_EQ(parsed.ids(1), 262143);
  EXPECT_EQ(parsed.loss_mask(), sequence.loss_mask());
}

TEST(CommonProtoTest, IdsArePackedOnTheWire) {
  TokenSequence sequence;
  for (int i = 0; i < 100; ++i) sequence.add_ids(1);
  // proto3 packs repeated scalars: 1 tag + 1 length + 100 one-byte varints.
  EXPECT_EQ(sequence.ByteSizeLong(), 102u);
}

TEST(CommonProtoTest, RejectsTruncatedInput) {
  TokenizerFingerprint fingerprint;
  fingerprint.set_sha256(std::string(64, 'a'));
  fingerprint.set_vocab_size(262144);
  std::string wire = fingerprint.SerializeAsString();
  wire.resize(wire.size() - 5);
  TokenizerFingerprint parsed;
  EXPECT_FALSE(parsed.ParseFromString(wire));
}

}  // namespace
}  // namespace maximus
