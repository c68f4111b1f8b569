// Runs the ONNX backend node tests (model.onnx + test_data_set_*/{input,output}_N.pb)
// through kiln's public API: parse_onnx_bytes -> Builder::build -> Runtime::deserialize
// -> ExecutionContext::run, and compares with the stored outputs.
//
//   kiln_node_tests [--data DIR] [--filter SUBSTR] [--verbose] [--no-fork] [--timeout SEC]
//
// DIR defaults to $KILN_ONNX_NODE_DATA, else the onnx pip package's
// backend/test/data/node. Each test runs in a forked child so a crash or hang
// is reported as that test's failure instead of ending the run.
// A test is "rejected" when parse/build throws kiln::Error kUnsupported;
// anything else that is not a match is "failed". Exit 0 when the pass rate
// among accepted tests is at least 95% and nothing crashed.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

#include "kiln/kiln.h"
#include "onnx/tensor_proto.h"

namespace fs = std::filesystem;

namespace {

enum class Status { kPass, kFail, kReject, kCrash };

struct Result {
  Status status = Status::kFail;
  bool bound = false;  // passed only with shape inputs bound as constants (see bind_shape_input)
  std::string op;      // op a rejection is attributed to (for the --verbose table)
  std::string reason;  // first line of the error, or what mismatched
};

struct Args {
  std::string data, filter;
  bool verbose = false;
  bool fork = true;
  int timeout_s = 120;
};

std::string first_line(const std::string& s) {
  std::string l = s.substr(0, s.find('\n'));
  std::replace(l.begin(), l.end(), '\t', ' ');
  return l;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class QuietLogger : public kiln::Logger {
 public:
  explicit QuietLogger(bool verbose) : verbose_(verbose) {}
  void log(kiln::Severity s, const std::string& m) override {
    if (verbose_ && s <= kiln::Severity::kWarning) std::cerr << "    [kiln] " << m << "\n";
  }

 private:
  bool verbose_;
};

kiln::HostTensor load_tensor(const fs::path& p) {
  onnx::TensorProto tp;
  if (!tp.ParseFromString(read_bytes(p))) throw std::runtime_error(p.filename().string() + " is not a TensorProto");
  return kiln::onnx_import::tensor_from_proto(tp, p.parent_path().string(), "test data " + p.filename().string())
      .to_host();
}

double element(const kiln::HostTensor& t, size_t i) {
  switch (t.dtype) {
    case kiln::DataType::kFloat32: return t.as<float>()[i];
    case kiln::DataType::kFloat16: return kiln::half_to_float(t.as<uint16_t>()[i]);
    case kiln::DataType::kInt8: return t.as<int8_t>()[i];
    case kiln::DataType::kUInt8: return t.as<uint8_t>()[i];
    case kiln::DataType::kInt32: return t.as<int32_t>()[i];
    case kiln::DataType::kInt64: return double(t.as<int64_t>()[i]);
    case kiln::DataType::kBool: return t.as<uint8_t>()[i] ? 1 : 0;
  }
  return 0;
}

// "" when equal within tolerance, else what differs.
std::string compare(const std::string& name, const kiln::HostTensor& got, const kiln::HostTensor& want) {
  if (got.dtype != want.dtype)
    return "output '" + name + "' has dtype " + kiln::dtype_name(got.dtype) + ", expected " +
           kiln::dtype_name(want.dtype);
  if (got.shape != want.shape)
    return "output '" + name + "' has shape " + kiln::shape_str(got.shape) + ", expected " +
           kiln::shape_str(want.shape);
  const size_t n = size_t(want.numel());
  if (got.data.size() != want.data.size()) return "output '" + name + "' has the wrong byte size";
  const bool is_float = want.dtype == kiln::DataType::kFloat32 || want.dtype == kiln::DataType::kFloat16;
  const bool half = want.dtype == kiln::DataType::kFloat16;
  const double atol = half ? 1e-3 : 1e-4, rtol = half ? 1e-2 : 1e-3;
  size_t bad = 0, worst_i = 0;
  double worst = -1;
  for (size_t i = 0; i < n; ++i) {
    bool ok;
    double a, b;
    if (want.dtype == kiln::DataType::kInt64) {  // exact, beyond double's 53 bits
      ok = got.as<int64_t>()[i] == want.as<int64_t>()[i];
      a = double(got.as<int64_t>()[i]);
      b = double(want.as<int64_t>()[i]);
    } else {
      a = element(got, i);
      b = element(want, i);
      if (!is_float) ok = a == b;
      else if (std::isnan(b) || std::isnan(a)) ok = std::isnan(a) && std::isnan(b);
      else if (std::isinf(b) || std::isinf(a)) ok = a == b;
      else ok = std::fabs(a - b) <= atol + rtol * std::fabs(b);
    }
    if (ok) continue;
    ++bad;
    double err = std::isnan(a - b) ? INFINITY : std::fabs(a - b);
    if (err > worst) worst = err, worst_i = i;
  }
  if (!bad) return "";
  std::ostringstream os;
  os.precision(7);
  os << "output '" << name << "': " << bad << " of " << n << " values differ; worst at flat index " << worst_i
     << ": got " << element(got, worst_i) << ", expected " << element(want, worst_i);
  return os.str();
}

// Attributes a rejection to an op: the importer names it as "(op 'X'", other
// stages start with a node label "X 'name'"; else the model's first op.
// Input dtype / non-tensor rejections get buckets of their own.
std::string rejected_op(const std::string& msg, const std::vector<std::string>& model_ops) {
  size_t t = msg.find("has element type ");
  if (msg.rfind("graph input", 0) == 0 && t != std::string::npos)
    return "<input dtype " + msg.substr(t + 17, msg.find(',', t) - t - 17) + ">";
  if (msg.find("is not a tensor") != std::string::npos) return "<non-tensor input/output>";
  size_t p = msg.find("(op '");
  if (p != std::string::npos) {
    size_t e = msg.find('\'', p + 5);
    if (e != std::string::npos) return msg.substr(p + 5, e - p - 5);
  }
  std::string head = msg.substr(0, msg.find(' '));
  for (auto& op : model_ops)
    if (op == head) return op;
  return model_ops.empty() ? "<none>" : model_ops.front();
}

// kiln needs static shapes: an input that decides an output shape (Reshape's
// shape, Resize's sizes, Reduce axes) must be a constant, which kiln reports
// as "input 'NAME' must be a constant". TensorRT users feed such values as
// build-time shape tensors; the runner does the same by binding the input's
// test data as an initializer, and counts those passes separately.
std::string constant_input_wanted(const std::string& msg) {
  const std::string tail = "' must be a constant";
  size_t end = msg.find(tail);
  if (end == std::string::npos) return "";
  size_t start = msg.rfind("input '", end);
  return start == std::string::npos ? "" : msg.substr(start + 7, end - start - 7);
}

// Binds graph input `name` to its value in the test data (which must be the
// same in every data set). Returns false if that is not possible.
bool bind_shape_input(onnx::ModelProto& mp, const fs::path& dir, const std::vector<std::string>& in_names,
                      const std::string& name) {
  auto it = std::find(in_names.begin(), in_names.end(), name);
  if (it == in_names.end()) return false;
  const std::string file = "input_" + std::to_string(it - in_names.begin()) + ".pb";
  std::string value;
  for (auto& e : fs::directory_iterator(dir)) {
    if (!e.is_directory() || e.path().filename().string().rfind("test_data_set_", 0) != 0) continue;
    std::string bytes = read_bytes(e.path() / file);
    if (!value.empty() && bytes != value) return false;
    value = bytes;
  }
  onnx::TensorProto tp;
  if (value.empty() || !tp.ParseFromString(value)) return false;
  tp.set_name(name);
  *mp.mutable_graph()->add_initializer() = tp;
  return true;
}

Result run_test(const fs::path& dir, bool verbose) {
  QuietLogger logger(verbose);
  kiln::set_logger(&logger);
  std::string bytes = read_bytes(dir / "model.onnx");
  onnx::ModelProto mp;  // only for input/output order and op names; kiln judges the model itself
  const bool parsed = mp.ParseFromString(bytes);
  std::vector<std::string> in_names, out_names, ops;
  std::vector<std::string> inits;
  for (auto& t : mp.graph().initializer()) inits.push_back(t.name());
  for (auto& i : mp.graph().input())
    if (std::find(inits.begin(), inits.end(), i.name()) == inits.end()) in_names.push_back(i.name());
  for (auto& o : mp.graph().output()) out_names.push_back(o.name());
  for (auto& n : mp.graph().node())
    if (n.op_type() != "Constant" && std::find(ops.begin(), ops.end(), n.op_type()) == ops.end())
      ops.push_back(n.op_type());

  std::unique_ptr<kiln::Engine> engine;
  std::vector<std::string> bound;  // inputs turned into constants so shapes are static
  for (;;) {
    try {
      auto net = kiln::parse_onnx_bytes(bytes, dir.string());
      std::vector<uint8_t> plan = kiln::Builder().build(*net);
      engine = kiln::Runtime().deserialize(plan, (dir / "model.onnx").string());
      break;
    } catch (const kiln::Error& e) {
      if (e.code() == kiln::ErrorCode::kUnsupported) {
        std::string name = constant_input_wanted(e.what());
        if (parsed && !name.empty() && bound.size() < 4 && bind_shape_input(mp, dir, in_names, name)) {
          bound.push_back(name);
          bytes = mp.SerializeAsString();
          continue;
        }
        return {Status::kReject, false, rejected_op(e.what(), ops), first_line(e.what())};
      }
      return {Status::kFail, false, "", "parse/build: " + first_line(e.what())};
    } catch (const std::exception& e) {
      return {Status::kFail, false, "", "parse/build: unexpected exception: " + first_line(e.what())};
    }
  }

  if (!parsed) return {Status::kFail, false, "", "kiln accepted a model.onnx that protobuf cannot parse"};
  std::vector<fs::path> sets;
  for (auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
  std::sort(sets.begin(), sets.end());
  if (sets.empty()) return {Status::kFail, false, "", "no test_data_set_* directory"};
  try {
    auto ctx = engine->create_context();
    for (const auto& set : sets) {
      std::map<std::string, kiln::HostTensor> inputs;
      for (size_t k = 0; fs::exists(set / ("input_" + std::to_string(k) + ".pb")); ++k) {
        if (k >= in_names.size()) return {Status::kFail, false, "", "more input files than graph inputs"};
        if (std::find(bound.begin(), bound.end(), in_names[k]) != bound.end()) continue;  // now a constant
        inputs[in_names[k]] = load_tensor(set / ("input_" + std::to_string(k) + ".pb"));
      }
      auto outputs = ctx->run(inputs);
      for (size_t k = 0; fs::exists(set / ("output_" + std::to_string(k) + ".pb")); ++k) {
        if (k >= out_names.size()) return {Status::kFail, false, "", "more output files than graph outputs"};
        kiln::HostTensor want = load_tensor(set / ("output_" + std::to_string(k) + ".pb"));
        auto it = outputs.find(out_names[k]);
        if (it == outputs.end()) return {Status::kFail, false, "", "output '" + out_names[k] + "' was not returned"};
        std::string diff = compare(out_names[k], it->second, want);
        if (!diff.empty()) return {Status::kFail, false, "", set.filename().string() + ": " + diff};
      }
    }
  } catch (const kiln::Error& e) {
    return {Status::kFail, false, "", "run: " + first_line(e.what())};
  } catch (const std::exception& e) {
    return {Status::kFail, false, "", "run: unexpected exception: " + first_line(e.what())};
  }
  return {Status::kPass, !bound.empty(), "", ""};
}

Result run_guarded(const fs::path& dir, bool verbose) {
  try {
    return run_test(dir, verbose);
  } catch (const std::exception& e) {
    return {Status::kFail, false, "", "unexpected exception: " + first_line(e.what())};
  } catch (...) {
    return {Status::kFail, false, "", "unexpected non-standard exception"};
  }
}

std::string encode(const Result& r) {
  return std::to_string(int(r.status) + (r.bound ? 10 : 0)) + "\t" + first_line(r.op) + "\t" + first_line(r.reason) + "\n";
}

Result decode(const std::string& s) {
  Result r;
  size_t a = s.find('\t'), b = a == std::string::npos ? a : s.find('\t', a + 1);
  if (b == std::string::npos) return {Status::kCrash, false, "", "the test process exited without a result"};
  int code = std::stoi(s.substr(0, a));
  r.status = Status(code % 10);
  r.bound = code >= 10;
  r.op = s.substr(a + 1, b - a - 1);
  r.reason = first_line(s.substr(b + 1));
  return r;
}

// Runs one test in a child process; the parent never touches kiln itself, so
// no worker threads exist when it forks.
Result run_forked(const fs::path& dir, const Args& args) {
  int fds[2];
  if (pipe(fds) != 0) return {Status::kCrash, false, "", "pipe() failed"};
  std::cout.flush();
  std::cerr.flush();
  pid_t pid = fork();
  if (pid < 0) return {Status::kCrash, false, "", "fork() failed"};
  if (pid == 0) {
    close(fds[0]);
    std::string msg = encode(run_guarded(dir, args.verbose));
    ssize_t off = 0;
    while (off < ssize_t(msg.size())) {
      ssize_t w = write(fds[1], msg.data() + off, msg.size() - size_t(off));
      if (w <= 0) break;
      off += w;
    }
    close(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  bool timed_out = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(args.timeout_s);
  char buf[4096];
  for (;;) {
    int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) { timed_out = true; break; }
    pollfd p{fds[0], POLLIN, 0};
    int pr = poll(&p, 1, left);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) { timed_out = pr == 0; break; }
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (timed_out) return {Status::kCrash, false, "", "timed out after " + std::to_string(args.timeout_s) + " s"};
  if (WIFSIGNALED(status))
    return {Status::kCrash, false, "", std::string("crashed with signal ") + std::to_string(WTERMSIG(status)) + " (" +
                                    strsignal(WTERMSIG(status)) + ")"};
  return decode(out);
}

std::string default_data_dir() {
  if (const char* env = std::getenv("KILN_ONNX_NODE_DATA")) return env;
  FILE* p = popen("python3 -c 'import onnx,os;print(os.path.dirname(onnx.__file__))' 2>/dev/null", "r");
  if (!p) return "";
  char buf[4096];
  std::string out;
  while (fgets(buf, sizeof buf, p)) out += buf;
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.empty() ? "" : out + "/backend/test/data/node";
}

int usage(const char* argv0, int rc) {
  std::cerr << "usage: " << argv0 << " [--data DIR] [--filter SUBSTR] [--verbose] [--no-fork] [--timeout SEC]\n";
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) { std::cerr << a << " needs a value\n"; std::exit(2); }
      return argv[++i];
    };
    if (a == "--data") args.data = value();
    else if (a == "--filter") args.filter = value();
    else if (a == "--verbose" || a == "-v") args.verbose = true;
    else if (a == "--no-fork") args.fork = false;
    else if (a == "--timeout") args.timeout_s = std::max(1, std::atoi(value().c_str()));
    else if (a == "--help" || a == "-h") return usage(argv[0], 0);
    else return usage(argv[0], 2);
  }
  if (args.data.empty()) args.data = default_data_dir();
  std::error_code ec;
  if (args.data.empty() || !fs::is_directory(args.data, ec)) {
    std::cerr << "node test data not found ('" << args.data << "'); pass --data DIR or set KILN_ONNX_NODE_DATA\n";
    return 2;
  }
  std::vector<fs::path> tests;
  for (auto& e : fs::directory_iterator(args.data))
    if (e.is_directory() && fs::exists(e.path() / "model.onnx") &&
        e.path().filename().string().find(args.filter) != std::string::npos)
      tests.push_back(e.path());
  std::sort(tests.begin(), tests.end());

  int passed = 0, failed = 0, rejected = 0, crashed = 0, bound = 0;
  std::map<std::string, std::vector<std::string>> rejections;  // op -> tests
  for (const auto& t : tests) {
    const std::string name = t.filename().string();
    Result r = args.fork ? run_forked(t, args) : run_guarded(t, args.verbose);
    switch (r.status) {
      case Status::kPass:
        ++passed;
        if (r.bound) ++bound;
        if (args.verbose) std::cout << "PASS    " << name << "\n";
        break;
      case Status::kReject:
        ++rejected;
        rejections[r.op].push_back(name);
        std::cout << "REJECT  " << name << ": " << r.reason << "\n";
        break;
      case Status::kCrash:
        ++crashed;
        ++failed;
        std::cout << "CRASH   " << name << ": " << r.reason << "\n";
        break;
      case Status::kFail:
        ++failed;
        std::cout << "FAIL    " << name << ": " << r.reason << "\n";
        break;
    }
    std::cout.flush();
  }
  if (args.verbose && !rejections.empty()) {
    std::vector<std::pair<std::string, std::vector<std::string>>> rows(rejections.begin(), rejections.end());
    std::stable_sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.size() > b.second.size(); });
    std::cout << "\nrejections by op:\n";
    for (auto& [op, names] : rows) {
      std::printf("  %-32s %4zu  (e.g. %s)\n", op.c_str(), names.size(), names.front().c_str());
    }
    std::cout << "\n";
  }
  const int total = int(tests.size());
  const int accepted = passed + failed;
  const double rate = accepted ? 100.0 * passed / accepted : 0.0;
  if (crashed) std::printf("%d of the failures crashed or timed out\n", crashed);
  std::printf("node tests: %d passed, %d failed, %d rejected as unsupported (of %d); pass rate among accepted: %.1f%%\n",
              passed, failed, rejected, total, rate);
  std::printf("  (%d of the passes had shape-deciding inputs bound as build-time constants)\n", bound);
  std::printf("%d passed, %d failed, %d skipped\n", passed, failed, rejected);
  return (rate >= 95.0 && crashed == 0) ? 0 : 1;
}
