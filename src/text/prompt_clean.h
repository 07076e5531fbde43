// Wan's prompt cleaning (`prompt_clean` in the Wan repo and the diffusers Wan pipelines):
//   whitespace_clean(basic_clean(text)), where basic_clean = ftfy.fix_text, then
//   html.unescape twice, then strip; whitespace_clean = re.sub(r"\s+", " ") and strip.
// Python's html.unescape and Unicode whitespace rules are reproduced here. ftfy is not: see
// clean_prompt for what that leaves out.
#pragma once

#include <string>
#include <string_view>

namespace freeswim::text {

// Python's html.unescape on UTF-8 text: numeric references (decimal and hex, with or without
// ';', including HTML5's Windows-1252 remapping of 0x80-0x9f and its dropped code points) and
// named references. Named references cover HTML5's legacy set (the Latin-1 names, which may
// also appear without ';', matched by longest prefix as Python does) plus the common
// typographic names (quotes, dashes, ellipsis, euro, trade...); the other ~2000 HTML5 names
// (mathematical and Greek symbols, arrows...) are left as they are.
std::string html_unescape(std::string_view text);

// Every run of Unicode whitespace (Python's str.isspace: ASCII controls 0x09-0x0d and
// 0x1c-0x1f, space, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F,
// U+3000) becomes one ASCII space; leading and trailing whitespace is removed. Bytes that are
// not valid UTF-8 are kept as they are.
std::string collapse_whitespace(std::string_view text);

// Wan's prompt_clean without ftfy.fix_text: html_unescape twice, then collapse_whitespace.
// Not replicated from ftfy (it is Python only): repair of mojibake (UTF-8 decoded as
// Latin-1/Windows-1252, e.g. "cafÃ©" -> "café"), uncurling of curly quotes, expansion of Latin
// ligatures and full-width characters (sentencepiece's NFKC normalisation covers the latter
// two), removal of terminal escapes and control characters, and NFC normalisation. Prompts
// typed as plain Unicode are cleaned exactly as Wan does.
std::string clean_prompt(std::string_view text);

}  // namespace freeswim::text
