// `<name>.cases.json` + `<name>.model`: a sentencepiece model and the token ids the reference
// tokenizer gives each text ("cases": {text: ids}). Every case is compared exactly (error 1
// for any difference); a json whose model is missing or unreadable fails every case it holds.
#include <fmt/ranges.h>

#include <filesystem>

#include "check/golden_files.h"
#include "check/suites.h"
#include "core/error.h"
#include "text/tokenizer.h"

namespace freeswim::check {

namespace {

// A short printable rendering of a case's text for its name.
std::string case_label(const std::string& text) {
  std::string out = text.size() > 40 ? text.substr(0, 40) + "..." : text;
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return "\"" + out + "\"";
}

std::string ids_str(const std::vector<int32_t>& ids) {
  return fmt::format("{}", fmt::join(ids, ", "));
}

void run_tokenizer_file(const Context& ctx, const std::string& json_path) {
  const std::string stem =
      json_path.substr(0, json_path.size() - std::string(".cases.json").size());
  const std::string label = std::filesystem::path(stem).filename().string();
  nlohmann::json meta;
  try {
    meta = read_json(json_path);
    FS_CHECK(meta.contains("cases") && meta["cases"].is_object(), "{}: no \"cases\" object",
             json_path);
  } catch (const Error& e) {
    ctx.failed(label, e.what());
    return;
  }
  std::string load_error;
  text::Tokenizer tok;
  try {
    tok = text::Tokenizer::load(stem + ".model");
  } catch (const Error& e) {
    load_error = e.what();
  }
  size_t index = 0;
  for (const auto& [text, want_json] : meta["cases"].items()) {
    const std::string name = fmt::format("{}/case {} {}", label, index++, case_label(text));
    if (!ctx.wanted(name)) continue;
    if (!load_error.empty()) {
      ctx.failed(name, load_error);
      continue;
    }
    try {
      const std::vector<int32_t> want = want_json.get<std::vector<int32_t>>();
      const std::vector<int32_t> got = tok.encode(text);
      CaseResult r{name, got == want ? 0.0 : 1.0, 0.0, got == want, ""};
      if (!r.pass)
        r.message =
            fmt::format("{}: ids [{}], expected [{}]", json_path, ids_str(got), ids_str(want));
      ctx.report(r);
    } catch (const std::exception& e) {
      ctx.failed(name, fmt::format("{}: {}", json_path, e.what()));
    }
  }
}

}  // namespace

void check_tokenizer_cases(const Context& ctx) {
  for (const std::string& json : files_ending_with(ctx.golden_dir, ".cases.json"))
    run_tokenizer_file(ctx, json);
}

}  // namespace freeswim::check
