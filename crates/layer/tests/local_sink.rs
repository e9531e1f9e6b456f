//! The local object store's writer: an object appears whole on commit, never half-written; an
//! aborted or dropped one leaves no file; a fault on commit (`store.put`) leaves nothing.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use layer::faults::{Faults, Faulty, When};
use layer::local::LocalObjectStore;
use layer::ports::ObjectStore;

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn an_object_appears_whole_on_commit_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalObjectStore::new(dir.path());
    let mut w = store.create("raw", "dataset=a/f.parquet", None).await.unwrap();
    // 24 MiB in uneven writes, more than any buffer
    let chunk: Vec<u8> = (0..=250u8).cycle().take(3 << 20).collect();
    for _ in 0..8 {
        w.write_all(&chunk).unwrap();
    }
    assert_eq!(w.written(), 24 << 20);
    assert!(store.list_versions("raw", "").await.unwrap().is_empty(), "visible before commit");
    assert!(store.get("raw", "dataset=a/f.parquet", None).await.is_err());
    w.commit().await.unwrap();

    let listed = store.list_versions("raw", "").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].key.expose(), listed[0].size), ("dataset=a/f.parquet", 24 << 20));
    let back = store.get("raw", "dataset=a/f.parquet", None).await.unwrap();
    assert!(back.chunks(chunk.len()).all(|c| c == &chunk[..]));
    assert_eq!(files_under(&dir.path().join("raw")), vec!["dataset=a/f.parquet"]);
}

#[tokio::test]
async fn an_aborted_or_dropped_object_leaves_no_file_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalObjectStore::new(dir.path());
    store.put("q", "bad/x.jsonl", b"old\n".to_vec(), None).await.unwrap();

    let mut w = store.create("q", "bad/x.jsonl", None).await.unwrap();
    w.write_all(&vec![1u8; 5 << 20]).unwrap();
    w.abort().await.unwrap();
    let mut w = store.create("q", "bad/y.jsonl", None).await.unwrap();
    w.write_all(&vec![2u8; 5 << 20]).unwrap();
    drop(w);

    assert_eq!(files_under(&dir.path().join("q")), vec!["bad/x.jsonl"]);
    assert_eq!(store.get("q", "bad/x.jsonl", None).await.unwrap(), b"old\n");
}

#[tokio::test]
async fn a_fault_on_commit_leaves_nothing_and_a_key_outside_the_bucket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    faults.inject("store.put", 0, 1, When::Before, true);
    let inner: Arc<dyn ObjectStore> = Arc::new(LocalObjectStore::new(dir.path()));
    let store = Faulty { inner, faults: faults.clone() };
    let mut w = store.create("raw", "dataset=a/g.parquet", None).await.unwrap();
    w.write_all(b"PAR1").unwrap();
    let err = w.commit().await.unwrap_err();
    assert!(err.transient, "{err}");
    assert_eq!(faults.fired(), 1);
    assert!(files_under(dir.path()).is_empty(), "{:?}", files_under(dir.path()));

    let err = store.create("raw", "../escape", None).await.err().unwrap();
    assert!(err.to_string().contains("`..`"), "{err}");
}
