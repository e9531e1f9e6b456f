//! The ingestion pipeline end to end through the AWS SDK against a moto server: real S3 objects
//! (versioned, SSE-KMS), DynamoDB ledger and datasets tables, SQS queues, SNS alerts, and the
//! real router and workflow handlers called with real SQS event JSON.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use e2e::{root, world, KMS_KEY};
use lake::embedded::{self, RedriveFilter};
use layer::ledger::Status;
use layer::AuditVerdict;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn sample(source: &str, file: &str) -> Vec<u8> {
    std::fs::read(root().join(format!("samples/{source}/{file}"))).unwrap()
}

fn expected_good(stem: &str) -> u64 {
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(format!("tests/expected/{stem}.manifest.json"))).unwrap(),
    )
    .unwrap();
    m["expected_good"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_from_three_sources_end_done_once_with_failures_enveloped_and_redriven() {
    let w = world().await;
    let published = embedded::publish_dir(&w.deps, &root().join("config/sources")).await.unwrap();
    for src in ["st_marys", "county_general", "valley_clinic"] {
        assert!(published.iter().any(|(s, v, new)| s == src && *v == 1 && *new), "{src} published");
    }

    // three good files; st_marys' event delivered twice, and county_general's before valley's upload
    w.upload("st_marys/2026/11/st_marys_600.csv", sample("st_marys", "st_marys_600.csv"), 2).await;
    w.upload(
        "county_general/drop/county_general_600.psv",
        sample("county_general", "county_general_600.psv"),
        1,
    )
    .await;
    w.upload("valley_clinic/valley_clinic_600.jsonl", sample("valley_clinic", "valley_clinic_600.jsonl"), 1)
        .await;
    // failures: an unknown source, a corrupt (truncated gzip) file carrying PHI-like markers, an invalid contract
    let marker = "ZZMARKERSMITH,ZZJOHN,987-65-4321,01/02/1961\n";
    w.upload("nobody_knows/file.csv", marker.as_bytes().to_vec(), 1).await;
    let mut corrupt = b"\x1f\x8b\x08".to_vec();
    corrupt.extend_from_slice(marker.as_bytes());
    w.upload("st_marys/2026/11/corrupt.csv", corrupt, 1).await;
    w.deps
        .meta
        .publish_contract("broken_src", "encounter", "source = \"broken_src\"\nkeys = [")
        .await
        .unwrap();
    let valley =
        std::fs::read_to_string(root().join("samples/valley_clinic/valley_clinic_600.jsonl")).unwrap();
    w.upload("broken_src/export.jsonl", valley.as_bytes().to_vec(), 1).await;

    embedded::drain(&w.deps, &w.topo).await.unwrap();

    let runs = embedded::status(&w.deps).await.unwrap();
    assert_eq!(runs.len(), 6, "one ledger entry per object version, duplicates included: {runs:#?}");
    let by_source = |s: &str| runs.iter().filter(|r| r.source.as_deref() == Some(s)).collect::<Vec<_>>();
    for (src, stem) in [
        ("st_marys", "st_marys_600"),
        ("county_general", "county_general_600"),
        ("valley_clinic", "valley_clinic_600"),
    ] {
        let done: Vec<_> = by_source(src).into_iter().filter(|r| r.status == Status::Done).collect();
        assert_eq!(done.len(), 1, "{src}");
        assert_eq!(done[0].counts.good, expected_good(stem), "{src}");
    }
    let failed: Vec<(String, String)> = runs
        .iter()
        .filter(|r| r.status == Status::Failed)
        .map(|r| {
            (r.source.clone().unwrap_or_default(), r.error_kind.map(|k| k.to_string()).unwrap_or_default())
        })
        .collect();
    let mut kinds: Vec<&str> = failed.iter().map(|(_, k)| k.as_str()).collect();
    kinds.sort();
    // the corrupt file is a truncated gzip stream: its structure is broken
    assert_eq!(kinds, ["BrokenStructure", "InvalidContract", "UnknownSource"], "{failed:?}");

    // the raw bucket: one Parquet object per good file, canonical schema, the expected rows, SSE-KMS
    let listed = w.s3.list_objects_v2().bucket(&w.deps.cfg.raw_bucket).send().await.unwrap();
    let keys: Vec<String> = listed.contents().iter().map(|o| o.key().unwrap().to_string()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let canonical: Vec<String> = contracts_columns().into_iter().collect();
    for k in &keys {
        assert!(k.starts_with("dataset=encounter/source="), "{k}");
        let head = w.s3.head_object().bucket(&w.deps.cfg.raw_bucket).key(k).send().await.unwrap();
        assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"), "{k}");
        assert_eq!(head.ssekms_key_id(), Some(KMS_KEY), "{k}");
        let body =
            w.s3.get_object()
                .bucket(&w.deps.cfg.raw_bucket)
                .key(k)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes();
        let reader = ParquetRecordBatchReaderBuilder::try_new(body).unwrap();
        let names: Vec<String> = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, canonical);
        let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
        let src = k.split("source=").nth(1).unwrap().split('/').next().unwrap();
        assert_eq!(rows as u64, expected_good(&format!("{src}_600")), "{k}");
    }

    // one envelope and one alert per failed file, none carrying a value from the file
    let dlq = w.drain_all(&w.deps.cfg.dlq.clone()).await;
    let alerts = w.drain_all(&w.alerts_queue.clone()).await;
    assert_eq!(dlq.len(), 3, "{dlq:?}");
    assert_eq!(alerts.len(), 3, "{alerts:?}");
    for text in dlq.iter().chain(&alerts) {
        for phi in ["ZZMARKERSMITH", "ZZJOHN", "987-65-4321", "01/02/1961"] {
            assert!(!text.contains(phi), "PHI marker {phi} leaked into: {text}");
        }
    }
    assert!(alerts.iter().any(|a| a.contains("lake redrive --file-id")), "an alert says how to redrive");

    // put the envelopes back, fix the contract, redrive only that source: it ends DONE
    for e in &dlq {
        w.deps.queue.send(&w.deps.cfg.dlq, e).await.unwrap();
    }
    let fixed = std::fs::read_to_string(root().join("config/sources/valley_clinic.toml"))
        .unwrap()
        .replace("source = \"valley_clinic\"", "source = \"broken_src\"")
        .replace("keys = [\"valley_clinic/\"]", "keys = [\"broken_src/\"]");
    let v = w.deps.meta.publish_contract("broken_src", "encounter", &fixed).await.unwrap();
    assert_eq!(v, 2);
    let replayed = embedded::redrive(
        &w.deps,
        &w.topo,
        &RedriveFilter { source: Some("broken_src".into()), ..Default::default() },
    )
    .await
    .unwrap()
    .replayed;
    assert_eq!(replayed.len(), 1);
    embedded::drain(&w.deps, &w.topo).await.unwrap();
    let runs = embedded::status(&w.deps).await.unwrap();
    let broken = runs.iter().find(|r| r.source.as_deref() == Some("broken_src")).unwrap();
    assert_eq!(broken.status, Status::Done, "{broken:?}");
    assert_eq!(broken.counts.good, expected_good("valley_clinic_600"));
    assert_eq!(w.drain_all(&w.deps.cfg.dlq.clone()).await.len(), 2, "the other envelopes stay in the DLQ");

    // the same event again, after everything: still one output per file
    w.upload("st_marys/2026/11/st_marys_600.csv", sample("st_marys", "st_marys_600.csv"), 0).await;
    let again = embedded::status(&w.deps).await.unwrap();
    assert_eq!(again.len(), 6);
}

fn contracts_columns() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("config/canonical/encounter.toml")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"').to_string())
        .filter(|n| n != "encounter")
        .collect()
}

fn small_st_marys(tag: &str) -> Vec<u8> {
    let h = "VisitID,PatientID,FirstName,LastName,MiddleInit,DOB,Gender,SSN,Address1,City,State,Zip,Phone,VisitDate,Facility,DxCodes,TotalCharges,RoomNo";
    format!(
        "{h}\nV{tag},P1,Ann,Lee,,01/02/1980,F,123-45-6789,1 A St,Town,MA,02139,,01/02/2024,X,E119,$10,1\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_object_keys_each_end_done_exactly_once() {
    let w = world().await;
    embedded::publish_dir(&w.deps, &root().join("config/sources")).await.unwrap();
    let long = format!("st_marys/{}.csv", "k".repeat(1024 - "st_marys/".len() - ".csv".len()));
    assert_eq!(long.len(), 1024);
    let keys = [
        "st_marys/a+b.csv".to_string(),
        "st_marys/a%2Bb.csv".to_string(),
        "st_marys/with space.csv".to_string(),
        "st_marys/caf\u{e9}.csv".to_string(),
        "st_marys/cafe\u{301}.csv".to_string(),
        "st_marys/../escape.csv".to_string(),
        "st_marys/QZXLASTMARK_1923-07-04.csv".to_string(),
        long,
    ];
    for (i, k) in keys.iter().enumerate() {
        w.upload(k, small_st_marys(&i.to_string()), 2).await;
    }
    embedded::drain(&w.deps, &w.topo).await.unwrap();
    let runs = embedded::status(&w.deps).await.unwrap();
    assert_eq!(runs.len(), keys.len(), "NFC and NFD forms are different keys, each once");
    for r in &runs {
        assert_eq!(r.status, Status::Done, "{:?} {:?}", r.error_kind, r.error_message);
        assert_eq!(r.counts.good, 1);
        assert!(keys.iter().any(|k| k == r.key.expose()), "the ledger holds the decoded key exactly");
    }
    let listed = w.s3.list_objects_v2().bucket(&w.deps.cfg.raw_bucket).send().await.unwrap();
    let out: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(out.len(), keys.len());
    assert!(
        out.iter().all(|k| !k.contains("..") && !k.contains("QZX")),
        "output keys carry file ids only: {out:?}"
    );
    let audit = embedded::audit(&w.deps, &w.topo, 0).await.unwrap();
    assert_eq!(audit.len(), keys.len());
    assert!(audit.iter().all(|a| a.verdict == AuditVerdict::Done), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_files_from_twenty_sources_through_moto() {
    let w = world().await;
    let dialects = [
        ("st_marys", "st_marys_600.csv"),
        ("county_general", "county_general_600.psv"),
        ("valley_clinic", "valley_clinic_600.jsonl"),
    ];
    let mut heads = vec![];
    for s in 0..20 {
        let (dialect, file) = dialects[s % 3];
        let id = format!("hosp{s:02}");
        let text = std::fs::read_to_string(root().join(format!("config/sources/{dialect}.toml")))
            .unwrap()
            .replace(&format!("source = \"{dialect}\""), &format!("source = \"{id}\""))
            .replace(&format!("keys = [\"{dialect}/\"]"), &format!("keys = [\"{id}/\"]"));
        w.deps.meta.publish_contract(&id, "encounter", &text).await.unwrap();
        let body = String::from_utf8(sample(dialect, file)).unwrap();
        let head: String = body.lines().take(30).map(|l| format!("{l}\n")).collect();
        heads.push((id, file.rsplit_once('.').unwrap().1.to_string(), head));
    }
    let t = std::time::Instant::now();
    // uploads with no event yet; then every event twice, the second copies in reverse order
    let mut events = vec![];
    for i in 0..200 {
        let (id, ext, head) = &heads[i % 20];
        // each of a source's ten files a line shorter than the last: ten different contents
        // (byte-identical files of one source would be recorded as duplicates)
        let head: String = head.lines().take(30 - i / 20).map(|l| format!("{l}\n")).collect();
        let key = format!("{id}/b{}/f{i:03}.{ext}", i / 50);
        let out =
            w.s3.put_object()
                .bucket(&w.ingest_bucket)
                .key(&key)
                .body(head.clone().into_bytes().into())
                .send()
                .await
                .unwrap();
        events.push(layer::s3event::notification(
            &w.ingest_bucket,
            &key,
            out.version_id(),
            head.len() as u64,
        ));
    }
    for e in events.iter().chain(events.iter().rev()) {
        w.deps.queue.send(&w.topo.ingest_queue, e).await.unwrap();
    }
    embedded::drain(&w.deps, &w.topo).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let runs = embedded::status(&w.deps).await.unwrap();
    assert_eq!(runs.len(), 200);
    assert!(runs.iter().all(|r| r.status == Status::Done));
    let mut n = 0;
    let mut token = None;
    loop {
        let page =
            w.s3.list_objects_v2()
                .bucket(&w.deps.cfg.raw_bucket)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
        n += page.contents().len();
        token = page.next_continuation_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(n, 200, "exactly one raw output per file");
    eprintln!(
        "moto load: 200 files (400 events) from 20 sources in {secs:.1}s = {:.1} files/s (debug build, moto)",
        200.0 / secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_identical_resend_is_a_duplicate_with_no_outputs_through_moto() {
    let w = world().await;
    embedded::publish_dir(&w.deps, &root().join("config/sources")).await.unwrap();
    let body = sample("st_marys", "st_marys_600.csv");
    w.upload("st_marys/2026/11/st_marys_600.csv", body.clone(), 1).await;
    embedded::drain(&w.deps, &w.topo).await.unwrap();
    // the same bytes under another name, and the first key overwritten with the same bytes (a new version)
    w.upload("st_marys/2026/12/resent.csv", body.clone(), 1).await;
    w.upload("st_marys/2026/11/st_marys_600.csv", body, 1).await;
    embedded::drain(&w.deps, &w.topo).await.unwrap();

    let runs = embedded::status(&w.deps).await.unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.status == Status::Done), "{runs:#?}");
    let original: Vec<_> = runs.iter().filter(|r| r.stage != layer::Stage::Duplicate).collect();
    assert_eq!(original.len(), 1, "{runs:#?}");
    let dups: Vec<_> = runs.iter().filter(|r| r.stage == layer::Stage::Duplicate).collect();
    assert_eq!(dups.len(), 2);
    for d in &dups {
        assert_eq!(d.duplicate_of.as_deref(), Some(original[0].file_id.as_str()));
        assert_eq!(d.sha256, original[0].sha256);
        assert!(d.outputs.is_empty() && d.counts.good == 0);
    }
    let listed = w.s3.list_objects_v2().bucket(&w.deps.cfg.raw_bucket).send().await.unwrap();
    assert_eq!(listed.contents().len(), 1, "one Parquet for the one content");
    assert_eq!(w.drain_all(&w.deps.cfg.pii_queue.clone()).await.len(), 1, "one pii pointer");
    let table = embedded::table(&runs, false);
    assert_eq!(table.matches(&format!("duplicate of {}", original[0].file_id)).count(), 2, "{table}");
    let audit = embedded::audit(&w.deps, &w.topo, 0).await.unwrap();
    assert!(audit.iter().all(|a| a.verdict == AuditVerdict::Done), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_a_redrive_policy_moved_are_listed_by_cause_and_redriven_with_the_envelopes() {
    use layer::ops::{redrive_plan, redrive_raw, StageDlq};
    let mut w = world().await;
    embedded::publish_dir(&w.deps, &root().join("config/sources")).await.unwrap();
    // an ingest queue whose redrive policy moves a message to its DLQ after one receive
    let sqs = aws_sdk_sqs::Client::new(&e2e::moto_sdk().await);
    let id = e2e::unique();
    let dlq =
        sqs.create_queue().queue_name(format!("t{id}-ingest-dlq")).send().await.unwrap().queue_url.unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let ingest = sqs
        .create_queue()
        .queue_name(format!("t{id}-ingest"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            format!("{{\"deadLetterTargetArn\":\"{dlq_arn}\",\"maxReceiveCount\":\"1\"}}"),
        )
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "0")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    w.topo.ingest_queue = ingest.clone();
    w.upload("st_marys/2026/11/st_marys_600.csv", sample("st_marys", "st_marys_600.csv"), 1).await;
    // the router was down: the notification is received and not deleted, so SQS moves it on
    assert_eq!(w.deps.queue.receive(&ingest, 10).await.unwrap().len(), 1);
    assert!(w.deps.queue.receive(&ingest, 10).await.unwrap().is_empty(), "moved to the DLQ");
    // and a failure envelope in the pipeline DLQ: an unknown source
    w.upload("nobody_knows/file.csv", b"a,b\n1,2\n".to_vec(), 1).await;
    embedded::drain(&w.deps, &w.topo).await.unwrap();

    let stages = [StageDlq { dlq: dlq.clone(), queue: ingest.clone() }];
    let all = RedriveFilter::default();
    let plan = redrive_plan(&w.deps, &stages, &all).await.unwrap();
    assert_eq!(plan[0].by_cause.get("UnknownSource"), Some(&1), "{plan:?}");
    assert_eq!(plan[1].by_cause.get("raw"), Some(&1), "{plan:?}");
    let again = redrive_plan(&w.deps, &stages, &all).await.unwrap();
    assert_eq!(again[1].by_cause.get("raw"), Some(&1), "the dry run consumed nothing");
    let audit = embedded::audit(&w.deps, &w.topo, 0).await.unwrap();
    assert_eq!(
        audit.iter().filter(|a| a.verdict == AuditVerdict::AtRisk).count(),
        1,
        "the moved file is at risk"
    );

    // an error-kind filter leaves raw messages alone; no filter moves them back
    let kind = RedriveFilter { error_kind: Some(layer::ErrorKind::HeaderMismatch), ..Default::default() };
    assert_eq!(redrive_raw(&w.deps, &stages, &kind).await.unwrap()[0].1, 0);
    assert_eq!(redrive_raw(&w.deps, &stages, &all).await.unwrap()[0].1, 1);
    embedded::drain(&w.deps, &w.topo).await.unwrap();
    let runs = embedded::status(&w.deps).await.unwrap();
    let st = runs.iter().find(|r| r.source.as_deref() == Some("st_marys")).unwrap();
    assert_eq!((st.status, st.counts.good), (Status::Done, expected_good("st_marys_600")));
    let plan = redrive_plan(&w.deps, &stages, &all).await.unwrap();
    assert!(plan[1].by_cause.is_empty(), "{plan:?}");
    assert_eq!(plan[0].file_ids.len(), 1, "the envelope waits for its fix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fhir_bulk_export_is_held_until_its_manifest_then_joined_through_moto() {
    let w = world().await;
    embedded::publish(&w.deps, &root().join("config/sources/ridgeline_bulk.toml")).await.unwrap();
    let dir = root().join("samples/ridgeline_bulk/export-1");
    let upload = |name: &'static str| {
        let body = std::fs::read(dir.join(name)).unwrap();
        let w = &w;
        async move { w.upload(&format!("ridgeline_bulk/export-1/{name}"), body, 1).await }
    };
    for p in ["Patient.ndjson", "Encounter.ndjson", "Condition.ndjson.gz", "Observation.ndjson"] {
        upload(p).await;
    }
    embedded::drain(&w.deps, &w.topo).await.unwrap();
    let runs = embedded::status(&w.deps).await.unwrap();
    assert_eq!(runs.len(), 4);
    assert!(
        runs.iter().all(|r| (r.status, r.stage) == (Status::Received, layer::Stage::AwaitingManifest)),
        "{runs:#?}"
    );
    let listed = w.s3.list_objects_v2().bucket(&w.deps.cfg.raw_bucket).send().await.unwrap();
    assert!(listed.contents().is_empty(), "nothing written before the manifest");

    upload("manifest.json").await;
    embedded::drain(&w.deps, &w.topo).await.unwrap();
    let runs = embedded::status(&w.deps).await.unwrap();
    assert_eq!(runs.len(), 5);
    let manifest: Vec<_> = runs.iter().filter(|r| r.stage != layer::Stage::Joined).collect();
    assert_eq!(manifest.len(), 1, "{runs:#?}");
    let m = manifest[0];
    assert_eq!((m.status, m.counts.good, m.counts.bad), (Status::Done, 11, 1), "{m:#?}");
    for r in runs.iter().filter(|r| r.stage == layer::Stage::Joined) {
        assert_eq!((r.status, r.joined_into.as_deref()), (Status::Done, Some(m.file_id.as_str())));
    }
    let listed = w.s3.list_objects_v2().bucket(&w.deps.cfg.raw_bucket).send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 1, "one Parquet for the export: {keys:?}");
    assert!(keys[0].ends_with(&format!(
        "source=ridgeline_bulk/ingest_date={}/{}.parquet",
        m.ingest_date(),
        m.file_id
    )));
    let audit = embedded::audit(&w.deps, &w.topo, 0).await.unwrap();
    assert!(audit.iter().all(|a| a.verdict == AuditVerdict::Done), "{audit:?}");
}
