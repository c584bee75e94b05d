//! Upper bounds, checked before anything is allocated, so that a typo (`--size 100000`) or
//! a hostile file (a checkpoint claiming a huge size, a decompression bomb) gets one line
//! saying what was asked and what fits, never an allocation failure that aborts the
//! process.
//!
//! - Image sides: networks and the phantom take at most [`MAX_SIZE`] pixels a side;
//!   decoded files at most [`MAX_DECODED_SIDE`] a side and [`MAX_DECODED_BYTES`] of pixels.
//! - Host memory: what a command will hold (a data set, a training's tensors, which on a
//!   CPU adapter such as lavapipe live in host memory too) must fit the budget: half of
//!   this machine's memory (`MemTotal` in /proc/meminfo; 8 GiB where that cannot be read),
//!   or `SEGFEAT_MEMORY_GIB` when set.
//! - GPU: the largest single tensor must fit the adapter's `max_buffer_size`.

use crate::{bail, Result};

/// The largest network input or phantom side, in pixels (16 times the paper's 256).
pub const MAX_SIZE: usize = 4096;
/// The largest side of an image file that will be decoded.
pub const MAX_DECODED_SIDE: u32 = 16384;
/// The most bytes an image decoder may allocate for one file.
pub const MAX_DECODED_BYTES: u64 = 512 << 20;
/// The environment variable that sets the host-memory budget, in GiB.
pub const BUDGET_VAR: &str = "SEGFEAT_MEMORY_GIB";

/// The host-memory budget in bytes and how it was set (for messages).
pub fn memory_budget() -> (u64, String) {
    if let Some(g) = std::env::var(BUDGET_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|g| *g > 0.0 && g.is_finite())
    {
        return ((g * GIB) as u64, format!("{BUDGET_VAR}={g}"));
    }
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    match total {
        Some(b) => (
            b / 2,
            format!(
                "half of this machine's {:.1} GiB; set {BUDGET_VAR} to change it",
                b as f64 / GIB
            ),
        ),
        None => (
            8 << 30,
            format!("8 GiB, this machine's memory being unknown; set {BUDGET_VAR} to change it"),
        ),
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// Refuse `what` when `bytes` exceed the host-memory budget.
pub fn check_host(what: &str, bytes: u128) -> Result<()> {
    let (budget, how) = memory_budget();
    if bytes > budget as u128 {
        bail!(
            "{what} needs about {:.1} GiB of memory, more than the budget of {:.1} GiB ({how})",
            bytes as f64 / GIB,
            budget as f64 / GIB
        );
    }
    Ok(())
}

/// Refuse a side length above [`MAX_SIZE`]; `what` names it ("the input size").
pub fn check_size(what: &str, size: usize) -> Result<()> {
    if size > MAX_SIZE {
        bail!("{what} is {size} pixels, above the largest supported, {MAX_SIZE}");
    }
    Ok(())
}

/// Refuse a tensor of `elements` f32 values that no buffer of the adapter can hold.
pub fn check_buffer(what: &str, elements: u128, max_buffer_size: u64) -> Result<()> {
    let bytes = elements * 4;
    if bytes > max_buffer_size as u128 {
        bail!(
            "{what} needs a buffer of {:.2} GiB, more than this adapter's largest, {:.2} GiB: lower the size, channels or batch",
            bytes as f64 / GIB,
            max_buffer_size as f64 / GIB
        );
    }
    Ok(())
}

/// Open an image file for decoding with the bounds above.
pub fn open_image(path: &std::path::Path) -> std::result::Result<image::DynamicImage, String> {
    let mut r = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| e.to_string())?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(MAX_DECODED_SIDE);
    l.max_image_height = Some(MAX_DECODED_SIDE);
    l.max_alloc = Some(MAX_DECODED_BYTES);
    r.limits(l);
    r.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => format!(
            "{e} (segfeat decodes images of at most {MAX_DECODED_SIDE} pixels a side and {} MiB)",
            MAX_DECODED_BYTES >> 20
        ),
        e => e.to_string(),
    })
}
