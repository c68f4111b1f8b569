// Shared pieces of the `kiln` command line. Commands use the public API only.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "kiln/kiln.h"

namespace kiln::cli {

// A subcommand and what to do when it is the one given.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

Command add_build_command(CLI::App& root);
Command add_run_command(CLI::App& root);
Command add_inspect_command(CLI::App& root);
Command add_bench_command(CLI::App& root);
Command add_detect_command(CLI::App& root);
Command add_report_command(CLI::App& root);
Command add_calibrate_command(CLI::App& root);
Command add_compare_command(CLI::App& root);
Command add_eval_command(CLI::App& root);

// What a build report (`kiln report`, `kiln build --report`) is made from.
struct ReportSource {
  std::vector<uint8_t> plan;             // the plan's bytes
  std::string plan_path;                 // shown in the page and in errors
  const NetworkSummary* imported = nullptr;  // the graph as imported, when the model is at hand
  std::vector<std::string> bench_files;  // `kiln bench --json` outputs
  std::string command;                   // the command line that made the report
};
// Writes the self-contained HTML report to `output` atomically.
void write_report(const ReportSource& src, const std::string& output);

// Inputs from `--input NAME=FILE.npy` specs; the rest random from `seed` when
// `random` (floats in [-1, 1), ints in [0, 10)), else a usage error.
std::map<std::string, HostTensor> gather_inputs(const Engine& engine, const std::vector<std::string>& specs,
                                                bool random, uint64_t seed);

// `--plugins LIB.so` (repeatable) on a subcommand, and loading what it named:
// a command calls load_plugins first, before it parses or loads anything.
void add_plugins_option(CLI::App* app, std::vector<std::string>& libraries);
void load_plugins(const std::vector<std::string>& libraries);

// `--input-shape NAME=1x3x640x640` (repeatable): shapes for model inputs with
// symbolic dimensions (ParseOptions::input_shapes), and their parsing (kUsage
// on a malformed spec or a name given twice).
void add_input_shape_option(CLI::App* app, std::vector<std::string>& specs);
std::map<std::string, std::vector<int64_t>> parse_input_shapes(const std::vector<std::string>& specs);

// "[N=1,3,224,224]": the batch axis marked as `kiln inspect` shows it.
std::string dims_text(const TensorInfo& t);
std::string format_bytes(int64_t bytes);  // "12.3 MiB"

// Milliseconds since `start` (a steady_clock reading).
double ms_since(std::chrono::steady_clock::time_point start);
// "2026-11-25T05:57:02Z": now, in UTC.
std::string utc_now();

}  // namespace kiln::cli
