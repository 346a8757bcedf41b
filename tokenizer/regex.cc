#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace maximus::tokenizer {
namespace {

// ECMAScript's \s (WhiteSpace and LineTerminator), as a class body.
constexpr char kJsSpace[] =
    "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}";

pcre2_code* AsCode(void* code) { return static_cast<pcre2_code*>(code); }

// Per-thread match data and JIT stack: PCRE2 objects that must not be shared.
struct MatchScratch {
  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    context = pcre2_match_context_create(nullptr);
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
  pcre2_match_data* data;
  pcre2_jit_stack* stack;
  pcre2_match_context* context;
};

MatchScratch& Scratch() {
  thread_local MatchScratch scratch;
  return scratch;
}

}  // namespace

std::string Regex::ToPcre2(absl::string_view js) {
  // Python's inline case-insensitive group, which the reference spells out.
  std::string pattern = absl::StrReplaceAll(
      js,
      {{"(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))"}});
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      switch (e) {
        case 's':
          absl::StrAppend(&out, in_class ? "" : "[", kJsSpace, in_class ? "" : "]");
          break;
        case 'S':
          if (in_class) {
            out += "\\S";  // No class subtraction in PCRE2; keep its own meaning.
          } else {
            absl::StrAppend(&out, "[^", kJsSpace, "]");
          }
          break;
        case 'd':
          out += in_class ? "0-9" : "[0-9]";
          break;
        case 'D':
          out += in_class ? "\\D" : "[^0-9]";
          break;
        case '#':
        case '&':
        case '~':
          out += e;  // Escapes JavaScript drops.
          break;
        default:
          out += c;
          out += e;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A leading ']' or '^]' is literal inside the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::CompilePcre2(absl::string_view source,
                                                           const std::string& pcre) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre.data()), pcre.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("invalid regex pattern \"", source,
                                                   "\" at offset ", offset, ": ",
                                                   reinterpret_cast<const char*>(message)));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // The interpreter runs if JIT is unavailable.
  return std::unique_ptr<Regex>(new Regex(std::string(source), code));
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(absl::string_view pattern) {
  return CompilePcre2(pattern, ToPcre2(pattern));
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::Literal(absl::string_view literal) {
  return CompilePcre2(
      literal, absl::StrCat("\\Q", absl::StrReplaceAll(literal, {{"\\E", "\\E\\\\E\\Q"}}), "\\E"));
}

Regex::~Regex() { pcre2_code_free(AsCode(code_)); }

void Regex::FindAll(absl::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const {
  MatchScratch& scratch = Scratch();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    int rc = pcre2_match(AsCode(code_), subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                         scratch.data, scratch.context);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
      // A JIT resource limit: the interpreter, which keeps its state on the heap.
      rc = pcre2_match(AsCode(code_), subject, text.size(), start,
                       PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, scratch.data, nullptr);
    }
    if (rc < 0) break;  // No further match.
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
    const size_t begin = ovector[0], end = ovector[1];
    if (end > begin) {
      matches->emplace_back(begin, end);
      start = end;
    } else {
      // An empty match: step over one code point.
      if (begin >= text.size()) break;
      start = begin + 1;
      while (start < text.size() && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) ++start;
    }
  }
}

std::string Regex::ReplaceAll(absl::string_view text, absl::string_view replacement) const {
  std::vector<std::pair<size_t, size_t>> matches;
  FindAll(text, &matches);
  std::string out;
  out.reserve(text.size());
  size_t last = 0;
  for (const auto& [begin, end] : matches) {
    out.append(text.data() + last, begin - last);
    out.append(replacement.data(), replacement.size());
    last = end;
  }
  out.append(text.data() + last, text.size() - last);
  return out;
}

}  // namespace maximus::tokenizer
