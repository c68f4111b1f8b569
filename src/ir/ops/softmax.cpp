// Shape/type inference for Softmax, LogSoftmax and Hardmax in their
// opset-13 form: one axis (default -1), output shaped like the input.
#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::ir {

namespace {

void infer_softmax(Node& n) {
  const Value& x = input_checked(n, 0);
  if (x.dtype != DataType::kFloat32 && x.dtype != DataType::kFloat16)
    throw_bad_input(n.label() + ": input '" + x.name + "' has dtype " + dtype_name(x.dtype) + " but " + n.op_type +
                    " takes a floating-point (fp32/fp16) tensor");
  normalize_axis(n, n.i("axis", -1), int64_t(x.dims.size()));
  set_output(n, 0, x.dtype, x.dims);
}

}  // namespace

void register_softmax_ops(OpRegistry& r) {
  for (const char* op : {"Softmax", "LogSoftmax", "Hardmax"}) r.add({"", op, infer_softmax});
}

}  // namespace kiln::ir
