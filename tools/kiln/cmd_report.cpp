// kiln report ENGINE.plan -o build.html [--bench FILE.json ...] [--model MODEL.onnx [--batch N]] [--plugins LIB.so ...]
// One self-contained HTML page that replays a build step by step (parse,
// fusion, precision, plugins, tactics, latency) from what the plan records,
// the same JSON `kiln inspect --json` prints, and any `kiln bench --json`
// results given. `kiln build --report` writes it through write_report too.

#include <nlohmann/json.hpp>

#include "cli.h"
#include "report_page.h"
#include "summary_json.h"

namespace kiln::cli {

namespace {
struct ReportArgs {
  std::vector<std::string> plugins, benches, input_shapes;
  std::string plan, output, model;
  int batch = 0;
};

std::string base_name(const std::string& path) {
  size_t k = path.find_last_of('/');
  return k == std::string::npos ? path : path.substr(k + 1);
}

// A `kiln bench --json` output: refused (kBadInput) unless it is a JSON object
// with the latency figures the chart draws.
nlohmann::ordered_json read_bench(const std::string& path) {
  std::vector<uint8_t> bytes = read_file(path);
  nlohmann::ordered_json j =
      nlohmann::ordered_json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    throw_bad_input("bench file '" + path + "' is not a JSON object: give the output of `kiln bench PLAN --json`");
  for (const char* key : {"median_ms", "min_ms", "max_ms"})
    if (!j.contains(key) || !j[key].is_number())
      throw_bad_input("bench file '" + path + "' has no number '" + key +
                      "': give the output of `kiln bench PLAN --json`");
  nlohmann::ordered_json label = base_name(path);
  if (j.contains("plan") && j["plan"].is_string()) label = base_name(path) + " / " + base_name(j["plan"].get<std::string>());
  return {{"file", path}, {"label", label}, {"result", j}};
}

// JSON inside <script>: '<', '>' and '&' only occur inside JSON strings, where
// \u escapes mean the same, so no name can close the script element.
std::string script_safe(const std::string& json) {
  std::string out;
  out.reserve(json.size());
  for (char c : json) {
    if (c == '<') out += "\\u003c";
    else if (c == '>') out += "\\u003e";
    else if (c == '&') out += "\\u0026";
    else out += c;
  }
  return out;
}

std::string quoted(const std::string& s) {
  if (!s.empty() && s.find_first_of(" '\"\\$`") == std::string::npos) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

int run_report(const ReportArgs& a) {
  load_plugins(a.plugins);
  if (a.batch && a.model.empty()) throw_usage("--batch applies to --model: give the model the plan was built from");
  std::string command = "kiln report " + quoted(a.plan) + " -o " + quoted(a.output);
  for (auto& b : a.benches) command += " --bench " + quoted(b);
  ReportSource src;
  src.plan = read_file(a.plan);
  src.plan_path = a.plan;
  src.bench_files = a.benches;
  NetworkSummary imported;
  if (!a.model.empty()) {
    command += " --model " + quoted(a.model);
    if (a.batch) command += " --batch " + std::to_string(a.batch);
    for (auto& s : a.input_shapes) command += " --input-shape " + quoted(s);
    ParseOptions popts;
    popts.batch = a.batch;
    popts.input_shapes = parse_input_shapes(a.input_shapes);
    imported = summarize(*parse_onnx(a.model, popts));
    src.imported = &imported;
  }
  src.command = command;
  write_report(src, a.output);
  std::printf("wrote %s\n", a.output.c_str());
  return 0;
}
}  // namespace

void write_report(const ReportSource& src, const std::string& output) {
  if (output.empty()) throw_usage("give the report file to write with -o FILE.html");
  std::string device;
  NetworkSummary s = Runtime().summarize(src.plan, src.plan_path, &device);
  nlohmann::ordered_json data;
  data["kiln_version"] = version();
  data["generated"] = utc_now();
  data["command"] = src.command;
  data["summary"] = summary_json(src.plan_path, "plan", device, s, src.imported);
  // Recorded in every plan: the imported graph's size even without its layers.
  data["layers_before_count"] = s.layers_before;
  nlohmann::ordered_json benches = nlohmann::ordered_json::array();
  for (auto& f : src.bench_files) benches.push_back(read_bench(f));
  data["benches"] = benches;
  // Names come from the model: replace bytes that are not UTF-8 instead of failing.
  const std::string json = script_safe(data.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
  std::string html = kReportPageHead;
  html += "<script type=\"application/json\" id=\"kiln-data\">";
  html += json;
  html += "</script>\n<script>\n";
  html += kReportScript;
  html += "</script>\n";
  html += kReportPageTail;
  write_file_atomic(output, std::vector<uint8_t>(html.begin(), html.end()));
}

Command add_report_command(CLI::App& root) {
  auto args = std::make_shared<ReportArgs>();
  CLI::App* app = root.add_subcommand("report", "Write an HTML page that replays a plan's build step by step");
  app->add_option("plan", args->plan, "plan file written by `kiln build`")->required();
  app->add_option("-o,--output", args->output, "HTML file to write")->required();
  app->add_option("--bench", args->benches, "`kiln bench --json` output to chart (repeatable)")
      ->type_name("FILE.json")
      ->allow_extra_args(false);
  app->add_option("--model", args->model, "the ONNX model the plan was built from: draws the graph as imported");
  add_input_shape_option(app, args->input_shapes);
  app->add_option("--batch", args->batch, "with --model: the --batch the plan was built with")
      ->check(CLI::PositiveNumber);
  add_plugins_option(app, args->plugins);
  return {app, [args] { return run_report(*args); }};
}

}  // namespace kiln::cli
