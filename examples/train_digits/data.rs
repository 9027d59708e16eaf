//! The UCI digits (`examples/data/digits.csv`, 1797 8x8 images, pixels 0..16) with a fixed
//! train/test split: the rows shuffled once with a fixed seed (the file is sorted in blocks),
//! the first 1437 for training and the last 360 for testing (80/20), pixels scaled to [0, 1].

use std::error::Error;

/// Pixels per image.
pub const FEATURES: usize = 64;
/// Digit classes.
pub const CLASSES: usize = 10;
/// Training samples (the rest, 360, are the test set).
pub const TRAIN: usize = 1437;

/// The split dataset: row-major `samples x FEATURES` pixels and a label per sample.
pub struct Digits {
    pub train_x: Vec<f32>,
    pub train_y: Vec<u32>,
    pub test_x: Vec<f32>,
    pub test_y: Vec<u32>,
}

impl Digits {
    /// Reads and splits the bundled CSV.
    ///
    /// # Errors
    /// The file missing, a field that is not a number, or a row that is not 64 pixels and a
    /// label in 0..10.
    pub fn load() -> Result<Self, Box<dyn Error>> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/digits.csv");
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let mut rows = Vec::new();
        for (line, row) in text.lines().enumerate() {
            let fields: Vec<u32> = row
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{path}:{}: {e}", line + 1))?;
            if fields.len() != FEATURES + 1 || fields[FEATURES] as usize >= CLASSES {
                return Err(format!("{path}:{}: expected 64 pixels and a label 0..9", line + 1).into());
            }
            rows.push(fields);
        }
        if rows.len() <= TRAIN {
            return Err(format!("{path}: {} rows, expected more than {TRAIN}", rows.len()).into());
        }
        // Fisher-Yates with a fixed seed: the same split on every run and machine.
        let mut rng = Rng::new(7);
        for i in (1..rows.len()).rev() {
            rows.swap(i, rng.below(i + 1));
        }
        let pixels = |rows: &[Vec<u32>]| -> Vec<f32> {
            rows.iter().flat_map(|r| r[..FEATURES].iter().map(|&p| p as f32 / 16.0)).collect()
        };
        let labels = |rows: &[Vec<u32>]| -> Vec<u32> { rows.iter().map(|r| r[FEATURES]).collect() };
        let (train, test) = rows.split_at(TRAIN);
        Ok(Self { train_x: pixels(train), train_y: labels(train), test_x: pixels(test), test_y: labels(test) })
    }

    /// Test samples.
    pub fn n_test(&self) -> usize {
        self.test_y.len()
    }
}

/// SplitMix64: repeatable numbers for the split, the initial weights and the batch order (the
/// example needs reproducibility, not a crate).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A random order of 0..n.
    pub fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut order: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            order.swap(i, self.below(i + 1));
        }
        order
    }
}
