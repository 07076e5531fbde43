#include "text/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "text/prompt_clean.h"
#include "text/spm_from_gguf.h"

namespace freeswim::text {

namespace {

std::string find_model(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    FS_CHECK(fs::is_regular_file(path, ec), "tokenizer '{}': no such file or directory", path);
    return path;
  }
  for (const char* sub :
       {"spiece.model", "tokenizer/spiece.model", "google/umt5-xxl/spiece.model"}) {
    fs::path candidate = fs::path(path) / sub;
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
  }
  fail(
      "tokenizer '{}': the directory holds no spiece.model (looked in ., tokenizer/ and "
      "google/umt5-xxl/)",
      path);
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& path) {
  Tokenizer t;
  t.path_ = find_model(path);
  auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
  auto status = sp->Load(t.path_);
  FS_CHECK(status.ok(), "tokenizer '{}': not a sentencepiece model ({})", t.path_,
           status.ToString());
  t.finish(std::move(sp));
  return t;
}

Tokenizer Tokenizer::from_serialized(const std::string& model_proto, const std::string& label) {
  Tokenizer t;
  t.path_ = label;
  auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
  auto status = sp->LoadFromSerializedProto(model_proto);
  FS_CHECK(status.ok(), "tokenizer '{}': not a sentencepiece model ({})", label, status.ToString());
  t.finish(std::move(sp));
  return t;
}

std::optional<Tokenizer> Tokenizer::embedded_in(const std::string& encoder_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(encoder_path, ec)) return std::nullopt;
  if (io::looks_like_gguf(encoder_path)) {
    const auto gguf = io::GgufFile::open(encoder_path);
    std::optional<std::string> proto = sentencepiece_model_from_gguf(*gguf);
    if (!proto) return std::nullopt;
    return from_serialized(*proto, encoder_path + " (tokenizer.ggml.*)");
  }
  const std::string ext = fs::path(encoder_path).extension().string();
  if (ext != ".safetensors" && ext != ".sft") return std::nullopt;
  const io::TensorSource src = io::TensorSource::open(encoder_path);
  for (const std::string& name : src.names()) {
    if (name != "spiece_model" && !(name.size() > 13 && name.ends_with(".spiece_model"))) continue;
    const io::TensorInfo* info = src.find(name);
    FS_CHECK(info->dtype == DType::U8 && info->shape.size() == 1,
             "{}: tensor '{}' should hold the bytes of a sentencepiece model (U8, 1-d), got {}{}",
             encoder_path, name, dtype_name(info->dtype), shape_str(info->shape));
    const Tensor bytes = src.tensor(name);
    return from_serialized(std::string(static_cast<const char*>(bytes.raw()), bytes.nbytes()),
                           encoder_path + " (tensor '" + name + "')");
  }
  return std::nullopt;
}

void Tokenizer::finish(std::shared_ptr<sentencepiece::SentencePieceProcessor> sp) {
  Tokenizer& t = *this;
  // T5 models define </s> and <pad> (ids 1 and 0 in every UMT5 vocabulary).
  t.eos_id_ = sp->eos_id();
  t.pad_id_ = sp->pad_id();
  FS_CHECK(t.eos_id_ >= 0 && t.pad_id_ >= 0,
           "tokenizer '{}': the model defines no </s> or <pad> piece (eos id {}, pad id {})",
           t.path_, t.eos_id_, t.pad_id_);
  t.sp_ = std::move(sp);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  auto status = sp_->Encode(std::string(text), &ids);
  FS_CHECK(status.ok(), "tokenizer '{}': cannot encode the prompt ({})", path_, status.ToString());
  std::vector<int32_t> out(ids.begin(), ids.end());
  out.push_back(eos_id_);
  return out;
}

Tokens Tokenizer::tokenize(std::string_view text, int64_t max_length) const {
  FS_CHECK(max_length >= 1, "tokenizer: max length must be at least 1, got {}", max_length);
  std::vector<int32_t> ids = encode(text);
  const size_t n = static_cast<size_t>(max_length);
  if (ids.size() > n) {
    ids.resize(n);
    ids.back() = eos_id_;
  }
  Tokens t;
  t.length = static_cast<int64_t>(ids.size());
  t.mask.assign(n, 0);
  std::fill(t.mask.begin(), t.mask.begin() + t.length, 1);
  ids.resize(n, pad_id_);
  t.ids = std::move(ids);
  return t;
}

Tokens Tokenizer::tokenize_prompt(std::string_view prompt, int64_t max_length) const {
  return tokenize(clean_prompt(prompt), max_length);
}

int64_t Tokenizer::vocab_size() const {
  return sp_->GetPieceSize();
}

}  // namespace freeswim::text
