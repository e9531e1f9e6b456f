//! The Glue tables in template.yaml are generated from the canonical schemas
//! (`config/canonical/*.toml`) and the source contracts (`config/sources/*.toml`, the `source`
//! partition's projected values): this test fails when the template and the schema drift, and
//! `LAKE_UPDATE_TEMPLATE=1 cargo test -p lake --test catalog_template` rewrites the block.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use contracts::{CanonicalSchema, Catalog, ParquetType};

const BEGIN: &str = "  # BEGIN generated Glue tables";
const END: &str = "  # END generated Glue tables";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn glue_type(t: ParquetType) -> &'static str {
    match t {
        ParquetType::String => "string",
        ParquetType::Date32 => "date",
        ParquetType::Float64 => "double",
        ParquetType::ListString => "array<string>",
    }
}

/// Source ids per dataset, from the contracts.
fn sources() -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut paths: Vec<_> = std::fs::read_dir(repo().join("config/sources"))
        .expect("config/sources")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p).expect("contract");
        let value = |key: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(key)?.trim().strip_prefix('=')?.trim().strip_prefix('"')?.split('"').next()
                })
                .unwrap_or_else(|| panic!("{}: no {key}", p.display()))
                .to_string()
        };
        m.entry(value("dataset")).or_default().push(value("source"));
    }
    m
}

fn camel(s: &str) -> String {
    s.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect()
}

fn table(out: &mut String, schema: &CanonicalSchema, sources: &[String], quarantine: bool) {
    let name = &schema.name;
    let (logical, table, bucket, prefix, what) = if quarantine {
        (
            format!("GlueTable{}Quarantine", camel(name)),
            format!("{name}_quarantine"),
            "QuarantineBucket",
            format!("bad/dataset={name}"),
            "bad rows (missing a required field), data stewards only",
        )
    } else {
        (
            format!("GlueTable{}", camel(name)),
            name.clone(),
            "RawBucket",
            format!("dataset={name}"),
            "good rows and rows completed by matching (*.matched.parquet)",
        )
    };
    let w = |out: &mut String, s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    w(out, &format!("  {logical}:"));
    w(out, "    Type: AWS::Glue::Table");
    w(out, "    Properties:");
    w(out, "      CatalogId: !Ref AWS::AccountId");
    w(out, "      DatabaseName: !Ref GlueDatabase");
    w(out, "      TableInput:");
    w(out, &format!("        Name: {table}"));
    w(out, &format!("        Description: \"{name} v{}: {what}\"", schema.version));
    w(out, "        TableType: EXTERNAL_TABLE");
    w(out, "        Parameters:");
    w(out, "          classification: parquet");
    w(out, "          projection.enabled: \"true\"");
    w(out, "          projection.source.type: enum");
    w(out, &format!("          projection.source.values: \"{}\"", sources.join(",")));
    w(out, "          projection.ingest_date.type: date");
    w(out, "          projection.ingest_date.format: yyyy-MM-dd");
    w(out, "          projection.ingest_date.range: \"2024-01-01,NOW\"");
    w(out, "          projection.ingest_date.interval: \"1\"");
    w(out, "          projection.ingest_date.interval.unit: DAYS");
    w(
        out,
        &format!(
            "          storage.location.template: !Sub \"s3://${{{bucket}}}/{prefix}/source=${{!source}}/ingest_date=${{!ingest_date}}/\""
        ),
    );
    w(out, "        PartitionKeys:");
    w(out, "          - { Name: source, Type: string }");
    w(out, "          - { Name: ingest_date, Type: string }");
    w(out, "        StorageDescriptor:");
    w(out, &format!("          Location: !Sub \"s3://${{{bucket}}}/{prefix}/\""));
    w(out, "          InputFormat: org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat");
    w(out, "          OutputFormat: org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat");
    w(out, "          SerdeInfo:");
    w(out, "            SerializationLibrary: org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe");
    w(out, "          Columns:");
    for c in &schema.columns {
        let _ =
            writeln!(out, "            - {{ Name: {}, Type: \"{}\" }}", c.name, glue_type(c.parquet_type));
    }
    if quarantine {
        w(out, "            - { Name: missing_fields, Type: \"string\" }");
    }
}

fn generated() -> String {
    let catalog = Catalog::load_dir(&repo().join("config/canonical")).expect("canonical schemas");
    let sources = sources();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{BEGIN}: from config/canonical/*.toml and config/sources/*.toml; do not edit by hand\n  \
         # (LAKE_UPDATE_TEMPLATE=1 cargo test -p lake --test catalog_template rewrites this block)"
    );
    for name in catalog.names() {
        let schema = catalog.get(name).expect("listed");
        let srcs = sources.get(name).cloned().unwrap_or_default();
        assert!(!srcs.is_empty(), "no source contract feeds dataset {name}");
        table(&mut out, schema, &srcs, false);
        out.push('\n');
        table(&mut out, schema, &srcs, true);
    }
    out.push_str(END);
    out
}

#[test]
fn template_glue_tables_match_the_canonical_schema() {
    let path = repo().join("template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml");
    let start = text.find(BEGIN).expect("template.yaml has the generated Glue tables block");
    let end = text[start..].find(END).expect("block end") + start + END.len();
    let want = generated();
    if std::env::var_os("LAKE_UPDATE_TEMPLATE").is_some() {
        std::fs::write(&path, format!("{}{want}{}", &text[..start], &text[end..])).expect("write");
        return;
    }
    assert!(
        text[start..end] == want,
        "template.yaml's Glue tables drifted from config/canonical or config/sources; run \
         LAKE_UPDATE_TEMPLATE=1 cargo test -p lake --test catalog_template\n--- expected ---\n{want}"
    );
}

#[test]
fn every_canonical_column_is_a_glue_column_in_order() {
    // independent of the rendering above: the template's column names, in order, are the schema's
    let text = std::fs::read_to_string(repo().join("template.yaml")).expect("template.yaml");
    let block = &text[text.find("  GlueTableEncounter:").expect("encounter table")..];
    let block = &block[..block.find("\n\n").unwrap_or(block.len())];
    let names: Vec<&str> =
        block.lines().filter_map(|l| l.trim().strip_prefix("- { Name: ")?.split(',').next()).collect();
    let schema = CanonicalSchema::encounter();
    let mut want = vec!["source", "ingest_date"];
    want.extend(schema.columns.iter().map(|c| c.name.as_str()));
    assert_eq!(names, want);
}
