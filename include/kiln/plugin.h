// kiln public API: plugins (custom layers).
//
// A plugin implements one ONNX op type that kiln has no kernel for. Its life
// cycle follows TensorRT's dynamic-shape plugins; its fields follow IPluginV3:
//
//   PluginCreator        declares the fields (name, type, length, required) and
//                        makes plugins from a FieldCollection (the ONNX node's
//                        attributes) or from the bytes stored in a plan.
//   Plugin               output count, dtypes and shapes from input shapes
//                        (dims vectors, the batch is the leading dim);
//                        supports_format(pos, dtype, format); tactics; configure;
//                        workspace_size; execute (CPU, host pointers) / enqueue
//                        (CUDA stream); serialize_fields; clone.
//   PluginRegistry       the process-wide table of creators, keyed by
//                        (type, version, namespace).
//
// Everything a plugin library needs is inline in this header (and error.h,
// types.h' enums and structs), so a library built as a shared object needs no
// symbol from the kiln binary that loads it: it declares its creators with
// KILN_REGISTER_PLUGIN, which also emits the entry point kiln calls after
// dlopen (see docs/plugins.md). Build it with the compiler and C++ standard
// library kiln was built with.
//
// Errors: throw kiln::Error (kBadInput for bad shapes or fields, kUnsupported
// for combinations the plugin does not implement); kiln prefixes the layer.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln/types.h"

// Bumped whenever a class in this header changes layout or virtual functions;
// kiln refuses a library built against another version.
#define KILN_PLUGIN_API_VERSION 1

namespace kiln {

// Memory layout of a plugin input or output. kiln runs linear (row-major,
// NCHW for images) tensors today; kNHWC is reserved for the GPU backend.
enum class TensorFormat : uint8_t { kLinear = 0, kNHWC = 1 };

inline const char* format_name(TensorFormat f) { return f == TensorFormat::kLinear ? "linear" : "nhwc"; }

struct PluginTensorDesc {
  DataType dtype = DataType::kFloat32;
  std::vector<int64_t> dims;  // dims[0] is the batch
  TensorFormat format = TensorFormat::kLinear;
};

// ---- fields --------------------------------------------------------------------

// kInt is int64 (ONNX INT), kFloat float32 (ONNX FLOAT), kInts / kFloats lists,
// kBytes raw bytes (an ONNX uint8/int8 tensor attribute).
enum class FieldType : uint8_t { kInt = 0, kFloat = 1, kString = 2, kInts = 3, kFloats = 4, kBytes = 5 };

inline const char* field_type_name(FieldType t) {
  switch (t) {
    case FieldType::kInt: return "int";
    case FieldType::kFloat: return "float";
    case FieldType::kString: return "string";
    case FieldType::kInts: return "ints";
    case FieldType::kFloats: return "floats";
    case FieldType::kBytes: return "bytes";
  }
  return "unknown";
}

// What a creator accepts. kiln checks every node against these before create():
// an attribute that is not declared, has another type or another length, or
// a required field that is missing, is a kBadInput error naming node and field.
struct FieldDecl {
  std::string name;
  FieldType type = FieldType::kInt;
  int64_t length = -1;  // element count for kInts / kFloats / kBytes; -1 = any
  bool required = false;
};

struct Field {
  std::string name;
  FieldType type = FieldType::kInt;
  int64_t i = 0;                 // kInt
  float f = 0.f;                 // kFloat
  std::string s;                 // kString
  std::vector<int64_t> ints;     // kInts
  std::vector<float> floats;     // kFloats
  std::vector<uint8_t> bytes;    // kBytes

  int64_t length() const {
    switch (type) {
      case FieldType::kInts: return int64_t(ints.size());
      case FieldType::kFloats: return int64_t(floats.size());
      case FieldType::kBytes: return int64_t(bytes.size());
      case FieldType::kString: return int64_t(s.size());
      default: return 1;
    }
  }
};

// Named field values: a node's attributes going in, a plugin's state coming out.
class FieldCollection {
 public:
  FieldCollection& set(Field field) {
    for (auto& f : fields_)
      if (f.name == field.name) {
        f = std::move(field);
        return *this;
      }
    fields_.push_back(std::move(field));
    return *this;
  }
  FieldCollection& set_int(const std::string& name, int64_t v) { return set(make(name, FieldType::kInt, [&](Field& f) { f.i = v; })); }
  FieldCollection& set_float(const std::string& name, float v) { return set(make(name, FieldType::kFloat, [&](Field& f) { f.f = v; })); }
  FieldCollection& set_string(const std::string& name, std::string v) {
    return set(make(name, FieldType::kString, [&](Field& f) { f.s = std::move(v); }));
  }
  FieldCollection& set_ints(const std::string& name, std::vector<int64_t> v) {
    return set(make(name, FieldType::kInts, [&](Field& f) { f.ints = std::move(v); }));
  }
  FieldCollection& set_floats(const std::string& name, std::vector<float> v) {
    return set(make(name, FieldType::kFloats, [&](Field& f) { f.floats = std::move(v); }));
  }
  FieldCollection& set_bytes(const std::string& name, std::vector<uint8_t> v) {
    return set(make(name, FieldType::kBytes, [&](Field& f) { f.bytes = std::move(v); }));
  }

  const Field* find(const std::string& name) const {
    for (auto& f : fields_)
      if (f.name == name) return &f;
    return nullptr;
  }
  bool has(const std::string& name) const { return find(name) != nullptr; }

  // The value of `name`, or `dflt` when absent; kBadInput when it has another type.
  int64_t get_int(const std::string& name, int64_t dflt) const { auto* f = typed(name, FieldType::kInt); return f ? f->i : dflt; }
  float get_float(const std::string& name, float dflt) const { auto* f = typed(name, FieldType::kFloat); return f ? f->f : dflt; }
  std::string get_string(const std::string& name, const std::string& dflt) const {
    auto* f = typed(name, FieldType::kString);
    return f ? f->s : dflt;
  }
  std::vector<int64_t> get_ints(const std::string& name, std::vector<int64_t> dflt = {}) const {
    auto* f = typed(name, FieldType::kInts);
    return f ? f->ints : dflt;
  }
  std::vector<float> get_floats(const std::string& name, std::vector<float> dflt = {}) const {
    auto* f = typed(name, FieldType::kFloats);
    return f ? f->floats : dflt;
  }
  std::vector<uint8_t> get_bytes(const std::string& name, std::vector<uint8_t> dflt = {}) const {
    auto* f = typed(name, FieldType::kBytes);
    return f ? f->bytes : dflt;
  }

  const std::vector<Field>& fields() const { return fields_; }
  size_t size() const { return fields_.size(); }

 private:
  template <typename F> static Field make(const std::string& name, FieldType t, F fill) {
    Field f;
    f.name = name;
    f.type = t;
    fill(f);
    return f;
  }
  const Field* typed(const std::string& name, FieldType t) const {
    const Field* f = find(name);
    if (f && f->type != t)
      throw Error(ErrorCode::kBadInput, "field '" + name + "' is " + field_type_name(f->type) + ", expected " +
                                            field_type_name(t));
    return f;
  }
  std::vector<Field> fields_;
};

// The byte form of a FieldCollection (what Plugin::serialize writes by default):
//   "KPF1", u32 count, per field: u32 name length, name, u8 type, u32 element
//   count, elements (i64 / f32 / bytes; a string's bytes). Little-endian.
inline std::vector<uint8_t> encode_fields(const FieldCollection& fc) {
  std::vector<uint8_t> out = {'K', 'P', 'F', '1'};
  auto put = [&](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  };
  auto put_u32 = [&](size_t v) {
    uint32_t u = static_cast<uint32_t>(v);
    put(&u, 4);
  };
  put_u32(fc.size());
  for (const Field& f : fc.fields()) {
    put_u32(f.name.size());
    put(f.name.data(), f.name.size());
    out.push_back(static_cast<uint8_t>(f.type));
    switch (f.type) {
      case FieldType::kInt: put_u32(1); put(&f.i, 8); break;
      case FieldType::kFloat: put_u32(1); put(&f.f, 4); break;
      case FieldType::kString: put_u32(f.s.size()); put(f.s.data(), f.s.size()); break;
      case FieldType::kInts: put_u32(f.ints.size()); put(f.ints.data(), 8 * f.ints.size()); break;
      case FieldType::kFloats: put_u32(f.floats.size()); put(f.floats.data(), 4 * f.floats.size()); break;
      case FieldType::kBytes: put_u32(f.bytes.size()); put(f.bytes.data(), f.bytes.size()); break;
    }
  }
  return out;
}

// Inverse of encode_fields; every length is checked against the bytes left
// (kBadInput naming `what` when the data is damaged).
inline FieldCollection decode_fields(const uint8_t* data, size_t size, const std::string& what) {
  size_t pos = 0;
  auto fail = [&](const std::string& why) {
    throw Error(ErrorCode::kBadInput, what + " is corrupt (" + why + " at byte " + std::to_string(pos) +
                                          "): rebuild the plan with `kiln build`");
  };
  auto take = [&](void* dst, size_t n) {
    if (n > size - pos) fail("truncated");
    if (n) std::memcpy(dst, data + pos, n);
    pos += n;
  };
  auto u32 = [&] {
    uint32_t v = 0;
    take(&v, 4);
    return size_t(v);
  };
  char magic[4];
  take(magic, 4);
  if (std::memcmp(magic, "KPF1", 4) != 0) fail("bad magic");
  FieldCollection fc;
  const size_t count = u32();
  for (size_t k = 0; k < count; ++k) {
    Field f;
    const size_t name_len = u32();
    if (name_len > size - pos) fail("field name runs past the end");
    f.name.assign(reinterpret_cast<const char*>(data + pos), name_len);
    pos += name_len;
    uint8_t type = 0;
    take(&type, 1);
    if (type > static_cast<uint8_t>(FieldType::kBytes)) fail("unknown field type " + std::to_string(type));
    f.type = static_cast<FieldType>(type);
    const size_t n = u32();
    const size_t esize = (f.type == FieldType::kInt || f.type == FieldType::kInts) ? 8
                         : (f.type == FieldType::kFloat || f.type == FieldType::kFloats) ? 4 : 1;
    if (n > (size - pos) / esize) fail("field '" + f.name + "' runs past the end");
    if ((f.type == FieldType::kInt || f.type == FieldType::kFloat) && n != 1) fail("scalar field with " + std::to_string(n) + " values");
    switch (f.type) {
      case FieldType::kInt: take(&f.i, 8); break;
      case FieldType::kFloat: take(&f.f, 4); break;
      case FieldType::kString: f.s.resize(n); take(&f.s[0], n); break;
      case FieldType::kInts: f.ints.resize(n); take(f.ints.data(), 8 * n); break;
      case FieldType::kFloats: f.floats.resize(n); take(f.floats.data(), 4 * n); break;
      case FieldType::kBytes: f.bytes.resize(n); take(f.bytes.data(), n); break;
    }
    if (fc.has(f.name)) fail("field '" + f.name + "' appears twice");
    fc.set(std::move(f));
  }
  if (pos != size) fail(std::to_string(size - pos) + " trailing bytes");
  return fc;
}

// ---- plugin --------------------------------------------------------------------

class Plugin {
 public:
  virtual ~Plugin() = default;

  // Identity; type/version equal the creator's. kiln sets the layer name and
  // the namespace after create / deserialize / clone.
  virtual std::string type() const = 0;
  virtual std::string version() const = 0;
  const std::string& plugin_namespace() const { return namespace_; }
  void set_plugin_namespace(const std::string& ns) { namespace_ = ns; }
  const std::string& name() const { return name_; }
  void set_name(const std::string& name) { name_ = name; }

  // Build time. Inputs arrive in node order; shapes are static dims vectors.
  virtual int num_outputs() const = 0;
  virtual std::vector<DataType> output_dtypes(const std::vector<DataType>& input_dtypes) const = 0;
  virtual std::vector<std::vector<int64_t>> output_shapes(const std::vector<std::vector<int64_t>>& input_shapes) const = 0;
  // May tensor `pos` (0..num_inputs-1 the inputs, then the outputs) have this
  // dtype and format? kiln asks for every input and output before configure.
  virtual bool supports_format(int pos, int num_inputs, DataType dtype, TensorFormat format) const = 0;

  // Implementation names, fastest-first if known. The builder records the one
  // it picks (today: the first) and calls set_tactic with it before configure.
  virtual std::vector<std::string> tactics() const { return {"default"}; }
  virtual void set_tactic(const std::string& tactic) { (void)tactic; }

  // Called once the shapes are final, before workspace_size and execute.
  virtual void configure(const std::vector<PluginTensorDesc>& inputs, const std::vector<PluginTensorDesc>& outputs) {
    (void)inputs;
    (void)outputs;
  }
  virtual size_t workspace_size(const std::vector<PluginTensorDesc>& inputs,
                                const std::vector<PluginTensorDesc>& outputs) const {
    (void)inputs;
    (void)outputs;
    return 0;
  }

  // Runs the layer on the CPU: host pointers in the order of the descs, and
  // a 64-byte aligned workspace of workspace_size() bytes (nullptr if 0).
  // Every output element must be written. Several threads may call execute
  // on one plugin at once (one engine, several contexts): do not modify the
  // plugin here; per-call scratch belongs in the workspace.
  virtual void execute(const std::vector<PluginTensorDesc>& input_descs,
                       const std::vector<PluginTensorDesc>& output_descs, const void* const* inputs,
                       void* const* outputs, void* workspace) const {
    (void)input_descs, (void)output_descs, (void)inputs, (void)outputs, (void)workspace;
    throw Error(ErrorCode::kUnsupported, "plugin " + type() + " has no CPU implementation");
  }
  // The same on a CUDA stream (cudaStream_t), device pointers.
  virtual void enqueue(const std::vector<PluginTensorDesc>& input_descs,
                       const std::vector<PluginTensorDesc>& output_descs, const void* const* inputs,
                       void* const* outputs, void* workspace, void* stream) const {
    (void)input_descs, (void)output_descs, (void)inputs, (void)outputs, (void)workspace, (void)stream;
    throw Error(ErrorCode::kUnsupported, "plugin " + type() + " has no CUDA implementation");
  }

  // The fields that recreate this plugin through its creator's create().
  virtual FieldCollection serialize_fields() const = 0;
  // The bytes a plan stores; the creator's deserialize() reads them back.
  virtual std::vector<uint8_t> serialize() const { return encode_fields(serialize_fields()); }
  virtual std::unique_ptr<Plugin> clone() const = 0;

 private:
  std::string name_, namespace_;
};

class PluginCreator {
 public:
  virtual ~PluginCreator() = default;
  virtual std::string type() const = 0;     // the ONNX op type it implements
  virtual std::string version() const = 0;  // matched against the node's plugin_version ("1")
  virtual std::string plugin_namespace() const { return ""; }
  virtual std::vector<FieldDecl> field_decls() const = 0;
  // `fields` have been checked against field_decls(); `name` is the layer name.
  virtual std::unique_ptr<Plugin> create(const std::string& name, const FieldCollection& fields) const = 0;
  virtual std::unique_ptr<Plugin> deserialize(const std::string& name, const std::vector<uint8_t>& bytes) const {
    return create(name, decode_fields(bytes.data(), bytes.size(), "the stored fields of plugin " + type()));
  }
};

// ---- registry ------------------------------------------------------------------

class PluginRegistry {
 public:
  // The registry kiln uses; holds the built-in plugins (EfficientNMS_TRT).
  // Register before parsing or loading a plan; it is not meant to change while
  // models are being built or run.
  static PluginRegistry& global();

  virtual ~PluginRegistry() = default;
  // Takes ownership; kBadInput when (type, version, namespace) is taken.
  virtual void add(std::unique_ptr<PluginCreator> creator) = 0;
  // Exact match, nullptr if none. (The importer adds TensorRT's fallback from
  // a namespace to the empty namespace.)
  virtual const PluginCreator* find(const std::string& type, const std::string& version,
                                    const std::string& plugin_namespace) const = 0;
  virtual std::vector<const PluginCreator*> list() const = 0;
};

// dlopen()s a plugin library (RTLD_NOW) and registers the creators it
// declares with KILN_REGISTER_PLUGIN; returns how many. kBadInput when the
// file is missing or not a loadable library, kUnsupported when it registers
// nothing or was built against another KILN_PLUGIN_API_VERSION. Loading the
// same library twice registers it once. Libraries stay loaded.
int load_plugin_library(const std::string& path);

// ---- declaring creators in a shared library --------------------------------------

namespace plugin_detail {
using CreatorFactory = std::unique_ptr<PluginCreator> (*)();
// One list per shared object: hidden visibility keeps each library's list
// its own even when kiln and other libraries include this header too.
__attribute__((visibility("hidden"))) inline std::vector<CreatorFactory>& library_creators() {
  static std::vector<CreatorFactory> list;
  return list;
}
template <class C> std::unique_ptr<PluginCreator> make_creator() { return std::unique_ptr<PluginCreator>(new C()); }
struct CreatorRegistrar {
  explicit CreatorRegistrar(CreatorFactory f) { library_creators().push_back(f); }
};
}  // namespace plugin_detail

}  // namespace kiln

// The entry point load_plugin_library calls: hands this library's creators to
// `registry` and returns their count, or -(its API version) when `api_version`
// (kiln's) differs, touching nothing. Emitted by KILN_REGISTER_PLUGIN.
extern "C" __attribute__((visibility("default"))) inline int kiln_register_plugins(kiln::PluginRegistry* registry,
                                                                                   int api_version) {
  if (api_version != KILN_PLUGIN_API_VERSION) return -KILN_PLUGIN_API_VERSION;
  int n = 0;
  for (auto make : kiln::plugin_detail::library_creators()) {
    registry->add(make());
    ++n;
  }
  return n;
}

#define KILN_PLUGIN_CONCAT_(a, b) a##b
#define KILN_PLUGIN_CONCAT(a, b) KILN_PLUGIN_CONCAT_(a, b)
// At namespace scope in a plugin library, once per creator class: queues the
// creator when the library is loaded and keeps the entry point exported.
#define KILN_REGISTER_PLUGIN(CreatorClass)                                                                   \
  namespace {                                                                                                \
  const ::kiln::plugin_detail::CreatorRegistrar KILN_PLUGIN_CONCAT(kiln_plugin_registrar_, __LINE__){        \
      &::kiln::plugin_detail::make_creator<CreatorClass>};                                                   \
  __attribute__((used)) int (*const KILN_PLUGIN_CONCAT(kiln_plugin_entry_, __LINE__))(::kiln::PluginRegistry*, \
                                                                                       int) = &kiln_register_plugins; \
  }                                                                                                          \
  static_assert(true, "")
