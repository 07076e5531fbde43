// A GGUF file's tokenizer (tokenizer.ggml.*, as llama.cpp's converter writes a T5 tokenizer) as
// the serialized sentencepiece ModelProto it came from, so that sentencepiece itself tokenizes
// with it (docs/gguf.md, "Tokenizer").
#pragma once

#include <optional>
#include <string>

#include "io/gguf.h"

namespace freeswim::text {

// The serialized ModelProto (a unigram model: pieces with scores and types, the unk / bos / eos
// / pad ids, the normalizer's precompiled charsmap and whitespace flags); nullopt when the file
// has no tokenizer.ggml.tokens. Throws Error naming the file and key for a tokenizer that is not
// a unigram ("t5") one or whose arrays disagree.
std::optional<std::string> sentencepiece_model_from_gguf(const io::GgufFile& file);

}  // namespace freeswim::text
