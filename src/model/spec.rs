//! The registry of architectures: one [`ModelSpec`] per model — its name (the CLI value, the
//! name in run folders and settings), how to build it, its role, and the facts other modules look
//! up (its ImageNet backbone, its classifier's key, its step memory). Adding a model is one entry
//! in [`SPECS`] (and its variant of [`ModelKind`]) plus the file that implements [`SegNet`].

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::onnx::OnnxGraph;
use super::{FeatureTap, Mode, ModelKind, NamedFeatures, SegOutput, deeplabv3, fcn, lraspp, mbv3s_aspp, mbv3s_tiny};

/// What every segmentation network offers the trainer, the teacher cache and the exporters.
pub trait SegNet: std::fmt::Debug + Send + Sync {
    fn num_classes(&self) -> usize;

    /// `x`: normalised images (B, 3, H, W); logits at the input's size.
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<SegOutput>;

    /// The evaluation-mode logits at the input's size, as ONNX nodes (no auxiliary head).
    fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String>;

    /// The feature maps the network exposes for distillation.
    fn feature_taps(&self) -> Vec<FeatureTap>;

    /// Evaluation-mode logits at the network's own low resolution and its feature maps: what the
    /// teacher cache stores. By default the logits resized to stride 4, where the students'
    /// decoders work; FCN and DeepLabV3 return their classifier's stride-8 (16) output as it is.
    fn forward_low_res(&self, x: &Tensor) -> Result<(Tensor, NamedFeatures)> {
        let out = self.forward(x, Mode::Eval)?;
        let (_, _, h, w) = x.dims4()?;
        Ok((super::ops::resize_bilinear(&out.logits, h.div_ceil(4), w.div_ceil(4))?, out.features))
    }
}

/// Builds a network from a var builder: (variables, class count, with the auxiliary head).
pub type Build = fn(VarBuilder, usize, bool) -> Result<Box<dyn SegNet>>;

/// One architecture.
pub struct ModelSpec {
    pub kind: ModelKind,
    /// The CLI value and the name stored in run folders and settings.
    pub name: &'static str,
    /// One line for `--help` and `segdistill models`.
    pub about: &'static str,
    pub build: Build,
    /// Offered as a student (compact) and/or as a teacher (torchvision's zoo).
    pub student: bool,
    pub teacher: bool,
    /// torchvision's auxiliary head (FCN, DeepLabV3), trained with it as its reference recipe does.
    pub aux_head: bool,
    /// The torchvision ImageNet classifier whose features are the backbone (`--backbone-weights`).
    pub backbone: &'static str,
    /// The key of the final classifier's weight, whose first dimension is the class count.
    pub classifier_key: &'static str,
    /// The start of torchvision's published file name for this architecture, where there is one.
    pub torchvision_file_prefix: Option<&'static str>,
    /// Peak memory of a training step (forward and backward, batch 1) per input pixel, in
    /// bytes: measured, and held to a fresh measurement by `tests/step_memory.rs` (within 1.6×),
    /// so that a batch too large for the machine is refused before it starts.
    pub train_step_bytes_per_pixel: f64,
}

fn boxed<T: SegNet + 'static>(net: T) -> Result<Box<dyn SegNet>> {
    Ok(Box::new(net))
}

pub const SPECS: [ModelSpec; 8] = [
    ModelSpec {
        kind: ModelKind::FcnResnet50,
        name: "fcn-resnet50",
        about: "torchvision's FCN-ResNet50 (the default teacher)",
        build: |vb, classes, aux| boxed(fcn::FcnResNet::new(vb, super::resnet::ResNetDepth::R50, classes, aux)?),
        student: false,
        teacher: true,
        aux_head: true,
        backbone: "resnet50",
        classifier_key: "classifier.4.weight",
        torchvision_file_prefix: Some("fcn_resnet50_"),
        train_step_bytes_per_pixel: 8000.0,
    },
    ModelSpec {
        kind: ModelKind::FcnResnet101,
        name: "fcn-resnet101",
        about: "torchvision's FCN-ResNet101",
        build: |vb, classes, aux| boxed(fcn::FcnResNet::new(vb, super::resnet::ResNetDepth::R101, classes, aux)?),
        student: false,
        teacher: true,
        aux_head: true,
        backbone: "resnet101",
        classifier_key: "classifier.4.weight",
        torchvision_file_prefix: Some("fcn_resnet101_"),
        train_step_bytes_per_pixel: 13400.0,
    },
    ModelSpec {
        kind: ModelKind::DeeplabV3Resnet50,
        name: "deeplabv3-resnet50",
        about: "torchvision's DeepLabV3-ResNet50",
        build: |vb, classes, aux| {
            boxed(deeplabv3::DeepLabV3::new(vb, deeplabv3::DeepLabBackbone::ResNet50, classes, aux)?)
        },
        student: false,
        teacher: true,
        aux_head: true,
        backbone: "resnet50",
        classifier_key: "classifier.4.weight",
        torchvision_file_prefix: Some("deeplabv3_resnet50_"),
        train_step_bytes_per_pixel: 8100.0,
    },
    ModelSpec {
        kind: ModelKind::DeeplabV3Resnet101,
        name: "deeplabv3-resnet101",
        about: "torchvision's DeepLabV3-ResNet101",
        build: |vb, classes, aux| {
            boxed(deeplabv3::DeepLabV3::new(vb, deeplabv3::DeepLabBackbone::ResNet101, classes, aux)?)
        },
        student: false,
        teacher: true,
        aux_head: true,
        backbone: "resnet101",
        classifier_key: "classifier.4.weight",
        torchvision_file_prefix: Some("deeplabv3_resnet101_"),
        train_step_bytes_per_pixel: 13600.0,
    },
    ModelSpec {
        kind: ModelKind::DeeplabV3Mbv3l,
        name: "deeplabv3-mbv3l",
        about: "torchvision's DeepLabV3-MobileNetV3-Large",
        build: |vb, classes, aux| {
            boxed(deeplabv3::DeepLabV3::new(vb, deeplabv3::DeepLabBackbone::MobileNetV3Large, classes, aux)?)
        },
        student: false,
        teacher: true,
        aux_head: true,
        backbone: "mobilenet_v3_large",
        classifier_key: "classifier.4.weight",
        torchvision_file_prefix: Some("deeplabv3_mobilenet_v3_large"),
        train_step_bytes_per_pixel: 1550.0,
    },
    ModelSpec {
        kind: ModelKind::Mbv3sAspp,
        name: "mbv3s-aspp",
        about: "MobileNetV3-Small + ASPP + decoder (the lab's student)",
        build: |vb, classes, _| boxed(mbv3s_aspp::Mbv3sAspp::new(vb, classes)?),
        student: true,
        teacher: false,
        aux_head: false,
        backbone: "mobilenet_v3_small",
        classifier_key: "decoder.classifier.weight",
        torchvision_file_prefix: None,
        train_step_bytes_per_pixel: 1600.0,
    },
    ModelSpec {
        kind: ModelKind::Mbv3sTiny,
        name: "mbv3s-tiny",
        about: "Ultra-compact MobileNetV3-Small + LR-ASPP (< 0.5 M parameters)",
        build: |vb, classes, _| boxed(mbv3s_tiny::Mbv3sTiny::new(vb, classes)?),
        student: true,
        teacher: false,
        aux_head: false,
        backbone: "mobilenet_v3_small",
        classifier_key: "classifier.low_classifier.weight",
        torchvision_file_prefix: None,
        train_step_bytes_per_pixel: 400.0,
    },
    ModelSpec {
        kind: ModelKind::LrasppMbv3l,
        name: "lraspp-mbv3l",
        about: "torchvision's LR-ASPP MobileNetV3-Large",
        build: |vb, classes, _| boxed(lraspp::LrasppMobileNetV3Large::new(vb, classes)?),
        student: true,
        teacher: true,
        aux_head: false,
        backbone: "mobilenet_v3_large",
        classifier_key: "classifier.low_classifier.weight",
        torchvision_file_prefix: Some("lraspp_mobilenet_v3_large"),
        train_step_bytes_per_pixel: 1200.0,
    },
];

/// How many specs have a role (`student` when true, else `teacher`).
const fn count_role(student: bool) -> usize {
    let (mut i, mut n) = (0, 0);
    while i < SPECS.len() {
        if (student && SPECS[i].student) || (!student && SPECS[i].teacher) {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The kinds with a role, in table order.
const fn select_role<const N: usize>(student: bool) -> [ModelKind; N] {
    let mut out = [ModelKind::FcnResnet50; N];
    let (mut i, mut n) = (0, 0);
    while i < SPECS.len() {
        if (student && SPECS[i].student) || (!student && SPECS[i].teacher) {
            out[n] = SPECS[i].kind;
            n += 1;
        }
        i += 1;
    }
    out
}

const fn all_kinds() -> [ModelKind; SPECS.len()] {
    let mut out = [ModelKind::FcnResnet50; SPECS.len()];
    let mut i = 0;
    while i < SPECS.len() {
        out[i] = SPECS[i].kind;
        i += 1;
    }
    out
}

pub(super) const ALL: [ModelKind; SPECS.len()] = all_kinds();
pub(super) const STUDENTS: [ModelKind; count_role(true)] = select_role::<{ count_role(true) }>(true);
pub(super) const TEACHERS: [ModelKind; count_role(false)] = select_role::<{ count_role(false) }>(false);

macro_rules! impl_segnet {
    ($ty:ty) => {
        impl SegNet for $ty {
            fn num_classes(&self) -> usize {
                <$ty>::num_classes(self)
            }
            fn forward(&self, x: &Tensor, mode: Mode) -> Result<SegOutput> {
                <$ty>::forward(self, x, mode)
            }
            fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
                <$ty>::export_onnx(self, g, x)
            }
            fn feature_taps(&self) -> Vec<FeatureTap> {
                <$ty>::feature_taps(self)
            }
        }
    };
}

impl_segnet!(mbv3s_aspp::Mbv3sAspp);
impl_segnet!(mbv3s_tiny::Mbv3sTiny);
impl_segnet!(lraspp::LrasppMobileNetV3Large);

impl SegNet for fcn::FcnResNet {
    fn num_classes(&self) -> usize {
        fcn::FcnResNet::num_classes(self)
    }
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<SegOutput> {
        fcn::FcnResNet::forward(self, x, mode)
    }
    fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        fcn::FcnResNet::export_onnx(self, g, x)
    }
    fn feature_taps(&self) -> Vec<FeatureTap> {
        fcn::FcnResNet::feature_taps()
    }
    /// The classifier runs at stride 8; resizing its output is all that is left of the forward pass.
    fn forward_low_res(&self, x: &Tensor) -> Result<(Tensor, NamedFeatures)> {
        let (logits, _, f) = fcn::FcnResNet::forward_low_res(self, x, Mode::Eval)?;
        Ok((logits, f.named()))
    }
}

impl SegNet for deeplabv3::DeepLabV3 {
    fn num_classes(&self) -> usize {
        deeplabv3::DeepLabV3::num_classes(self)
    }
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<SegOutput> {
        deeplabv3::DeepLabV3::forward(self, x, mode)
    }
    fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        deeplabv3::DeepLabV3::export_onnx(self, g, x)
    }
    fn feature_taps(&self) -> Vec<FeatureTap> {
        deeplabv3::DeepLabV3::feature_taps(self)
    }
    /// The classifier runs at stride 8 (16 on MobileNetV3).
    fn forward_low_res(&self, x: &Tensor) -> Result<(Tensor, NamedFeatures)> {
        let (logits, _, f) = deeplabv3::DeepLabV3::forward_low_res(self, x, Mode::Eval)?;
        Ok((logits, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_each_kind_once_in_order_with_distinct_names() {
        for (i, spec) in SPECS.iter().enumerate() {
            assert_eq!(spec.kind as usize, i, "{}: SPECS follows the order of ModelKind", spec.name);
            assert!(spec.student || spec.teacher, "{} has no role", spec.name);
        }
        let mut names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SPECS.len());
        assert_eq!(STUDENTS.to_vec(), SPECS.iter().filter(|s| s.student).map(|s| s.kind).collect::<Vec<_>>());
    }

    #[test]
    fn every_zoo_architecture_has_its_published_file_and_students_have_none() {
        for kind in TEACHERS {
            let w = kind.published_weights().unwrap_or_else(|| panic!("{kind}"));
            assert_eq!(ModelKind::from_torchvision_file_name(w.file_name), Some(kind));
        }
        assert!(ModelKind::Mbv3sTiny.published_weights().is_none());
        assert_eq!(
            ModelKind::DeeplabV3Mbv3l.published_weights().map(|w| w.file_name),
            Some("deeplabv3_mobilenet_v3_large-fc3c493d.pth")
        );
    }
}
