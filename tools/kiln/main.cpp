// kiln: build, run and inspect engines from the command line.
// Exit status: 0 ok, 1 internal error, 2 usage, 3 bad input, 4 unsupported.
#include <cstdio>
#include <ctime>
#include <new>
#include <vector>

#include "cli.h"
#include "kiln/plugin.h"

namespace kiln::cli {

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void add_input_shape_option(CLI::App* app, std::vector<std::string>& specs) {
  app->add_option("--input-shape", specs, "shape of a model input with symbolic dimensions (repeatable)")
      ->type_name("NAME=AxBx...");
}

std::map<std::string, std::vector<int64_t>> parse_input_shapes(const std::vector<std::string>& specs) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const std::string& spec : specs) {
    const size_t eq = spec.rfind('=');
    const auto bad = [&](const std::string& why) {
      throw_usage("--input-shape '" + spec + "': " + why + " (expected NAME=AxBx..., e.g. images=1x3x640x640)");
    };
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) bad("no NAME=shape");
    std::vector<int64_t> dims;
    size_t at = eq + 1;
    while (at <= spec.size()) {
      size_t x = spec.find('x', at);
      if (x == std::string::npos) x = spec.size();
      const std::string d = spec.substr(at, x - at);
      if (d.empty() || d.size() > 12 || d.find_first_not_of("0123456789") != std::string::npos)
        bad("'" + d + "' is not a size");
      dims.push_back(std::stoll(d));
      at = x + 1;
    }
    if (!shapes.emplace(spec.substr(0, eq), dims).second) bad("input '" + spec.substr(0, eq) + "' given twice");
  }
  return shapes;
}

std::string dims_text(const TensorInfo& t) {
  std::string s = "[";
  for (size_t k = 0; k < t.shape.size(); ++k) {
    if (k) s += ",";
    if (k == 0 && t.dynamic_rows) s += "<=";  // the data decides; this is the most
    if (int(k) == t.batch_axis) s += "N=";
    s += std::to_string(t.shape[k]);
  }
  return s + "]";
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 3) { v /= 1024; ++u; }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

void add_plugins_option(CLI::App* app, std::vector<std::string>& libraries) {
  app->add_option("--plugins", libraries, "plugin library to load first (repeatable)")
      ->type_name("LIB.so")
      ->allow_extra_args(false);
}

void load_plugins(const std::vector<std::string>& libraries) {
  for (const std::string& lib : libraries) load_plugin_library(lib);
}

namespace {
// --verbose: every diagnostic, including each layer's tactic timing, on stderr.
class VerboseLogger : public Logger {
 public:
  void log(Severity severity, const std::string& message) override {
    static const char* names[] = {"error", "warning", "info", "verbose"};
    std::fprintf(stderr, "kiln: %s: %s\n", names[int(severity)], message.c_str());
    std::fflush(stderr);
  }
};

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "kiln: error: %s\n", message.c_str());
  return code;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kiln: bake an ONNX model into an inference engine plan, then run or inspect it"};
  app.set_version_flag("--version", std::string("kiln ") + version());
  app.require_subcommand(1);
  app.fallthrough();  // global flags (--verbose) may follow the command
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "print every diagnostic (per-layer tactic timing included) on stderr");
  std::vector<Command> commands = {add_build_command(app), add_run_command(app), add_inspect_command(app),
                                  add_bench_command(app), add_detect_command(app), add_report_command(app),
                                  add_calibrate_command(app), add_compare_command(app), add_eval_command(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(2, std::string(e.what()) + " (see `kiln --help`)");
  }
  static VerboseLogger verbose_logger;
  if (verbose) set_logger(&verbose_logger);
  try {
    for (auto& c : commands)
      if (c.app->parsed()) return c.run();
    return fail(2, "no command given (see `kiln --help`)");
  } catch (const Error& e) {
    return fail(e.exit_code(), e.what());
  } catch (const std::bad_alloc&) {
    return fail(1, "out of memory");
  } catch (const std::exception& e) {
    return fail(1, std::string("internal error: ") + e.what());
  }
}

}  // namespace kiln::cli

int main(int argc, char** argv) { return kiln::cli::main(argc, argv); }
