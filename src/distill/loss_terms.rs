//! A loss as a list of weighted terms (`--loss ce=1,kd=0.5,cwd-logits=3`), and the learned parts
//! some terms need (1×1 adapters), evaluated by [`TermsDistiller::loss`].
//!
//! Syntax: comma-separated `name=weight`, each optionally followed by `:key=value` options:
//! `tau` (temperature of `kd`, `cwd-*`, `cirkd`, `dist`), `beta` / `gamma` (`dist`'s inter- and
//! intra-class weights), `scale` (`pairwise`'s pooling window as a share of the map). A term named
//! without `=weight` takes its default weight (see [`TermKind::default_weight`]).

use std::fmt;
use std::str::FromStr;

use candle_core::{Module as _, Result, Tensor, Var};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::cirkd_region::{self, RegionMemory};
use super::feature::pairs_for;
use super::{DistillMode, LossConfig, Target, TeacherSignal, ce, kd, terms};
use crate::model::layers::{Conv2d, ConvOpts};
use crate::model::ops::resize_bilinear;
use crate::model::{FeatureTap, SegOutput};

/// One kind of loss term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TermKind {
    /// Cross-entropy on the labels (void ignored).
    Ce,
    /// The `--distill response` term: KD on the logits in `--kd-form`, averaged as `--kd-labelled-only`.
    Response,
    /// The `--distill feature` term: 1 − cosine over three adapted feature pairs.
    Feature,
    /// Hinton's τ²·KL on the logits over labelled pixels.
    Kd,
    CwdLogits,
    CwdFeatures,
    Pairwise,
    Ifvd,
    /// CIRKD's pixel-to-pixel relations across the batch's images.
    Cirkd,
    /// CIRKD's pixel-to-region relations against the memory of class regions.
    CirkdRegion,
    At,
    Fitnet,
    Dist,
}

impl TermKind {
    pub const ALL: [TermKind; 13] = [
        Self::Ce,
        Self::Response,
        Self::Feature,
        Self::Kd,
        Self::CwdLogits,
        Self::CwdFeatures,
        Self::Pairwise,
        Self::Ifvd,
        Self::Cirkd,
        Self::CirkdRegion,
        Self::At,
        Self::Fitnet,
        Self::Dist,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ce => "ce",
            Self::Response => "response",
            Self::Feature => "feature",
            Self::Kd => "kd",
            Self::CwdLogits => "cwd-logits",
            Self::CwdFeatures => "cwd-features",
            Self::Pairwise => "pairwise",
            Self::Ifvd => "ifvd",
            Self::Cirkd => "cirkd",
            Self::CirkdRegion => "cirkd-region",
            Self::At => "at",
            Self::Fitnet => "fitnet",
            Self::Dist => "dist",
        }
    }

    /// The weight a term takes when named without one, from its reference recipe
    /// (docs/distillation.md says where each comes from).
    pub fn default_weight(self) -> f64 {
        match self {
            Self::Ce | Self::Kd | Self::Dist | Self::Cirkd => 1.0,
            Self::Response => 0.5,
            Self::Feature => 0.3,
            Self::CwdLogits => 3.0,
            Self::CwdFeatures => 50.0,
            Self::Pairwise => 0.5,
            Self::Ifvd => 20.0,
            Self::CirkdRegion => 0.1,
            Self::At => 10_000.0,
            Self::Fitnet => 10.0,
        }
    }

    /// The default temperature of the terms that have one.
    pub fn default_tau(self) -> Option<f64> {
        match self {
            Self::Kd | Self::CwdLogits | Self::CwdFeatures => Some(4.0),
            Self::Cirkd | Self::CirkdRegion => Some(super::cirkd_region::DEFAULT_TAU),
            Self::Dist => Some(1.0),
            _ => None,
        }
    }

    /// Reads the teacher's logits.
    pub fn uses_logits(self) -> bool {
        matches!(self, Self::Response | Self::Kd | Self::CwdLogits | Self::Dist)
    }

    /// Reads one of the teacher's feature maps (the last: `layer4` of FCN, `high` of a student-type network).
    pub fn uses_last_feature(self) -> bool {
        matches!(
            self,
            Self::CwdFeatures | Self::Pairwise | Self::Ifvd | Self::Cirkd | Self::CirkdRegion | Self::At | Self::Fitnet
        )
    }

    /// Has a learned 1×1 adapter from the student's channels to the teacher's.
    pub fn has_adapter(self) -> bool {
        matches!(self, Self::CwdFeatures | Self::Fitnet | Self::CirkdRegion)
    }

    /// Keeps training state besides weights (`cirkd-region`'s memory of class regions).
    pub fn has_memory(self) -> bool {
        self == Self::CirkdRegion
    }
}

impl FromStr for TermKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("no loss term `{s}`; the terms: {}", Self::ALL.map(|k| k.name()).join(", ")))
    }
}

/// One term with its weight and options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TermSpec {
    pub kind: TermKind,
    pub weight: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
}

impl TermSpec {
    pub fn new(kind: TermKind, weight: f64) -> Self {
        Self { kind, weight, tau: None, beta: None, gamma: None, scale: None }
    }

    pub fn tau(&self) -> f64 {
        self.tau.or(self.kind.default_tau()).unwrap_or(1.0)
    }
}

impl fmt::Display for TermSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind.name(), self.weight)?;
        for (k, v) in [("tau", self.tau), ("beta", self.beta), ("gamma", self.gamma), ("scale", self.scale)] {
            if let Some(v) = v {
                write!(f, ":{k}={v}")?;
            }
        }
        Ok(())
    }
}

/// The terms of a loss, in the order given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LossTerms(pub Vec<TermSpec>);

impl LossTerms {
    /// The term list a `--distill` preset stands for, with the weights of `cfg`.
    pub fn preset(mode: DistillMode, cfg: &LossConfig) -> Self {
        let mut t = vec![TermSpec::new(TermKind::Ce, cfg.alpha)];
        if mode.uses_logits() {
            t.push(TermSpec { tau: Some(cfg.tau), ..TermSpec::new(TermKind::Response, cfg.beta) });
        }
        if mode.uses_features() {
            t.push(TermSpec::new(TermKind::Feature, cfg.gamma));
        }
        Self(t)
    }

    pub fn has(&self, kind: TermKind) -> bool {
        self.0.iter().any(|t| t.kind == kind)
    }

    pub fn uses_logits(&self) -> bool {
        self.0.iter().any(|t| t.kind.uses_logits())
    }

    /// Reads the teacher's feature maps (three pairs for `feature`, the last map for the others).
    pub fn uses_features(&self) -> bool {
        self.0.iter().any(|t| t.kind == TermKind::Feature || t.kind.uses_last_feature())
    }

    pub fn needs_teacher(&self) -> bool {
        self.0.iter().any(|t| t.kind != TermKind::Ce)
    }

    /// Weights and options are finite, temperatures and scales positive, no term twice.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.0.is_empty() {
            return Err("the loss has no terms".into());
        }
        for (i, t) in self.0.iter().enumerate() {
            if self.0[..i].iter().any(|u| u.kind == t.kind) {
                return Err(format!("loss term `{}` is given twice", t.kind.name()));
            }
            if !t.weight.is_finite() || t.weight < 0.0 {
                return Err(format!("loss term `{}`: weight {} is not a non-negative number", t.kind.name(), t.weight));
            }
            for (k, v) in [("tau", t.tau), ("scale", t.scale)] {
                if let Some(v) = v
                    && !(v.is_finite() && v > 0.0)
                {
                    return Err(format!("loss term `{}`: {k} must be a positive number", t.kind.name()));
                }
            }
            if t.scale.is_some_and(|s| s > 1.0) {
                return Err(format!("loss term `{}`: scale is a share of the map, at most 1", t.kind.name()));
            }
            for (k, v) in [("beta", t.beta), ("gamma", t.gamma)] {
                if v.is_some_and(|v| !v.is_finite()) {
                    return Err(format!("loss term `{}`: {k} must be a number", t.kind.name()));
                }
            }
            let allowed: &[&str] = match t.kind {
                TermKind::Dist => &["tau", "beta", "gamma"],
                TermKind::Pairwise => &["scale"],
                k if k.default_tau().is_some() || k == TermKind::Response => &["tau"],
                _ => &[],
            };
            for (k, v) in [("tau", t.tau), ("beta", t.beta), ("gamma", t.gamma), ("scale", t.scale)] {
                if v.is_some() && !allowed.contains(&k) {
                    return Err(format!("loss term `{}` has no option `{k}`", t.kind.name()));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for LossTerms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|t| t.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for LossTerms {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut terms = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let mut parts = item.split(':');
            let head = parts.next().unwrap_or_default();
            let (name, weight) = match head.split_once('=') {
                Some((n, w)) => (n.trim(), Some(w.trim())),
                None => (head.trim(), None),
            };
            let kind: TermKind = name.parse()?;
            let weight = match weight {
                Some(w) => w.parse::<f64>().map_err(|_| format!("loss term `{name}`: weight `{w}` is not a number"))?,
                None => kind.default_weight(),
            };
            let mut spec = TermSpec::new(kind, weight);
            for opt in parts {
                let (k, v) = opt
                    .split_once('=')
                    .ok_or_else(|| format!("loss term `{name}`: option `{opt}` is not key=value"))?;
                let v: f64 = v.trim().parse().map_err(|_| format!("loss term `{name}`: `{opt}` is not a number"))?;
                match k.trim() {
                    "tau" => spec.tau = Some(v),
                    "beta" => spec.beta = Some(v),
                    "gamma" => spec.gamma = Some(v),
                    "scale" => spec.scale = Some(v),
                    other => {
                        return Err(format!("loss term `{name}`: unknown option `{other}` (tau, beta, gamma, scale)"));
                    }
                }
            }
            terms.push(spec);
        }
        let terms = Self(terms);
        terms.validate()?;
        Ok(terms)
    }
}

/// The adapters of the terms that have one, and the feature pair the single-map terms read.
#[derive(Clone, Debug)]
pub struct TermsDistiller {
    terms: LossTerms,
    /// (student tap, teacher map) of the single-map feature terms.
    last_pair: (&'static str, &'static str),
    adapters: Vec<(TermKind, Conv2d)>,
    /// The three-pair cosine feature KD, when `feature` is a term.
    feature: Option<super::FeatureDistiller>,
    /// `cirkd-region`'s memory, when it is a term.
    memory: Option<MemoryVars>,
    classes: usize,
}

/// The region memory held as variables beside the adapters (`terms.cirkd-region.{memory, next,
/// filled}`), so that checkpoints save and restore it with them and a resumed run goes on with the
/// same memory. They never get a gradient (the loss reads a detached copy), so the optimiser,
/// which updates only what has one, leaves them alone.
#[derive(Clone, Debug)]
struct MemoryVars {
    embeddings: Var,
    next: Var,
    filled: Var,
}

impl MemoryVars {
    fn new(vb: VarBuilder, classes: usize, dim: usize) -> Result<Self> {
        let slots = cirkd_region::default_slots(classes);
        let var = |name: &str, shape: &[usize]| -> Result<Var> {
            Var::from_tensor(&vb.get_with_hints(shape, name, candle_nn::Init::Const(0.0))?)
        };
        Ok(Self {
            embeddings: var("memory", &[classes, slots, dim])?,
            next: var("next", &[classes])?,
            filled: var("filled", &[classes])?,
        })
    }

    /// Writes the batch's regions and returns every region the memory holds.
    fn update(&self, teacher: &Tensor, labels: &[u8]) -> Result<Option<Tensor>> {
        let mut memory = RegionMemory::from_tensors(&self.embeddings, &self.next, &self.filled)?;
        memory.enqueue(teacher, labels)?;
        let [e, n, f] = memory.to_tensors(self.embeddings.device())?;
        self.embeddings.set(&e)?;
        self.next.set(&n)?;
        self.filled.set(&f)?;
        memory.regions(teacher.device())
    }
}

impl TermsDistiller {
    /// Adapters under `terms.<term>` (and `adapters.<tap>` for `feature`) in `vb`, and the memory
    /// of `cirkd-region` (for `classes` classes) under `terms.cirkd-region`.
    pub fn new(
        terms: LossTerms,
        vb: VarBuilder,
        student: &[FeatureTap],
        teacher: &[FeatureTap],
        classes: usize,
    ) -> Result<Self> {
        let last_pair = pairs_for(teacher)[2];
        let find = |taps: &[FeatureTap], name: &str, who: &str| -> Result<FeatureTap> {
            taps.iter().find(|t| t.name == name).cloned().ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "the feature loss terms need {who} map `{name}`, which it does not have"
                ))
            })
        };
        let mut adapters = Vec::new();
        let mut memory = None;
        if terms.0.iter().any(|t| t.kind.uses_last_feature()) {
            let (s, t) = (find(student, last_pair.0, "the student's")?, find(teacher, last_pair.1, "the teacher's")?);
            if terms.0.iter().any(|t| t.kind.has_memory()) {
                memory = Some(MemoryVars::new(vb.pp("terms").pp(TermKind::CirkdRegion.name()), classes, t.channels)?);
            }
            for spec in terms.0.iter().filter(|t| t.kind.has_adapter()) {
                let conv = Conv2d::new(
                    vb.pp("terms").pp(spec.kind.name()),
                    s.channels,
                    t.channels,
                    1,
                    ConvOpts { bias: true, ..Default::default() },
                )?;
                adapters.push((spec.kind, conv));
            }
        }
        let feature = match terms.has(TermKind::Feature) {
            true => Some(super::FeatureDistiller::new(vb, student, teacher)?),
            false => None,
        };
        Ok(Self { terms, last_pair, adapters, feature, memory, classes })
    }

    /// The teacher maps the terms read.
    pub fn teacher_maps(&self) -> Vec<&'static str> {
        let mut maps = self.feature.as_ref().map(|f| f.teacher_maps()).unwrap_or_default();
        if self.terms.0.iter().any(|t| t.kind.uses_last_feature()) && !maps.contains(&self.last_pair.1) {
            maps.push(self.last_pair.1);
        }
        maps
    }

    pub fn terms(&self) -> &LossTerms {
        &self.terms
    }

    /// Each term's unweighted value, in the order of the list, and Σ weight·value (with the
    /// auxiliary head's cross-entropy, weighted as in [`super::total_loss`]).
    /// With `cirkd-region`, the batch's regions are written into the memory first: call this once
    /// per training step (a step skipped for a non-finite loss has still written them; they come
    /// from the teacher alone).
    pub fn loss(
        &self,
        cfg: &LossConfig,
        student: &SegOutput,
        teacher: Option<&TeacherSignal>,
        target: &Target,
    ) -> Result<(Tensor, Vec<(TermKind, Tensor)>)> {
        let no_teacher = || candle_core::Error::Msg("a distillation term without the teacher's signal".into());
        let logits = || teacher.and_then(|t| t.logits).ok_or_else(no_teacher);
        let last = || -> Result<(Tensor, Tensor)> {
            let (s_name, t_name) = self.last_pair;
            let s = student
                .feature(s_name)
                .ok_or_else(|| candle_core::Error::Msg(format!("student has no `{s_name}` features")))?;
            let t = teacher
                .ok_or_else(no_teacher)?
                .features
                .iter()
                .find(|(n, _)| *n == t_name)
                .map(|(_, t)| t)
                .ok_or_else(|| candle_core::Error::Msg(format!("teacher has no `{t_name}` features")))?;
            let (_, _, h, w) = s.dims4()?;
            Ok((s.clone(), resize_bilinear(&t.detach(), h, w)?))
        };
        let adapter = |k: TermKind| -> Result<&Conv2d> {
            self.adapters
                .iter()
                .find(|(a, _)| *a == k)
                .map(|(_, c)| c)
                .ok_or_else(|| candle_core::Error::Msg(format!("no adapter for `{}`", k.name())))
        };
        let mut total: Option<Tensor> = None;
        let mut parts = Vec::new();
        for spec in &self.terms.0 {
            let tau = spec.tau();
            let value = match spec.kind {
                TermKind::Ce => ce::cross_entropy(&student.logits, target)?,
                TermKind::Response => {
                    kd::response_kd(&student.logits, logits()?, tau, cfg.kd_form, cfg.kd_average, Some(target))?
                }
                TermKind::Feature => match (&self.feature, teacher) {
                    (Some(f), Some(t)) => f.loss(student, t.features)?,
                    _ => return Err(no_teacher()),
                },
                TermKind::Kd => terms::kd(&student.logits, logits()?, tau, target)?,
                TermKind::CwdLogits => terms::cwd(&student.logits, logits()?, tau)?,
                TermKind::Dist => {
                    terms::dist(&student.logits, logits()?, tau, spec.beta.unwrap_or(1.0), spec.gamma.unwrap_or(1.0))?
                }
                TermKind::CwdFeatures => {
                    let (s, t) = last()?;
                    terms::cwd(&adapter(spec.kind)?.forward(&s)?, &t, tau)?
                }
                TermKind::Fitnet => {
                    let (s, t) = last()?;
                    terms::fitnet(&adapter(spec.kind)?.forward(&s)?, &t)?
                }
                TermKind::Pairwise => {
                    let (s, t) = last()?;
                    terms::pairwise(&s, &t, spec.scale.unwrap_or(0.5))?
                }
                TermKind::Ifvd => {
                    let (s, t) = last()?;
                    let (_, _, h, w) = s.dims4()?;
                    let classes = student.logits.dim(1)?;
                    terms::ifvd(&s, &t, &terms::labels_nearest(target, h, w)?, classes)?
                }
                TermKind::Cirkd => {
                    let (s, t) = last()?;
                    terms::cirkd_pixel(&s, &t, tau)?
                }
                TermKind::CirkdRegion => {
                    let (s, t) = last()?;
                    let (_, _, h, w) = s.dims4()?;
                    let labels = terms::labels_nearest(target, h, w)?;
                    let memory =
                        self.memory.as_ref().ok_or_else(|| candle_core::Error::Msg("no region memory".into()))?;
                    let regions = memory.update(&t, &labels)?;
                    let s = adapter(spec.kind)?.forward(&s)?;
                    cirkd_region::cirkd_region(&s, &t, &labels, self.classes, regions.as_ref(), tau)?
                }
                TermKind::At => {
                    let (s, t) = last()?;
                    terms::attention_transfer(&s, &t)?
                }
            };
            let weighted = (&value * spec.weight)?;
            total = Some(match total {
                Some(acc) => (acc + weighted)?,
                None => weighted,
            });
            if spec.kind == TermKind::Ce
                && let Some(aux) = &student.aux
                && cfg.aux_weight > 0.0
            {
                let a = (ce::cross_entropy(aux, target)? * (spec.weight * cfg.aux_weight))?;
                total = total.map(|t| t + a).transpose()?;
            }
            parts.push((spec.kind, value));
        }
        let total = total.ok_or_else(|| candle_core::Error::Msg("the loss has no terms".into()))?;
        Ok((total, parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weights_options_and_defaults() {
        let t: LossTerms = "ce=1, kd=0.5:tau=2, cwd-logits, dist=2:beta=1:gamma=2".parse().unwrap();
        assert_eq!(t.0.len(), 4);
        assert_eq!((t.0[1].kind, t.0[1].weight, t.0[1].tau), (TermKind::Kd, 0.5, Some(2.0)));
        assert_eq!((t.0[2].kind, t.0[2].weight, t.0[2].tau()), (TermKind::CwdLogits, 3.0, 4.0));
        assert_eq!((t.0[3].beta, t.0[3].gamma), (Some(1.0), Some(2.0)));
        assert!(t.uses_logits() && !t.uses_features() && t.needs_teacher());
        let again: LossTerms = t.to_string().parse().unwrap();
        assert_eq!(again, t);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<LossTerms>(&json).unwrap(), t);
    }

    #[test]
    fn rejects_unknown_terms_options_and_repeats() {
        for bad in ["ce=1,nope=2", "kd=x", "kd=1:tau=-1", "ce=1,ce=2", "at=1:tau=2", "pairwise=1:scale=2", "", "kd=1:t"]
        {
            assert!(bad.parse::<LossTerms>().is_err(), "{bad:?} parsed");
        }
    }

    /// The region memory lives in the adapters' variables: what a checkpoint saves of them (the
    /// VarMap's tensors) and loads into a fresh distiller continues the same memory.
    #[test]
    fn the_region_memory_round_trips_through_the_adapter_variables() {
        use candle_core::Device;
        let dev = Device::Cpu;
        let taps = |c| vec![FeatureTap { name: "high", channels: c, stride: 8 }];
        let build = |vm: &candle_nn::VarMap| {
            let vb = crate::model::weights::init::seeded_var_builder(vm, 5, &dev);
            TermsDistiller::new("cirkd-region".parse().unwrap(), vb, &taps(4), &taps(6), 3).unwrap()
        };
        let batch = |seed: u64| {
            let s = Tensor::randn(0f32, 1., (2, 4, 3, 3), &dev).unwrap();
            let t = Tensor::randn(0f32, 1., (2, 6, 3, 3), &dev).unwrap().affine(1., seed as f64).unwrap();
            let out = SegOutput {
                logits: Tensor::zeros((2, 3, 3, 3), candle_core::DType::F32, &dev).unwrap(),
                aux: None,
                features: vec![("high", s)],
            };
            (out, t)
        };
        let labels: Vec<u8> = (0..18).map(|i| if i >= 9 { crate::data::VOID } else { (i % 3) as u8 }).collect();
        let target = Target::new(&labels, (2, 3, 3), None, &dev).unwrap();
        let cfg = LossConfig::default();
        let value = |d: &TermsDistiller, (out, t): &(SegOutput, Tensor)| {
            let features = [("high", t.clone())];
            let signal = TeacherSignal { logits: None, features: &features };
            d.loss(&cfg, out, Some(&signal), &target).unwrap().0.to_scalar::<f32>().unwrap()
        };
        let (first, second) = (batch(1), batch(2));
        let vm = candle_nn::VarMap::new();
        let d = build(&vm);
        value(&d, &first);
        let saved: Vec<(String, Tensor)> =
            vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap())).collect();
        let filled = saved.iter().find(|(k, _)| k == "terms.cirkd-region.filled").unwrap();
        assert_eq!(filled.1.to_vec1::<f32>().unwrap(), [1., 1., 1.], "the labelled image wrote one region per class");
        let continued = value(&d, &second);
        let vm2 = candle_nn::VarMap::new();
        let d2 = build(&vm2);
        for (k, t) in &saved {
            vm2.data().lock().unwrap()[k].set(t).unwrap();
        }
        assert_eq!(value(&d2, &second).to_bits(), continued.to_bits(), "a resumed memory gives the same loss");
        let fresh = build(&candle_nn::VarMap::new());
        assert_ne!(value(&fresh, &second), continued, "the memory matters to the loss");
    }

    #[test]
    fn presets_are_term_lists() {
        let cfg = LossConfig::default();
        assert_eq!(LossTerms::preset(DistillMode::None, &cfg).to_string(), "ce=1");
        assert_eq!(LossTerms::preset(DistillMode::Combined, &cfg).to_string(), "ce=1,response=0.5:tau=4,feature=0.3");
    }
}
