// Glue between the public plugin API (include/kiln/plugin.h) and kiln's
// internals: plugin nodes in the IR, their shape inference and CPU kernel,
// and the checks the importer and the plan reader need.
//
// A plugin node is an ir::Node with
//   op_type = the plugin type, domain = kDomain, path = "plugin",
//   attrs   = plugin_version (string), plugin_namespace (string, the namespace
//             actually matched), plugin_data (uint8 tensor: Plugin::serialize()).
// Its own domain keeps it apart from built-in ops of the same name and from
// graph passes, which only touch the default domain.
#pragma once

#include <functional>
#include <string>

#include "ir/graph.h"
#include "kiln/plugin.h"

namespace kiln::plugins {

constexpr const char* kDomain = "kiln.plugin";
constexpr const char* kVersionAttr = "plugin_version";
constexpr const char* kNamespaceAttr = "plugin_namespace";
constexpr const char* kDataAttr = "plugin_data";

// Is a creator registered for `op_type`, in any version or namespace?
bool has_type(const std::string& op_type);

// Turns a just-imported node (ONNX attributes in n.attrs, inputs and outputs
// set) into a plugin node: picks the creator (plugin_version attribute,
// default "1"; plugin_namespace, default "", falling back to ""), checks the
// attributes against the creator's fields, creates the plugin and stores its
// serialized form. Appends outputs made by `make_output(k)` up to the
// plugin's output count. kUnsupported when no creator matches the version /
// namespace; kBadInput for missing, unknown or mistyped fields.
void bind_node(ir::Node& n, const std::function<ir::Value*(size_t k)>& make_output);

// Plan reader, for a node in kDomain: kBadInput "plan <origin> needs plugin T
// (version V, namespace 'NS') for layer 'L'; load it with --plugins" when the
// node's plugin is not registered.
void require_registered(const ir::Node& n, const std::string& origin);

// Registry hook: adds the ir::OpDef and cpu::KernelFactory for a plugin type
// (idempotent). Called for every creator the registry accepts.
void register_type(const std::string& type);

// "EfficientNMS_TRT (version 1, namespace '')".
std::string describe(const std::string& type, const std::string& version, const std::string& ns);
// Every registered plugin, described as above, comma-separated.
std::string registered_list();

}  // namespace kiln::plugins
