//! Replays the committed cargo-fuzz seed corpus on the stable toolchain, so every CI run
//! exercises the fuzz harnesses (`cargo fuzz run route_extraction` explores further).

use std::path::Path;

#[test]
fn the_route_extraction_corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/route_extraction");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed corpus is committed") {
        let path = entry.expect("a readable corpus entry").path();
        let data = std::fs::read(&path).expect("a readable corpus file");
        tower_balancer::fuzzing::route_extraction(&data);
        n += 1;
    }
    assert!(n >= 5, "only {n} corpus files in {}", dir.display());
}

#[test]
fn the_signed_cookie_corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/signed_cookie");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed corpus is committed") {
        let path = entry.expect("a readable corpus entry").path();
        let data = std::fs::read(&path).expect("a readable corpus file");
        tower_balancer::fuzzing::signed_cookie(&data);
        n += 1;
    }
    assert!(n >= 4, "only {n} corpus files in {}", dir.display());
}
