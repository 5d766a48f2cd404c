//! The main window. For now a placeholder with the app's tabs; the tabs fill in as the engine lands.

use eframe::egui;

/// The tabs of the main window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Train,
    Runs,
    Browse,
}

impl Tab {
    pub const ALL: [Tab; 3] = [Tab::Train, Tab::Runs, Tab::Browse];

    pub fn label(self) -> &'static str {
        match self {
            Tab::Train => "Train",
            Tab::Runs => "Runs",
            Tab::Browse => "Browse",
        }
    }
}

#[derive(Default)]
pub struct SegdistillApp {
    tab: Tab,
}

impl SegdistillApp {
    pub fn new(_cc: &eframe::CreationContext<'_>) -> Self {
        Self::default()
    }
}

impl eframe::App for SegdistillApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("segdistill");
                ui.separator();
                for tab in Tab::ALL {
                    ui.selectable_value(&mut self.tab, tab, tab.label());
                }
            });
        });
        egui::CentralPanel::default().show(ui, |ui| {
            ui.label(format!("{} — coming soon.", self.tab.label()));
        });
    }
}
