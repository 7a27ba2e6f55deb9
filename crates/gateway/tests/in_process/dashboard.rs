//! The web dashboard on a gateway (`--ui`): a login with the clients' token, then the whole
//! cluster's pools and leases, and a lease's page through its host. What a browser does with the
//! pages is the daemon's browser test's (`crates/cli/tests/vm_ui_browser.rs`); this checks the
//! gateway serves the same dashboard over its own API.

use firepit_cluster::LocalEtcd;
use firepit_daemon::test_daemon::TOKEN;

use super::{TestGateway, hosts_seen, send, small, start_host};

#[tokio::test]
async fn a_gateway_serves_the_dashboard_of_the_whole_cluster() {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let _a = start_host(&etcd, "/ui1", "a", 3).await;
    let _b = start_host(&etcd, "/ui1", "b", 3).await;
    let gateway = TestGateway::start_with(&etcd, "/ui1", true).await;
    let plain = TestGateway::start(&etcd, "/ui1").await;
    hosts_seen(&gateway, 2).await;
    let client = gateway.client();
    let leases =
        [client.acquire(&small(0), None).await.unwrap(), client.acquire(&small(0), None).await.unwrap()];

    // Without a session: the login page; a wrong token is refused; the right one opens a session.
    let (status, head, _) = send(gateway.addr, "GET", "/ui/leases", &[], "").await;
    assert_eq!(status, 303, "{head}");
    assert!(head.to_ascii_lowercase().contains("location: /ui/login"), "{head}");
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let (status, _, _) = send(gateway.addr, "POST", "/ui/login", &[form], "token=wrong&next=%2Fui%2F").await;
    assert_ne!(status, 303, "a wrong token opens no session");
    let (status, head, body) =
        send(gateway.addr, "POST", "/ui/login", &[form], &format!("token={TOKEN}&next=%2Fui%2F")).await;
    assert_eq!(status, 303, "{body}");
    let cookie = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("set-cookie:").then(|| l[11..].trim().to_owned()))
        .expect("a session cookie");
    let cookie = cookie.split(';').next().unwrap().to_owned();

    // The leases page lists both leases (whichever host each is on); each lease's page answers.
    let (status, _, page) = send(gateway.addr, "GET", "/ui/leases", &[("Cookie", &cookie)], "").await;
    assert_eq!(status, 200, "{page}");
    for lease in &leases {
        assert!(page.contains(&lease.lease_id), "{} missing from the leases page", lease.lease_id);
        let path = format!("/ui/leases/{}", lease.lease_id);
        let (status, _, page) = send(gateway.addr, "GET", &path, &[("Cookie", &cookie)], "").await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains(&lease.vm_id), "the lease page shows its VM");
    }
    let (status, _, page) = send(gateway.addr, "GET", "/ui/", &[("Cookie", &cookie)], "").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("small"), "the pools page shows the cluster's shape");

    // A gateway without --ui serves no dashboard (and still needs the token everywhere else).
    let (status, _, _) = send(plain.addr, "GET", "/ui/", &[], "").await;
    assert_eq!(status, 401);
}
