use prometheus_client::registry::Registry;

use super::*;
use crate::fake::FakeBackend;

fn table() -> Arc<LeaseTable> {
    let metrics = DaemonMetrics::register(&mut Registry::default());
    Arc::new(LeaseTable::new(
        Duration::from_secs(60),
        Duration::from_secs(600),
        metrics,
        CancellationToken::new(),
    ))
}

fn params(shape: &str, key: Option<&str>) -> AcquireParams {
    AcquireParams {
        shape: shape.into(),
        wait: Duration::ZERO,
        ttl: None,
        idempotency_key: key.map(Into::into),
        egress: None,
    }
}

#[tokio::test]
async fn failed_acquire_does_not_poison_its_idempotency_key() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table();
    let (held, _) = table.acquire(&backend, params("one", None)).await.unwrap();
    let error = table.acquire(&backend, params("one", Some("k"))).await.err().unwrap();
    assert!(matches!(error, LeaseError::Acquire(AcquireError::Exhausted { .. })), "{error}");
    table.release(&held.id).unwrap();
    drop(held);
    tokio::task::yield_now().await;
    let (lease, replayed) = table.acquire(&backend, params("one", Some("k"))).await.unwrap();
    assert!(!replayed);
    let (again, replayed) = table.acquire(&backend, params("one", Some("k"))).await.unwrap();
    assert!(replayed);
    assert_eq!(lease.id, again.id);
}

#[tokio::test]
async fn released_key_gets_a_new_lease() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table();
    let (first, _) = table.acquire(&backend, params("one", Some("k"))).await.unwrap();
    let first_id = first.id.clone();
    table.release(&first_id).unwrap();
    drop(first);
    tokio::task::yield_now().await;
    let (second, replayed) = table.acquire(&backend, params("one", Some("k"))).await.unwrap();
    assert!(!replayed);
    assert_ne!(second.id, first_id);
}

#[tokio::test]
async fn vm_is_released_only_when_the_last_holder_lets_go() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table();
    let (lease, _) = table.acquire(&backend, params("one", None)).await.unwrap();
    table.release(&lease.id).unwrap();
    assert!(table.get(&lease.id).is_none());
    // Let the expiry task see the cancellation and drop its handle.
    tokio::task::yield_now().await;
    assert_eq!(backend.leased("one"), 1, "an exec in flight still holds the VM");
    drop(lease);
    assert_eq!(backend.leased("one"), 0);
    assert_eq!(backend.destroyed("one"), 1);
}

#[tokio::test]
async fn release_all_ends_every_lease_and_counts_them() {
    let backend = FakeBackend::with_shape("two", 2);
    let table = table();
    table.acquire(&backend, params("two", None)).await.unwrap();
    table.acquire(&backend, params("two", None)).await.unwrap();
    assert_eq!(table.len(), 2);
    assert_eq!(table.release_all(), 2);
    assert!(table.is_empty());
    tokio::task::yield_now().await;
    assert_eq!(backend.leased("two"), 0);
}

#[tokio::test]
async fn renew_and_release_of_an_unknown_lease_are_not_found() {
    let table = table();
    assert!(matches!(table.renew("l-0", None), Err(LeaseError::NotFound(_))));
    assert!(matches!(table.release("l-0"), Err(LeaseError::NotFound(_))));
    assert!(matches!(table.renew("l-0", Some(Duration::ZERO)), Err(LeaseError::BadTtl { .. })));
}
