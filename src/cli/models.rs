//! `segdistill models`: the model registry with parameter counts and distillation taps.

use std::process::ExitCode;

use candle_core::Device;
use candle_nn::VarMap;

use crate::model::weights::init::seeded_var_builder;
use crate::model::{Model, ModelKind, count_params, format_params};

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// Number of classes (21 = VOC, 19 = Cityscapes).
    #[arg(long, default_value_t = 21)]
    pub classes: usize,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    println!("{:<20} {:>10}  feature taps (channels @ stride)", "model", "parameters");
    for kind in ModelKind::ALL {
        // The teacher is counted as torchvision publishes it, with its auxiliary head.
        let aux = kind.has_aux_head();
        let varmap = VarMap::new();
        let model = Model::new(kind, seeded_var_builder(&varmap, 0, &Device::Cpu), args.classes, aux)?;
        let params = {
            let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
            count_params(vars.iter().map(|(k, v)| (k.as_str(), v.elem_count())))
        };
        let taps: Vec<String> =
            model.feature_taps().iter().map(|f| format!("{} {}@{}", f.name, f.channels, f.stride)).collect();
        let note = if aux { " (with the aux head)" } else { "" };
        println!("{:<20} {:>10}  {}{note}", kind.name(), format_params(params), taps.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
