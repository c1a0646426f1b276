//! The `Store` contract.

use crate::model::{
    DesiredScale, Endpoint, FunctionName, FunctionRecord, FunctionSpecInput, FunctionStatus, Instance, InstanceId,
    InstanceState, Phase,
};
use crate::ports::{DocKey, DocKind, DocQuery, Store, StoreError};

use super::unique;

/// A record for `name` at `generation`, with every optional field filled in.
pub fn sample_record(name: &str, generation: u64) -> FunctionRecord {
    let mut input = FunctionSpecInput::image(name, "registry.local:5000/team/app:v1", 8080);
    input.env.insert("GREETING".into(), "hi; there {$x} # \"q\"".into());
    input.health_path = Some("/healthz".into());
    let endpoint = Endpoint::new(([127, 0, 0, 1], 40000).into());
    let spec = input.validate().expect("sample spec is valid");
    let mut status = FunctionStatus::new(Phase::Ready, generation);
    status.url = Some(format!("http://{name}.localhost/"));
    status.message = Some("ok".into());
    status.endpoints = vec![endpoint.clone()];
    status.published = vec![endpoint.clone()];
    status.routed_generation = generation;
    status.wanted = 1;
    status.observed_at_ms = 1_700_000_000_000;
    status.instances = vec![Instance {
        id: InstanceId::new("i-1"),
        function: spec.name().clone(),
        generation,
        endpoint,
        state: InstanceState::Running,
    }];
    FunctionRecord {
        spec,
        generation,
        deleted: false,
        scale: DesiredScale { running: Some(2), reason: "test".into(), at_ms: 1 },
        status,
        secrets_digest: Some("v1".into()),
        revision: 0,
    }
}

fn name(prefix: &str) -> FunctionName {
    FunctionName::new(unique(prefix).replace('_', "-")).expect("valid test name")
}

/// Runs every check.
pub async fn run_all(s: &dyn Store) {
    absent_is_none(s).await;
    create_once(s).await;
    update_compares_revision(s).await;
    delete_compares_revision(s).await;
    revisions_never_repeat(s).await;
    list_is_ordered(s).await;
    concurrent_writers_one_wins(s).await;
    scale_and_deploy_do_not_lose_each_other(s).await;
    docs_compare_and_set(s).await;
    docs_list_by_prefix_in_order_and_page(s).await;
    docs_share_the_revision_counter(s).await;
    docs_concurrent_writers_one_wins(s).await;
}

fn kind(k: &str) -> DocKind {
    DocKind::new(k).expect("valid kind")
}

fn doc_key(k: &DocKind, key: &str) -> DocKey {
    DocKey::new(k, key).expect("valid key")
}

/// Documents: absent reads as `None`; a create happens once; a write or a
/// delete with another revision conflicts and changes nothing; a delete of
/// nothing is `DocNotFound`.
pub async fn docs_compare_and_set(s: &dyn Store) {
    let k = kind("conformance");
    let key = doc_key(&k, &unique("cas"));
    assert!(s.doc_get(&key).await.expect("get").is_none(), "docs: absent is None");
    let r1 = s.doc_put(&key, None, b"one".to_vec()).await.expect("create");
    let back = s.doc_get(&key).await.expect("get").expect("there");
    assert_eq!((back.key.as_str(), back.value.as_slice(), back.revision), (key.key(), &b"one"[..], r1));
    match s.doc_put(&key, None, b"again".to_vec()).await {
        Err(StoreError::DocConflict { expected: None, actual: Some(a), .. }) if a == r1 => {}
        other => panic!("docs: a second create gave {other:?}"),
    }
    match s.doc_put(&key, Some(r1 + 1000), b"stale".to_vec()).await {
        Err(StoreError::DocConflict { actual: Some(a), .. }) if a == r1 => {}
        other => panic!("docs: a write with another revision gave {other:?}"),
    }
    let r2 = s.doc_put(&key, Some(r1), b"two".to_vec()).await.expect("update");
    assert!(r2 > r1, "docs: revisions rise");
    assert_eq!(s.doc_get(&key).await.expect("get").expect("there").value, b"two");
    match s.doc_delete(&key, r1).await {
        Err(StoreError::DocConflict { .. }) => {}
        other => panic!("docs: a delete with another revision gave {other:?}"),
    }
    s.doc_delete(&key, r2).await.expect("delete");
    assert!(s.doc_get(&key).await.expect("get").is_none(), "docs: deleted");
    match s.doc_delete(&key, r2).await {
        Err(StoreError::DocNotFound(_)) => {}
        other => panic!("docs: a delete of nothing gave {other:?}"),
    }
    assert!(DocKind::new("Bad Kind").is_err() && DocKind::new("").is_err(), "docs: kinds are checked");
    assert!(DocKey::new(&k, "a b").is_err() && DocKey::new(&k, "").is_err(), "docs: keys are checked");
}

/// A list takes one kind and one prefix, ordered by key, pages with `after`
/// and `limit`, and sees neither other kinds nor other prefixes.
pub async fn docs_list_by_prefix_in_order_and_page(s: &dyn Store) {
    let (a, b) = (kind("conformance-a"), kind("conformance-b"));
    let p = unique("list");
    for key in ["2", "10", "1", "3"] {
        s.doc_put(&doc_key(&a, &format!("{p}/{key}")), None, key.as_bytes().to_vec()).await.expect("put");
    }
    s.doc_put(&doc_key(&a, &format!("{p}x/1")), None, b"other prefix".to_vec()).await.expect("put");
    s.doc_put(&doc_key(&b, &format!("{p}/1")), None, b"other kind".to_vec()).await.expect("put");
    let keys = |docs: Vec<crate::ports::Doc>| docs.into_iter().map(|d| d.key).collect::<Vec<_>>();
    let all = keys(s.doc_list(&a, &DocQuery::prefix(format!("{p}/"), 100)).await.expect("list"));
    assert_eq!(all, ["1", "10", "2", "3"].map(|k| format!("{p}/{k}")), "docs: one kind, one prefix, by key");
    let page =
        keys(s.doc_list(&a, &DocQuery::prefix(format!("{p}/"), 2).after(format!("{p}/10"))).await.expect("list"));
    assert_eq!(page, ["2", "3"].map(|k| format!("{p}/{k}")), "docs: a page after a key, limited");
    assert_eq!(
        s.doc_list(&b, &DocQuery::prefix(format!("{p}/"), 100)).await.expect("list").len(),
        1,
        "docs: kinds are apart"
    );
    assert!(s.doc_list(&kind("conformance-none"), &DocQuery::prefix("", 10)).await.expect("list").is_empty());
    assert!(
        s.doc_list(&a, &DocQuery::prefix(format!("{p}/"), 0)).await.expect("list").is_empty(),
        "docs: a limit of 0 lists none"
    );
}

/// Documents and records take revisions from one counter: none repeats.
pub async fn docs_share_the_revision_counter(s: &dyn Store) {
    let k = kind("conformance");
    let d1 = s.doc_put(&doc_key(&k, &unique("rev")), None, vec![]).await.expect("put");
    let n = name("docrev");
    let r = s.compare_and_set(None, sample_record(n.as_str(), 1)).await.expect("create");
    let d2 = s.doc_put(&doc_key(&k, &unique("rev")), None, vec![]).await.expect("put");
    assert!(d1 < r && r < d2, "docs: one counter for records and documents ({d1}, {r}, {d2})");
}

/// Of many writers racing from one revision, exactly one wins.
pub async fn docs_concurrent_writers_one_wins(s: &dyn Store) {
    let key = doc_key(&kind("conformance"), &unique("race"));
    let r = s.doc_put(&key, None, b"0".to_vec()).await.expect("create");
    let tries = futures::future::join_all((0..8).map(|i| s.doc_put(&key, Some(r), vec![i]))).await;
    assert_eq!(tries.iter().filter(|t| t.is_ok()).count(), 1, "docs: one writer wins: {tries:?}");
}

/// A name never written reads as `None`.
pub async fn absent_is_none(s: &dyn Store) {
    let n = name("absent");
    assert!(s.get(&n).await.expect("get").is_none(), "absent_is_none");
    assert!(!s.list().await.expect("list").iter().any(|r| r.spec.name() == &n));
}

/// `expected = None` creates, once; the record reads back unchanged but for the revision the store set.
pub async fn create_once(s: &dyn Store) {
    let n = name("create");
    let rec = sample_record(n.as_str(), 1);
    let revision = s.compare_and_set(None, rec.clone()).await.expect("create");
    assert!(revision > 0, "create_once: a revision is set");
    let back = s.get(&n).await.expect("get").expect("the record is there");
    assert_eq!(back.revision, revision, "create_once: the record carries its revision");
    assert_eq!(FunctionRecord { revision: 0, ..back }, rec, "create_once: read back differs");
    match s.compare_and_set(None, sample_record(n.as_str(), 1)).await {
        Err(StoreError::Conflict { expected: None, actual: Some(r), .. }) if r == revision => {}
        other => panic!("create_once: second create gave {other:?}"),
    }
}

/// An update with the stored revision wins; with another one it conflicts and changes nothing.
pub async fn update_compares_revision(s: &dyn Store) {
    let n = name("update");
    let r1 = s.compare_and_set(None, sample_record(n.as_str(), 1)).await.expect("create");
    let v2 = sample_record(n.as_str(), 2);
    let r2 = s.compare_and_set(Some(r1), v2.clone()).await.expect("update");
    assert!(r2 > r1, "update_compares_revision: revisions grow");
    let err = s.compare_and_set(Some(r1), sample_record(n.as_str(), 9)).await.expect_err("stale update accepted");
    assert!(
        matches!(err, StoreError::Conflict { expected: Some(e), actual: Some(a), .. } if e == r1 && a == r2),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let back = s.get(&n).await.expect("get").expect("there");
    assert_eq!((back.generation, back.revision), (2, r2), "update_compares_revision: stale write changed the record");
}

/// Delete compares too; deleting what is not there is `NotFound`.
pub async fn delete_compares_revision(s: &dyn Store) {
    let n = name("delete");
    let r = s.compare_and_set(None, sample_record(n.as_str(), 3)).await.expect("create");
    assert!(matches!(s.delete(&n, r + 1000).await, Err(StoreError::Conflict { .. })), "delete with wrong revision");
    s.delete(&n, r).await.expect("delete");
    assert!(s.get(&n).await.expect("get").is_none());
    assert!(matches!(s.delete(&n, r).await, Err(StoreError::NotFound(_))), "delete of absent");
}

/// A record deleted and made again gets a revision it never had, so a writer
/// holding the old one cannot write over the new record.
pub async fn revisions_never_repeat(s: &dyn Store) {
    let n = name("again");
    let old = s.compare_and_set(None, sample_record(n.as_str(), 1)).await.expect("create");
    s.delete(&n, old).await.expect("delete");
    let new = s.compare_and_set(None, sample_record(n.as_str(), 1)).await.expect("create again");
    assert_ne!(old, new, "revisions_never_repeat");
    assert!(matches!(
        s.compare_and_set(Some(old), sample_record(n.as_str(), 2)).await,
        Err(StoreError::Conflict { .. })
    ));
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

/// Of 16 writers racing from the same revision, exactly one wins.
pub async fn concurrent_writers_one_wins(s: &dyn Store) {
    let n = name("race");
    let r = s.compare_and_set(None, sample_record(n.as_str(), 1)).await.expect("create");
    let attempts = (0..16).map(|i| {
        let mut rec = sample_record(n.as_str(), 2);
        rec.status.message = Some(format!("writer {i}"));
        s.compare_and_set(Some(r), rec)
    });
    let results = futures::future::join_all(attempts).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "concurrent_writers_one_wins: {results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, StoreError::Conflict { .. })));
}

/// A scale writer and a deploy writer, each reading then writing in a loop,
/// both land: neither change is lost to the other.
pub async fn scale_and_deploy_do_not_lose_each_other(s: &dyn Store) {
    let n = name("scale");
    s.compare_and_set(None, sample_record(n.as_str(), 1)).await.expect("create");
    let write = |change: fn(&mut FunctionRecord)| {
        let n = n.clone();
        async move {
            for _ in 0..64 {
                let mut rec = s.get(&n).await.expect("get").expect("there");
                let expected = rec.revision;
                change(&mut rec);
                match s.compare_and_set(Some(expected), rec).await {
                    Ok(_) => return,
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
            panic!("scale_and_deploy_do_not_lose_each_other: no write landed in 64 tries");
        }
    };
    futures::future::join(
        write(|r| r.scale.running = Some(7)),
        write(|r| {
            r.generation += 1;
            r.status.message = Some("deployed".into());
        }),
    )
    .await;
    let back = s.get(&n).await.expect("get").expect("there");
    assert_eq!((back.scale.running, back.generation), (Some(7), 2), "scale_and_deploy_do_not_lose_each_other");
}
