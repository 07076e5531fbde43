#include "text/prompt_clean.h"

#include <cstdint>
#include <string_view>

namespace freeswim::text {

namespace {

struct NamedRef {
  std::string_view name;
  char32_t code;
  bool legacy;  // also recognised without the ';' (HTML5's legacy entities)
};

// Legacy entities: the Latin-1 block U+00A0..U+00FF in code point order, then the few others.
constexpr std::string_view kLatin1Names[] = {
    "nbsp",   "iexcl",  "cent",   "pound",  "curren", "yen",    "brvbar", "sect",   "uml",
    "copy",   "ordf",   "laquo",  "not",    "shy",    "reg",    "macr",   "deg",    "plusmn",
    "sup2",   "sup3",   "acute",  "micro",  "para",   "middot", "cedil",  "sup1",   "ordm",
    "raquo",  "frac14", "frac12", "frac34", "iquest", "Agrave", "Aacute", "Acirc",  "Atilde",
    "Auml",   "Aring",  "AElig",  "Ccedil", "Egrave", "Eacute", "Ecirc",  "Euml",   "Igrave",
    "Iacute", "Icirc",  "Iuml",   "ETH",    "Ntilde", "Ograve", "Oacute", "Ocirc",  "Otilde",
    "Ouml",   "times",  "Oslash", "Ugrave", "Uacute", "Ucirc",  "Uuml",   "Yacute", "THORN",
    "szlig",  "agrave", "aacute", "acirc",  "atilde", "auml",   "aring",  "aelig",  "ccedil",
    "egrave", "eacute", "ecirc",  "euml",   "igrave", "iacute", "icirc",  "iuml",   "eth",
    "ntilde", "ograve", "oacute", "ocirc",  "otilde", "ouml",   "divide", "oslash", "ugrave",
    "uacute", "ucirc",  "uuml",   "yacute", "thorn",  "yuml",
};

constexpr NamedRef kOtherNames[] = {
    {"amp", U'&', true},          {"AMP", U'&', true},          {"lt", U'<', true},
    {"LT", U'<', true},           {"gt", U'>', true},           {"GT", U'>', true},
    {"quot", U'"', true},         {"QUOT", U'"', true},         {"COPY", U'\u00a9', true},
    {"REG", U'\u00ae', true},     {"apos", U'\'', false},       {"ndash", U'\u2013', false},
    {"mdash", U'\u2014', false},  {"lsquo", U'\u2018', false},  {"rsquo", U'\u2019', false},
    {"sbquo", U'\u201a', false},  {"ldquo", U'\u201c', false},  {"rdquo", U'\u201d', false},
    {"bdquo", U'\u201e', false},  {"dagger", U'\u2020', false}, {"Dagger", U'\u2021', false},
    {"bull", U'\u2022', false},   {"hellip", U'\u2026', false}, {"permil", U'\u2030', false},
    {"prime", U'\u2032', false},  {"Prime", U'\u2033', false},  {"lsaquo", U'\u2039', false},
    {"rsaquo", U'\u203a', false}, {"euro", U'\u20ac', false},   {"trade", U'\u2122', false},
    {"ensp", U'\u2002', false},   {"emsp", U'\u2003', false},   {"thinsp", U'\u2009', false},
    {"zwnj", U'\u200c', false},   {"zwj", U'\u200d', false},    {"minus", U'\u2212', false},
    {"OElig", U'\u0152', false},  {"oelig", U'\u0153', false},  {"Scaron", U'\u0160', false},
    {"scaron", U'\u0161', false}, {"Yuml", U'\u0178', false},   {"fnof", U'\u0192', false},
    {"circ", U'\u02c6', false},   {"tilde", U'\u02dc', false},
};

// The code point of `name` (given with or without its ';'), or -1.
int64_t lookup(std::string_view name, bool with_semicolon) {
  for (size_t k = 0; k < std::size(kLatin1Names); ++k)
    if (kLatin1Names[k] == name) return 0xa0 + static_cast<int64_t>(k);
  for (const NamedRef& r : kOtherNames)
    if (r.name == name && (with_semicolon || r.legacy)) return r.code;
  return -1;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xc0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xe0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  }
}

// HTML5 maps these numeric references (a Windows-1252 reading of C1 controls) elsewhere.
char32_t windows_1252(uint64_t n) {
  static constexpr char32_t kC1[32] = {
      0x20ac, 0x81,   0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
      0x2039, 0x0152, 0x8d,   0x017d, 0x8f,   0x90,   0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
      0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x9d,   0x017e, 0x0178,
  };
  return kC1[n - 0x80];
}

// Python's html._replace_charref for a numeric reference of value `n` (saturated).
void append_charref(std::string& out, uint64_t n) {
  if (n == 0) return append_utf8(out, 0xfffd);
  if (n == 0x0d) return append_utf8(out, '\r');
  if (n >= 0x80 && n <= 0x9f) return append_utf8(out, windows_1252(n));
  if ((n >= 0xd800 && n <= 0xdfff) || n > 0x10ffff) return append_utf8(out, 0xfffd);
  // Code points HTML5 says never to produce: most C0 controls, DEL, noncharacters.
  bool dropped = (n >= 0x01 && n <= 0x08) || n == 0x0b || (n >= 0x0e && n <= 0x1f) || n == 0x7f ||
                 (n >= 0xfdd0 && n <= 0xfdef) || (n & 0xfffe) == 0xfffe;
  if (!dropped) append_utf8(out, static_cast<char32_t>(n));
}

bool is_digit(char c, bool hex) {
  return (c >= '0' && c <= '9') || (hex && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
}

// Bytes in a named reference: anything but these (Python's pattern [^\t\n\f <&#;]).
bool name_char(char c) {
  return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#' &&
         c != ';';
}

// Length of the UTF-8 sequence starting at s[i] (1 for an invalid or truncated one), and its
// code point (or -1 when invalid).
size_t utf8_at(std::string_view s, size_t i, int64_t& code) {
  unsigned char b = static_cast<unsigned char>(s[i]);
  size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    code = -1;
    return 1;
  }
  int64_t c = len == 1 ? b : b & (0x7f >> len);
  for (size_t k = 1; k < len; ++k) {
    unsigned char t = static_cast<unsigned char>(s[i + k]);
    if ((t >> 6) != 2) {
      code = -1;
      return 1;
    }
    c = c << 6 | (t & 0x3f);
  }
  code = c;
  return len;
}

bool is_python_space(int64_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

}  // namespace

std::string html_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '&') {
      out += s[i++];
      continue;
    }
    size_t j = i + 1;
    if (j < s.size() && s[j] == '#') {
      bool hex = j + 1 < s.size() && (s[j + 1] == 'x' || s[j + 1] == 'X');
      size_t k = j + 1 + (hex ? 1 : 0), start = k;
      uint64_t n = 0;
      for (; k < s.size() && is_digit(s[k], hex); ++k) {
        int d = s[k] <= '9' ? s[k] - '0' : (s[k] | 0x20) - 'a' + 10;
        n = n > 0x10ffff ? n : n * (hex ? 16 : 10) + static_cast<uint64_t>(d);
      }
      if (k == start) {  // "&#" without digits is left as it is
        out += '&';
        ++i;
        continue;
      }
      if (k < s.size() && s[k] == ';') ++k;
      append_charref(out, n);
      i = k;
      continue;
    }
    // A named reference: up to 32 characters (code points), then an optional ';'.
    size_t k = j;
    for (int chars = 0; chars < 32 && k < s.size() && name_char(s[k]); ++chars) {
      int64_t code;
      k += utf8_at(s, k, code);
    }
    if (k == j) {
      out += '&';
      ++i;
      continue;
    }
    bool semicolon = k < s.size() && s[k] == ';';
    std::string_view name = s.substr(j, k - j);
    i = k + (semicolon ? 1 : 0);
    if (int64_t c = lookup(name, semicolon); c >= 0) {
      append_utf8(out, static_cast<char32_t>(c));
      continue;
    }
    // Python then tries the longest proper prefix (of the name and ';') that is a legacy name.
    std::string_view full = s.substr(j, i - j);
    bool found = false;
    for (size_t x = full.size() - 1; x >= 2 && !found; --x) {
      if (int64_t c = lookup(full.substr(0, x), false); c >= 0) {
        append_utf8(out, static_cast<char32_t>(c));
        out += full.substr(x);
        found = true;
      }
    }
    if (!found) {
      out += '&';
      out += full;
    }
  }
  return out;
}

std::string collapse_whitespace(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool pending_space = false;
  size_t i = 0;
  while (i < s.size()) {
    int64_t code;
    size_t len = utf8_at(s, i, code);
    if (is_python_space(code)) {
      pending_space = true;
    } else {
      if (pending_space && !out.empty()) out += ' ';
      pending_space = false;
      out.append(s.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::string clean_prompt(std::string_view text) {
  return collapse_whitespace(html_unescape(html_unescape(text)));
}

}  // namespace freeswim::text
