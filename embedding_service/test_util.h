// Helpers shared by the embedding service's tests: a fresh directory under
// the test's temporary directory, random vectors with Matryoshka structure
// (per-dimension spread decaying with the index), records of them, real
// English sentences (the openings of Jane Austen's novels), and main() for
// tests given a path.

#ifndef MAXIMUS_EMBEDDING_SERVICE_TEST_UTIL_H_
#define MAXIMUS_EMBEDDING_SERVICE_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "embedding_service/vector_record.h"
#include "gtest/gtest.h"

namespace maximus::embedding::testing {

// $TEST_TMPDIR/name (or /tmp/name), emptied.
inline std::string TestDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
  std::filesystem::remove_all(dir);
  return dir;
}

inline std::vector<float> RandomVector(int64_t dims, std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(dims);
  for (int64_t j = 0; j < dims; ++j) v[j] = normal(rng) / std::sqrt(1.0f + j / 16.0f);
  return v;
}

// Ids <prefix>0 .. <prefix>(n-1); metadata {"group": i mod 3}.
inline std::vector<VectorRecord> RandomRecords(int64_t n, int64_t dims, uint64_t seed,
                                               const std::string& prefix = "v") {
  std::mt19937_64 rng(seed);
  std::vector<VectorRecord> records(n);
  for (int64_t i = 0; i < n; ++i) {
    records[i].id = absl::StrCat(prefix, i);
    records[i].values = RandomVector(dims, rng);
    records[i].metadata = {{"group", absl::StrCat(i % 3)}};
  }
  return records;
}

inline const std::vector<std::string>& AustenOpenings() {
  static const auto* const openings = new std::vector<std::string>{
      "It is a truth universally acknowledged, that a single man in possession of a good "
      "fortune, must be in want of a wife.",
      "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy "
      "disposition, seemed to unite some of the best blessings of existence.",
      "The family of Dashwood had long been settled in Sussex.",
      "No one who had ever seen Catherine Morland in her infancy would have supposed her born "
      "to be an heroine. Her situation in life, the character of her father and mother, her own "
      "person and disposition, were all equally against her.",
      "Sir Walter Elliot, of Kellynch Hall, in Somersetshire, was a man who, for his own "
      "amusement, never took up any book but the Baronetage.",
      "About thirty years ago Miss Maria Ward, of Huntingdon, with only seven thousand pounds, "
      "had the good luck to captivate Sir Thomas Bertram.",
  };
  return *openings;
}

// main() of a test given one path (a Bazel rootpath): `*path` = argv[1].
inline int RunTestsWithPath(int argc, char** argv, const char* what, std::string* path) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s %s\n", argv[0], what);
    return 2;
  }
  *path = argv[1];
  return RUN_ALL_TESTS();
}

}  // namespace maximus::embedding::testing

#endif  // MAXIMUS_EMBEDDING_SERVICE_TEST_UTIL_H_
