//! A new source is a data file, and every data file is a test case: each contract shipped in
//! `config/sources` loads against the shipped canonical schemas, is named after its source, and
//! survives the publish round trip unchanged.

use std::path::{Path, PathBuf};

use contracts::{Catalog, Contract};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn contracts_in(dir: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("the config folder is readable")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_contract_in_config_loads_and_validates() {
    let catalog = Catalog::load_dir(&root().join("config/canonical")).unwrap();
    let paths = contracts_in("config/sources");
    assert!(paths.len() >= 8, "{paths:?}");
    for p in &paths {
        let c = Contract::load(p, &catalog).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Some(c.source.as_str()), p.file_stem().and_then(|s| s.to_str()), "{}", p.display());
        let published = Contract::from_toml_str(&c.to_toml(), "published", &catalog).unwrap();
        assert_eq!(published, c, "{}", p.display());
    }
}
