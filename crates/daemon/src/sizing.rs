//! Sizes per lease: an acquire may give `cpus`, `memory_mb` and `disk_mb` instead of a shape, and
//! gets the smallest registered shape that covers them. Shapes are size classes kept warm; a
//! lease never gets a VM made to measure (it would cost a cold boot at acquire time).
//!
//! "Covers": at least the vCPUs and the memory asked for, and, when `disk_mb` is asked for, a
//! shape that declares a `disk_mb` at least that large (a shape without one has whatever its image
//! leaves free: unknown here, so it covers no disk request). "Smallest": fewest vCPUs, then least
//! memory, then least disk, then the name (so the choice is the same every time).

use firepit_api::ShapeStatusView;

/// What an acquire asked for; a size left out is not a constraint.
///
/// ```
/// use firepit_daemon::sizing::SizeRequest;
/// let want = SizeRequest { cpus: Some(2), memory_mb: None, disk_mb: None };
/// assert!(!want.is_empty());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeRequest {
    /// At least this many vCPUs.
    pub cpus: Option<u32>,
    /// At least this much guest memory, MiB.
    pub memory_mb: Option<u64>,
    /// At least this much room on the disk, MiB.
    pub disk_mb: Option<u64>,
}

impl SizeRequest {
    /// Whether no size was asked for.
    pub fn is_empty(&self) -> bool {
        self.cpus.is_none() && self.memory_mb.is_none() && self.disk_mb.is_none()
    }

    fn covered_by(&self, shape: &ShapeStatusView) -> bool {
        self.cpus.is_none_or(|cpus| shape.cpus >= cpus)
            && self.memory_mb.is_none_or(|mb| shape.memory_mb >= mb)
            && self.disk_mb.is_none_or(|mb| shape.disk_mb.is_some_and(|has| has >= mb))
    }
}

/// No registered shape covers a [`SizeRequest`]; the message names the largest there is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no shape covers {wanted}: {largest}; ask for less, or register a larger shape (PUT /v1/shapes/{{name}})"
)]
pub struct NoShapeFits {
    /// What was asked for, as `cpus >= 4, memory_mb >= 8192`.
    pub wanted: String,
    /// The largest shape, described, or that there is none.
    pub largest: String,
}

/// The smallest shape among `shapes` that covers `want` (see the module docs).
///
/// ```
/// use firepit_daemon::sizing::{SizeRequest, smallest_fitting};
/// # fn view(name: &str, cpus: u32, memory_mb: u64) -> firepit_api::ShapeStatusView {
/// #     let mut v: firepit_api::ShapeStatusView = serde_json::from_value(serde_json::json!({
/// #         "name": name, "ready": 0, "filling": 0, "leased": 0, "depth_low": 1, "depth_high": 1,
/// #         "fill_failures": 0, "consecutive_failures": 0, "last_error": null, "accelerator": "tcg",
/// #         "fill": "cold"})).unwrap();
/// #     (v.cpus, v.memory_mb) = (cpus, memory_mb); v
/// # }
/// let shapes = [view("small", 1, 256), view("big", 4, 2048)];
/// let want = SizeRequest { cpus: Some(2), ..SizeRequest::default() };
/// assert_eq!(smallest_fitting(&shapes, &want).unwrap(), "big");
/// let too_much = SizeRequest { memory_mb: Some(4096), ..SizeRequest::default() };
/// let error = smallest_fitting(&shapes, &too_much).unwrap_err();
/// assert!(error.to_string().contains("the largest is \"big\" (4 cpus, 2048 MiB"), "{error}");
/// ```
pub fn smallest_fitting(shapes: &[ShapeStatusView], want: &SizeRequest) -> Result<String, NoShapeFits> {
    let size = |s: &&ShapeStatusView| (s.cpus, s.memory_mb, s.disk_mb.unwrap_or(0), s.name.clone());
    if let Some(fit) = shapes.iter().filter(|s| want.covered_by(s)).min_by_key(size) {
        return Ok(fit.name.clone());
    }
    let largest = match shapes.iter().max_by_key(size) {
        Some(s) => {
            let disk = s.disk_mb.map_or_else(|| "no disk bound".to_owned(), |mb| format!("{mb} MiB disk"));
            format!("the largest is {:?} ({} cpus, {} MiB memory, {disk})", s.name, s.cpus, s.memory_mb)
        }
        None => "no shape is registered".to_owned(),
    };
    Err(NoShapeFits { wanted: describe(want), largest })
}

fn describe(want: &SizeRequest) -> String {
    let parts: Vec<String> = [
        want.cpus.map(|n| format!("cpus >= {n}")),
        want.memory_mb.map(|n| format!("memory_mb >= {n}")),
        want.disk_mb.map(|n| format!("disk_mb >= {n}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, cpus: u32, memory_mb: u64, disk_mb: Option<u64>) -> ShapeStatusView {
        let mut view: ShapeStatusView = serde_json::from_value(serde_json::json!({
            "name": name, "ready": 0, "filling": 0, "leased": 0, "depth_low": 1, "depth_high": 1,
            "fill_failures": 0, "consecutive_failures": 0, "last_error": null, "accelerator": "tcg",
            "fill": "cold"
        }))
        .unwrap();
        (view.cpus, view.memory_mb, view.disk_mb) = (cpus, memory_mb, disk_mb);
        view
    }

    fn want(cpus: Option<u32>, memory_mb: Option<u64>, disk_mb: Option<u64>) -> SizeRequest {
        SizeRequest { cpus, memory_mb, disk_mb }
    }

    #[test]
    fn the_smallest_covering_shape_is_chosen_whatever_the_order() {
        let mut shapes = vec![
            view("large", 4, 4096, Some(8192)),
            view("small", 1, 256, None),
            view("medium", 2, 1024, Some(2048)),
            view("medium-more-memory", 2, 2048, Some(2048)),
        ];
        for _ in 0..shapes.len() {
            shapes.rotate_left(1);
            let pick = |w| smallest_fitting(&shapes, &w).unwrap();
            assert_eq!(pick(want(Some(1), None, None)), "small");
            assert_eq!(pick(want(None, Some(512), None)), "medium", "fewest vCPUs, then memory");
            assert_eq!(pick(want(Some(2), Some(1500), None)), "medium-more-memory");
            assert_eq!(pick(want(None, None, Some(1))), "medium", "small declares no disk");
            assert_eq!(pick(want(Some(3), None, None)), "large");
            assert_eq!(pick(want(Some(4), Some(4096), Some(8192))), "large", "exactly its size");
        }
    }

    #[test]
    fn equal_sizes_are_chosen_by_name_and_nothing_fitting_names_the_largest() {
        let shapes = [view("b", 1, 256, None), view("a", 1, 256, None)];
        assert_eq!(smallest_fitting(&shapes, &want(Some(1), None, None)).unwrap(), "a");
        let error = smallest_fitting(&shapes, &want(Some(8), Some(100), Some(10))).unwrap_err();
        assert_eq!(error.wanted, "cpus >= 8, memory_mb >= 100, disk_mb >= 10");
        assert_eq!(error.largest, "the largest is \"b\" (1 cpus, 256 MiB memory, no disk bound)");
        let none = smallest_fitting(&[], &want(Some(1), None, None)).unwrap_err();
        assert_eq!(none.largest, "no shape is registered");
    }
}
