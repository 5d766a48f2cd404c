//! The Train tab's Distillation section: the loss as a list of terms, each with a checkbox, its
//! weight and its τ where it has one (defaults pre-filled from the term table), and the
//! `--distill` presets as buttons that fill the list.
//!
//! What the list becomes is what the command line would make of it: a list shaped like a preset
//! (`ce`, with `response` and/or `feature`) is that preset with its weights, as
//! `--distill <preset> --alpha … --beta … --tau … --gamma …` gives; any other list is a term
//! list, as `--loss <list>` gives.

use egui::Ui;
use serde::{Deserialize, Serialize};

use crate::distill::loss_terms::{LossTerms, TermKind, TermSpec};
use crate::distill::{DistillMode, KdForm, LossConfig};
use crate::train::config::LIMITS;

/// One term of the form: ticked or not, its weight and (where it has one) its τ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TermRow {
    pub kind: TermKind,
    pub on: bool,
    pub weight: f64,
    /// `None` for terms without a temperature.
    pub tau: Option<f64>,
}

/// The Distillation section's state: every term, in [`TermKind::ALL`]'s order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TermsForm {
    #[serde(deserialize_with = "every_row")]
    pub rows: Vec<TermRow>,
    /// How the `response` term measures the difference (`--kd-form`).
    pub kd_form: KdForm,
}

/// The largest weight the form offers (a hundred times `at`'s default).
const WEIGHT_MAX: f64 = 1e6;

const PRESETS: [DistillMode; 4] =
    [DistillMode::None, DistillMode::Response, DistillMode::Feature, DistillMode::Combined];

/// The temperature a row starts with: the term's default, `response`'s the preset τ.
fn default_tau(kind: TermKind, loss: &LossConfig) -> Option<f64> {
    match kind {
        TermKind::Response => Some(loss.tau),
        k => k.default_tau(),
    }
}

/// The saved rows, with a default row added for every term they lack (settings saved by a
/// version that had fewer terms).
fn every_row<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<TermRow>, D::Error> {
    let saved = Vec::<TermRow>::deserialize(d)?;
    let defaults = TermsForm::default().rows;
    Ok(defaults.into_iter().map(|row| saved.iter().find(|s| s.kind == row.kind).cloned().unwrap_or(row)).collect())
}

impl Default for TermsForm {
    /// The default run's preset ticked; every term's default weight and τ filled in.
    fn default() -> Self {
        let c = crate::train::TrainConfig::default();
        let rows = TermKind::ALL
            .into_iter()
            .map(|kind| TermRow { kind, on: false, weight: kind.default_weight(), tau: default_tau(kind, &c.loss) })
            .collect();
        let mut form = Self { rows, kd_form: c.loss.kd_form };
        form.apply_preset(c.distill);
        form
    }
}

impl TermsForm {
    /// A form holding `mode`'s preset.
    pub fn preset(mode: DistillMode) -> Self {
        let mut form = Self::default();
        form.apply_preset(mode);
        form
    }

    /// Ticks exactly the terms of `mode`'s preset, with the preset's default weights and τ.
    pub fn apply_preset(&mut self, mode: DistillMode) {
        let loss = LossConfig::default();
        let preset = LossTerms::preset(mode, &loss);
        for row in &mut self.rows {
            row.on = false;
            if let Some(spec) = preset.0.iter().find(|s| s.kind == row.kind) {
                row.on = true;
                row.weight = spec.weight;
                row.tau = default_tau(row.kind, &loss);
            }
        }
    }

    /// The row of `kind`, if the form has it.
    pub fn row_mut(&mut self, kind: TermKind) -> Option<&mut TermRow> {
        self.rows.iter_mut().find(|r| r.kind == kind)
    }

    fn ticked(&self) -> impl Iterator<Item = &TermRow> {
        self.rows.iter().filter(|r| r.on)
    }

    /// The preset the ticked terms form, if they form one.
    pub fn as_preset(&self) -> Option<DistillMode> {
        let kinds: Vec<TermKind> = self.ticked().map(|r| r.kind).collect();
        PRESETS.into_iter().find(|&m| {
            let preset: Vec<TermKind> = LossTerms::preset(m, &LossConfig::default()).0.iter().map(|s| s.kind).collect();
            preset == kinds
        })
    }

    /// The ticked terms as a `--loss` list (a τ equal to the term's default left out, as a list
    /// typed without it).
    pub fn terms(&self) -> LossTerms {
        LossTerms(
            self.ticked()
                .map(|r| {
                    let tau = match r.kind {
                        TermKind::Response => r.tau,
                        k => r.tau.filter(|t| Some(*t) != k.default_tau()),
                    };
                    TermSpec { tau, ..TermSpec::new(r.kind, r.weight) }
                })
                .collect(),
        )
    }

    /// The run's `distill`, its loss weights, and its term list (`None`: the preset).
    pub fn to_loss(&self) -> (DistillMode, LossConfig, Option<LossTerms>) {
        let mut loss = LossConfig { kd_form: self.kd_form, ..LossConfig::default() };
        match self.as_preset() {
            Some(mode) => {
                for r in self.ticked() {
                    match r.kind {
                        TermKind::Ce => loss.alpha = r.weight,
                        TermKind::Response => (loss.beta, loss.tau) = (r.weight, r.tau.unwrap_or(loss.tau)),
                        TermKind::Feature => loss.gamma = r.weight,
                        _ => {}
                    }
                }
                (mode, loss, None)
            }
            None => (crate::train::TrainConfig::default().distill, loss, Some(self.terms())),
        }
    }

    pub fn needs_teacher(&self) -> bool {
        self.ticked().any(|r| r.kind != TermKind::Ce)
    }

    /// Names the distillation in run names and messages: the preset's name, else the terms
    /// joined by `-` (as the command line names a `--loss` run's folder).
    pub fn label(&self) -> String {
        match self.as_preset() {
            Some(mode) => mode.name().to_string(),
            None => self.ticked().map(|r| r.kind.name()).collect::<Vec<_>>().join("-"),
        }
    }

    /// The preset buttons, then one row per term.
    pub fn ui(&mut self, ui: &mut Ui) {
        let current = self.as_preset();
        ui.horizontal(|ui| {
            ui.label("preset");
            for mode in PRESETS {
                if ui.selectable_label(current == Some(mode), mode.name()).clicked() {
                    self.apply_preset(mode);
                }
            }
        });
        egui::Grid::new("loss_terms_grid").num_columns(3).show(ui, |ui| {
            ui.label("term");
            ui.label("weight");
            ui.label("τ");
            ui.end_row();
            for row in &mut self.rows {
                let name = row.kind.name();
                ui.checkbox(&mut row.on, name).on_hover_text(term_help(row.kind));
                // Term weights span 0.1 (cirkd-region) to 10⁴ (at): the drag speed follows the
                // default's scale, and the range leaves room above the largest default.
                let speed = (row.kind.default_weight() * 0.01).max(0.01);
                let weight = egui::DragValue::new(&mut row.weight).speed(speed).range(0.0..=WEIGHT_MAX);
                ui.add_enabled(row.on, weight).on_hover_text(format!("weight of {name}"));
                match &mut row.tau {
                    Some(tau) => {
                        let drag = egui::DragValue::new(tau).speed(0.05).range(LIMITS.tau);
                        ui.add_enabled(row.on, drag).on_hover_text(format!("τ of {name}"));
                    }
                    None => {
                        ui.label("");
                    }
                }
                ui.end_row();
            }
        });
        ui.add_enabled_ui(self.rows.iter().any(|r| r.on && r.kind == TermKind::Response), |ui| {
            ui.horizontal(|ui| {
                let label = ui.label("response form");
                egui::ComboBox::from_id_salt("kd_form")
                    .selected_text(kd_form_name(self.kd_form))
                    .show_ui(ui, |ui| {
                        for form in [KdForm::SoftCrossEntropy, KdForm::KlDivergence] {
                            ui.selectable_value(&mut self.kd_form, form, kd_form_name(form));
                        }
                    })
                    .response
                    .labelled_by(label.id);
            });
        });
    }
}

fn kd_form_name(form: KdForm) -> &'static str {
    match form {
        KdForm::SoftCrossEntropy => "soft CE (lab)",
        KdForm::KlDivergence => "τ²·KL (Hinton)",
    }
}

/// One line on what a term matches (docs/distillation.md has the rest).
fn term_help(kind: TermKind) -> &'static str {
    match kind {
        TermKind::Ce => "cross-entropy on the labels",
        TermKind::Response => "the lab's response KD on the logits (form below)",
        TermKind::Feature => "1 − cosine over three adapted feature maps",
        TermKind::Kd => "Hinton's τ²·KL on the logits, labelled pixels",
        TermKind::CwdLogits => "channel-wise distillation of the logits (Shu et al. 2021)",
        TermKind::CwdFeatures => "channel-wise distillation of the last feature map",
        TermKind::Pairwise => "pairwise similarity of pooled feature nodes (Liu et al. 2019)",
        TermKind::Ifvd => "each pixel's cosine to its class prototype (Wang et al. 2020)",
        TermKind::Cirkd => "pixel-to-pixel relations across the batch's images (Yang et al. 2022)",
        TermKind::CirkdRegion => "pixel-to-region relations against a memory of class regions (Yang et al. 2022)",
        TermKind::At => "attention transfer (Zagoruyko & Komodakis 2017)",
        TermKind::Fitnet => "adapted feature map, mean squared error (Romero et al. 2015)",
        TermKind::Dist => "inter- and intra-class Pearson correlation (Huang et al. 2022)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_give_the_preset_and_other_lists_a_term_list() {
        for mode in PRESETS {
            let (distill, loss, terms) = TermsForm::preset(mode).to_loss();
            assert_eq!((distill, terms), (mode, None), "{mode:?}");
            assert_eq!(loss, LossConfig::default(), "{mode:?}: the preset's default weights");
        }
        let mut form = TermsForm::preset(DistillMode::None);
        form.row_mut(TermKind::CwdLogits).unwrap().on = true;
        form.row_mut(TermKind::Kd).unwrap().on = true;
        form.row_mut(TermKind::Kd).unwrap().tau = Some(2.0);
        let (_, _, terms) = form.to_loss();
        let typed: LossTerms = "ce=1,kd=1:tau=2,cwd-logits=3".parse().unwrap();
        assert_eq!(terms, Some(typed), "what --loss gives for the same list");
        assert_eq!(form.label(), "ce-kd-cwd-logits");
        assert!(form.needs_teacher() && !TermsForm::preset(DistillMode::None).needs_teacher());
    }

    #[test]
    fn settings_saved_without_some_term_still_load_every_row() {
        let form: TermsForm = serde_json::from_str("{}").unwrap();
        assert_eq!(form, TermsForm::default());
        let old = r#"{"rows": [{"kind": "ce", "on": true, "weight": 2.0, "tau": null}]}"#;
        let form: TermsForm = serde_json::from_str(old).unwrap();
        assert_eq!(form.rows.len(), TermKind::ALL.len());
        assert_eq!(form.rows[0].weight, 2.0, "the saved row is kept");
    }
}
