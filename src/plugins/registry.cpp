// The global PluginRegistry and plugin library loading.
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "kiln/plugin.h"
#include "plugins/bridge.h"
#include "plugins/efficient_nms/efficient_nms.h"

namespace kiln {

namespace {

class GlobalRegistry : public PluginRegistry {
 public:
  void add(std::unique_ptr<PluginCreator> creator) override {
    if (!creator) throw_bad_input(origin_prefix() + "registered a null plugin creator");
    const std::string type = creator->type(), ver = creator->version(), ns = creator->plugin_namespace();
    if (type.empty() || ver.empty())
      throw_bad_input(origin_prefix() + "registered a plugin creator with an empty type or version");
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& e : entries_)
      if (e.creator->type() == type && e.creator->version() == ver && e.creator->plugin_namespace() == ns)
        throw_bad_input(origin_prefix() + "registers plugin " + plugins::describe(type, ver, ns) +
                        ", which is already registered" + (e.origin.empty() ? "" : " by " + e.origin) +
                        ": give one of them another version or namespace");
    plugins::register_type(type);
    entries_.push_back({std::move(creator), loading_});
  }

  const PluginCreator* find(const std::string& type, const std::string& version,
                            const std::string& ns) const override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& e : entries_)
      if (e.creator->type() == type && e.creator->version() == version && e.creator->plugin_namespace() == ns)
        return e.creator.get();
    return nullptr;
  }

  std::vector<const PluginCreator*> list() const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<const PluginCreator*> out;
    for (auto& e : entries_) out.push_back(e.creator.get());
    return out;
  }

  // Libraries already loaded, by handle: dlopen returns the same handle for
  // the same library, whatever path named it.
  std::map<void*, int> loaded;
  std::mutex load_mu;
  std::string loading_;  // library whose creators are being added ("" = built in / program)

 private:
  std::string origin_prefix() const {
    return loading_.empty() ? "a plugin creator " : "plugin library '" + loading_ + "' ";
  }
  struct Entry {
    std::unique_ptr<PluginCreator> creator;
    std::string origin;
  };
  mutable std::mutex mu_;
  std::vector<Entry> entries_;
};

GlobalRegistry& global_registry() {
  static GlobalRegistry* reg = [] {
    auto* r = new GlobalRegistry;
    plugins::efficient_nms::register_plugin(*r);
    return r;
  }();
  return *reg;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

PluginRegistry& PluginRegistry::global() { return global_registry(); }

int load_plugin_library(const std::string& path) {
  if (path.empty()) throw_usage("load_plugin_library: empty path");
  GlobalRegistry& reg = global_registry();
  std::lock_guard<std::mutex> lock(reg.load_mu);
  const bool has_slash = path.find('/') != std::string::npos;
  // A bare name that exists here means this file (dlopen would search the
  // library path instead); any other bare name goes to the dynamic loader.
  std::string open_path = path;
  if (file_exists(path)) {
    if (!has_slash) open_path = "./" + path;
  } else if (has_slash) {
    throw_bad_input("plugin library '" + path + "' not found: check the path given to --plugins");
  }
  void* handle = ::dlopen(open_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* err = ::dlerror();
    if (!file_exists(path))
      throw_bad_input("plugin library '" + path + "' not found (not a file here, and the dynamic loader cannot find it"
                      ": " + (err ? err : "unknown error") + ")");
    throw_bad_input("cannot load plugin library '" + path + "': " + (err ? err : "unknown error"));
  }
  auto seen = reg.loaded.find(handle);
  if (seen != reg.loaded.end()) {
    ::dlclose(handle);  // drops the extra reference; the library stays loaded
    return seen->second;
  }
  using Entry = int (*)(PluginRegistry*, int);
  auto entry = reinterpret_cast<Entry>(::dlsym(handle, "kiln_register_plugins"));
  if (!entry) {
    ::dlclose(handle);
    throw_unsupported("plugin library '" + path + "' registers no kiln plugins: it exports no kiln_register_plugins "
                      "(declare its creators with KILN_REGISTER_PLUGIN, see docs/plugins.md)");
  }
  reg.loading_ = path;
  int count = 0;
  try {
    count = entry(&reg, KILN_PLUGIN_API_VERSION);
  } catch (...) {
    reg.loading_.clear();
    throw;  // creators added before the failure stay: their code is loaded
  }
  reg.loading_.clear();
  if (count < 0)
    throw_unsupported("plugin library '" + path + "' was built against kiln plugin API version " +
                      std::to_string(-count) + ", this kiln has version " + std::to_string(KILN_PLUGIN_API_VERSION) +
                      ": rebuild the library against this kiln's include/kiln/plugin.h");
  if (count == 0) {
    ::dlclose(handle);
    throw_unsupported("plugin library '" + path + "' registers no kiln plugins (its kiln_register_plugins added none)");
  }
  // Never dlclose'd: the creators and every plugin made from them live in it.
  reg.loaded[handle] = count;
  return count;
}

}  // namespace kiln
