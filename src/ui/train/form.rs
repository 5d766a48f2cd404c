//! The Train tab's form: data and weights, student, distillation and optimisation settings.

use egui::Ui;

use super::recipe_estimate::{RecipeEstimate, RecipeShape, recipe_hover};
use super::{TrainTab, teacher_recipe};
use crate::model::{ModelKind, format_params};
use crate::train::config::{LIMITS, OptimizerKind, ScheduleKind};
use crate::ui::commands::{Command, CommandQueue};
use crate::ui::data_panel::DataPanel;
use crate::ui::state::AppState;
use crate::ui::widgets::section;
use crate::util::device::{CUDA_BUILT, DeviceChoice};

impl TrainTab {
    pub(super) fn form_ui(
        &mut self,
        ui: &mut Ui,
        state: &mut AppState,
        data: &mut DataPanel,
        commands: &mut CommandQueue,
    ) {
        let editable = !self.is_running();
        section(ui, "Data");
        ui.add_enabled_ui(editable, |ui| data.ui(ui, state, commands));
        section(ui, "Weights");
        let teacher_needed = state.train.config.needs_teacher();
        ui.add_enabled_ui(editable, |ui| data.weights_ui(ui, state, teacher_needed, commands));
        train_teacher_ui(ui, state, data, editable, &mut self.recipe_estimate, commands);
        ui.add_enabled_ui(editable, |ui| {
            let crate::ui::state::TrainForm { config: f, terms, .. } = &mut state.train;
            section(ui, "Student");
            ui.horizontal(|ui| {
                let label = ui.label("model");
                egui::ComboBox::from_id_salt("model")
                    .selected_text(f.model.name())
                    .show_ui(ui, |ui| {
                        for k in ModelKind::STUDENTS {
                            ui.selectable_value(&mut f.model, k, k.name());
                        }
                    })
                    .response
                    .labelled_by(label.id);
                if let Some(n) = self.params.get(&f.model) {
                    ui.label(format!("{} parameters", format_params(*n)));
                }
            });

            section(ui, "Distillation");
            // The term list is the loss: the configuration follows it as it is edited.
            terms.ui(ui);
            (f.distill, f.loss, f.loss_terms) = terms.to_loss();

            unlabeled_ui(ui, f);

            section(ui, "Optimisation");
            egui::Grid::new("optim_grid").num_columns(2).show(ui, |ui| {
                let label = ui.label("epochs");
                ui.add(egui::DragValue::new(&mut f.epochs).range(LIMITS.epochs)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("batch");
                ui.add(egui::DragValue::new(&mut f.batch).range(LIMITS.batch)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("crop size");
                ui.add(egui::DragValue::new(&mut f.size).range(LIMITS.size).speed(8)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("learning rate");
                ui.add(egui::DragValue::new(&mut f.optimizer.lr).speed(1e-4).range(1e-6..=1.0).max_decimals(6))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("optimiser");
                let mut optimizer = f.optimizer.kind;
                egui::ComboBox::from_id_salt("optimizer")
                    .selected_text(format!("{:?}", f.optimizer.kind))
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut optimizer, OptimizerKind::Adamw, "Adamw");
                        ui.selectable_value(&mut optimizer, OptimizerKind::Sgd, "Sgd");
                    })
                    .response
                    .labelled_by(label.id);
                if optimizer != f.optimizer.kind {
                    f.optimizer.set_kind(optimizer);
                }
                ui.end_row();
                let label = ui.label("schedule");
                egui::ComboBox::from_id_salt("schedule")
                    .selected_text(format!("{:?}", f.schedule.kind))
                    .show_ui(ui, |ui| {
                        for s in [
                            ScheduleKind::Poly,
                            ScheduleKind::Cosine,
                            ScheduleKind::Step,
                            ScheduleKind::Plateau,
                            ScheduleKind::Constant,
                        ] {
                            ui.selectable_value(&mut f.schedule.kind, s, format!("{s:?}"));
                        }
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("seed");
                ui.add(egui::DragValue::new(&mut f.seed)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("device");
                egui::ComboBox::from_id_salt("device")
                    .selected_text(format!("{:?}", f.device))
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut f.device, DeviceChoice::Auto, "Auto");
                        ui.selectable_value(&mut f.device, DeviceChoice::Cpu, "Cpu");
                        ui.add_enabled_ui(CUDA_BUILT, |ui| {
                            ui.selectable_value(&mut f.device, DeviceChoice::Cuda, "Cuda")
                        })
                        .response
                        .on_disabled_hover_text("built without CUDA (cargo build --features cuda)");
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
            });
            ui.checkbox(&mut f.class_weights, "class-weighted cross-entropy");
            if f.needs_teacher() {
                ui.checkbox(&mut f.teacher_cache, "cache teacher outputs").on_hover_text(
                    "Run the teacher once per training image before the first step and reuse its outputs (cut to \
                     each augmented crop) every epoch: distillation then costs about what training without it costs.",
                );
            }
            ui.horizontal(|ui| {
                let label = ui.label("run name");
                ui.add(egui::TextEdit::singleline(&mut f.name).hint_text("auto").desired_width(160.0))
                    .labelled_by(label.id);
            });
        });
    }
}

/// Offered where a dataset has no competent teacher yet: the demo dataset, or a teacher that
/// scores near chance. Its hover says what the recipe trains (its own crop and schedule, not the
/// form's) and how long that takes on this machine, measured in the background.
fn train_teacher_ui(
    ui: &mut Ui,
    state: &AppState,
    data: &DataPanel,
    editable: bool,
    estimate: &mut RecipeEstimate,
    commands: &mut CommandQueue,
) {
    let Some(info) = data.usable() else { return };
    let weak_teacher = data.teacher_panel.quality().is_some_and(|q| q.near_chance());
    let no_teacher = !state.train.teacher_path().is_some_and(|p| p.is_file());
    if !(info.is_demo || weak_teacher || no_teacher && state.train.config.needs_teacher()) {
        return;
    }
    let recipe = teacher_recipe(state, info);
    // Measured only while nothing trains: a run would both slow the timing and be slowed by it.
    let timing =
        if editable { estimate.timing(ui.ctx(), &RecipeShape::of(&recipe, info.classes.names.len())) } else { None };
    let hover = recipe_hover(&recipe, info.train, info.val, timing);
    if ui.add_enabled(editable, egui::Button::new("Train a teacher for this dataset")).on_hover_text(hover).clicked() {
        commands.push(Command::TrainTeacher);
    }
}

/// Distillation on images without masks: a split of the dataset (`unlabeled`: its images that
/// have no mask) or a folder of images, and how many of them join each batch.
fn unlabeled_ui(ui: &mut Ui, f: &mut crate::train::TrainConfig) {
    ui.add_enabled_ui(f.needs_teacher(), |ui| {
        let mut on = f.unlabeled.is_some();
        ui.horizontal(|ui| {
            let hover = "Images without masks join each batch; the teacher labels them and only the distillation \
                         terms learn from them (cross-entropy skips them). `unlabeled` is the dataset's images that \
                         have no mask (the demo data has 450); or give a folder of images.";
            if ui.checkbox(&mut on, "also distil on images without masks").on_hover_text(hover).changed() {
                f.unlabeled = on.then(|| crate::data::unlabeled::SPLIT.to_string());
            }
        });
        if let Some(spec) = &mut f.unlabeled {
            ui.horizontal(|ui| {
                let label = ui.label("images");
                ui.add(egui::TextEdit::singleline(spec).hint_text("split or folder").desired_width(140.0))
                    .labelled_by(label.id);
                let label = ui.label("per labelled image");
                ui.add(egui::DragValue::new(&mut f.unlabeled_ratio).speed(0.05).range(LIMITS.unlabeled_ratio))
                    .labelled_by(label.id);
            });
        }
    })
    .response
    .on_disabled_hover_text("images without masks teach through the teacher: choose a distillation first");
}
