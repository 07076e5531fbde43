// Protocol-buffer wire format, written by hand for the few fields a sentencepiece ModelProto
// needs (field numbers of sentencepiece_model.proto):
//   ModelProto      1 pieces (repeated message), 2 trainer_spec, 3 normalizer_spec
//   SentencePiece   1 piece (string), 2 score (float), 3 type (enum: 1 normal, 2 unknown,
//                   3 control, 4 user defined, 5 unused, 6 byte)
//   TrainerSpec     3 model_type (1 unigram), 4 vocab_size, 40 unk_id, 41 bos_id, 42 eos_id,
//                   43 pad_id
//   NormalizerSpec  1 name, 2 precompiled_charsmap (bytes), 3 add_dummy_prefix,
//                   4 remove_extra_whitespaces, 5 escape_whitespaces
#include "text/spm_from_gguf.h"

#include <cstring>

#include "core/error.h"

namespace freeswim::text {

namespace {

void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void tag(std::string& out, int field, int wire) {
  varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire));
}

void int_field(std::string& out, int field, int64_t v) {
  tag(out, field, 0);
  varint(out, static_cast<uint64_t>(v));  // negative int32: ten bytes, two's complement
}

void bytes_field(std::string& out, int field, std::string_view v) {
  tag(out, field, 2);
  varint(out, v.size());
  out.append(v);
}

void float_field(std::string& out, int field, float v) {
  tag(out, field, 5);
  uint32_t u;
  std::memcpy(&u, &v, 4);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(u >> (8 * i)));
}

}  // namespace

std::optional<std::string> sentencepiece_model_from_gguf(const io::GgufFile& f) {
  const io::GgufValue* tokens = f.value("tokenizer.ggml.tokens");
  if (tokens == nullptr) return std::nullopt;
  const std::string& path = f.path();
  FS_CHECK(tokens->type == io::GgufValueType::ARRAY && tokens->elem == io::GgufValueType::STRING &&
               tokens->count > 0,
           "{}: tokenizer.ggml.tokens must be a non-empty array of strings, got {}", path,
           tokens->describe());
  const std::string model = f.string_value("tokenizer.ggml.model");
  FS_CHECK(model == "t5",
           "{}: tokenizer.ggml.model is '{}'; only the unigram tokenizer of T5 models ('t5') is "
           "read (give the UMT5 tokenizer with --tokenizer)",
           path, model);
  const uint64_t n = tokens->count;
  const io::GgufValue* scores = f.value("tokenizer.ggml.scores");
  const io::GgufValue* types = f.value("tokenizer.ggml.token_type");
  FS_CHECK(scores != nullptr && scores->type == io::GgufValueType::ARRAY &&
               scores->elem == io::GgufValueType::FLOAT32 && scores->count == n,
           "{}: tokenizer.ggml.scores must be {} FLOAT32 values (one per token), got {}", path, n,
           scores ? scores->describe() : "nothing");
  FS_CHECK(types == nullptr || (types->type == io::GgufValueType::ARRAY && types->count == n &&
                                (types->elem == io::GgufValueType::INT32 ||
                                 types->elem == io::GgufValueType::UINT32)),
           "{}: tokenizer.ggml.token_type must be {} INT32 values (one per token), got {}", path, n,
           types ? types->describe() : "");
  auto id = [&](const char* key) -> int64_t {
    const io::GgufValue* v = f.value(key);
    if (v == nullptr) return -1;
    const std::optional<int64_t> i = v->integer();
    FS_CHECK(i && *i >= 0 && static_cast<uint64_t>(*i) < n,
             "{}: {} must be a token id below {}, got {}", path, key, n, v->describe());
    return *i;
  };
  auto flag = [&](const char* key, bool fallback) {
    const io::GgufValue* v = f.value(key);
    if (v == nullptr) return fallback;
    FS_CHECK(v->boolean().has_value(), "{}: {} must be BOOL, got {}", path, key, v->describe());
    return *v->boolean();
  };

  std::string proto;
  int unknowns = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const std::string& piece = tokens->strings[i];
    FS_CHECK(!piece.empty(), "{}: tokenizer.ggml.tokens[{}] is empty", path, i);
    const int64_t type = types ? *types->integer_at(i) : 1;
    FS_CHECK(type >= 1 && type <= 6, "{}: tokenizer.ggml.token_type[{}] is {}, not 1..6", path, i,
             type);
    unknowns += type == 2;
    std::string msg;
    bytes_field(msg, 1, piece);
    float_field(msg, 2, static_cast<float>(*scores->number_at(i)));
    if (type != 1) int_field(msg, 3, type);
    bytes_field(proto, 1, msg);
  }
  FS_CHECK(unknowns == 1,
           "{}: tokenizer.ggml.token_type marks {} tokens unknown; a unigram model has one", path,
           unknowns);

  std::string trainer;
  int_field(trainer, 3, 1);  // unigram
  int_field(trainer, 4, static_cast<int64_t>(n));
  int64_t unk = id("tokenizer.ggml.unknown_token_id");
  if (unk < 0)
    for (uint64_t i = 0; i < n; ++i)
      if (types && *types->integer_at(i) == 2) unk = static_cast<int64_t>(i);
  int_field(trainer, 40, unk);
  int_field(trainer, 41, id("tokenizer.ggml.bos_token_id"));
  int_field(trainer, 42, id("tokenizer.ggml.eos_token_id"));
  int_field(trainer, 43, id("tokenizer.ggml.padding_token_id"));
  bytes_field(proto, 2, trainer);

  std::string normalizer;
  std::string charsmap;
  if (const io::GgufValue* c = f.value("tokenizer.ggml.precompiled_charsmap")) {
    FS_CHECK(c->type == io::GgufValueType::ARRAY &&
                 (c->elem == io::GgufValueType::UINT8 || c->elem == io::GgufValueType::INT8),
             "{}: tokenizer.ggml.precompiled_charsmap must be an array of bytes, got {}", path,
             c->describe());
    charsmap.assign(c->raw.begin(), c->raw.end());
  }
  bytes_field(normalizer, 1, charsmap.empty() ? "identity" : "nmt_nfkc");
  if (!charsmap.empty()) bytes_field(normalizer, 2, charsmap);
  int_field(normalizer, 3, flag("tokenizer.ggml.add_space_prefix", true));
  int_field(normalizer, 4, flag("tokenizer.ggml.remove_extra_whitespaces", true));
  int_field(normalizer, 5, 1);
  bytes_field(proto, 3, normalizer);
  return proto;
}

}  // namespace freeswim::text
