//! Deterministic parameter initialisation for trainable models.
//!
//! candle's `VarMap` initialises from an unseedable thread RNG, so two runs with the same seed
//! would start from different weights. This backend creates each variable in the `VarMap` from
//! our seeded generator, keyed by the variable's name: the result does not depend on the order
//! in which layers are built.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarMap};

use crate::util::Rng;

/// FNV-1a: a stable 64-bit hash of a parameter name.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Values for a tensor of `shape` drawn as `init` says.
pub fn sample(init: Init, shape: &Shape, rng: &mut Rng) -> Vec<f32> {
    let n = shape.elem_count();
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Randn { mean, stdev } => (0..n).map(|_| mean as f32 + stdev as f32 * rng.normal()).collect(),
        Init::Uniform { lo, up } => (0..n).map(|_| rng.uniform(lo as f32, up as f32)).collect(),
        Init::Kaiming { dist, fan, non_linearity } => {
            let std = non_linearity.gain() / (fan.for_shape(shape).max(1) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Normal => (0..n).map(|_| std as f32 * rng.normal()).collect(),
                candle_nn::init::NormalOrUniform::Uniform => {
                    let bound = (3f64.sqrt() * std) as f32;
                    (0..n).map(|_| rng.uniform(-bound, bound)).collect()
                }
            }
        }
    }
}

/// A var-builder backend that creates variables in `varmap` from a seeded generator.
pub struct SeededVarMap {
    pub varmap: VarMap,
    pub seed: u64,
}

impl candle_nn::var_builder::SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.varmap.data().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!("parameter {name} requested with shape {s:?}, exists as {:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let mut rng = Rng::for_item(self.seed, name_hash(name), 0);
        let t = Tensor::from_vec(sample(init, &s, &mut rng), s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        let data = self.varmap.data().lock().unwrap_or_else(|p| p.into_inner());
        match data.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("parameter {name} does not exist yet"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.data().lock().unwrap_or_else(|p| p.into_inner()).contains_key(name)
    }
}

/// A var builder creating trainable, seeded variables in `varmap`.
pub fn seeded_var_builder(varmap: &VarMap, seed: u64, device: &Device) -> candle_nn::VarBuilder<'static> {
    candle_nn::VarBuilder::from_backend(
        Box::new(SeededVarMap { varmap: varmap.clone(), seed }),
        DType::F32,
        device.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_regardless_of_build_order() {
        let dev = Device::Cpu;
        let build = |order: &[&str], seed| {
            let vm = VarMap::new();
            let vb = seeded_var_builder(&vm, seed, &dev);
            for name in order {
                vb.get_with_hints((3, 4), name, candle_nn::init::DEFAULT_KAIMING_NORMAL).unwrap();
            }
            vm.data().lock().unwrap()["b"].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert_eq!(build(&["a", "b"], 1), build(&["b", "a"], 1));
        assert_ne!(build(&["a", "b"], 1), build(&["a", "b"], 2));
    }
}
