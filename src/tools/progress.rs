//! A progress bar on stderr for anything longer than a couple of seconds; hidden when stderr is
//! not a terminal, so logs and tests see only the tables.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` units with a message.
pub(crate) fn bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:<28} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}
