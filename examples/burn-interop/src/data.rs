//! The UCI handwritten digits (`../../examples/data/digits.csv`), shuffled with a fixed seed and
//! split 1437 / 360, as the main crate's `train_digits` example splits them.

use std::fmt;
use std::path::{Path, PathBuf};

/// Pixels per image (8 x 8).
pub const PIXELS: usize = 64;
/// Digit classes.
pub const CLASSES: usize = 10;
/// Rows the file must hold.
pub const ROWS: usize = 1797;
/// Training rows; the rest are the test set.
pub const TRAIN: usize = 1437;

/// One split: row-major pixels scaled to [0, 1], and labels.
pub struct Split {
    pub x: Vec<f32>,
    pub y: Vec<i64>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// The rows `start, start + 1, ...` (wrapping around the end), `n` of them: the mini-batch
    /// of a step. Both runs take the same batches in the same order.
    pub fn batch(&self, start: usize, n: usize) -> (Vec<f32>, Vec<i64>) {
        let (mut x, mut y) = (Vec::with_capacity(n * PIXELS), Vec::with_capacity(n));
        for k in 0..n {
            let row = (start + k) % self.len();
            x.extend_from_slice(&self.x[row * PIXELS..(row + 1) * PIXELS]);
            y.push(self.y[row]);
        }
        (x, y)
    }
}

/// What can be wrong with the data file, said with its path and line.
#[derive(Debug)]
pub enum DataError {
    Read { path: PathBuf, error: std::io::Error },
    Line { path: PathBuf, line: usize, reason: String },
    Rows { path: PathBuf, got: usize },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            Self::Line { path, line, reason } => write!(f, "{}:{line}: {reason}", path.display()),
            Self::Rows { path, got } => {
                write!(f, "{}: expected {ROWS} rows (the UCI digits test set), found {got}", path.display())
            }
        }
    }
}

impl std::error::Error for DataError {}

/// Reads the file, checks every row (64 pixels in 0..=16, then a label in 0..=9), shuffles the
/// rows with `seed` and splits them.
pub fn load(path: &Path, seed: u64) -> Result<(Split, Split), DataError> {
    let text = std::fs::read_to_string(path).map_err(|error| DataError::Read { path: path.into(), error })?;
    let mut rows: Vec<(Vec<f32>, i64)> = Vec::with_capacity(ROWS);
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |reason: String| DataError::Line { path: path.into(), line: i + 1, reason };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != PIXELS + 1 {
            return Err(bad(format!("{} fields, expected {} (64 pixels and a label)", fields.len(), PIXELS + 1)));
        }
        let mut pixels = Vec::with_capacity(PIXELS);
        for (j, field) in fields[..PIXELS].iter().enumerate() {
            match field.parse::<u8>() {
                Ok(v) if v <= 16 => pixels.push(v as f32 / 16.0),
                _ => return Err(bad(format!("pixel {j} is {field:?}, expected an integer in 0..=16"))),
            }
        }
        let label = match fields[PIXELS].parse::<i64>() {
            Ok(v) if (0..CLASSES as i64).contains(&v) => v,
            _ => return Err(bad(format!("label {:?}, expected an integer in 0..=9", fields[PIXELS]))),
        };
        rows.push((pixels, label));
    }
    if rows.len() != ROWS {
        return Err(DataError::Rows { path: path.into(), got: rows.len() });
    }
    // Fisher-Yates with splitmix64: a fixed order from the seed, without a rand dependency.
    let mut state = seed;
    for i in (1..rows.len()).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        rows.swap(i, j);
    }
    let split = |rows: &[(Vec<f32>, i64)]| Split {
        x: rows.iter().flat_map(|(x, _)| x.iter().copied()).collect(),
        y: rows.iter().map(|&(_, y)| y).collect(),
    };
    Ok((split(&rows[..TRAIN]), split(&rows[TRAIN..])))
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
