//! Every reader on arbitrary bytes: the first byte picks a shipped contract (so each format's
//! reader is reached), the rest is the file. Errors and malformed records are fine; a panic,
//! a hang or unbounded memory is a bug. Small limits keep each run fast.
#![no_main]
use libfuzzer_sys::fuzz_target;

const CONTRACTS: &[&str] = &[
    include_str!("../../config/sources/st_marys.toml"),
    include_str!("../../config/sources/county_general.toml"),
    include_str!("../../config/sources/valley_clinic.toml"),
    include_str!("../../config/sources/old_mill.toml"),
    include_str!("../../config/sources/harbor_lab.toml"),
    include_str!("../../config/sources/riverside_fhir.toml"),
    include_str!("../../config/sources/lakeview_xml.toml"),
    include_str!("../../config/sources/brookside_xlsx.toml"),
    include_str!("../../config/sources/bayside_hl7.toml"),
    include_str!("../../config/sources/lakeside_fhir.toml"),
    include_str!("../../config/sources/ridgeline_bulk.toml"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let catalog = contracts::Catalog::builtin();
    let mut texts: Vec<String> = CONTRACTS.iter().map(|s| s.to_string()).collect();
    // the JSON array reader too
    texts.push(CONTRACTS[2].replace("format = \"json_lines\"", "format = \"json_array\""));
    let text = &texts[pick as usize % texts.len()];
    let Ok(mut c) = contracts::Contract::from_toml_str(text, "fuzz.toml", &catalog) else { return };
    c.limits.max_record_bytes = 4096;
    c.limits.max_expanded_bytes = 1 << 20;
    c.limits.max_in_memory_bytes = 4 << 20;
    let Some(schema) = catalog.get(&c.dataset) else { return };
    let (mut g, mut b, mut m) = (Vec::new(), Vec::new(), Vec::new());
    let opts = transform::Options { threads: 1, chunk_bytes: 1024, ..Default::default() };
    let _ = transform::run(&c, schema, "fuzz.csv", body, transform::Outputs { good: &mut g, bad: &mut b, malformed: &mut m }, &opts);
});
