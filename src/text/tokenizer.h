// The UMT5 tokenizer Wan uses (google/umt5-xxl): a sentencepiece model, the text's ids followed
// by `</s>`, padded with `<pad>` to a fixed length (512 for Wan), truncated so that `</s>` is
// always kept, as transformers' T5 tokenizers do with truncation=True.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace freeswim::text {

struct Tokens {
  std::vector<int32_t> ids;   // max_length entries: text ids, </s>, then padding
  std::vector<int32_t> mask;  // 1 up to and including </s>, 0 over the padding
  int64_t length = 0;         // number of 1s in mask
};

class Tokenizer {
 public:
  // `path` is a `spiece.model`, or a directory holding one directly, in `tokenizer/` (diffusers
  // layout) or in `google/umt5-xxl/` (the original Wan layout). Throws Error naming the path.
  static Tokenizer load(const std::string& path);
  // A serialized sentencepiece ModelProto; `label` names its origin in errors.
  static Tokenizer from_serialized(const std::string& model_proto, const std::string& label);
  // The tokenizer a text encoder file carries: ComfyUI's UMT5 safetensors keep the
  // sentencepiece model as a U8 tensor `spiece_model`, GGUF files in tokenizer.ggml.*. nullopt
  // when the file (or folder) holds none.
  static std::optional<Tokenizer> embedded_in(const std::string& encoder_path);

  // The ids of `text` followed by </s>, without padding or truncation. `text` is used as
  // given: clean it first (clean_prompt) where Wan does.
  std::vector<int32_t> encode(std::string_view text) const;
  // encode(), truncated to max_length (keeping </s> last) and padded to max_length.
  Tokens tokenize(std::string_view text, int64_t max_length = 512) const;
  // What Wan does with a user's prompt: clean_prompt, then tokenize.
  Tokens tokenize_prompt(std::string_view prompt, int64_t max_length = 512) const;

  int32_t eos_id() const { return eos_id_; }
  int32_t pad_id() const { return pad_id_; }
  int64_t vocab_size() const;
  const std::string& path() const { return path_; }

 private:
  // Reads the special ids of a loaded model and keeps it.
  void finish(std::shared_ptr<sentencepiece::SentencePieceProcessor> sp);

  std::string path_;
  std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp_;
  int32_t eos_id_ = 1;
  int32_t pad_id_ = 0;
};

}  // namespace freeswim::text
