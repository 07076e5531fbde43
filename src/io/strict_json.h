// JSON parsing for files we validate strictly (safetensors headers, shard indexes, configs).
// nlohmann keeps only the last of two equal keys in an object, which would let a file say two
// different things about one tensor; this parser refuses duplicates instead, bounds the
// nesting depth, and turns every parse failure into freeswim::Error naming the source.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace freeswim::io {

// Parses `text` as one JSON value (surrounding whitespace allowed). `label` names the source
// (a file path, or "path (header)") in errors. Objects and arrays may nest at most
// `max_depth` levels deep (the outermost container is level 1).
nlohmann::json parse_json_strict(std::string_view text, const std::string& label, int max_depth);

// Reads and parses a whole JSON file with parse_json_strict; refuses files over `max_bytes`.
nlohmann::json read_json_file(const std::string& path, int max_depth,
                              size_t max_bytes = size_t{64} << 20);

}  // namespace freeswim::io
