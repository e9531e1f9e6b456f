//! FHIR Bulk Data exports on arbitrary bytes: a leading 0xFE makes the rest a manifest (parsed
//! and its parts listed); otherwise the bytes are cut at 0xFF into parts, typed Patient,
//! Encounter, Condition in turn, and joined by `transform::run_export`. Errors and malformed
//! records are fine; a panic, a hang or unbounded memory is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;

const CONTRACT: &str = include_str!("../../config/sources/ridgeline_bulk.toml");
const TYPES: [&str; 3] = ["Patient", "Encounter", "Condition"];

fuzz_target!(|data: &[u8]| {
    if let Some(manifest) = data.strip_prefix(b"\xfe") {
        if let Ok(m) = transform::bulk::Manifest::parse(manifest) {
            let (parts, _) = m.parts(&TYPES.map(String::from));
            for p in parts {
                assert!(!p.file_name.contains('/') && p.file_name != "..", "a part outside its folder");
            }
        }
        return;
    }
    let catalog = contracts::Catalog::builtin();
    let Ok(mut c) = contracts::Contract::from_toml_str(CONTRACT, "fuzz.toml", &catalog) else { return };
    c.limits.max_expanded_bytes = 1 << 20;
    c.limits.max_in_memory_bytes = 4 << 20;
    let Some(schema) = catalog.get(&c.dataset) else { return };
    let parts = data
        .split(|&b| b == 0xFF)
        .enumerate()
        .map(|(i, p)| transform::ExportPart {
            resource_type: TYPES[i % TYPES.len()].to_string(),
            input: Box::new(p),
        })
        .collect();
    let (mut g, mut b, mut m) = (Vec::new(), Vec::new(), Vec::new());
    let opts = transform::Options { threads: 1, chunk_bytes: 1024, ..Default::default() };
    let out = transform::Outputs { good: &mut g, bad: &mut b, malformed: &mut m };
    let _ = transform::run_export(&c, schema, "manifest.json", parts, out, &opts);
});
