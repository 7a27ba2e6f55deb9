//! Each shape's traffic totals, and what a VM launch of a shape with a network carries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use firepit_pool::ShapeKey;
use firepit_shape::NetworkSpec;

use firepit_net::{NetCounters, NetStats};

/// What a VM launch needs to know about its shape's network (carried in its launch spec).
#[derive(Debug, Clone)]
pub(crate) struct NetPlan {
    pub spec: Arc<NetworkSpec>,
    /// The shape's counters, which every VM of it adds to.
    pub shape_counters: Arc<NetCounters>,
    /// A resumed VM's network as it was paused (same address, narrowings); `None`: a new one.
    pub resume: Option<firepit_net::NetworkState>,
}

/// Traffic counters per shape; they outlive the shape's VMs (and the shape: metrics only grow).
#[derive(Debug, Default)]
pub(crate) struct Networks {
    counters: Mutex<HashMap<ShapeKey, Arc<NetCounters>>>,
}

impl Networks {
    /// The plan of a VM of `shape` with `spec`, `None` when it has no network.
    pub(crate) fn plan(&self, shape: &ShapeKey, spec: &NetworkSpec) -> Option<NetPlan> {
        if !spec.is_enabled() {
            return None;
        }
        let mut counters = self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let shape_counters = counters.entry(shape.clone()).or_default().clone();
        Some(NetPlan { spec: Arc::new(spec.clone()), shape_counters, resume: None })
    }

    /// Traffic totals of every shape that has had a VM with a network.
    pub(crate) fn stats(&self) -> Vec<(ShapeKey, NetStats)> {
        let counters = self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut stats: Vec<(ShapeKey, NetStats)> =
            counters.iter().map(|(shape, counters)| (shape.clone(), counters.snapshot())).collect();
        stats.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nat_shapes_get_a_plan_and_share_their_shapes_counters() {
        let networks = Networks::default();
        let shape = ShapeKey::new("small");
        assert!(networks.plan(&shape, &NetworkSpec::default()).is_none());
        let (a, b) = (
            networks.plan(&shape, &NetworkSpec::nat()).unwrap(),
            networks.plan(&shape, &NetworkSpec::nat()).unwrap(),
        );
        assert!(Arc::ptr_eq(&a.shape_counters, &b.shape_counters));
        assert_eq!(networks.stats().len(), 1);
    }
}
