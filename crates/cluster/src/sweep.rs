//! The route sweep a host runs (see `advertiser`): routes of leases that ended without a gateway
//! seeing it, and routes of hosts that are gone, once their leases would have expired anyway.

use tracing::debug;

use crate::error::ClusterError;
use crate::record::now_unix_ms;
use crate::store::Etcd;

/// Sweeps the routes of `host` (current run `run_id`; `holds` says whether the daemon still holds
/// a lease) and, with `dead_hosts_too`, those of hosts that are gone.
pub(crate) async fn sweep(
    etcd: &Etcd,
    host: &str,
    run_id: &str,
    holds: &(dyn Fn(&str) -> bool + Sync),
    dead_hosts_too: bool,
) -> Result<(), ClusterError> {
    let now = now_unix_ms();
    // Listed before the daemon's table is read: a lease placed after the listing is not in it,
    // and one listed was in the table before its route was written.
    let routes = etcd.host_routes(host).await?;
    let mut removed = 0;
    for route in routes {
        let gone =
            if route.run_id == run_id { !holds(&route.lease_id) } else { route.expires_at_unix_ms < now };
        if gone {
            etcd.delete_route(&route).await?;
            removed += 1;
        }
    }
    if dead_hosts_too {
        removed += sweep_dead_hosts(etcd, now).await?;
    }
    if removed > 0 {
        debug!(removed, "swept lease routes");
    }
    Ok(())
}

/// Removes the expired routes of hosts that are not registered, and forgets such hosts once none
/// is left. Returns how many routes went.
async fn sweep_dead_hosts(etcd: &Etcd, now: u64) -> Result<usize, ClusterError> {
    let (live, _) = etcd.hosts().await?;
    let mut removed = 0;
    for host in etcd.known_hosts().await? {
        if live.iter().any(|r| r.host == host) {
            continue;
        }
        let routes = etcd.host_routes(&host).await?;
        let mut left = routes.len();
        for route in routes.iter().filter(|r| r.expires_at_unix_ms < now) {
            etcd.delete_route(route).await?;
            removed += 1;
            left -= 1;
        }
        if left == 0 {
            etcd.forget_host(&host).await?;
        }
    }
    Ok(removed)
}
