//! End-to-end tests of the whole pipeline against emulated AWS (moto) and a real PostgreSQL,
//! started by `scripts/test.sh`. The tests are in this folder; this library is empty.
