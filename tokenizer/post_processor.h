// Post-processors of tokenizer.json: the special tokens a model expects
// around an encoded sequence (added only when asked for).

#ifndef MAXIMUS_TOKENIZER_POST_PROCESSOR_H_
#define MAXIMUS_TOKENIZER_POST_PROCESSOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace maximus::tokenizer {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual std::vector<int32_t> Process(std::vector<int32_t> ids) const = 0;
  // Ids this post-processor may add, for GetInfo.
  virtual std::vector<int32_t> SpecialIds() const { return {}; }
};

// TemplateProcessing's "single" template: special-token ids and the sequence.
class TemplateProcessor : public PostProcessor {
 public:
  struct Piece {
    bool is_sequence = false;
    std::vector<int32_t> ids;  // For a special token.
  };
  explicit TemplateProcessor(std::vector<Piece> single) : single_(std::move(single)) {}
  std::vector<int32_t> Process(std::vector<int32_t> ids) const override;
  std::vector<int32_t> SpecialIds() const override;

 private:
  std::vector<Piece> single_;
};

// ByteLevel post-processing only trims offsets: ids pass unchanged.
class IdentityProcessor : public PostProcessor {
 public:
  std::vector<int32_t> Process(std::vector<int32_t> ids) const override { return ids; }
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> steps)
      : steps_(std::move(steps)) {}
  std::vector<int32_t> Process(std::vector<int32_t> ids) const override;
  std::vector<int32_t> SpecialIds() const override;

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_POST_PROCESSOR_H_
