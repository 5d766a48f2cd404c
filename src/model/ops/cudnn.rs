//! Dense convolution on the GPU through cuDNN: forward, data gradient and filter gradient.
//!
//! candle's CUDA convolution is im2col + cuBLAS forward, and backward a naive transposed
//! convolution (one thread per input element) plus a convolution on transposed tensors. cuDNN
//! runs all three with tuned kernels (tensor cores in TF32 mode). The handle, the algorithm
//! chosen per shape, and one growing workspace are kept per thread: cuDNN handles are neither
//! `Send` nor `Sync`, and a training step runs on one thread. cuDNN is loaded on first use; where
//! it is missing, [`available`] says so and the layers keep candle's convolution.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use candle_core::backend::BackendStorage as _;
use candle_core::cuda_backend::cudarc;
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::{Layout, Result, bail};
use cudarc::cudnn::CudnnDataType;
use cudarc::cudnn::safe::{ConvBackwardData, ConvBackwardFilter, ConvDescriptor, ConvForward, Cudnn};
use cudarc::cudnn::sys::{
    cudnnConvolutionBwdDataAlgo_t, cudnnConvolutionBwdFilterAlgo_t, cudnnConvolutionFwdAlgo_t, cudnnConvolutionMode_t,
    cudnnMathType_t, cudnnTensorFormat_t,
};
use cudarc::driver::{CudaSlice, CudaView, DeviceRepr, ValidAsZeroBits};

/// The element types the convolutions take: f32, and bf16 under autocast (cuDNN computes bf16
/// convolutions in fp32).
pub trait ConvElem: CudnnDataType + DeviceRepr + ValidAsZeroBits + candle_core::cuda_backend::CudaDType + Copy {
    const ONE: Self;
    const ZERO: Self;
}

impl ConvElem for f32 {
    const ONE: Self = 1.0;
    const ZERO: Self = 0.0;
}

impl ConvElem for half::bf16 {
    const ONE: Self = half::bf16::ONE;
    const ZERO: Self = half::bf16::ZERO;
}

/// Whether cuDNN can be loaded (probed once per process).
pub fn available() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only dlopens (and closes) the library by its usual names.
    *PRESENT.get_or_init(|| unsafe { cudarc::cudnn::sys::is_culib_present() })
}

/// The sizes of one convolution call (square kernel, same stride/padding/dilation on both axes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub oh: usize,
    pub ow: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
}

/// Which of the three operations; part of the algorithm cache's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pass {
    Forward,
    Data,
    Filter,
}

#[derive(Clone, Copy, Debug)]
enum Algo {
    Forward(cudnnConvolutionFwdAlgo_t),
    Data(cudnnConvolutionBwdDataAlgo_t),
    Filter(cudnnConvolutionBwdFilterAlgo_t),
}

/// Per-thread cuDNN state for one device.
struct State {
    handle: Arc<Cudnn>,
    /// Keyed by shape, pass, TF32 math and the element type's size (f32 vs bf16).
    algos: HashMap<(ConvShape, Pass, bool, usize), Algo>,
    workspace: Option<CudaSlice<u8>>,
}

thread_local! {
    static STATE: RefCell<HashMap<candle_core::cuda_backend::DeviceId, State>> = RefCell::new(HashMap::new());
}

fn err(what: &str, e: impl std::fmt::Debug) -> candle_core::Error {
    candle_core::Error::Msg(format!("cuDNN {what}: {e:?}"))
}

fn i32s<const N: usize>(v: [usize; N]) -> Result<[i32; N]> {
    let mut out = [0i32; N];
    for (o, x) in out.iter_mut().zip(v) {
        *o = i32::try_from(x).map_err(|_| err("size", format!("{x} does not fit a 32-bit int")))?;
    }
    Ok(out)
}

fn view<'a, T: ConvElem>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<CudaView<'a, T>> {
    let slice = s.as_cuda_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(slice.slice(a..b)),
        None => bail!("{what} must be contiguous"),
    }
}

/// Runs `f` with this thread's cuDNN state for `dev` (created on first use).
fn with_state<R>(dev: &CudaDevice, f: impl FnOnce(&mut State) -> Result<R>) -> Result<R> {
    STATE.with(|cell| {
        let mut states = cell.borrow_mut();
        let state = match states.entry(dev.id()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let handle = Cudnn::new(dev.cuda_stream()).map_err(|e| err("handle", e))?;
                e.insert(State { handle, algos: HashMap::new(), workspace: None })
            }
        };
        f(state)
    })
}

/// The descriptors of one call; TF32 tensor-core math when candle's reduced-precision switch
/// (`--precision tf32`) is on, plain FMA otherwise (PyTorch's choice for fp32).
struct Descriptors<T> {
    /// The compute type is fp32 for both element types.
    conv: ConvDescriptor<f32>,
    x: cudarc::cudnn::safe::TensorDescriptor<T>,
    w: cudarc::cudnn::safe::FilterDescriptor<T>,
    y: cudarc::cudnn::safe::TensorDescriptor<T>,
    tf32: bool,
}

fn descriptors<T: ConvElem>(handle: &Arc<Cudnn>, s: &ConvShape) -> Result<Descriptors<T>> {
    let nchw = cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
    let [pad, stride, dil] = i32s([s.padding, s.stride, s.dilation])?;
    let mut conv = handle
        .create_conv2d::<f32>([pad, pad], [stride, stride], [dil, dil], cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION)
        .map_err(|e| err("convolution descriptor", e))?;
    let tf32 = candle_core::cuda::gemm_reduced_precision_f32();
    let math = if tf32 { cudnnMathType_t::CUDNN_TENSOR_OP_MATH } else { cudnnMathType_t::CUDNN_FMA_MATH };
    conv.set_math_type(math).map_err(|e| err("math type", e))?;
    let x = handle.create_4d_tensor::<T>(nchw, i32s([s.n, s.c, s.h, s.w])?).map_err(|e| err("input", e))?;
    let w = handle.create_4d_filter::<T>(nchw, i32s([s.cout, s.c, s.k, s.k])?).map_err(|e| err("filter", e))?;
    let y = handle.create_4d_tensor::<T>(nchw, i32s([s.n, s.cout, s.oh, s.ow])?).map_err(|e| err("output", e))?;
    Ok(Descriptors { conv, x, w, y, tf32 })
}

/// A workspace of at least `bytes`, grown (never shrunk) as shapes need.
fn workspace<'a>(state: &'a mut State, dev: &CudaDevice, bytes: usize) -> Result<&'a mut CudaSlice<u8>> {
    let bytes = bytes.max(1);
    if state.workspace.as_ref().is_none_or(|w| w.len() < bytes) {
        state.workspace = None; // free the old one first
        state.workspace = Some(dev.alloc_zeros::<u8>(bytes)?);
    }
    state.workspace.as_mut().ok_or_else(|| err("workspace", "missing"))
}

/// `y = conv(x, w)`, f32 or bf16 (both arguments the same).
pub fn forward(x: (&CudaStorage, &Layout), w: (&CudaStorage, &Layout), s: ConvShape) -> Result<CudaStorage> {
    match x.0.dtype() {
        candle_core::DType::F32 => forward_typed::<f32>(x, w, s),
        candle_core::DType::BF16 => forward_typed::<half::bf16>(x, w, s),
        other => bail!("cuDNN convolution of {other:?} tensors"),
    }
}

fn forward_typed<T: ConvElem>(
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    s: ConvShape,
) -> Result<CudaStorage> {
    let dev = x.0.device().clone();
    let (xv, wv) = (view::<T>(x.0, x.1, "convolution input")?, view::<T>(w.0, w.1, "convolution weight")?);
    let mut y = dev.alloc_zeros::<T>(s.n * s.cout * s.oh * s.ow)?;
    with_state(&dev, |state| {
        let d = descriptors::<T>(&state.handle, &s)?;
        let op = ConvForward { conv: &d.conv, x: &d.x, w: &d.w, y: &d.y };
        let key = (s, Pass::Forward, d.tf32, std::mem::size_of::<T>());
        let algo = match state.algos.get(&key) {
            Some(Algo::Forward(a)) => *a,
            _ => {
                let a = op.pick_algorithm().map_err(|e| err("forward algorithm", e))?;
                state.algos.insert(key, Algo::Forward(a));
                a
            }
        };
        let bytes = op.get_workspace_size(algo).map_err(|e| err("forward workspace", e))?;
        let ws = workspace(state, &dev, bytes)?;
        // SAFETY: the descriptors were built from the same shapes as the buffers (contiguous f32).
        unsafe { op.launch(algo, Some(ws), (T::ONE, T::ZERO), &xv, &wv, &mut y) }.map_err(|e| err("forward", e))
    })?;
    Ok(CudaStorage::wrap_cuda_slice(y, dev))
}

/// ∂x and ∂W of `y = conv(x, w)` given ∂y, packed into one buffer (∂x, then ∂W) as the CPU
/// kernel returns them.
pub fn backward(
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
    s: ConvShape,
) -> Result<CudaStorage> {
    match x.0.dtype() {
        candle_core::DType::F32 => backward_typed::<f32>(x, w, dy, s),
        candle_core::DType::BF16 => backward_typed::<half::bf16>(x, w, dy, s),
        other => bail!("cuDNN convolution gradient of {other:?} tensors"),
    }
}

fn backward_typed<T: ConvElem>(
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
    s: ConvShape,
) -> Result<CudaStorage> {
    let dev = x.0.device().clone();
    let xv = view::<T>(x.0, x.1, "convolution input")?;
    let wv = view::<T>(w.0, w.1, "convolution weight")?;
    let dyv = view::<T>(dy.0, dy.1, "convolution gradient")?;
    let (x_len, w_len) = (s.n * s.c * s.h * s.w, s.cout * s.c * s.k * s.k);
    if dyv.len() != s.n * s.cout * s.oh * s.ow {
        bail!("convolution gradient of {} values for an output of {}", dyv.len(), s.n * s.cout * s.oh * s.ow);
    }
    let mut out = dev.alloc_zeros::<T>(x_len + w_len)?;
    let size = std::mem::size_of::<T>();
    with_state(&dev, |state| {
        let d = descriptors::<T>(&state.handle, &s)?;
        let data = ConvBackwardData { conv: &d.conv, dx: &d.x, w: &d.w, dy: &d.y };
        let key = (s, Pass::Data, d.tf32, size);
        let algo = match state.algos.get(&key) {
            Some(Algo::Data(a)) => *a,
            _ => {
                let a = data.pick_algorithm().map_err(|e| err("data-gradient algorithm", e))?;
                state.algos.insert(key, Algo::Data(a));
                a
            }
        };
        let bytes = data.get_workspace_size(algo).map_err(|e| err("data-gradient workspace", e))?;
        let ws = workspace(state, &dev, bytes)?;
        let mut dx = out.slice_mut(0..x_len);
        // SAFETY: as in `forward`; ∂x is the first x_len floats of `out`.
        unsafe { data.launch(algo, Some(ws), (T::ONE, T::ZERO), &mut dx, &wv, &dyv) }
            .map_err(|e| err("data gradient", e))?;

        let filter = ConvBackwardFilter { conv: &d.conv, x: &d.x, dw: &d.w, dy: &d.y };
        let key = (s, Pass::Filter, d.tf32, size);
        let algo = match state.algos.get(&key) {
            Some(Algo::Filter(a)) => *a,
            _ => {
                let a = filter.pick_algorithm().map_err(|e| err("filter-gradient algorithm", e))?;
                state.algos.insert(key, Algo::Filter(a));
                a
            }
        };
        let bytes = filter.get_workspace_size(algo).map_err(|e| err("filter-gradient workspace", e))?;
        let ws = workspace(state, &dev, bytes)?;
        let mut dw = out.slice_mut(x_len..x_len + w_len);
        // SAFETY: as above; ∂W is the w_len floats after ∂x.
        unsafe { filter.launch(algo, Some(ws), (T::ONE, T::ZERO), &xv, &mut dw, &dyv) }
            .map_err(|e| err("filter gradient", e))
    })?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}
