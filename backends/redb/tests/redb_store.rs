//! The redb store: the conformance suite, and nothing lost across close and reopen.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use pilotlight_core::model::{FunctionName, Phase};
use pilotlight_core::ports::{DocKey, DocKind, DocQuery, Store, StoreError};
use pilotlight_core::testkit::{self, store::sample_record};
use pilotlight_redb::RedbStore;

#[tokio::test]
async fn redb_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("store.redb")).unwrap();
    testkit::store::run_all(&store).await;
}

#[tokio::test]
async fn nothing_is_lost_across_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/store.redb");
    let mut written = Vec::new();
    let last;
    {
        let store = RedbStore::open(&path).unwrap();
        for i in 0..50 {
            let mut rec = sample_record(&format!("fn-{i:02}"), 1);
            rec.revision = store.compare_and_set(None, rec.clone()).await.unwrap();
            written.push(rec);
        }
        let mut updated = sample_record("fn-07", 2);
        updated.status.phase = Phase::Failed;
        updated.status.message = Some("kept across restarts".into());
        updated.revision = store.compare_and_set(Some(written[7].revision), updated.clone()).await.unwrap();
        written[7] = updated;
        let gone = written.pop().unwrap();
        store.delete(&FunctionName::new("fn-49").unwrap(), gone.revision).await.unwrap();
        last = written[7].revision;
    }
    let reopened = RedbStore::open(&path).unwrap();
    assert_eq!(reopened.list().await.unwrap(), written);
    // Revisions carry on after the reopen: an old one conflicts, and new ones never repeat one.
    let err = reopened.compare_and_set(Some(last - 1), sample_record("fn-07", 3)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: Some(a), .. } if a == last), "{err:?}");
    let next = reopened.compare_and_set(None, sample_record("fn-new", 1)).await.unwrap();
    assert!(next > last + 1, "the store-wide revision continued: {next} after {last}");
}

#[tokio::test]
async fn documents_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let kind = DocKind::new("invocations").unwrap();
    let key = |k: &str| DocKey::new(&kind, k).unwrap();
    let revision;
    {
        let store = RedbStore::open(&path).unwrap();
        for i in 0..20 {
            store.doc_put(&key(&format!("hello/{i:03}")), None, format!("body {i}").into_bytes()).await.unwrap();
        }
        revision = store.doc_put(&key("hello/000"), Some(1), b"updated".to_vec()).await.unwrap();
        store.doc_delete(&key("hello/019"), 20).await.unwrap();
    }
    let reopened = RedbStore::open(&path).unwrap();
    let docs = reopened.doc_list(&kind, &DocQuery::prefix("hello/", 100)).await.unwrap();
    assert_eq!(docs.len(), 19);
    assert_eq!((docs[0].value.as_slice(), docs[0].revision), (&b"updated"[..], revision));
    assert_eq!(docs[18].value, b"body 18");
    let next = reopened.doc_put(&key("hello/new"), None, vec![]).await.unwrap();
    assert!(next > revision + 1, "the store-wide revision continued");
}

/// What an accepted asynchronous invocation relies on: once `create`
/// returned, it is on disk, and reads back whole after the file is reopened.
#[tokio::test]
async fn accepted_invocations_are_on_disk_when_create_returns() {
    use pilotlight_core::controller::InvocationStore;
    use pilotlight_core::model::{Invocation, InvocationId, InvocationRequest, InvocationState};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let hello = FunctionName::new("hello").unwrap();
    let mut made = Vec::new();
    {
        let invocations = InvocationStore::new(std::sync::Arc::new(RedbStore::open(&path).unwrap()));
        for i in 0..30u8 {
            let id = InvocationId::generate(&hello, 1_000 + u64::from(i)).unwrap();
            let request = InvocationRequest::new("POST", "/hook", vec![("x-n".into(), i.to_string())], vec![i; 100]);
            made.push(invocations.create(Invocation::queued(id, request.unwrap(), None)).await.unwrap());
        }
    }
    let invocations = InvocationStore::new(std::sync::Arc::new(RedbStore::open(&path).unwrap()));
    let back = invocations.list(&hello, Some(InvocationState::Queued), None, 100).await.unwrap();
    assert_eq!(back, made);
    assert_eq!(invocations.due(2_000, 100).await.unwrap().len(), 30);
}

#[tokio::test]
async fn a_second_open_of_the_same_file_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let _first = RedbStore::open(&path).unwrap();
    match RedbStore::open(&path) {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("already open"), "{msg}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened twice"),
    }
}

#[tokio::test]
async fn a_corrupt_record_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("functions")).unwrap();
            t.insert("evil", br#"{"spec":{"name":"Evil;Name","image":"x","port":1},"generation":1,"status":{"phase":"ready","generation":1}}"#.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    let err = store.list().await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("DNS label"), "{err}");
}
