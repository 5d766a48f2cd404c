//! A study's optional hyper-parameter axis (`study --vary tau=1,2,4`): every method of the grid is
//! trained at each value, and each (method, value) pair is a cell of its own, named
//! `<method>@<setting><value>` (`ce-kd@tau2`). The no-KD baseline does not depend on any of these
//! settings, so it stays one cell.

use std::fmt;
use std::str::FromStr;

use crate::distill::loss_terms::{LossTerms, TermKind};

/// A setting a study can sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swept {
    /// Images without masks per labelled image; 0 trains on the labelled images alone.
    UnlabeledRatio,
    /// The temperature of every term that has one.
    Tau,
    /// A factor on the weight of every distillation term (`ce` keeps its own): the terms' scales
    /// differ by orders of magnitude (`at` 10⁴, `kd` 1), so one value could not suit them all.
    WeightScale,
}

impl Swept {
    pub const ALL: [Self; 3] = [Self::UnlabeledRatio, Self::Tau, Self::WeightScale];

    pub fn name(self) -> &'static str {
        match self {
            Self::UnlabeledRatio => "unlabeled-ratio",
            Self::Tau => "tau",
            Self::WeightScale => "weight-scale",
        }
    }

    /// `terms` at `value` (the unlabelled ratio is no loss setting: `terms` as given). An error
    /// when the sweep would change nothing in them.
    pub fn terms_at(self, terms: &LossTerms, value: f64) -> Result<LossTerms, String> {
        let mut out = terms.clone();
        let mut changed = false;
        for term in &mut out.0 {
            match self {
                Self::UnlabeledRatio => return Ok(out),
                Self::Tau if term.kind.default_tau().is_some() || term.kind == TermKind::Response => {
                    (term.tau, changed) = (Some(value), true);
                }
                Self::WeightScale if term.kind != TermKind::Ce => (term.weight, changed) = (term.weight * value, true),
                _ => {}
            }
        }
        if !changed {
            let what = if self == Self::Tau { "term with a temperature" } else { "distillation term" };
            return Err(format!("--vary {}: `{terms}` has no {what} to vary", self.name()));
        }
        out.validate().map_err(|e| format!("--vary {}={value}: {e}", self.name()))?;
        Ok(out)
    }
}

/// `--vary SETTING=V1,V2,…`: the setting and its values, in the order given.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    pub setting: Swept,
    pub values: Vec<f64>,
}

impl Sweep {
    /// The cell name of `method_cell` at `value`: `ce-kd@tau2`.
    pub fn cell_name(&self, method_cell: &str, value: f64) -> String {
        format!("{method_cell}@{}{value}", self.setting.name())
    }
}

impl fmt::Display for Sweep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values: Vec<String> = self.values.iter().map(f64::to_string).collect();
        write!(f, "{}={}", self.setting.name(), values.join(","))
    }
}

impl FromStr for Sweep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let names = || Swept::ALL.map(Swept::name).join(", ");
        let (name, list) =
            s.split_once('=').ok_or_else(|| format!("`{s}` is not SETTING=V1,V2,… (settings: {})", names()))?;
        let setting = Swept::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| format!("no setting `{}` to vary; the settings: {}", name.trim(), names()))?;
        let mut values = Vec::new();
        for v in list.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            let value: f64 = v.parse().map_err(|_| format!("--vary {}: `{v}` is not a number", setting.name()))?;
            let allowed = match setting {
                Swept::UnlabeledRatio => value == 0.0 || crate::train::config::LIMITS.unlabeled_ratio.contains(&value),
                Swept::Tau => value.is_finite() && value > 0.0,
                Swept::WeightScale => value.is_finite() && value >= 0.0,
            };
            if !allowed {
                return Err(format!("--vary {}: {value} is out of range", setting.name()));
            }
            if values.contains(&value) {
                return Err(format!("--vary {}: {value} is given twice", setting.name()));
            }
            values.push(value);
        }
        if values.is_empty() {
            return Err(format!("--vary {}: no values", setting.name()));
        }
        Ok(Self { setting, values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_sweep_and_names_its_cells() {
        let sweep: Sweep = "unlabeled-ratio=0,1,2".parse().unwrap();
        assert_eq!((sweep.setting, sweep.values.clone()), (Swept::UnlabeledRatio, vec![0.0, 1.0, 2.0]));
        assert_eq!(sweep.cell_name("ce-dist", 0.5), "ce-dist@unlabeled-ratio0.5");
        assert_eq!(sweep.to_string(), "unlabeled-ratio=0,1,2");
        for bad in ["tau", "temperature=1", "tau=0", "tau=1,1", "unlabeled-ratio=0.01", "weight-scale=-1", "tau="] {
            assert!(bad.parse::<Sweep>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sets_the_temperature_or_the_distillation_weights_and_refuses_a_sweep_that_changes_nothing() {
        let terms: LossTerms = "ce,kd=0.5,fitnet".parse().unwrap();
        assert_eq!(Swept::Tau.terms_at(&terms, 2.0).unwrap().to_string(), "ce=1,kd=0.5:tau=2,fitnet=10");
        let weighted = Swept::WeightScale.terms_at(&terms, 3.0).unwrap();
        assert_eq!(weighted.0.iter().map(|t| t.weight).collect::<Vec<_>>(), [1.0, 1.5, 30.0]);
        assert!(Swept::Tau.terms_at(&"ce,fitnet".parse().unwrap(), 2.0).is_err());
        assert!(Swept::WeightScale.terms_at(&"ce".parse().unwrap(), 2.0).is_err());
        assert_eq!(Swept::UnlabeledRatio.terms_at(&terms, 2.0).unwrap(), terms);
    }
}
