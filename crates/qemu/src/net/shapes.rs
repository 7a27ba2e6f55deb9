//! Which shapes have a network, and each shape's traffic totals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use firepit_pool::ShapeKey;
use firepit_shape::NetworkSpec;

use super::error::NetError;
use super::stats::{NetCounters, NetStats};

/// What a VM launch needs to know about its shape's network (carried in its launch spec).
#[derive(Debug, Clone)]
pub(crate) struct NetPlan {
    pub spec: Arc<NetworkSpec>,
    /// The shape's counters, which every VM of it adds to.
    pub shape_counters: Arc<NetCounters>,
}

/// Network descriptions per shape, set by the provider's owner before the shape's first fill.
#[derive(Debug, Default)]
pub(crate) struct Networks {
    specs: RwLock<HashMap<ShapeKey, Arc<NetworkSpec>>>,
    /// Kept after a shape is forgotten: metrics counters only grow.
    counters: Mutex<HashMap<ShapeKey, Arc<NetCounters>>>,
}

impl Networks {
    /// Sets `shape`'s network (checked first).
    pub(crate) fn set(&self, shape: &ShapeKey, spec: NetworkSpec) -> Result<(), NetError> {
        spec.validate().map_err(|(field, why)| NetError::Invalid { field, why })?;
        let mut specs = self.specs.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if spec.is_enabled() {
            specs.insert(shape.clone(), Arc::new(spec));
        } else {
            specs.remove(shape);
        }
        Ok(())
    }

    /// `shape`'s network (none unless set).
    pub(crate) fn get(&self, shape: &ShapeKey) -> NetworkSpec {
        let specs = self.specs.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        specs.get(shape).map(|spec| (**spec).clone()).unwrap_or_default()
    }

    /// The plan of a VM of `shape`, `None` when it has no network.
    pub(crate) fn plan(&self, shape: &ShapeKey) -> Option<NetPlan> {
        let spec = self.specs.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(shape).cloned()?;
        let mut counters = self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let shape_counters = counters.entry(shape.clone()).or_default().clone();
        Some(NetPlan { spec, shape_counters })
    }

    /// Forgets `shape`'s network (its counters stay).
    pub(crate) fn forget(&self, shape: &ShapeKey) {
        self.specs.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(shape);
    }

    /// Traffic totals of every shape that has had a VM with a network.
    pub(crate) fn stats(&self) -> Vec<(ShapeKey, NetStats)> {
        let counters = self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut stats: Vec<(ShapeKey, NetStats)> =
            counters.iter().map(|(shape, counters)| (shape.clone(), counters.snapshot())).collect();
        stats.sort_by_key(|(shape, _)| shape.to_string());
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nat_shapes_get_a_plan_and_bad_specs_are_refused() {
        let networks = Networks::default();
        let shape = ShapeKey::new("img", "1", 1, 256);
        assert!(networks.plan(&shape).is_none());
        networks.set(&shape, NetworkSpec::nat()).unwrap();
        assert!(networks.plan(&shape).is_some());
        assert_eq!(networks.get(&shape), NetworkSpec::nat());
        let bad = NetworkSpec { host_ports: vec![0], ..NetworkSpec::nat() };
        assert!(matches!(networks.set(&shape, bad), Err(NetError::Invalid { field: "host_ports", .. })));
        networks.forget(&shape);
        assert!(networks.plan(&shape).is_none());
        assert_eq!(networks.stats().len(), 1, "counters outlive the shape");
    }
}
