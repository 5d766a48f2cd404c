//! Activations, with their ONNX form.

use candle_core::{Result, Tensor};

use crate::model::onnx::OnnxGraph;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Hardswish,
    Hardsigmoid,
    Sigmoid,
}

pub fn hardsigmoid(x: &Tensor) -> Result<Tensor> {
    ((x + 3.0)? / 6.0)?.clamp(0f32, 1f32)
}

pub fn hardswish(x: &Tensor) -> Result<Tensor> {
    crate::model::ops::activation::hardswish(x)
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::None => Ok(x.clone()),
            Self::Relu => x.relu(),
            Self::Hardswish => hardswish(x),
            Self::Hardsigmoid => hardsigmoid(x),
            Self::Sigmoid => candle_nn::ops::sigmoid(x),
        }
    }
}

impl Activation {
    pub fn export_onnx(self, g: &mut OnnxGraph, x: &str) -> String {
        match self {
            Self::None => x.to_string(),
            Self::Relu => g.relu(x),
            Self::Hardswish => g.hardswish(x),
            Self::Hardsigmoid => g.hardsigmoid(x),
            Self::Sigmoid => g.sigmoid(x),
        }
    }
}
