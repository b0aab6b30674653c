#include "nn/backbones.h"

#include <stdexcept>

#include "dist/sync_batch_norm.h"
#include "util/errors.h"

namespace dash::nn {
namespace {

torch::nn::AnyModule batch_norm(int dims, int64_t channels) {
  if (dims == 1) return torch::nn::AnyModule(torch::nn::BatchNorm1d(channels));
  return torch::nn::AnyModule(torch::nn::BatchNorm2d(channels));
}

torch::nn::AnyModule pointwise_conv(int dims, int64_t in, int64_t out, int64_t stride) {
  if (dims == 1) {
    return torch::nn::AnyModule(torch::nn::Conv1d(torch::nn::Conv1dOptions(in, out, 1).stride(stride)));
  }
  return torch::nn::AnyModule(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride)));
}

int64_t resnet1d_mid_channels(const BackboneSpec& s) {
  // DASH's ResNet1D: min(4^(classes/10 + 1), 64), times our width multiplier.
  int64_t mid = 4;
  for (int64_t i = 0; i < s.num_outputs / 10 && mid < 64; ++i) mid *= 4;
  return std::min<int64_t>(mid, 64) * s.width;
}

// An ordinary torch::nn::Conv1d/Conv2d (shortcuts, the dense head, the 1D
// stem) as a PlainConv; `pad` on every side.
PlainConv plain_conv(const torch::nn::Module& m, int64_t pad) {
  auto& module = const_cast<torch::nn::Module&>(m);  // as<>() is not const; nothing is changed
  if (auto* c = module.as<torch::nn::Conv1dImpl>()) {
    return {c->weight, c->bias, 1, c->options.stride()->at(0), 1, {pad, pad}};
  }
  if (auto* c = module.as<torch::nn::Conv2dImpl>()) {
    return {c->weight, c->bias, 1, c->options.stride()->at(0), 1, {pad, pad, pad, pad}};
  }
  throw std::logic_error("plain_conv: " + m.name() + " is not a Conv1d or Conv2d");
}

GraphValue trace_batch_norm(GraphSink& g, const torch::nn::AnyModule& m, const GraphValue& x,
                            const std::string& name) {
  torch::nn::Module& module = *m.ptr();
  if (auto* b = module.as<torch::nn::BatchNorm1dImpl>()) {
    return g.batch_norm(x, b->weight, b->bias, b->running_mean, b->running_var, b->options.eps(), name);
  }
  if (auto* b = module.as<torch::nn::BatchNorm2dImpl>()) {
    return g.batch_norm(x, b->weight, b->bias, b->running_mean, b->running_var, b->options.eps(), name);
  }
  throw std::logic_error("trace_batch_norm: " + name + " is not a BatchNorm1d or BatchNorm2d");
}

GraphValue trace_conv(GraphSink& g, const std::vector<SearchableConv>& layers, const SearchableConv& conv,
                      const GraphValue& x) {
  size_t i = 0;
  while (i < layers.size() && layers[i].get() != conv.get()) ++i;
  const std::string name = "conv" + std::to_string(i);
  PlainConv plain;
  try {
    plain = conv->plain(x.spatial);
  } catch (const Unsupported& e) {
    throw Unsupported("searchable layer " + std::to_string(i) + " (" + name + "): " + e.what());
  }
  return g.conv(x, plain, name);
}

}  // namespace

std::string BackboneSpec::name() const {
  std::string n = kind == BackboneKind::kWideResNet
                      ? "wrn-" + std::to_string(depth) + "-" + std::to_string(width)
                      : "resnet1d-" + std::to_string(width);
  if (stem_stride > 1) n += "-stem" + std::to_string(stem_stride);
  if (causal) n += "-causal";
  return dense ? n + "-dense" : n;
}

int64_t stem_stride_for(const task::TaskSpec& spec, int64_t stem_stride) {
  if (stem_stride < 0) throw std::invalid_argument("stem_stride must be >= 0, got " + std::to_string(stem_stride));
  const bool allowed = spec.dims() == 1 && spec.kind != task::TaskKind::kDense && !spec.causal;
  if (stem_stride > 1 && !allowed) {
    throw std::invalid_argument("stem_stride " + std::to_string(stem_stride) +
                                ": only 1D tasks whose outputs are not per position (and not causal) "
                                "can have a downsampling stem; use 0 or 1");
  }
  if (stem_stride != 0) return stem_stride;
  if (!allowed) return 1;
  const int64_t length = spec.spatial().at(0);
  int64_t s = 1;
  if (length > kLongestWithoutStem) {
    while ((length + s - 1) / s > 512) s *= 2;
  }
  return s;
}

BackboneSpec backbone_for(const task::TaskSpec& spec, int depth, int width, double dropout,
                          int64_t stem_stride) {
  BackboneSpec b;
  b.kind = spec.dims() == 2 ? BackboneKind::kWideResNet : BackboneKind::kResNet1D;
  b.depth = depth;
  b.width = width;
  b.in_channels = spec.in_channels();
  b.spatial = spec.spatial();
  b.num_outputs = spec.num_outputs;
  b.dense = spec.kind == task::TaskKind::kDense;
  b.causal = spec.causal;
  b.dropout = dropout;
  b.stem_stride = stem_stride_for(spec, stem_stride);
  return b;
}

void BackboneSpec::validate() const {
  if (kind == BackboneKind::kWideResNet) {
    if (dims() != 2) throw std::invalid_argument("the Wide ResNet backbone needs 2D inputs");
    if (depth < 10 || (depth - 4) % 6 != 0) {
      throw std::invalid_argument("Wide ResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, "
                                  "...), got " + std::to_string(depth));
    }
  } else if (dims() != 1) {
    throw std::invalid_argument("the ResNet1D backbone needs 1D inputs");
  }
  if (causal && kind != BackboneKind::kResNet1D) {
    throw std::invalid_argument("only the 1D backbone can be causal");
  }
  if (width < 1 || width > 16) {
    throw std::invalid_argument("backbone width must be in [1, 16], got " + std::to_string(width));
  }
  if (in_channels < 1 || num_outputs < 1) {
    throw std::invalid_argument("backbone needs >= 1 input channel and >= 1 output");
  }
  for (int64_t s : spatial) {
    if (s < 1) throw std::invalid_argument("backbone input sizes must be >= 1");
  }
  if (dropout < 0 || dropout >= 1) throw std::invalid_argument("dropout must be in [0, 1)");
  if (stem_stride < 1 || (stem_stride > 1 && (kind != BackboneKind::kResNet1D || dense || causal))) {
    throw std::invalid_argument("a stem stride above 1 is for ResNet1D without dense or causal outputs, got " +
                                std::to_string(stem_stride));
  }
}

size_t BackboneSpec::searchable_layers() const {
  if (kind == BackboneKind::kWideResNet) return 1 + 3 * 2 * static_cast<size_t>((depth - 4) / 6);
  return 9;
}

SearchableConv BackboneImpl::make_conv(const LayerSetup& setup, const ConvShape& shape) {
  const size_t index = next_layer_++;
  SearchableConv conv = setup.mixture
                            ? SearchableConv(shape, setup.space, setup.separable)
                            : SearchableConv(shape, setup.architecture.layers.at(index));
  searchable_.push_back(register_module("conv" + std::to_string(index), conv));
  return conv;
}

BackboneImpl::BackboneImpl(const BackboneSpec& spec, const LayerSetup& setup) : spec_(spec) {
  spec.validate();
  auto affine = [&](const std::vector<double>& v, double identity) {
    if (v.empty()) return torch::full({spec.num_outputs}, identity);
    if (static_cast<int64_t>(v.size()) != spec.num_outputs) {
      throw std::invalid_argument("output affine map has " + std::to_string(v.size()) +
                                  " values for " + std::to_string(spec.num_outputs) + " outputs");
    }
    return torch::tensor(std::vector<float>(v.begin(), v.end()));
  };
  output_scale_ = register_buffer("output_scale", affine(spec.output_scale, 1.0));
  output_shift_ = register_buffer("output_shift", affine(spec.output_shift, 0.0));
  if (!setup.mixture && setup.architecture.layers.size() != spec.searchable_layers()) {
    throw std::invalid_argument("architecture has " +
                                std::to_string(setup.architecture.layers.size()) +
                                " layers but backbone " + spec.name() + " has " +
                                std::to_string(spec.searchable_layers()) + " searchable layers");
  }
  const int dims = spec.dims();
  dropout_ = register_module("dropout", torch::nn::Dropout(spec.dropout));

  if (spec.kind == BackboneKind::kWideResNet) {
    const int n = (spec.depth - 4) / 6;
    const int64_t widths[3] = {16 * spec.width, 32 * spec.width, 64 * spec.width};
    const int64_t strides[3] = {1, spec.dense ? 1 : 2, spec.dense ? 1 : 2};
    stem_ = make_conv(setup, ConvShape{dims, spec.in_channels, 16, 1, true});
    int64_t in = 16;
    for (int g = 0; g < 3; ++g) {
      for (int b = 0; b < n; ++b) {
        const int64_t stride = b == 0 ? strides[g] : 1;
        const std::string name = "block" + std::to_string(blocks_.size());
        Block blk;
        blk.bn1 = batch_norm(dims, in);
        blk.conv1 = make_conv(setup, ConvShape{dims, in, widths[g], 1, true});
        blk.bn2 = batch_norm(dims, widths[g]);
        blk.conv2 = make_conv(setup, ConvShape{dims, widths[g], widths[g], stride, true});
        register_module(name + "_bn1", blk.bn1.ptr());
        register_module(name + "_bn2", blk.bn2.ptr());
        if (stride != 1 || in != widths[g]) {
          blk.shortcut = pointwise_conv(dims, in, widths[g], stride);
          register_module(name + "_shortcut", blk.shortcut.ptr());
        }
        blocks_.push_back(std::move(blk));
        in = widths[g];
      }
    }
    head_bn_ = batch_norm(dims, in);
    register_module("head_bn", head_bn_.ptr());
    head_ = spec.dense ? pointwise_conv(dims, in, spec.num_outputs, 1)
                       : torch::nn::AnyModule(torch::nn::Linear(in, spec.num_outputs));
    register_module("head", head_.ptr());
    return;
  }

  const int64_t mid = resnet1d_mid_channels(spec);
  const int64_t outs[3] = {mid, 2 * mid, 2 * mid};
  int64_t in = spec.in_channels;
  if (spec.stem_stride > 1) {
    const int64_t s = spec.stem_stride;
    stem1d_ = register_module(
        "stem", torch::nn::Conv1d(torch::nn::Conv1dOptions(in, 2 * mid, 2 * s + 1).stride(s).padding(s)));
    stem1d_bn_ = register_module("stem_bn", torch::nn::BatchNorm1d(2 * mid));
    in = 2 * mid;
  }
  for (int b = 0; b < 3; ++b) {
    const std::string name = "block" + std::to_string(b);
    Block blk;
    blk.conv1 = make_conv(setup, ConvShape{dims, in, outs[b], 1, true, spec.causal});
    blk.bn1 = batch_norm(dims, outs[b]);
    blk.conv2 = make_conv(setup, ConvShape{dims, outs[b], outs[b], 1, true, spec.causal});
    blk.bn2 = batch_norm(dims, outs[b]);
    blk.conv3 = make_conv(setup, ConvShape{dims, outs[b], outs[b], 1, true, spec.causal});
    blk.bn3 = batch_norm(dims, outs[b]);
    register_module(name + "_bn1", blk.bn1.ptr());
    register_module(name + "_bn2", blk.bn2.ptr());
    register_module(name + "_bn3", blk.bn3.ptr());
    if (in != outs[b]) {
      blk.shortcut = pointwise_conv(dims, in, outs[b], 1);
      blk.shortcut_bn = batch_norm(dims, outs[b]);
      register_module(name + "_shortcut", blk.shortcut.ptr());
      register_module(name + "_shortcut_bn", blk.shortcut_bn.ptr());
    }
    blocks_.push_back(std::move(blk));
    in = outs[b];
  }
  head_ = spec.dense ? pointwise_conv(dims, in, spec.num_outputs, 1)
                     : torch::nn::AnyModule(torch::nn::Linear(in, spec.num_outputs));
  register_module("head", head_.ptr());
}

at::Tensor BackboneImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == spec_.dims() + 2 && x.size(1) == spec_.in_channels,
              "backbone ", spec_.name(), " expects [n, ", spec_.in_channels, ", ...] with ",
              spec_.dims(), " spatial dimensions, got ", x.sizes());
  const at::Tensor raw =
      spec_.kind == BackboneKind::kWideResNet ? forward_wrn(x) : forward_resnet1d(x);
  std::vector<int64_t> per_channel(raw.dim(), 1);
  per_channel[1] = -1;
  return torch::addcmul(output_shift_.view(per_channel), raw, output_scale_.view(per_channel));
}

at::Tensor BackboneImpl::norm(torch::nn::AnyModule& bn, const at::Tensor& x) {
  return sync_ != nullptr && is_training() ? norm(*bn.ptr(), x) : bn.forward(x);
}

at::Tensor BackboneImpl::norm(torch::nn::Module& bn, const at::Tensor& x) {
  if (auto* b = bn.as<torch::nn::BatchNorm1dImpl>()) {
    if (sync_ == nullptr || !is_training()) return b->forward(x);
    return dist::synced_batch_norm(x, b->weight, b->bias, b->running_mean, b->running_var, b->num_batches_tracked,
                                   b->options.momentum().value_or(0.1), b->options.eps(), *sync_);
  }
  if (auto* b = bn.as<torch::nn::BatchNorm2dImpl>()) {
    if (sync_ == nullptr || !is_training()) return b->forward(x);
    return dist::synced_batch_norm(x, b->weight, b->bias, b->running_mean, b->running_var, b->num_batches_tracked,
                                   b->options.momentum().value_or(0.1), b->options.eps(), *sync_);
  }
  throw std::logic_error("BackboneImpl::norm: " + bn.name() + " is not a BatchNorm1d or BatchNorm2d");
}

at::Tensor BackboneImpl::forward_wrn(const at::Tensor& x) {
  at::Tensor h = stem_->forward(x);
  for (auto& b : blocks_) {
    at::Tensor out = b.conv1->forward(torch::relu(norm(b.bn1, h)));
    out = dropout_->forward(out);
    out = b.conv2->forward(torch::relu(norm(b.bn2, out)));
    h = out + (b.shortcut.is_empty() ? h : b.shortcut.forward(h));
  }
  h = torch::relu(norm(head_bn_, h));
  if (spec_.dense) return head_.forward(h);
  return head_.forward(h.mean({2, 3}));
}

at::Tensor BackboneImpl::forward_resnet1d(const at::Tensor& x) {
  at::Tensor h = stem1d_ ? torch::relu(norm(*stem1d_bn_, stem1d_->forward(x))) : x;
  for (auto& b : blocks_) {
    at::Tensor out = dropout_->forward(torch::relu(norm(b.bn1, b.conv1->forward(h))));
    out = dropout_->forward(torch::relu(norm(b.bn2, b.conv2->forward(out))));
    out = torch::relu(norm(b.bn3, b.conv3->forward(out)));
    // The reference's blocks add a residual only where the channels change
    // (a 1x1 conv and BN); a block that keeps them has none.
    h = b.shortcut.is_empty() ? out : out + norm(b.shortcut_bn, b.shortcut.forward(h));
  }
  if (spec_.dense) return head_.forward(h);
  return head_.forward(h.mean({2}));
}

GraphValue BackboneImpl::trace(GraphSink& g, const GraphValue& x) const {
  if (x.channels != spec_.in_channels || x.spatial != spec_.spatial) {
    throw std::invalid_argument("BackboneImpl::trace: the input's shape is not the backbone's");
  }
  const GraphValue raw = spec_.kind == BackboneKind::kWideResNet ? trace_wrn(g, x) : trace_resnet1d(g, x);
  const bool identity = output_scale_.eq(1).all().item<bool>() && output_shift_.eq(0).all().item<bool>();
  return identity ? raw : g.channel_affine(raw, output_scale_, output_shift_, "output_affine");
}

// The two trace_* mirror forward_wrn and forward_resnet1d in evaluation mode
// (dropout is the identity there); tests/capi/test_onnx.cpp checks that they
// compute the same outputs.
GraphValue BackboneImpl::trace_wrn(GraphSink& g, GraphValue h) const {
  h = trace_conv(g, searchable_, stem_, h);
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    const std::string name = "block" + std::to_string(i);
    GraphValue out = trace_conv(g, searchable_, b.conv1, g.relu(trace_batch_norm(g, b.bn1, h, name + "_bn1")));
    out = trace_conv(g, searchable_, b.conv2, g.relu(trace_batch_norm(g, b.bn2, out, name + "_bn2")));
    const GraphValue skip = b.shortcut.is_empty() ? h : g.conv(h, plain_conv(*b.shortcut.ptr(), 0), name + "_shortcut");
    h = g.add(out, skip);
  }
  h = g.relu(trace_batch_norm(g, head_bn_, h, "head_bn"));
  return head(g, h);
}

GraphValue BackboneImpl::trace_resnet1d(GraphSink& g, GraphValue h) const {
  if (stem1d_) {
    h = g.relu(trace_batch_norm(g, torch::nn::AnyModule(stem1d_bn_), g.conv(h, plain_conv(*stem1d_, spec_.stem_stride), "stem"),
                                "stem_bn"));
  }
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    const std::string name = "block" + std::to_string(i);
    GraphValue out = g.relu(trace_batch_norm(g, b.bn1, trace_conv(g, searchable_, b.conv1, h), name + "_bn1"));
    out = g.relu(trace_batch_norm(g, b.bn2, trace_conv(g, searchable_, b.conv2, out), name + "_bn2"));
    out = g.relu(trace_batch_norm(g, b.bn3, trace_conv(g, searchable_, b.conv3, out), name + "_bn3"));
    if (b.shortcut.is_empty()) {
      h = out;
    } else {
      const GraphValue skip = g.conv(h, plain_conv(*b.shortcut.ptr(), 0), name + "_shortcut");
      h = g.add(out, trace_batch_norm(g, b.shortcut_bn, skip, name + "_shortcut_bn"));
    }
  }
  return head(g, h);
}

GraphValue BackboneImpl::head(GraphSink& g, const GraphValue& h) const {
  if (spec_.dense) return g.conv(h, plain_conv(*head_.ptr(), 0), "head");
  auto* linear = head_.ptr()->as<torch::nn::LinearImpl>();
  return g.linear(g.global_mean(h), linear->weight, linear->bias, "head");
}

Architecture BackboneImpl::architecture() const {
  Architecture a;
  a.backbone = spec_.name();
  for (const auto& conv : searchable_) a.layers.push_back(conv->choice());
  return a;
}

double BackboneImpl::macs_per_sample() const {
  double macs = 0;
  for (const auto& conv : searchable_) macs += conv->macs();
  if (stem1d_) {  // at the first block's input length
    const SearchableConv& first = blocks_.front().conv1;
    macs += static_cast<double>(first->last_input_spatial().at(0) * first->shape().in *
                                spec_.in_channels * (2 * spec_.stem_stride + 1));
  }
  // 1x1 shortcuts run at their block's output size: that of the block's last conv.
  for (const auto& b : blocks_) {
    if (b.shortcut.is_empty()) continue;
    const SearchableConv& last = b.conv3 ? b.conv3 : b.conv2;
    double positions = 1;
    for (int64_t n : last->last_input_spatial()) {
      positions *= static_cast<double>((n + last->shape().stride - 1) / last->shape().stride);
    }
    macs += positions * static_cast<double>(b.conv1->shape().in * last->shape().out);
  }
  const SearchableConv& top = blocks_.back().conv3 ? blocks_.back().conv3 : blocks_.back().conv2;
  double positions = 1;
  if (spec_.dense) {
    for (int64_t n : top->last_input_spatial()) positions *= static_cast<double>(n);
  }
  return macs + positions * static_cast<double>(top->shape().out * spec_.num_outputs);
}

std::vector<at::Tensor> BackboneImpl::arch_parameters() {
  std::vector<at::Tensor> out;
  for (auto& conv : searchable_) {
    if (conv->is_mixture()) out.push_back(conv->alpha());
  }
  return out;
}

std::vector<at::Tensor> BackboneImpl::weight_parameters() {
  std::vector<at::Tensor> out;
  for (const auto& p : named_parameters(/*recurse=*/true)) {
    const std::string& name = p.key();
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, "alpha") == 0) continue;
    out.push_back(p.value());
  }
  return out;
}

}  // namespace dash::nn
