//! The Train tab's curve plots and the series each one draws from the run on screen: defined
//! once, for the plots themselves and for their PNG/CSV exports.

use egui::Color32;

use super::LiveRun;
use crate::train::events::{EvalMetrics, StepMetrics};
use crate::ui::plots::{Series, XAxis};

/// One of the Train tab's curve plots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LivePlot {
    /// The training loss and its parts, per step.
    Loss,
    ValLoss,
    /// mIoU and pixel accuracy, per epoch.
    Miou,
}

impl LivePlot {
    pub fn x(self) -> XAxis {
        match self {
            Self::Loss => XAxis::Step,
            Self::ValLoss | Self::Miou => XAxis::Epoch,
        }
    }

    pub fn y_label(self) -> &'static str {
        match self {
            Self::Loss => "training loss",
            Self::ValLoss => "val loss",
            Self::Miou => "val mIoU",
        }
    }

    /// The plot's part of an exported file's name (`<run>-<stem>.png`).
    pub fn file_stem(self) -> &'static str {
        match self {
            Self::Loss => "loss",
            Self::ValLoss => "val_loss",
            Self::Miou => "miou",
        }
    }

    /// Whether the plot applies the smoothing slider (the per-epoch curves are drawn raw).
    pub fn smoothed(self) -> bool {
        self == Self::Loss
    }
}

impl LiveRun {
    /// The series `plot` draws, as the run stands.
    pub fn series(&self, plot: LivePlot) -> Vec<Series> {
        match plot {
            LivePlot::Loss => {
                let steps = &self.steps;
                let series = |name: &str, color: Color32, f: &dyn Fn(&StepMetrics) -> Option<f64>| {
                    Series::new(name, steps.iter().filter_map(|s| f(s).map(|v| [s.step as f64, v])).collect(), color)
                };
                let losses = [
                    series("total", Color32::from_rgb(31, 119, 180), &|s| Some(s.loss)),
                    series("CE", Color32::from_rgb(255, 127, 14), &|s| Some(s.ce)),
                    series("KD", Color32::from_rgb(44, 160, 44), &|s| s.kd),
                    series("feature", Color32::from_rgb(214, 39, 40), &|s| s.feature),
                ];
                // Without distillation the total is the CE: one line, not two on top of each other.
                let distilled = losses[2..].iter().any(|s| !s.points.is_empty());
                losses.into_iter().filter(|s| s.name == "total" || (distilled && !s.points.is_empty())).collect()
            }
            LivePlot::ValLoss => {
                vec![Series::new("val loss", self.per_epoch(&|e| e.val_loss), Color32::from_rgb(148, 103, 189))]
            }
            LivePlot::Miou => vec![
                Series::new("mIoU", self.per_epoch(&|e| e.miou), Color32::from_rgb(31, 119, 180)),
                Series::new("pixel accuracy", self.per_epoch(&|e| e.pixel_acc), Color32::from_rgb(127, 127, 127)),
            ],
        }
    }

    fn per_epoch(&self, f: &dyn Fn(&EvalMetrics) -> f64) -> Vec<[f64; 2]> {
        self.evals.iter().map(|e| [(e.epoch + 1) as f64, f(e)]).collect()
    }
}
