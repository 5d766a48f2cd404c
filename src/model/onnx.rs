//! Writing a model as an ONNX graph for deployment. Each architecture emits its own nodes next to
//! its `forward` (`export_onnx`), through this builder: batch norm folded into the convolution
//! before it, bilinear upsampling as ONNX `Resize` with PyTorch's semantics (`linear`,
//! `half_pixel`: `interpolate(align_corners=False)`), evaluation mode throughout (dropout is
//! the identity). The messages are candle-onnx's prost types, serialised by prost.

use candle_core::{DType, Device, Result, Tensor};
use candle_onnx::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
};
use prost::Message as _;

/// The opsets the exported graphs are written for: `HardSwish` needs 14; from 18 on `ReduceMean`
/// takes its axes as an input rather than an attribute.
pub const OPSETS: std::ops::RangeInclusive<i64> = 14..=17;

/// The graph's input name: a float image batch, (N, 3, H, W).
pub const INPUT: &str = "image";
/// The graph's outputs: logits (N, classes, H, W) and, optionally, the arg-max mask (N, H, W).
pub const LOGITS: &str = "logits";
pub const MASK: &str = "mask";

/// torchvision's ImageNet normalisation, which `--with-normalize` bakes into the graph.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// An attribute value.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(&'static str),
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto { name: name.into(), ..Default::default() };
    match value {
        Attr::Int(i) => {
            a.r#type = AttributeType::Int as i32;
            a.i = i;
        }
        Attr::Ints(v) => {
            a.r#type = AttributeType::Ints as i32;
            a.ints = v;
        }
        Attr::Float(f) => {
            a.r#type = AttributeType::Float as i32;
            a.f = f;
        }
        Attr::Str(s) => {
            a.r#type = AttributeType::String as i32;
            a.s = s.as_bytes().to_vec();
        }
    }
    a
}

/// A graph under construction: nodes in execution order and the weights they read.
#[derive(Default)]
pub struct OnnxGraph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    next_id: usize,
}

impl OnnxGraph {
    fn fresh(&mut self, hint: &str) -> String {
        self.next_id += 1;
        format!("{hint}_{}", self.next_id)
    }

    /// A float weight, stored in the graph (little-endian raw data).
    pub fn weight(&mut self, hint: &str, t: &Tensor) -> Result<String> {
        let name = self.fresh(hint);
        let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: t.dims().iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data,
            ..Default::default()
        });
        Ok(name)
    }

    /// A constant vector of 64-bit integers (shapes, slice bounds).
    pub fn ints(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// A node with one output; returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node_into(op, inputs, attrs, &out);
        out
    }

    /// A node writing to a given output name (the graph's outputs).
    pub fn node_into(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>, output: &str) {
        self.nodes.push(NodeProto {
            name: format!("{op}_{}", self.nodes.len()),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs.into_iter().map(|(n, v)| attribute(n, v)).collect(),
            ..Default::default()
        });
    }

    /// `conv(x)` with the given weight (O, I/groups, k, k) and bias, "same"-style symmetric padding.
    pub fn conv(&mut self, x: &str, conv: ConvSpec<'_>) -> Result<String> {
        let w = self.weight("conv_w", conv.weight)?;
        let b = conv.bias.map(|b| self.weight("conv_b", b)).transpose()?;
        let k = conv.weight.dim(3)? as i64;
        let (p, s, d) = (conv.padding as i64, conv.stride as i64, conv.dilation as i64);
        let mut inputs = vec![x, w.as_str()];
        if let Some(b) = &b {
            inputs.push(b);
        }
        let attrs = vec![
            ("kernel_shape", Attr::Ints(vec![k, k])),
            ("pads", Attr::Ints(vec![p, p, p, p])),
            ("strides", Attr::Ints(vec![s, s])),
            ("dilations", Attr::Ints(vec![d, d])),
            ("group", Attr::Int(conv.groups as i64)),
        ];
        Ok(self.node("Conv", &inputs, attrs))
    }

    pub fn relu(&mut self, x: &str) -> String {
        self.node("Relu", &[x], vec![])
    }

    pub fn sigmoid(&mut self, x: &str) -> String {
        self.node("Sigmoid", &[x], vec![])
    }

    /// torchvision's `hardsigmoid`: relu6(x + 3) / 6.
    pub fn hardsigmoid(&mut self, x: &str) -> String {
        self.node("HardSigmoid", &[x], vec![("alpha", Attr::Float(1.0 / 6.0)), ("beta", Attr::Float(0.5))])
    }

    pub fn hardswish(&mut self, x: &str) -> String {
        self.node("HardSwish", &[x], vec![])
    }

    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.node("Add", &[a, b], vec![])
    }

    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.node("Mul", &[a, b], vec![])
    }

    /// Mean over H and W, kept as (N, C, 1, 1).
    pub fn global_avg_pool(&mut self, x: &str) -> String {
        self.node("ReduceMean", &[x], vec![("axes", Attr::Ints(vec![2, 3])), ("keepdims", Attr::Int(1))])
    }

    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.node("Concat", xs, vec![("axis", Attr::Int(axis))])
    }

    /// 3×3 max-pooling, stride 2, padding 1 (ResNet's stem).
    pub fn max_pool_3x3_s2(&mut self, x: &str) -> String {
        let attrs = vec![
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("strides", Attr::Ints(vec![2, 2])),
            ("pads", Attr::Ints(vec![1, 1, 1, 1])),
        ];
        self.node("MaxPool", &[x], attrs)
    }

    /// Bilinear resize of `x` to the height and width of `like` (sizes computed in the graph, so
    /// dynamic shapes work), PyTorch's `interpolate(mode="bilinear", align_corners=False)`.
    pub fn resize_like(&mut self, x: &str, like: &str) -> String {
        let (start0, end2, start2, end4) =
            (self.ints("at0", &[0]), self.ints("at2", &[2]), self.ints("at2", &[2]), self.ints("at4", &[4]));
        let x_shape = self.node("Shape", &[x], vec![]);
        let like_shape = self.node("Shape", &[like], vec![]);
        let batch_channels = self.node("Slice", &[&x_shape, &start0, &end2], vec![]);
        let height_width = self.node("Slice", &[&like_shape, &start2, &end4], vec![]);
        let sizes = self.concat(&[&batch_channels, &height_width], 0);
        let attrs = vec![("mode", Attr::Str("linear")), ("coordinate_transformation_mode", Attr::Str("half_pixel"))];
        self.node("Resize", &[x, "", "", &sizes], attrs)
    }

    /// `(x − mean) / std` per channel.
    pub fn normalize(&mut self, x: &str, mean: [f32; 3], std: [f32; 3]) -> Result<String> {
        let m = self.weight("mean", &Tensor::from_slice(&mean, (1, 3, 1, 1), &Device::Cpu)?)?;
        let s = self.weight("std", &Tensor::from_slice(&std, (1, 3, 1, 1), &Device::Cpu)?)?;
        let centred = self.node("Sub", &[x, &m], vec![]);
        Ok(self.node("Div", &[&centred, &s], vec![]))
    }
}

/// A convolution's parameters as the graph needs them (batch norm already folded in).
pub struct ConvSpec<'a> {
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

/// How the input is declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputShape {
    /// Batch 1, this height and width.
    Fixed { height: u32, width: u32 },
    /// Batch, height and width left to the runtime.
    Dynamic,
}

/// What goes into the file besides the network.
#[derive(Clone, Copy, Debug)]
pub struct ExportOptions {
    pub shape: InputShape,
    pub opset: i64,
    /// Bake torchvision's ImageNet normalisation in: the input is then RGB in [0, 1].
    pub normalize: bool,
    /// Add the per-pixel arg-max (int64) as a second output.
    pub argmax: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self { shape: InputShape::Dynamic, opset: *OPSETS.end(), normalize: false, argmax: false }
    }
}

fn tensor_value(name: &str, elem: DataType, dims: Vec<tensor_shape_proto::dimension::Value>) -> ValueInfoProto {
    let dim =
        dims.into_iter().map(|v| tensor_shape_proto::Dimension { value: Some(v), ..Default::default() }).collect();
    let tensor = type_proto::Tensor { elem_type: elem as i32, shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// The whole model file: the input declared, the network emitted by `emit` (from the input's
/// name to the logits' name), the outputs named.
pub fn build_model(
    doc: &str,
    num_classes: usize,
    options: &ExportOptions,
    emit: impl FnOnce(&mut OnnxGraph, &str) -> Result<String>,
) -> Result<ModelProto> {
    if !OPSETS.contains(&options.opset) {
        candle_core::bail!("ONNX opset {} is not supported: choose {}–{}", options.opset, OPSETS.start(), OPSETS.end());
    }
    use tensor_shape_proto::dimension::Value::{DimParam, DimValue};
    let (batch, h, w) = match options.shape {
        InputShape::Fixed { height, width } => (DimValue(1), DimValue(height as i64), DimValue(width as i64)),
        InputShape::Dynamic => (DimParam("batch".into()), DimParam("height".into()), DimParam("width".into())),
    };
    let mut g = OnnxGraph::default();
    let x = if options.normalize { g.normalize(INPUT, IMAGENET_MEAN, IMAGENET_STD)? } else { INPUT.to_string() };
    let logits = emit(&mut g, &x)?;
    g.node_into("Identity", &[&logits], vec![], LOGITS);
    let mut outputs = vec![tensor_value(
        LOGITS,
        DataType::Float,
        vec![batch.clone(), DimValue(num_classes as i64), h.clone(), w.clone()],
    )];
    if options.argmax {
        g.node_into("ArgMax", &[LOGITS], vec![("axis", Attr::Int(1)), ("keepdims", Attr::Int(0))], MASK);
        outputs.push(tensor_value(MASK, DataType::Int64, vec![batch.clone(), h.clone(), w.clone()]));
    }
    let input = tensor_value(INPUT, DataType::Float, vec![batch, DimValue(3), h, w]);
    let graph = GraphProto {
        name: "segdistill".into(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![input],
        output: outputs,
        doc_string: doc.into(),
        ..Default::default()
    };
    Ok(ModelProto {
        // IR version 8 goes with opsets up to 17 (onnx/docs/Versioning.md).
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: options.opset }],
        producer_name: "segdistill".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    })
}

/// The model as bytes, ready for a `.onnx` file.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// What [`export_file`] wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    pub path: std::path::PathBuf,
    pub bytes: usize,
    pub nodes: usize,
    pub classes: usize,
}

/// Loads `weights` as a `kind` and writes its ONNX graph to `out` (atomically: a failed export
/// leaves no half-written file).
pub fn export_file(
    kind: super::ModelKind,
    weights: &std::path::Path,
    out: &std::path::Path,
    options: &ExportOptions,
) -> anyhow::Result<Exported> {
    use anyhow::Context as _;
    let loaded = super::load_for_inference(kind, weights, &Device::Cpu)?;
    let model = loaded.model.to_onnx(options)?;
    let nodes = model.graph.as_ref().map_or(0, |g| g.node.len());
    let bytes = encode(&model);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::util::fs::write_atomic(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(Exported { path: out.to_path_buf(), bytes: bytes.len(), nodes, classes: loaded.model.num_classes() })
}
