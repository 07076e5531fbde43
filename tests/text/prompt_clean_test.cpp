// Wan's prompt cleaning: expected values are what Python's html.unescape, re.sub(r"\s+", " ")
// and str.strip give for the same input (worked out by hand from the HTML5 rules and checked
// against CPython 3.11).
#include "text/prompt_clean.h"

#include <gtest/gtest.h>

namespace freeswim::text {
namespace {

TEST(HtmlUnescape, NamedReferences) {
  EXPECT_EQ(html_unescape("fish &amp; chips"), "fish & chips");
  EXPECT_EQ(html_unescape("&lt;b&gt; &quot;x&quot; &apos;y&apos;"), "<b> \"x\" 'y'");
  EXPECT_EQ(html_unescape("caf&eacute; &copy; &AMP; &hellip; &rsquo; &euro;"),
            "caf\u00e9 \u00a9 & \u2026 \u2019 \u20ac");
  // Legacy names also work without ';', by longest prefix; others do not.
  EXPECT_EQ(html_unescape("&amp &ampere &notit; &copyright"), "& &ere \u00acit; \u00a9right");
  EXPECT_EQ(html_unescape("&hellip &apos"), "&hellip &apos");
  EXPECT_EQ(html_unescape("&nosuch; & &; &#; AT&T"), "&nosuch; & &; &#; AT&T");
}

TEST(HtmlUnescape, NumericReferences) {
  EXPECT_EQ(html_unescape("&#65;&#x42;&#X43;&#68"), "ABCD");
  EXPECT_EQ(html_unescape("&#x732B;&#128049;"), "\u732b\U0001f431");
  // HTML5: NUL and surrogates and values past U+10FFFF become U+FFFD, C1 values are read
  // as Windows-1252, most C0 controls and noncharacters are dropped.
  EXPECT_EQ(html_unescape("&#0;&#xD800;&#x110000;&#99999999999999999999;"),
            "\ufffd\ufffd\ufffd\ufffd");
  EXPECT_EQ(html_unescape("&#150;&#x80;&#x9d;"), "\u2013\u20ac\u009d");
  EXPECT_EQ(html_unescape("a&#1;b&#x7f;c&#xFFFE;d&#xFDD0;e&#13;f&#9;g"), "abcde\rf\tg");
  EXPECT_EQ(html_unescape("&#x;&#xg"), "&#x;&#xg");
}

TEST(HtmlUnescape, AppliedTwiceAsWanDoes) {
  EXPECT_EQ(html_unescape(html_unescape("&amp;lt;tag&amp;gt; &amp;#233;")), "<tag> \u00e9");
}

TEST(CollapseWhitespace, PythonWhitespaceRules) {
  EXPECT_EQ(collapse_whitespace("  Two   spaces\tand a tab "), "Two spaces and a tab");
  EXPECT_EQ(collapse_whitespace("a\u3000b\u00a0c\u2028d\u0085e\x1c"
                                "f\u200ag"),
            "a b c d e f g");
  // Zero-width space and U+180E are not whitespace in Python.
  EXPECT_EQ(collapse_whitespace("a\u200bb\u180ec"), "a\u200bb\u180ec");
  EXPECT_EQ(collapse_whitespace(" \n\t "), "");
  EXPECT_EQ(collapse_whitespace(""), "");
  // Invalid UTF-8 is kept byte for byte.
  EXPECT_EQ(collapse_whitespace(" \xff \xe3\x81 x"), "\xff \xe3\x81 x");
}

TEST(CleanPrompt, WanPromptClean) {
  EXPECT_EQ(clean_prompt("  A cat&nbsp;&amp;nbsp;on a\n\nmat &amp;amp; more  "),
            "A cat on a mat & more");
  EXPECT_EQ(clean_prompt("\u732b \u732b"), "\u732b \u732b");
}

}  // namespace
}  // namespace freeswim::text
