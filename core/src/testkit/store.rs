//! The `Store` contract.

use crate::model::{Endpoint, FunctionName, FunctionRecord, FunctionSpecInput, FunctionStatus, Phase};
use crate::ports::{Store, StoreError};

use super::unique;

/// A record for `name` at `generation`, with every optional field filled in.
pub fn sample_record(name: &str, generation: u64) -> FunctionRecord {
    let mut input = FunctionSpecInput::image(name, "registry.local:5000/team/app:v1", 8080);
    input.env.insert("GREETING".into(), "hi; there {$x} # \"q\"".into());
    input.health_path = Some("/healthz".into());
    FunctionRecord {
        spec: input.validate().expect("sample spec is valid"),
        generation,
        deleted: false,
        status: FunctionStatus {
            phase: Phase::Ready,
            generation,
            url: Some(format!("http://{name}.localhost/")),
            message: Some("ok".into()),
            will_retry: false,
            endpoints: vec![Endpoint::new(([127, 0, 0, 1], 40000).into())],
        },
    }
}

fn name(prefix: &str) -> FunctionName {
    FunctionName::new(unique(prefix).replace('_', "-")).expect("valid test name")
}

/// Runs every check.
pub async fn run_all(s: &dyn Store) {
    absent_is_none(s).await;
    create_once(s).await;
    update_compares_generation(s).await;
    delete_compares_generation(s).await;
    list_is_ordered(s).await;
    concurrent_writers_one_wins(s).await;
}

/// A name never written reads as `None`.
pub async fn absent_is_none(s: &dyn Store) {
    let n = name("absent");
    assert!(s.get(&n).await.expect("get").is_none(), "absent_is_none");
    assert!(!s.list().await.expect("list").iter().any(|r| r.spec.name() == &n));
}

/// `expected = None` creates, once; the record reads back unchanged.
pub async fn create_once(s: &dyn Store) {
    let n = name("create");
    let rec = sample_record(n.as_str(), 1);
    s.compare_and_set(None, rec.clone()).await.expect("create");
    assert_eq!(s.get(&n).await.expect("get"), Some(rec.clone()), "create_once: read back differs");
    match s.compare_and_set(None, sample_record(n.as_str(), 1)).await {
        Err(StoreError::Conflict { expected: None, actual: Some(1), .. }) => {}
        other => panic!("create_once: second create gave {other:?}"),
    }
}

/// An update with the stored generation wins; with another one it conflicts and changes nothing.
pub async fn update_compares_generation(s: &dyn Store) {
    let n = name("update");
    s.compare_and_set(None, sample_record(n.as_str(), 1)).await.expect("create");
    let v2 = sample_record(n.as_str(), 2);
    s.compare_and_set(Some(1), v2.clone()).await.expect("update 1→2");
    let err = s.compare_and_set(Some(1), sample_record(n.as_str(), 9)).await.expect_err("stale update accepted");
    assert!(matches!(err, StoreError::Conflict { expected: Some(1), actual: Some(2), .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(s.get(&n).await.expect("get"), Some(v2), "update_compares_generation: stale write changed the record");
}

/// Delete compares too; deleting what is not there is `NotFound`.
pub async fn delete_compares_generation(s: &dyn Store) {
    let n = name("delete");
    s.compare_and_set(None, sample_record(n.as_str(), 3)).await.expect("create");
    assert!(matches!(s.delete(&n, 2).await, Err(StoreError::Conflict { .. })), "delete with wrong generation");
    s.delete(&n, 3).await.expect("delete");
    assert!(s.get(&n).await.expect("get").is_none());
    assert!(matches!(s.delete(&n, 3).await, Err(StoreError::NotFound(_))), "delete of absent");
}

/// `list` returns records ordered by name.
pub async fn list_is_ordered(s: &dyn Store) {
    let base = unique("list");
    for suffix in ["c", "a", "b"] {
        s.compare_and_set(None, sample_record(&format!("{base}-{suffix}"), 1)).await.expect("create");
    }
    let names: Vec<String> = s
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.spec.name().to_string())
        .filter(|n| n.starts_with(&base))
        .collect();
    assert_eq!(names, [format!("{base}-a"), format!("{base}-b"), format!("{base}-c")], "list_is_ordered");
}

/// Of 16 writers racing from the same generation, exactly one wins.
pub async fn concurrent_writers_one_wins(s: &dyn Store) {
    let n = name("race");
    s.compare_and_set(None, sample_record(n.as_str(), 1)).await.expect("create");
    let attempts = (0..16).map(|i| {
        let mut rec = sample_record(n.as_str(), 2);
        rec.status.message = Some(format!("writer {i}"));
        s.compare_and_set(Some(1), rec)
    });
    let results = futures::future::join_all(attempts).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "concurrent_writers_one_wins: {results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, StoreError::Conflict { .. })));
}
