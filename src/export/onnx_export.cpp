#include "export/onnx_export.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <set>
#include <stdexcept>

#include "nn/graph.h"
#include "util/atomic_file.h"
#include "util/version.h"

namespace dash::deploy {

using nlohmann::json;

namespace {

constexpr int kOldestOpset = 11;  // every operator used has had its current form since 11
constexpr int kNewestOpset = 17;  // the newest ONNX 1.12 (Debian 12's) knows

// Writes each traced operation as ONNX nodes, its weights as initializers.
class OnnxGraph final : public nn::GraphSink {
 public:
  explicit OnnxGraph(onnx::GraphProto* graph) : graph_(graph) {}

  nn::GraphValue conv(const nn::GraphValue& x, const nn::PlainConv& c, const std::string& name) override {
    const int64_t dims = c.weight.dim() - 2;
    std::vector<std::string> inputs = {x.name, initializer(name + ".weight", c.weight)};
    if (c.bias.defined()) inputs.push_back(initializer(name + ".bias", c.bias));
    nn::GraphValue out{fresh(name), c.weight.size(0), {}};
    onnx::NodeProto* node = add_node("Conv", inputs, out.name);
    std::vector<int64_t> kernel;
    for (int64_t a = 0; a < dims; ++a) {
      const int64_t k = c.weight.size(2 + a);
      kernel.push_back(k);
      const int64_t padded = x.spatial.at(static_cast<size_t>(a)) + c.pads.at(static_cast<size_t>(a)) +
                             c.pads.at(static_cast<size_t>(a + dims));
      out.spatial.push_back((padded - c.dilation * (k - 1) - 1) / c.stride + 1);
    }
    ints(node, "kernel_shape", kernel);
    ints(node, "dilations", std::vector<int64_t>(static_cast<size_t>(dims), c.dilation));
    ints(node, "strides", std::vector<int64_t>(static_cast<size_t>(dims), c.stride));
    ints(node, "pads", c.pads);
    integer(node, "group", c.groups);
    return out;
  }

  nn::GraphValue batch_norm(const nn::GraphValue& x, const at::Tensor& weight, const at::Tensor& bias,
                            const at::Tensor& running_mean, const at::Tensor& running_var, double eps,
                            const std::string& name) override {
    nn::GraphValue out{fresh(name), x.channels, x.spatial};
    onnx::NodeProto* node = add_node(
        "BatchNormalization",
        {x.name, initializer(name + ".weight", weight), initializer(name + ".bias", bias),
         initializer(name + ".running_mean", running_mean), initializer(name + ".running_var", running_var)},
        out.name);
    onnx::AttributeProto* a = node->add_attribute();
    a->set_name("epsilon");
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(eps));
    return out;
  }

  nn::GraphValue relu(const nn::GraphValue& x) override {
    nn::GraphValue out{fresh(x.name + "_relu"), x.channels, x.spatial};
    add_node("Relu", {x.name}, out.name);
    return out;
  }

  nn::GraphValue add(const nn::GraphValue& a, const nn::GraphValue& b) override {
    nn::GraphValue out{fresh(a.name + "_add"), a.channels, a.spatial};
    add_node("Add", {a.name, b.name}, out.name);
    return out;
  }

  nn::GraphValue global_mean(const nn::GraphValue& x) override {
    const std::string pooled = fresh(x.name + "_pool");
    add_node("GlobalAveragePool", {x.name}, pooled);
    nn::GraphValue out{fresh(x.name + "_flat"), x.channels, {}};
    integer(add_node("Flatten", {pooled}, out.name), "axis", 1);
    return out;
  }

  nn::GraphValue linear(const nn::GraphValue& x, const at::Tensor& weight, const at::Tensor& bias,
                        const std::string& name) override {
    nn::GraphValue out{fresh(name), weight.size(0), {}};
    onnx::NodeProto* node = add_node(
        "Gemm", {x.name, initializer(name + ".weight", weight), initializer(name + ".bias", bias)}, out.name);
    integer(node, "transB", 1);
    return out;
  }

  nn::GraphValue channel_affine(const nn::GraphValue& x, const at::Tensor& scale, const at::Tensor& shift,
                                const std::string& name) override {
    const std::string scaled = fresh(name + "_scaled");
    add_node("Mul", {x.name, initializer(name + ".scale", per_channel(scale, x))}, scaled);
    nn::GraphValue out{fresh(name), x.channels, x.spatial};
    add_node("Add", {scaled, initializer(name + ".shift", per_channel(shift, x))}, out.name);
    return out;
  }

  // (x - mean) / std per channel, as Normalizer::apply computes it.
  nn::GraphValue normalize(const nn::GraphValue& x, const at::Tensor& mean, const at::Tensor& std) {
    const std::string centred = fresh("normalize_centred");
    add_node("Sub", {x.name, initializer("normalize.mean", per_channel(mean, x))}, centred);
    nn::GraphValue out{fresh("normalized"), x.channels, x.spatial};
    add_node("Div", {centred, initializer("normalize.std", per_channel(std, x))}, out.name);
    return out;
  }

  // Renames the value the last node wrote.
  void rename_last_output(const std::string& from, const std::string& to) {
    onnx::NodeProto* last = graph_->mutable_node(graph_->node_size() - 1);
    if (last->output(0) != from) throw std::logic_error("OnnxGraph: the output is not the last node's");
    last->set_output(0, to);
  }

 private:
  // [c] -> [1, c, 1, ...], broadcasting against x.
  static at::Tensor per_channel(const at::Tensor& v, const nn::GraphValue& x) {
    std::vector<int64_t> shape(x.spatial.size() + 2, 1);
    shape[1] = x.channels;
    return v.reshape(shape);
  }

  std::string fresh(const std::string& hint) {
    std::string name = hint;
    for (int i = 2; !names_.insert(name).second; ++i) name = hint + "_" + std::to_string(i);
    return name;
  }

  std::string initializer(const std::string& hint, const at::Tensor& t) {
    const at::Tensor v = t.detach().to(at::kCPU, at::kFloat).contiguous();
    onnx::TensorProto* p = graph_->add_initializer();
    p->set_name(fresh(hint));
    p->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t s : v.sizes()) p->add_dims(s);
    p->set_raw_data(std::string(static_cast<const char*>(v.data_ptr()), v.numel() * sizeof(float)));
    return p->name();
  }

  onnx::NodeProto* add_node(const std::string& op, const std::vector<std::string>& inputs,
                            const std::string& output) {
    onnx::NodeProto* node = graph_->add_node();
    node->set_op_type(op);
    node->set_name(output);
    for (const auto& i : inputs) node->add_input(i);
    node->add_output(output);
    return node;
  }

  static void ints(onnx::NodeProto* node, const std::string& name, const std::vector<int64_t>& v) {
    onnx::AttributeProto* a = node->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }

  static void integer(onnx::NodeProto* node, const std::string& name, int64_t v) {
    onnx::AttributeProto* a = node->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }

  onnx::GraphProto* graph_;
  std::set<std::string> names_;
};

void declare(onnx::ValueInfoProto* v, const std::string& name, const OnnxOptions& o,
             const std::vector<int64_t>& per_sample) {
  v->set_name(name);
  onnx::TypeProto::Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  onnx::TensorShapeProto* shape = t->mutable_shape();
  if (o.dynamic_batch) {
    shape->add_dim()->set_dim_param("batch");
  } else {
    shape->add_dim()->set_dim_value(o.batch_size);
  }
  for (int64_t s : per_sample) shape->add_dim()->set_dim_value(s);
}

void property(onnx::ModelProto& m, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* p = m.add_metadata_props();
  p->set_key(key);
  p->set_value(value);
}

}  // namespace

OnnxOptions OnnxOptions::from_json(const json& j) {
  if (!j.is_object()) throw std::invalid_argument("ONNX export options must be a JSON object");
  OnnxOptions o;
  for (const auto& [key, value] : j.items()) {
    auto want = [&](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument("ONNX export option \"" + key + "\" must be " + what + ", got " + value.dump());
    };
    if (key == "opset") {
      want(value.is_number_integer() && value.get<int64_t>() >= kOldestOpset && value.get<int64_t>() <= kNewestOpset,
           "an integer from " + std::to_string(kOldestOpset) + " to " + std::to_string(kNewestOpset));
      o.opset = value.get<int>();
    } else if (key == "dynamic_batch") {
      want(value.is_boolean(), "true or false");
      o.dynamic_batch = value.get<bool>();
    } else if (key == "batch_size") {
      want(value.is_number_integer() && value.get<int64_t>() >= 1, "an integer >= 1");
      o.batch_size = value.get<int64_t>();
    } else if (key == "normalize_input") {
      want(value.is_boolean(), "true or false");
      o.normalize_input = value.get<bool>();
    } else {
      throw std::invalid_argument("unknown ONNX export option \"" + key +
                                  "\"; the options are opset, dynamic_batch, batch_size and normalize_input");
    }
  }
  if (o.dynamic_batch && j.contains("batch_size")) {
    throw std::invalid_argument("ONNX export option \"batch_size\" fixes the batch; it needs \"dynamic_batch\": false");
  }
  return o;
}

std::string onnx_bytes(const model::TrainedModel& model, const OnnxOptions& options) {
  const task::TaskSpec& spec = model.spec();
  onnx::ModelProto m;
  m.set_ir_version(onnx::IR_VERSION);
  m.set_producer_name("dashnas");
  m.set_producer_version(util::kVersion);
  m.set_doc_string("A " + model.backbone().name() + " network found and trained by dashnas (DASH).");
  onnx::OperatorSetIdProto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);

  onnx::GraphProto* graph = m.mutable_graph();
  graph->set_name(model.backbone().name());
  declare(graph->add_input(), "input", options, spec.input_shape);
  std::vector<int64_t> out_shape = {spec.num_outputs};
  if (spec.kind == task::TaskKind::kDense) {
    for (int64_t s : spec.spatial()) out_shape.push_back(s);
  }
  declare(graph->add_output(), "output", options, out_shape);

  OnnxGraph g(graph);
  nn::GraphValue x{"input", spec.in_channels(), spec.spatial()};
  if (options.normalize_input) x = g.normalize(x, model.normalizer().mean, model.normalizer().std);
  const nn::GraphValue y = model.net()->trace(g, x);
  if (y.name == "input") throw std::logic_error("onnx_bytes: the network computes nothing");
  g.rename_last_output(y.name, "output");

  property(m, "dashnas_version", util::kVersion);
  property(m, "backbone", model.backbone().name());
  property(m, "task", spec.to_json().dump());
  property(m, "architecture", model.architecture().to_json().dump());
  property(m, "normalizer", model.normalizer().to_json().dump());
  property(m, "input_normalization", options.normalize_input ? "inside the graph"
                                                             : "by the caller: (x - mean) / std, see normalizer");
  try {
    onnx::checker::check_model(m);
    onnx::shape_inference::InferShapes(m, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict=*/1));
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("ONNX export: the ONNX checker refused the graph dashnas built (a bug; "
                                         "please report it with the model file): ") + e.what());
  }
  std::string bytes;
  if (!m.SerializeToString(&bytes)) throw std::runtime_error("ONNX export: could not serialise the model");
  return bytes;
}

void export_onnx(const model::TrainedModel& model, const std::string& path, const OnnxOptions& options) {
  util::write_bytes_atomically(path, onnx_bytes(model, options));
}

}  // namespace dash::deploy
