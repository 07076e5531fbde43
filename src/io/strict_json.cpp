#include "io/strict_json.h"

#include <fstream>
#include <set>
#include <system_error>
#include <vector>

#include "core/error.h"

namespace freeswim::io {

namespace {

using Json = nlohmann::json;
using Event = Json::parse_event_t;

// State carried through the parser callback: one set of seen keys per open object, plus the
// key under which each open container sits (to say where a duplicate is).
struct KeyTracker {
  KeyTracker(const std::string& l, int max) : label(l), max_depth(max) {}
  const std::string& label;
  int max_depth;
  int depth = 0;
  std::vector<std::set<std::string>> seen;  // one per open object
  std::vector<std::string> path;            // key of each open object ("" for the root)
  std::string last_key;

  void enter(bool is_object) {
    ++depth;
    FS_CHECK(depth <= max_depth, "{}: JSON nested deeper than {} levels", label, max_depth);
    if (is_object) {
      seen.emplace_back();
      path.push_back(last_key);
    }
  }

  std::string where() const {
    if (path.size() <= 1) return "at the top level";
    return "inside '" + path.back() + "'";
  }

  bool on_event(Event ev, Json& parsed) {
    switch (ev) {
      case Event::object_start:
        enter(true);
        break;
      case Event::array_start:
        enter(false);
        break;
      case Event::object_end:
        --depth;
        seen.pop_back();
        path.pop_back();
        break;
      case Event::array_end:
        --depth;
        break;
      case Event::key: {
        last_key = parsed.get<std::string>();
        FS_CHECK(seen.back().insert(last_key).second, "{}: duplicate key '{}' {}", label, last_key,
                 where());
        break;
      }
      case Event::value:
        break;
    }
    return true;  // keep everything; refusals throw
  }
};

}  // namespace

Json parse_json_strict(std::string_view text, const std::string& label, int max_depth) {
  KeyTracker tracker(label, max_depth);
  auto callback = [&tracker](int /*depth*/, Event ev, Json& parsed) {
    return tracker.on_event(ev, parsed);
  };
  try {
    return Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                       /*ignore_comments=*/false);
  } catch (const Json::exception& e) {
    fail("{}: malformed JSON: {}", label, e.what());
  }
}

Json read_json_file(const std::string& path, int max_depth, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  FS_CHECK(in.good(), "{}: cannot open: {}", path,
           std::error_code(errno, std::system_category()).message());
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  FS_CHECK(size >= 0 && static_cast<uint64_t>(size) <= max_bytes,
           "{}: JSON file of {} bytes exceeds the {} byte limit", path,
           static_cast<long long>(size), max_bytes);
  in.seekg(0, std::ios::beg);
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), size);
  FS_CHECK(in.gcount() == size, "{}: short read", path);
  return parse_json_strict(text, path, max_depth);
}

}  // namespace freeswim::io
