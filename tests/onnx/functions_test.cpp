// ONNX importer: function expansion (ONNX schema bodies, static and
// context-dependent, and model-local functions).
#include "onnx/import_test_util.h"  // first: it sets libonnx's build macros

#include <onnx/defs/schema.h>

using namespace kiln;
using namespace kiln::onnx_test;

namespace {

const char* kFnDomain = "test.importer.fn";

onnx::NodeProto body_node(const std::string& op, std::vector<std::string> ins, std::vector<std::string> outs) {
  onnx::NodeProto n;
  n.set_op_type(op);
  for (auto& i : ins) n.add_input(i);
  for (auto& o : outs) n.add_output(o);
  return n;
}

// Test-only ONNX schemas with function bodies, registered in libonnx's own
// registry so the schema path is exercised whatever kernels kiln has:
//   AddTwice(X; alpha=2.0)  = X + alpha + alpha            (static body, opset 13)
//   SumAxes(X; axes=[0])    = ReduceSum<axes=@axes>(X)     (static body, opset 11 form)
//   TypedTwice(X)           = X * 2 in X's element type    (context-dependent body)
//   Broken(X)               = NoSuchOp(X)
void register_test_schemas() {
  static bool done = [] {
    onnx::OpSchemaRegistry::DomainToVersionRange::Instance().AddDomainToVersion(kFnDomain, 1, 1);
    auto opset = [](int v) {
      onnx::OperatorSetIdProto o;
      o.set_domain("");
      o.set_version(v);
      return std::vector<onnx::OperatorSetIdProto>{o};
    };
    auto base = [](const char* name) {
      onnx::OpSchema s;
      s.SetName(name).SetDomain(kFnDomain).SinceVersion(1);
      s.Input(0, "X", "", "T").Output(0, "Y", "", "T");
      s.TypeConstraint("T", {"tensor(float)", "tensor(float16)"}, "");
      return s;
    };
    {
      onnx::OpSchema s = base("AddTwice");
      s.Attr("alpha", "", onnx::AttributeProto::FLOAT, 2.0f);
      onnx::NodeProto k = body_node("Constant", {}, {"A"});
      auto* ref = k.add_attribute();
      ref->set_name("value_float");
      ref->set_type(onnx::AttributeProto::FLOAT);
      ref->set_ref_attr_name("alpha");
      s.FunctionBody({k, body_node("Add", {"X", "A"}, {"T"}), body_node("Add", {"T", "A"}, {"Y"})}, opset(13));
      onnx::OpSchemaRegistry::OpSchemaRegisterOnce reg(s);
    }
    {
      onnx::OpSchema s = base("SumAxes");
      s.Attr("axes", "", onnx::AttributeProto::INTS, std::vector<int64_t>{0});
      onnx::NodeProto r = body_node("ReduceSum", {"X"}, {"Y"});
      auto* ref = r.add_attribute();
      ref->set_name("axes");
      ref->set_type(onnx::AttributeProto::INTS);
      ref->set_ref_attr_name("axes");
      s.FunctionBody({r}, opset(11));
      onnx::OpSchemaRegistry::OpSchemaRegisterOnce reg(s);
    }
    {
      onnx::OpSchema s = base("TypedTwice");
      s.SetContextDependentFunctionBodyBuilder(
          [opset](const onnx::FunctionBodyBuildContext& ctx, const onnx::OpSchema&, onnx::FunctionProto& f) {
            const onnx::TypeProto* t = ctx.getInputType(0);
            if (!t || !t->has_tensor_type()) return false;
            f.add_input("X");
            f.add_output("Y");
            *f.add_opset_import() = opset(13)[0];
            onnx::NodeProto k = body_node("Constant", {}, {"Two"});
            auto* v = k.add_attribute();
            v->set_name("value");
            v->set_type(onnx::AttributeProto::TENSOR);
            v->mutable_t()->set_data_type(t->tensor_type().elem_type());
            bool half = t->tensor_type().elem_type() == onnx::TensorProto::FLOAT16;
            if (half) v->mutable_t()->add_int32_data(float_to_half(2.f));
            else v->mutable_t()->add_float_data(2.f);
            *f.add_node() = k;
            *f.add_node() = body_node("Mul", {"X", "Two"}, {"Y"});
            return true;
          });
      onnx::OpSchemaRegistry::OpSchemaRegisterOnce reg(s);
    }
    {
      onnx::OpSchema s = base("Broken");
      s.FunctionBody({body_node("NoSuchOp", {"X"}, {"Y"})}, opset(13));
      onnx::OpSchemaRegistry::OpSchemaRegisterOnce reg(s);
    }
    return true;
  }();
  (void)done;
}

ModelBuilder fn_model(const std::string& op, int elem = onnx::TensorProto::FLOAT) {
  register_test_schemas();
  ModelBuilder mb(13);
  mb.opset_import(kFnDomain, 1);
  mb.input("x", elem, {2, 3});
  mb.node(op, {"x"}, {"y"}, "call", kFnDomain);
  mb.output("y");
  return mb;
}

}  // namespace

TEST(OnnxImporter, SchemaFunctionBodyIsExpandedWithAttributeDefaults) {
  const bool runnable = all_kernels({"Add"});
  for (float alpha : {0.f, 3.5f}) {  // 0 = not given: the schema default 2.0 applies
    ModelBuilder mb = fn_model("AddTwice");
    if (alpha != 0.f) attr_float(mb.g->mutable_node(0), "alpha", alpha);
    auto g = mb.import();
    const float want = alpha != 0.f ? alpha : 2.f;
    ASSERT_EQ(g->nodes().size(), 2u);
    for (auto& n : g->nodes()) {
      EXPECT_EQ(n->op_type, "Add");
      EXPECT_EQ(n->path, "expanded:AddTwice");
      EXPECT_EQ(n->opset, 13);  // the body's opset, not the caller's domain version
      EXPECT_EQ(floats_of(n->in(1)), (std::vector<float>{want}));
    }
    ASSERT_TRUE(g->value("y") && g->value("y")->producer);
    EXPECT_EQ(g->value("y")->producer->in(0)->producer, g->nodes()[0].get());
    if (!runnable) continue;
    ir::Tensor x(DataType::kFloat32, {2, 3});
    for (int i = 0; i < 6; ++i) x.data<float>()[i] = 0.5f * i - 1.f;
    ir::Tensor y = run_graph(*g, {{"x", x}}).at("y");
    for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(y.data<float>()[i], (0.5 * i - 1.0) + 2.0 * want) << i;
  }

  // Body nodes are canonicalized at the body's opset: ReduceSum-11 axes -> input.
  auto g = fn_model("SumAxes").import();
  ir::Node* r = find_node(*g, "ReduceSum");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->opset, 11);
  EXPECT_FALSE(r->has("axes"));
  ASSERT_TRUE(r->in(1) && r->in(1)->is_constant());
  EXPECT_EQ(r->in(1)->constant->to_int64(), (std::vector<int64_t>{0}));
}

TEST(OnnxImporter, ContextDependentBodyGetsInputTypes) {
  for (int elem : {int(onnx::TensorProto::FLOAT), int(onnx::TensorProto::FLOAT16)}) {
    auto g = fn_model("TypedTwice", elem).import();
    ir::Node* m = find_node(*g, "Mul");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->path, "expanded:TypedTwice");
    ASSERT_TRUE(m->in(1) && m->in(1)->is_constant());
    EXPECT_EQ(m->in(1)->constant->dtype(), elem == onnx::TensorProto::FLOAT ? DataType::kFloat32 : DataType::kFloat16);
    EXPECT_EQ(m->in(1)->constant->to_double(), (std::vector<double>{2.0}));
  }
  // The type also reaches the body through an intermediate node (Relu: T -> T).
  register_test_schemas();
  ModelBuilder mb(13);
  mb.opset_import(kFnDomain, 1);
  mb.input("x", onnx::TensorProto::FLOAT16, {2});
  mb.node("Relu", {"x"}, {"r"}, "relu");
  mb.node("TypedTwice", {"r"}, {"y"}, "call", kFnDomain);
  mb.output("y");
  auto g = mb.import();
  ir::Node* m = find_node(*g, "Mul");
  ASSERT_TRUE(m && m->in(1) && m->in(1)->is_constant());
  EXPECT_EQ(m->in(1)->constant->dtype(), DataType::kFloat16);
}

TEST(OnnxImporter, UnsupportedOpInsideABodyNamesBoth) {
  Error e = catch_error([] { fn_model("Broken").import(); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  std::string msg = e.what();
  EXPECT_NE(msg.find("(op 'NoSuchOp'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("in the expansion of Broken 'call'"), std::string::npos) << msg;
}

// A real libonnx 1.12 body: DynamicQuantizeLinear (opset 11, three outputs).
TEST(OnnxImporter, OnnxDynamicQuantizeLinearBodyIsExpanded) {
  if (ir::OpRegistry::global().find("", "DynamicQuantizeLinear"))
    GTEST_SKIP() << "kiln has a DynamicQuantizeLinear kernel now";
  ModelBuilder mb(11);
  mb.input("x", onnx::TensorProto::FLOAT, {2, 3});
  mb.node("DynamicQuantizeLinear", {"x"}, {"y", "s", "z"}, "dq");
  for (auto o : {"y", "s", "z"}) mb.output(o);
  // Body ops in body order; while kiln lacks one, the import must say which.
  for (auto op : {"ReduceMin", "Min", "ReduceMax", "Max", "Sub", "Div", "Clip", "Round", "Cast", "Identity",
                  "QuantizeLinear"})
    if (!ir::OpRegistry::global().find("", op)) {
      Error e = catch_error([&] { mb.import(); });
      EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
      std::string msg = e.what();
      EXPECT_NE(msg.find(std::string("(op '") + op + "'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("in the expansion of DynamicQuantizeLinear 'dq'"), std::string::npos) << msg;
      return;
    }
  auto g = mb.import();
  EXPECT_EQ(find_node(*g, "DynamicQuantizeLinear"), nullptr);
  for (auto& n : g->nodes()) EXPECT_EQ(n->path, "expanded:DynamicQuantizeLinear") << n->name;
  ASSERT_TRUE(g->value("y") && g->value("s") && g->value("z"));
  EXPECT_EQ(g->value("y")->producer->op_type, "QuantizeLinear");
  EXPECT_EQ(g->value("s")->producer->op_type, "Identity");
  ir::Node* cast = find_node(*g, "Cast");
  ASSERT_TRUE(cast);
  EXPECT_EQ(cast->i("to", 0), int64_t(onnx::TensorProto::UINT8));
  // Q_Max = 255 feeds the scale division: X_Range / 255.
  bool scale_by_255 = false;
  for (auto& n : g->nodes())
    if (n->op_type == "Div" && n->in(1) && n->in(1)->is_constant() && floats_of(n->in(1)) == std::vector<float>{255.f})
      scale_by_255 = true;
  EXPECT_TRUE(scale_by_255);
}

// A model-local function with an attribute default (FunctionProto field 11,
// newer than libonnx 1.12's proto), an attribute reference and a nested call.
TEST(OnnxImporter, ModelLocalFunctionsExpandWithDefaultsAndNesting) {
  register_test_ops();
  auto make = [](bool give_alpha) {
    ModelBuilder mb;
    mb.opset_import("com.acme", 1);
    mb.input("x", onnx::TensorProto::FLOAT, {2});
    auto* call = mb.node("Outer", {"x"}, {"y", "k"}, "outer", "com.acme");
    if (give_alpha) attr_float(call, "alpha", 5.f);
    mb.output("y");
    mb.output("k");
    auto opsets = [](onnx::FunctionProto* f) {
      for (auto d : {"", "com.acme", kTestDomain}) {
        auto* o = f->add_opset_import();
        o->set_domain(d);
        o->set_version(d[0] ? 1 : 18);
      }
    };
    onnx::FunctionProto* outer = mb.m.add_functions();
    outer->set_name("Outer");
    outer->set_domain("com.acme");
    outer->add_input("X");
    outer->add_output("Y");
    outer->add_output("K");
    outer->add_attribute("alpha");
    opsets(outer);
    onnx::AttributeProto dflt;
    dflt.set_name("alpha");
    dflt.set_type(onnx::AttributeProto::FLOAT);
    dflt.set_f(2.f);
    outer->mutable_unknown_fields()->AddLengthDelimited(11, dflt.SerializeAsString());
    auto* in = outer->add_node();
    in->set_op_type("Inner");
    in->set_domain("com.acme");
    in->add_input("X");
    in->add_output("Y");
    auto* k = outer->add_node();
    k->set_op_type("Constant");
    k->add_output("K");
    auto* ref = k->add_attribute();
    ref->set_name("value_float");
    ref->set_type(onnx::AttributeProto::FLOAT);
    ref->set_ref_attr_name("alpha");
    onnx::FunctionProto* inner = mb.m.add_functions();
    inner->set_name("Inner");
    inner->set_domain("com.acme");
    inner->add_input("X");
    inner->add_output("Z");
    opsets(inner);
    auto* t = inner->add_node();
    t->set_op_type("Pass");
    t->set_domain(kTestDomain);
    t->add_input("X");
    t->add_output("T");
    auto* z = inner->add_node();
    z->set_op_type("Pass");
    z->set_domain(kTestDomain);
    z->add_input("T");
    z->add_output("Z");
    return mb;
  };
  auto g = make(false).import();
  EXPECT_EQ(floats_of(g->value("k")), (std::vector<float>{2.f}));  // the default
  ASSERT_TRUE(g->value("y") && g->value("y")->producer);
  EXPECT_EQ(g->value("y")->producer->op_type, "Pass");
  EXPECT_EQ(g->value("y")->producer->path, "expanded:Outer");
  EXPECT_EQ(g->nodes().size(), 2u);
  // The chain x -> Pass -> Pass -> y goes through a fresh body-internal value.
  ir::Value* mid = g->value("y")->producer->in(0);
  ASSERT_TRUE(mid && mid->producer);
  EXPECT_EQ(mid->producer->in(0), g->value("x"));
  EXPECT_NE(mid->name, "T");
  EXPECT_EQ(floats_of(make(true).import()->value("k")), (std::vector<float>{5.f}));
}
