//! Replays the committed cargo-fuzz seed corpora on the stable toolchain, so every CI run
//! exercises the fuzz harnesses (`cargo fuzz run <target>` explores further).
#![allow(clippy::unwrap_used)]

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        harness(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    n
}

#[test]
fn the_header_hygiene_corpus_replays_without_panic() {
    assert!(
        replay(
            "header_hygiene",
            tower_balancer_proxy::fuzzing::header_hygiene
        ) >= 3
    );
}

#[cfg(feature = "config")]
#[test]
fn the_config_parser_corpus_replays_without_panic() {
    assert!(
        replay(
            "config_parser",
            tower_balancer_proxy::fuzzing::config_parser
        ) >= 3
    );
}

#[test]
fn the_member_answer_corpus_replays_without_panic() {
    assert!(
        replay(
            "member_answer",
            tower_balancer_proxy::fuzzing::member_answer
        ) >= 5
    );
}
