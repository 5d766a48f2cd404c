//! Networks: the teachers (torchvision's FCN and DeepLabV3 zoo), the students, and the pieces they
//! share. One architecture per file; parameter names equal torchvision's `state_dict` keys so published weights load as
//! they are.

pub mod deeplabv3;
pub mod fcn;
pub mod layers;
pub mod lraspp;
pub mod mbv3s_aspp;
pub mod mbv3s_tiny;
pub mod mobilenet_v3;
pub mod onnx;
pub mod ops;
pub mod resnet;
pub mod spec;
pub mod weights;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use candle_core::{Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

pub use layers::Mode;
use weights::{StateDict, WeightsError};

/// Feature maps by their tap names.
pub type NamedFeatures = Vec<(&'static str, Tensor)>;

/// What a segmentation network returns.
#[derive(Clone, Debug)]
pub struct SegOutput {
    /// (B, classes, H, W) at the input resolution.
    pub logits: Tensor,
    /// Auxiliary logits (FCN's layer3 head), input resolution.
    pub aux: Option<Tensor>,
    /// Named feature maps for distillation: students `low`/`mid`/`high`, the teacher `layer1`–`layer4`.
    pub features: Vec<(&'static str, Tensor)>,
}

impl SegOutput {
    pub fn feature(&self, name: &str) -> Option<&Tensor> {
        self.features.iter().find(|(n, _)| *n == name).map(|(_, t)| t)
    }

    /// Every output in `dtype` (autocast: the losses take fp32); a clone when already there.
    pub fn to_dtype(&self, dtype: candle_core::DType) -> Result<Self> {
        if self.logits.dtype() == dtype {
            return Ok(self.clone());
        }
        Ok(Self {
            logits: self.logits.to_dtype(dtype)?,
            aux: self.aux.as_ref().map(|a| a.to_dtype(dtype)).transpose()?,
            features: self.features.iter().map(|(n, t)| Ok((*n, t.to_dtype(dtype)?))).collect::<Result<_>>()?,
        })
    }
}

/// A feature map a model exposes for distillation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureTap {
    pub name: &'static str,
    pub channels: usize,
    pub stride: usize,
}

/// The models segdistill knows; everything about each is in its [`spec::ModelSpec`] (name,
/// builder, role, backbone, memory), looked up with [`ModelKind::spec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelKind {
    FcnResnet50,
    FcnResnet101,
    DeeplabV3Resnet50,
    DeeplabV3Resnet101,
    DeeplabV3Mbv3l,
    Mbv3sAspp,
    Mbv3sTiny,
    LrasppMbv3l,
}

impl ModelKind {
    pub const ALL: [ModelKind; spec::SPECS.len()] = spec::ALL;
    /// The compact networks offered as students.
    pub const STUDENTS: [ModelKind; spec::STUDENTS.len()] = spec::STUDENTS;
    /// torchvision's segmentation zoo: the architectures of its published COCO-VOC files.
    pub const TEACHERS: [ModelKind; spec::TEACHERS.len()] = spec::TEACHERS;

    /// Everything the registry knows of this architecture.
    pub fn spec(self) -> &'static spec::ModelSpec {
        &spec::SPECS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// See [`spec::ModelSpec::train_step_bytes_per_pixel`].
    pub fn train_step_bytes_per_pixel(self) -> f64 {
        self.spec().train_step_bytes_per_pixel
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The key of the final classifier's weight, whose first dimension is the class count.
    fn classifier_key(self) -> &'static str {
        self.spec().classifier_key
    }

    /// The torchvision ImageNet classifier whose features are this model's backbone (its
    /// weights load with `--backbone-weights`).
    pub fn backbone(self) -> &'static str {
        self.spec().backbone
    }

    /// The architecture of a torchvision file by its published name (`deeplabv3_resnet50_coco-…`).
    pub fn from_torchvision_file_name(file_name: &str) -> Option<Self> {
        spec::SPECS.iter().find(|s| s.torchvision_file_prefix.is_some_and(|p| file_name.starts_with(p))).map(|s| s.kind)
    }

    /// torchvision's published weights of this architecture, if it publishes some (the download
    /// catalog knows the files; the registry knows which architecture each file name is).
    pub fn published_weights(self) -> Option<crate::data::download::catalog::Weights> {
        crate::data::download::catalog::WEIGHTS
            .into_iter()
            .find(|w| Self::from_torchvision_file_name(w.file_name) == Some(self))
    }

    /// The architecture a state dict was saved from, by its telltale keys (`has` says whether a key
    /// is present); `None` when it matches none.
    pub fn detect(has: impl Fn(&str) -> bool) -> Option<Self> {
        let resnet = has("backbone.layer1.0.conv1.weight");
        // ResNet-101's layer3 has 23 blocks, ResNet-50's 6.
        let r101 = has("backbone.layer3.22.conv1.weight");
        let mbv3_large = has("backbone.16.0.weight");
        if has("classifier.0.convs.0.0.weight") {
            return match (resnet, r101, mbv3_large) {
                (true, true, _) => Some(Self::DeeplabV3Resnet101),
                (true, false, _) => Some(Self::DeeplabV3Resnet50),
                (false, _, true) => Some(Self::DeeplabV3Mbv3l),
                _ => None,
            };
        }
        if resnet && has("classifier.4.weight") {
            return Some(if r101 { Self::FcnResnet101 } else { Self::FcnResnet50 });
        }
        if has("decoder.classifier.weight") {
            return Some(Self::Mbv3sAspp);
        }
        if has("classifier.low_classifier.weight") {
            return Some(if mbv3_large { Self::LrasppMbv3l } else { Self::Mbv3sTiny });
        }
        None
    }

    /// Whether the architecture has torchvision's auxiliary head (FCN and DeepLabV3 do; trained
    /// with it, as torchvision's reference recipe does with `aux_loss=True`).
    pub fn has_aux_head(self) -> bool {
        self.spec().aux_head
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The CLI takes the registry's names (`--model mbv3s-tiny`), with each spec's line as help.
impl clap::ValueEnum for ModelKind {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.spec().about))
    }
}

/// Run folders and settings store the registry's name.
impl Serialize for ModelKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ModelKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            serde::de::Error::custom(format!("unknown model `{name}`; known: {}", known.join(", ")))
        })
    }
}

/// A built network of a registered architecture.
#[derive(Clone, Debug)]
pub struct Model {
    kind: ModelKind,
    net: Arc<dyn spec::SegNet>,
}

impl Model {
    /// Builds `kind` from a var builder (weights from a file, or fresh variables); `aux` adds the
    /// auxiliary head where the architecture has one.
    pub fn new(kind: ModelKind, vb: VarBuilder, num_classes: usize, aux: bool) -> Result<Self> {
        let net = (kind.spec().build)(vb, num_classes, aux && kind.has_aux_head())?;
        Ok(Self { kind, net: Arc::from(net) })
    }

    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    pub fn num_classes(&self) -> usize {
        self.net.num_classes()
    }

    /// `x`: normalised images (B, 3, H, W). A teacher runs in eval mode; any model, the teachers
    /// included, trains in train mode (batch statistics, dropout).
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<SegOutput> {
        self.net.forward(x, mode)
    }

    /// The network as an ONNX model: evaluation mode, batch norm folded, logits at the input's
    /// size (the auxiliary head is left out, as torchvision's inference does).
    pub fn to_onnx(&self, options: &onnx::ExportOptions) -> Result<candle_onnx::onnx::ModelProto> {
        let doc = format!("{} with {} classes, exported by segdistill", self.kind, self.num_classes());
        onnx::build_model(&doc, self.num_classes(), options, |g, x| self.net.export_onnx(g, x))
    }

    /// Evaluation-mode logits at the network's own low resolution (before the final resize to the
    /// input), and its feature maps: what the teacher cache stores (see
    /// [`spec::SegNet::forward_low_res`]).
    pub fn forward_low_res(&self, x: &Tensor) -> Result<(Tensor, Vec<(&'static str, Tensor)>)> {
        self.net.forward_low_res(x)
    }

    pub fn feature_taps(&self) -> Vec<FeatureTap> {
        self.net.feature_taps()
    }
}

/// True for entries that are buffers, not parameters (as in torch's `model.parameters()`).
fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var") || name.ends_with("num_batches_tracked")
}

/// Number of trainable parameters among named tensors.
pub fn count_params<'a>(named: impl IntoIterator<Item = (&'a str, usize)>) -> usize {
    named.into_iter().filter(|(n, _)| !is_buffer(n)).map(|(_, c)| c).sum()
}

/// A model loaded from a weights file for inference.
pub struct LoadedModel {
    pub model: Model,
    pub num_params: usize,
    pub weights: StateDict,
}

/// Loads `kind` from a weights file, every key and shape checked (extra keys are an error too).
/// The class count comes from the file.
pub fn load_for_inference(kind: ModelKind, path: &Path, device: &Device) -> anyhow::Result<LoadedModel> {
    load_state_dict_for_inference(kind, StateDict::load(path)?, device)
}

/// [`load_for_inference`] from a state dict already read (or built in memory); errors name its path.
pub fn load_state_dict_for_inference(kind: ModelKind, dict: StateDict, device: &Device) -> anyhow::Result<LoadedModel> {
    let dict = Arc::new(dict);
    let path = dict.path.clone();
    let path = path.as_path();
    let key = kind.classifier_key();
    // Without its classifier the file is still built (with VOC's 21 classes) so that the error
    // lists every weight it lacks, not only the first.
    let num_classes = dict.get(key).map_or(21, |t| t.dims()[0]);
    let aux = dict.get("aux_classifier.4.weight").is_some();
    let (vb, used) = dict.var_builder(device);
    let other_architecture = || match ModelKind::detect(|k| dict.get(k).is_some()) {
        Some(found) if found != kind => {
            format!("{} holds a {found}, not a {kind}: choose model {found}", path.display())
        }
        _ => format!("{} is not a {kind} file", path.display()),
    };
    let model = Model::new(kind, vb, num_classes, aux)
        .map_err(|e| match used.take_error() {
            Some(w) => anyhow::Error::from(w),
            None => anyhow::Error::from(e).context(format!("building {kind} from {}", path.display())),
        })
        .with_context(other_architecture)?;
    used.check_all_used(&[]).with_context(other_architecture)?;
    let num_params = count_params(dict.keys().map(|k| (k, dict.get(k).map_or(0, |t| t.elem_count()))));
    let weights = Arc::try_unwrap(dict).unwrap_or_else(|d| (*d).clone());
    Ok(LoadedModel { model, num_params, weights })
}

/// A student with trainable variables.
pub struct Trainable {
    pub model: Model,
    pub varmap: VarMap,
    pub num_params: usize,
}

/// Builds `kind` with fresh, seeded variables; FCN and DeepLabV3 with their auxiliary head, as
/// torchvision's reference recipe trains them (`aux_loss=True`).
pub fn build_trainable(kind: ModelKind, num_classes: usize, seed: u64, device: &Device) -> Result<Trainable> {
    let varmap = VarMap::new();
    let vb = weights::init::seeded_var_builder(&varmap, seed, device);
    let model = Model::new(kind, vb, num_classes, kind.has_aux_head())?;
    let num_params = {
        let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
        count_params(vars.iter().map(|(k, v)| (k.as_str(), v.elem_count())))
    };
    Ok(Trainable { model, varmap, num_params })
}

/// Loads ImageNet backbone weights into a model's `backbone.*` variables: torchvision's
/// MobileNetV3 files (`mobilenet_v3_small-047dcff4.pth`, `mobilenet_v3_large-8738ca79.pth`, keys
/// `features.*`), its ResNet files (`resnet50-0676ba61.pth`, `resnet101-63fe2227.pth`, keys
/// `conv1.*`, `layer1.*`…) for FCN and DeepLabV3. Every
/// backbone variable must be in the file; its classifier and stages the model lacks are ignored.
/// Returns the number of tensors loaded.
pub fn load_backbone(varmap: &VarMap, path: &Path) -> anyhow::Result<usize> {
    let dict = StateDict::load(path)?;
    let resnet = dict.get("conv1.weight").is_some() && dict.get("layer1.0.conv1.weight").is_some();
    let (dict, file_prefix) = if resnet {
        let keep = |k: &str| !k.starts_with("fc.") && !k.ends_with("num_batches_tracked");
        (dict.renamed(|k| keep(k).then(|| format!("backbone.{k}"))), "")
    } else {
        (dict.renamed(|k| k.strip_prefix("features.").map(|rest| format!("backbone.{rest}"))), "features.")
    };
    if dict.is_empty() {
        anyhow::bail!(
            "{} has neither `features.*` (MobileNetV3) nor `conv1`/`layer1` (ResNet) weights: not a torchvision \
             ImageNet backbone file",
            path.display()
        );
    }
    let report = weights::load_into_varmap(varmap, &dict)?;
    let missing: Vec<String> = report.missing.into_iter().filter(|k| k.starts_with("backbone.")).collect();
    if !missing.is_empty() {
        return Err(WeightsError::missing_keys(
            path,
            missing.iter().map(|k| k.replacen("backbone.", file_prefix, 1)).collect(),
        )
        .into());
    }
    Ok(report.loaded)
}

/// What [`load_student_weights`] loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct StudentWeightsLoaded {
    /// Tensors taken from the file.
    pub loaded: usize,
    /// Set when the file was trained for another number of classes.
    pub new_classifier: Option<NewClassifier>,
}

/// The final classifier layers left at their fresh initialisation because the file predicts
/// another number of classes than the model.
#[derive(Clone, Debug, PartialEq)]
pub struct NewClassifier {
    pub file_classes: usize,
    pub model_classes: usize,
    /// The classifier tensors not taken from the file (weights and biases of the final layers).
    pub keys: Vec<String>,
}

/// The final classifier tensors whose class count (first dimension) differs between the model and
/// the file, all else equal: (their keys, the file's class count, the model's). `None` unless
/// every such tensor is a classifier's and all agree on both counts (anything else is another
/// architecture, which loading reports as it is).
fn classifier_class_mismatch(varmap: &VarMap, dict: &StateDict) -> Option<NewClassifier> {
    let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut keys = Vec::new();
    let mut counts = None;
    for (name, var) in vars.iter() {
        let Some(t) = dict.get(name) else { continue };
        let (file, model) = (t.dims(), var.dims());
        if file == model {
            continue;
        }
        let class_dim_only = file.len() == model.len() && !file.is_empty() && file[1..] == model[1..];
        if !class_dim_only || !name.contains("classifier") {
            return None;
        }
        match counts {
            None => counts = Some((file[0], model[0])),
            Some(c) if c != (file[0], model[0]) => return None,
            Some(_) => {}
        }
        keys.push(name.clone());
    }
    keys.sort();
    counts.map(|(file_classes, model_classes)| NewClassifier { file_classes, model_classes, keys })
}

/// Loads a complete model file (safetensors written by segdistill, or torchvision's published
/// file of the architecture) into a trainable model: every variable must be present and every
/// tensor of the file used (PyTorch's `num_batches_tracked` counters excepted). A file trained for
/// another number of classes (a VOC model fine-tuned on ADE20K) loads all but its final
/// classifier layers, which keep the model's fresh initialisation.
pub fn load_student_weights(varmap: &VarMap, path: &Path) -> anyhow::Result<StudentWeightsLoaded> {
    let dict = StateDict::load(path)?.renamed(|k| (!k.ends_with("num_batches_tracked")).then(|| k.to_string()));
    let new_classifier = classifier_class_mismatch(varmap, &dict);
    let dict = match &new_classifier {
        Some(c) => dict.renamed(|k| (!c.keys.iter().any(|n| n == k)).then(|| k.to_string())),
        None => dict,
    };
    let mut report = weights::load_into_varmap(varmap, &dict)?;
    if let Some(c) = &new_classifier {
        report.missing.retain(|k| !c.keys.contains(k));
    }
    if !report.missing.is_empty() {
        return Err(WeightsError::missing_keys(path, report.missing).into());
    }
    if !report.unused.is_empty() {
        return Err(WeightsError::unexpected_keys(path, report.unused).into());
    }
    Ok(StudentWeightsLoaded { loaded: report.loaded, new_classifier })
}

/// Human-readable parameter count ("3.22 M").
pub fn format_params(n: usize) -> String {
    if n >= 1_000_000 { format!("{:.2} M", n as f64 / 1e6) } else { format!("{:.1} k", n as f64 / 1e3) }
}
