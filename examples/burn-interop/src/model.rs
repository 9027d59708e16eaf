//! A residual MLP with many small tensors of mixed widths: 75 `Linear` layers with biases, 150
//! parameter tensors, about 0.34 M parameters. Many small tensors is the case where an optimizer
//! that launches a few kernels per tensor (burn's) pays the most, and where one pass over every
//! tensor (ours) pays the least; the compute stays small enough for lavapipe.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor};

use crate::data::{CLASSES, PIXELS};

/// Width of the residual stream.
pub const WIDTH: usize = 64;
/// Residual blocks (two layers each).
pub const BLOCKS: usize = 36;
/// Hidden widths of the blocks, in turn: mixed sizes, so tensors differ in length.
const HIDDEN: [usize; 5] = [32, 48, 64, 96, 128];
/// Each block's output is scaled down before it is added: 36 blocks at burn's default
/// initialisation would otherwise grow the stream's variance about (1 + 1/6)^36 ~ 260-fold.
const RESIDUAL_SCALE: f32 = 0.25;
/// Weight of the auxiliary head's loss on the steps that use it.
const AUX_WEIGHT: f32 = 0.5;

#[derive(Module, Debug)]
pub struct Block {
    up: Linear,
    down: Linear,
}

#[derive(Module, Debug)]
pub struct Net {
    input: Linear,
    blocks: Vec<Block>,
    head: Linear,
    /// A second head that only even steps use: on odd steps its two tensors get no gradient
    /// (`GradientsParams` has no entry for them), as an unused expert or a frozen branch would.
    aux: Linear,
}

impl Net {
    pub fn new(device: &Device) -> Self {
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        Self {
            input: linear(PIXELS, WIDTH),
            blocks: (0..BLOCKS)
                .map(|b| {
                    let hidden = HIDDEN[b % HIDDEN.len()];
                    Block { up: linear(WIDTH, hidden), down: linear(hidden, WIDTH) }
                })
                .collect(),
            head: linear(WIDTH, CLASSES),
            aux: linear(WIDTH, CLASSES),
        }
    }

    fn trunk(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = relu(self.input.forward(x));
        for block in &self.blocks {
            h = h.clone() + block.down.forward(relu(block.up.forward(h))).mul_scalar(RESIDUAL_SCALE);
        }
        h
    }

    /// Class scores.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.head.forward(self.trunk(x))
    }

    /// The training loss: cross-entropy of the head, plus the auxiliary head's when `aux`.
    pub fn loss(&self, x: Tensor<2>, y: Tensor<1, Int>, aux: bool) -> Tensor<1> {
        let device = x.device();
        let ce = CrossEntropyLossConfig::new().init(&device);
        let h = self.trunk(x);
        let loss = ce.forward(self.head.forward(h.clone()), y.clone());
        match aux {
            true => loss + ce.forward(self.aux.forward(h), y).mul_scalar(AUX_WEIGHT),
            false => loss,
        }
    }
}
